/*
 * test_auth.c - the auth process and its client: password schemes
 * (crypt_r: yescrypt, SHA-512, bcrypt; PLAIN), the throttling of failed
 * logins (delays, bans, their end), the protocol's strict decoding, and a
 * real auth process (forked, as the supervisor starts it: a control
 * socket pair with the users file as a descriptor) answering
 * auth_client.c on an event loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/auth/auth_client.h"
#include "../../src/auth/auth_proto.h"
#include "../../src/auth/auth_throttle.h"
#include "../../src/auth/auth_users.h"
#include "../../src/auth/auth_verify.h"
#include "../../src/lib/buf.h"
#include "../../src/server/auth_role.h"
#include "testutil.h"

TESTUTIL_PRIVATE_DIR("auth")

/* A crypt(3) hash of password with a new setting of prefix. */
static char *make_hash(const char *prefix, const char *password)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)));
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char *out = strdup(crypt_r(password, setting, cd));
	free(cd);
	return out;
}

static void schemes(void **state)
{
	(void)state;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *prefixes[] = { "$y$", "$6$", "$2b$", "$5$" };
	for (size_t i = 0; i < 4; i++) {
		char *h = make_hash(prefixes[i], "correct horse");
		char field[512];
		assert_true(auth_hash_matches(h, "correct horse", cd));
		assert_false(auth_hash_matches(h, "correct hors", cd));
		assert_false(auth_hash_matches(h, "", cd));
		snprintf(field, sizeof(field), "{CRYPT}%s", h);
		assert_true(auth_hash_matches(field, "correct horse", cd));
		free(h);
	}
	char *h6 = make_hash("$6$", "pw"), *hb = make_hash("$2y$", "pw"), field[512];
	snprintf(field, sizeof(field), "{SHA512-CRYPT}%s", h6);
	assert_true(auth_hash_matches(field, "pw", cd));
	snprintf(field, sizeof(field), "{BLF-CRYPT}%s", hb);
	assert_true(auth_hash_matches(field, "pw", cd));
	assert_false(auth_hash_matches(field, "PW", cd));
	free(h6);
	free(hb);
	assert_true(auth_hash_matches("{PLAIN}secret", "secret", cd));
	assert_false(auth_hash_matches("{PLAIN}secret", "secret2", cd));
	assert_false(auth_hash_matches("{PLAIN}secret", "secre", cd));
	/* locked accounts and what cannot be checked match nothing */
	assert_false(auth_hash_matches("{SHA512-CRYPT}!", "", cd));
	assert_false(auth_hash_matches("", "", cd));
	assert_false(auth_hash_matches("*", "*", cd));
	assert_false(auth_hash_matches("{MD5}abc", "abc", cd));
	assert_false(auth_hash_matches("abc", "abc", cd)); /* DES crypt: refused */
	const char *why = NULL;
	assert_true(auth_hash_supported("{SHA512-CRYPT}!", &why));
	assert_false(auth_hash_supported("{SSHA}xyz", &why));
	assert_non_null(why);
	assert_false(auth_hash_supported("$1$salt$hash", &why)); /* MD5 crypt */
	free(cd);
}

static void constant_time_equality(void **state)
{
	(void)state;
	assert_true(auth_equal_ct("abc", 3, "abc", 3));
	assert_false(auth_equal_ct("abc", 3, "abd", 3));
	assert_false(auth_equal_ct("abc", 3, "abcd", 4));
	assert_false(auth_equal_ct("", 0, "\0", 1));
	assert_true(auth_equal_ct("", 0, "", 0));
}

static void users_table(void **state)
{
	(void)state;
	char text[] = "# comment\n"
		      "Alice@Example.Test:{PLAIN}a::::::\n"
		      "\n"
		      "bob@example.test:{SHA512-CRYPT}$6$x$y:::::: userdb_quota_rule=*:storage=1M\r\n"
		      "nodomain:{PLAIN}x\n"
		      "alice@example.test:{PLAIN}second\n"
		      "carol@example.test:{SSHA}zzz\n"
		      "nopassword@example.test\n";
	struct auth_users *u = auth_users_parse(text, strlen(text), "users");
	assert_int_equal(auth_users_count(u), 3);
	assert_string_equal(auth_users_password(u, "alice@example.test"), "{PLAIN}a");
	assert_string_equal(auth_users_password(u, "bob@example.test"), "{SHA512-CRYPT}$6$x$y");
	assert_string_equal(auth_users_password(u, "carol@example.test"), "{SSHA}zzz");
	assert_null(auth_users_password(u, "nodomain"));
	assert_null(auth_users_password(u, "nopassword@example.test"));
	auth_users_free(&u);
	assert_null(u);
	/* the text is wiped once read */
	for (size_t i = 0; i < sizeof(text) - 1; i++)
		assert_int_equal(text[i], 0);
}

/* The field an unknown user's login is checked against costs what most
 * users' logins cost: the most common cost class; none when clear-text
 * fields are the most common. */
static void timing_field(void **state)
{
	(void)state;
	char class[64];
	auth_hash_cost_class("{SHA512-CRYPT}$6$salt$hash", class, sizeof(class));
	assert_string_equal(class, "$6$");
	auth_hash_cost_class("$6$rounds=9000$salt$hash", class, sizeof(class));
	assert_string_equal(class, "$6$rounds=9000$");
	auth_hash_cost_class("{BLF-CRYPT}$2b$12$saltandhashsaltandhash", class, sizeof(class));
	assert_string_equal(class, "$2b$12$");
	auth_hash_cost_class("$y$j9T$salt$hash", class, sizeof(class));
	assert_string_equal(class, "$y$j9T$");
	assert_true(auth_hash_costly("$y$j9T$salt$hash"));
	assert_false(auth_hash_costly("{PLAIN}x"));
	assert_false(auth_hash_costly("{SHA512-CRYPT}!$6$salt$hash"));
	assert_true(auth_hash_checkable("{PLAIN}x"));
	assert_false(auth_hash_checkable("{SSHA}zzz"));
	assert_false(auth_hash_checkable("*"));

	char text[] = "a@x:$y$j9T$s1$h1::::::\n"
		      "b@x:{SHA512-CRYPT}$6$s2$h2::::::\n"
		      "c@x:{SHA512-CRYPT}$6$s3$h3::::::\n"
		      "d@x:{BLF-CRYPT}!$2b$10$locked::::::\n"
		      "e@x:{PLAIN}p::::::\n";
	struct auth_users *u = auth_users_parse(text, strlen(text), "users");
	const char *field = auth_users_timing_field(u);
	assert_non_null(field);
	assert_true(strncmp(field, "{SHA512-CRYPT}$6$", 17) == 0);
	auth_users_free(&u);

	char clear[] = "a@x:{PLAIN}a\nb@x:{PLAIN}b\nc@x:$6$s$h\n";
	u = auth_users_parse(clear, strlen(clear), "users");
	assert_null(auth_users_timing_field(u));
	auth_users_free(&u);
	char none[] = "";
	u = auth_users_parse(none, 0, "users");
	assert_null(auth_users_timing_field(u));
	auth_users_free(&u);
}

static void throttling(void **state)
{
	(void)state;
	struct auth_throttle *t = auth_throttle_new(auth_throttle_store_memory(100));
	struct auth_throttle_settings set = { 1000, 8000, 4, 6, 60000 };
	auth_throttle_set(t, &set);
	uint64_t now = 1000000;
	bool banned;
	const char *which = NULL;
	assert_int_equal(auth_throttle_failed(t, "192.0.2.1", "a@x", now, &banned), 1000);
	assert_false(banned);
	assert_int_equal(auth_throttle_failed(t, "192.0.2.1", "a@x", now, &banned), 2000);
	assert_int_equal(auth_throttle_failed(t, "192.0.2.1", "a@x", now, &banned), 4000);
	assert_false(auth_throttle_banned(t, "192.0.2.1", "a@x", now, &which));
	assert_int_equal(auth_throttle_failed(t, "192.0.2.1", "a@x", now, &banned), 8000);
	assert_true(banned); /* the fourth failure of the client */
	assert_true(auth_throttle_banned(t, "192.0.2.1", "a@x", now + 1, &which));
	assert_string_equal(which, "client");
	/* another client is not banned, but the user's count goes on */
	assert_false(auth_throttle_banned(t, "192.0.2.2", "a@x", now, &which));
	assert_int_equal(auth_throttle_failed(t, "192.0.2.2", "a@x", now, &banned), 8000);
	assert_false(banned);
	auth_throttle_failed(t, "192.0.2.3", "a@x", now, &banned);
	assert_true(banned); /* the user's sixth */
	assert_true(auth_throttle_banned(t, "192.0.2.9", "a@x", now, &which));
	assert_string_equal(which, "user");
	assert_false(auth_throttle_banned(t, "192.0.2.9", NULL, now, &which));
	/* bans end, failures are forgotten */
	assert_false(auth_throttle_banned(t, "192.0.2.1", "a@x", now + 60000, &which));
	assert_int_equal(auth_throttle_failed(t, "192.0.2.1", NULL, now + 60001, &banned), 1000);
	/* a success forgets the user's failures, not the client's (a login
	 * of one's own does not clear guesses at other users) */
	auth_throttle_failed(t, "192.0.2.5", "c@x", now, &banned);
	auth_throttle_failed(t, "192.0.2.6", "c@x", now, &banned);
	auth_throttle_succeeded(t, "c@x");
	assert_int_equal(auth_throttle_failed(t, "192.0.2.7", "c@x", now, &banned), 1000);
	assert_int_equal(auth_throttle_failed(t, "192.0.2.5", NULL, now, &banned), 2000);
	/* IPv6 clients count by their /64 */
	for (int i = 0; i < 3; i++)
		auth_throttle_failed(t, i == 0 ? "2001:db8::1" : "2001:db8::ab:2", NULL, now,
				     &banned);
	auth_throttle_failed(t, "2001:db8::ffff:ffff", NULL, now, &banned);
	assert_true(banned);
	assert_true(auth_throttle_banned(t, "2001:db8::77", NULL, now, &which));
	assert_false(auth_throttle_banned(t, "2001:db8:0:1::1", NULL, now, &which));
	/* but the IPv4 clients a translator (RFC 6052) or a mapping brings
	 * share a /64: each counts by its whole address */
	for (int i = 0; i < 4; i++)
		auth_throttle_failed(t, "64:ff9b::c000:221", NULL, now, &banned);
	assert_true(banned);
	assert_true(auth_throttle_banned(t, "64:ff9b::c000:221", NULL, now, &which));
	assert_false(auth_throttle_banned(t, "64:ff9b::c000:222", NULL, now, &which));
	assert_false(auth_throttle_banned(t, "64:ff9b:1::c000:222", NULL, now, &which));
	for (int i = 0; i < 4; i++)
		auth_throttle_failed(t, "64:ff9b:1:2::c633:6401", NULL, now, &banned);
	assert_false(auth_throttle_banned(t, "64:ff9b:1:2::c633:6402", NULL, now, &which));
	for (int i = 0; i < 4; i++)
		auth_throttle_failed(t, "::ffff:192.0.2.40", NULL, now, &banned);
	assert_false(auth_throttle_banned(t, "::ffff:192.0.2.41", NULL, now, &which));
	auth_throttle_sweep(t, now + 10 * 60000);
	auth_throttle_free(&t);
}

static void protocol(void **state)
{
	(void)state;
	struct auth_msg m = { 0 }, d;
	const char *err = NULL;
	buf_t out = BUF_INIT;
	m.type = AUTH_MSG_CHECK;
	m.seq = 77;
	m.service = AUTH_SERVICE_SUBMISSION;
	strcpy(m.client_ip, "192.0.2.1");
	strcpy(m.user, "a@x.test");
	strcpy(m.password, "p w");
	strcpy(m.session_id, "s1");
	auth_msg_encode(&m, &out);
	assert_true(auth_msg_decode(out.data, out.len, true, &d, &err));
	assert_int_equal(d.seq, 77);
	assert_int_equal(d.service, AUTH_SERVICE_SUBMISSION);
	assert_string_equal(d.password, "p w");
	assert_string_equal(d.user, "a@x.test");
	/* the wrong direction, truncation, leftovers, a NUL */
	assert_false(auth_msg_decode(out.data, out.len, false, &d, &err));
	assert_false(auth_msg_decode(out.data, out.len - 1, true, &d, &err));
	buf_putc(&out, 'x');
	assert_false(auth_msg_decode(out.data, out.len, true, &d, &err));
	assert_string_equal(err, "bytes after the message");
	out.len--;
	out.data[out.len - 1] = '\0'; /* the last byte of session_id */
	assert_false(auth_msg_decode(out.data, out.len, true, &d, &err));
	/* words smuggled into the log through the address or the id */
	strcpy(m.client_ip, "192.0.2.1 status=ok");
	auth_msg_encode(&m, &out);
	assert_false(auth_msg_decode(out.data, out.len, true, &d, &err));
	strcpy(m.client_ip, "2001:db8::1");
	strcpy(m.session_id, "s1 user=root");
	auth_msg_encode(&m, &out);
	assert_false(auth_msg_decode(out.data, out.len, true, &d, &err));
	strcpy(m.session_id, "1A2B3C4D5E");
	auth_msg_encode(&m, &out);
	assert_true(auth_msg_decode(out.data, out.len, true, &d, &err));
	m.type = AUTH_MSG_RESULT;
	m.verdict = 9;
	auth_msg_encode(&m, &out);
	assert_false(auth_msg_decode(out.data, out.len, false, &d, &err));
	assert_string_equal(err, "unknown verdict");
	/* a login ticket: only with OK, only of its exact form */
	m.verdict = AUTH_OK;
	memset(m.ticket, 'a', AUTH_TICKET_TEXT_LEN);
	m.ticket[AUTH_TICKET_TEXT_LEN] = '\0';
	auth_msg_encode(&m, &out);
	assert_true(auth_msg_decode(out.data, out.len, false, &d, &err));
	assert_string_equal(d.ticket, m.ticket);
	m.verdict = AUTH_FAILED;
	auth_msg_encode(&m, &out);
	assert_false(auth_msg_decode(out.data, out.len, false, &d, &err));
	assert_string_equal(err, "a login ticket with a refusal");
	m.verdict = AUTH_OK;
	m.ticket[3] = 'G';
	auth_msg_encode(&m, &out);
	assert_false(auth_msg_decode(out.data, out.len, false, &d, &err));
	assert_string_equal(err, "a malformed login ticket");
	m.ticket[3] = 'a';
	m.ticket[AUTH_TICKET_TEXT_LEN - 1] = '\0';
	auth_msg_encode(&m, &out);
	assert_false(auth_msg_decode(out.data, out.len, false, &d, &err));
	buf_free(&out);
}

/* ---- a real auth process ------------------------------------------------------ */

struct answers {
	struct event_base *evb;
	int count, expected;
	enum auth_verdict verdicts[16];
	char users[16][64];
};

/* The login ticket of the last answer ("" if none). */
static char last_ticket[AUTH_TICKET_TEXT_LEN + 1];

static void on_done(void *arg, const struct auth_result *r)
{
	struct answers *a = arg;
	snprintf(last_ticket, sizeof(last_ticket), "%s", r->ticket != NULL ? r->ticket : "");
	a->verdicts[a->count] = r->verdict;
	snprintf(a->users[a->count], sizeof(a->users[0]), "%s", r->user != NULL ? r->user : "");
	if (++a->count == a->expected)
		event_base_loopexit(a->evb, NULL);
}

static void many_done(void *arg, const struct auth_result *r)
{
	struct { struct event_base *evb; int count, ok; } *m = arg;
	m->ok += r->verdict == AUTH_OK;
	if (++m->count == 3000)
		event_base_loopexit(m->evb, NULL);
}

/* The key of the login tickets the test's auth processes make. */
static const unsigned char test_ticket_key[AUTH_TICKET_KEY_LEN] = "the tests' login ticket key 32b";

static pid_t start_auth(const char *users_text, const struct auth_throttle_settings *set,
			char **socket_r)
{
	char users_path[512], sock_path[512];
	snprintf(users_path, sizeof(users_path), "%s/users", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/auth.sock", dir);
	FILE *f = fopen(users_path, "w");
	fputs(users_text, f);
	fclose(f);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	unlink(sock_path);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* a failed test takes it along */
		unsigned char key[AUTH_TICKET_KEY_LEN];
		memcpy(key, test_ticket_key, sizeof(key));
		_exit(auth_server_run(sock_path, sv[1], 2, key));
	}
	close(sv[1]);
	struct auth_ctl_msg m;
	memset(&m, 0, sizeof(m));
	m.settings = *set;
	snprintf(m.users_path, sizeof(m.users_path), "%s", users_path);
	int fd = open(users_path, O_RDONLY);
	assert_int_equal(auth_ctl_send(sv[0], &m, fd), 0);
	close(fd);
	/* the socket appears once it listens */
	for (int i = 0; i < 500 && access(sock_path, F_OK) != 0; i++)
		usleep(10000);
	assert_int_equal(access(sock_path, F_OK), 0);
	*socket_r = strdup(sock_path);
	return pid; /* sv[0] stays open for the process's life */
}

static void stop_auth(pid_t pid)
{
	int status;
	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void ask(struct auth_client *c, struct answers *a, const char *user, const char *pw,
		const char *ip)
{
	struct auth_query q = { AUTH_SERVICE_SMTP, ip, user, pw, "t1" };
	(void)auth_client_check(c, &q, on_done, a);
}

static void real_process(void **state)
{
	(void)state;
	char *h = make_hash("$y$", "yes pass");
	char users[1024];
	snprintf(users, sizeof(users), "alice@example.test:{PLAIN}secret::::::\n"
		 "bob@example.test:%s::::::\n", h);
	free(h);
	struct auth_throttle_settings set = { 100, 200, 3, 0, 60000 };
	char *sock;
	pid_t pid = start_auth(users, &set, &sock);
	struct event_base *evb = event_base_new();
	struct auth_client *c = auth_client_new(evb, sock);
	struct answers a = { evb, 0, 4, { 0 }, { { 0 } } };
	ask(c, &a, "Alice@Example.Test", "secret", "192.0.2.1");
	ask(c, &a, "bob@example.test", "yes pass", "192.0.2.1");
	ask(c, &a, "bob@example.test", "no pass", "192.0.2.7");
	ask(c, &a, "nobody@example.test", "secret", "192.0.2.8");
	assert_int_equal(a.count, 0); /* never from inside the call */
	event_base_dispatch(evb);
	assert_int_equal(a.count, 4);
	/* answers come as they are ready: find each by its user */
	int ok = 0, failed = 0;
	for (int i = 0; i < 4; i++) {
		if (a.verdicts[i] == AUTH_OK) {
			ok++;
			assert_true(strcmp(a.users[i], "alice@example.test") == 0 ||
				    strcmp(a.users[i], "bob@example.test") == 0);
		} else {
			assert_int_equal(a.verdicts[i], AUTH_FAILED);
			assert_string_equal(a.users[i], "");
			failed++;
		}
	}
	assert_int_equal(ok, 2);
	assert_int_equal(failed, 2);

	/* a POP3 login's answer carries a ticket for its account (the
	 * mailbox agent asks for it); an SMTP login's carries none */
	struct answers p = { evb, 0, 1, { 0 }, { { 0 } } };
	struct auth_query pq = { AUTH_SERVICE_POP3, "192.0.2.1", "Alice@Example.Test", "secret",
				 "t3" };
	(void)auth_client_check(c, &pq, on_done, &p);
	event_base_dispatch(evb);
	assert_int_equal(p.verdicts[0], AUTH_OK);
	assert_int_equal(strlen(last_ticket), AUTH_TICKET_TEXT_LEN);
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "alice@example.test",
					   last_ticket, auth_ticket_now(), NULL),
			 AUTH_TICKET_OK);
	assert_int_equal(auth_ticket_check(test_ticket_key, AUTH_SERVICE_POP3, "bob@example.test",
					   last_ticket, auth_ticket_now(), NULL),
			 AUTH_TICKET_FORGED);
	p.count = 0;
	pq.password = "wrong";
	pq.client_ip = "192.0.2.9";
	(void)auth_client_check(c, &pq, on_done, &p);
	event_base_dispatch(evb);
	assert_int_equal(p.verdicts[0], AUTH_FAILED);
	assert_string_equal(last_ticket, "");
	p.count = 0;
	ask(c, &p, "alice@example.test", "secret", "192.0.2.1");
	event_base_dispatch(evb);
	assert_int_equal(p.verdicts[0], AUTH_OK);
	assert_string_equal(last_ticket, "");

	/* three failures from one client: then it is banned, even with the
	 * right password */
	struct answers b = { evb, 0, 1, { 0 }, { { 0 } } };
	for (int i = 0; i < 3; i++) {
		b.count = 0;
		ask(c, &b, "alice@example.test", "wrong", "192.0.2.66");
		event_base_dispatch(evb);
		assert_int_equal(b.verdicts[0], AUTH_FAILED);
	}
	b.count = 0;
	ask(c, &b, "alice@example.test", "secret", "192.0.2.66");
	event_base_dispatch(evb);
	assert_int_equal(b.verdicts[0], AUTH_THROTTLED);

	/* a cancelled request is never answered */
	struct answers x = { evb, 0, 1, { 0 }, { { 0 } } };
	struct auth_query q = { AUTH_SERVICE_POP3, "192.0.2.1", "alice@example.test", "secret", "t2" };
	struct auth_request *r = auth_client_check(c, &q, on_done, &x);
	auth_client_cancel(&r);
	assert_null(r);
	b.count = 0;
	ask(c, &b, "alice@example.test", "secret", "192.0.2.1");
	event_base_dispatch(evb);
	assert_int_equal(b.verdicts[0], AUTH_OK);
	assert_int_equal(x.count, 0);

	/* more checks at once than the socket holds: the rest wait in the
	 * client, are sent in order as it drains, and all are answered */
	enum { MANY = 3000 };
	struct many { struct event_base *evb; int count, ok; } many = { evb, 0, 0 };
	for (int i = 0; i < MANY; i++) {
		struct auth_query mq = { AUTH_SERVICE_SMTP, "192.0.2.1",
					 i % 2 ? "alice@example.test" : "Alice@Example.Test", "secret",
					 "m" };
		(void)auth_client_check(c, &mq, many_done, &many);
	}
	event_base_dispatch(evb);
	assert_int_equal(many.count, MANY);
	assert_int_equal(many.ok, MANY);

	/* the auth process gone: a temporary failure, from the loop */
	stop_auth(pid);
	b.count = 0;
	ask(c, &b, "alice@example.test", "secret", "192.0.2.1");
	assert_int_equal(b.count, 0);
	event_base_dispatch(evb);
	assert_int_equal(b.verdicts[0], AUTH_TEMPFAIL);
	auth_client_free(&c);
	event_base_free(evb);
	free(sock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(schemes),
		cmocka_unit_test(constant_time_equality),
		cmocka_unit_test(users_table),
		cmocka_unit_test(timing_field),
		cmocka_unit_test(throttling),
		cmocka_unit_test(protocol),
		cmocka_unit_test(real_process),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
