/*
 * test_queue_edits.c - the finer end-of-message changes of queue file
 * version 4 (a milter's): header fields inserted at an index, changed or
 * removed by occurrence, the body replaced. Each is written with the
 * queue writer, read back with qf_read, and delivered into a Maildir,
 * whose copy must hold exactly the edited message (and S=/W= its size);
 * the delivery reports and the commands' header view read the same
 * edited message.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/bounce.h"
#include "queue/maildir.h"
#include "queue/maildir_header.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

TESTUTIL_PRIVATE_DIR("queue-edits")

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static char *spool, *mail_root;

static int group_setup(void **state)
{
	char *err = NULL;

	if (setup(state) != 0)
		return -1;
	spool = safeio_path_join(dir, "spool");
	mail_root = safeio_path_join(dir, "mail");
	return queue_dirs_create(spool, &err);
}

static int group_teardown(void **state)
{
	free(spool);
	free(mail_root);
	return teardown(state);
}

typedef void (*edit_fn)(struct queue_writer *w);

/* Queue content with the changes fn records; open the committed file as
 * *fd_r / *m_r. */
static void queue_with(const char *content, size_t len, edit_fn fn, char dsn_ret, int *fd_r,
		       struct qf_msg *m_r)
{
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	strlist_t rcpts = { NULL, 0 };

	strlist_add(&rcpts, "u@example.test");
	struct queue_envelope env = {
		.arrival_us = 1700000000999999ull, .client_addr = "192.0.2.1",
		.client_helo = "h", .protocol = "ESMTP", .sender = "s@remote.test",
		.recipients = &rcpts, .dsn_ret = dsn_ret,
	};
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, content, len, &err), 0);
	if (fn != NULL)
		fn(w);
	if (queue_writer_commit(&w, &err) != 0)
		fail_msg("commit: %s", err);
	strlist_free(&rcpts);
	buf_t path = BUF_INIT;
	buf_printf(&path, "%s/queue/%s", spool, id);
	*fd_r = open(path.data, O_RDONLY);
	assert_true(*fd_r >= 0);
	if (qf_read(*fd_r, m_r, &err) != 0)
		fail_msg("qf_read: %s", err);
	buf_free(&path);
}

/* The copy of message id in u@example.test's new/, and its name. */
static void read_copy(const char *id, buf_t *copy, buf_t *name)
{
	buf_t newdir = BUF_INIT;
	buf_printf(&newdir, "%s/example.test/u/Maildir/new", mail_root);
	DIR *d = opendir(newdir.data);
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, id) != NULL)
			break;
	assert_non_null(de);
	buf_puts(name, de->d_name);
	buf_t path = BUF_INIT;
	buf_printf(&path, "%s/%s", newdir.data, de->d_name);
	closedir(d);
	assert_int_equal(safeio_read_file(path.data, 64u << 20, copy), 0);
	buf_free(&path);
	buf_free(&newdir);
}

/*
 * Deliver content with fn's changes into a Maildir; return what follows
 * the two lines the delivery adds (malloc'ed). The name's S= and W= must
 * be the copy's size and its size with CRLF line ends.
 */
static char *deliver_len(const char *content, size_t len, edit_fn fn, size_t *len_r)
{
	struct qf_msg m;
	int fd;
	char *err = NULL;

	queue_with(content, len, fn, 0, &fd, &m);
	struct maildir_delivery d = {
		.mail_root = mail_root, .hostname = "mx.example.test",
		.address = "u@example.test", .queue_fd = fd, .msg = &m,
	};
	if (maildir_deliver(&d, &err) != MAILDIR_DELIVERED)
		fail_msg("deliver: %s", err);
	buf_t copy = BUF_INIT, name = BUF_INIT;
	read_copy(m.id, &copy, &name);
	size_t lfs = 0;
	for (size_t i = 0; i < copy.len; i++)
		lfs += copy.data[i] == '\n';
	buf_t want = BUF_INIT;
	buf_printf(&want, ",S=%zu,W=%zu", copy.len, copy.len + lfs);
	assert_non_null(strstr(name.data, want.data));
	static const char top[] = "Return-Path: <s@remote.test>\nDelivered-To: u@example.test\n";
	assert_true(copy.len >= sizeof(top) - 1);
	assert_memory_equal(copy.data, top, sizeof(top) - 1);
	*len_r = copy.len - (sizeof(top) - 1);
	char *rest = xmalloc(*len_r + 1);
	memcpy(rest, copy.data + sizeof(top) - 1, *len_r);
	rest[*len_r] = '\0';
	buf_free(&copy);
	buf_free(&name);
	buf_free(&want);
	qf_msg_free(&m);
	close(fd);
	return rest;
}

static char *deliver(const char *content, edit_fn fn)
{
	size_t len;
	return deliver_len(content, strlen(content), fn, &len);
}

/* A change the writer must take (err: the caller's error string). */
#define OK(call)                                                               \
	do {                                                                   \
		if ((call) != 0)                                               \
			fail_msg("refused: %s", err != NULL ? err : "?");      \
	} while (0)

/* ---- writer and reader ---------------------------------------------------- */

static void record_all(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_add_header(w, true, "X-Added: 1", &err));
	OK(queue_writer_insert_header(w, 3, "X-Ins: a\n\tb", &err));
	OK(queue_writer_change_header(w, "Subject", 2, "Subject: new", &err));
	OK(queue_writer_replace_body(w, "first\n", 6, &err));
	OK(queue_writer_change_header(w, "X-Gone", 1, NULL, &err));
	OK(queue_writer_replace_body(w, "second body\n", 12, &err));
	OK(queue_writer_remove_header(w, "X-Old", 0, &err));
	/* refused: the content is complete once a body replaced it */
	assert_int_equal(queue_writer_write(w, "more", 4, &err), -1);
	free(err);
	assert_int_equal(queue_writer_insert_header(w, 0, "no colon", &err), -1);
	free(err);
	assert_int_equal(queue_writer_insert_header(w, 0, "X-A: b\nc", &err), -1);
	free(err);
	assert_int_equal(queue_writer_change_header(w, "Subject", 0, "Subject: x", &err), -1);
	free(err);
	assert_int_equal(queue_writer_change_header(w, "Bad Name", 1, NULL, &err), -1);
	free(err);
	assert_int_equal(queue_writer_change_header(w, "Subject", 1, "Subject: a\x01", &err), -1);
	free(err);
}

/* Every version 4 record reads back in file order with the older ones;
 * the body is an offset and length in the file, the last one counts. */
static void test_roundtrip(void **state)
{
	static const char content[] = "Received: r\nSubject: s\n\nold body\n";
	struct qf_msg m;
	int fd;
	char body[32];

	(void)state;
	queue_with(content, sizeof(content) - 1, record_all, 0, &fd, &m);
	assert_int_equal(m.version, 4);
	assert_int_equal(m.edit_count, 5);
	assert_int_equal(m.edits[0].type, QF_REC_ADD_HEADER);
	assert_int_equal(m.edits[1].type, QF_REC_INSERT_HEADER);
	assert_int_equal(m.edits[1].where, 3);
	assert_string_equal(m.edits[1].text, "X-Ins: a\n\tb");
	assert_null(m.edits[1].field);
	assert_int_equal(m.edits[2].type, QF_REC_CHANGE_HEADER);
	assert_int_equal(m.edits[2].where, 2);
	assert_string_equal(m.edits[2].text, "Subject");
	assert_string_equal(m.edits[2].field, "Subject: new");
	assert_int_equal(m.edits[3].type, QF_REC_CHANGE_HEADER);
	assert_string_equal(m.edits[3].text, "X-Gone");
	assert_null(m.edits[3].field);
	assert_int_equal(m.edits[4].type, QF_REC_DEL_HEADER);
	assert_string_equal(m.edits[4].text, "X-Old");
	assert_int_equal(m.content_len, sizeof(content) - 1);
	assert_true(m.body_replaced);
	assert_int_equal(m.body_len, 12);
	assert_int_equal(m.head_len, strlen("Received: r\nSubject: s\n\n"));
	assert_int_equal(m.head_sep_len, 0);
	assert_int_equal(pread(fd, body, 12, (off_t)m.body_off), 12);
	assert_memory_equal(body, "second body\n", 12);
	assert_int_equal(qf_message_size(&m), m.head_len + 12);
	/* the content itself is still the client's */
	assert_int_equal(pread(fd, body, 8, (off_t)(m.content_off + m.head_len)), 8);
	assert_memory_equal(body, "old body", 8);
	qf_msg_free(&m);
	close(fd);
}

/* ---- what each change does to the delivered copy ------------------------ */

static void order_edits(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_insert_header(w, 0, "X-First: 1", &err));
	OK(queue_writer_insert_header(w, 2, "X-Second: 2", &err));
	OK(queue_writer_add_header(w, false, "X-Top: t", &err));
	OK(queue_writer_add_header(w, true, "X-End: e", &err));
	OK(queue_writer_insert_header(w, 100, "X-Beyond: b", &err));
	OK(queue_writer_insert_header(w, 7, "X-Seven: 7", &err));
}

/* Each index counts the header section as the changes before it left it:
 * 0 is above postern's own Received:, past the end is at the end. */
static void test_header_order(void **state)
{
	(void)state;
	char *out = deliver("Received: by postern\nFrom: a@x\nTo: b@y\nSubject: s\n\nbody\n",
			    order_edits);
	assert_string_equal(out, "X-First: 1\n"
				 "Received: by postern\n"
				 "X-Top: t\n"
				 "X-Second: 2\n"
				 "From: a@x\n"
				 "To: b@y\n"
				 "Subject: s\n"
				 "X-Seven: 7\n"
				 "X-End: e\n"
				 "X-Beyond: b\n"
				 "\n"
				 "body\n");
	free(out);
}

static void folded_edits(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_change_header(w, "subject", 1, "Subject: new\n\tfolded too", &err));
	OK(queue_writer_insert_header(w, 1, "X-Ins: a\n b", &err));
}

/* A changed field loses its continuation lines with it; folded new
 * fields keep theirs. */
static void test_folded_values(void **state)
{
	(void)state;
	char *out = deliver("Received: r\nSubject: old\n  continued\nX-Keep: k\n\tfold\n\nbody\n",
			    folded_edits);
	assert_string_equal(out, "Received: r\n"
				 "X-Ins: a\n b\n"
				 "Subject: new\n\tfolded too\n"
				 "X-Keep: k\n\tfold\n"
				 "\n"
				 "body\n");
	free(out);
}

static void occurrence_edits(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_change_header(w, "X-R", 2, "X-R: second", &err));
	/* counts the field the change before put there */
	OK(queue_writer_change_header(w, "X-R", 2, "X-R: again", &err));
	OK(queue_writer_change_header(w, "x-r", 9, NULL, &err)); /* no such one */
	OK(queue_writer_change_header(w, "X-R", 3, NULL, &err));
	/* counts the client's Return-Path:, which the delivery drops */
	OK(queue_writer_insert_header(w, 2, "X-At2: y", &err));
	/* an x record counts the content's own fields only */
	OK(queue_writer_remove_header(w, "X-R", 1, &err));
}

static void test_occurrences(void **state)
{
	(void)state;
	char *out = deliver("Received: r\nX-R: one\nReturn-Path: <forged@x>\nX-R: two\n"
			    "x-r : three\n\nbody\n", occurrence_edits);
	assert_string_equal(out, "Received: r\nX-At2: y\nX-R: again\n\nbody\n");
	free(out);
}

static void no_such_edits(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_change_header(w, "X-Missing", 1, "X-Missing: x", &err));
	OK(queue_writer_change_header(w, "Subject", 2, NULL, &err));
}

/* A change of an occurrence that is not there adds its field at the end
 * (smfi_chgheader(3)); a removal of one leaves the message alone. */
static void test_change_of_nothing(void **state)
{
	(void)state;
	char *out = deliver("Received: r\nSubject: s\n\nbody\n", no_such_edits);
	assert_string_equal(out, "Received: r\nSubject: s\nX-Missing: x\n\nbody\n");
	free(out);
}

/* ---- the body ------------------------------------------------------------------ */

static const char *new_body;

static void replace(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_replace_body(w, new_body, strlen(new_body), &err));
}

static void replace_twice_with_headers(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_add_header(w, true, "X-Before: 1", &err));
	OK(queue_writer_replace_body(w, "not this\n", 9, &err));
	OK(queue_writer_insert_header(w, 0, "X-After: 2", &err));
	OK(queue_writer_replace_body(w, "this\n", 5, &err));
}

static void test_replaced_body(void **state)
{
	static const struct { const char *content, *body, *want; } cases[] = {
		{ "Received: r\nSubject: s\n\nold\nbody\n", "new body\n",
		  "Received: r\nSubject: s\n\nnew body\n" },
		{ "Received: r\nSubject: s\n\nold\n", "no line end",
		  "Received: r\nSubject: s\n\nno line end" },
		{ "Received: r\nSubject: s\n\nold\n", "", "Received: r\nSubject: s\n\n" },
		/* no empty line in the content: one is added */
		{ "Received: r\nSubject: s\n", "b\n", "Received: r\nSubject: s\n\nb\n" },
		{ "Received: r\nSubject: s", "b\n", "Received: r\nSubject: s\n\nb\n" },
		{ "\nold\n", "b\n", "\nb\n" },
		{ "", "b\n", "\nb\n" },
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		new_body = cases[i].body;
		char *out = deliver(cases[i].content, replace);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu: got \"%s\"", i, out);
		free(out);
	}
	char *out = deliver("Received: r\n\nold\n", replace_twice_with_headers);
	assert_string_equal(out, "X-After: 2\nReceived: r\nX-Before: 1\n\nthis\n");
	free(out);
}

/* A body bigger than every buffer on the way, with header changes: the
 * copy is exact, byte for byte. */
static void test_large_body(void **state)
{
	(void)state;
	buf_t body = BUF_INIT, want = BUF_INIT;
	for (int i = 0; body.len < (3u << 20) + 12345; i++)
		buf_printf(&body, "line %d of the new body, long enough to matter\n", i);
	buf_puts(&body, "last line without its end");
	new_body = body.data;
	static const char content[] = "Received: r\nSubject: big\n\nsmall old body\n";
	buf_puts(&want, "Received: r\nSubject: big\n\n");
	buf_append(&want, body.data, body.len);
	size_t len;
	char *out = deliver_len(content, sizeof(content) - 1, replace, &len);
	assert_int_equal(len, want.len);
	assert_memory_equal(out, want.data, want.len);
	free(out);
	buf_free(&body);
	buf_free(&want);
}

/* ---- the other readers: reports and the commands' header view ------------ */

static void report_edits(struct queue_writer *w)
{
	char *err = NULL;
	OK(queue_writer_change_header(w, "Subject", 1, "Subject: [milter] s", &err));
	OK(queue_writer_replace_body(w, "clean body\n", 11, &err));
}

static void test_reports_and_views(void **state)
{
	static const char content[] = "Received: r\nSubject: s\n\ninfected body\n";
	struct qf_msg m;
	int fd;
	char *err = NULL;

	(void)state;
	queue_with(content, sizeof(content) - 1, report_edits, DSN_RET_FULL, &fd, &m);
	buf_t view = BUF_INIT;
	assert_int_equal(mhdr_read_message(fd, &m, true, 4096, &view, &err), 0);
	assert_string_equal(buf_cstr(&view), "Received: r\nSubject: [milter] s\n\n");
	buf_reset(&view);
	assert_int_equal(mhdr_read_message(fd, &m, false, 4096, &view, &err), 0);
	assert_string_equal(buf_cstr(&view), "Received: r\nSubject: [milter] s\n\nclean body\n");
	buf_free(&view);

	struct bounce_item item = { "u@example.test", NULL, NULL, "5.1.1 unknown user", NULL };
	for (int full = 0; full <= 1; full++) {
		m.dsn_ret = full ? DSN_RET_FULL : DSN_RET_HDRS;
		struct bounce_request req = {
			.spool_dir = spool, .hostname = "mx.example.test", .msg = &m,
			.queue_fd = fd, .items = &item, .count = 1,
			.now_us = 1700000000000000ull, .kind = BOUNCE_FAILED,
			.retry_until = 1700400000,
		};
		buf_t out = BUF_INIT;
		assert_int_equal(bounce_build(&out, &req, "0123456789ABCDEF012", &err), 0);
		const char *text = buf_cstr(&out);
		assert_non_null(strstr(text, "Subject: [milter] s\n"));
		assert_null(strstr(text, "infected"));
		if (full)
			assert_non_null(strstr(text, "\n\nclean body\n"));
		else
			assert_null(strstr(text, "clean body"));
		buf_free(&out);
	}
	qf_msg_free(&m);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_header_order),
		cmocka_unit_test(test_folded_values),
		cmocka_unit_test(test_occurrences),
		cmocka_unit_test(test_change_of_nothing),
		cmocka_unit_test(test_replaced_body),
		cmocka_unit_test(test_large_body),
		cmocka_unit_test(test_reports_and_views),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
