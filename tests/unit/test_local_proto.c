/*
 * test_local_proto.c - the messages between the queue manager and the
 * local delivery agent: every type encodes and decodes back to itself,
 * every truncation and a byte left over are refused, each field bound is
 * enforced, and over a real SOCK_SEQPACKET pair a descriptor travels only
 * with the types that carry one (missing, extra or unexpected descriptors,
 * wrong direction and oversize packets are violations).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue/local_proto.h"

#define ID "660E4F4D8510C00426E"

static struct local_msg deliver_msg(void)
{
	struct local_msg m = { .type = LOCAL_DELIVER, .seq = 7, .arrival_us = 1234567890123456ull,
			       .content_off = 300, .content_len = 4000, .check_cur = true };

	memcpy(m.id, ID, sizeof(m.id));
	strcpy(m.sender, "sender@remote.test");
	strcpy(m.address, "alice@example.test");
	return m;
}

static void assert_same(const struct local_msg *a, const struct local_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->seq, b->seq);
	assert_int_equal(a->version, b->version);
	assert_string_equal(a->id, b->id);
	assert_true(a->arrival_us == b->arrival_us);
	assert_string_equal(a->sender, b->sender);
	assert_true(a->content_off == b->content_off);
	assert_true(a->content_len == b->content_len);
	assert_string_equal(a->address, b->address);
	assert_int_equal(a->check_cur, b->check_cur);
	assert_int_equal(a->result, b->result);
	assert_int_equal(a->folder, b->folder);
	assert_string_equal(a->reason, b->reason);
	assert_int_equal(a->folders, b->folders);
	assert_int_equal(a->failed, b->failed);
}

/* Encode, decode, compare; and refuse every shorter prefix and one
 * extra byte. */
static void roundtrip(const struct local_msg *m)
{
	unsigned char buf[LOCAL_MSG_MAX + 1];
	struct local_msg back;
	const char *err = NULL;
	size_t n = local_msg_encode(m, buf);

	assert_true(n <= LOCAL_MSG_MAX);
	if (local_msg_decode(buf, n, &back, &err) != 0)
		fail_msg("decode of type %#x failed: %s", (unsigned)m->type, err);
	assert_same(m, &back);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_equal(local_msg_decode(buf, cut, &back, &err), -1);
	buf[n] = 0;
	assert_int_equal(local_msg_decode(buf, n + 1, &back, &err), -1);
	assert_string_equal(err, "bytes left over after the last field");
}

static void test_roundtrip_every_type(void **state)
{
	(void)state;
	struct local_msg hello = { .type = LOCAL_HELLO, .version = LOCAL_PROTO_VERSION };
	struct local_msg deliver = deliver_msg();
	struct local_msg null_sender = deliver_msg();
	struct local_msg sync = { .type = LOCAL_SYNC, .seq = 9 };
	struct local_msg result = { .type = LOCAL_RESULT, .seq = 7, .result = LOCAL_TEMPFAIL,
				    .folder = 0 };
	struct local_msg fail = { .type = LOCAL_SYNC_FAIL, .seq = 9, .folder = 3 };
	struct local_msg done = { .type = LOCAL_SYNC_DONE, .seq = 9, .folders = 5, .failed = 1 };

	null_sender.sender[0] = '\0';
	null_sender.check_cur = false;
	local_set_reason(result.reason, "4.2.2 maildir write /m/x: Disk quota exceeded");
	local_set_reason(fail.reason, "4.3.0 maildir fsync /m/new: Input/output error");
	roundtrip(&hello);
	roundtrip(&deliver);
	roundtrip(&null_sender);
	roundtrip(&sync);
	roundtrip(&result);
	roundtrip(&fail);
	roundtrip(&done);
}

static void test_wire_layout(void **state)
{
	(void)state;
	unsigned char buf[LOCAL_MSG_MAX];
	struct local_msg sync = { .type = LOCAL_SYNC, .seq = 0x01020304 };
	struct local_msg hello = { .type = LOCAL_HELLO, .version = 1 };
	static const unsigned char want_sync[] = { 0x03, 1, 2, 3, 4 };
	static const unsigned char want_hello[] = { 0x01, 0, 0, 0, 1 };

	assert_int_equal(local_msg_encode(&sync, buf), sizeof(want_sync));
	assert_memory_equal(buf, want_sync, sizeof(want_sync));
	assert_int_equal(local_msg_encode(&hello, buf), sizeof(want_hello));
	assert_memory_equal(buf, want_hello, sizeof(want_hello));
	/* DELIVER: type, seq, id, arrival, sender, offsets, address, flags. */
	struct local_msg d = deliver_msg();
	size_t n = local_msg_encode(&d, buf);
	assert_int_equal(n, 1 + 4 + 19 + 8 + 2 + 18 + 8 + 8 + 2 + 18 + 1);
	assert_memory_equal(buf + 5, ID, 19);
	assert_int_equal(buf[n - 1], LOCAL_FLAG_CHECK_CUR);
}

/* Decode buf after applying one change at offset; expect a refusal. */
static void assert_refused(const unsigned char *orig, size_t n, size_t off,
			   unsigned char value, const char *why)
{
	unsigned char buf[LOCAL_MSG_MAX];
	struct local_msg m;
	const char *err = NULL;

	memcpy(buf, orig, n);
	buf[off] = value;
	assert_int_equal(local_msg_decode(buf, n, &m, &err), -1);
	if (why != NULL)
		assert_string_equal(err, why);
}

static void test_bad_fields_refused(void **state)
{
	(void)state;
	unsigned char buf[LOCAL_MSG_MAX];
	struct local_msg d = deliver_msg();
	size_t n = local_msg_encode(&d, buf);
	size_t sender_len_off = 1 + 4 + 19 + 8;
	size_t sender_off = sender_len_off + 2;
	size_t addr_len_off = sender_off + 18 + 16;

	assert_refused(buf, n, 0, 0x7e, "unknown message type");
	assert_refused(buf, n, 5, 'g', "bad queue id");
	assert_refused(buf, n, sender_off + 3, '\n', "control character in a string");
	assert_refused(buf, n, sender_off + 3, 0x7f, "control character in a string");
	assert_refused(buf, n, sender_off + 3, 0, "control character in a string");
	assert_refused(buf, n, sender_len_off, 0x02, "sender length out of bounds");
	assert_refused(buf, n, n - 1, 0x02, "unknown flag bits");
	/* An empty address. */
	unsigned char empty[LOCAL_MSG_MAX];
	memcpy(empty, buf, addr_len_off);
	empty[addr_len_off] = 0;
	empty[addr_len_off + 1] = 0;
	empty[addr_len_off + 2] = 0;
	struct local_msg m;
	const char *err = NULL;
	assert_int_equal(local_msg_decode(empty, addr_len_off + 3, &m, &err), -1);
	assert_string_equal(err, "address length out of bounds");
	/* Content range that wraps around. */
	d.content_off = UINT64_MAX - 10;
	n = local_msg_encode(&d, buf);
	assert_int_equal(local_msg_decode(buf, n, &m, &err), -1);
	assert_string_equal(err, "content range overflows");

	struct local_msg r = { .type = LOCAL_RESULT, .seq = 1, .result = LOCAL_PERMFAIL };
	n = local_msg_encode(&r, buf);
	assert_refused(buf, n, 5, 4, "unknown result");
	struct local_msg hello = { .type = LOCAL_HELLO, .version = 1 };
	n = local_msg_encode(&hello, buf);
	assert_refused(buf, n, 4, 2, "unsupported protocol version");
	struct local_msg done = { .type = LOCAL_SYNC_DONE, .seq = 1, .folders = 1, .failed = 1 };
	n = local_msg_encode(&done, buf);
	assert_refused(buf, n, 12, 2, "more failed folders than folders");
	struct local_msg f = { .type = LOCAL_SYNC_FAIL, .seq = 1, .folder = 1 };
	n = local_msg_encode(&f, buf);
	assert_refused(buf, n, 8, 0, "folder 0 in SYNC_FAIL");
	/* A reason over its bound, made by hand. */
	unsigned char longr[LOCAL_MSG_MAX];
	memcpy(longr, (const unsigned char[]){ 0x81, 0, 0, 0, 1, 0, 0, 0, 0, 0 }, 10);
	longr[10] = (unsigned char)((LOCAL_REASON_MAX + 1) >> 8);
	longr[11] = (unsigned char)(LOCAL_REASON_MAX + 1);
	memset(longr + 12, 'x', LOCAL_REASON_MAX + 1);
	assert_int_equal(local_msg_decode(longr, 12 + LOCAL_REASON_MAX + 1, &m, &err), -1);
	assert_string_equal(err, "reason too long");
	assert_int_equal(local_msg_decode(longr, 0, &m, &err), -1);
}

static void test_set_reason(void **state)
{
	(void)state;
	char reason[LOCAL_REASON_MAX + 1];
	char longtext[LOCAL_REASON_MAX + 50];

	local_set_reason(reason, "4.3.0 a\tb\nc");
	assert_string_equal(reason, "4.3.0 a?b?c");
	memset(longtext, 'y', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	local_set_reason(reason, longtext);
	assert_int_equal(strlen(reason), LOCAL_REASON_MAX);
}

/* ---- over a socket pair ------------------------------------------------ */

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

/* Send raw bytes with n descriptors attached. */
static void send_raw(int sock, const void *data, size_t len, const int *fds, size_t n)
{
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct iovec iov = { (void *)data, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	memset(&ctl, 0, sizeof(ctl));
	if (n > 0) {
		mh.msg_control = ctl.space;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	assert_int_equal(sendmsg(sock, &mh, 0), (ssize_t)len);
}

static void test_socket_deliver_with_fd(void **state)
{
	(void)state;
	int sv[2], fd = -1;
	struct local_msg d = deliver_msg(), got;
	const char *err = NULL;
	struct stat a, b;

	pair(sv);
	int file = open("/dev/null", O_RDONLY);
	assert_true(file >= 0);
	assert_int_equal(local_send(sv[0], &d, file), 0);
	assert_int_equal(local_recv(sv[1], true, &got, &fd, &err), 1);
	assert_same(&d, &got);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &a), 0);
	assert_int_equal(fstat(file, &b), 0);
	assert_true(a.st_ino == b.st_ino);
	assert_true((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	close(fd);
	/* A reply carries no descriptor. */
	struct local_msg r = { .type = LOCAL_RESULT, .seq = 7, .result = LOCAL_DELIVERED,
			       .folder = 1 };
	assert_int_equal(local_send(sv[1], &r, -1), 0);
	assert_int_equal(local_recv(sv[0], false, &got, &fd, &err), 1);
	assert_same(&r, &got);
	assert_int_equal(fd, -1);
	/* End of stream. */
	close(sv[1]);
	assert_int_equal(local_recv(sv[0], false, &got, &fd, &err), 0);
	close(sv[0]);
	close(file);
}

static void test_socket_violations(void **state)
{
	(void)state;
	int sv[2], fd = -1, fds[2];
	unsigned char buf[LOCAL_MSG_MAX + 100];
	struct local_msg got;
	const char *err = NULL;

	pair(sv);
	fds[0] = open("/dev/null", O_RDONLY);
	fds[1] = open("/dev/null", O_RDONLY);
	struct local_msg d = deliver_msg();
	size_t n = local_msg_encode(&d, buf);
	/* DELIVER without its descriptor. */
	send_raw(sv[0], buf, n, NULL, 0);
	assert_int_equal(local_recv(sv[1], true, &got, &fd, &err), -1);
	assert_int_equal(errno, EPROTO);
	assert_string_equal(err, "wrong number of descriptors");
	/* DELIVER with two. */
	send_raw(sv[0], buf, n, fds, 2);
	assert_int_equal(local_recv(sv[1], true, &got, &fd, &err), -1);
	assert_string_equal(err, "wrong number of descriptors");
	assert_int_equal(fd, -1);
	/* SYNC with one it should not have. */
	struct local_msg s = { .type = LOCAL_SYNC, .seq = 1 };
	n = local_msg_encode(&s, buf);
	send_raw(sv[0], buf, n, fds, 1);
	assert_int_equal(local_recv(sv[1], true, &got, &fd, &err), -1);
	assert_string_equal(err, "wrong number of descriptors");
	/* A request arriving where replies are expected. */
	send_raw(sv[0], buf, n, NULL, 0);
	assert_int_equal(local_recv(sv[1], false, &got, &fd, &err), -1);
	assert_string_equal(err, "message sent in the wrong direction");
	/* A packet longer than any message. */
	memset(buf, 0x03, sizeof(buf));
	send_raw(sv[0], buf, sizeof(buf), NULL, 0);
	assert_int_equal(local_recv(sv[1], true, &got, &fd, &err), -1);
	assert_string_equal(err, "packet too long");
	/* Garbage. */
	send_raw(sv[0], "\x02garbage", 8, fds, 1);
	assert_int_equal(local_recv(sv[1], true, &got, &fd, &err), -1);
	assert_int_equal(errno, EPROTO);
	close(fds[0]);
	close(fds[1]);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_type),
		cmocka_unit_test(test_wire_layout),
		cmocka_unit_test(test_bad_fields_refused),
		cmocka_unit_test(test_set_reason),
		cmocka_unit_test(test_socket_deliver_with_fd),
		cmocka_unit_test(test_socket_violations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
