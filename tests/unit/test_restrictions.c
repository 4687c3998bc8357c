/*
 * test_restrictions.c - the restriction lists as the policy runs them:
 * every built-in restriction, the order of the lists at RCPT, permit
 * ending one list only, warn_if_reject, HOLD and DISCARD, the unlisted-
 * recipient check after the lists, the default lists against the old
 * relay control, check-config's FILE:LINE reports, and the asynchronous
 * path: a test-only restriction that answers later from an event loop
 * (as the DNS restrictions will), finishing, continuing the walk, and
 * being cancelled.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "mail/recipients.h"
#include "policy/policy.h"
#include "policy/restrictions.h"

TESTUTIL_PRIVATE_DIR("restrictions")

struct fixture {
	struct config cfg;
	struct recipient_tables *tables;
	struct restrictions *set;
	struct policy_env env;
	struct event_base *base;
};

static struct fixture fx;

static void write_file(const char *name, const char *text)
{
	char *path = safeio_path_join(dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, text, strlen(text)), 0);
	close(fd);
	free(path);
}

/* The configuration file: the basics plus extra lines. */
static char *write_config(const char *extra)
{
	buf_t text = BUF_INIT;
	buf_printf(&text, "hostname = mx.example.test\nlocal_domains = example.test\n"
		   "relay_domains = relay.test\nspool_dir = spool\nmail_root = mail\n"
		   "users_file = users\nmynetworks = 10.0.0.0/8\n%s", extra);
	write_file("postern.conf", buf_cstr(&text));
	buf_free(&text);
	return safeio_path_join(dir, "postern.conf");
}

/* Load a configuration whose lists compile. */
static void load(const char *extra)
{
	memset(&fx, 0, sizeof(fx));
	char *conf = write_config(extra);
	write_file("users", "alice@example.test:{PLAIN}x::::::\n");
	assert_int_equal(config_load(conf, &fx.cfg, stderr), 0);
	free(conf);
	struct recipients_owner owner = { "the test user", getuid(), getgid() };
	fx.tables = recipients_load(fx.cfg.users_file, "", &owner, stderr);
	assert_non_null(fx.tables);
	fx.set = restrictions_load(&fx.cfg, stderr);
	assert_non_null(fx.set);
	fx.base = event_base_new();
	policy_env_init(&fx.env, &fx.cfg, fx.tables, fx.base);
	fx.env.restrictions = fx.set;
}

static void unload(void)
{
	restrictions_free(&fx.set);
	recipients_free(&fx.tables);
	config_free(&fx.cfg);
	event_base_free(fx.base);
}

/* What check-config prints for a configuration that must not compile. */
static char *refused(const char *extra)
{
	struct config cfg;
	char *conf = write_config(extra);
	write_file("users", "alice@example.test:{PLAIN}x::::::\n");
	assert_int_equal(config_load(conf, &cfg, stderr), 0);
	free(conf);
	char *text = NULL;
	size_t len = 0;
	FILE *errors = open_memstream(&text, &len);
	struct restrictions *r = restrictions_load(&cfg, errors);
	fclose(errors);
	if (r != NULL)
		fail_msg("the lists compiled: %s", extra);
	config_free(&cfg);
	return text;
}

static void assert_refused(const char *extra, const char *want)
{
	char *text = refused(extra);
	if (strstr(text, want) == NULL)
		fail_msg("expected \"%s\" in:\n%s", want, text);
	free(text);
}

/* ---- asking ---------------------------------------------------------------------- */

struct ask {
	const char *client;     /* default 192.0.2.1 */
	const char *helo;       /* NULL: none */
	const char *sender;     /* path with <>; NULL: none */
	const char *rcpt;       /* path with <>; NULL: none */
	const char *auth;       /* auth_user */
	enum policy_stage stage; /* default RCPT */
};

struct answer {
	bool done;
	enum policy_verdict verdict;
	struct policy_reply reply;
};

static void answered(void *arg, struct policy_reply *reply)
{
	struct answer *a = arg;
	a->done = true;
	a->verdict = reply->verdict;
	a->reply = *reply;
	memset(&a->reply.headers, 0, sizeof(a->reply.headers));
	memset(&a->reply.remove_headers, 0, sizeof(a->reply.remove_headers));
	memset(&a->reply.hits, 0, sizeof(a->reply.hits));
}

static struct mail_address path(const char *p)
{
	struct mail_address a;
	const char *why;
	if (address_parse_path(p, strlen(p), ADDR_ALLOW_NULL | ADDR_ALLOW_BARE_POSTMASTER, &a,
			       &why) < 0)
		fail_msg("%s: %s", p, why);
	return a;
}

static struct policy_request request(const struct ask *q)
{
	struct policy_request req = { .stage = q->stage ? q->stage : POLICY_RCPT };
	const char *client = q->client != NULL ? q->client : "192.0.2.1";
	if (strchr(client, ':') != NULL) {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&req.client;
		sa->sin6_family = AF_INET6;
		inet_pton(AF_INET6, client, &sa->sin6_addr);
	} else {
		struct sockaddr_in *sa = (struct sockaddr_in *)&req.client;
		sa->sin_family = AF_INET;
		inet_pton(AF_INET, client, &sa->sin_addr);
	}
	snprintf(req.client_addr, sizeof(req.client_addr), "%s", client);
	req.helo = (char *)q->helo;
	req.auth_user = (char *)q->auth;
	if (q->sender != NULL) {
		req.has_sender = true;
		req.sender = path(q->sender);
		snprintf(req.queue_id, sizeof(req.queue_id), "%s", "0123456789ABCDEF012");
	}
	if (q->rcpt != NULL) {
		req.has_rcpt = true;
		req.rcpt = path(q->rcpt);
	}
	return req;
}

/* Run the stage; wait (the event loop) if a restriction is pending. */
static struct answer ask(struct ask q)
{
	struct answer a = { 0 };
	struct policy_request req = request(&q);
	struct policy_reply r;
	struct policy_run *run = policy_run_start(&fx.env, &req, answered, &a, &r);
	if (run == NULL) {
		answered(&a, &r);
		policy_reply_free(&r);
		return a;
	}
	for (int i = 0; i < 1000 && !a.done; i++)
		event_base_loop(fx.base, EVLOOP_ONCE);
	assert_true(a.done);
	return a;
}

static struct answer ask_rcpt(const char *rcpt)
{
	return ask((struct ask){ .helo = "client.example.org", .sender = "<s@sender.test>",
				 .rcpt = rcpt });
}

static void assert_answer(struct answer a, enum policy_verdict v, int code, const char *status,
			  const char *text_part)
{
	if (a.verdict != v)
		fail_msg("expected %s, got %s (%d %s %s)", policy_verdict_name(v),
			 policy_verdict_name(a.verdict), a.reply.code, a.reply.status, a.reply.text);
	if (code != 0)
		assert_int_equal(a.reply.code, code);
	if (status != NULL)
		assert_string_equal(a.reply.status, status);
	if (text_part != NULL && strstr(a.reply.text, text_part) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", text_part, a.reply.text);
}

static void assert_detail(struct answer a, const char *part)
{
	if (strstr(a.reply.detail, part) == NULL)
		fail_msg("expected \"%s\" in the detail \"%s\"", part, a.reply.detail);
}

/* ---- stderr, for what is logged ---------------------------------------------------- */

static int saved_stderr = -1;
static char log_path[300];

static void capture_start(void)
{
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	fflush(stderr);
	saved_stderr = dup(2);
	int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
}

static char *capture_end(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	buf_t b = BUF_INIT;
	assert_int_equal(safeio_read_file(log_path, 1 << 20, &b), 0);
	return buf_steal(&b);
}

static void assert_logged(const char *log, const char *part)
{
	if (strstr(log, part) == NULL)
		fail_msg("expected \"%s\" in the log:\n%s", part, log);
}

/* ---- the defaults: exactly the old relay control -------------------------------- */

static void test_default_lists_are_relay_control(void **state)
{
	(void)state;
	load("");
	/* The compiled default of recipient_restrictions is the built-in one. */
	assert_string_equal(fx.cfg.recipient_restrictions.words.items[0], "permit_mynetworks");
	assert_int_equal(fx.cfg.recipient_restrictions.words.count, 3);
	for (int builtin = 0; builtin < 2; builtin++) {
		fx.env.restrictions = builtin ? NULL : fx.set; /* NULL: restrictions_default() */
		assert_answer(ask_rcpt("<alice@example.test>"), POLICY_DUNNO, 0, NULL, NULL);
		assert_answer(ask_rcpt("<Postmaster>"), POLICY_REJECT, 550, "5.1.1", "User unknown");
		assert_answer(ask_rcpt("<anyone@relay.test>"), POLICY_DUNNO, 0, NULL, NULL);
		struct answer a = ask_rcpt("<bob@example.test>");
		assert_answer(a, POLICY_REJECT, 550, "5.1.1", "<bob@example.test>: Recipient "
			      "address rejected: User unknown");
		assert_string_equal(a.reply.reason, "unknown_user");
		assert_detail(a, "restriction=reject_unlisted_recipient");
		a = ask_rcpt("<user@far.test>");
		assert_answer(a, POLICY_REJECT, 554, "5.7.1", "<user@far.test>: Relay access denied");
		assert_string_equal(a.reply.reason, "relay_denied");
		assert_detail(a, "restriction=reject_unauth_destination list=recipient_restrictions");
		assert_answer(ask_rcpt("<user%far.test@relay.test>"), POLICY_REJECT, 554, "5.7.1",
			      "Relay access denied");
		/* From mynetworks: anywhere, but unknown local users and routing
		 * tricks into our domains are still refused. */
		assert_answer(ask((struct ask){ .client = "10.1.2.3", .rcpt = "<u@far.test>" }),
			      POLICY_DUNNO, 0, NULL, NULL);
		assert_answer(ask((struct ask){ .client = "10.1.2.3", .rcpt = "<bob@example.test>" }),
			      POLICY_REJECT, 550, "5.1.1", NULL);
		assert_answer(ask((struct ask){ .client = "10.1.2.3",
						.rcpt = "<u%far.test@relay.test>" }),
			      POLICY_REJECT, 554, "5.7.1", NULL);
		assert_answer(ask((struct ask){ .client = "10.1.2.3",
						.rcpt = "<u%far.test@example.test>" }),
			      POLICY_REJECT, 554, "5.7.1", NULL);
		/* permit_auth: whoever logged in may relay (no AUTH exists yet,
		 * so auth_user is always NULL in a real session today). */
		assert_answer(ask((struct ask){ .auth = "alice@example.test", .rcpt = "<u@far.test>" }),
			      POLICY_DUNNO, 0, NULL, NULL);
	}
	/* No recipient: nothing to say (the RCPT check is only for RCPT). */
	assert_answer(ask((struct ask){ .sender = "<s@x.test>" }), POLICY_DUNNO, 0, NULL, NULL);
	unload();
}

/* ---- each restriction ------------------------------------------------------------- */

static void test_permit_reject_defer(void **state)
{
	(void)state;
	load("client_restrictions = permit\nhelo_restrictions = reject\n");
	/* permit ends the client list only; the helo list still refuses. */
	struct answer a = ask_rcpt("<alice@example.test>");
	assert_answer(a, POLICY_REJECT, 554, "5.7.1",
		      "<client.example.org>: HELO name refused: Access denied");
	assert_detail(a, "restriction=reject list=helo_restrictions");
	unload();
	load("sender_restrictions = defer\n");
	assert_answer(ask_rcpt("<alice@example.test>"), POLICY_TEMPFAIL, 450, "4.7.1",
		      "<s@sender.test>: Sender address refused: Try again later");
	unload();
	load("client_restrictions = reject\n");
	assert_answer(ask_rcpt("<alice@example.test>"), POLICY_REJECT, 554, "5.7.1",
		      "<192.0.2.1>: Client address refused: Access denied");
	unload();
	load("recipient_restrictions = permit_mynetworks, defer_unauth_destination\n");
	assert_answer(ask_rcpt("<u@far.test>"), POLICY_TEMPFAIL, 450, "4.7.1",
		      "Relay access denied");
	unload();
	load("data_restrictions = reject\n");
	assert_answer(ask((struct ask){ .stage = POLICY_DATA, .sender = "<s@x.test>" }),
		      POLICY_REJECT, 554, "5.7.1", "<DATA>: DATA command refused: Access denied");
	unload();
}

/* The first decisive answer wins: an OK before a reject, and "permit"
 * in the recipient list still meets the unlisted-recipient check. */
static void test_order(void **state)
{
	(void)state;
	write_file("ok.cidr", "192.0.2.0/24 OK\n");
	load("client_restrictions = check_client_access cidr:ok.cidr, reject\n"
	     "recipient_restrictions = permit, reject_unauth_destination\n");
	assert_answer(ask_rcpt("<u@far.test>"), POLICY_DUNNO, 0, NULL, NULL);
	assert_answer(ask((struct ask){ .client = "198.51.100.1", .rcpt = "<u@far.test>" }),
		      POLICY_REJECT, 554, "5.7.1", "Client address refused");
	assert_answer(ask_rcpt("<nobody@example.test>"), POLICY_REJECT, 550, "5.1.1", NULL);
	unload();
}

static void test_access_maps(void **state)
{
	(void)state;
	write_file("clients", "192.0.2.66 REJECT go away\n198.51.100 DEFER later\n"
		   "2001:db8:1: 551 5.7.9 not from there\n");
	write_file("helos", "bad.example.org REJECT\nexample.net HOLD look at this\n");
	write_file("senders.re", "/^spam@(.*)$/ REJECT no spam from $1\n"
		   "/@discard\\.test$/ DISCARD dropped\n/@warn\\.test$/ WARN unusual sender\n");
	write_file("rcpts", "alice@example.test OK\ncarol@ 450 4.2.1 mailbox busy\n");
	load("client_restrictions = check_client_access file:clients\n"
	     "helo_restrictions = check_helo_access file:helos\n"
	     "sender_restrictions = check_sender_access regexp:senders.re\n"
	     "recipient_restrictions = check_recipient_access file:rcpts, permit_mynetworks,\n"
	     "  reject_unauth_destination\n");
	struct answer a = ask((struct ask){ .client = "192.0.2.66", .rcpt = "<alice@example.test>" });
	assert_answer(a, POLICY_REJECT, 554, "5.7.1", "<192.0.2.66>: Client address refused: go away");
	assert_detail(a, "restriction=check_client_access list=client_restrictions map=file:");
	assert_detail(a, "key=192.0.2.66");
	assert_string_equal(a.reply.reason, "check_client_access");
	a = ask((struct ask){ .client = "198.51.100.7", .rcpt = "<alice@example.test>" });
	assert_answer(a, POLICY_TEMPFAIL, 450, "4.7.1", "later");
	assert_detail(a, "key=198.51.100");
	a = ask((struct ask){ .client = "2001:db8:1::7", .rcpt = "<alice@example.test>" });
	assert_answer(a, POLICY_REJECT, 551, "5.7.9", "not from there");
	assert_answer(ask((struct ask){ .helo = "BAD.example.org", .rcpt = "<alice@example.test>" }),
		      POLICY_REJECT, 554, "5.7.1", "<BAD.example.org>: HELO name refused: Access "
		      "denied");
	a = ask((struct ask){ .helo = "mx.example.net", .rcpt = "<alice@example.test>" });
	assert_answer(a, POLICY_HOLD, 0, NULL, "look at this");
	assert_detail(a, "restriction=check_helo_access");
	assert_answer(ask((struct ask){ .sender = "<spam@bulk.test>", .rcpt = "<alice@example.test>" }),
		      POLICY_REJECT, 554, "5.7.1",
		      "<spam@bulk.test>: Sender address refused: no spam from bulk.test");
	assert_answer(ask((struct ask){ .sender = "<x@discard.test>", .rcpt = "<alice@example.test>" }),
		      POLICY_DISCARD, 0, NULL, "dropped");
	capture_start();
	a = ask((struct ask){ .sender = "<x@warn.test>", .rcpt = "<alice@example.test>" });
	char *log = capture_end();
	assert_answer(a, POLICY_DUNNO, 0, NULL, NULL);
	assert_logged(log, "warning: 0123456789ABCDEF012: warn: RCPT client=192.0.2.1 helo=<> "
		      "from=<x@warn.test> to=<alice@example.test> restriction=check_sender_access "
		      "list=sender_restrictions map=regexp:");
	assert_logged(log, ": unusual sender");
	free(log);
	/* OK in the recipient map permits the list, and the recipient must
	 * still exist. */
	assert_answer(ask_rcpt("<carol@example.test>"), POLICY_TEMPFAIL, 450, "4.2.1",
		      "<carol@example.test>: Recipient address refused: mailbox busy");
	assert_answer(ask_rcpt("<carol@far.test>"), POLICY_TEMPFAIL, 450, "4.2.1", NULL);
	assert_answer(ask_rcpt("<alice@example.test>"), POLICY_DUNNO, 0, NULL, NULL);
	unload();
}

/* A HOLD lets the walk go on: a later refusal still refuses; DISCARD
 * ends it. */
static void test_hold_and_discard(void **state)
{
	(void)state;
	write_file("hold.cidr", "0.0.0.0/0 HOLD everything\n");
	write_file("discard.cidr", "0.0.0.0/0 DISCARD\n");
	load("client_restrictions = check_client_access cidr:hold.cidr\n"
	     "sender_restrictions = reject_non_fqdn_sender\n");
	assert_answer(ask((struct ask){ .sender = "<a@b.test>", .rcpt = "<alice@example.test>" }),
		      POLICY_HOLD, 0, NULL, "everything");
	assert_answer(ask((struct ask){ .sender = "<a@localhost>", .rcpt = "<alice@example.test>" }),
		      POLICY_REJECT, 504, "5.5.2", NULL);
	unload();
	load("client_restrictions = check_client_access cidr:discard.cidr, reject\n");
	struct answer a = ask_rcpt("<alice@example.test>");
	assert_answer(a, POLICY_DISCARD, 0, NULL, "discarded by an access map");
	/* ...but an unknown local recipient is refused all the same. */
	assert_answer(ask_rcpt("<nobody@example.test>"), POLICY_REJECT, 550, "5.1.1", NULL);
	unload();
}

static void test_warn_if_reject(void **state)
{
	(void)state;
	load("client_restrictions = warn_if_reject reject, warn_if_reject permit, reject\n");
	capture_start();
	struct answer a = ask_rcpt("<alice@example.test>");
	char *log = capture_end();
	/* The first reject only warns; the permit it changed nothing about
	 * ends the list before the last reject. */
	assert_answer(a, POLICY_DUNNO, 0, NULL, NULL);
	assert_logged(log, "info: 0123456789ABCDEF012: reject_warning: RCPT client=192.0.2.1 "
		      "helo=<client.example.org> from=<s@sender.test> to=<alice@example.test> "
		      "code=554 5.7.1 restriction=reject list=client_restrictions: <192.0.2.1>: "
		      "Client address refused: Access denied");
	free(log);
	unload();
	load("helo_restrictions = warn_if_reject reject_non_fqdn_helo, reject_non_fqdn_helo\n");
	a = ask((struct ask){ .helo = "localhost", .rcpt = "<alice@example.test>" });
	assert_answer(a, POLICY_REJECT, 504, "5.5.2", "<localhost>: HELO name refused");
	unload();
}

static void test_helo_checks(void **state)
{
	(void)state;
	load("helo_restrictions = reject_invalid_helo, reject_non_fqdn_helo\n");
	static const char *const fine[] = { "mx.example.org", "MX.Example.Org.", "[192.0.2.1]",
					    "[IPv6:2001:db8::1]", "192.0.2.1", "a_b.example.org" };
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		assert_answer(ask((struct ask){ .helo = fine[i], .rcpt = "<alice@example.test>" }),
			      POLICY_DUNNO, 0, NULL, NULL);
	static const char *const invalid[] = { "-bad.example", "a..b", "bad-.example.org",
					       "[300.1.1.1]", "ex ample", "a@b.org", "[IPv6:zz]" };
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		assert_answer(ask((struct ask){ .helo = invalid[i], .rcpt = "<alice@example.test>" }),
			      POLICY_REJECT, 501, "5.5.2", "HELO name refused: not a valid host name");
	assert_answer(ask((struct ask){ .helo = "localhost", .rcpt = "<alice@example.test>" }),
		      POLICY_REJECT, 504, "5.5.2", "not a fully-qualified domain name");
	/* No HELO (helo_required = no): nothing to check. */
	assert_answer(ask((struct ask){ .rcpt = "<alice@example.test>" }), POLICY_DUNNO, 0, NULL,
		      NULL);
	unload();
}

static void test_non_fqdn_addresses(void **state)
{
	(void)state;
	load("sender_restrictions = reject_non_fqdn_sender\n"
	     "recipient_restrictions = reject_non_fqdn_recipient, reject_unauth_destination\n");
	assert_answer(ask((struct ask){ .sender = "<a@localhost>", .rcpt = "<alice@example.test>" }),
		      POLICY_REJECT, 504, "5.5.2", "<a@localhost>: Sender address refused: the "
		      "domain is not fully qualified");
	static const char *const fine[] = { "<>", "<a@b.example>", "<a@[192.0.2.1]>" };
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		assert_answer(ask((struct ask){ .sender = fine[i], .rcpt = "<alice@example.test>" }),
			      POLICY_DUNNO, 0, NULL, NULL);
	assert_answer(ask((struct ask){ .sender = "<a@b.test>", .rcpt = "<alice@localhost>" }),
		      POLICY_REJECT, 504, "5.5.2", "<alice@localhost>: Recipient address refused");
	/* <Postmaster> must always be accepted (RFC 5321 4.1.1.3). */
	assert_answer(ask((struct ask){ .sender = "<a@b.test>", .rcpt = "<Postmaster>" }),
		      POLICY_REJECT, 550, "5.1.1", "User unknown"); /* no such user, but not 504 */
	unload();
}

/* ---- configuration problems ------------------------------------------------------ */

static void test_configuration_problems(void **state)
{
	(void)state;
	write_file("fine", "a OK\n");
	assert_refused("client_restrictions = permit_mynetworks, bogus\n",
		       "postern.conf:8: client_restrictions: unknown restriction \"bogus\"");
	assert_refused("helo_restrictions = file:fine\n",
		       "postern.conf:8: helo_restrictions: \"file:fine\" looks like a map");
	assert_refused("sender_restrictions = reject_non_fqdn_sender,\n"
		       "   check_sender_access\n",
		       "postern.conf:8: sender_restrictions: check_sender_access needs a map");
	assert_refused("sender_restrictions = check_sender_access file:missing\n",
		       "/missing: cannot read: No such file or directory");
	assert_refused("sender_restrictions = check_sender_access file:missing\n",
		       "postern.conf:8: sender_restrictions: check_sender_access file:missing: the "
		       "map cannot be used");
	write_file("broken", "a OK\nb\n");
	assert_refused("client_restrictions = check_client_access file:broken\n",
		       "/broken:2: expected \"key value\"");
	assert_refused("client_restrictions = reject_rbl_client zen.example.org=127.0.0.2\n",
		       "postern.conf:8: client_restrictions: reject_rbl_client "
		       "zen.example.org=127.0.0.2: needs dns: not available yet");
	assert_refused("sender_restrictions = reject_unknown_sender_domain\n",
		       "reject_unknown_sender_domain: needs dns: not available yet");
	assert_refused("client_restrictions = reject_unknown_client\n", "needs dns");
	assert_refused("sender_restrictions = reject_rhsbl_sender dbl.example\n", "needs dns");
	assert_refused("recipient_restrictions = reject_unknown_recipient_domain, "
		       "reject_unauth_destination\n", "needs dns");
	assert_refused("data_restrictions = check_recipient_access file:fine\n",
		       "data_restrictions: check_recipient_access needs a recipient");
	assert_refused("data_restrictions = reject_unauth_destination\n",
		       "data_restrictions: reject_unauth_destination needs a recipient");
	assert_refused("client_restrictions = permit_mynetworks, warn_if_reject\n",
		       "warn_if_reject must be followed");
	assert_refused("recipient_restrictions = permit_mynetworks, permit_auth\n",
		       "postern.conf:8: recipient_restrictions: name reject_unauth_destination");
	/* The same map named twice is opened once. */
	write_file("fine.cidr", "192.0.2.0/24 OK\n");
	load("client_restrictions = check_client_access file:fine\n"
	     "sender_restrictions = check_sender_access file:./fine\n"
	     "helo_restrictions = check_helo_access cidr:fine.cidr\n");
	assert_int_equal(restrictions_map_count(fx.set), 2);
	unload();
}

/* ---- the asynchronous path ---------------------------------------------------------- */

/* test_wait WORD: answers WORD (dunno, permit, reject, defer, hold,
 * discard) one millisecond later, from the event loop. */
struct wait_state {
	struct event *timer;
	struct restriction_ctx *ctx;
};

static unsigned waits_started, waits_cancelled, waits_finished;

static void wait_done(evutil_socket_t fd, short what, void *arg)
{
	struct wait_state *w = arg;
	struct restriction_ctx *ctx = w->ctx;
	const char *word = restriction_arg(ctx);
	(void)fd;
	(void)what;
	enum policy_verdict v = POLICY_DUNNO;
	if (strcmp(word, "permit") == 0)
		v = POLICY_ACCEPT;
	else if (strcmp(word, "reject") == 0)
		v = POLICY_REJECT;
	else if (strcmp(word, "defer") == 0)
		v = POLICY_TEMPFAIL;
	else if (strcmp(word, "hold") == 0)
		v = POLICY_HOLD;
	else if (strcmp(word, "discard") == 0)
		v = POLICY_DISCARD;
	if (v != POLICY_DUNNO && v != POLICY_ACCEPT)
		restriction_reply(ctx, v == POLICY_TEMPFAIL ? 451 : 554,
				  v == POLICY_TEMPFAIL ? "4.7.1" : "5.7.1", "waited",
				  "<%s>: listed after a wait", restriction_request(ctx)->client_addr);
	restriction_detail(ctx, "waited=%s", word);
	event_free(w->timer);
	free(w);
	waits_finished++;
	restriction_finish(ctx, v);
}

static enum policy_verdict wait_run(struct restriction_ctx *ctx)
{
	struct wait_state *w = xcalloc(1, sizeof(*w));
	w->ctx = ctx;
	w->timer = evtimer_new(restriction_env(ctx)->base, wait_done, w);
	struct timeval tv = { 0, 1000 };
	evtimer_add(w->timer, &tv);
	restriction_set_state(ctx, w);
	waits_started++;
	return POLICY_PENDING;
}

static void wait_cancel(struct restriction_ctx *ctx)
{
	struct wait_state *w = restriction_state(ctx);
	event_free(w->timer);
	free(w);
	waits_cancelled++;
}

static const char *wait_arg(const char *arg)
{
	static const char *const words[] = { "dunno", "permit", "reject", "defer", "hold",
					     "discard" };
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(arg, words[i]) == 0)
			return NULL;
	return "expected dunno, permit, reject, defer, hold or discard";
}

static const struct restriction_type test_wait = {
	"test_wait", RESTRICTION_WORD_ARG, 0, wait_run, wait_cancel, wait_arg, NULL,
};

/* As the DNS layer will: a provider takes the place of a named one. */
static const struct restriction_type test_rbl = {
	"reject_rbl_client", RESTRICTION_WORD_ARG, 0, wait_run, wait_cancel, wait_arg, NULL,
};

static void test_async_restrictions(void **state)
{
	(void)state;
	assert_true(restrictions_provide(&test_wait));
	assert_refused("client_restrictions = test_wait maybe\n",
		       "client_restrictions: test_wait maybe: expected dunno");

	/* A pending restriction decides when it finishes. */
	load("client_restrictions = test_wait reject\n");
	waits_started = waits_finished = 0;
	struct answer a = ask_rcpt("<alice@example.test>");
	assert_answer(a, POLICY_REJECT, 554, "5.7.1", "<192.0.2.1>: listed after a wait");
	assert_detail(a, "restriction=test_wait list=client_restrictions waited=reject");
	assert_int_equal(waits_started, 1);
	assert_int_equal(waits_finished, 1);
	unload();

	/* DUNNO after a wait: the walk goes on, into the next list, through
	 * a second wait, to the relay control. */
	load("client_restrictions = test_wait dunno\n"
	     "sender_restrictions = test_wait permit, reject\n");
	waits_started = 0;
	assert_answer(ask_rcpt("<u@far.test>"), POLICY_REJECT, 554, "5.7.1", "Relay access denied");
	assert_answer(ask_rcpt("<alice@example.test>"), POLICY_DUNNO, 0, NULL, NULL);
	assert_answer(ask_rcpt("<nobody@example.test>"), POLICY_REJECT, 550, "5.1.1", NULL);
	assert_int_equal(waits_started, 6);
	unload();

	/* warn_if_reject holds for a restriction that answers later. */
	load("client_restrictions = warn_if_reject test_wait reject, test_wait defer\n");
	capture_start();
	a = ask_rcpt("<alice@example.test>");
	char *log = capture_end();
	assert_answer(a, POLICY_TEMPFAIL, 451, "4.7.1", "listed after a wait");
	assert_logged(log, "reject_warning: RCPT client=192.0.2.1");
	assert_logged(log, "restriction=test_wait list=client_restrictions waited=reject: "
		      "<192.0.2.1>: listed after a wait");
	free(log);
	unload();

	/* HOLD after a wait, then a DISCARD after a wait. */
	load("client_restrictions = test_wait hold\nhelo_restrictions = test_wait discard\n");
	assert_answer(ask_rcpt("<alice@example.test>"), POLICY_DISCARD, 0, NULL, NULL);
	unload();

	/* The session goes away while a restriction waits: it is cancelled,
	 * and the run's callback is never called. */
	load("client_restrictions = test_wait reject\n");
	waits_started = waits_cancelled = waits_finished = 0;
	struct ask q = { .rcpt = "<alice@example.test>" };
	struct policy_request req = request(&q);
	struct answer never = { 0 };
	struct policy_reply r;
	struct policy_run *run = policy_run_start(&fx.env, &req, answered, &never, &r);
	assert_non_null(run);
	assert_int_equal(waits_started, 1);
	policy_run_cancel(&run);
	assert_null(run);
	assert_int_equal(waits_cancelled, 1);
	event_base_loop(fx.base, EVLOOP_NONBLOCK);
	assert_false(never.done);
	assert_int_equal(waits_finished, 0);
	unload();

	/* At DATA too. */
	load("data_restrictions = test_wait defer\n");
	assert_answer(ask((struct ask){ .stage = POLICY_DATA, .sender = "<s@x.test>" }),
		      POLICY_TEMPFAIL, 451, "4.7.1", NULL);
	unload();

	/* A provider takes the place of a DNS restriction's name; a working
	 * built-in cannot be replaced. */
	assert_true(restrictions_provide(&test_rbl));
	load("client_restrictions = reject_rbl_client reject\n");
	assert_answer(ask_rcpt("<alice@example.test>"), POLICY_REJECT, 554, "5.7.1", NULL);
	unload();
	static const struct restriction_type fake_permit = {
		"permit", RESTRICTION_NO_ARG, 0, wait_run, NULL, NULL, NULL,
	};
	assert_false(restrictions_provide(&fake_permit));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_lists_are_relay_control),
		cmocka_unit_test(test_permit_reject_defer),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_access_maps),
		cmocka_unit_test(test_hold_and_discard),
		cmocka_unit_test(test_warn_if_reject),
		cmocka_unit_test(test_helo_checks),
		cmocka_unit_test(test_non_fqdn_addresses),
		cmocka_unit_test(test_configuration_problems),
		cmocka_unit_test(test_async_restrictions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
