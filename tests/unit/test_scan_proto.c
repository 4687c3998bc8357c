/*
 * test_scan_proto.c - the content scanning messages (scan_proto.h) and the
 * verdict's normal form (scan_verdict.c): every type encodes and decodes
 * back to itself, every truncation and a byte left over are refused, each
 * field's bounds and characters are enforced, a REQUEST lists the
 * recipients that fit and says how many there are, and over real
 * SOCK_SEQPACKET sockets a descriptor travels only with a REQUEST and
 * only as a read-only regular file; the scan master's socket works at a
 * path longer than sockaddr_un holds.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "scan/scan_proto.h"

#define ID "660E4F4D8510C00426E"

static void request_msg(struct scan_msg *m)
{
	strlist_t rcpts = { 0 };
	strlist_add(&rcpts, "alice@example.test");
	strlist_add(&rcpts, "bob@example.test");
	scan_msg_init(m, SCAN_MSG_REQUEST);
	m->seq = 42;
	memcpy(m->id, ID, sizeof(m->id));
	m->content_off = 321;
	m->content_len = 98765;
	scan_msg_set_envelope(m, "sender@remote.test", "192.0.2.7", "client.test", &rcpts);
	strlist_free(&rcpts);
}

static void verdict_msg(struct scan_msg *m, enum scan_action a)
{
	scan_msg_init(m, SCAN_MSG_VERDICT);
	m->seq = 7;
	struct scan_verdict *v = &m->verdict;
	scan_verdict_set(v, a, 0, "", a == SCAN_ACCEPT ? "" : "virus", "virus found: %s",
			 "Eicar-Test");
	assert_true(scan_verdict_add_header(v, "X-Postern-Virus: Eicar-Test"));
	assert_true(scan_verdict_add_header(v, "X-Folded: one\n\ttwo"));
	assert_true(scan_verdict_remove_header(v, "X-Spam-Flag"));
	assert_true(scan_verdict_remove_header(v, "x-spam-flag")); /* listed once */
	assert_false(scan_verdict_remove_header(v, "X Spam"));
	assert_false(scan_verdict_remove_header(v, ""));
	scan_verdict_add_hit(v, "virus:Eicar-Test");
	scan_verdict_add_timing(v, "mime", 12);
	scan_verdict_add_timing(v, "antivirus", 3456);
	scan_verdict_normalize(v);
}

static void assert_same(const struct scan_msg *a, const struct scan_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->seq, b->seq);
	if (a->type == SCAN_MSG_REQUEST) {
		assert_string_equal(a->id, b->id);
		assert_true(a->content_off == b->content_off);
		assert_true(a->content_len == b->content_len);
		assert_string_equal(a->sender, b->sender);
		assert_string_equal(a->client_addr, b->client_addr);
		assert_string_equal(a->helo, b->helo);
		assert_int_equal(a->rcpt_total, b->rcpt_total);
		assert_int_equal(a->rcpts.count, b->rcpts.count);
		for (size_t i = 0; i < a->rcpts.count; i++)
			assert_string_equal(a->rcpts.items[i], b->rcpts.items[i]);
	}
	if (a->type == SCAN_MSG_VERDICT) {
		const struct scan_verdict *x = &a->verdict, *y = &b->verdict;
		assert_int_equal(x->action, y->action);
		assert_int_equal(x->code, y->code);
		assert_string_equal(x->status, y->status);
		assert_string_equal(x->text, y->text);
		assert_string_equal(x->reason, y->reason);
		assert_int_equal(x->headers.count, y->headers.count);
		for (size_t i = 0; i < x->headers.count; i++)
			assert_string_equal(x->headers.items[i], y->headers.items[i]);
		assert_int_equal(x->remove_headers.count, y->remove_headers.count);
		for (size_t i = 0; i < x->remove_headers.count; i++)
			assert_string_equal(x->remove_headers.items[i], y->remove_headers.items[i]);
		assert_int_equal(x->hits.count, y->hits.count);
		for (size_t i = 0; i < x->hits.count; i++)
			assert_string_equal(x->hits.items[i], y->hits.items[i]);
		assert_int_equal(x->timing_count, y->timing_count);
		for (size_t i = 0; i < x->timing_count; i++) {
			assert_string_equal(x->timings[i].stage, y->timings[i].stage);
			assert_int_equal(x->timings[i].us, y->timings[i].us);
		}
	}
}

/* Encode, decode, compare; refuse every shorter prefix and one extra byte. */
static void roundtrip(const struct scan_msg *m)
{
	buf_t b = BUF_INIT;
	struct scan_msg back;
	const char *err = NULL;
	scan_msg_encode(m, &b);
	assert_true(b.len <= SCAN_MSG_MAX);
	if (scan_msg_decode((unsigned char *)b.data, b.len, &back, &err) != 0)
		fail_msg("decode of type %#x failed: %s", (unsigned)m->type, err);
	assert_same(m, &back);
	scan_msg_free(&back);
	for (size_t cut = 0; cut < b.len; cut++) {
		assert_int_equal(scan_msg_decode((unsigned char *)b.data, cut, &back, &err), -1);
		scan_msg_free(&back);
	}
	buf_putc(&b, 0);
	assert_int_equal(scan_msg_decode((unsigned char *)b.data, b.len, &back, &err), -1);
	assert_string_equal(err, "bytes left over after the last field");
	scan_msg_free(&back);
	buf_free(&b);
}

static void test_roundtrip_every_type(void **state)
{
	(void)state;
	struct scan_msg m;
	request_msg(&m);
	roundtrip(&m);
	scan_msg_free(&m);
	for (int a = SCAN_ACCEPT; a <= SCAN_QUARANTINE; a++) {
		verdict_msg(&m, (enum scan_action)a);
		roundtrip(&m);
		scan_msg_free(&m);
	}
	scan_msg_init(&m, SCAN_MSG_DRAIN);
	roundtrip(&m);
	scan_msg_free(&m);
}

static void test_request_lists_the_recipients_that_fit(void **state)
{
	(void)state;
	strlist_t rcpts = { 0 };
	char addr[QF_ADDR_MAX + 1];
	memset(addr, 'a', 400);
	strcpy(addr + 400, "@example.test");
	for (int i = 0; i < 1000; i++)
		strlist_add(&rcpts, addr);
	struct scan_msg m, back;
	request_msg(&m);
	scan_msg_set_envelope(&m, "", "192.0.2.7", "h", &rcpts);
	buf_t b = BUF_INIT;
	const char *err = NULL;
	scan_msg_encode(&m, &b);
	assert_true(b.len <= SCAN_MSG_MAX);
	assert_int_equal(scan_msg_decode((unsigned char *)b.data, b.len, &back, &err), 0);
	assert_int_equal(back.rcpt_total, 1000);
	assert_true(back.rcpts.count > 100 && back.rcpts.count < 1000);
	assert_string_equal(back.rcpts.items[0], addr);
	assert_string_equal(back.sender, "");
	scan_msg_free(&back);
	scan_msg_free(&m);
	buf_free(&b);
	strlist_free(&rcpts);
}

static void test_envelope_is_cleaned_and_cut(void **state)
{
	(void)state;
	struct scan_msg m;
	char helo[400];
	memset(helo, 'h', sizeof(helo) - 1);
	helo[sizeof(helo) - 1] = '\0';
	helo[3] = '\r';
	request_msg(&m);
	scan_msg_set_envelope(&m, "a\tb@x.test", "192.0.2.1", helo, NULL);
	assert_string_equal(m.sender, "a?b@x.test");
	assert_int_equal(strlen(m.helo), SCAN_HELO_MAX);
	assert_int_equal(m.helo[3], '?');
	assert_int_equal(m.rcpt_total, 0);
	roundtrip(&m);
	scan_msg_free(&m);
}

/* Decode data, expect a refusal naming why (a substring). */
static void assert_refused(const buf_t *b, const char *why)
{
	struct scan_msg back;
	const char *err = NULL;
	assert_int_equal(scan_msg_decode((unsigned char *)b->data, b->len, &back, &err), -1);
	assert_non_null(err);
	if (strstr(err, why) == NULL)
		fail_msg("refused with \"%s\", expected \"%s\"", err, why);
	scan_msg_free(&back);
}

/* The offset of the first occurrence of needle in b. */
static size_t find(const buf_t *b, const char *needle)
{
	const char *p = memmem(b->data, b->len, needle, strlen(needle));
	assert_non_null(p);
	return (size_t)(p - b->data);
}

static void test_request_fields_are_checked(void **state)
{
	(void)state;
	struct scan_msg m;
	buf_t b = BUF_INIT;
	request_msg(&m);
	scan_msg_encode(&m, &b);
	b.data[find(&b, ID)] = 'x'; /* lower case: not a queue id */
	assert_refused(&b, "bad queue id");
	scan_msg_encode(&m, &b);
	b.data[find(&b, "sender@") + 2] = '\n';
	assert_refused(&b, "characters");
	scan_msg_encode(&m, &b);
	/* rcpt_total 2 -> 1, while 2 are listed */
	size_t total_at = find(&b, "client.test") + strlen("client.test");
	assert_int_equal(b.data[total_at + 3], 2);
	b.data[total_at + 3] = 1;
	assert_refused(&b, "more recipients listed");
	/* A content range that wraps around. */
	m.content_off = UINT64_MAX - 10;
	m.content_len = 5;
	scan_msg_encode(&m, &b);
	size_t len_at = find(&b, ID) + QUEUE_ID_LEN + 8;
	memset(b.data + len_at, 0xff, 8);
	assert_refused(&b, "content range overflows");
	buf_free(&b);
	scan_msg_free(&m);
}

static void test_verdict_fields_are_checked(void **state)
{
	(void)state;
	struct scan_msg m;
	buf_t b = BUF_INIT;
	verdict_msg(&m, SCAN_REJECT);
	scan_msg_encode(&m, &b);
	b.data[5] = 9; /* the action */
	assert_refused(&b, "unknown action");
	scan_msg_encode(&m, &b);
	b.data[5] = SCAN_TEMPFAIL; /* a 550 with a tempfail */
	assert_refused(&b, "does not fit the action");
	scan_msg_encode(&m, &b);
	b.data[find(&b, "X-Folded: one") + 14] = 'x'; /* LF not followed by white space */
	assert_refused(&b, "characters");
	scan_msg_encode(&m, &b);
	b.data[find(&b, "virus:Eicar") + 5] = ','; /* commas separate hits in logs */
	assert_refused(&b, "characters");
	scan_msg_encode(&m, &b);
	b.data[find(&b, "antivirus")] = 'A';
	assert_refused(&b, "characters");
	scan_msg_encode(&m, &b);
	b.data[find(&b, "virus found")] = (char)0xc3; /* reply text is ASCII */
	assert_refused(&b, "characters");
	buf_free(&b);
	scan_msg_free(&m);
	verdict_msg(&m, SCAN_ACCEPT);
	scan_msg_encode(&m, &b);
	b.data[7] = 0x02; /* code 512 with an accept */
	assert_refused(&b, "does not fit the action");
	buf_free(&b);
	scan_msg_free(&m);
}

static void test_normal_form(void **state)
{
	(void)state;
	struct scan_verdict v;
	scan_verdict_init(&v);
	scan_verdict_set(&v, SCAN_REJECT, 451, "4.7.1", "rule x!", "bad\x01thing \xc3\xa9");
	strlist_add(&v.headers, "Bad Name: x");
	strlist_add(&v.headers, "X-Ok: y");
	strlist_add(&v.remove_headers, "Bad:Name");
	strlist_add(&v.remove_headers, "X-Spam-Status");
	strlist_add(&v.remove_headers, "X-SPAM-STATUS");
	strlist_add(&v.hits, "rule:a b,c");
	scan_verdict_add_timing(&v, "mime", 5);
	scan_verdict_add_timing(&v, "Bad-Name", 6);
	scan_verdict_normalize(&v);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.status, "5.7.1");
	assert_string_equal(v.text, "bad?thing ??");
	assert_string_equal(v.reason, "rule_x_");
	assert_int_equal(v.headers.count, 1);
	assert_string_equal(v.headers.items[0], "X-Ok: y");
	assert_int_equal(v.remove_headers.count, 1);
	assert_string_equal(v.remove_headers.items[0], "X-Spam-Status");
	assert_string_equal(v.hits.items[0], "rule:a_b_c");
	scan_verdict_add_hit(&v, "attachment:fa\xc3\xa7" "ade\tnotes.zip");
	assert_string_equal(v.hits.items[1], "attachment:fa\xc3\xa7" "ade_notes.zip");
	assert_int_equal(v.timing_count, 1);
	scan_verdict_free(&v);

	scan_verdict_set(&v, SCAN_TEMPFAIL, 452, "5.1.1", "", "%s", "");
	scan_verdict_normalize(&v);
	assert_int_equal(v.code, 452);
	assert_string_equal(v.status, "4.7.0");
	assert_true(v.text[0] != '\0');
	scan_verdict_set(&v, SCAN_QUARANTINE, 550, "5.7.1", "virus", "%s", "held");
	scan_verdict_normalize(&v);
	assert_int_equal(v.code, 0);
	assert_string_equal(v.status, "");
	scan_verdict_free(&v);
}

static void test_failure_verdicts(void **state)
{
	(void)state;
	struct scan_verdict v;
	scan_verdict_init(&v);
	scan_verdict_fail(&v, false, "scan_timeout", "took longer than %ds", 30);
	assert_int_equal(v.action, SCAN_TEMPFAIL);
	assert_int_equal(v.code, 451);
	assert_string_equal(v.status, "4.7.0");
	assert_true(scan_verdict_failed(&v));
	scan_verdict_fail(&v, true, "scan_crashed", "x");
	assert_int_equal(v.action, SCAN_ACCEPT);
	assert_true(scan_verdict_failed(&v));
	scan_verdict_normalize(&v);
	assert_int_equal(v.code, 0);
	scan_verdict_set(&v, SCAN_REJECT, 550, "5.7.1", "virus", "x");
	assert_false(scan_verdict_failed(&v));
	scan_verdict_free(&v);
}

/* ---- over sockets ---------------------------------------------------------- */

static int make_file(const char *dir, int flags)
{
	char *path = safeio_path_join(dir, "spoolfile");
	int fd = open(path, flags | O_CREAT, 0600);
	assert_true(fd >= 0);
	free(path);
	return fd;
}

/* Send raw bytes with an optional descriptor. */
static void send_raw(int sock, const buf_t *b, int fd)
{
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { b->data, b->len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.space;
		mh.msg_controllen = sizeof(ctl.space);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &mh, 0), (ssize_t)b->len);
}

static void expect_violation(int sock, bool requests, const char *why)
{
	struct scan_msg m;
	const char *err = NULL;
	int fd = -2;
	assert_int_equal(scan_recv(sock, requests, &m, &fd, &err), -1);
	assert_int_equal(errno, EPROTO);
	assert_int_equal(fd, -1);
	if (strstr(err, why) == NULL)
		fail_msg("violation \"%s\", expected \"%s\"", err, why);
	scan_msg_free(&m);
}

static void test_transport(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/postern-test-scan-proto-XXXXXX";
	char *dir = mkdtemp(tmpl);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	int ro = make_file(dir, O_RDONLY);
	int rw = make_file(dir, O_RDWR);
	struct scan_msg req, ver, got;
	const char *err = NULL;
	int fd = -1;
	request_msg(&req);
	verdict_msg(&ver, SCAN_TAG);

	/* A REQUEST with a read-only file, a VERDICT without. */
	assert_int_equal(scan_send(sv[0], &req, ro), 0);
	assert_int_equal(scan_recv(sv[1], true, &got, &fd, &err), 1);
	assert_true(fd >= 0);
	assert_same(&req, &got);
	close(fd);
	scan_msg_free(&got);
	assert_int_equal(scan_send(sv[1], &ver, -1), 0);
	assert_int_equal(scan_recv(sv[0], false, &got, &fd, &err), 1);
	assert_int_equal(fd, -1);
	assert_same(&ver, &got);
	scan_msg_free(&got);

	buf_t b = BUF_INIT;
	scan_msg_encode(&req, &b);
	send_raw(sv[0], &b, -1);
	expect_violation(sv[1], true, "wrong number of descriptors");
	send_raw(sv[0], &b, rw);
	expect_violation(sv[1], true, "read-only");
	send_raw(sv[0], &b, ro);
	expect_violation(sv[1], false, "wrong direction");
	scan_msg_encode(&ver, &b);
	send_raw(sv[1], &b, ro);
	expect_violation(sv[0], false, "wrong number of descriptors");
	buf_reset(&b);
	buf_putc(&b, SCAN_MSG_DRAIN);
	for (int i = 0; i < SCAN_MSG_MAX; i++)
		buf_putc(&b, 0);
	send_raw(sv[1], &b, -1);
	expect_violation(sv[0], false, "too long");

	/* Nothing waiting on a non-blocking socket; the end of the stream. */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	assert_int_equal(scan_recv(sv[0], false, &got, &fd, &err), -1);
	assert_int_equal(errno, EAGAIN);
	scan_msg_free(&got);
	close(sv[1]);
	assert_int_equal(scan_recv(sv[0], false, &got, &fd, &err), 0);
	scan_msg_free(&got);
	close(sv[0]);
	close(ro);
	close(rw);
	buf_free(&b);
	scan_msg_free(&req);
	scan_msg_free(&ver);
	testutil_rmtree(dir);
}

static void test_socket_at_a_long_path(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/postern-test-scan-sock-XXXXXX";
	char *dir = mkdtemp(tmpl);
	buf_t deep = BUF_INIT;
	buf_puts(&deep, dir);
	while (deep.len < 150) {
		buf_puts(&deep, "/a-rather-long-folder-name");
		assert_int_equal(mkdir(buf_cstr(&deep), 0700), 0);
	}
	char *path = scan_socket_path(buf_cstr(&deep));
	char *folder = safeio_path_join(buf_cstr(&deep), SCAN_SOCKET_FOLDER);
	assert_int_equal(mkdir(folder, 0700), 0);
	assert_true(strlen(path) > 108);
	int l = scan_socket_listen(path);
	assert_true(l >= 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	int c = scan_socket_connect(path);
	assert_true(c >= 0);
	int a = accept(l, NULL, NULL);
	assert_true(a >= 0);
	struct scan_msg m, got;
	const char *err;
	int fd;
	scan_msg_init(&m, SCAN_MSG_DRAIN);
	assert_int_equal(scan_send(a, &m, -1), 0);
	assert_int_equal(scan_recv(c, false, &got, &fd, &err), 1);
	assert_int_equal(got.type, SCAN_MSG_DRAIN);
	scan_msg_free(&got);
	close(a);
	close(c);
	close(l);
	free(folder);
	free(path);
	buf_free(&deep);
	testutil_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_type),
		cmocka_unit_test(test_request_lists_the_recipients_that_fit),
		cmocka_unit_test(test_envelope_is_cleaned_and_cut),
		cmocka_unit_test(test_request_fields_are_checked),
		cmocka_unit_test(test_verdict_fields_are_checked),
		cmocka_unit_test(test_normal_form),
		cmocka_unit_test(test_failure_verdicts),
		cmocka_unit_test(test_transport),
		cmocka_unit_test(test_socket_at_a_long_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
