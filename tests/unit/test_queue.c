/*
 * test_queue.c - queue ids, the queue file writer and reader, in-place
 * updates, the notify record, and rejection of damaged files.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

/* ---- helpers -------------------------------------------------------------- */

static void rm_rf(const char *path)
{
	testutil_rmtree(path);
}

static int setup_spool(void **state)
{
	char tmpl[] = "/tmp/postern-test-queue-XXXXXX";
	char *dir = mkdtemp(tmpl);
	char *err = NULL;

	assert_non_null(dir);
	char *spool = xstrdup(dir);
	if (queue_dirs_create(spool, &err) != 0)
		fail_msg("queue_dirs_create: %s", err);
	*state = spool;
	return 0;
}

static int teardown_spool(void **state)
{
	rm_rf(*state);
	free(*state);
	return 0;
}

static char *spool_path(const char *spool, const char *folder, const char *id)
{
	buf_t b = BUF_INIT;

	buf_printf(&b, "%s/%s/%s", spool, folder, id);
	return buf_steal(&b);
}

static const char *const test_rcpts[] = { "alice@example.test",
					  "Bob@Example.Test" };

static void fill_env(struct queue_envelope *env, strlist_t *rcpts)
{
	memset(rcpts, 0, sizeof(*rcpts));
	for (size_t i = 0; i < 2; i++)
		strlist_add(rcpts, test_rcpts[i]);
	memset(env, 0, sizeof(*env));
	env->arrival_us = 1700000000123456ull;
	env->client_addr = "192.0.2.7";
	env->client_helo = "client.example";
	env->protocol = "ESMTPS";
	env->sender = "sender@remote.test";
	env->recipients = rcpts;
	env->smtputf8 = true;
	env->body_8bitmime = false;
	/* DSN requests on the first recipient only: the second has no O */
	static const struct queue_rcpt_dsn dsn[2] = {
		{ DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, "utf-8;Jos\xc3\xa9@Example.Test" },
		{ 0, NULL },
	};
	env->dsn_ret = DSN_RET_FULL;
	env->dsn_envid = "env-42";
	env->rcpt_dsn = dsn;
}

/* Write and commit a message; returns its id (static buffer). */
static const char *write_message(const char *spool, const char *content,
				 size_t len)
{
	static char id[QUEUE_ID_LEN + 1];
	struct queue_envelope env;
	strlist_t rcpts;
	char *err = NULL;

	fill_env(&env, &rcpts);
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	if (w == NULL)
		fail_msg("queue_writer_open: %s", err);
	if (queue_writer_write(w, content, len, &err) != 0)
		fail_msg("queue_writer_write: %s", err);
	if (queue_writer_commit(&w, &err) != 0)
		fail_msg("queue_writer_commit: %s", err);
	assert_null(w);
	strlist_free(&rcpts);
	return id;
}

static void read_whole(const char *path, buf_t *b)
{
	if (safeio_read_file(path, 64u * 1024 * 1024, b) != 0)
		fail_msg("read %s: %s", path, strerror(errno));
}

static void write_whole(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, data, len), 0);
	close(fd);
}

/* qf_read on a file holding data; returns its result, frees everything. */
static int read_bytes(const char *spool, const void *data, size_t len,
		      char **err_r)
{
	char *path = spool_path(spool, "hold", "probe");
	struct qf_msg m;

	write_whole(path, data, len);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	*err_r = NULL;
	int rc = qf_read(fd, &m, err_r);
	if (rc == 0)
		qf_msg_free(&m);
	close(fd);
	free(path);
	return rc;
}

/* ---- ids ------------------------------------------------------------------ */

static void test_id_format_and_order(void **state)
{
	char prev[QUEUE_ID_LEN + 1] = "", id[QUEUE_ID_LEN + 1], pid_hex[8];
	struct timespec ts;

	(void)state;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000u;
	snprintf(pid_hex, sizeof(pid_hex), "%06X", (unsigned)getpid());
	for (int i = 0; i < 20000; i++) {
		queue_id_new(id);
		assert_int_equal(strlen(id), QUEUE_ID_LEN);
		assert_true(queue_id_valid(id));
		assert_string_equal(id + 13, pid_hex);
		if (prev[0] != '\0' && strcmp(prev, id) >= 0)
			fail_msg("ids not increasing: %s then %s", prev, id);
		memcpy(prev, id, sizeof(id));
	}
	uint64_t t = queue_id_time_us(id);
	assert_true(t >= now);
	assert_true(t < now + 60u * 1000000u);
}

static void test_id_valid(void **state)
{
	(void)state;
	assert_true(queue_id_valid("0123456789ABCDEF012"));
	assert_false(queue_id_valid("0123456789abcdef012"));
	assert_false(queue_id_valid("0123456789ABCDEF01"));
	assert_false(queue_id_valid("0123456789ABCDEF0123"));
	assert_false(queue_id_valid("0123456789ABCDEF01G"));
	assert_false(queue_id_valid("../../../etc/passwd"));
	assert_false(queue_id_valid(""));
	assert_int_equal(queue_id_time_us("0000000000010ABCDEF"), 16);
}

/* ---- writer and reader ------------------------------------------------------ */

static const char sample[] =
	"Received: from client.example ([192.0.2.7]) by mx.example.test\n"
	"Subject: hello\n"
	"\n"
	"body line 1\nbody line 2\n";

static void test_roundtrip(void **state)
{
	const char *spool = *state;
	const char *id = write_message(spool, sample, sizeof(sample) - 1);
	char *path = spool_path(spool, "queue", id);
	char *inc = spool_path(spool, "incoming", id);
	struct qf_msg m;
	char *err = NULL;
	struct stat st;

	assert_int_equal(stat(inc, &st), -1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	if (qf_read(fd, &m, &err) != 0)
		fail_msg("qf_read: %s", err);
	assert_string_equal(m.id, id);
	assert_int_equal(m.version, QF_VERSION);
	assert_int_equal(m.arrival_us, 1700000000123456ull);
	assert_string_equal(m.client_addr, "192.0.2.7");
	assert_string_equal(m.helo, "client.example");
	assert_string_equal(m.protocol, "ESMTPS");
	assert_string_equal(m.sender, "sender@remote.test");
	assert_true(m.smtputf8);
	assert_false(m.body_8bitmime);
	assert_int_equal(m.rcpt_count, 2);
	assert_string_equal(m.rcpts[0].addr, test_rcpts[0]);
	assert_string_equal(m.rcpts[1].addr, test_rcpts[1]);
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	assert_int_equal(m.origin, QUEUE_ORIGIN_MAIL);
	assert_int_equal(m.dsn_ret, DSN_RET_FULL);
	assert_string_equal(m.dsn_envid, "env-42");
	assert_int_equal(m.rcpts[0].dsn_notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE);
	assert_string_equal(m.rcpts[0].dsn_orcpt, "utf-8;Jos\xc3\xa9@Example.Test");
	assert_int_equal(m.rcpts[1].dsn_notify, 0);
	assert_null(m.rcpts[1].dsn_orcpt);
	assert_int_equal(m.delay_warned, 0);
	assert_true(m.delay_warned_off > 0);
	assert_int_equal(m.attempts, 0);
	assert_int_equal(m.next_try, 0);
	assert_string_equal(m.reason, "");
	assert_int_equal(m.content_len, sizeof(sample) - 1);
	assert_int_equal(m.file_size, (uint64_t)st.st_size);
	assert_int_equal(qf_pending_count(&m), 2);

	char content[sizeof(sample)];
	long n = qf_read_content(fd, &m, 0, content, sizeof(content));
	assert_int_equal(n, sizeof(sample) - 1);
	assert_memory_equal(content, sample, sizeof(sample) - 1);
	assert_int_equal(qf_read_content(fd, &m, m.content_len, content, 1), 0);

	buf_t headers = BUF_INIT;
	assert_int_equal(qf_read_headers(fd, &m, 4096, &headers, &err), 0);
	assert_string_equal(buf_cstr(&headers),
			    "Received: from client.example ([192.0.2.7]) by mx.example.test\n"
			    "Subject: hello\n\n");
	buf_reset(&headers);
	assert_int_equal(qf_read_headers(fd, &m, 70, &headers, &err), 0);
	assert_string_equal(buf_cstr(&headers),
			    "Received: from client.example ([192.0.2.7]) by mx.example.test\n");
	buf_free(&headers);
	qf_msg_free(&m);
	close(fd);
	free(path);
	free(inc);
}

static void test_large_content(void **state)
{
	const char *spool = *state;
	size_t total = 300000;
	char *data = xmalloc(total);
	struct queue_envelope env;
	strlist_t rcpts;
	char id[QUEUE_ID_LEN + 1], *err = NULL;

	for (size_t i = 0; i < total; i++)
		data[i] = (i % 77 == 76) ? '\n' : (char)('a' + i % 26);
	fill_env(&env, &rcpts);
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	assert_non_null(w);
	assert_string_equal(queue_writer_id(w), id);
	/* Odd pieces, one larger than the 64 KiB buffer. */
	size_t sizes[] = { 1, 1000, 70000, 65535, 3, 100000 }, off = 0;
	for (size_t i = 0; off < total; i++) {
		size_t n = sizes[i % 6] < total - off ? sizes[i % 6] : total - off;
		assert_int_equal(queue_writer_write(w, data + off, n, &err), 0);
		off += n;
		assert_int_equal(queue_writer_size(w), off);
	}
	assert_int_equal(queue_writer_commit(&w, &err), 0);

	char *path = spool_path(spool, "queue", id);
	int fd = open(path, O_RDONLY);
	struct qf_msg m;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(m.content_len, total);
	char *back = xmalloc(total);
	uint64_t pos = 0;
	while (pos < total) {
		long n = qf_read_content(fd, &m, pos, back + pos, 4096);
		assert_true(n > 0);
		pos += (uint64_t)n;
	}
	assert_memory_equal(back, data, total);
	qf_msg_free(&m);
	close(fd);
	strlist_free(&rcpts);
	free(back);
	free(data);
	free(path);
}

static void test_in_place_updates(void **state)
{
	const char *spool = *state;
	const char *id = write_message(spool, sample, sizeof(sample) - 1);
	char *path = spool_path(spool, "queue", id);
	buf_t before = BUF_INIT, after = BUF_INIT;
	struct qf_msg m;
	char *err = NULL;

	read_whole(path, &before);
	int fd = open(path, O_RDWR);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(qf_set_rcpt_status(fd, &m, 1, QF_RCPT_DONE, &err), 0);
	assert_int_equal(qf_set_attempts(fd, &m, 3, 1800000000ull,
					 "4.4.1 remote\tdelivery not available", &err), 0);
	uint64_t status_off = m.rcpts[1].status_off, att_off = m.attempts_off;
	qf_msg_free(&m);
	close(fd);

	/* Same size; only the status byte and the attempts payload differ. */
	read_whole(path, &after);
	assert_int_equal(after.len, before.len);
	for (size_t i = 0; i < after.len; i++) {
		bool allowed = i == status_off ||
			       (i >= att_off && i < att_off + QF_ATTEMPTS_LEN);
		if (!allowed && before.data[i] != after.data[i])
			fail_msg("byte %zu changed", i);
	}
	fd = open(path, O_RDONLY);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	assert_int_equal(m.rcpts[1].status, QF_RCPT_DONE);
	assert_int_equal(qf_pending_count(&m), 1);
	assert_int_equal(m.attempts, 3);
	assert_int_equal(m.next_try, 1800000000ull);
	assert_string_equal(m.reason, "4.4.1 remote?delivery not available");
	qf_msg_free(&m);
	close(fd);
	buf_free(&before);
	buf_free(&after);
	free(path);
}

static void test_abort_and_rejects(void **state)
{
	const char *spool = *state;
	struct queue_envelope env;
	strlist_t rcpts;
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	struct stat st;

	fill_env(&env, &rcpts);
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	assert_non_null(w);
	char *inc = spool_path(spool, "incoming", id);
	assert_int_equal(stat(inc, &st), 0);
	queue_writer_abort(&w);
	assert_null(w);
	assert_int_equal(stat(inc, &st), -1);
	free(inc);

	assert_null(queue_writer_open(spool, "not-an-id", &env, &err));
	assert_non_null(err);
	free(err);
	err = NULL;
	env.sender = "evil\n@x";
	assert_null(queue_writer_open(spool, id, &env, &err));
	assert_non_null(err);
	free(err);
	err = NULL;
	env.sender = "ok@x";
	strlist_add(&rcpts, "bad\r@x");
	assert_null(queue_writer_open(spool, id, &env, &err));
	free(err);
	err = NULL;
	strlist_free(&rcpts);
	env.recipients = &rcpts;
	assert_null(queue_writer_open(spool, id, &env, &err));
	free(err);
	strlist_free(&rcpts);
}

static void test_helo_is_cleaned(void **state)
{
	const char *spool = *state;
	struct queue_envelope env;
	strlist_t rcpts;
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	struct qf_msg m;

	fill_env(&env, &rcpts);
	env.client_helo = "evil\r\nX-Injected: yes";
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	char *path = spool_path(spool, "queue", id);
	int fd = open(path, O_RDONLY);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_string_equal(m.helo, "evil??X-Injected: yes");
	assert_int_equal(m.content_len, 0);
	qf_msg_free(&m);
	close(fd);
	free(path);
	strlist_free(&rcpts);
}

/* ---- damaged files -------------------------------------------------------------- */

static void test_truncated_rejected(void **state)
{
	const char *spool = *state;
	const char *id = write_message(spool, sample, sizeof(sample) - 1);
	char *path = spool_path(spool, "queue", id);
	buf_t whole = BUF_INIT;
	char *err;

	read_whole(path, &whole);
	assert_int_equal(read_bytes(spool, whole.data, whole.len, &err), 0);
	for (size_t len = 0; len < whole.len; len++) {
		int rc = read_bytes(spool, whole.data, len, &err);
		if (rc != QF_ERR_CORRUPT || err == NULL)
			fail_msg("truncated to %zu: rc %d", len, rc);
		free(err);
	}
	/* One byte too many is as bad as one too few. */
	buf_putc(&whole, 'x');
	assert_int_equal(read_bytes(spool, whole.data, whole.len, &err),
			 QF_ERR_CORRUPT);
	free(err);
	buf_free(&whole);
	free(path);
}

static void test_every_byte_flipped(void **state)
{
	const char *spool = *state;
	const char *id = write_message(spool, sample, sizeof(sample) - 1);
	char *path = spool_path(spool, "queue", id);
	buf_t whole = BUF_INIT;
	struct qf_msg m;
	char *err = NULL;

	read_whole(path, &whole);
	int fd = open(path, O_RDONLY);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	/* Damage each envelope byte in turn: never a crash, and any damage to
	 * structure (not to free text or numbers) is an error. */
	for (size_t i = 0; i < m.content_off; i++) {
		char *copy = xmalloc(whole.len);
		memcpy(copy, whole.data, whole.len);
		copy[i] = (char)(copy[i] ^ 0x80);
		int rc = read_bytes(spool, copy, whole.len, &err);
		if (i < QF_HEADER_LEN && rc == 0)
			fail_msg("damaged header byte %zu accepted", i);
		free(err);
		free(copy);
	}
	qf_msg_free(&m);
	buf_free(&whole);
	free(path);
}

/* Build a file from records by hand, as a file of that version would
 * be (version 3 adds the N and W records). */
static void put_envelope_version(buf_t *b, const char *id, bool with_rcpt, int version)
{
	unsigned char u64[8] = { 0 }, att[QF_ATTEMPTS_LEN], flags = 0;

	qf_put_header(b);
	b->data[7] = (char)version;
	qf_put_record(b, QF_REC_ARRIVAL, u64, 8);
	qf_put_record(b, QF_REC_ID, id, QUEUE_ID_LEN);
	qf_put_record(b, QF_REC_CLIENT, "c", 1);
	qf_put_record(b, QF_REC_HELO, "h", 1);
	qf_put_record(b, QF_REC_PROTO, "SMTP", 4);
	qf_put_record(b, QF_REC_FLAGS, &flags, 1);
	qf_put_record(b, QF_REC_SENDER, "", 0);
	if (version >= 3)
		qf_put_record(b, QF_REC_DSN, "\0\0", 2);
	if (with_rcpt)
		qf_put_record(b, QF_REC_RCPT, "Pa@b", 4);
	qf_encode_attempts(att, 0, 0, "");
	qf_put_record(b, QF_REC_ATTEMPTS, att, sizeof(att));
	if (version >= 3)
		qf_put_record(b, QF_REC_WARNED, u64, 8);
}

static void put_min_envelope(buf_t *b, const char *id, bool with_rcpt)
{
	put_envelope_version(b, id, with_rcpt, QF_VERSION);
}

static void put_tail(buf_t *b, const char *content, uint64_t claimed_len)
{
	unsigned char u64[8];

	qf_put_u64(u64, claimed_len);
	qf_put_record(b, QF_REC_CONTENT, u64, 8);
	buf_puts(b, content);
	qf_put_record(b, QF_REC_END, NULL, 0);
}

static void expect_corrupt(const char *spool, const buf_t *b, const char *what)
{
	char *err = NULL;
	int rc = read_bytes(spool, b->data, b->len, &err);

	if (rc != QF_ERR_CORRUPT || err == NULL)
		fail_msg("%s: accepted (rc %d)", what, rc);
	free(err);
}

static void test_crafted_files(void **state)
{
	const char *spool = *state;
	const char *id = "0123456789ABCDEF012";
	buf_t b = BUF_INIT;
	char *err = NULL;

	put_min_envelope(&b, id, true);
	put_tail(&b, "hi\n", 3);
	assert_int_equal(read_bytes(spool, b.data, b.len, &err), 0);

	buf_reset(&b); /* no recipient */
	put_min_envelope(&b, id, false);
	put_tail(&b, "hi\n", 3);
	expect_corrupt(spool, &b, "no recipient");

	buf_reset(&b); /* content length beyond the file */
	put_min_envelope(&b, id, true);
	put_tail(&b, "hi\n", UINT64_MAX - 2);
	expect_corrupt(spool, &b, "huge content length");

	buf_reset(&b); /* content length short: end record not at the end */
	put_min_envelope(&b, id, true);
	put_tail(&b, "hi\n", 2);
	expect_corrupt(spool, &b, "short content length");

	buf_reset(&b); /* unknown record type */
	put_min_envelope(&b, id, true);
	qf_put_record(&b, (enum qf_type)'Z', "x", 1);
	put_tail(&b, "", 0);
	expect_corrupt(spool, &b, "unknown type");

	buf_reset(&b); /* a record length of 4 GiB - 1 */
	qf_put_header(&b);
	buf_append(&b, "T\xff\xff\xff\xff", 5);
	expect_corrupt(spool, &b, "huge record length");

	buf_reset(&b); /* duplicate sender record */
	put_min_envelope(&b, id, true);
	qf_put_record(&b, QF_REC_SENDER, "", 0);
	put_tail(&b, "", 0);
	expect_corrupt(spool, &b, "sender after attempts");

	buf_reset(&b); /* bad status byte, bad id, NUL and LF in text */
	qf_put_header(&b);
	buf_append(&b, "T\0\0\0\x08\0\0\0\0\0\0\0\0", 13);
	qf_put_record(&b, QF_REC_ID, "0123456789abcdef012", QUEUE_ID_LEN);
	expect_corrupt(spool, &b, "lower-case id");

	const char *bad_rcpts[] = { "Qa@b", "Pa\n@b", "P", "Pa\0b" };
	size_t bad_lens[] = { 4, 5, 1, 4 };
	for (size_t i = 0; i < 4; i++) {
		unsigned char u64[8] = { 0 }, att[QF_ATTEMPTS_LEN], flags = 0;
		buf_reset(&b);
		qf_put_header(&b);
		qf_put_record(&b, QF_REC_ARRIVAL, u64, 8);
		qf_put_record(&b, QF_REC_ID, id, QUEUE_ID_LEN);
		qf_put_record(&b, QF_REC_CLIENT, "c", 1);
		qf_put_record(&b, QF_REC_HELO, "h", 1);
		qf_put_record(&b, QF_REC_PROTO, "SMTP", 4);
		qf_put_record(&b, QF_REC_FLAGS, &flags, 1);
		qf_put_record(&b, QF_REC_SENDER, "", 0);
		qf_put_record(&b, QF_REC_DSN, "\0\0", 2);
		qf_put_record(&b, QF_REC_RCPT, bad_rcpts[i], (uint32_t)bad_lens[i]);
		qf_encode_attempts(att, 0, 0, "");
		qf_put_record(&b, QF_REC_ATTEMPTS, att, sizeof(att));
		qf_put_record(&b, QF_REC_WARNED, u64, 8);
		put_tail(&b, "", 0);
		expect_corrupt(spool, &b, bad_rcpts[i]);
	}

	buf_reset(&b); /* wrong version */
	put_min_envelope(&b, id, true);
	put_tail(&b, "", 0);
	b.data[7] = QF_VERSION + 1;
	expect_corrupt(spool, &b, "a newer version");

	buf_reset(&b); /* empty file */
	expect_corrupt(spool, &b, "empty file");
	buf_free(&b);
}

/* ---- notify ------------------------------------------------------------------ */

/* ---- version 2: what the end of the message changed ------------------- */

/* The changes a verdict or a milter records after the content read back
 * in order, with the recipient list and sender they change. */
static void test_end_of_message_changes(void **state)
{
	const char *spool = *state;
	struct queue_envelope env;
	strlist_t rcpts;
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	fill_env(&env, &rcpts);
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, "Subject: x\n\nbody\n", 18, &err), 0);
	assert_int_equal(queue_writer_add_header(w, false, "X-Spam-Flag: YES", &err), 0);
	assert_int_equal(queue_writer_add_header(w, true, "X-Folded: a\n\tb", &err), 0);
	assert_int_equal(queue_writer_remove_header(w, "Subject", 1, &err), 0);
	assert_int_equal(queue_writer_add_rcpt(w, "carol@example.test", &err), 0);
	assert_int_equal(queue_writer_remove_rcpt(w, "bob@example.test", &err), 0);
	assert_int_equal(queue_writer_set_sender(w, "bounces@remote.test", &err), 0);
	/* refused: malformed fields, unknown recipients */
	assert_int_equal(queue_writer_add_header(w, false, "No colon here", &err), -1);
	free(err);
	assert_int_equal(queue_writer_add_header(w, false, "X-Bad: a\nb", &err), -1);
	free(err);
	assert_int_equal(queue_writer_remove_header(w, "Bad Name", 0, &err), -1);
	free(err);
	assert_int_equal(queue_writer_remove_rcpt(w, "nobody@example.test", &err), -1);
	free(err);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	strlist_free(&rcpts);

	char *path = spool_path(spool, "queue", id);
	int fd = open(path, O_RDONLY);
	struct qf_msg m;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	assert_int_equal(m.version, QF_VERSION);
	assert_string_equal(m.sender, "bounces@remote.test");
	assert_int_equal(m.rcpt_count, 3);
	assert_int_equal(m.rcpts[0].status, QF_RCPT_PENDING);
	assert_int_equal(m.rcpts[1].status, QF_RCPT_REMOVED);
	assert_string_equal(m.rcpts[2].addr, "carol@example.test");
	assert_int_equal(qf_pending_count(&m), 2);
	assert_int_equal(m.edit_count, 3);
	assert_int_equal(m.edits[0].type, QF_REC_ADD_HEADER);
	assert_int_equal(m.edits[0].where, QF_HEADER_TOP);
	assert_string_equal(m.edits[0].text, "X-Spam-Flag: YES");
	assert_int_equal(m.edits[1].where, QF_HEADER_END);
	assert_string_equal(m.edits[1].text, "X-Folded: a\n\tb");
	assert_int_equal(m.edits[2].type, QF_REC_DEL_HEADER);
	assert_int_equal(m.edits[2].where, 1);
	assert_string_equal(m.edits[2].text, "Subject");
	assert_int_equal(m.content_len, 18);
	/* the added recipient's status byte is updated in place like the others */
	fd = open(path, O_RDWR);
	assert_int_equal(qf_set_rcpt_status(fd, &m, 2, QF_RCPT_DONE, &err), 0);
	qf_msg_free(&m);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(m.rcpts[2].status, QF_RCPT_DONE);
	close(fd);
	qf_msg_free(&m);
	free(path);
}

/* Files written before the format grew a trailer still read; a version 1
 * file with trailer records, or removed recipients, does not. */
static void test_version_1_files(void **state)
{
	const char *spool = *state;
	const char *id = "0123456789ABCDEF012";
	buf_t b = BUF_INIT;
	char *err = NULL;

	put_envelope_version(&b, id, true, 1);
	put_tail(&b, "hi\n", 3);
	assert_int_equal(read_bytes(spool, b.data, b.len, &err), 0);

	buf_reset(&b);
	put_envelope_version(&b, id, true, 1);
	unsigned char u64[8];
	qf_put_u64(u64, 3);
	qf_put_record(&b, QF_REC_CONTENT, u64, 8);
	buf_puts(&b, "hi\n");
	qf_put_record(&b, QF_REC_NEW_SENDER, "x@y", 3);
	qf_put_record(&b, QF_REC_END, NULL, 0);
	expect_corrupt(spool, &b, "trailer in a version 1 file");

	buf_reset(&b);
	put_min_envelope(&b, id, true);
	b.data[7] = QF_VERSION + 1;
	put_tail(&b, "hi\n", 3);
	expect_corrupt(spool, &b, "a version from the future");
	buf_free(&b);
}

static void test_bad_trailer_records(void **state)
{
	const char *spool = *state;
	const char *id = "0123456789ABCDEF012";
#define PAYLOAD(text) text, sizeof(text) - 1
	struct { const char *payload; size_t len; enum qf_type type; const char *what; } bad[] = {
		{ PAYLOAD("\x00Name value"), QF_REC_ADD_HEADER, "added header without colon" },
		{ PAYLOAD("\x02X-A: b"), QF_REC_ADD_HEADER, "unknown position" },
		{ PAYLOAD("\x00X-A: b\nc"), QF_REC_ADD_HEADER, "LF not folding" },
		{ PAYLOAD("\x00X A: b"), QF_REC_ADD_HEADER, "space in the name" },
		{ PAYLOAD("\0\0\0\x01Sub:ject"), QF_REC_DEL_HEADER, "colon in a removed name" },
		{ PAYLOAD("\0\0\0\x01"), QF_REC_DEL_HEADER, "no name" },
		{ PAYLOAD("Pa\nb"), QF_REC_ADD_RCPT, "LF in an added recipient" },
		{ PAYLOAD("x\x01y"), QF_REC_NEW_SENDER, "control in a new sender" },
		{ PAYLOAD("\0\0\0\x01No colon"), QF_REC_INSERT_HEADER, "inserted header without colon" },
		{ PAYLOAD("\0\0\0\x01X-A: b\nc"), QF_REC_INSERT_HEADER, "inserted LF not folding" },
		{ PAYLOAD("\0\0\0\0\x07SubjectSubject: x"), QF_REC_CHANGE_HEADER, "occurrence 0" },
		{ PAYLOAD("\0\0\0\x01\x50Subject"), QF_REC_CHANGE_HEADER, "name past the record" },
		{ PAYLOAD("\0\0\0\x01\x00Subject: x"), QF_REC_CHANGE_HEADER, "empty name" },
		{ PAYLOAD("\0\0\0\x01\x03a bX: y"), QF_REC_CHANGE_HEADER, "space in a changed name" },
		{ PAYLOAD("\0\0\0\x01\x07Subjectno colon"), QF_REC_CHANGE_HEADER,
		  "new field without colon" },
		{ PAYLOAD("\0\0\0\x01\x07SubjectX: a\x01"), QF_REC_CHANGE_HEADER,
		  "control in a new field" },
		{ PAYLOAD("\0\0\0"), QF_REC_NEW_BODY, "short body record" },
		{ PAYLOAD("\0\0\0\0\0\0\x01\0"), QF_REC_NEW_BODY, "body past the end of the file" },
	};
#undef PAYLOAD
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		buf_t b = BUF_INIT;
		unsigned char u64[8];
		put_min_envelope(&b, id, true);
		qf_put_u64(u64, 0);
		qf_put_record(&b, QF_REC_CONTENT, u64, 8);
		qf_put_record(&b, bad[i].type, bad[i].payload, (uint32_t)bad[i].len);
		qf_put_record(&b, QF_REC_END, NULL, 0);
		expect_corrupt(spool, &b, bad[i].what);
		buf_free(&b);
	}
}

/* Version 4's records (insert, change, new body) are corruption in the
 * files of older versions, which still read without them. */
static void test_version_4_records_in_older_files(void **state)
{
	const char *spool = *state;
	const char *id = "0123456789ABCDEF012";
	static const struct { enum qf_type type; const char *payload; size_t len; } v4[] = {
		{ QF_REC_INSERT_HEADER, "\0\0\0\0X: y", 8 },
		{ QF_REC_CHANGE_HEADER, "\0\0\0\x01\x01X", 6 },
		{ QF_REC_NEW_BODY, "\0\0\0\0\0\0\0\0", 8 },
	};
	char *err = NULL;

	for (int version = 2; version <= 4; version++) {
		for (size_t i = 0; i < ARRAY_LEN(v4); i++) {
			buf_t b = BUF_INIT;
			unsigned char u64[8];
			put_envelope_version(&b, id, true, version);
			qf_put_u64(u64, 3);
			qf_put_record(&b, QF_REC_CONTENT, u64, 8);
			buf_puts(&b, "hi\n");
			qf_put_record(&b, v4[i].type, v4[i].payload, (uint32_t)v4[i].len);
			qf_put_record(&b, QF_REC_END, NULL, 0);
			if (version < 4)
				expect_corrupt(spool, &b, "a version 4 record in an older file");
			else
				assert_int_equal(read_bytes(spool, b.data, b.len, &err), 0);
			buf_free(&b);
		}
	}
}

/* The q record: what the smtp worker knew when it quarantined a message
 * reads back as written; text is cleaned and cut, never refused. */
static void test_quarantine_note(void **state)
{
	const char *spool = *state;
	struct queue_envelope env;
	strlist_t rcpts, hits = { NULL, 0 };
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	char long_text[QF_NOTE_TEXT_MAX + 40];

	fill_env(&env, &rcpts);
	queue_id_new(id);
	/* 510 ASCII bytes then "é" (2 bytes) straddling the bound, then more */
	memset(long_text, 'a', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	long_text[QF_NOTE_TEXT_MAX - 1] = (char)0xc3;
	long_text[QF_NOTE_TEXT_MAX] = (char)0xa9;
	strlist_add(&hits, "virus:Eicar-Test-Signature");
	strlist_add(&hits, "");
	strlist_add(&hits, "attachment:bad\x01name.exe");
	for (int i = 0; i < 40; i++)
		strlist_add(&hits, "rule:many");
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, "Subject: x\n\nbody\n", 18, &err), 0);
	struct queue_note note = { false, "scan", "virus", long_text, &hits };
	assert_int_equal(queue_writer_set_note(w, &note, &err), 0);
	assert_int_equal(queue_writer_set_note(w, &note, &err), -1); /* one per message */
	assert_string_equal(err, "the message already has a quarantine note");
	free(err);
	assert_int_equal(queue_writer_commit_to(&w, "quarantine", &err), 0);

	char *path = spool_path(spool, "quarantine", id);
	int fd = open(path, O_RDONLY);
	struct qf_msg m;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	assert_int_equal(m.note.verdict, QF_NOTE_QUARANTINE);
	assert_string_equal(m.note.check, "scan");
	assert_string_equal(m.note.reason, "virus");
	assert_int_equal(strlen(m.note.text), QF_NOTE_TEXT_MAX - 1); /* not mid-character */
	assert_int_equal(m.note.hits.count, QF_NOTE_HITS_MAX);
	assert_string_equal(m.note.hits.items[0], "virus:Eicar-Test-Signature");
	assert_string_equal(m.note.hits.items[1], "attachment:bad?name.exe");
	assert_string_equal(m.note.hits.items[2], "rule:many");
	assert_int_equal(m.edit_count, 0);
	assert_int_equal(m.content_len, 18);
	qf_msg_free(&m);
	free(path);

	/* a hold note with nothing known, and a file without a note */
	queue_id_new(id);
	w = queue_writer_open(spool, id, &env, &err);
	assert_non_null(w);
	struct queue_note hold = { true, NULL, NULL, NULL, NULL };
	assert_int_equal(queue_writer_set_note(w, &hold, &err), 0);
	assert_int_equal(queue_writer_commit_to(&w, "hold", &err), 0);
	path = spool_path(spool, "hold", id);
	fd = open(path, O_RDONLY);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	assert_int_equal(m.note.verdict, QF_NOTE_HOLD);
	assert_string_equal(m.note.check, "");
	assert_string_equal(m.note.text, "");
	assert_int_equal(m.note.hits.count, 0);
	qf_msg_free(&m);
	free(path);
	path = spool_path(spool, "queue", write_message(spool, "x\n", 2));
	fd = open(path, O_RDONLY);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	close(fd);
	assert_int_equal(m.note.verdict, 0);
	assert_null(m.note.text);
	qf_msg_free(&m);
	free(path);
	strlist_free(&hits);
	strlist_free(&rcpts);
}

/* A q record that is malformed, repeated, or in a version 1 file makes
 * the file corrupt. */
static void test_bad_quarantine_notes(void **state)
{
	const char *spool = *state;
	const char *id = "0123456789ABCDEF012";
#define PAYLOAD(text) text, sizeof(text) - 1
	struct { const char *payload; size_t len; const char *what; } bad[] = {
		{ PAYLOAD("X\0\0\0\0\0\0\0\0"), "unknown verdict" },
		{ PAYLOAD("Q\0\0\0\0\0\0\0"), "too short" },
		{ PAYLOAD("Q\0\x20" "scan\0\0\0\0\0\0"), "string longer than the payload" },
		{ PAYLOAD("Q\0\0\0\0\0\x03" "a\nb\0\0"), "control character in the text" },
		{ PAYLOAD("Q\0\0\0\0\0\0\0\x01\0\0"), "empty hit" },
		{ PAYLOAD("Q\0\0\0\0\0\0\0\x02\0\x01x"), "fewer hits than counted" },
		{ PAYLOAD("Q\0\0\0\0\0\0\0\0x"), "bytes after the hits" },
		{ PAYLOAD("Q\0\0\0\0\0\0\0\x00\x21"), "too many hits" },
		{ PAYLOAD("Q\0\x01\0\0\0\0\0\0\0"), "NUL in the check name" },
	};
#undef PAYLOAD
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		buf_t b = BUF_INIT;
		unsigned char u64[8];
		put_min_envelope(&b, id, true);
		qf_put_u64(u64, 0);
		qf_put_record(&b, QF_REC_CONTENT, u64, 8);
		qf_put_record(&b, QF_REC_NOTE, bad[i].payload, (uint32_t)bad[i].len);
		qf_put_record(&b, QF_REC_END, NULL, 0);
		expect_corrupt(spool, &b, bad[i].what);
		buf_free(&b);
	}
	const char good[] = "H\0\0\0\0\0\0\0\0";
	for (int version = 1; version <= 2; version++) {
		for (int copies = 1; copies <= 2; copies++) {
			buf_t b = BUF_INIT;
			unsigned char u64[8];
			char *err = NULL;
			put_envelope_version(&b, id, true, version);
			qf_put_u64(u64, 0);
			qf_put_record(&b, QF_REC_CONTENT, u64, 8);
			for (int c = 0; c < copies; c++)
				qf_put_record(&b, QF_REC_NOTE, good, sizeof(good) - 1);
			qf_put_record(&b, QF_REC_END, NULL, 0);
			if (version == 2 && copies == 1)
				assert_int_equal(read_bytes(spool, b.data, b.len, &err), 0);
			else
				expect_corrupt(spool, &b, version == 1 ? "note in version 1"
								       : "two notes");
			buf_free(&b);
		}
	}
}

/* Version 3's DSN records: the warning time is rewritten in place; bad
 * N, O and W records, an O that does not follow its R, and version 3
 * records in older files make the file corrupt; a version 2 file reads
 * without them and cannot record a warning. */
static void test_dsn_records(void **state)
{
	const char *spool = *state;
	const char *id = "0123456789ABCDEF012";
	char *err = NULL;
	struct qf_msg m;

	char *path = spool_path(spool, "queue", write_message(spool, "x\n", 2));
	int fd = open(path, O_RDWR);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(qf_set_delay_warned(fd, &m, 1700001234, &err), 0);
	qf_msg_free(&m);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(m.delay_warned, 1700001234);
	assert_int_equal(m.rcpt_count, 2);
	close(fd);
	qf_msg_free(&m);
	free(path);

#define PAYLOAD(text) text, sizeof(text) - 1
	struct { const char *payload; size_t len; enum qf_type type; const char *what; } bad[] = {
		{ PAYLOAD("X\0"), QF_REC_DSN, "unknown origin" },
		{ PAYLOAD("\0X"), QF_REC_DSN, "unknown RET" },
		{ PAYLOAD("\0Fa\x01b"), QF_REC_DSN, "control in ENVID" },
		{ PAYLOAD("\0F\xc3\xa9"), QF_REC_DSN, "8-bit ENVID" },
		{ PAYLOAD("\x03"), QF_REC_RCPT_DSN, "NEVER with another bit" },
		{ PAYLOAD("\x10"), QF_REC_RCPT_DSN, "unknown NOTIFY bit" },
		{ PAYLOAD("\x04rfc822"), QF_REC_RCPT_DSN, "ORCPT without ';'" },
		{ PAYLOAD("\x04rfc822;"), QF_REC_RCPT_DSN, "ORCPT without address" },
		{ PAYLOAD("\x04rfc822;a\xc3\xa9"), QF_REC_RCPT_DSN, "8-bit rfc822 ORCPT" },
		{ PAYLOAD("\x04utf-8;a\xc3"), QF_REC_RCPT_DSN, "broken UTF-8 ORCPT" },
		{ PAYLOAD("\x04x y;a"), QF_REC_RCPT_DSN, "space in the address type" },
	};
#undef PAYLOAD
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		unsigned char u64[8] = { 0 }, att[QF_ATTEMPTS_LEN], flags = 0;
		buf_t b = BUF_INIT;
		qf_put_header(&b);
		qf_put_record(&b, QF_REC_ARRIVAL, u64, 8);
		qf_put_record(&b, QF_REC_ID, id, QUEUE_ID_LEN);
		qf_put_record(&b, QF_REC_CLIENT, "c", 1);
		qf_put_record(&b, QF_REC_HELO, "h", 1);
		qf_put_record(&b, QF_REC_PROTO, "SMTP", 4);
		qf_put_record(&b, QF_REC_FLAGS, &flags, 1);
		qf_put_record(&b, QF_REC_SENDER, "", 0);
		if (bad[i].type == QF_REC_DSN) {
			qf_put_record(&b, QF_REC_DSN, bad[i].payload, (uint32_t)bad[i].len);
			qf_put_record(&b, QF_REC_RCPT, "Pa@b", 4);
		} else {
			qf_put_record(&b, QF_REC_DSN, "\0\0", 2);
			qf_put_record(&b, QF_REC_RCPT, "Pa@b", 4);
			qf_put_record(&b, QF_REC_RCPT_DSN, bad[i].payload, (uint32_t)bad[i].len);
		}
		qf_encode_attempts(att, 0, 0, "");
		qf_put_record(&b, QF_REC_ATTEMPTS, att, sizeof(att));
		qf_put_record(&b, QF_REC_WARNED, u64, 8);
		put_tail(&b, "", 0);
		expect_corrupt(spool, &b, bad[i].what);
		buf_free(&b);
	}

	/* order: an O needs its R right before it; N and W are required in
	 * version 3 and refused before */
	for (int version = 2; version <= 3; version++) {
		for (int variant = 0; variant < 4; variant++) {
			unsigned char u64[8] = { 0 }, att[QF_ATTEMPTS_LEN], flags = 0;
			buf_t b = BUF_INIT;
			bool with_n = version == 3 ? variant != 1 : variant == 1;
			bool with_w = version == 3 ? variant != 2 : variant == 2;
			qf_put_header(&b);
			b.data[7] = (char)version;
			qf_put_record(&b, QF_REC_ARRIVAL, u64, 8);
			qf_put_record(&b, QF_REC_ID, id, QUEUE_ID_LEN);
			qf_put_record(&b, QF_REC_CLIENT, "c", 1);
			qf_put_record(&b, QF_REC_HELO, "h", 1);
			qf_put_record(&b, QF_REC_PROTO, "SMTP", 4);
			qf_put_record(&b, QF_REC_FLAGS, &flags, 1);
			qf_put_record(&b, QF_REC_SENDER, "", 0);
			if (with_n)
				qf_put_record(&b, QF_REC_DSN, "\0H", 2);
			qf_put_record(&b, QF_REC_RCPT, "Pa@b", 4);
			if (variant == 3) { /* two O for one R */
				qf_put_record(&b, QF_REC_RCPT_DSN, "\x04", 1);
				qf_put_record(&b, QF_REC_RCPT_DSN, "\x08", 1);
			}
			qf_encode_attempts(att, 0, 0, "");
			qf_put_record(&b, QF_REC_ATTEMPTS, att, sizeof(att));
			if (with_w)
				qf_put_record(&b, QF_REC_WARNED, u64, 8);
			put_tail(&b, "hi\n", 3);
			if (variant == 0) {
				assert_int_equal(read_bytes(spool, b.data, b.len, &err), 0);
			} else {
				char what[64];
				snprintf(what, sizeof(what), "version %d variant %d", version, variant);
				expect_corrupt(spool, &b, what);
			}
			buf_free(&b);
		}
	}

	/* a version 2 file has no W: it reads, but cannot record a warning */
	buf_t b = BUF_INIT;
	put_envelope_version(&b, id, true, 2);
	put_tail(&b, "hi\n", 3);
	path = spool_path(spool, "queue", id);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_int_equal(m.delay_warned_off, 0);
	assert_null(m.dsn_envid);
	assert_int_equal(qf_set_delay_warned(fd, &m, 5, &err), -1);
	free(err);
	close(fd);
	qf_msg_free(&m);
	free(path);
	buf_free(&b);
}

static void test_notify(void **state)
{
	int p[2];
	char id[QUEUE_ID_LEN + 1], back[QUEUE_ID_LEN + 1];
	unsigned char rec[QF_NOTIFY_LEN];

	(void)state;
	assert_int_equal(pipe(p), 0);
	queue_id_new(id);
	queue_notify(p[1], id);
	assert_int_equal(read(p[0], rec, sizeof(rec)), QF_NOTIFY_LEN);
	unsigned flags = 99;
	assert_true(qf_notify_decode(rec, back, &flags));
	assert_string_equal(back, id);
	assert_int_equal(flags, 0);
	rec[30] = 1;
	assert_false(qf_notify_decode(rec, back, &flags));
	/* the flags byte: only QF_NOTIFY_NO_TOKEN is known */
	queue_notify_flags(p[1], id, QF_NOTIFY_NO_TOKEN);
	assert_int_equal(read(p[0], rec, sizeof(rec)), QF_NOTIFY_LEN);
	assert_int_equal(rec[23], QF_NOTIFY_NO_TOKEN);
	assert_true(qf_notify_decode(rec, back, &flags));
	assert_int_equal(flags, QF_NOTIFY_NO_TOKEN);
	rec[23] = 0x02;
	assert_false(qf_notify_decode(rec, back, &flags));
	queue_notify(-1, id); /* no-op */

	/* A full pipe never blocks the caller. */
	int n = 0;
	while (n < 100000) {
		queue_notify(p[1], id);
		if (fcntl(p[1], F_GETFL) & O_NONBLOCK) {
			ssize_t w = write(p[1], rec, sizeof(rec));
			if (w < 0 && errno == EAGAIN)
				break;
		}
		n++;
	}
	assert_true(n < 100000);
	queue_notify(p[1], id);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_format_and_order),
		cmocka_unit_test(test_id_valid),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_large_content, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_in_place_updates, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_abort_and_rejects, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_helo_is_cleaned, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_truncated_rejected, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_every_byte_flipped, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_crafted_files, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_end_of_message_changes, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_version_1_files, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_bad_trailer_records, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_version_4_records_in_older_files, setup_spool,
						teardown_spool),
		cmocka_unit_test_setup_teardown(test_quarantine_note, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_bad_quarantine_notes, setup_spool, teardown_spool),
		cmocka_unit_test_setup_teardown(test_dsn_records, setup_spool, teardown_spool),
		cmocka_unit_test(test_notify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
