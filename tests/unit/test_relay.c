/*
 * test_relay.c - the pieces of the outbound SMTP client that need no
 * network: the reply parser (single and multi-line replies, enhanced
 * status codes, every refusal: bad code, code change, bad separator,
 * too long, too many lines), the EHLO capabilities, the transport values
 * and next hops (every form and the errors check-config reports), the
 * router (parent domains, relayhost, TLS levels per destination), the
 * DATA encoder (CR LF, dot stuffing, folding at 998 octets), the
 * quoted-printable conversion for peers without 8BITMIME, and the agent
 * protocol over a real socket pair (descriptors, direction, bounds).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/config.h"
#include "relay/relay_body.h"
#include "relay/relay_proto.h"
#include "relay/relay_qp.h"
#include "relay/relay_reply.h"
#include "relay/relay_route.h"
#include "testutil.h"

static enum relay_reply_state feed(struct relay_reply *r, const char *line, const char **err)
{
	return relay_reply_feed(r, line, strlen(line), err);
}

static void test_reply_single_and_multi(void **state)
{
	struct relay_reply r;
	const char *err = NULL;

	(void)state;
	relay_reply_init(&r);
	assert_int_equal(feed(&r, "250 2.1.5 Ok", &err), RELAY_REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.status, "2.1.5");
	assert_string_equal(buf_cstr(&r.text), "250 2.1.5 Ok");
	relay_reply_reset(&r);
	assert_int_equal(feed(&r, "550-5.1.1 first", &err), RELAY_REPLY_MORE);
	assert_int_equal(feed(&r, "550 5.1.1 second", &err), RELAY_REPLY_DONE);
	assert_string_equal(buf_cstr(&r.text), "550-5.1.1 first / 550 5.1.1 second");
	char *reason = relay_reply_reason(&r, "mx[192.0.2.1]:25", "RCPT TO");
	assert_string_equal(reason, "5.1.1 host mx[192.0.2.1]:25 said: 550-5.1.1 first / "
			    "550 5.1.1 second (in reply to RCPT TO)");
	free(reason);
	/* No enhanced code: one from the class; a bare code is complete. */
	relay_reply_reset(&r);
	assert_int_equal(feed(&r, "451", &err), RELAY_REPLY_DONE);
	assert_string_equal(r.status, "");
	reason = relay_reply_reason(&r, "p", NULL);
	assert_string_equal(reason, "4.0.0 host p said: 451");
	free(reason);
	/* An enhanced code of the wrong class is not taken as one. */
	relay_reply_reset(&r);
	assert_int_equal(feed(&r, "550 4.1.1 odd", &err), RELAY_REPLY_DONE);
	assert_string_equal(r.status, "");
	/* Control characters are cleaned in the text. */
	relay_reply_reset(&r);
	assert_int_equal(relay_reply_feed(&r, "250 a\tb\x01", 8, &err), RELAY_REPLY_DONE);
	assert_string_equal(buf_cstr(&r.text), "250 a?b?");
	relay_reply_free(&r);
}

static void test_reply_refusals(void **state)
{
	const char *bad[] = { "", "25", "2500 x", "abc ok", "150 x", "650 x", "250x", "2a0 x" };
	struct relay_reply r;
	const char *err = NULL;

	(void)state;
	relay_reply_init(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		relay_reply_reset(&r);
		err = NULL;
		assert_int_equal(feed(&r, bad[i], &err), RELAY_REPLY_BAD);
		assert_non_null(err);
	}
	relay_reply_reset(&r);
	assert_int_equal(feed(&r, "250-a", &err), RELAY_REPLY_MORE);
	assert_int_equal(feed(&r, "251 b", &err), RELAY_REPLY_BAD);
	assert_string_equal(err, "reply code changes within one reply");
	relay_reply_reset(&r);
	for (int i = 0; i < RELAY_REPLY_LINES_MAX; i++)
		assert_int_equal(feed(&r, "250-x", &err), RELAY_REPLY_MORE);
	assert_int_equal(feed(&r, "250 x", &err), RELAY_REPLY_BAD);
	assert_string_equal(err, "too many reply lines");
	assert_true(r.text.len <= RELAY_REPLY_TEXT_MAX);
	relay_reply_reset(&r);
	char *longline = malloc(RELAY_REPLY_LINE_MAX + 2);
	memset(longline, 'x', RELAY_REPLY_LINE_MAX + 1);
	memcpy(longline, "250 ", 4);
	longline[RELAY_REPLY_LINE_MAX + 1] = '\0';
	assert_int_equal(feed(&r, longline, &err), RELAY_REPLY_BAD);
	longline[RELAY_REPLY_LINE_MAX] = '\0';
	assert_int_equal(feed(&r, longline, &err), RELAY_REPLY_DONE);
	assert_int_equal(r.text.len, RELAY_REPLY_TEXT_MAX);
	free(longline);
	relay_reply_free(&r);
}

static void test_caps(void **state)
{
	struct relay_reply r;
	struct relay_caps c;
	const char *err = NULL;
	const char *lines[] = { "250-mx.example Hello", "250-pipelining", "250-SIZE 10240000",
				"250-8BITMIME", "250-STARTTLS", "250-DSN", "250-SMTPUTF8",
				"250-XSIZEFOO", "250 ENHANCEDSTATUSCODES" };

	(void)state;
	relay_reply_init(&r);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		feed(&r, lines[i], &err);
	relay_caps_parse(&r, &c);
	assert_int_equal(c.flags, RELAY_CAP_PIPELINING | RELAY_CAP_SIZE | RELAY_CAP_8BITMIME |
					  RELAY_CAP_STARTTLS | RELAY_CAP_DSN | RELAY_CAP_SMTPUTF8 |
					  RELAY_CAP_ENHANCED);
	assert_true(c.size_limit == 10240000);
	/* The greeting line is no keyword; a bad SIZE is no limit. */
	relay_reply_reset(&r);
	feed(&r, "250-PIPELINING", &err);
	feed(&r, "250 SIZE lots", &err);
	relay_caps_parse(&r, &c);
	assert_int_equal(c.flags, RELAY_CAP_SIZE);
	assert_true(c.size_limit == 0);
	relay_reply_free(&r);
}

static void test_route_values(void **state)
{
	struct relay_route r;
	const char *err = NULL;

	(void)state;
	assert_int_equal(relay_route_parse("smtp:[10.0.0.5]:2525", 25, &r, &err), 0);
	assert_int_equal(r.kind, RELAY_ROUTE_SMTP);
	assert_string_equal(r.nexthop.host, "10.0.0.5");
	assert_int_equal(r.nexthop.port, 2525);
	assert_false(r.nexthop.mx);
	assert_true(r.nexthop.literal);
	assert_int_equal(relay_route_parse("smtp:[Inner.Example.]", 25, &r, &err), 0);
	assert_string_equal(r.nexthop.host, "inner.example");
	assert_int_equal(r.nexthop.port, 25);
	assert_false(r.nexthop.mx);
	assert_false(r.nexthop.literal);
	assert_int_equal(relay_route_parse("smtp:mail.example:587", 26, &r, &err), 0);
	assert_true(r.nexthop.mx);
	assert_int_equal(r.nexthop.port, 587);
	assert_int_equal(relay_route_parse("smtp:[ipv6:2001:db8::1]:25", 25, &r, &err), 0);
	assert_string_equal(r.nexthop.host, "2001:db8::1");
	assert_true(r.nexthop.literal);
	assert_int_equal(relay_route_parse("smtp", 2525, &r, &err), 0);
	assert_true(r.nexthop_is_domain);
	assert_int_equal(r.nexthop.port, 2525);
	assert_int_equal(relay_route_parse("local", 25, &r, &err), 0);
	assert_int_equal(r.kind, RELAY_ROUTE_LOCAL);
	assert_int_equal(relay_route_parse("DISCARD", 25, &r, &err), 0);
	assert_int_equal(r.kind, RELAY_ROUTE_DISCARD);
	assert_int_equal(relay_route_parse("error:5.1.2 gone away", 25, &r, &err), 0);
	assert_int_equal(r.kind, RELAY_ROUTE_ERROR);
	assert_false(r.error_temporary);
	assert_string_equal(r.error, "5.1.2 gone away");
	assert_int_equal(relay_route_parse("error:4.4.1 not now", 25, &r, &err), 0);
	assert_true(r.error_temporary);

	const char *bad[] = { "smtp:[10.0.0.5", "smtp:[h]x", "smtp:h:0", "smtp:h:65536",
			      "smtp:h:port", "smtp:10.0.0.5", "smtp:", "smtp:bad name",
			      "error:550 no", "error:5.1 no", "error:", "relay:x", "lmtp:[h]" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (strcmp(bad[i], "smtp:") == 0)
			continue; /* "smtp:" alone is "smtp" */
		assert_int_equal(relay_route_parse(bad[i], 25, &r, &err), -1);
		assert_non_null(err);
		assert_non_null(relay_route_check_value(bad[i]));
	}
}

static void test_nexthop_format(void **state)
{
	struct relay_nexthop nh;
	const char *err = NULL;
	char out[300];

	(void)state;
	assert_int_equal(relay_nexthop_parse("[192.0.2.1]:26", 25, &nh, &err), 0);
	relay_nexthop_format(&nh, out, sizeof(out));
	assert_string_equal(out, "[192.0.2.1]:26");
	assert_int_equal(relay_nexthop_parse("mx.example", 25, &nh, &err), 0);
	relay_nexthop_format(&nh, out, sizeof(out));
	assert_string_equal(out, "mx.example:25");
	assert_int_equal(relay_nexthop_parse("[::1]", 25, &nh, &err), 0);
	relay_nexthop_format(&nh, out, sizeof(out));
	assert_string_equal(out, "[ipv6:::1]:25");
}

/* A configuration file with extra lines, loaded. */
static int load(const char *dir, const char *extra, struct config *cfg)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "hostname = mx.example.test\n%s", extra);
	fclose(f);
	return config_load(path, cfg, stderr);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void test_router(void **state)
{
	char dir[] = "/tmp/postern-relay-XXXXXX";
	struct config cfg;
	struct relay_route r;

	(void)state;
	assert_non_null(mkdtemp(dir));
	write_file(dir, "transport", "inner.test smtp:[10.0.0.5]:2525\n"
				     ".corp.test smtp:hub.corp.test\n"
				     "corp.test local\n"
				     "gone.test error:5.1.2 gone\n");
	write_file(dir, "tls", "secure.test verify\n[10.0.0.5]:2525 encrypt\n");
	assert_int_equal(load(dir, "transport_file = transport\ntls_policy_file = tls\n"
				   "relayhost = [smarthost.test]:587\ntls_policy = may\n", &cfg), 0);
	struct relay_router *rt = relay_router_load(&cfg, stderr);
	assert_non_null(rt);
	relay_router_route(rt, "inner.test", &r);
	assert_int_equal(r.kind, RELAY_ROUTE_SMTP);
	assert_string_equal(r.nexthop.host, "10.0.0.5");
	assert_int_equal(relay_router_tls(rt, "inner.test", &r.nexthop), RELAY_TLS_ENCRYPT);
	relay_router_route(rt, "a.b.corp.test", &r);
	assert_string_equal(r.nexthop.host, "hub.corp.test");
	assert_true(r.nexthop.mx);
	relay_router_route(rt, "corp.test", &r);
	assert_int_equal(r.kind, RELAY_ROUTE_LOCAL);
	relay_router_route(rt, "gone.test", &r);
	assert_int_equal(r.kind, RELAY_ROUTE_ERROR);
	/* No entry: relayhost. */
	relay_router_route(rt, "elsewhere.test", &r);
	assert_string_equal(r.nexthop.host, "smarthost.test");
	assert_int_equal(r.nexthop.port, 587);
	assert_false(r.nexthop.mx);
	assert_int_equal(relay_router_tls(rt, "elsewhere.test", &r.nexthop), RELAY_TLS_MAY);
	assert_int_equal(relay_router_tls(rt, "secure.test", &r.nexthop), RELAY_TLS_VERIFY);
	relay_router_free(&rt);
	config_free(&cfg);

	/* Without relayhost: the domain's own MX, relay_port. */
	assert_int_equal(load(dir, "relay_port = 2526\n", &cfg), 0);
	rt = relay_router_load(&cfg, stderr);
	relay_router_route(rt, "Remote.test", &r);
	assert_true(r.nexthop.mx);
	assert_true(r.nexthop_is_domain);
	assert_int_equal(r.nexthop.port, 2526);
	relay_router_free(&rt);
	config_free(&cfg);

	/* Problems are reported with FILE:LINE and refuse the router. */
	write_file(dir, "badtransport", "ok.test local\nbad.test smtp:[x\n");
	assert_int_equal(load(dir, "transport_file = badtransport\nrelayhost = [x\n"
				   "tls_policy = sometimes\n", &cfg), 0);
	char *text = NULL;
	size_t len = 0;
	FILE *errors = open_memstream(&text, &len);
	assert_null(relay_router_load(&cfg, errors));
	fclose(errors);
	assert_non_null(strstr(text, "postern.conf:3: relayhost:"));
	assert_non_null(strstr(text, "postern.conf:4: tls_policy: sometimes"));
	assert_non_null(strstr(text, "badtransport:2:"));
	free(text);
	config_free(&cfg);
	testutil_rmtree(dir);
}

static char *encode(const char *in, size_t chunk)
{
	struct relay_body b;
	buf_t out = BUF_INIT;
	size_t n = strlen(in);

	relay_body_init(&b);
	for (size_t i = 0; i < n; i += chunk)
		relay_body_feed(&b, in + i, n - i < chunk ? n - i : chunk, &out);
	relay_body_end(&b, &out);
	return buf_steal(&out);
}

static void test_body(void **state)
{
	(void)state;
	for (size_t chunk = 1; chunk <= 64; chunk *= 4) {
		char *s = encode("Subject: x\n\n.hidden\n..two\nend", chunk);
		assert_string_equal(s, "Subject: x\r\n\r\n..hidden\r\n...two\r\nend\r\n.\r\n");
		free(s);
	}
	/* A 2000-octet body line: 998 + 998 + 4; a 1200-octet header line:
	 * folded with CR LF SP. */
	char *in = malloc(4000);
	memset(in, 'h', 1200);
	memcpy(in, "X-H: ", 5);
	in[1200] = '\n';
	in[1201] = '\n';
	memset(in + 1202, 'b', 2000);
	in[3202] = '\0';
	for (size_t chunk = 7; chunk <= 4000; chunk *= 10) {
		char *s = encode(in, chunk);
		char *p = s;
		size_t lines[8], nl = 0;
		while (*p != '\0' && nl < 8) {
			char *e = strstr(p, "\r\n");
			assert_non_null(e);
			lines[nl++] = (size_t)(e - p);
			p = e + 2;
		}
		assert_int_equal(nl, 7);
		assert_int_equal(lines[0], 998);
		assert_int_equal(lines[1], 1 + 202);
		assert_int_equal(lines[2], 0);
		assert_int_equal(lines[3], 998);
		assert_int_equal(lines[4], 998);
		assert_int_equal(lines[5], 4);
		assert_int_equal(lines[6], 1); /* "." */
		assert_non_null(strstr(s, "\r\n h"));
		free(s);
	}
	free(in);
	assert_true(relay_body_is_8bit("a\xc3\xa9", 3));
	assert_false(relay_body_is_8bit("plain", 5));
}

/* Folding never cuts a UTF-8 character in two: a line of 997 octets
 * then "\xc3\xa9" breaks before the character, in the body (CR LF) and
 * in the header section (CR LF SP), whatever the chunks it comes in. */
static void test_body_fold_keeps_utf8_whole(void **state)
{
	(void)state;
	char *in = malloc(4000);
	size_t n = 0;

	memcpy(in, "X-H: ", 5);
	memset(in + 5, 'h', 992);
	n = 997;
	memcpy(in + n, "\xc3\xa9tail\n\n", 8);
	n += 8;
	memset(in + n, 'b', 996);
	n += 996;
	memcpy(in + n, "\xe2\x82\xac\xf0\x9f\x98\x80" "end\n", 11);
	n += 11;
	in[n] = '\0';
	for (size_t chunk = 1; chunk <= 4000; chunk = chunk < 4 ? chunk + 1 : chunk * 3) {
		char *s = encode(in, chunk);
		/* header: 997 octets, then CR LF SP and the whole character */
		assert_memory_equal(s + 997, "\r\n \xc3\xa9tail\r\n\r\n", 13);
		/* body: 996 + the 3-octet euro sign would be 999: it moves on */
		const char *b = s + 997 + 13;
		assert_memory_equal(b + 996, "\r\n\xe2\x82\xac\xf0\x9f\x98\x80" "end\r\n.\r\n", 17);
		free(s);
	}
	free(in);
}

static char *qp(const char *in)
{
	struct relay_qp q;
	buf_t out = BUF_INIT;

	relay_qp_init(&q);
	relay_qp_feed(&q, in, strlen(in), &out);
	relay_qp_end(&q, &out);
	return buf_steal(&out);
}

static void test_qp_encoder(void **state)
{
	(void)state;
	char *s = qp("a=b \xc3\xa9\ttab \n.dot\nend\t");
	assert_string_equal(s, "a=3Db =C3=A9\ttab=20\n=2Edot\nend=09");
	free(s);
	char *in = malloc(201);
	memset(in, 'x', 200);
	in[200] = '\0';
	s = qp(in);
	/* soft breaks: 75 characters and "=" per line */
	assert_int_equal(strlen(s), 200 + 2 * 2);
	assert_int_equal(strchr(s, '=') - s, 75);
	free(s);
	free(in);
}

/* The message content in a file; the plan for it. */
static enum relay_qp_verdict plan(const char *content, const char **why,
				  struct qf_header_edit **e, size_t *n)
{
	char path[] = "/tmp/postern-qp-XXXXXX";
	int fd = mkstemp(path);
	struct qf_msg msg;

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	memset(&msg, 0, sizeof(msg));
	msg.content_len = strlen(content);
	enum relay_qp_verdict v = relay_qp_plan(fd, &msg, why, e, n);
	close(fd);
	return v;
}

static void test_qp_plan(void **state)
{
	struct qf_header_edit *e = NULL;
	size_t n = 0;
	const char *why = NULL;

	(void)state;
	assert_int_equal(plan("MIME-Version: 1.0\nContent-Type: text/plain\n\n\xe9\n", &why,
			      &e, &n), RELAY_QP_CONVERT);
	assert_int_equal(n, 2); /* remove CTE, add CTE */
	assert_string_equal(e[1].text, "Content-Transfer-Encoding: quoted-printable");
	relay_qp_edits_free(e, n, 0);
	/* No MIME-Version but a Content-Type: five changes (the fuzzer found
	 * the array one too short for them). */
	assert_int_equal(plan("Content-Type: text/html\n\n\xe9\n", &why, &e, &n),
			 RELAY_QP_CONVERT);
	assert_int_equal(n, 5);
	assert_string_equal(e[3].text, "Content-Type: text/plain; charset=unknown-8bit");
	relay_qp_edits_free(e, n, 0);
	assert_int_equal(plan("MIME-Version: 1.0\nContent-Type: Multipart/Mixed;\n"
			      " boundary=b\n\n\xe9\n", &why, &e, &n), RELAY_QP_CANNOT);
	assert_non_null(strstr(why, "multipart"));
	assert_int_equal(plan("Subject: \xe9\n\nbody\n", &why, &e, &n), RELAY_QP_CANNOT);
	assert_non_null(strstr(why, "header"));
}

static struct relay_msg *deliver_msg(void)
{
	struct relay_msg *m = calloc(1, sizeof(*m));

	m->type = RELAY_DELIVER;
	m->seq = 9;
	memcpy(m->id, "660E4F4D8510C00426E", QUEUE_ID_LEN + 1);
	strcpy(m->sender, "alice@example.test");
	m->content_off = 300;
	m->content_len = 4000;
	m->flags = RELAY_FLAG_8BITMIME;
	strcpy(m->hop.host, "mx.remote.test");
	m->hop.port = 25;
	m->hop.mx = true;
	m->tls = RELAY_TLS_ENCRYPT;
	m->rcpt_count = 2;
	strcpy(m->rcpts[0].address, "bob@remote.test");
	strcpy(m->rcpts[1].address, "carol@remote.test");
	return m;
}

/* Over a real SOCK_SEQPACKET pair: a DELIVER travels with its descriptor
 * and decodes to itself; a RESULT travels without; a packet of the wrong
 * direction, without its descriptor, truncated or with bytes left over
 * is a violation (EPROTO) and any descriptor that came with it is
 * closed. */
static void test_proto_socket(void **state)
{
	int sv[2], fd = -1;
	const char *why = NULL;
	struct relay_msg *m = deliver_msg(), *got = calloc(1, sizeof(*got));
	unsigned char *raw = malloc(RELAY_MSG_MAX);

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	int file = open("/dev/null", O_RDONLY);
	assert_int_equal(relay_send(sv[0], m, file), 0);
	assert_int_equal(relay_recv(sv[1], true, got, &fd, &why), 1);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(got->seq, 9);
	assert_string_equal(got->hop.host, "mx.remote.test");
	assert_true(got->hop.mx);
	assert_int_equal(got->tls, RELAY_TLS_ENCRYPT);
	assert_int_equal(got->rcpt_count, 2);
	assert_string_equal(got->rcpts[1].address, "carol@remote.test");
	assert_string_equal(got->envid, "");
	/* The same DELIVER read as a reply: wrong direction. */
	assert_int_equal(relay_send(sv[0], m, file), 0);
	assert_int_equal(relay_recv(sv[1], false, got, &fd, &why), -1);
	assert_int_equal(errno, EPROTO);
	assert_string_equal(why, "message sent in the wrong direction");
	/* A DELIVER without its descriptor. */
	size_t n = relay_msg_encode(m, raw);
	assert_int_equal(relay_send_raw(sv[0], raw, n), 0);
	assert_int_equal(relay_recv(sv[1], true, got, &fd, &why), -1);
	assert_string_equal(why, "wrong number of descriptors");
	/* Truncated, and one byte too many. */
	assert_int_equal(relay_send_raw(sv[0], raw, n - 1), 0);
	assert_int_equal(relay_recv(sv[1], true, got, &fd, &why), -1);
	raw[n] = 0;
	assert_int_equal(relay_send_raw(sv[0], raw, n + 1), 0);
	assert_int_equal(relay_recv(sv[1], true, got, &fd, &why), -1);
	assert_string_equal(why, "bytes left over after the last field");
	/* A RESULT: no descriptor, any order of sequence numbers. */
	m->type = RELAY_RESULT;
	strcpy(m->peer, "mx.remote.test[192.0.2.1]:25");
	m->rcpts[0].result = RELAY_SENT;
	strcpy(m->rcpts[0].reason, "250 2.0.0 Ok");
	m->rcpts[1].result = RELAY_PERMFAIL;
	strcpy(m->rcpts[1].reason, "5.1.1 host said: 550 no");
	assert_int_equal(relay_send(sv[1], m, -1), 0);
	assert_int_equal(relay_recv(sv[0], false, got, &fd, &why), 1);
	assert_int_equal(fd, -1);
	assert_int_equal(got->rcpts[1].result, RELAY_PERMFAIL);
	assert_string_equal(got->peer, "mx.remote.test[192.0.2.1]:25");
	/* Nothing there: EAGAIN, not a violation. */
	assert_int_equal(relay_recv(sv[0], false, got, &fd, &why), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	/* The peer gone: end of stream. */
	close(sv[1]);
	assert_int_equal(relay_recv(sv[0], false, got, &fd, &why), 0);
	close(sv[0]);
	close(file);
	free(raw);
	free(m);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_single_and_multi),
		cmocka_unit_test(test_reply_refusals),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_route_values),
		cmocka_unit_test(test_nexthop_format),
		cmocka_unit_test(test_router),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_body_fold_keeps_utf8_whole),
		cmocka_unit_test(test_qp_encoder),
		cmocka_unit_test(test_qp_plan),
		cmocka_unit_test(test_proto_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
