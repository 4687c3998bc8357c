/*
 * test_milter_client.c - postern as the MTA of the milter protocol, in
 * process: a real SMTP session (a client on a loopback socket) whose
 * stages ask milters played by the test on unix sockets in a private
 * folder. Checks what each fake milter receives (the negotiation, the
 * macros, every command of every stage, the header fields and the body
 * with CRLF line ends), that every answer reaches the SMTP client as it
 * should (continue, accept, reject, tempfail, a custom multi-line reply
 * code, discard, quarantine, skip, shutdown, changes at the end of the
 * message in the queue file), the protocol flags (no-reply and
 * leave-out steps), several milters in order, and the failures: no
 * milter there, a milter that breaks the protocol or never answers (the
 * default action), and an SMTP client that leaves while a milter has
 * not answered yet.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "mail/recipients.h"
#include "milter/milter_client.h"
#include "milter/milter_proto.h"
#include "queue/maildir_header.h"
#include "queue/queue_file.h"
#include "smtp/session.h"

#define MILTERS_MAX 2

/* One fake milter: its listening socket and accepted connection. */
struct fake {
	int listener;
	int fd;
	buf_t in;      /* bytes received, not yet taken as packets */
	buf_t macros;  /* "name=value\n" of every macro packet received */
};

struct fixture {
	char *dir;
	struct config cfg;
	struct recipient_tables *tables;
	struct event_base *base;
	struct smtp_server srv;
	struct fake m[MILTERS_MAX];
	int client;
	buf_t received;
};

static struct fixture fx;

static void write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, text, strlen(text)), 0);
	close(fd);
}

static char *sock_path(int i)
{
	char name[32];
	snprintf(name, sizeof(name), "milter%d.sock", i);
	return safeio_path_join(fx.dir, name);
}

static int listen_unix(const char *path)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	assert_int_equal(listen(fd, 8), 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* A server with `milters` naming n fake milters ("%s" in milters_fmt for
 * each socket path) and extra configuration lines. */
static void start(int n, const char *milters_fmt, const char *extra)
{
	char tmpl[] = "/tmp/postern-test-milter-XXXXXX";
	memset(&fx, 0, sizeof(fx));
	fx.dir = xstrdup(mkdtemp(tmpl));
	char *conf = safeio_path_join(fx.dir, "postern.conf");
	char *users = safeio_path_join(fx.dir, "users");
	char *p0 = sock_path(0), *p1 = sock_path(1);
	buf_t text = BUF_INIT;
	buf_printf(&text, "hostname = mx.example.test\nlocal_domains = example.test\n"
		   "spool_dir = spool\nmail_root = mail\nusers_file = users\n"
		   "reject_unauth_pipelining = no\n");
	buf_puts(&text, "milters = ");
	int used = 0;
	for (const char *f = milters_fmt; *f != '\0'; f++) {
		if (f[0] == '%' && f[1] == 's') {
			buf_puts(&text, used++ == 0 ? p0 : p1);
			f++;
		} else {
			buf_putc(&text, *f);
		}
	}
	buf_printf(&text, "\n%s", extra);
	write_text(conf, buf_cstr(&text));
	write_text(users, "alice@example.test:{PLAIN}x::::::\nbob@example.test:{PLAIN}x::::::\n");
	assert_int_equal(config_load(conf, &fx.cfg, stderr), 0);
	assert_int_equal(milter_config_check(&fx.cfg, stderr), 0);
	struct recipients_owner owner = { "the test user", getuid(), getgid() };
	fx.tables = recipients_load(fx.cfg.users_file, "", &owner, stderr);
	char *err = NULL;
	assert_int_equal(queue_dirs_create(fx.cfg.spool_dir, &err), 0);
	for (int i = 0; i < MILTERS_MAX; i++) {
		fx.m[i].fd = -1;
		fx.m[i].listener = i < n ? listen_unix(i == 0 ? p0 : p1) : -1;
	}
	fx.base = event_base_new();
	fx.srv.base = fx.base;
	fx.srv.cfg = &fx.cfg;
	fx.srv.notify_fd = -1;
	policy_env_init(&fx.srv.policy, &fx.cfg, fx.tables, fx.base);
	fx.srv.milters = milter_client_new(fx.base, &fx.cfg);
	assert_non_null(fx.srv.milters);
	milter_client_register(fx.srv.milters, &fx.srv.policy);
	fx.srv.committer = queue_committer_new(fx.base, 1);
	fx.client = -1;
	buf_free(&text);
	free(conf);
	free(users);
	free(p0);
	free(p1);
}

static void close_milter(int i)
{
	if (fx.m[i].fd >= 0)
		close(fx.m[i].fd);
	fx.m[i].fd = -1;
	buf_free(&fx.m[i].in);
	buf_free(&fx.m[i].macros);
}

static void stop(void)
{
	if (fx.client >= 0)
		close(fx.client);
	smtp_server_close_all(&fx.srv);
	event_base_loop(fx.base, EVLOOP_NONBLOCK);
	milter_client_free(&fx.srv.milters);
	queue_committer_free(&fx.srv.committer);
	event_base_free(fx.base);
	for (int i = 0; i < MILTERS_MAX; i++) {
		close_milter(i);
		if (fx.m[i].listener >= 0)
			close(fx.m[i].listener);
	}
	recipients_free(&fx.tables);
	config_free(&fx.cfg);
	buf_free(&fx.received);
	testutil_rmtree(fx.dir);
	free(fx.dir);
}

/* Run the loop for ms milliseconds, collecting what the SMTP client gets. */
static void pump(int ms)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
		char chunk[4096];
		ssize_t n;
		while (fx.client >= 0 && (n = read(fx.client, chunk, sizeof(chunk))) > 0)
			buf_append(&fx.received, chunk, (size_t)n);
		clock_gettime(CLOCK_MONOTONIC, &now);
		long elapsed = (now.tv_sec - start.tv_sec) * 1000 +
			       (now.tv_nsec - start.tv_nsec) / 1000000;
		if (elapsed >= ms)
			return;
		struct pollfd p = { fx.client, POLLIN, 0 };
		poll(&p, fx.client >= 0 ? 1 : 0, 2);
	}
}

static void connect_client(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t alen = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
	fx.client = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fx.client, (struct sockaddr *)&addr, sizeof(addr)), 0);
	int server_fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	close(lfd);
	fcntl(fx.client, F_SETFL, O_NONBLOCK);
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000),
				    .sin_addr.s_addr = htonl(0xC0000201) }; /* 192.0.2.1 */
	smtp_session_start(&fx.srv, server_fd, (struct sockaddr *)&peer, sizeof(peer));
	buf_reset(&fx.received);
}

static size_t count_lines(void)
{
	size_t n = 0;
	for (size_t i = 0; i < fx.received.len; i++)
		n += fx.received.data[i] == '\n';
	return n;
}

/* Pump until n reply lines have come (or 10 s); the last one, taken. */
static char *take_lines(size_t n)
{
	for (int i = 0; i < 1000 && count_lines() < n; i++)
		pump(10);
	if (count_lines() < n)
		fail_msg("expected %zu reply lines, got: %s", n, buf_cstr(&fx.received));
	size_t end = 0, seen = 0, last = 0;
	while (seen < n) {
		if (fx.received.data[end] == '\n' && ++seen < n)
			last = end + 1;
		end++;
	}
	char *out = xstrndup(fx.received.data + last, end - last);
	memmove(fx.received.data, fx.received.data + end, fx.received.len - end);
	fx.received.len -= end;
	return out;
}

static void expect_lines(size_t n, const char *prefix)
{
	char *got = take_lines(n);
	if (strncmp(got, prefix, strlen(prefix)) != 0)
		fail_msg("expected \"%s...\", got \"%s\"", prefix, got);
	free(got);
}

/* A whole reply, however many lines; its last line must start with prefix. */
static void expect_reply(const char *prefix)
{
	for (;;) {
		char *line = take_lines(1);
		bool last = strlen(line) > 3 && line[3] == ' ';
		if (last && strncmp(line, prefix, strlen(prefix)) != 0)
			fail_msg("expected \"%s...\", got \"%s\"", prefix, line);
		free(line);
		if (last)
			return;
	}
}

static void say(const char *text)
{
	assert_int_equal(safeio_write_all(fx.client, text, strlen(text)), 0);
}

/* ---- the fake milters ----------------------------------------------------------- */

static void m_accept(int i)
{
	struct fake *m = &fx.m[i];
	for (int t = 0; t < 500 && m->fd < 0; t++) {
		m->fd = accept4(m->listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (m->fd < 0)
			pump(10);
	}
	assert_true(m->fd >= 0);
}

static void m_log_macros(struct fake *m, const unsigned char *d, size_t len)
{
	size_t pos = 1; /* after the command letter */
	while (pos < len) {
		const char *name = (const char *)d + pos;
		size_t nl = strnlen(name, len - pos);
		const char *value = name + nl + 1;
		size_t vl = strnlen(value, len - pos - nl - 1);
		buf_printf(&m->macros, "%.*s=%.*s\n", (int)nl, name, (int)vl, value);
		pos += nl + vl + 2;
	}
}

/* The next packet from milter i's peer (macro packets are logged and
 * skipped); its letter, its data into data (without the letter). Fails
 * after 5 s. */
static char m_next(int i, buf_t *data)
{
	struct fake *m = &fx.m[i];
	for (int t = 0; t < 5000; t++) {
		while (m->in.len >= 5) {
			const unsigned char *p = (const unsigned char *)m->in.data;
			uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
				       (uint32_t)p[2] << 8 | p[3];
			if (m->in.len < 4 + (size_t)len)
				break;
			char cmd = (char)p[4];
			if (cmd == MILTER_CMD_MACRO) {
				m_log_macros(m, p + 5, len - 1);
				buf_consume(&m->in, 4 + len);
				continue;
			}
			if (data != NULL) {
				buf_reset(data);
				buf_append(data, p + 5, len - 1);
			}
			buf_consume(&m->in, 4 + len);
			return cmd;
		}
		char chunk[70000];
		ssize_t n = m->fd >= 0 ? read(m->fd, chunk, sizeof(chunk)) : -1;
		if (n > 0) {
			buf_append(&m->in, chunk, (size_t)n);
			continue;
		}
		if (n == 0)
			return 0; /* end of stream */
		pump(1);
	}
	fail_msg("milter %d: no packet came", i);
	return 0;
}

/* Expect command cmd next; its data (without the letter) into data. */
static void m_expect(int i, char cmd, buf_t *data)
{
	char got = m_next(i, data);
	if (got != cmd)
		fail_msg("milter %d: expected '%c', got '%c' (%d)", i, cmd, got ? got : '0', got);
}

static void m_send(int i, char kind, const void *data, size_t len)
{
	buf_t b = BUF_INIT;
	milter_put_packet(&b, kind, data, len);
	assert_int_equal(safeio_write_all(fx.m[i].fd, b.data, b.len), 0);
	buf_free(&b);
}

static void m_answer(int i, char kind)
{
	m_send(i, kind, NULL, 0);
}

static void put32(buf_t *b, uint32_t v)
{
	unsigned char x[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	buf_append(b, x, 4);
}

static uint32_t get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* Accept the connection and answer the negotiation. */
static void m_negotiate(int i, uint32_t actions, uint32_t protocol, const char *connect_macros)
{
	m_accept(i);
	buf_t d = BUF_INIT, r = BUF_INIT;
	m_expect(i, MILTER_CMD_OPTNEG, &d);
	assert_int_equal(d.len, 12);
	assert_int_equal(get32(d.data), 6);
	assert_int_equal(get32(d.data + 4), MILTER_ACT_ALL);
	assert_int_equal(get32(d.data + 8) & MILTER_P_HDR_LEADSPC, MILTER_P_HDR_LEADSPC);
	put32(&r, 6);
	put32(&r, actions);
	put32(&r, protocol);
	if (connect_macros != NULL) {
		put32(&r, MILTER_MACROS_CONNECT);
		buf_append(&r, connect_macros, strlen(connect_macros) + 1);
	}
	m_send(i, MILTER_REP_OPTNEG, r.data, r.len);
	buf_free(&d);
	buf_free(&r);
}

/* A string packet answer (quarantine, addheader, ...): fields joined. */
static void m_send_strings(int i, char kind, const char *a, const char *b)
{
	buf_t d = BUF_INIT;
	buf_append(&d, a, strlen(a) + 1);
	if (b != NULL)
		buf_append(&d, b, strlen(b) + 1);
	m_send(i, kind, d.data, d.len);
	buf_free(&d);
}

static size_t files_in(const char *folder)
{
	char *path = safeio_path_join(fx.cfg.spool_dir, folder);
	size_t n = 0;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	free(path);
	return n;
}

/* Read the one file in folder into m; its descriptor, open. */
static int read_only_file(const char *folder, struct qf_msg *m)
{
	char *dir = safeio_path_join(fx.cfg.spool_dir, folder);
	DIR *d = opendir(dir);
	struct dirent *de;
	char *path = NULL;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.') {
			free(path);
			path = safeio_path_join(dir, de->d_name);
		}
	closedir(d);
	assert_non_null(path);
	int fd = open(path, O_RDONLY);
	char *err = NULL;
	assert_int_equal(qf_read(fd, m, &err), 0);
	free(path);
	free(dir);
	return fd;
}

/* Connect, greet through milter 0 (continue at connect and HELO). */
static void greeted(uint32_t protocol)
{
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, protocol, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
}

/* MAIL and one RCPT, both continued by milter 0. */
static void envelope(const char *rcpt)
{
	char cmd[256];
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", rcpt);
	say(cmd);
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
}

/* DATA continued and the message sent; the milter is then at its header
 * fields. */
static void data_sent(const char *message)
{
	say("DATA\r\n");
	m_expect(0, MILTER_CMD_DATA, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "354 ");
	say(message);
}

/* Continue every header field, EOH and body chunk up to the end of the
 * message; the body received is appended to body. */
static void through_to_eom(int i, buf_t *body)
{
	buf_t d = BUF_INIT;
	for (;;) {
		char c = m_next(i, &d);
		if (c == MILTER_CMD_BODYEOB)
			break;
		if (c == MILTER_CMD_BODY && body != NULL)
			buf_append(body, d.data, d.len);
		if (c != MILTER_CMD_HEADER && c != MILTER_CMD_EOH && c != MILTER_CMD_BODY)
			fail_msg("unexpected '%c' in the message", c);
		m_answer(i, MILTER_REP_CONTINUE);
	}
	buf_free(&d);
}

/* ---- the tests ------------------------------------------------------------------- */

static void test_a_whole_conversation(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	buf_t d = BUF_INIT;
	m_expect(0, MILTER_CMD_CONNECT, &d);
	/* host name, family, port, address */
	assert_string_equal(d.data, "[192.0.2.1]");
	assert_int_equal(d.data[12], '4');
	assert_int_equal((unsigned char)d.data[13] << 8 | (unsigned char)d.data[14], 40000);
	assert_string_equal(d.data + 15, "192.0.2.1");
	assert_non_null(strstr(fx.m[0].macros.data, "j=mx.example.test\n"));
	assert_non_null(strstr(fx.m[0].macros.data, "{client_addr}=192.0.2.1\n"));
	assert_non_null(strstr(fx.m[0].macros.data, "{client_port}=40000\n"));
	assert_non_null(strstr(fx.m[0].macros.data, "{daemon_name}=mx\n"));
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "220 ");
	say("EHLO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, &d);
	assert_string_equal(d.data, "client.test");
	m_answer(0, MILTER_REP_CONTINUE);
	expect_reply("250 ");
	say("MAIL FROM:<sender@remote.test> SIZE=1000 BODY=8BITMIME\r\n");
	m_expect(0, MILTER_CMD_MAIL, &d);
	assert_string_equal(d.data, "<sender@remote.test>");
	/* then each ESMTP parameter, as given */
	assert_int_equal(d.len, strlen("<sender@remote.test>") + 1 + strlen("SIZE=1000") + 1 +
				    strlen("BODY=8BITMIME") + 1);
	assert_string_equal(d.data + strlen("<sender@remote.test>") + 1, "SIZE=1000");
	assert_string_equal(d.data + strlen("<sender@remote.test>SIZE=1000") + 2,
			    "BODY=8BITMIME");
	assert_non_null(strstr(fx.m[0].macros.data, "{mail_addr}=sender@remote.test\n"));
	assert_non_null(strstr(fx.m[0].macros.data, "{mail_host}=remote.test\n"));
	assert_non_null(strstr(fx.m[0].macros.data, "\ni="));
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	say("RCPT TO:<alice@example.test>\r\n");
	m_expect(0, MILTER_CMD_RCPT, &d);
	assert_string_equal(d.data, "<alice@example.test>");
	assert_non_null(strstr(fx.m[0].macros.data, "{rcpt_addr}=alice@example.test\n"));
	assert_non_null(strstr(fx.m[0].macros.data, "{rcpt_mailer}=local\n"));
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	data_sent("Subject: hello\r\nX-Folded: one\r\n\ttwo\r\n\r\nline one\r\n..dot\r\n.\r\n");
	m_expect(0, MILTER_CMD_HEADER, &d);
	assert_string_equal(d.data, "Received"); /* postern's own comes first */
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(0, MILTER_CMD_HEADER, &d);
	assert_string_equal(d.data, "Subject");
	assert_string_equal(d.data + 8, "hello"); /* no leading space: not negotiated */
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(0, MILTER_CMD_HEADER, &d);
	assert_string_equal(d.data, "X-Folded");
	assert_string_equal(d.data + 9, "one\n\ttwo");
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(0, MILTER_CMD_EOH, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(0, MILTER_CMD_BODY, &d);
	assert_int_equal(d.len, strlen("line one\r\n.dot\r\n"));
	assert_memory_equal(d.data, "line one\r\n.dot\r\n", d.len);
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(0, MILTER_CMD_BODYEOB, NULL);
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-Milter", "checked");
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	assert_int_equal(files_in("queue"), 1);
	struct qf_msg q;
	close(read_only_file("queue", &q));
	assert_int_equal(q.edit_count, 1);
	assert_string_equal(q.edits[0].text, "X-Milter: checked");
	qf_msg_free(&q);
	/* The end of the session: QUIT to the milter. */
	say("QUIT\r\n");
	expect_lines(1, "221 ");
	m_expect(0, MILTER_CMD_QUIT, NULL);
	buf_free(&d);
	stop();
}

static void test_reject_at_rcpt_refuses_that_recipient_only(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	say("RCPT TO:<alice@example.test>\r\n");
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_REJECT);
	expect_lines(1, "550 5.7.1 ");
	say("RCPT TO:<bob@example.test>\r\n");
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_TEMPFAIL);
	expect_lines(1, "451 4.7.1 ");
	say("RCPT TO:<bob@example.test>\r\n");
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	/* RSET: the milter's message is aborted; the next MAIL starts anew. */
	say("RSET\r\n");
	expect_lines(1, "250 ");
	m_expect(0, MILTER_CMD_ABORT, NULL);
	stop();
}

static void test_custom_reply_codes(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_send_strings(0, MILTER_REP_REPLYCODE, "553 5.1.8 Sender domain unknown here", NULL);
	expect_lines(1, "553 5.1.8 Sender domain unknown here");
	/* The next MAIL: the refused one is aborted first. */
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_ABORT, NULL);
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	say("RCPT TO:<alice@example.test>\r\n");
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	m_send_strings(0, MILTER_REP_REPLYCODE,
		       "452-4.2.2 First line\r\n452 4.2.2 Second line", NULL);
	char *first = take_lines(1), *second = take_lines(1);
	assert_string_equal(first, "452-4.2.2 First line\r\n");
	assert_string_equal(second, "452 4.2.2 Second line\r\n");
	free(first);
	free(second);
	assert_int_equal(files_in("queue"), 0);
	stop();
}

static void test_connect_reject_refuses_every_rcpt(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_REJECT);
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<sender@remote.test>\r\n");
	expect_lines(2, "250 ");
	say("RCPT TO:<alice@example.test>\r\n");
	expect_lines(1, "550 5.7.1 ");
	say("QUIT\r\n");
	expect_lines(1, "221 ");
	/* The milter that refused the connection hears nothing more but QUIT. */
	m_expect(0, MILTER_CMD_QUIT, NULL);
	stop();
}

/* A refusal at connect ends the milters' part in the session, as in
 * Sendmail: the milters after the one that refused never got CONNECT,
 * so they get no HELO, MAIL or RCPT either (nor a connection). */
static void test_connect_reject_ends_every_milter(void **state)
{
	(void)state;
	start(2, "unix:%s, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_REJECT);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	expect_lines(1, "250 ");
	say("MAIL FROM:<sender@remote.test>\r\n");
	expect_lines(1, "250 ");
	say("RCPT TO:<alice@example.test>\r\n");
	expect_lines(1, "550 5.7.1 ");
	int fd = accept4(fx.m[1].listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd >= 0)
		close(fd);
	assert_true(fd < 0); /* never connected */
	say("QUIT\r\n");
	expect_lines(1, "221 ");
	m_expect(0, MILTER_CMD_QUIT, NULL);
	stop();
}

static void test_discard_and_quarantine(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	m_answer(0, MILTER_REP_DISCARD);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	assert_int_equal(files_in("queue"), 0);
	envelope("alice@example.test");
	data_sent("Subject: y\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	m_send_strings(0, MILTER_REP_QUARANTINE, "looks odd", NULL);
	m_answer(0, MILTER_REP_ACCEPT);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	assert_int_equal(files_in("queue"), 0);
	assert_int_equal(files_in("quarantine"), 1);
	struct qf_msg q;
	close(read_only_file("quarantine", &q));
	assert_string_equal(q.note.text, "looks odd");
	qf_msg_free(&q);
	stop();
}

static void test_accept_ends_the_calls_for_the_message(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_ACCEPT);
	expect_lines(1, "250 ");
	say("RCPT TO:<alice@example.test>\r\nDATA\r\n");
	expect_lines(2, "354 ");
	say("Subject: x\r\n\r\nbody\r\n.\r\n");
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	/* Nothing reached the milter for that message: the next thing it
	 * hears is the next transaction (ABORT for the accepted one first). */
	say("MAIL FROM:<other@remote.test>\r\n");
	m_expect(0, MILTER_CMD_ABORT, NULL);
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	stop();
}

static void test_flags_no_reply_and_left_out_steps(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	connect_client();
	uint32_t p = MILTER_P_NOHELO | MILTER_P_NR_CONN | MILTER_P_NR_MAIL | MILTER_P_NORCPT |
		     MILTER_P_NODATA | MILTER_P_NR_HDR | MILTER_P_NOEOH | MILTER_P_NR_BODY |
		     MILTER_P_HDR_LEADSPC;
	m_negotiate(0, MILTER_ACT_ALL, p, "{client_name} j");
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	/* Its own macro list: only those two. */
	assert_string_equal(fx.m[0].macros.data, "{client_name}=unknown\nj=mx.example.test\n");
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<sender@remote.test>\r\n"
	    "RCPT TO:<alice@example.test>\r\nDATA\r\n");
	expect_lines(4, "354 ");
	say("Subject: leading\r\n\r\nbody\r\n.\r\n");
	buf_t d = BUF_INIT;
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_expect(0, MILTER_CMD_HEADER, NULL); /* Received */
	m_expect(0, MILTER_CMD_HEADER, &d);
	assert_string_equal(d.data + 8, " leading"); /* HDR_LEADSPC */
	m_expect(0, MILTER_CMD_BODY, NULL);
	m_expect(0, MILTER_CMD_BODYEOB, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	buf_free(&d);
	stop();
}

static void test_skip_ends_the_body(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(MILTER_P_SKIP);
	envelope("alice@example.test");
	buf_t msg = BUF_INIT;
	buf_puts(&msg, "Subject: big\r\n\r\n");
	for (int i = 0; i < 3000; i++)
		buf_puts(&msg, "0123456789012345678901234567890123456789012345678901234567890\r\n");
	buf_puts(&msg, ".\r\n");
	data_sent(msg.data);
	buf_t d = BUF_INIT;
	char c;
	while ((c = m_next(0, &d)) != MILTER_CMD_BODY)
		m_answer(0, MILTER_REP_CONTINUE);
	assert_true(d.len <= MILTER_CHUNK_MAX);
	m_answer(0, MILTER_REP_SKIP);
	m_expect(0, MILTER_CMD_BODYEOB, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	buf_free(&d);
	buf_free(&msg);
	stop();
}

static void test_pending_milter_holds_its_session(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	pump(200);
	assert_int_equal(fx.received.len, 0); /* nothing answered meanwhile */
	m_send(0, MILTER_REP_PROGRESS, NULL, 0);
	pump(100);
	assert_int_equal(fx.received.len, 0);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	stop();
}

static void test_client_leaves_while_milter_pending(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	m_expect(0, MILTER_CMD_HEADER, NULL);
	/* Gone (a reset) while the milter thinks. */
	struct linger l = { 1, 0 };
	setsockopt(fx.client, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fx.client);
	fx.client = -1;
	pump(200);
	/* The session is freed: the milter's connection is closed. */
	assert_int_equal(m_next(0, NULL), 0);
	assert_int_equal(files_in("queue"), 0);
	assert_int_equal(files_in("incoming"), 0);
	stop();
}

static void test_silent_milter_gets_the_default_action(void **state)
{
	(void)state;
	start(1, "{ unix:%s, command_timeout=1s }", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	expect_lines(1, "451 4.7.1 "); /* tempfail, the default */
	/* The milter is given up for the session: every command likewise. */
	say("MAIL FROM:<sender@remote.test>\r\n");
	expect_lines(1, "451 4.7.1 ");
	stop();
}

static void test_silent_milter_with_continue(void **state)
{
	(void)state;
	start(1, "{ unix:%s, command_timeout=1s, default_action=continue }", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	expect_lines(1, "250 ");
	stop();
}

/* A milter that takes no answers for the content (NR_HDR, NR_EOH,
 * NR_BODY) and stops reading it: content_timeout, then its default
 * action, not the session's policy_timeout. */
static void test_milter_that_stops_reading(void **state)
{
	(void)state;
	start(1, "{ unix:%s, content_timeout=1s, default_action=continue }",
	      "policy_timeout = 60s\n");
	greeted(MILTER_P_NR_HDR | MILTER_P_NR_EOH | MILTER_P_NR_BODY);
	envelope("alice@example.test");
	say("DATA\r\n");
	m_expect(0, MILTER_CMD_DATA, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "354 ");
	/* 4 MB of body: far more than the socket and the pacing hold */
	buf_t msg = BUF_INIT;
	buf_puts(&msg, "Subject: big\r\n\r\n");
	for (int i = 0; i < 50000; i++)
		buf_puts(&msg, "0123456789012345678901234567890123456789012345678901234567890123456789"
			       "0123456789\r\n");
	buf_puts(&msg, ".\r\n");
	for (size_t off = 0; off < msg.len;) {
		ssize_t n = send(fx.client, msg.data + off, msg.len - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno == EAGAIN)
			pump(1);
		else
			fail_msg("cannot send the message: %s", strerror(errno));
	}
	buf_free(&msg);
	/* the milter reads nothing more */
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	stop();
}

/* A milter that takes the connection and never answers the option
 * negotiation is given up after connect_timeout (Postfix's meaning,
 * postern.conf(5)), not after the much longer command_timeout. */
static void test_silent_negotiation_bounded_by_connect_timeout(void **state)
{
	(void)state;
	start(1, "{ unix:%s, connect_timeout=1s, command_timeout=60s }",
	    "milter_default_action = reject\n");
	connect_client();
	m_accept(0);
	m_expect(0, MILTER_CMD_OPTNEG, NULL);
	/* No answer: the banner comes once connect_timeout is over (take_lines
	 * waits 10 s at most). */
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<sender@remote.test>\r\n"
	    "RCPT TO:<alice@example.test>\r\n");
	expect_lines(2, "250 ");
	expect_lines(1, "550 5.7.1 ");
	stop();
}

static void test_absent_milter(void **state)
{
	(void)state;
	/* milter 1 has no listener: connect fails at once. */
	start(0, "unix:%s", "milter_default_action = reject\n");
	connect_client();
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<sender@remote.test>\r\n"
	    "RCPT TO:<alice@example.test>\r\n");
	expect_lines(2, "250 ");
	expect_lines(1, "550 5.7.1 ");
	stop();
}

static void test_broken_answer_gets_the_default_action(void **state)
{
	(void)state;
	start(1, "{ unix:%s, default_action=reject }", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_send(0, 'Z', "junk", 4);
	expect_lines(1, "550 5.7.1 ");
	stop();
}

static void test_change_before_the_end_is_a_fault(void **state)
{
	(void)state;
	start(1, "{ unix:%s, default_action=reject }", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	/* a change, then more bytes in the same read */
	buf_t b = BUF_INIT;
	milter_put_packet(&b, MILTER_REP_ADDHEADER, "X-Early\0no", 11);
	milter_put_packet(&b, MILTER_REP_CONTINUE, NULL, 0);
	assert_int_equal(safeio_write_all(fx.m[0].fd, b.data, b.len), 0);
	buf_free(&b);
	expect_lines(1, "550 5.7.1 ");
	stop();
}

static void test_too_many_changes(void **state)
{
	(void)state;
	start(1, "unix:%s", "message_size_limit = 4k\n");
	greeted(0);
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	/* a new body over message_size_limit: the milter is given up */
	char chunk[3000];
	memset(chunk, 'a', sizeof(chunk));
	m_send(0, MILTER_REP_REPLBODY, chunk, sizeof(chunk));
	m_send(0, MILTER_REP_REPLBODY, chunk, sizeof(chunk));
	expect_lines(1, "451 4.7.1 ");
	assert_int_equal(files_in("queue"), 0);
	stop();
}

/* Header changes are bounded in bytes too, not only in number: a milter
 * that sends more than 1 MiB of them is given up (default action). */
static void test_too_much_header_text(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	char value[8000];
	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	/* Written as the server reads (it closes once past the bound). */
	buf_t all = BUF_INIT;
	for (int i = 0; i < 140; i++) {
		buf_t d = BUF_INIT;
		buf_append(&d, "X-Big", 6);
		buf_append(&d, value, sizeof(value));
		milter_put_packet(&all, MILTER_REP_ADDHEADER, d.data, d.len);
		buf_free(&d);
	}
	milter_put_packet(&all, MILTER_REP_CONTINUE, NULL, 0);
	for (size_t off = 0; off < all.len;) {
		ssize_t n = send(fx.m[0].fd, all.data + off, all.len - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno == EAGAIN)
			pump(1);
		else
			break; /* closed by the server */
	}
	buf_free(&all);
	expect_lines(1, "451 4.7.1 ");
	assert_int_equal(files_in("queue"), 0);
	stop();
}

/* HELO or EHLO in the middle of a transaction resets it (RFC 5321
 * 4.1.4): the milters hear ABORT before the new HELO, as Postfix sends
 * it, not a HELO in the middle of a message. */
static void test_helo_in_a_transaction_aborts_it(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	envelope("alice@example.test");
	say("EHLO client.test\r\n");
	m_expect(0, MILTER_CMD_ABORT, NULL);
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_reply("250 ");
	/* no transaction any more */
	say("RCPT TO:<bob@example.test>\r\n");
	expect_lines(1, "503 ");
	/* and the next one starts cleanly, without a second ABORT */
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	stop();
}

/* A message that ends refused before the milters saw its end (here too
 * big) leaves them inside it: the next HELO comes after an ABORT. */
static void test_helo_after_a_refused_message_aborts_it(void **state)
{
	(void)state;
	start(1, "unix:%s", "message_size_limit = 2k\n");
	greeted(0);
	envelope("alice@example.test");
	buf_t big = BUF_INIT;
	buf_puts(&big, "Subject: x\r\n\r\n");
	for (int i = 0; i < 40; i++)
		buf_puts(&big, "0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
	buf_puts(&big, ".\r\n");
	data_sent(buf_cstr(&big));
	buf_free(&big);
	expect_lines(1, "552 ");
	say("EHLO client.test\r\n");
	m_expect(0, MILTER_CMD_ABORT, NULL);
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_reply("250 ");
	stop();
}

static void test_shutdown_closes_the_session(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_SHUTDOWN);
	expect_lines(1, "421 4.7.0 ");
	pump(100);
	char c;
	assert_int_equal(read(fx.client, &c, 1), 0); /* closed */
	stop();
}

static void test_two_milters_in_order(void **state)
{
	(void)state;
	start(2, "unix:%s, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_ACCEPT); /* done with this connection */
	m_negotiate(1, MILTER_ACT_ALL, 0, NULL);
	m_expect(1, MILTER_CMD_CONNECT, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(1, MILTER_CMD_HELO, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(1, MILTER_CMD_MAIL, NULL);
	m_send_strings(1, MILTER_REP_REPLYCODE, "550 5.7.0 not from you", NULL);
	expect_lines(1, "550 5.7.0 not from you");
	say("QUIT\r\n");
	expect_lines(1, "221 ");
	/* milter 0 heard nothing after its accept but QUIT. */
	m_expect(0, MILTER_CMD_QUIT, NULL);
	stop();
}

static void test_end_of_message_changes(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-One", "1");
	buf_t d = BUF_INIT;
	put32(&d, 1);
	buf_append(&d, "X-Inserted\0two\r\n\tlines", 23);
	m_send(0, MILTER_REP_INSHEADER, d.data, d.len);
	buf_reset(&d);
	put32(&d, 1);
	buf_append(&d, "Subject\0changed", 16);
	m_send(0, MILTER_REP_CHGHEADER, d.data, d.len);
	m_send(0, MILTER_REP_REPLBODY, "new body\r\n", 10);
	m_send(0, MILTER_REP_REPLBODY, "second part\r\n", 13);
	m_send_strings(0, MILTER_REP_ADDRCPT, "<bob@example.test>", NULL);
	m_send_strings(0, MILTER_REP_CHGFROM, "<new@remote.test>", NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	struct qf_msg q;
	close(read_only_file("queue", &q));
	assert_string_equal(q.sender, "new@remote.test");
	assert_int_equal(q.rcpt_count, 2);
	/* The header changes in their order, as the queue file keeps them. */
	assert_int_equal(q.edit_count, 3);
	assert_string_equal(q.edits[0].text, "X-One: 1");
	assert_int_equal(q.edits[1].type, 'i');
	assert_int_equal(q.edits[1].where, 1);
	assert_string_equal(q.edits[1].text, "X-Inserted: two\n\tlines");
	assert_int_equal(q.edits[2].type, 'c');
	assert_string_equal(q.edits[2].field, "Subject: changed");
	/* The new body, LF line ends, both chunks. */
	assert_true(q.body_replaced);
	assert_int_equal(q.body_len, strlen("new body\nsecond part\n"));
	qf_msg_free(&q);
	buf_free(&d);
	stop();
}

static void test_next_milter_sees_the_changes(void **state)
{
	(void)state;
	start(2, "unix:%s, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	uint32_t quiet = MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL |
			 MILTER_P_NORCPT | MILTER_P_NODATA;
	m_negotiate(1, MILTER_ACT_ALL, quiet, NULL);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	envelope("alice@example.test");
	data_sent("Subject: old\r\nX-Gone: 1\r\n\r\nold body\r\n.\r\n");
	through_to_eom(0, NULL);
	buf_t d = BUF_INIT;
	put32(&d, 0);
	buf_append(&d, "X-Top\0one", 10);
	m_send(0, MILTER_REP_INSHEADER, d.data, d.len);
	buf_reset(&d);
	put32(&d, 1);
	buf_append(&d, "Subject\0new", 12);
	m_send(0, MILTER_REP_CHGHEADER, d.data, d.len);
	buf_reset(&d);
	put32(&d, 1);
	buf_append(&d, "X-Gone\0", 8);
	m_send(0, MILTER_REP_CHGHEADER, d.data, d.len);
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-End", "two\r\n\tlines");
	m_send(0, MILTER_REP_REPLBODY, "new body\r\n", 10);
	m_answer(0, MILTER_REP_CONTINUE);
	/* milter 1 gets the message as milter 0 left it */
	static const char *const want[][2] = {
		{ "X-Top", "one" }, { "Received", NULL }, { "Subject", "new" },
		{ "X-End", "two\n\tlines" },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		m_expect(1, MILTER_CMD_HEADER, &d);
		assert_string_equal(d.data, want[i][0]);
		if (want[i][1] != NULL)
			assert_string_equal(d.data + strlen(want[i][0]) + 1, want[i][1]);
		m_answer(1, MILTER_REP_CONTINUE);
	}
	m_expect(1, MILTER_CMD_EOH, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	m_expect(1, MILTER_CMD_BODY, &d);
	assert_int_equal(d.len, 10);
	assert_memory_equal(d.data, "new body\r\n", 10);
	m_answer(1, MILTER_REP_CONTINUE);
	m_expect(1, MILTER_CMD_BODYEOB, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	/* ... which is the message as it will be delivered. */
	struct qf_msg q;
	int fd = read_only_file("queue", &q);
	buf_t out = BUF_INIT;
	char *err = NULL;
	assert_int_equal(mhdr_read_message(fd, &q, false, 1 << 20, &out, &err), 0);
	close(fd);
	const char *text = buf_cstr(&out);
	if (strncmp(text, "X-Top: one\nReceived: ", 21) != 0)
		fail_msg("delivered as: %s", text);
	const char *rest = strstr(text, "\nSubject: new\nX-End: two\n\tlines\n\nnew body\n");
	if (rest == NULL)
		fail_msg("delivered as: %s", text);
	assert_null(strstr(text, "X-Gone"));
	buf_free(&out);
	qf_msg_free(&q);
	buf_free(&d);
	stop();
}

/* smfi_chgheader(3): an index past the fields of that name adds the
 * field (at the end), as Sendmail and Postfix do; an empty value there
 * removes nothing. The next milter sees it too. */
static void test_change_of_a_missing_field_adds_it(void **state)
{
	(void)state;
	start(2, "unix:%s, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	uint32_t quiet = MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL |
			 MILTER_P_NORCPT | MILTER_P_NODATA | MILTER_P_NOEOH | MILTER_P_NOBODY;
	m_negotiate(1, MILTER_ACT_ALL, quiet, NULL);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	buf_t d = BUF_INIT;
	put32(&d, 1);
	buf_append(&d, "X-Status\0new", 13);
	m_send(0, MILTER_REP_CHGHEADER, d.data, d.len);
	buf_reset(&d);
	put32(&d, 2); /* there is one Subject only */
	buf_append(&d, "Subject\0second", 15);
	m_send(0, MILTER_REP_CHGHEADER, d.data, d.len);
	buf_reset(&d);
	put32(&d, 1);
	buf_append(&d, "X-Nothing\0", 11);
	m_send(0, MILTER_REP_CHGHEADER, d.data, d.len);
	m_answer(0, MILTER_REP_CONTINUE);
	static const char *const want[] = { "Received", "Subject", "X-Status", "Subject" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		m_expect(1, MILTER_CMD_HEADER, &d);
		assert_string_equal(d.data, want[i]);
		m_answer(1, MILTER_REP_CONTINUE);
	}
	m_expect(1, MILTER_CMD_BODYEOB, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	struct qf_msg q;
	int fd = read_only_file("queue", &q);
	buf_t out = BUF_INIT;
	char *err = NULL;
	assert_int_equal(mhdr_read_message(fd, &q, false, 1 << 20, &out, &err), 0);
	close(fd);
	const char *text = buf_cstr(&out);
	if (strstr(text, "\nSubject: x\nX-Status: new\nSubject: second\n\nbody\n") == NULL)
		fail_msg("delivered as: %s", text);
	assert_null(strstr(text, "X-Nothing"));
	buf_free(&out);
	qf_msg_free(&q);
	buf_free(&d);
	stop();
}

/* A header field the queue file would refuse (a line break not
 * followed by white space: a second field smuggled in) is not made, and
 * the next milter is not shown it either (a DKIM signer would sign a
 * field the message never carries). */
static void test_malformed_header_change_is_not_shown(void **state)
{
	(void)state;
	start(2, "unix:%s, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	uint32_t quiet = MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL |
			 MILTER_P_NORCPT | MILTER_P_NODATA | MILTER_P_NOEOH | MILTER_P_NOBODY;
	m_negotiate(1, MILTER_ACT_ALL, quiet, NULL);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-Bad", "a\r\nBcc: someone@remote.test");
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-Bad-Too", "a\rb");
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-Good", "folded\r\n\tfine");
	m_answer(0, MILTER_REP_CONTINUE);
	buf_t d = BUF_INIT;
	static const char *const want[] = { "Received", "Subject", "X-Good" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		m_expect(1, MILTER_CMD_HEADER, &d);
		assert_string_equal(d.data, want[i]);
		m_answer(1, MILTER_REP_CONTINUE);
	}
	m_expect(1, MILTER_CMD_BODYEOB, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	struct qf_msg q;
	close(read_only_file("queue", &q));
	assert_int_equal(q.edit_count, 1);
	assert_string_equal(q.edits[0].text, "X-Good: folded\n\tfine");
	qf_msg_free(&q);
	buf_free(&d);
	stop();
}

static void test_refused_recipients_told_when_asked(void **state)
{
	(void)state;
	start(2, "unix:%s, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, MILTER_P_RCPT_REJ, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	m_negotiate(1, MILTER_ACT_ALL, MILTER_P_RCPT_REJ | MILTER_P_NOCONNECT | MILTER_P_NOHELO,
		    NULL);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(1, MILTER_CMD_MAIL, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	/* refused by postern itself (no such user): both are told, with
	 * the error mailer's macros */
	buf_reset(&fx.m[0].macros);
	say("RCPT TO:<nobody@example.test>\r\n");
	expect_lines(1, "550 5.1.1 ");
	buf_t d = BUF_INIT;
	m_expect(0, MILTER_CMD_RCPT, &d);
	assert_string_equal(d.data, "<nobody@example.test>");
	assert_non_null(strstr(fx.m[0].macros.data, "{rcpt_mailer}=error\n"));
	assert_non_null(strstr(fx.m[0].macros.data, "{rcpt_host}=5.1.1\n"));
	m_answer(0, MILTER_REP_CONTINUE); /* dropped */
	m_expect(1, MILTER_CMD_RCPT, NULL);
	m_answer(1, MILTER_REP_REJECT);   /* dropped too */
	/* refused by milter 0: only milter 1 is told */
	say("RCPT TO:<alice@example.test>\r\n");
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_REJECT);
	expect_lines(1, "550 5.7.1 ");
	m_expect(1, MILTER_CMD_RCPT, NULL);
	m_answer(1, MILTER_REP_CONTINUE);
	/* and the next recipient is asked as usual */
	say("RCPT TO:<bob@example.test>\r\n");
	m_expect(0, MILTER_CMD_RCPT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(1, MILTER_CMD_RCPT, &d);
	assert_string_equal(d.data, "<bob@example.test>");
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	buf_free(&d);
	stop();
}

static void test_inet_milter(void **state)
{
	(void)state;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t alen = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
	fcntl(lfd, F_SETFL, O_NONBLOCK);
	char spec[64];
	snprintf(spec, sizeof(spec), "inet:127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
	start(0, spec, "");
	fx.m[0].listener = lfd;
	greeted(0);
	envelope("alice@example.test");
	stop();
}

static void test_unknown_commands_told_and_their_answers_dropped(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	buf_t d = BUF_INIT;
	say("XFROB something\r\n");
	expect_lines(1, "500 5.5.2 ");
	m_expect(0, MILTER_CMD_UNKNOWN, &d);
	assert_string_equal(d.data, "XFROB something");
	m_answer(0, MILTER_REP_REJECT); /* the session has answered already */
	/* The next command's answer is the one that counts. */
	say("MAIL FROM:<sender@remote.test>\r\n");
	m_expect(0, MILTER_CMD_MAIL, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	buf_free(&d);
	stop();
}

static void test_refusal_at_end_of_message_drops_the_changes(void **state)
{
	(void)state;
	start(2, "unix:%s, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	/* milter 1 wants only the end of the message */
	uint32_t quiet = MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL |
			 MILTER_P_NORCPT | MILTER_P_NODATA | MILTER_P_NOHDRS | MILTER_P_NOEOH |
			 MILTER_P_NOBODY;
	m_negotiate(1, MILTER_ACT_ALL, quiet, NULL);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-From-First", "1");
	m_answer(0, MILTER_REP_CONTINUE);
	m_expect(1, MILTER_CMD_BODYEOB, NULL);
	m_answer(1, MILTER_REP_REJECT);
	expect_lines(1, "554 5.7.1 ");
	assert_int_equal(files_in("queue"), 0);
	assert_int_equal(files_in("incoming"), 0);
	stop();
}

/* A milter that fails in the middle of its changes (here: it closes the
 * connection after one) gets its default action; the changes it sent
 * before are not the next milter's and are not made. */
static void test_failed_milter_changes_are_dropped(void **state)
{
	(void)state;
	start(2, "{ unix:%s, default_action=continue }, unix:%s", "");
	connect_client();
	m_negotiate(0, MILTER_ACT_ALL, 0, NULL);
	m_expect(0, MILTER_CMD_CONNECT, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	uint32_t quiet = MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL |
			 MILTER_P_NORCPT | MILTER_P_NODATA | MILTER_P_NOHDRS | MILTER_P_NOEOH |
			 MILTER_P_NOBODY;
	m_negotiate(1, MILTER_ACT_ALL, quiet, NULL);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	m_expect(0, MILTER_CMD_HELO, NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 ");
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	m_send_strings(0, MILTER_REP_ADDHEADER, "X-Half-Done", "1");
	m_send_strings(0, MILTER_REP_ADDRCPT, "<bob@example.test>", NULL);
	m_send(0, MILTER_REP_REPLBODY, "half a body\r\n", 13);
	pump(50);
	close_milter(0); /* gone before its answer */
	m_expect(1, MILTER_CMD_BODYEOB, NULL);
	m_send(1, MILTER_REP_REPLBODY, "second\r\n", 8);
	m_answer(1, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	struct qf_msg q;
	close(read_only_file("queue", &q));
	assert_int_equal(q.rcpt_count, 1);
	assert_int_equal(q.edit_count, 0);
	/* the new body is the second milter's alone */
	assert_true(q.body_replaced);
	assert_int_equal(q.body_len, strlen("second\n"));
	qf_msg_free(&q);
	stop();
}

/* Envelope changes carry addresses a milter made up: one that is not an
 * RFC 5321 mailbox, or longer than a path may be, is not made (nor cut
 * to a different address that would then be). */
static void test_envelope_changes_need_valid_addresses(void **state)
{
	(void)state;
	start(1, "unix:%s", "");
	greeted(0);
	envelope("alice@example.test");
	data_sent("Subject: x\r\n\r\nbody\r\n.\r\n");
	through_to_eom(0, NULL);
	char lng[400];
	memset(lng, 'a', sizeof(lng));
	/* 250 a's, "@example.test", then more: cut at 256 it would be
	 * "aaa...@example.t" */
	snprintf(lng + 250, sizeof(lng) - 250, "@example.test.elsewhere.test");
	m_send_strings(0, MILTER_REP_ADDRCPT, lng, NULL);
	m_send_strings(0, MILTER_REP_ADDRCPT, "<two words@example.test>", NULL);
	m_send_strings(0, MILTER_REP_ADDRCPT, "bob@example.test> NOTIFY=NEVER", NULL);
	m_send_strings(0, MILTER_REP_ADDRCPT, "no-domain", NULL);
	m_send_strings(0, MILTER_REP_CHGFROM, "<a@b@c>", NULL);
	m_send_strings(0, MILTER_REP_DELRCPT, "alice@example.test>", NULL);
	/* the good ones, bracketed or bare, are made */
	m_send_strings(0, MILTER_REP_ADDRCPT, "Bob@Example.TEST", NULL);
	m_send_strings(0, MILTER_REP_ADDRCPT, "<Postmaster>", NULL);
	m_send_strings(0, MILTER_REP_ADDRCPT, "<Carol@Remote.TEST>", NULL);
	/* found in its queue form, as RCPT stored it */
	m_send_strings(0, MILTER_REP_DELRCPT, "<\"Alice\"@example.test>", NULL);
	m_answer(0, MILTER_REP_CONTINUE);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	struct qf_msg q;
	close(read_only_file("queue", &q));
	assert_string_equal(q.sender, "sender@remote.test");
	assert_int_equal(q.rcpt_count, 4);
	assert_string_equal(q.rcpts[0].addr, "alice@example.test");
	assert_int_equal(q.rcpts[0].status, QF_RCPT_REMOVED);
	assert_string_equal(q.rcpts[1].addr, "bob@example.test");
	assert_string_equal(q.rcpts[2].addr, "postmaster@example.test");
	assert_string_equal(q.rcpts[3].addr, "Carol@remote.test");
	qf_msg_free(&q);
	stop();
}

/* Answers to commands not sent yet (here a CONTINUE in the same write
 * as the negotiation, before CONNECT) would be taken for the answers to
 * the commands that follow, one step out for the rest of the session:
 * the milter is given up instead. */
static void test_answer_before_its_command_is_a_fault(void **state)
{
	(void)state;
	start(1, "{ unix:%s, default_action=reject }", "");
	connect_client();
	m_accept(0);
	m_expect(0, MILTER_CMD_OPTNEG, NULL);
	buf_t r = BUF_INIT, b = BUF_INIT;
	put32(&r, 6);
	put32(&r, MILTER_ACT_ALL);
	put32(&r, 0);
	milter_put_packet(&b, MILTER_REP_OPTNEG, r.data, r.len);
	milter_put_packet(&b, MILTER_REP_CONTINUE, NULL, 0);
	assert_int_equal(safeio_write_all(fx.m[0].fd, b.data, b.len), 0);
	buf_free(&r);
	buf_free(&b);
	expect_lines(1, "220 ");
	say("HELO client.test\r\n");
	expect_lines(1, "250 ");
	say("MAIL FROM:<sender@remote.test>\r\n");
	expect_lines(1, "250 ");
	say("RCPT TO:<alice@example.test>\r\n");
	expect_lines(1, "550 5.7.1 ");
	stop();
}

static void test_negotiation_asking_too_much_fails(void **state)
{
	(void)state;
	start(1, "{ unix:%s, default_action=reject }", "");
	connect_client();
	/* actions beyond what was offered */
	m_negotiate(0, 0x400, 0, NULL);
	expect_lines(1, "220 ");
	say("HELO client.test\r\nMAIL FROM:<sender@remote.test>\r\n"
	    "RCPT TO:<alice@example.test>\r\n");
	expect_lines(2, "250 ");
	expect_lines(1, "550 5.7.1 ");
	stop();
}

/* ---- the configuration ---------------------------------------------------------- */

static void test_list_parse(void **state)
{
	(void)state;
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.milter_connect_timeout = 30;
	cfg.milter_command_timeout = 30;
	cfg.milter_content_timeout = 300;
	cfg.milter_default_action = MILTER_ACTION_TEMPFAIL;
	struct milter_list l;
	char *err = NULL;
	assert_int_equal(milter_list_parse("unix:/run/a.sock, { inet:127.0.0.1:8891, "
					   "connect_timeout=5s, default_action=accept },"
					   "inet:[::1]:99", &cfg, &l, &err), 0);
	assert_int_equal(l.count, 3);
	assert_string_equal(l.items[0].name, "unix:/run/a.sock");
	assert_int_equal(l.items[0].connect_timeout, 30);
	assert_int_equal(l.items[1].connect_timeout, 5);
	assert_int_equal(l.items[1].content_timeout, 300);
	assert_int_equal(l.items[1].default_action, MILTER_ACTION_ACCEPT);
	assert_int_equal(l.items[1].addr.ss_family, AF_INET);
	assert_int_equal(l.items[2].addr.ss_family, AF_INET6);
	milter_list_free(&l);
	static const char *const bad[] = {
		"tcp:1.2.3.4:5", "unix:relative.sock", "inet:1.2.3.4", "inet:1.2.3.4:0",
		"inet:mail.example:25", "{ unix:/a, timeout=5s }", "{ unix:/a",
		"{ unix:/a, default_action=maybe }", "unix:/a connect_timeout=5s",
		"{ }", "{ unix:/a, command_timeout=2h }",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (milter_list_parse(bad[i], &cfg, &l, &err) == 0)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(err);
		free(err);
		err = NULL;
	}
}

/* The spellings of the milters' own configuration (opendkim's and
 * clamav-milter's Socket lines, Sendmail's local: and inet6:) are refused
 * with the line to write instead. */
static void test_list_parse_says_how_to_write_a_milters_own_spelling(void **state)
{
	(void)state;
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.milter_connect_timeout = 30;
	cfg.milter_command_timeout = 30;
	cfg.milter_content_timeout = 300;
	static const char *const cases[][2] = {
		{ "inet:8891@127.0.0.1", "write inet:127.0.0.1:8891 (PORT@HOST" },
		{ "inet:8891@localhost", "write inet:localhost:8891 (PORT@HOST" },
		{ "local:/run/opendkim/opendkim.sock", "write unix:/run/opendkim/opendkim.sock (" },
		{ "inet6:8891@[::1]", "write inet:[ADDRESS]:PORT (" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct milter_list l;
		char *err = NULL;
		if (milter_list_parse(cases[i][0], &cfg, &l, &err) == 0)
			fail_msg("accepted \"%s\"", cases[i][0]);
		assert_non_null(err);
		if (strstr(err, cases[i][1]) == NULL)
			fail_msg("\"%s\": expected \"%s\" in \"%s\"", cases[i][0], cases[i][1], err);
		free(err);
	}
}

static void test_check_config_names_file_and_line(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/postern-test-milter-conf-XXXXXX";
	char *dir = mkdtemp(tmpl);
	char *conf = safeio_path_join(dir, "postern.conf");
	write_text(conf, "hostname = mx.example.test\n\nmilters = unix:/a.sock,\n"
			 "  inet:nowhere:25\n");
	struct config cfg;
	assert_int_equal(config_load(conf, &cfg, stderr), 0);
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	assert_int_equal(milter_config_check(&cfg, f), 1);
	fclose(f);
	char want[512];
	snprintf(want, sizeof(want), "%s:3: milters: ", conf);
	if (strncmp(out, want, strlen(want)) != 0)
		fail_msg("got \"%s\"", out);
	free(out);
	config_free(&cfg);
	free(conf);
	testutil_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_whole_conversation),
		cmocka_unit_test(test_reject_at_rcpt_refuses_that_recipient_only),
		cmocka_unit_test(test_custom_reply_codes),
		cmocka_unit_test(test_connect_reject_refuses_every_rcpt),
		cmocka_unit_test(test_connect_reject_ends_every_milter),
		cmocka_unit_test(test_discard_and_quarantine),
		cmocka_unit_test(test_accept_ends_the_calls_for_the_message),
		cmocka_unit_test(test_flags_no_reply_and_left_out_steps),
		cmocka_unit_test(test_skip_ends_the_body),
		cmocka_unit_test(test_pending_milter_holds_its_session),
		cmocka_unit_test(test_client_leaves_while_milter_pending),
		cmocka_unit_test(test_silent_milter_gets_the_default_action),
		cmocka_unit_test(test_silent_milter_with_continue),
		cmocka_unit_test(test_milter_that_stops_reading),
		cmocka_unit_test(test_silent_negotiation_bounded_by_connect_timeout),
		cmocka_unit_test(test_absent_milter),
		cmocka_unit_test(test_broken_answer_gets_the_default_action),
		cmocka_unit_test(test_change_before_the_end_is_a_fault),
		cmocka_unit_test(test_too_many_changes),
		cmocka_unit_test(test_too_much_header_text),
		cmocka_unit_test(test_shutdown_closes_the_session),
		cmocka_unit_test(test_helo_in_a_transaction_aborts_it),
		cmocka_unit_test(test_helo_after_a_refused_message_aborts_it),
		cmocka_unit_test(test_two_milters_in_order),
		cmocka_unit_test(test_end_of_message_changes),
		cmocka_unit_test(test_next_milter_sees_the_changes),
		cmocka_unit_test(test_change_of_a_missing_field_adds_it),
		cmocka_unit_test(test_malformed_header_change_is_not_shown),
		cmocka_unit_test(test_refused_recipients_told_when_asked),
		cmocka_unit_test(test_inet_milter),
		cmocka_unit_test(test_unknown_commands_told_and_their_answers_dropped),
		cmocka_unit_test(test_refusal_at_end_of_message_drops_the_changes),
		cmocka_unit_test(test_negotiation_asking_too_much_fails),
		cmocka_unit_test(test_answer_before_its_command_is_a_fault),
		cmocka_unit_test(test_failed_milter_changes_are_dropped),
		cmocka_unit_test(test_envelope_changes_need_valid_addresses),
		cmocka_unit_test(test_list_parse),
		cmocka_unit_test(test_list_parse_says_how_to_write_a_milters_own_spelling),
		cmocka_unit_test(test_check_config_names_file_and_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
