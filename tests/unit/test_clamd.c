/*
 * test_clamd.c - the clamd INSTREAM client and the antivirus stage in
 * clamd mode. A scripted clamd (a child process on a unix socket or a
 * loopback TCP port) checks the framing byte for byte and misbehaves on
 * demand: silent, closing mid-stream, refusing the size, not reading,
 * answering nonsense. The parsers of clamd_socket and of clamd's answer
 * get their edge cases.
 *
 * With POSTERN_TEST_CLAMD_SOCKET set (tests/integration/test_antivirus.py
 * starts a real clamd with the test signatures, clamd_peer.py), the
 * "real_clamd" tests run against it: every encoding and archive, clean
 * mail, its StreamMaxLength (POSTERN_TEST_CLAMD_STREAM_MAX), TCP
 * (POSTERN_TEST_CLAMD_TCP), and clamd killed in the middle of a stream
 * (POSTERN_TEST_CLAMD_KILL_PID), instead of the others.
 * POSTERN_TEST_FILTER (cmocka's * and ? patterns) runs only the tests
 * whose names match.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "avmsg.h"
#include "testutil.h"

#include "lib/config.h"
#include "scan/antivirus.h"
#include "scan/clamd.h"

static char dir[] = "/tmp/postern-test-clamd-XXXXXX";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the scripted clamd ---- */

enum peer_mode {
	PEER_ANSWER,          /* read the whole stream, send `answer` */
	PEER_SILENT,          /* read the whole stream, never answer */
	PEER_CLOSE_MIDWAY,    /* read 100 KB, close */
	PEER_SIZE_LIMIT,      /* read 100 KB, refuse the size, close */
	PEER_NOT_READING,     /* accept, read nothing */
	PEER_CLOSE_NO_ANSWER, /* read the whole stream, close */
};

/* What the peer received, sent back to the test over a pipe. */
struct peer_report {
	int framing_ok;       /* command and chunk sizes as INSTREAM says */
	uint64_t total;       /* bytes of the stream */
	uint32_t crc;         /* zlib crc32 of them */
	char head[64];        /* their first bytes */
};

struct peer {
	pid_t pid;
	int report_fd;
	char path[108]; /* unix socket, or "" */
	int port;       /* TCP port, or 0 */
	char spec[128]; /* clamd_socket */
};

static int read_full(int fd, void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, (char *)buf + done, n - done);
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

/* The child's side: one connection, then exit. */
static void peer_serve(int lfd, int report_fd, enum peer_mode mode, const char *answer)
{
	int c = accept(lfd, NULL, NULL);
	if (c < 0)
		_exit(1);
	if (mode == PEER_NOT_READING) {
		pause();
		_exit(0);
	}
	struct peer_report rep = { .framing_ok = 1 };
	char cmd[10];
	if (read_full(c, cmd, sizeof(cmd)) != 0 || memcmp(cmd, "zINSTREAM", 10) != 0)
		rep.framing_ok = 0;
	static char chunk[CLAMD_CHUNK_MAX + 1];
	for (;;) {
		uint32_t be;
		if (read_full(c, &be, 4) != 0) {
			rep.framing_ok = 0;
			break;
		}
		uint32_t n = ntohl(be);
		if (n == 0)
			break;
		if (n > CLAMD_CHUNK_MAX || read_full(c, chunk, n) != 0) {
			rep.framing_ok = 0;
			break;
		}
		if (rep.total < sizeof(rep.head))
			memcpy(rep.head + rep.total, chunk,
			       n < sizeof(rep.head) - rep.total ? n : sizeof(rep.head) - rep.total);
		rep.crc = (uint32_t)crc32(rep.crc, (const Bytef *)chunk, n);
		rep.total += n;
		if ((mode == PEER_CLOSE_MIDWAY || mode == PEER_SIZE_LIMIT) && rep.total >= 100000) {
			if (mode == PEER_SIZE_LIMIT) {
				static const char refuse[] = "INSTREAM size limit exceeded. ERROR";
				if (write(c, refuse, sizeof(refuse)) < 0)
					_exit(1);
			}
			close(c);
			_exit(0);
		}
	}
	if (write(report_fd, &rep, sizeof(rep)) != sizeof(rep))
		_exit(1);
	if (mode == PEER_SILENT)
		pause();
	if (mode == PEER_ANSWER && write(c, answer, strlen(answer) + 1) < 0)
		_exit(1);
	close(c);
	_exit(0);
}

/* Start a scripted clamd on a unix socket (tcp false) or a loopback port. */
static struct peer peer_start(bool tcp, enum peer_mode mode, const char *answer)
{
	struct peer p = { 0 };
	int lfd;
	if (tcp) {
		lfd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET,
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		socklen_t len = sizeof(sin);
		assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
		p.port = ntohs(sin.sin_port);
		snprintf(p.spec, sizeof(p.spec), "127.0.0.1:%d", p.port);
	} else {
		static int n;
		snprintf(p.path, sizeof(p.path), "%s/clamd%d.sock", dir, n++);
		lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		strcpy(sun.sun_path, p.path);
		assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		snprintf(p.spec, sizeof(p.spec), "%s", p.path);
	}
	assert_int_equal(listen(lfd, 4), 0);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	p.pid = fork();
	assert_true(p.pid >= 0);
	if (p.pid == 0) {
		close(fds[0]);
		peer_serve(lfd, fds[1], mode, answer);
	}
	close(fds[1]);
	close(lfd);
	p.report_fd = fds[0];
	return p;
}

/* Stop the peer; its report (if it sent one) in *rep_r. */
static bool peer_stop(struct peer *p, struct peer_report *rep_r)
{
	memset(rep_r, 0, sizeof(*rep_r));
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	bool got = read_full(p->report_fd, rep_r, sizeof(*rep_r)) == 0;
	close(p->report_fd);
	if (p->path[0])
		unlink(p->path);
	return got;
}

static struct clamd_target target_of(const char *spec)
{
	struct clamd_target t;
	char *err = NULL;
	if (clamd_target_parse(spec, &t, &err) != 0)
		fail_msg("%s: %s", spec, err);
	return t;
}

/* Scan data with INSTREAM; the return code, the verdict, name and error. */
struct outcome {
	int rc;
	enum clamd_verdict verdict;
	char name[CLAMD_NAME_MAX];
	char err[512];
	double took;
};

static struct outcome scan_pieces(const char *spec, const struct clamd_piece *pieces, size_t n,
				  uint64_t timeout_ms)
{
	struct outcome o = { .verdict = CLAMD_ERROR };
	struct clamd_target t = target_of(spec);
	double t0 = now_s();
	o.rc = clamd_instream(&t, pieces, n, timeout_ms, &o.verdict, o.name, sizeof(o.name),
			      o.err, sizeof(o.err));
	o.took = now_s() - t0;
	return o;
}

static struct outcome scan_bytes(const char *spec, const void *data, size_t len,
				 uint64_t timeout_ms)
{
	struct clamd_piece piece = { data, len };
	return scan_pieces(spec, &piece, 1, timeout_ms);
}

static void assert_err_has(const struct outcome *o, const char *needle)
{
	if (o->rc != -1 || strstr(o->err, needle) == NULL)
		fail_msg("rc %d, error \"%s\", wanted \"%s\"", o->rc, o->err, needle);
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN); /* as the scanner processes do */
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	return testutil_rmtree(dir);
}

/* ---- parsing ---- */

static void test_target_parse(void **state)
{
	(void)state;
	struct clamd_target t = target_of("/run/clamav/clamd.ctl");
	assert_int_equal(t.addr_count, 1);
	assert_int_equal(t.addrs[0].ss_family, AF_UNIX);
	t = target_of("127.0.0.1:3310");
	assert_int_equal(t.addrs[0].ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&t.addrs[0])->sin_port), 3310);
	t = target_of("[::1]:3310");
	assert_int_equal(t.addrs[0].ss_family, AF_INET6);
	t = target_of("localhost:65535");
	assert_true(t.addr_count >= 1);
	assert_string_equal(t.text, "localhost:65535");

	const char *bad[] = { "clamd", "host:", ":3310", "host:0", "host:65536", "host:33a",
			      "host:123456", "::1:3310", "[::1]3310", "[::1", "[]:1" };
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char *err = NULL;
		if (clamd_target_parse(bad[i], &t, &err) != -1 || err == NULL ||
		    strstr(err, "clamd_socket: expected an absolute socket path or host:port") == NULL)
			fail_msg("%s: accepted or wrong error \"%s\"", bad[i], err ? err : "");
		free(err);
	}
	char *err = NULL;
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(clamd_target_parse(longpath, &t, &err), -1);
	assert_non_null(strstr(err, "a unix socket path has at most 107 bytes"));
	free(err);
	assert_int_equal(clamd_target_parse("no-such-host.invalid:3310", &t, &err), -1);
	assert_non_null(strstr(err, "clamd_socket: cannot resolve no-such-host.invalid"));
	free(err);
}

/* Parse a string literal (its NULs included, not its last one). */
#define PARSE(lit, name) clamd_reply_parse(lit, sizeof(lit) - 1, name, sizeof(name))

static void test_reply_parse(void **state)
{
	(void)state;
	char name[64];
	assert_int_equal(PARSE("stream: OK", name), CLAMD_CLEAN);
	assert_int_equal(PARSE("stream: OK\n", name), CLAMD_CLEAN);
	assert_int_equal(PARSE("stream: Win.Test.EICAR_HDB-1 FOUND", name),
			 CLAMD_FOUND);
	assert_string_equal(name, "Win.Test.EICAR_HDB-1");
	assert_int_equal(PARSE("3: stream: X.Y FOUND\0junk", name), CLAMD_FOUND);
	assert_string_equal(name, "X.Y");
	assert_int_equal(PARSE("stream: A\r\nB FOUND", name), CLAMD_ERROR);
	assert_int_equal(PARSE("stream: Bad\x01Name FOUND", name), CLAMD_FOUND);
	assert_string_equal(name, "Bad_Name");
	assert_int_equal(PARSE("INSTREAM size limit exceeded. ERROR", name),
			 CLAMD_ERROR);
	assert_string_equal(name, "INSTREAM size limit exceeded.");
	assert_int_equal(PARSE("stream:  FOUND", name), CLAMD_ERROR);
	assert_int_equal(PARSE("Eicar FOUND", name), CLAMD_ERROR);
	assert_int_equal(PARSE("stream: OKAY", name), CLAMD_ERROR);
	assert_string_equal(name, "unexpected answer \"stream: OKAY\"");
	assert_int_equal(PARSE("", name), CLAMD_ERROR);
	char small[8];
	assert_int_equal(PARSE("stream: A.Very.Long.Name FOUND", small),
			 CLAMD_FOUND);
	assert_string_equal(small, "A.Very.");
}

/* ---- the exchange ---- */

static void test_clean_and_found(void **state)
{
	(void)state;
	struct peer p = peer_start(false, PEER_ANSWER, "stream: OK");
	struct outcome o = scan_bytes(p.spec, "hello\n", 6, 5000);
	struct peer_report rep;
	assert_true(peer_stop(&p, &rep));
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.verdict, CLAMD_CLEAN);
	assert_true(rep.framing_ok);
	assert_int_equal(rep.total, 6);
	assert_memory_equal(rep.head, "hello\n", 6);

	p = peer_start(false, PEER_ANSWER, "stream: Postern.Test.EICAR.UNOFFICIAL FOUND");
	o = scan_bytes(p.spec, "x", 1, 5000);
	peer_stop(&p, &rep);
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.verdict, CLAMD_FOUND);
	assert_string_equal(o.name, "Postern.Test.EICAR.UNOFFICIAL");

	/* An empty stream is just its end. */
	p = peer_start(false, PEER_ANSWER, "stream: OK");
	o = scan_bytes(p.spec, "", 0, 5000);
	assert_true(peer_stop(&p, &rep));
	assert_int_equal(o.rc, 0);
	assert_true(rep.framing_ok);
	assert_int_equal(rep.total, 0);
}

/* 1 MB in two pieces arrives whole, in chunks of at most 64 KiB. */
static void test_large_stream_in_chunks(void **state)
{
	(void)state;
	size_t n = 1000003;
	unsigned char *data = malloc(n);
	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 7 + (i >> 8));
	struct clamd_piece pieces[2] = { { "PREFIX\n", 7 }, { data, n } };
	uint32_t crc = (uint32_t)crc32(0, (const Bytef *)"PREFIX\n", 7);
	crc = (uint32_t)crc32(crc, data, (uInt)n);
	struct peer p = peer_start(false, PEER_ANSWER, "stream: OK");
	struct outcome o = scan_pieces(p.spec, pieces, 2, 5000);
	struct peer_report rep;
	assert_true(peer_stop(&p, &rep));
	assert_int_equal(o.rc, 0);
	assert_true(rep.framing_ok);
	assert_int_equal(rep.total, n + 7);
	assert_int_equal(rep.crc, crc);
	assert_memory_equal(rep.head, "PREFIX\n", 7);
	free(data);
}

static void test_tcp(void **state)
{
	(void)state;
	struct peer p = peer_start(true, PEER_ANSWER, "stream: Some.Virus FOUND");
	struct outcome o = scan_bytes(p.spec, "data", 4, 5000);
	struct peer_report rep;
	assert_true(peer_stop(&p, &rep));
	assert_int_equal(o.rc, 0);
	assert_string_equal(o.name, "Some.Virus");
	assert_true(rep.framing_ok);
}

static void test_no_clamd(void **state)
{
	(void)state;
	char path[200];
	snprintf(path, sizeof(path), "%s/absent.sock", dir);
	struct outcome o = scan_bytes(path, "x", 1, 2000);
	assert_err_has(&o, "connect: No such file or directory");
	assert_non_null(strstr(o.err, path));
	/* A port nobody listens on. */
	struct peer p = peer_start(true, PEER_ANSWER, "stream: OK");
	struct peer_report rep;
	peer_stop(&p, &rep); /* its port is free again */
	o = scan_bytes(p.spec, "x", 1, 2000);
	assert_err_has(&o, "connect: Connection refused");
}

static void test_silent_clamd_times_out(void **state)
{
	(void)state;
	struct peer p = peer_start(false, PEER_SILENT, NULL);
	struct outcome o = scan_bytes(p.spec, "x", 1, 300);
	struct peer_report rep;
	peer_stop(&p, &rep);
	assert_err_has(&o, "no answer within 300 ms");
	assert_true(o.took >= 0.29 && o.took < 3.0);
}

static void test_clamd_not_reading_times_out(void **state)
{
	(void)state;
	size_t n = 16u << 20; /* more than any socket buffer */
	char *data = calloc(1, n);
	assert_non_null(data);
	struct peer p = peer_start(false, PEER_NOT_READING, NULL);
	struct outcome o = scan_bytes(p.spec, data, n, 300);
	struct peer_report rep;
	peer_stop(&p, &rep);
	free(data);
	assert_err_has(&o, "clamd took no data for 300 ms");
	assert_true(o.took < 3.0);
}

static void test_clamd_closing_mid_stream(void **state)
{
	(void)state;
	size_t n = 4u << 20;
	char *data = calloc(1, n);
	assert_non_null(data);
	struct peer p = peer_start(false, PEER_CLOSE_MIDWAY, NULL);
	struct outcome o = scan_bytes(p.spec, data, n, 5000);
	struct peer_report rep;
	peer_stop(&p, &rep);
	assert_err_has(&o, "closed the connection while receiving the message");

	p = peer_start(false, PEER_SIZE_LIMIT, NULL);
	o = scan_bytes(p.spec, data, n, 5000);
	peer_stop(&p, &rep);
	assert_err_has(&o, "INSTREAM size limit exceeded");
	free(data);

	p = peer_start(false, PEER_CLOSE_NO_ANSWER, NULL);
	o = scan_bytes(p.spec, "x", 1, 5000);
	peer_stop(&p, &rep);
	assert_err_has(&o, "closed the connection without an answer");
}

static void test_clamd_answering_nonsense(void **state)
{
	(void)state;
	struct peer p = peer_start(false, PEER_ANSWER, "hello there");
	struct outcome o = scan_bytes(p.spec, "x", 1, 5000);
	struct peer_report rep;
	peer_stop(&p, &rep);
	assert_err_has(&o, "unexpected answer \"hello there\"");
	p = peer_start(false, PEER_ANSWER, "stream: Out of memory ERROR");
	o = scan_bytes(p.spec, "x", 1, 5000);
	peer_stop(&p, &rep);
	assert_err_has(&o, "stream: Out of memory");
}

/* ---- the stage in clamd mode ---- */

static int stage_new(const char *spec, const char *extra, struct scan_stage *st, char **err_r)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "hostname = mx.example.test\nclamd_socket = %s\n%s", spec, extra);
	fclose(f);
	struct config cfg;
	char errbuf[1024] = "";
	FILE *errors = fmemopen(errbuf, sizeof(errbuf), "w");
	int rc = config_load(path, &cfg, errors);
	fclose(errors);
	if (rc != 0)
		fail_msg("config: %s", errbuf);
	rc = scan_antivirus_stage_new(&cfg, st, err_r);
	config_free(&cfg);
	return rc;
}

static struct scan_stage stage_for(const char *spec, const char *extra)
{
	struct scan_stage st;
	char *err = NULL;
	if (stage_new(spec, extra, &st, &err) != 0)
		fail_msg("stage: %s", err ? err : "");
	return st;
}

static int run_stage(const struct scan_stage *st, const void *data, size_t len,
		     struct scan_verdict *v)
{
	memset(v, 0, sizeof(*v));
	strlist_t rcpts = { 0 };
	struct scan_envelope env = { .queue_id = "", .sender = "", .rcpts = &rcpts,
				     .client_addr = "", .helo = "" };
	struct scan_message m = { .env = &env, .data = data, .len = len };
	return st->run(st->ctx, &m, v);
}

static void verdict_clear(struct scan_verdict *v)
{
	strlist_free(&v->hits);
	strlist_free(&v->headers);
	memset(v, 0, sizeof(*v));
}

static void test_stage_with_scripted_clamd(void **state)
{
	(void)state;
	const char *msg = "X-First: 1\nSubject: hi\n\nhello\n";
	struct peer p = peer_start(false, PEER_ANSWER, "stream: Some.Virus FOUND");
	struct scan_stage st = stage_for(p.spec, "");
	assert_false(st.stale(st.ctx)); /* nothing on disk to watch */
	struct scan_verdict v;
	assert_int_equal(run_stage(&st, msg, strlen(msg), &v), 0);
	struct peer_report rep;
	assert_true(peer_stop(&p, &rep));
	assert_int_equal(v.action, SCAN_REJECT);
	assert_string_equal(v.text, "virus found: Some.Virus");
	assert_string_equal(v.hits.items[0], "virus:Some.Virus");
	verdict_clear(&v);
	/* clamd saw the message behind the mail view's Received: field. */
	const char *view = "Received: by postern (antivirus view)\nX-First: 1\n";
	assert_memory_equal(rep.head, view, strlen(view));
	assert_int_equal(rep.total, strlen(msg) + strlen(view) - strlen("X-First: 1\n"));

	/* A dead clamd: the stage fails (the pipeline applies scan_fail_open). */
	assert_int_equal(run_stage(&st, msg, strlen(msg), &v), -1);
	assert_non_null(strstr(v.text, p.spec));
	assert_non_null(strstr(v.text, "connect: "));
	verdict_clear(&v);
	st.free(st.ctx);

	p = peer_start(false, PEER_ANSWER, "stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND");
	st = stage_for(p.spec, "");
	assert_int_equal(run_stage(&st, msg, strlen(msg), &v), -1);
	assert_string_equal(v.text, "antivirus: the scan took longer than clamav_max_scan_time "
				    "(Heuristics.Limits.Exceeded.MaxScanTime)");
	verdict_clear(&v);
	peer_stop(&p, &rep);
	st.free(st.ctx);

	p = peer_start(false, PEER_ANSWER, "stream: Heuristics.Limits.Exceeded.MaxFiles FOUND");
	st = stage_for(p.spec, "clamav_alert_exceeds_max = no\nvirus_action = quarantine\n");
	assert_int_equal(run_stage(&st, msg, strlen(msg), &v), 0);
	assert_int_equal(v.action, SCAN_ACCEPT);
	verdict_clear(&v);
	peer_stop(&p, &rep);
	st.free(st.ctx);
}

/* Over clamav_max_file_size, clamd is not even asked. */
static void test_stage_message_over_the_size_limit(void **state)
{
	(void)state;
	char path[200];
	snprintf(path, sizeof(path), "%s/nobody.sock", dir);
	char big[3000];
	memset(big, 'a', sizeof(big));
	memcpy(big, "Received: x\n\n", 13);
	struct scan_stage st = stage_for(path, "clamav_max_file_size = 2k\n");
	struct scan_verdict v;
	assert_int_equal(run_stage(&st, big, sizeof(big), &v), 0);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_string_equal(v.text, "virus scan incomplete: Heuristics.Limits.Exceeded.MaxFileSize");
	verdict_clear(&v);
	st.free(st.ctx);
	st = stage_for(path, "clamav_max_file_size = 2k\nclamav_alert_exceeds_max = no\n");
	assert_int_equal(run_stage(&st, big, sizeof(big), &v), 0);
	assert_int_equal(v.action, SCAN_ACCEPT);
	verdict_clear(&v);
	st.free(st.ctx);
	char *err = NULL;
	assert_int_equal(stage_new("bad:port", "", &st, &err), -1);
	assert_non_null(strstr(err, "postern.conf: clamd_socket: expected"));
	free(err);
}

/* ---- a real clamd (tests/integration/test_antivirus.py) ---- */

static const char *real_socket(void)
{
	const char *s = getenv("POSTERN_TEST_CLAMD_SOCKET");
	if (s == NULL || s[0] == '\0')
		skip();
	return s;
}

static void assert_found(const struct scan_stage *st, const buf_t *msg, const char *name,
			 const char *what)
{
	struct scan_verdict v;
	int rc = run_stage(st, msg->data, msg->len, &v);
	char want[200];
	snprintf(want, sizeof(want), "virus found: %s", name);
	if (rc != 0 || strcmp(v.text, want) != 0 || v.action != SCAN_REJECT)
		fail_msg("%s: rc %d, text \"%s\"", what, rc, v.text);
	verdict_clear(&v);
}

static void test_real_clamd_detects_every_case(void **state)
{
	(void)state;
	struct scan_stage st = stage_for(real_socket(), "");
	const char *e = avmsg_eicar();
	const char *eicar = "Postern.Test.EICAR.UNOFFICIAL";
	const char *ctes[] = { "base64", "quoted-printable", "x-uuencode", "7bit" };
	for (size_t i = 0; i < ARRAY_LEN(ctes); i++) {
		buf_t m = BUF_INIT;
		avmsg_with_attachment(&m, "", "application/octet-stream", "eicar.com", ctes[i], e,
				      strlen(e));
		assert_found(&st, &m, eicar, ctes[i]);
		buf_free(&m);
	}
	buf_t zip = BUF_INIT, zipzip = BUF_INIT, gz = BUF_INIT, m = BUF_INIT, outer = BUF_INIT;
	avmsg_zip1(&zip, "eicar.com", e, strlen(e));
	avmsg_with_attachment(&m, "", "application/zip", "a.zip", "base64", zip.data, zip.len);
	assert_found(&st, &m, eicar, "zip");
	buf_reset(&m);
	avmsg_zip1(&zipzip, "inner.zip", zip.data, zip.len);
	avmsg_with_attachment(&m, "", "application/zip", "b.zip", "base64", zipzip.data, zipzip.len);
	assert_found(&st, &m, eicar, "zip in zip");
	buf_reset(&m);
	avmsg_gzip(&gz, e, strlen(e));
	avmsg_with_attachment(&m, "", "application/gzip", "e.gz", "base64", gz.data, gz.len);
	assert_found(&st, &m, eicar, "gzip");
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "image/png", "photo.png", "base64", zip.data, zip.len);
	assert_found(&st, &m, eicar, "lying content type");
	avmsg_with_message(&outer, &m);
	assert_found(&st, &outer, eicar, "attached message");
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "text/plain", "s.txt", "base64", AVMSG_HASH_SAMPLE,
			      strlen(AVMSG_HASH_SAMPLE));
	assert_found(&st, &m, "Postern.Test.HashSample.UNOFFICIAL", "hash");
	buf_reset(&m);
	avmsg_with_attachment(&m, "X-First: 1\n", "application/octet-stream", "p.bin", "base64",
			      AVMSG_PATTERN_SAMPLE, AVMSG_PATTERN_SAMPLE_LEN);
	assert_found(&st, &m, "Postern.Test.Pattern.UNOFFICIAL", "pattern");

	buf_reset(&m);
	avmsg_with_attachment(&m, "", "text/plain", "notes.txt", "base64", "just notes\n", 11);
	struct scan_verdict v;
	assert_int_equal(run_stage(&st, m.data, m.len, &v), 0);
	assert_int_equal(v.action, SCAN_ACCEPT);
	verdict_clear(&v);
	buf_free(&zip);
	buf_free(&zipzip);
	buf_free(&gz);
	buf_free(&m);
	buf_free(&outer);
	st.free(st.ctx);
}

static void test_real_clamd_stream_limit(void **state)
{
	(void)state;
	const char *sock = real_socket();
	const char *max = getenv("POSTERN_TEST_CLAMD_STREAM_MAX");
	if (max == NULL)
		skip();
	size_t n = (size_t)strtoull(max, NULL, 10) + (1u << 20);
	char *data = malloc(n);
	assert_non_null(data);
	memset(data, 'a', n);
	memcpy(data, "Received: x\n\n", 13);
	struct outcome o = scan_bytes(sock, data, n, 10000);
	free(data);
	assert_err_has(&o, "INSTREAM size limit exceeded");
}

static void test_real_clamd_tcp(void **state)
{
	(void)state;
	real_socket();
	const char *tcp = getenv("POSTERN_TEST_CLAMD_TCP");
	if (tcp == NULL)
		skip();
	const char *e = avmsg_eicar();
	struct outcome o = scan_bytes(tcp, e, strlen(e), 10000);
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.verdict, CLAMD_FOUND);
	assert_string_equal(o.name, "Postern.Test.EICAR.UNOFFICIAL");
}

/* Bytes pid has written: clamd writes what it receives to a temporary
 * file (its socket reads, by recv(2), are not counted in rchar). */
static uint64_t wchar_of(pid_t pid)
{
	char path[64], line[128];
	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	FILE *f = fopen(path, "r");
	uint64_t v = 0;
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "wchar: %" SCNu64, &v) == 1)
			break;
	fclose(f);
	return v;
}

/* clamd killed while it receives a (large) message: the client says so,
 * quickly, and does not hang. */
static void test_real_clamd_killed_mid_stream(void **state)
{
	(void)state;
	const char *sock = real_socket();
	const char *pid_text = getenv("POSTERN_TEST_CLAMD_KILL_PID");
	if (pid_text == NULL)
		skip();
	pid_t clamd = (pid_t)atoi(pid_text);
	assert_true(clamd > 0);
	uint64_t before = wchar_of(clamd);
	pid_t killer = fork();
	assert_true(killer >= 0);
	if (killer == 0) {
		/* Kill clamd once it has taken 2 MB of the stream. */
		for (int i = 0; i < 20000 && wchar_of(clamd) < before + (2u << 20); i++)
			usleep(500);
		kill(clamd, SIGKILL);
		_exit(0);
	}
	/* 512 MB from one 1 MB buffer: far more than clamd reads before it dies. */
	static char block[1 << 20];
	memset(block, 'b', sizeof(block));
	memcpy(block, "Received: x\n\n", 13);
	struct clamd_piece pieces[512];
	for (size_t i = 0; i < ARRAY_LEN(pieces); i++)
		pieces[i] = (struct clamd_piece){ block, sizeof(block) };
	struct outcome o = scan_pieces(sock, pieces, ARRAY_LEN(pieces), 20000);
	waitpid(killer, NULL, 0);
	if (o.rc != -1 || (strstr(o.err, "closed the connection") == NULL &&
			   strstr(o.err, "Connection reset") == NULL))
		fail_msg("rc %d, error \"%s\"", o.rc, o.err);
	assert_true(o.took < 15.0);
}

int main(void)
{
	const struct CMUnitTest offline[] = {
		cmocka_unit_test(test_target_parse),
		cmocka_unit_test(test_reply_parse),
		cmocka_unit_test(test_clean_and_found),
		cmocka_unit_test(test_large_stream_in_chunks),
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_no_clamd),
		cmocka_unit_test(test_silent_clamd_times_out),
		cmocka_unit_test(test_clamd_not_reading_times_out),
		cmocka_unit_test(test_clamd_closing_mid_stream),
		cmocka_unit_test(test_clamd_answering_nonsense),
		cmocka_unit_test(test_stage_with_scripted_clamd),
		cmocka_unit_test(test_stage_message_over_the_size_limit),
	};
	const struct CMUnitTest with_real_clamd[] = {
		cmocka_unit_test(test_real_clamd_detects_every_case),
		cmocka_unit_test(test_real_clamd_stream_limit),
		cmocka_unit_test(test_real_clamd_tcp),
		cmocka_unit_test(test_real_clamd_killed_mid_stream),
	};
	/* test_antivirus.py runs some of them: POSTERN_TEST_FILTER=test_real_* */
	const char *filter = getenv("POSTERN_TEST_FILTER");
	if (filter != NULL && filter[0] != '\0')
		cmocka_set_test_filter(filter);
	/* The real clamd's tests exist only where one is given. */
	const char *sock = getenv("POSTERN_TEST_CLAMD_SOCKET");
	if (sock != NULL && sock[0] != '\0')
		return cmocka_run_group_tests(with_real_clamd, setup, teardown);
	return cmocka_run_group_tests(offline, setup, teardown);
}
