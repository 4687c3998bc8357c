/*
 * test_scan_client.c - the smtp worker's scan check, in process: a real
 * SMTP session whose end of data is judged by the scan client, and a fake
 * scan master played by the test on a real SOCK_SEQPACKET socket at
 * spool/private/scan.sock. Checks what the master receives (the queue
 * file, read-only, holding every byte of the message at the range the
 * request names; the envelope), that every verdict reaches the SMTP
 * client as it should (reject and tempfail texts, discard, quarantine and
 * tag with their header fields in the queue file), and the failures: no
 * master, a master that goes away or breaks the protocol (451 4.7.0, or
 * accepted with scan_fail_open), a session that leaves while its scan
 * runs, a master that asks the workers to move on (DRAIN), a master that
 * never answers (the client's own deadline).
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "mail/recipients.h"
#include "queue/queue_file.h"
#include "scan/scan_client.h"
#include "scan/scan_proto.h"
#include "smtp/session.h"

struct fixture {
	char *dir;
	struct config cfg;
	struct recipient_tables *tables;
	struct event_base *base;
	struct smtp_server srv;
	struct scan_client *scan;
	int listener;     /* the fake master's socket, or -1 */
	int master;       /* its accepted connection, or -1 */
	int client;       /* the SMTP client */
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

static void start(const char *extra_config, bool listen_now)
{
	char tmpl[] = "/tmp/postern-test-scan-client-XXXXXX";
	memset(&fx, 0, sizeof(fx));
	fx.listener = fx.master = -1;
	fx.dir = xstrdup(mkdtemp(tmpl));
	char *conf = safeio_path_join(fx.dir, "postern.conf");
	char *users = safeio_path_join(fx.dir, "users");
	buf_t text = BUF_INIT;
	buf_printf(&text, "hostname = mx.example.test\nlocal_domains = example.test\n"
		   "spool_dir = spool\nmail_root = mail\nusers_file = users\n"
		   "reject_unauth_pipelining = no\n" /* the dialogues are pipelined whole */
		   "%s", extra_config);
	write_text(conf, buf_cstr(&text));
	write_text(users, "alice@example.test:{PLAIN}x::::::\nbob@example.test:{PLAIN}x::::::\n");
	assert_int_equal(config_load(conf, &fx.cfg, stderr), 0);
	struct recipients_owner owner = { "the test user", getuid(), getgid() };
	fx.tables = recipients_load(fx.cfg.users_file, "", &owner, stderr);
	char *err = NULL;
	assert_int_equal(queue_dirs_create(fx.cfg.spool_dir, &err), 0);
	char *private = safeio_path_join(fx.cfg.spool_dir, SCAN_SOCKET_FOLDER);
	assert_int_equal(mkdir(private, 0700), 0);
	free(private);
	char *sock = scan_socket_path(fx.cfg.spool_dir);
	if (listen_now) {
		fx.listener = scan_socket_listen(sock);
		assert_true(fx.listener >= 0);
	}
	fx.base = event_base_new();
	fx.srv.base = fx.base;
	fx.srv.cfg = &fx.cfg;
	fx.srv.notify_fd = -1;
	policy_env_init(&fx.srv.policy, &fx.cfg, fx.tables, fx.base);
	fx.scan = scan_client_new(fx.base, &fx.cfg, sock);
	scan_client_register(fx.scan, &fx.srv.policy);
	fx.srv.committer = queue_committer_new(fx.base, 1);
	free(sock);
	buf_free(&text);
	free(conf);
	free(users);
}

/* A new SMTP connection to the server (the previous one closed). */
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

static void stop(void)
{
	if (fx.client >= 0)
		close(fx.client);
	smtp_server_close_all(&fx.srv);
	event_base_loop(fx.base, EVLOOP_NONBLOCK);
	scan_client_free(&fx.scan);
	queue_committer_free(&fx.srv.committer);
	event_base_free(fx.base);
	if (fx.master >= 0)
		close(fx.master);
	if (fx.listener >= 0)
		close(fx.listener);
	recipients_free(&fx.tables);
	config_free(&fx.cfg);
	buf_free(&fx.received);
	testutil_rmtree(fx.dir);
	free(fx.dir);
}

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
		poll(&p, fx.client >= 0 ? 1 : 0, 5);
	}
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

static void say(const char *text)
{
	assert_int_equal(safeio_write_all(fx.client, text, strlen(text)), 0);
}

/* ---- the fake master ---------------------------------------------------------- */

static void master_accept(void)
{
	for (int i = 0; i < 500 && fx.master < 0; i++) {
		fx.master = accept4(fx.listener, NULL, NULL, SOCK_CLOEXEC);
		if (fx.master < 0)
			pump(10);
	}
	assert_true(fx.master >= 0);
	fcntl(fx.master, F_SETFL, O_NONBLOCK);
}

/* The next request on the master's connection (fd: its queue file). */
static void master_recv(struct scan_msg *m, int *fd_r)
{
	const char *why = NULL;
	for (int i = 0; i < 500; i++) {
		int rc = scan_recv(fx.master, true, m, fd_r, &why);
		if (rc == 1)
			return;
		scan_msg_free(m);
		if (rc == 0 || errno != EAGAIN)
			fail_msg("the fake master: %s", rc == 0 ? "end of stream" : why);
		pump(10);
	}
	fail_msg("no request came to the fake master");
}

static void master_answer(uint32_t seq, struct scan_verdict *v)
{
	struct scan_msg m;
	scan_msg_init(&m, SCAN_MSG_VERDICT);
	m.seq = seq;
	scan_verdict_normalize(v);
	m.verdict = *v;
	assert_int_equal(scan_send(fx.master, &m, -1), 0);
}

static void send_message(const char *rcpt, const char *subject)
{
	char cmd[512];
	say("HELO client.test\r\nMAIL FROM:<sender@remote.test>\r\n");
	snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\nDATA\r\n", rcpt);
	say(cmd);
	expect_lines(4, "354 ");
	snprintf(cmd, sizeof(cmd), "Subject: %s\r\n\r\nline one\r\n..dot\r\n.\r\n", subject);
	say(cmd);
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

/* The header fields added at the end (trailer) of the one file in folder. */
static void trailer_of(const char *folder, struct qf_msg *m)
{
	char *dir = safeio_path_join(fx.cfg.spool_dir, folder);
	DIR *d = opendir(dir);
	struct dirent *de;
	char *path = NULL;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			path = safeio_path_join(dir, de->d_name);
	closedir(d);
	assert_non_null(path);
	int fd = open(path, O_RDONLY);
	char *err = NULL;
	assert_int_equal(qf_read(fd, m, &err), 0);
	close(fd);
	free(path);
	free(dir);
}

/* ---- the tests ------------------------------------------------------------------- */

static void test_request_carries_the_file_and_envelope(void **state)
{
	(void)state;
	start("", true);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "first");
	master_accept();
	struct scan_msg m;
	int fd = -1;
	master_recv(&m, &fd);
	assert_true(queue_id_valid(m.id));
	assert_string_equal(m.sender, "sender@remote.test");
	assert_string_equal(m.client_addr, "192.0.2.1");
	assert_string_equal(m.helo, "client.test");
	assert_int_equal(m.rcpt_total, 1);
	assert_string_equal(m.rcpts.items[0], "alice@example.test");
	/* Read-only, and every byte of the message is in it. */
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	char *content = xmalloc(m.content_len + 1);
	assert_int_equal(pread(fd, content, m.content_len, (off_t)m.content_off),
			 (ssize_t)m.content_len);
	content[m.content_len] = '\0';
	assert_true(strncmp(content, "Received: from client.test", 26) == 0);
	const char *body = strstr(content, "Subject: first\n\nline one\n.dot\n");
	assert_non_null(body);
	assert_true(body + strlen("Subject: first\n\nline one\n.dot\n") == content + m.content_len);
	free(content);
	close(fd);
	struct scan_verdict v;
	scan_verdict_init(&v);
	master_answer(m.seq, &v);
	scan_msg_free(&m);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	assert_int_equal(files_in("queue"), 1);
	stop();
}

/* One message judged v by the fake master; the reply's first line. */
static void judged(struct scan_verdict *v, const char *expect)
{
	send_message("alice@example.test", "judged");
	if (fx.master < 0)
		master_accept();
	struct scan_msg m;
	int fd = -1;
	master_recv(&m, &fd);
	close(fd);
	master_answer(m.seq, v);
	scan_msg_free(&m);
	expect_lines(1, expect);
}

static void test_every_verdict_reaches_the_client(void **state)
{
	(void)state;
	struct scan_verdict v;
	struct qf_msg q;

	start("", true);
	connect_client();
	expect_lines(1, "220 ");
	scan_verdict_init(&v);
	scan_verdict_set(&v, SCAN_REJECT, 550, "5.7.0", "virus", "virus found: %s", "Test-Sig");
	judged(&v, "550 5.7.0 virus found: Test-Sig");
	scan_verdict_set(&v, SCAN_TEMPFAIL, 0, "", "mime_limit", "%s", "too deep, later");
	judged(&v, "451 4.7.0 too deep, later");
	assert_int_equal(files_in("queue") + files_in("incoming"), 0);

	scan_verdict_set(&v, SCAN_DISCARD, 0, "", "content_rule", "%s", "");
	judged(&v, "250 2.0.0 Ok: queued as ");
	assert_int_equal(files_in("queue") + files_in("incoming"), 0);

	scan_verdict_set(&v, SCAN_QUARANTINE, 0, "", "virus", "%s", "held");
	scan_verdict_add_header(&v, "X-Postern-Virus: Test-Sig");
	judged(&v, "250 2.0.0 Ok: queued as ");
	assert_int_equal(files_in("quarantine"), 1);
	trailer_of("quarantine", &q);
	assert_int_equal(q.edit_count, 1);
	assert_string_equal(q.edits[0].text, "X-Postern-Virus: Test-Sig");
	qf_msg_free(&q);
	scan_verdict_free(&v);

	scan_verdict_set(&v, SCAN_TAG, 0, "", "", "%s", "");
	scan_verdict_add_header(&v, "X-Postern-Rule: warned");
	scan_verdict_add_header(&v, "X-Second: two\n\tlines");
	judged(&v, "250 2.0.0 Ok: queued as ");
	trailer_of("queue", &q);
	assert_int_equal(q.edit_count, 2);
	assert_string_equal(q.edits[0].text, "X-Postern-Rule: warned");
	assert_string_equal(q.edits[1].text, "X-Second: two\n\tlines");
	qf_msg_free(&q);
	scan_verdict_free(&v);
	stop();
}

static void test_bdat_message_is_scanned_too(void **state)
{
	(void)state;
	static const char body[] = "Subject: chunks\r\n\r\nin two chunks\r\n";
	start("", true);
	connect_client();
	expect_lines(1, "220 ");
	say("EHLO client.test\r\nMAIL FROM:<sender@remote.test>\r\n"
	    "RCPT TO:<alice@example.test>\r\nBDAT 10\r\n");
	say("Subject: c");
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "BDAT %zu LAST\r\n", strlen(body) - 10);
	say(cmd);
	say(body + 10);
	master_accept();
	struct scan_msg m;
	int fd = -1;
	master_recv(&m, &fd);
	char *content = xmalloc(m.content_len + 1);
	assert_int_equal(pread(fd, content, m.content_len, (off_t)m.content_off),
			 (ssize_t)m.content_len);
	content[m.content_len] = '\0';
	assert_non_null(strstr(content, "Subject: chunks\n\nin two chunks\n"));
	free(content);
	close(fd);
	struct scan_verdict v;
	scan_verdict_init(&v);
	scan_verdict_set(&v, SCAN_REJECT, 554, "5.7.1", "content_rule", "%s", "not in chunks");
	master_answer(m.seq, &v);
	scan_msg_free(&m);
	expect_lines(12, "554 5.7.1 not in chunks"); /* EHLO (8), MAIL, RCPT, BDAT 10 */
	assert_int_equal(files_in("queue") + files_in("incoming"), 0);
	stop();
}

static void test_no_master_fails_closed_or_open(void **state)
{
	(void)state;
	start("", false);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "nobody home");
	expect_lines(1, "451 4.7.0 ");
	assert_int_equal(files_in("queue") + files_in("incoming"), 0);
	stop();

	start("scan_fail_open = yes\n", false);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "nobody home");
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	assert_int_equal(files_in("queue"), 1);
	stop();
}

static void test_master_going_away_fails_its_requests_then_reconnects(void **state)
{
	(void)state;
	start("", true);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "lost");
	master_accept();
	struct scan_msg m;
	int fd = -1;
	master_recv(&m, &fd);
	close(fd);
	scan_msg_free(&m);
	close(fx.master); /* a crash of the master */
	fx.master = -1;
	expect_lines(1, "451 4.7.0 ");
	struct scan_verdict v;
	scan_verdict_init(&v);
	judged(&v, "250 2.0.0 Ok: queued as "); /* a new connection */
	stop();
}

static void test_protocol_violation_ends_the_connection(void **state)
{
	(void)state;
	start("", true);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "garbage");
	master_accept();
	struct scan_msg m;
	int fd = -1;
	master_recv(&m, &fd);
	close(fd);
	scan_msg_free(&m);
	assert_int_equal(send(fx.master, "\x81garbage", 8, 0), 8);
	expect_lines(1, "451 4.7.0 ");
	char b;
	for (int i = 0; i < 100; i++) { /* the client has closed its end */
		pump(10);
		if (recv(fx.master, &b, 1, MSG_DONTWAIT) == 0)
			break;
	}
	assert_int_equal(recv(fx.master, &b, 1, MSG_DONTWAIT), 0);
	close(fx.master);
	fx.master = -1;
	stop();
}

static void test_session_leaving_forgets_its_verdict(void **state)
{
	(void)state;
	start("", true);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "leaving");
	master_accept();
	struct scan_msg m;
	int fd = -1;
	master_recv(&m, &fd);
	close(fd);
	/* The client resets the connection while its message is scanned. */
	struct linger lg = { 1, 0 };
	setsockopt(fx.client, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fx.client);
	fx.client = -1;
	for (int i = 0; i < 100 && fx.srv.session_count > 0; i++)
		pump(10);
	assert_int_equal(fx.srv.session_count, 0);
	assert_int_equal(files_in("incoming"), 0);
	/* Its verdict comes later and is dropped; the connection goes on. */
	struct scan_verdict v;
	scan_verdict_init(&v);
	scan_verdict_set(&v, SCAN_REJECT, 550, "5.7.1", "x", "%s", "late");
	master_answer(m.seq, &v);
	scan_msg_free(&m);
	pump(50);
	connect_client();
	expect_lines(1, "220 ");
	scan_verdict_init(&v);
	judged(&v, "250 2.0.0 Ok: queued as ");
	stop();
}

static void test_drain_moves_to_a_new_connection(void **state)
{
	(void)state;
	start("", true);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "before the drain");
	master_accept();
	struct scan_msg m, drain;
	int fd = -1;
	master_recv(&m, &fd);
	close(fd);
	scan_msg_init(&drain, SCAN_MSG_DRAIN);
	assert_int_equal(scan_send(fx.master, &drain, -1), 0);
	pump(50);
	/* The old connection still gets its verdict through ... */
	struct scan_verdict v;
	scan_verdict_init(&v);
	master_answer(m.seq, &v);
	scan_msg_free(&m);
	expect_lines(1, "250 2.0.0 Ok: queued as ");
	/* ... and is then closed by the worker. */
	char b;
	for (int i = 0; i < 100 && recv(fx.master, &b, 1, MSG_DONTWAIT) != 0; i++)
		pump(10);
	assert_int_equal(recv(fx.master, &b, 1, MSG_DONTWAIT), 0);
	close(fx.master);
	fx.master = -1;
	/* The next message comes on a new connection. */
	judged(&v, "250 2.0.0 Ok: queued as ");
	stop();
}

static void test_master_that_never_answers(void **state)
{
	(void)state;
	/* The client's own deadline: 2 x scan_timeout + SCAN_CLIENT_MARGIN. */
	start("scan_timeout = 1s\n", true);
	connect_client();
	expect_lines(1, "220 ");
	send_message("alice@example.test", "silence");
	master_accept();
	struct scan_msg m;
	int fd = -1;
	master_recv(&m, &fd);
	close(fd);
	pump((2 * 1 + SCAN_CLIENT_MARGIN) * 1000 - 1500);
	assert_int_equal(fx.received.len, 0);
	expect_lines(1, "451 4.7.0 ");
	/* The late verdict is dropped. */
	struct scan_verdict v;
	scan_verdict_init(&v);
	master_answer(m.seq, &v);
	scan_msg_free(&m);
	judged(&v, "250 2.0.0 Ok: queued as ");
	stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_carries_the_file_and_envelope),
		cmocka_unit_test(test_every_verdict_reaches_the_client),
		cmocka_unit_test(test_bdat_message_is_scanned_too),
		cmocka_unit_test(test_no_master_fails_closed_or_open),
		cmocka_unit_test(test_master_going_away_fails_its_requests_then_reconnects),
		cmocka_unit_test(test_protocol_violation_ends_the_connection),
		cmocka_unit_test(test_session_leaving_forgets_its_verdict),
		cmocka_unit_test(test_drain_moves_to_a_new_connection),
		cmocka_unit_test(test_master_that_never_answers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
