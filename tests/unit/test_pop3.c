/*
 * test_pop3.c - the POP3 server's parts: the command parser, base64 and
 * SASL PLAIN, the wire form of a message (CRLF, byte-stuffing, TOP) and
 * its size, the maildrop (new/ to cur/, order, unique ids, sizes, the
 * lock, Dovecot's renames, the update and maildirsize), the worker-agent
 * protocol, and whole sessions in process: a real pop3 session on one
 * end of a loopback TCP connection, the real mailbox agent in a child
 * process over its socket pair, and a fake auth client whose verdict
 * the test chooses (password "secret" is right) and which gives login
 * tickets made with the test's key; the agent's refusal of an OPEN
 * without a valid ticket (none, forged, expired, another account's,
 * another key's, used before).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "auth/auth_ticket.h"
#include "pop3/pop3.h"
#include "pop3/pop3_command.h"
#include "pop3/pop3_int.h"
#include "pop3/pop3_maildrop.h"
#include "pop3/pop3_message.h"
#include "pop3/pop3_proto.h"

TESTUTIL_PRIVATE_DIR("pop3")

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, text, strlen(text)), 0);
	close(fd);
}

static char *read_whole(const char *path)
{
	buf_t b = BUF_INIT;
	assert_int_equal(safeio_read_file(path, 1 << 20, &b), 0);
	return buf_steal(&b);
}

/* ---- the parser -------------------------------------------------------------- */

static const char *parse(const char *text, struct pop3_command *c)
{
	static char line[POP3_LINE_MAX + 1];
	size_t n = strlen(text);
	memcpy(line, text, n);
	return pop3_command_parse(line, n, c);
}

static void test_command_parser(void **state)
{
	(void)state;
	struct pop3_command c;
	assert_null(parse("capa", &c));
	assert_int_equal(c.verb, POP3_CAPA);
	assert_null(parse("RETR 12", &c));
	assert_int_equal(c.verb, POP3_RETR);
	assert_int_equal(c.nums, 1);
	assert_int_equal(c.num[0], 12);
	assert_null(parse("TOP 1 0", &c));
	assert_int_equal(c.nums, 2);
	assert_int_equal(c.num[1], 0);
	assert_null(parse("LIST", &c));
	assert_int_equal(c.nums, 0);
	assert_null(parse("PASS two words ", &c));
	assert_string_equal(c.arg, "two words ");
	assert_null(parse("USER alice@example.test", &c));
	assert_string_equal(c.arg, "alice@example.test");
	assert_null(parse("AUTH PLAIN AGEAYg==", &c));
	assert_string_equal(c.arg, "PLAIN");
	assert_string_equal(c.arg2, "AGEAYg==");
	assert_null(parse("AUTH", &c));
	assert_null(c.arg);
	assert_non_null(parse("RETR", &c));
	assert_non_null(parse("RETR -1", &c));
	assert_non_null(parse("RETR 1 2", &c));
	assert_non_null(parse("RETR 12345678901", &c));
	assert_non_null(parse("TOP 1", &c));
	assert_non_null(parse("STAT now", &c));
	assert_non_null(parse("USER", &c));
	assert_non_null(parse("USER a b", &c));
	assert_non_null(parse("PASS", &c));
	assert_non_null(parse("XYZZY", &c));
	assert_non_null(parse("", &c));
	char nul[] = "NOOP\0x";
	assert_non_null(pop3_command_parse(nul, 6, &c));
}

static void test_base64_and_plain(void **state)
{
	(void)state;
	struct sasl_credentials c;
	/* "\0alice@example.test\0secret" */
	const char *ok = "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=";
	assert_null(pop3_sasl_plain(ok, strlen(ok), &c));
	assert_string_equal(c.user, "alice@example.test");
	assert_string_equal(c.password, "secret");
	/* the empty response, and what is no canonical base64 */
	assert_non_null(pop3_sasl_plain("=", 1, &c));
	assert_string_equal(pop3_sasl_plain("abc", 3, &c), "the response is not base64");
	assert_non_null(pop3_sasl_plain("ab=c", 4, &c));     /* padding inside */
	assert_non_null(pop3_sasl_plain("YR==", 4, &c));     /* bits under the padding */
	assert_non_null(pop3_sasl_plain("YWJj!A==", 8, &c));
	/* "bob\0alice\0pw": logging in as someone else is refused */
	const char *proxy = "Ym9iAGFsaWNlAHB3";
	assert_string_equal(pop3_sasl_plain(proxy, strlen(proxy), &c),
			    "logging in as another user is not allowed");
	/* "\0a\nb\0pw": a line break in the user name (it is logged) */
	const char *newline = "AGEKYgBwdw==";
	assert_string_equal(pop3_sasl_plain(newline, strlen(newline), &c), "bad user name");
	assert_string_equal(c.user, ""); /* wiped */
	/* "alice\0alice\0pw": the same identity twice is fine */
	const char *same = "YWxpY2UAYWxpY2UAcHc=";
	assert_null(pop3_sasl_plain(same, strlen(same), &c));
	assert_string_equal(c.user, "alice");
	sasl_credentials_wipe(&c);
}

/* ---- the wire form ------------------------------------------------------------- */

/* Encode text in chunks of chunk bytes. */
static char *encode(const char *text, size_t chunk, bool top, uint64_t lines)
{
	struct pop3_encoder e;
	pop3_encoder_init(&e, top, lines);
	size_t len = strlen(text);
	char *out = xmalloc(2 * len + POP3_ENCODE_END_MAX + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i += chunk) {
		size_t n = len - i < chunk ? len - i : chunk;
		o += pop3_encode(&e, text + i, n, out + o);
	}
	o += pop3_encode_end(&e, out + o);
	out[o] = '\0';
	return out;
}

static uint64_t size_of(const char *text, size_t chunk)
{
	struct pop3_sizer s;
	pop3_sizer_init(&s);
	size_t len = strlen(text);
	for (size_t i = 0; i < len; i += chunk)
		pop3_sizer_add(&s, text + i, len - i < chunk ? len - i : chunk);
	return pop3_sizer_end(&s);
}

static void test_encoder(void **state)
{
	(void)state;
	const char *msg = "Subject: x\n\n.leading dot\n..two\nmid.dot\r\n.\nend";
	const char *want = "Subject: x\r\n\r\n..leading dot\r\n...two\r\nmid.dot\r\n..\r\nend\r\n.\r\n";
	for (size_t chunk = 1; chunk <= strlen(msg); chunk++) {
		char *got = encode(msg, chunk, false, 0);
		assert_string_equal(got, want);
		free(got);
		/* The size as sent: CRLF counted, the stuffing and the final
		 * dot line not. */
		assert_int_equal(size_of(msg, chunk), strlen(want) - 3 - 3);
	}
	char *top0 = encode("A: 1\nB: 2\n\nbody1\nbody2\n", 3, true, 0);
	assert_string_equal(top0, "A: 1\r\nB: 2\r\n\r\n.\r\n");
	free(top0);
	char *top1 = encode("A: 1\r\n\r\n.b1\r\nb2\r\n", 2, true, 1);
	assert_string_equal(top1, "A: 1\r\n\r\n..b1\r\n.\r\n");
	free(top1);
	char *nobody = encode("A: 1\nB: 2\n", 4, true, 5);
	assert_string_equal(nobody, "A: 1\r\nB: 2\r\n.\r\n");
	free(nobody);
	char *empty = encode("", 1, false, 0);
	assert_string_equal(empty, ".\r\n");
	free(empty);
	assert_int_equal(size_of("a\r\nb\n", 1), 6);
	assert_int_equal(size_of("a\r", 1), 3);
}

/* ---- the maildrop -------------------------------------------------------------- */

static char *maildir_at(const char *name)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/%s", dir, name);
	char *path = buf_steal(&b);
	static const char *const subs[] = { "", "/new", "/cur", "/tmp" };
	for (size_t i = 0; i < 4; i++) {
		buf_printf(&b, "%s%s", path, subs[i]);
		assert_int_equal(safeio_mkdir_p(buf_cstr(&b), 0700), 0);
		buf_reset(&b);
	}
	buf_free(&b);
	return path;
}

static void put(const char *maildir, const char *sub, const char *name, const char *text)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/%s/%s", maildir, sub, name);
	write_file(buf_cstr(&b), text);
	buf_free(&b);
}

static bool exists(const char *maildir, const char *sub, const char *name)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/%s/%s", maildir, sub, name);
	bool yes = access(buf_cstr(&b), F_OK) == 0;
	buf_free(&b);
	return yes;
}

static void test_maildrop(void **state)
{
	(void)state;
	char *md_path = maildir_at("drop1");
	/* postern's names carry S= and W=; Dovecot's own may lack W=. */
	put(md_path, "new", "1700000002.Qx2.mx,S=4,W=6", "b\nc\n");
	put(md_path, "new", "1700000001.Qx1.mx,S=2,W=3", "a\n");
	put(md_path, "cur", "1600000000.M1P1.dovecot:2,S", "old\nmail\n");
	put(md_path, "new", ".hidden", "not a message");
	struct pop3_maildrop md;
	char *err = NULL;
	assert_int_equal(pop3_maildrop_open(md_path, &md, &err), POP3_OPEN_OK);
	assert_int_equal(md.count, 3);
	assert_string_equal(md.mails[0].uid, "1600000000.M1P1.dovecot");
	assert_int_equal(md.mails[0].size, 11); /* counted: two LF become CRLF */
	assert_int_equal(md.mails[0].file_size, 9);
	assert_string_equal(md.mails[1].uid, "1700000001.Qx1.mx,S=2,W=3");
	assert_int_equal(md.mails[1].size, 3);
	assert_string_equal(md.mails[2].name, "1700000002.Qx2.mx,S=4,W=6:2,");
	assert_true(exists(md_path, "cur", "1700000001.Qx1.mx,S=2,W=3:2,"));
	assert_false(exists(md_path, "new", "1700000001.Qx1.mx,S=2,W=3"));

	/* A second session on the same mailbox is refused while this one holds it. */
	struct pop3_maildrop md2;
	assert_int_equal(pop3_maildrop_open(md_path, &md2, &err), POP3_OPEN_IN_USE);

	/* Dovecot renames message 2 (a flag) meanwhile: it is found again. */
	buf_t from = BUF_INIT, to = BUF_INIT;
	buf_printf(&from, "%s/cur/1700000001.Qx1.mx,S=2,W=3:2,", md_path);
	buf_printf(&to, "%s/cur/1700000001.Qx1.mx,S=2,W=3:2,F", md_path);
	assert_int_equal(rename(buf_cstr(&from), buf_cstr(&to)), 0);
	int fd = pop3_maildrop_open_mail(&md, 1);
	assert_true(fd >= 0);
	close(fd);

	/* Update: 1 deleted, 2 and 3 seen (2 has a flag already: S sorted in). */
	put(md_path, ".", "maildirsize", "1000S\n15 3\n");
	uint8_t marks[3] = { POP3_MARK_DELETE, POP3_MARK_SEEN, POP3_MARK_SEEN };
	struct pop3_update_result r;
	assert_int_equal(pop3_maildrop_update(&md, marks, &r, &err), 0);
	assert_int_equal(r.deleted, 1);
	assert_int_equal(r.freed_bytes, 9);
	assert_false(exists(md_path, "cur", "1600000000.M1P1.dovecot:2,S"));
	assert_true(exists(md_path, "cur", "1700000001.Qx1.mx,S=2,W=3:2,FS"));
	assert_true(exists(md_path, "cur", "1700000002.Qx2.mx,S=4,W=6:2,S"));
	buf_reset(&from);
	buf_printf(&from, "%s/maildirsize", md_path);
	char *quota = read_whole(buf_cstr(&from));
	assert_string_equal(quota, "1000S\n15 3\n-9 -1\n");
	free(quota);
	pop3_maildrop_close(&md);

	/* The lock is free again; the ids are the same in a new session. */
	assert_int_equal(pop3_maildrop_open(md_path, &md, &err), POP3_OPEN_OK);
	assert_int_equal(md.count, 2);
	assert_string_equal(md.mails[0].uid, "1700000001.Qx1.mx,S=2,W=3");
	pop3_maildrop_close(&md);
	buf_free(&from);
	buf_free(&to);
	free(md_path);

	/* A mailbox nothing was delivered to is empty. */
	buf_t none = BUF_INIT;
	buf_printf(&none, "%s/nobody/Maildir", dir);
	assert_int_equal(pop3_maildrop_open(buf_cstr(&none), &md, &err), POP3_OPEN_OK);
	assert_int_equal(md.count, 0);
	pop3_maildrop_close(&md);
	buf_free(&none);
}

/* Only regular files are messages: a FIFO or a directory in cur/ (which
 * whoever can write the Maildir may make) neither hangs the agent, which
 * serves every session of its worker one request at a time, nor is sent
 * as a message. alarm() turns a hang into a failure. */
static void test_maildrop_special_files(void **state)
{
	(void)state;
	char *md_path = maildir_at("drop_special");
	put(md_path, "cur", "1700000001.Qa.mx,S=2,W=3:2,", "a\n");
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/cur/1700000002.fifo.mx:2,", md_path); /* measured at listing */
	assert_int_equal(mkfifo(buf_cstr(&b), 0600), 0);
	buf_reset(&b);
	buf_printf(&b, "%s/cur/1700000003.fifo.mx,S=5,W=5:2,", md_path); /* listed by name */
	assert_int_equal(mkfifo(buf_cstr(&b), 0600), 0);
	buf_reset(&b);
	buf_printf(&b, "%s/cur/1700000004.dir.mx,S=5,W=5:2,", md_path);
	assert_int_equal(mkdir(buf_cstr(&b), 0700), 0);
	buf_reset(&b);
	alarm(10);
	struct pop3_maildrop md;
	char *err = NULL;
	assert_int_equal(pop3_maildrop_open(md_path, &md, &err), POP3_OPEN_OK);
	assert_int_equal(md.count, 1); /* only the regular file is listed */
	assert_string_equal(md.mails[0].uid, "1700000001.Qa.mx,S=2,W=3");
	int fd = pop3_maildrop_open_mail(&md, 0);
	assert_true(fd >= 0);
	close(fd);
	/* Replaced by a FIFO after the listing: refused, not waited on. */
	buf_printf(&b, "%s/cur/%s", md_path, md.mails[0].name);
	assert_int_equal(unlink(buf_cstr(&b)), 0);
	assert_int_equal(mkfifo(buf_cstr(&b), 0600), 0);
	buf_free(&b);
	errno = 0;
	assert_int_equal(pop3_maildrop_open_mail(&md, 0), -1);
	assert_int_not_equal(errno, ENOENT); /* not "gone": it is there */
	alarm(0);
	pop3_maildrop_close(&md);
	free(md_path);
}

static void test_uid_and_flags(void **state)
{
	(void)state;
	char uid[POP3_UID_MAX + 1];
	pop3_uid_of("abc", 3, uid);
	assert_string_equal(uid, "abc");
	char longname[100];
	memset(longname, 'x', sizeof(longname));
	pop3_uid_of(longname, sizeof(longname), uid);
	assert_int_equal(strlen(uid), 33);
	assert_int_equal(uid[0], 'H');
	char again[POP3_UID_MAX + 1];
	pop3_uid_of(longname, sizeof(longname), again);
	assert_string_equal(uid, again);
	pop3_uid_of("a b", 3, uid); /* a space is not allowed in a unique id */
	assert_int_equal(uid[0], 'H');
	char *n = pop3_name_with_flag("x:2,FT", 'S');
	assert_string_equal(n, "x:2,FST");
	free(n);
	n = pop3_name_with_flag("x:2,", 'S');
	assert_string_equal(n, "x:2,S");
	free(n);
	assert_null(pop3_name_with_flag("x:2,RS", 'S'));
	assert_null(pop3_name_with_flag("x:1,abc", 'S'));
}

/* ---- the protocol -------------------------------------------------------------- */

static void test_proto(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	struct pop3_msg *m = xcalloc(1, sizeof(*m)), *got = xcalloc(1, sizeof(*got));
	unsigned char *buf = xmalloc(POP3_PROTO_MAX + 1);
	int fds[POP3_FETCH_MAX];
	const char *err;
	m->type = POP3_MSG_ENTRIES;
	m->sid = 7;
	m->entry_count = 2;
	m->entries[0].size = 123;
	strcpy(m->entries[0].uid, "uid-1");
	m->entries[1].size = 1ULL << 40;
	strcpy(m->entries[1].uid, "uid-2");
	assert_int_equal(pop3_msg_send(sv[0], m, NULL, 0), 0);
	assert_int_equal(pop3_msg_recv(sv[1], false, got, buf, fds, &err), 1);
	assert_int_equal(got->sid, 7);
	assert_int_equal(got->entry_count, 2);
	assert_int_equal(got->entries[1].size, 1ULL << 40);
	assert_string_equal(got->entries[1].uid, "uid-2");
	/* A reply where a request is expected is a violation. */
	assert_int_equal(pop3_msg_send(sv[0], m, NULL, 0), 0);
	assert_int_equal(pop3_msg_recv(sv[1], true, got, buf, fds, &err), -1);
	/* Descriptors travel with MAIL: as many as it says. */
	memset(m, 0, sizeof(*m));
	m->type = POP3_MSG_MAIL;
	m->sid = 9;
	m->fetch_count = 2;
	int two[2] = { open("/dev/null", O_RDONLY), open("/dev/zero", O_RDONLY) };
	assert_int_equal(pop3_msg_send(sv[0], m, two, 2), 0);
	close(two[0]);
	close(two[1]);
	assert_int_equal(pop3_msg_recv(sv[1], false, got, buf, fds, &err), 1);
	assert_int_equal(got->fetch_count, 2);
	char zero = 1;
	assert_int_equal(read(fds[1], &zero, 1), 1); /* the second is /dev/zero */
	assert_int_equal(zero, 0);
	close(fds[0]);
	close(fds[1]);
	/* A MAIL that says ok must carry a descriptor. */
	static const unsigned char ok_without[] = { 0x83, 0, 0, 0, 1, 0, 0 };
	assert_int_equal(pop3_msg_decode(ok_without, sizeof(ok_without), got, &err), -1);
	static const unsigned char fetch_zero[] = { 0x02, 0, 0, 0, 1, 0, 0, 0, 0, 0 };
	assert_int_equal(pop3_msg_decode(fetch_zero, sizeof(fetch_zero), got, &err), -1);
	/* Hand-made bad packets. */
	static const unsigned char left_over[] = { 0x04, 0, 0, 0, 1, 0xff };
	assert_int_equal(pop3_msg_decode(left_over, sizeof(left_over), got, &err), -1);
	static const unsigned char bad_type[] = { 0x42, 0, 0, 0, 1 };
	assert_int_equal(pop3_msg_decode(bad_type, sizeof(bad_type), got, &err), -1);
	static const unsigned char bad_mark[] = { 0x03, 0, 0, 0, 1, 0, 0, 0, 1, 0x04 };
	assert_int_equal(pop3_msg_decode(bad_mark, sizeof(bad_mark), got, &err), -1);
	static const unsigned char space_uid[] = { 0x81, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0,
						   0, 0, 0, 1, 0, 1, ' ' };
	assert_int_equal(pop3_msg_decode(space_uid, sizeof(space_uid), got, &err), -1);
	free(m);
	free(got);
	free(buf);
	close(sv[0]);
	close(sv[1]);
}

/* ---- sessions ------------------------------------------------------------------ */

struct fake_auth_req {
	struct event *ev;
	auth_done_fn *done;
	void *arg;
	bool ok;
	char user[64];
};

static unsigned fake_auth_checks;

/* The key the agents of these tests check tickets with. */
static const unsigned char test_ticket_key[AUTH_TICKET_KEY_LEN] = "0123456789abcdef0123456789abcde";

static void fake_answer(evutil_socket_t fd, short what, void *arg)
{
	struct fake_auth_req *r = arg;
	(void)fd;
	(void)what;
	char user[64];
	memcpy(user, r->user, sizeof(user));
	char ticket[AUTH_TICKET_TEXT_LEN + 1];
	assert_true(auth_ticket_make(test_ticket_key, AUTH_SERVICE_POP3, user, auth_ticket_now(),
				     ticket));
	struct auth_result res = { r->ok ? AUTH_OK : AUTH_FAILED, r->ok ? user : NULL, "fake",
				   r->ok ? ticket : NULL };
	auth_done_fn *done = r->done;
	void *done_arg = r->arg;
	event_free(r->ev);
	free(r);
	done(done_arg, &res);
}

static struct auth_request *fake_check(void *ctx, const struct auth_query *q, auth_done_fn *done,
				       void *arg)
{
	struct fake_auth_req *r = xcalloc(1, sizeof(*r));
	fake_auth_checks++;
	r->done = done;
	r->arg = arg;
	r->ok = strcmp(q->password, "secret") == 0;
	snprintf(r->user, sizeof(r->user), "%s", q->user);
	r->ev = event_new(ctx, -1, 0, fake_answer, r);
	event_active(r->ev, EV_TIMEOUT, 0);
	return (struct auth_request *)r;
}

static void fake_cancel(struct auth_request **req)
{
	struct fake_auth_req *r = (struct fake_auth_req *)*req;
	if (r == NULL)
		return;
	event_free(r->ev);
	free(r);
	*req = NULL;
}

struct fixture {
	struct config cfg;
	struct event_base *base;
	struct pop3_server srv;
	pid_t agent;
	buf_t received;
};

static struct fixture fx;

static void server_start(const char *extra_config)
{
	memset(&fx, 0, sizeof(fx));
	buf_t conf = BUF_INIT, text = BUF_INIT;
	buf_printf(&conf, "%s/postern.conf", dir);
	buf_printf(&text, "hostname = mx.example.test\nspool_dir = spool\nmail_root = mail\n"
		   "pop3_listen = 127.0.0.1:1110\n%s", extra_config);
	write_file(buf_cstr(&conf), buf_cstr(&text));
	assert_int_equal(config_load(buf_cstr(&conf), &fx.cfg, stderr), 0);
	buf_free(&conf);
	buf_free(&text);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	fx.agent = fork();
	assert_true(fx.agent >= 0);
	if (fx.agent == 0) {
		close(sv[0]);
		unsigned char key[AUTH_TICKET_KEY_LEN];
		memcpy(key, test_ticket_key, sizeof(key));
		_exit(pop3_agent_main(&fx.cfg, sv[1], key));
	}
	close(sv[1]);
	fx.base = event_base_new();
	fx.srv.base = fx.base;
	fx.srv.cfg = &fx.cfg;
	fx.srv.agent = pop3_agent_link_new(fx.base, sv[0]);
	fx.srv.auth = (struct pop3_auth_ops){ fake_check, fake_cancel, fx.base };
}

static void server_stop(void)
{
	for (struct pop3_session *s = fx.srv.sessions; s != NULL; s = fx.srv.sessions) {
		pop3_server_drain(&fx.srv);
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
		if (fx.srv.sessions == s)
			break;
	}
	pop3_agent_link_free(&fx.srv.agent);
	int status;
	assert_int_equal(waitpid(fx.agent, &status, 0), fx.agent);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	event_base_free(fx.base);
	config_free(&fx.cfg);
	buf_free(&fx.received);
}

/* A client on a loopback TCP connection, seen by the server as from. */
static int client_connect(uint32_t from)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t alen = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
	int client = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(client, (struct sockaddr *)&addr, sizeof(addr)), 0);
	int server_fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	assert_true(server_fd >= 0);
	close(lfd);
	fcntl(client, F_SETFL, O_NONBLOCK);
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000),
				    .sin_addr.s_addr = htonl(from) };
	pop3_session_start(&fx.srv, server_fd, (struct sockaddr *)&peer, sizeof(peer), false);
	return client;
}

/* Run the loop until what the client read ends with end (or 5 s);
 * return it all, taken. */
static char *until(int client, const char *end)
{
	buf_t got = BUF_INIT;
	for (int i = 0; i < 1000; i++) {
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
		char chunk[4096];
		ssize_t n;
		bool eof = false;
		while ((n = read(client, chunk, sizeof(chunk))) > 0)
			buf_append(&got, chunk, (size_t)n);
		if (n == 0)
			eof = true;
		size_t el = strlen(end);
		if (el == 0 ? eof : got.len >= el && memcmp(got.data + got.len - el, end, el) == 0)
			return buf_steal(&got);
		if (eof)
			fail_msg("connection closed; got \"%s\", waiting for \"%s\"", buf_cstr(&got), end);
		struct pollfd p = { client, POLLIN, 0 };
		poll(&p, 1, 5);
	}
	fail_msg("timed out; got \"%s\", waiting for \"%s\"", buf_cstr(&got), end);
	return NULL;
}

static void say(int client, const char *text)
{
	assert_int_equal(safeio_write_all(client, text, strlen(text)), 0);
}

/* Send text, expect the reply to start with prefix and end with end. */
static char *ask(int client, const char *text, const char *prefix, const char *end)
{
	say(client, text);
	char *got = until(client, end);
	if (strncmp(got, prefix, strlen(prefix)) != 0)
		fail_msg("to \"%s\": expected \"%s...\", got \"%s\"", text, prefix, got);
	return got;
}

static void ok(int client, const char *text, const char *prefix)
{
	free(ask(client, text, prefix, "\r\n"));
}

static void deliver(const char *user, const char *name, const char *text)
{
	buf_t md = BUF_INIT;
	buf_printf(&md, "%s/mail/example.test/%s/Maildir", dir, user);
	static const char *const subs[] = { "new", "cur", "tmp" };
	for (size_t i = 0; i < 3; i++) {
		buf_t b = BUF_INIT;
		buf_printf(&b, "%s/%s", buf_cstr(&md), subs[i]);
		assert_int_equal(safeio_mkdir_p(buf_cstr(&b), 0700), 0);
		buf_free(&b);
	}
	put(buf_cstr(&md), "new", name, text);
	buf_free(&md);
}

static size_t count_in(const char *user, const char *sub)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s/mail/example.test/%s/Maildir/%s", dir, user, sub);
	size_t n = 0;
	DIR *d = opendir(buf_cstr(&b));
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	buf_free(&b);
	return n;
}

#define LOOPBACK 0x7f000001
#define LAN 0xc0a80105 /* 192.168.1.5 */
#define OUTSIDE 0xc6336401 /* 198.51.100.1 */

static void test_session_commands(void **state)
{
	(void)state;
	deliver("alice", "1700000001.Qa1.mx,S=34,W=37", "Subject: one\n\n.dot first\nbody\n");
	deliver("alice", "1700000002.Qa2.mx,S=24,W=27", "Subject: two\n\nb1\nb2\nb3\n");
	server_start("pop3_cleartext_networks = 127.0.0.0/8\n");
	int c = client_connect(LOOPBACK);
	free(until(c, "\r\n"));
	char *capa = ask(c, "CAPA\r\n", "+OK", "\r\n.\r\n");
	assert_non_null(strstr(capa, "\r\nUSER\r\n"));
	assert_non_null(strstr(capa, "\r\nSASL PLAIN\r\n"));
	assert_null(strstr(capa, "STLS")); /* no TLS in this test */
	free(capa);
	ok(c, "STAT\r\n", "-ERR");
	ok(c, "USER alice@example.test\r\n", "+OK");
	ok(c, "PASS wrong\r\n", "-ERR [AUTH]");
	ok(c, "USER alice@example.test\r\n", "+OK");
	ok(c, "PASS secret\r\n", "+OK 2 messages (64 octets)");
	ok(c, "STAT\r\n", "+OK 2 64");
	char *list = ask(c, "LIST\r\n", "+OK", "\r\n.\r\n");
	assert_non_null(strstr(list, "\r\n1 37\r\n2 27\r\n.\r\n"));
	free(list);
	char *uidl = ask(c, "UIDL\r\n", "+OK", "\r\n.\r\n");
	assert_non_null(strstr(uidl, "\r\n1 1700000001.Qa1.mx,S=34,W=37\r\n"));
	free(uidl);
	ok(c, "UIDL 2\r\n", "+OK 2 1700000002.Qa2.mx,S=24,W=27");
	char *retr = ask(c, "RETR 1\r\n", "+OK 37 octets\r\n", "\r\n.\r\n");
	assert_string_equal(retr, "+OK 37 octets\r\nSubject: one\r\n\r\n..dot first\r\nbody\r\n.\r\n");
	free(retr);
	char *top = ask(c, "TOP 2 1\r\n", "+OK", "\r\n.\r\n");
	assert_non_null(strstr(top, "\r\nSubject: two\r\n\r\nb1\r\n.\r\n"));
	free(top);
	/* Pipelined: answered in order. */
	say(c, "DELE 2\r\nDELE 2\r\nLIST 2\r\nRSET\r\nDELE 1\r\nSTAT\r\n");
	char *piped = until(c, "+OK 1 27\r\n");
	assert_non_null(strstr(piped, "+OK message 2 deleted\r\n-ERR"));
	free(piped);
	ok(c, "RETR 3\r\n", "-ERR");
	ok(c, "NOOP\r\n", "+OK");
	ok(c, "QUIT\r\n", "+OK");
	free(until(c, ""));
	close(c);
	/* Message 1 is gone, message 2 was read by TOP only: no S flag. */
	assert_int_equal(count_in("alice", "cur"), 1);
	assert_int_equal(count_in("alice", "new"), 0);

	/* A session that ends without QUIT changes nothing. */
	c = client_connect(LOOPBACK);
	free(until(c, "\r\n"));
	free(ask(c, "USER alice@example.test\r\nPASS secret\r\n", "+OK send PASS\r\n+OK 1",
		 "octets)\r\n"));
	free(ask(c, "RETR 1\r\n", "+OK", "\r\n.\r\n"));
	ok(c, "DELE 1\r\n", "+OK");
	close(c);
	for (int i = 0; i < 50; i++)
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
	assert_int_equal(count_in("alice", "cur"), 1);
	server_stop();
}

static void test_session_login_rules(void **state)
{
	(void)state;
	deliver("bob", "1700000003.Qb1.mx,S=2,W=3", "x\n");
	server_start("pop3_clients = 127.0.0.0/8, 192.168.0.0/16\n"
		     "pop3_cleartext_networks = 127.0.0.0/8\n");
	/* Not in pop3_clients: refused at once. */
	int out = client_connect(OUTSIDE);
	char *refusal = until(out, "");
	assert_non_null(strstr(refusal, "-ERR [SYS/PERM]"));
	free(refusal);
	close(out);
	/* From the LAN, without TLS: no login offered, none accepted. */
	int lan = client_connect(LAN);
	free(until(lan, "\r\n"));
	char *capa = ask(lan, "CAPA\r\n", "+OK", "\r\n.\r\n");
	assert_null(strstr(capa, "USER"));
	assert_null(strstr(capa, "SASL"));
	free(capa);
	unsigned checks = fake_auth_checks;
	ok(lan, "USER bob@example.test\r\n", "-ERR [AUTH]");
	ok(lan, "PASS secret\r\n", "-ERR [AUTH]");
	ok(lan, "AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0\r\n", "-ERR [AUTH]");
	assert_int_equal(fake_auth_checks, checks); /* the password went nowhere */
	ok(lan, "STLS\r\n", "-ERR"); /* no TLS configured */
	close(lan);
	/* AUTH PLAIN from loopback, with an initial response, then without. */
	int a = client_connect(LOOPBACK);
	free(until(a, "\r\n"));
	ok(a, "AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0\r\n", "+OK 1 messages");
	/* A second session on the same mailbox: [IN-USE]. */
	int b = client_connect(LOOPBACK);
	free(until(b, "\r\n"));
	ok(b, "AUTH PLAIN\r\n", "+ ");
	ok(b, "AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0\r\n", "-ERR [IN-USE]");
	ok(b, "AUTH PLAIN\r\n", "+ ");
	ok(b, "*\r\n", "-ERR");
	ok(a, "QUIT\r\n", "+OK");
	free(until(a, ""));
	close(a);
	/* Now the mailbox is free. */
	ok(b, "AUTH PLAIN\r\n", "+ ");
	ok(b, "AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0\r\n", "+OK 1 messages");
	free(ask(b, "RETR 1\r\n", "+OK 3 octets\r\nx\r\n.\r\n", "\r\n.\r\n"));
	ok(b, "QUIT\r\n", "+OK");
	free(until(b, ""));
	close(b);
	/* RETR marked it seen. */
	buf_t p = BUF_INIT;
	buf_printf(&p, "%s/mail/example.test/bob/Maildir/cur/1700000003.Qb1.mx,S=2,W=3:2,S", dir);
	assert_int_equal(access(buf_cstr(&p), F_OK), 0);
	buf_free(&p);
	/* A line too long, and errors; one sent as the response to AUTH ends
	 * the AUTH: the next line is a command again. */
	int d = client_connect(LOOPBACK);
	free(until(d, "\r\n"));
	ok(d, "AUTH PLAIN\r\n", "+ ");
	char big[POP3_LINE_MAX + 10];
	memset(big, 'A', sizeof(big));
	big[sizeof(big) - 2] = '\r';
	big[sizeof(big) - 1] = '\n';
	assert_int_equal(safeio_write_all(d, big, sizeof(big)), 0);
	free(ask(d, "NOOP\r\n", "-ERR line too long", "\r\n-ERR log in first\r\n"));
	close(d);
	server_stop();
}

static void test_session_idle_timeout(void **state)
{
	(void)state;
	server_start("pop3_idle_timeout = 1s\n");
	int c = client_connect(LOOPBACK);
	free(until(c, "\r\n"));
	/* Closed without a reply after a second of silence. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char *rest = until(c, "");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_string_equal(rest, "");
	assert_true(t1.tv_sec - t0.tv_sec >= 0 && (t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 900);
	free(rest);
	close(c);
	server_stop();
}

/* ---- the agent's trust ------------------------------------------------------------ */

/* OPEN session sid for user with ticket; the status of the OPENED that
 * ends the answer (ENTRIES before it are skipped). */
static int agent_open(int sock, uint32_t sid, const char *user, const char *ticket)
{
	struct pop3_msg *m = xcalloc(1, sizeof(*m));
	unsigned char *buf = xmalloc(POP3_PROTO_MAX + 1);
	int fds[POP3_FETCH_MAX];
	const char *err;
	m->type = POP3_MSG_OPEN;
	m->sid = sid;
	snprintf(m->user, sizeof(m->user), "%s", user);
	snprintf(m->ticket, sizeof(m->ticket), "%s", ticket);
	assert_int_equal(pop3_msg_send(sock, m, NULL, 0), 0);
	do
		assert_int_equal(pop3_msg_recv(sock, false, m, buf, fds, &err), 1);
	while (m->type == POP3_MSG_ENTRIES);
	assert_int_equal(m->type, POP3_MSG_OPENED);
	assert_int_equal(m->sid, sid);
	int status = m->status;
	if (status == POP3_STATUS_FAILED)
		assert_string_equal(m->reason, "no valid login ticket");
	struct pop3_msg close_msg = { .type = POP3_MSG_CLOSE, .sid = sid };
	assert_int_equal(pop3_msg_send(sock, &close_msg, NULL, 0), 0);
	free(buf);
	free(m);
	return status;
}

/* The agent opens a maildrop only with a ticket the auth process (here:
 * the test, with the agent's key) made for that account, unexpired, and
 * once: a compromised worker cannot name an account and read it. */
static void test_agent_tickets(void **state)
{
	(void)state;
	const char *alice = "alice@example.test", *bob = "bob@example.test";
	deliver("alice", "1700000101.Qt1.mx,S=12,W=14", "Subject: t\n\nx\n");
	deliver("bob", "1700000102.Qt2.mx,S=12,W=14", "Subject: t\n\ny\n");
	server_start(""); /* for its configuration; a second agent, driven here */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid_t agent = fork();
	assert_true(agent >= 0);
	if (agent == 0) {
		close(sv[0]);
		unsigned char key[AUTH_TICKET_KEY_LEN];
		memcpy(key, test_ticket_key, sizeof(key));
		_exit(pop3_agent_main(&fx.cfg, sv[1], key));
	}
	close(sv[1]);
	int sock = sv[0];
	uint64_t now = auth_ticket_now();
	char good[AUTH_TICKET_TEXT_LEN + 1], ticket[AUTH_TICKET_TEXT_LEN + 1];
	assert_true(auth_ticket_make(test_ticket_key, AUTH_SERVICE_POP3, alice, now, good));

	/* no ticket */
	assert_int_equal(agent_open(sock, 1, alice, ""), POP3_STATUS_FAILED);
	/* not a ticket */
	assert_int_equal(agent_open(sock, 2, alice, "deadbeef"), POP3_STATUS_FAILED);
	/* forged: a good ticket with one digit of its MAC changed */
	memcpy(ticket, good, sizeof(ticket));
	ticket[AUTH_TICKET_TEXT_LEN - 1] = ticket[AUTH_TICKET_TEXT_LEN - 1] == '0' ? '1' : '0';
	assert_int_equal(agent_open(sock, 3, alice, ticket), POP3_STATUS_FAILED);
	/* made under another key */
	unsigned char other_key[AUTH_TICKET_KEY_LEN];
	memset(other_key, 0x5a, sizeof(other_key));
	assert_true(auth_ticket_make(other_key, AUTH_SERVICE_POP3, alice, now, ticket));
	assert_int_equal(agent_open(sock, 4, alice, ticket), POP3_STATUS_FAILED);
	/* expired */
	assert_true(auth_ticket_make(test_ticket_key, AUTH_SERVICE_POP3, alice,
				     now - AUTH_TICKET_LIFETIME - 5, ticket));
	assert_int_equal(agent_open(sock, 5, alice, ticket), POP3_STATUS_FAILED);
	/* bob's ticket does not open alice's mailbox, nor alice's bob's */
	assert_true(auth_ticket_make(test_ticket_key, AUTH_SERVICE_POP3, bob, now, ticket));
	assert_int_equal(agent_open(sock, 6, alice, ticket), POP3_STATUS_FAILED);
	assert_int_equal(agent_open(sock, 7, bob, good), POP3_STATUS_FAILED);
	/* a ticket for another service */
	char smtp[AUTH_TICKET_TEXT_LEN + 1];
	assert_true(auth_ticket_make(test_ticket_key, AUTH_SERVICE_SMTP, alice, now, smtp));
	assert_int_equal(agent_open(sock, 8, alice, smtp), POP3_STATUS_FAILED);
	/* the good one opens, once */
	assert_int_equal(agent_open(sock, 9, alice, good), POP3_STATUS_OK);
	assert_int_equal(agent_open(sock, 10, alice, good), POP3_STATUS_FAILED);
	/* bob's opens bob's */
	assert_int_equal(agent_open(sock, 11, bob, ticket), POP3_STATUS_OK);
	close(sock);
	int status;
	assert_int_equal(waitpid(agent, &status, 0), agent);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	server_stop();
}

/* The ticket functions alone: the clock, and the syntax the decoders
 * check. */
static void test_ticket_checks(void **state)
{
	(void)state;
	char t[AUTH_TICKET_TEXT_LEN + 1];
	unsigned char nonce[AUTH_TICKET_NONCE_LEN];
	assert_true(auth_ticket_make(test_ticket_key, AUTH_SERVICE_POP3, "a@b", 1000, t));
	assert_int_equal(strlen(t), AUTH_TICKET_TEXT_LEN);
	assert_true(auth_ticket_syntax_ok(t));
	assert_true(auth_ticket_syntax_ok(""));
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "a@b", t, 1000,
					   nonce), AUTH_TICKET_OK);
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "a@b", t,
					   1000 + AUTH_TICKET_LIFETIME, nonce), AUTH_TICKET_OK);
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "a@b", t,
					   1001 + AUTH_TICKET_LIFETIME, nonce),
			 AUTH_TICKET_EXPIRED);
	/* dated further ahead than a fresh ticket */
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "a@b", t, 900,
					   nonce), AUTH_TICKET_EXPIRED);
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "a@B", t, 1000,
					   nonce), AUTH_TICKET_FORGED);
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "a@b", "", 1000,
					   nonce), AUTH_TICKET_MISSING);
	t[5] = 'A'; /* upper-case hex is not ours */
	assert_false(auth_ticket_syntax_ok(t));
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "a@b", t, 1000,
					   nonce), AUTH_TICKET_MALFORMED);
	t[AUTH_TICKET_TEXT_LEN - 1] = '\0';
	assert_false(auth_ticket_syntax_ok(t));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_parser),
		cmocka_unit_test(test_base64_and_plain),
		cmocka_unit_test(test_encoder),
		cmocka_unit_test(test_maildrop),
		cmocka_unit_test(test_maildrop_special_files),
		cmocka_unit_test(test_uid_and_flags),
		cmocka_unit_test(test_proto),
		cmocka_unit_test(test_session_commands),
		cmocka_unit_test(test_session_login_rules),
		cmocka_unit_test(test_session_idle_timeout),
		cmocka_unit_test(test_ticket_checks),
		cmocka_unit_test(test_agent_tickets),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
