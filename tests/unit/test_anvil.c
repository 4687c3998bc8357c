/*
 * test_anvil.c - the anvil's protocol and counting: every message encodes
 * and decodes to itself, violations are refused with a reason; sessions
 * are counted per client and forgotten with their owner (a worker that
 * died); sliding-window rates with their warn, limit and block levels,
 * several items counted all or none; the block map and the greylisting
 * records outlive the anvil in LMDB and expire; greylisting as postgrey
 * does it (first deferred, early retry deferred, retry after the delay
 * passes, retry window, auto-allow of a client, expiry). The clock is the
 * test's. On the workers' side: the keys (client networks, greylisting's
 * sender normalisation, the ignore lists) and the client failing open
 * without an anvil, from the loop; the checks of MAIL and RCPT against a
 * fake backend: where they stand, which items they ask for (client,
 * sender, authenticated user, site, greylisting's triplet), what the
 * answers make of them (451 4.7.1, notices), and failing open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "policy/anvil_proto.h"
#include "policy/anvil_table.h"
#include "policy/limits.h"

#define T0 1700000000000ULL /* the tests' "now", wall-clock ms */
#define SEC 1000ULL

/* ---- protocol -------------------------------------------------------------------- */

static void roundtrip(const struct anvil_msg *m)
{
	buf_t wire = BUF_INIT, again = BUF_INIT;
	struct anvil_msg back;
	const char *err = NULL;
	anvil_msg_encode(m, &wire);
	assert_true(wire.len <= ANVIL_MSG_MAX);
	if (anvil_msg_decode((const unsigned char *)wire.data, wire.len, &back, &err) != 0)
		fail_msg("decode: %s", err);
	anvil_msg_encode(&back, &again);
	assert_int_equal(wire.len, again.len);
	assert_memory_equal(wire.data, again.data, wire.len);
	assert_int_equal(back.type, m->type);
	assert_int_equal(back.seq, m->seq);
	buf_free(&wire);
	buf_free(&again);
}

static void item(struct anvil_item *it, const char *key, enum anvil_metric metric,
		 uint32_t cost, uint32_t window, uint32_t warn, uint32_t limit, uint32_t block_time)
{
	memset(it, 0, sizeof(*it));
	anvil_key_set(it->key, key);
	it->metric = metric;
	it->cost = cost;
	it->window = window;
	it->warn = warn;
	it->limit = limit;
	it->block_time = block_time;
}

static void test_proto_roundtrip(void **state)
{
	(void)state;
	struct anvil_msg m;
	anvil_msg_init(&m, ANVIL_MSG_OPEN);
	m.seq = 7;
	m.session = 0x0102030405060708ULL;
	m.flags = ANVIL_OPEN_REPLAY;
	anvil_key_set(m.client, "192.0.2.0/24");
	m.n = 1;
	item(&m.items[0], "client:192.0.2.0/24", ANVIL_CONNECTIONS, 1, 60, 10, 20, 600);
	roundtrip(&m);
	anvil_msg_init(&m, ANVIL_MSG_CLOSE);
	m.session = 99;
	roundtrip(&m);
	anvil_msg_init(&m, ANVIL_MSG_RATE);
	m.seq = 8;
	m.n = ANVIL_ITEMS_MAX;
	for (size_t i = 0; i < m.n; i++)
		item(&m.items[i], "sender:j\xc3\xbcrg@example.test", ANVIL_RECIPIENTS, 3, 86400,
		     ANVIL_COUNT_MAX, ANVIL_COUNT_MAX, ANVIL_BLOCK_MAX);
	roundtrip(&m);
	anvil_msg_init(&m, ANVIL_MSG_GREY);
	m.seq = 9;
	anvil_key_set(m.client, "192.0.2.0/24");
	anvil_key_set(m.triplet, "192.0.2.0/24 a@b.test c@d.test");
	m.delay = 300;
	m.retry_window = 2 * 86400;
	m.expiry = 35 * 86400;
	m.auto_allow = 5;
	roundtrip(&m);
	anvil_msg_init(&m, ANVIL_MSG_OPENED);
	m.seq = 10;
	m.total = 5;
	m.client_count = 2;
	m.n = 2;
	m.results[0] = (struct anvil_result){ 3, ANVIL_RESULT_WARNED, 0 };
	m.results[1] = (struct anvil_result){ 4, ANVIL_RESULT_REFUSED | ANVIL_RESULT_BLOCKED_NOW,
					      600 };
	roundtrip(&m);
	anvil_msg_init(&m, ANVIL_MSG_RATED);
	m.seq = 11;
	roundtrip(&m);
	anvil_msg_init(&m, ANVIL_MSG_GREYED);
	m.seq = 12;
	m.outcome = ANVIL_GREY_EARLY;
	m.wait = 250;
	m.client_passes = 3;
	roundtrip(&m);
}

static void expect_violation(const unsigned char *data, size_t len, const char *why)
{
	struct anvil_msg m;
	const char *err = NULL;
	assert_int_equal(anvil_msg_decode(data, len, &m, &err), -1);
	assert_non_null(err);
	if (why != NULL && strstr(err, why) == NULL)
		fail_msg("expected \"%s\", got \"%s\"", why, err);
}

static void test_proto_violations(void **state)
{
	(void)state;
	struct anvil_msg m;
	buf_t wire = BUF_INIT;
	expect_violation((const unsigned char *)"", 0, "ends inside a field");
	expect_violation((const unsigned char *)"\x7f", 1, "unknown message type");
	/* CLOSE with a byte too many, and one too few */
	anvil_msg_init(&m, ANVIL_MSG_CLOSE);
	anvil_msg_encode(&m, &wire);
	buf_putc(&wire, 0);
	expect_violation((const unsigned char *)wire.data, wire.len, "bytes after");
	expect_violation((const unsigned char *)wire.data, wire.len - 2, "ends inside a field");
	/* RATE: an empty list, a bad metric, a zero window, a control character */
	anvil_msg_init(&m, ANVIL_MSG_RATE);
	m.n = 1;
	item(&m.items[0], "k", ANVIL_MESSAGES, 1, 60, 0, 0, 0);
	anvil_msg_encode(&m, &wire);
	unsigned char *p = (unsigned char *)wire.data;
	p[5] = 0; /* item count */
	expect_violation(p, wire.len, "item count");
	p[5] = 1;
	p[9] = 3; /* metric, after the count, the key's length (2) and key (1) */
	expect_violation(p, wire.len, "metric");
	p[9] = 1;
	memset(p + 14, 0, 4); /* window */
	expect_violation(p, wire.len, "window");
	anvil_msg_encode(&m, &wire);
	p = (unsigned char *)wire.data;
	p[8] = '\n'; /* the key */
	expect_violation(p, wire.len, "control character");
	/* GREYED with an unknown outcome */
	anvil_msg_init(&m, ANVIL_MSG_GREYED);
	anvil_msg_encode(&m, &wire);
	p = (unsigned char *)wire.data;
	p[5] = ANVIL_GREY_OUTCOMES;
	expect_violation(p, wire.len, "outcome");
	/* an OPEN with an unknown flag */
	anvil_msg_init(&m, ANVIL_MSG_OPEN);
	anvil_key_set(m.client, "c");
	anvil_msg_encode(&m, &wire);
	p = (unsigned char *)wire.data;
	p[13] = 0x80;
	expect_violation(p, wire.len, "flag");
	buf_free(&wire);
}

static void test_proto_over_a_socket(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	struct anvil_msg m, got;
	const char *err = NULL;
	anvil_msg_init(&m, ANVIL_MSG_CLOSE);
	m.session = 42;
	assert_int_equal(anvil_send(sv[0], &m), 0);
	assert_int_equal(anvil_recv(sv[1], true, &got, &err), 1);
	assert_int_equal(got.session, 42);
	/* an answer where a request belongs */
	anvil_msg_init(&m, ANVIL_MSG_RATED);
	assert_int_equal(anvil_send(sv[0], &m), 0);
	assert_int_equal(anvil_recv(sv[1], true, &got, &err), -1);
	assert_non_null(strstr(err, "wrong direction"));
	close(sv[0]);
	assert_int_equal(anvil_recv(sv[1], true, &got, &err), 0);
	close(sv[1]);
}

/* A socket that takes no more: the outbox keeps the packets in order, up
 * to its max, and sends them once the reader makes room. */
static void test_outbox_keeps_order_until_the_socket_has_room(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	struct anvil_outbox box = { .max = 3 };
	struct anvil_msg m, got;
	const char *err = NULL;
	anvil_msg_init(&m, ANVIL_MSG_CLOSE);
	size_t sent = 0;
	for (;; sent++) { /* fill the socket */
		m.session = sent;
		enum anvil_out out = anvil_outbox_push(&box, sv[0], &m);
		if (out == ANVIL_OUT_QUEUED)
			break;
		assert_int_equal(out, ANVIL_OUT_SENT);
		assert_true(sent < 100000);
	}
	m.session = sent + 1;
	assert_int_equal(anvil_outbox_push(&box, sv[0], &m), ANVIL_OUT_QUEUED);
	m.session = sent + 2;
	assert_int_equal(anvil_outbox_push(&box, sv[0], &m), ANVIL_OUT_QUEUED);
	m.session = sent + 3;
	assert_int_equal(anvil_outbox_push(&box, sv[0], &m), ANVIL_OUT_FULL);
	assert_int_equal(box.count, 3);
	assert_int_equal(anvil_outbox_flush(&box, sv[0]), ANVIL_OUT_QUEUED);
	for (size_t i = 0; i < sent; i++) { /* the reader makes room */
		assert_int_equal(anvil_recv(sv[1], true, &got, &err), 1);
		assert_int_equal(got.session, i);
	}
	assert_int_equal(anvil_outbox_flush(&box, sv[0]), ANVIL_OUT_SENT);
	assert_null(box.head);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(anvil_recv(sv[1], true, &got, &err), 1);
		assert_int_equal(got.session, sent + i);
	}
	/* a peer gone is an error, and clearing frees what waited */
	m.session = 7;
	close(sv[1]);
	assert_int_equal(anvil_outbox_push(&box, sv[0], &m), ANVIL_OUT_ERROR);
	close(sv[0]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	while (anvil_outbox_push(&box, sv[0], &m) == ANVIL_OUT_SENT)
		;
	assert_int_equal(box.count, 1);
	anvil_outbox_clear(&box);
	assert_int_equal(box.count, 0);
	assert_null(box.head);
	close(sv[0]);
	close(sv[1]);
}

/* ---- sessions --------------------------------------------------------------------- */

static void open_session(struct anvil_table *t, uint64_t owner, uint64_t session,
			 const char *client, struct anvil_msg *answer)
{
	struct anvil_msg req;
	anvil_msg_init(&req, ANVIL_MSG_OPEN);
	req.session = session;
	anvil_key_set(req.client, client);
	anvil_msg_init(answer, ANVIL_MSG_OPENED);
	anvil_table_open(t, owner, &req, T0, answer);
}

static void test_sessions_per_client_and_owner(void **state)
{
	(void)state;
	struct anvil_table *t = anvil_table_new(anvil_store_memory());
	struct anvil_msg a;
	open_session(t, 1, 1, "192.0.2.0", &a);
	open_session(t, 1, 2, "192.0.2.0", &a);
	assert_int_equal(a.client_count, 2);
	open_session(t, 2, 1, "192.0.2.0", &a); /* another worker, the same client */
	assert_int_equal(a.total, 3);
	assert_int_equal(a.client_count, 3);
	open_session(t, 2, 2, "198.51.100.7", &a);
	assert_int_equal(a.total, 4);
	assert_int_equal(a.client_count, 1);
	open_session(t, 2, 2, "198.51.100.7", &a); /* said twice: counted once */
	assert_int_equal(a.total, 4);
	anvil_table_close(t, 1, 2);
	anvil_table_close(t, 1, 2);   /* twice: ignored */
	anvil_table_close(t, 9, 1);   /* unknown owner: ignored */
	assert_int_equal(anvil_table_sessions(t), 3);
	/* worker 2 dies: its two sessions go */
	assert_int_equal(anvil_table_drop_owner(t, 2), 2);
	assert_int_equal(anvil_table_sessions(t), 1);
	open_session(t, 3, 1, "192.0.2.0", &a);
	assert_int_equal(a.client_count, 2);
	assert_int_equal(anvil_table_drop_owner(t, 1), 1);
	assert_int_equal(anvil_table_drop_owner(t, 3), 1);
	assert_int_equal(anvil_table_sessions(t), 0);
	anvil_table_free(&t);
}

/* ---- rates ------------------------------------------------------------------------- */

static struct anvil_result hit(struct anvil_table *t, const char *key, uint32_t cost,
			       uint32_t warn, uint32_t limit, uint32_t block_time, uint64_t now)
{
	struct anvil_item it;
	struct anvil_result r;
	item(&it, key, ANVIL_MESSAGES, cost, 10, warn, limit, block_time);
	anvil_table_rate(t, &it, 1, now, &r);
	return r;
}

static void test_rate_warn_and_limit_without_block(void **state)
{
	(void)state;
	struct anvil_table *t = anvil_table_new(anvil_store_memory());
	struct anvil_result r;
	for (int i = 1; i <= 3; i++) {
		r = hit(t, "site", 1, 2, 5, 0, T0 + (uint64_t)i);
		assert_int_equal(r.count, i);
		assert_int_equal(r.flags, i == 3 ? ANVIL_RESULT_WARNED : 0);
	}
	r = hit(t, "site", 2, 2, 5, 0, T0 + 4);
	assert_int_equal(r.count, 5);
	assert_int_equal(r.flags, 0);
	r = hit(t, "site", 1, 2, 5, 0, T0 + 5);
	assert_int_equal(r.flags, ANVIL_RESULT_REFUSED | ANVIL_RESULT_OVER_NOW);
	assert_int_equal(r.count, 5); /* not counted */
	r = hit(t, "site", 1, 2, 5, 0, T0 + 6);
	assert_int_equal(r.flags, ANVIL_RESULT_REFUSED); /* the refusal goes on, said once */
	assert_int_equal(r.blocked_for, 0);
	/* a look (cost 0) is never refused for the limit */
	r = hit(t, "site", 0, 2, 5, 0, T0 + 7);
	assert_int_equal(r.flags, 0);
	/* two windows on, everything has slid out */
	r = hit(t, "site", 1, 2, 5, 0, T0 + 20 * SEC + 7);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.flags, 0);
	anvil_table_free(&t);
}

static void test_rate_slides(void **state)
{
	(void)state;
	struct anvil_table *t = anvil_table_new(anvil_store_memory());
	for (int i = 0; i < 10; i++)
		hit(t, "k", 1, 0, 0, 0, T0 + (uint64_t)i * 100);
	/* 10 s window: half way into the next window, half of them count */
	struct anvil_result r = hit(t, "k", 0, 0, 0, 0, T0 + 15 * SEC);
	assert_int_equal(r.count, 5);
	r = hit(t, "k", 0, 0, 0, 0, T0 + 19 * SEC);
	assert_int_equal(r.count, 1);
	/* a burst across the boundary is still seen: 10 late, 10 early */
	hit(t, "b", 0, 0, 0, 0, T0);
	for (int i = 0; i < 10; i++)
		hit(t, "b", 1, 0, 0, 0, T0 + 9900);
	r = hit(t, "b", 10, 0, 15, 0, T0 + 10100);
	assert_true(r.flags & ANVIL_RESULT_REFUSED);
	anvil_table_free(&t);
}

static void test_rate_block_and_cool_down(void **state)
{
	(void)state;
	struct anvil_table *t = anvil_table_new(anvil_store_memory());
	struct anvil_result r;
	for (int i = 0; i < 3; i++)
		assert_int_equal(hit(t, "sender:a@b", 1, 0, 3, 30, T0).flags, 0);
	r = hit(t, "sender:a@b", 1, 0, 3, 30, T0);
	assert_int_equal(r.flags, ANVIL_RESULT_REFUSED | ANVIL_RESULT_BLOCKED_NOW |
				  ANVIL_RESULT_OVER_NOW);
	assert_int_equal(r.blocked_for, 30);
	/* blocked: refused whatever the count, even a look, and the count
	 * has long decayed */
	r = hit(t, "sender:a@b", 0, 0, 3, 30, T0 + 25 * SEC);
	assert_int_equal(r.flags, ANVIL_RESULT_REFUSED);
	assert_int_equal(r.blocked_for, 5);
	/* the cool-down is over */
	r = hit(t, "sender:a@b", 1, 0, 3, 30, T0 + 31 * SEC);
	assert_int_equal(r.flags, 0);
	assert_int_equal(r.count, 1);
	anvil_table_free(&t);
}

static void test_rate_items_all_or_none(void **state)
{
	(void)state;
	struct anvil_table *t = anvil_table_new(anvil_store_memory());
	struct anvil_item it[2];
	struct anvil_result r[2];
	item(&it[0], "client:192.0.2.1", ANVIL_MESSAGES, 1, 60, 0, 100, 0);
	item(&it[1], "sender:x@y", ANVIL_MESSAGES, 1, 60, 0, 1, 0);
	anvil_table_rate(t, it, 2, T0, r);
	assert_int_equal(r[0].count, 1);
	assert_int_equal(r[1].count, 1);
	anvil_table_rate(t, it, 2, T0 + 1, r); /* the sender is over: nobody counts */
	assert_int_equal(r[0].flags, 0);
	assert_int_equal(r[0].count, 1);
	assert_true(r[1].flags & ANVIL_RESULT_REFUSED);
	item(&it[1], "sender:other@y", ANVIL_MESSAGES, 1, 60, 0, 1, 0);
	anvil_table_rate(t, it, 2, T0 + 2, r);
	assert_int_equal(r[0].count, 2);
	assert_int_equal(r[1].count, 1);
	/* the metrics of a key count apart */
	item(&it[0], "client:192.0.2.1", ANVIL_RECIPIENTS, 1, 60, 0, 0, 0);
	anvil_table_rate(t, it, 1, T0 + 3, r);
	assert_int_equal(r[0].count, 1);
	anvil_table_free(&t);
}

static void test_rate_counters_are_swept(void **state)
{
	(void)state;
	struct anvil_table *t = anvil_table_new(anvil_store_memory());
	hit(t, "a", 1, 0, 0, 0, T0);
	hit(t, "b", 1, 0, 0, 0, T0 + 15 * SEC);
	assert_int_equal(anvil_table_counters(t), 2);
	anvil_table_sweep(t, T0 + 21 * SEC); /* a: idle two windows */
	assert_int_equal(anvil_table_counters(t), 1);
	anvil_table_sweep(t, T0 + 40 * SEC);
	assert_int_equal(anvil_table_counters(t), 0);
	anvil_table_free(&t);
}

/* ---- greylisting ------------------------------------------------------------------- */

static enum anvil_grey_outcome grey(struct anvil_table *t, const char *client,
				    const char *triplet, uint64_t now, uint32_t *wait_r)
{
	struct anvil_msg req, ans;
	anvil_msg_init(&req, ANVIL_MSG_GREY);
	anvil_key_set(req.client, client);
	anvil_key_set(req.triplet, triplet);
	req.delay = 60;
	req.retry_window = 3600;
	req.expiry = 86400;
	req.auto_allow = 2;
	anvil_msg_init(&ans, ANVIL_MSG_GREYED);
	anvil_table_grey(t, &req, now, &ans);
	if (wait_r != NULL)
		*wait_r = ans.wait;
	return ans.outcome;
}

static void check_greylisting(struct anvil_table *t)
{
	uint32_t wait;
	assert_int_equal(grey(t, "c1", "c1 a b", T0, &wait), ANVIL_GREY_NEW);
	assert_int_equal(wait, 60);
	assert_int_equal(grey(t, "c1", "c1 a b", T0 + 20 * SEC, &wait), ANVIL_GREY_EARLY);
	assert_int_equal(wait, 40);
	assert_int_equal(grey(t, "c1", "c1 a b", T0 + 61 * SEC, NULL), ANVIL_GREY_PASSED);
	assert_int_equal(grey(t, "c1", "c1 a b", T0 + 62 * SEC, NULL), ANVIL_GREY_PASSED);
	/* another recipient: greylisted on its own; one passed triplet does
	 * not allow the client yet (auto_allow = 2) */
	assert_int_equal(grey(t, "c1", "c1 a d", T0 + 70 * SEC, NULL), ANVIL_GREY_NEW);
	/* a first attempt never retried within the retry window is new again */
	assert_int_equal(grey(t, "c2", "c2 x y", T0, NULL), ANVIL_GREY_NEW);
	assert_int_equal(grey(t, "c2", "c2 x y", T0 + 3601 * SEC, &wait), ANVIL_GREY_NEW);
	assert_int_equal(wait, 60);
	/* the second passed triplet allows client c1 */
	assert_int_equal(grey(t, "c1", "c1 a d", T0 + 140 * SEC, NULL), ANVIL_GREY_PASSED);
	assert_int_equal(grey(t, "c1", "c1 new one", T0 + 141 * SEC, NULL), ANVIL_GREY_ALLOWED);
}

static void test_greylisting_in_memory(void **state)
{
	(void)state;
	struct anvil_table *t = anvil_table_new(anvil_store_memory());
	check_greylisting(t);
	anvil_table_free(&t);
}

static void test_lmdb_keeps_blocks_and_greylisting_and_expires_them(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/postern-test-anvil-XXXXXX";
	char *dir = mkdtemp(tmpl);
	char *db = safeio_path_join(dir, "anvil");
	struct anvil_table *t = anvil_table_new(anvil_store_lmdb(db));
	assert_string_equal(anvil_table_store_name(t), "lmdb");
	check_greylisting(t);
	for (int i = 0; i < 2; i++)
		hit(t, "sender:a@b", 1, 0, 1, 600, T0);
	anvil_table_sync(t);
	anvil_table_free(&t);
	/* a new anvil (after a restart) finds them */
	t = anvil_table_new(anvil_store_lmdb(db));
	assert_int_equal(hit(t, "sender:a@b", 0, 0, 1, 600, T0 + 100 * SEC).blocked_for, 500);
	assert_int_equal(grey(t, "c1", "c1 other", T0 + 200 * SEC, NULL), ANVIL_GREY_ALLOWED);
	/* many records expire in one sweep (consecutive deletes) */
	for (int i = 0; i < 50; i++) {
		char key[32];
		snprintf(key, sizeof(key), "sender:%d@x", i);
		hit(t, key, 1, 0, 0, 0, T0);
		hit(t, key, 1, 0, 1, 10, T0); /* blocked for 10 s */
	}
	anvil_table_sweep(t, T0 + 11 * SEC);
	assert_int_equal(hit(t, "sender:0@x", 0, 0, 1, 10, T0).blocked_for, 0);
	assert_int_equal(hit(t, "sender:49@x", 0, 0, 1, 10, T0).blocked_for, 0);
	/* greylisting records expire: a day after c1's last pass it is a
	 * stranger again */
	anvil_table_sweep(t, T0 + 200 * SEC + 86401 * SEC);
	assert_int_equal(grey(t, "c1", "c1 a b", T0 + 200 * SEC + 86402 * SEC, NULL),
			 ANVIL_GREY_NEW);
	anvil_table_free(&t);
	free(db);
	testutil_rmtree(dir);
}

/* ---- the workers' side ------------------------------------------------------------- */

static void test_keys(void **state)
{
	(void)state;
	char key[80];
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	inet_pton(AF_INET, "192.0.2.77", &a4.sin_addr);
	limits_network_key((struct sockaddr *)&a4, 24, 64, key, sizeof(key));
	assert_string_equal(key, "192.0.2.0/24");
	limits_network_key((struct sockaddr *)&a4, 32, 64, key, sizeof(key));
	assert_string_equal(key, "192.0.2.77/32");
	limits_network_key((struct sockaddr *)&a4, 20, 64, key, sizeof(key));
	assert_string_equal(key, "192.0.0.0/20");
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "2001:db8:1:2:3:4:5:6", &a6.sin6_addr);
	limits_network_key((struct sockaddr *)&a6, 24, 64, key, sizeof(key));
	assert_string_equal(key, "2001:db8:1:2::/64");
	limits_network_key((struct sockaddr *)&a6, 24, 48, key, sizeof(key));
	assert_string_equal(key, "2001:db8:1::/48");
	inet_pton(AF_INET6, "::ffff:198.51.100.9", &a6.sin6_addr); /* mapped: as IPv4 */
	limits_network_key((struct sockaddr *)&a6, 24, 64, key, sizeof(key));
	assert_string_equal(key, "198.51.100.0/24");

	limits_grey_sender("Bounce-12345@Lists.Example", key, sizeof(key));
	assert_string_equal(key, "bounce-#@lists.example");
	limits_grey_sender("prvs=1234abcd56=user7@example.test", key, sizeof(key));
	assert_string_equal(key, "user#@example.test");
	limits_grey_sender("a1b22c333@host99.test", key, sizeof(key));
	assert_string_equal(key, "a#b#c#@host99.test"); /* the domain keeps its digits */
	limits_grey_sender("", key, sizeof(key));
	assert_string_equal(key, "");

	strlist_t list = { NULL, 0 };
	strlist_add(&list, "vip@example.test");
	strlist_add(&list, "@lists.test");
	strlist_add(&list, "trusted.test");
	assert_true(limits_address_listed(&list, "VIP@example.test"));
	assert_false(limits_address_listed(&list, "other@example.test"));
	assert_true(limits_address_listed(&list, "any@lists.test"));
	assert_true(limits_address_listed(&list, "any@TRUSTED.test"));
	assert_false(limits_address_listed(&list, "any@sub.trusted.test"));
	assert_false(limits_address_listed(&list, "postmaster"));
	strlist_free(&list);
}

struct answer_seen {
	int calls;
	bool null;
};

static void seen(void *arg, const struct anvil_msg *m)
{
	struct answer_seen *a = arg;
	a->calls++;
	a->null = m == NULL;
}

static void test_client_fails_open_without_an_anvil(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct limits_backend *b = anvil_client_new(base, "/nonexistent/private/anvil.sock");
	struct anvil_msg m;
	struct limits_req *h = NULL;
	struct answer_seen a = { 0, false };
	anvil_msg_init(&m, ANVIL_MSG_RATE);
	m.n = 1;
	item(&m.items[0], "site", ANVIL_MESSAGES, 1, 60, 0, 1, 0);
	b->ops->ask(b, &m, seen, &a, &h);
	assert_int_equal(a.calls, 0); /* never from inside ask */
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(a.calls, 1);
	assert_true(a.null);
	/* a cancelled request is never answered */
	a.calls = 0;
	b->ops->ask(b, &m, seen, &a, &h);
	b->ops->cancel(b, &h);
	assert_null(h);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(a.calls, 0);
	b->ops->close_session(b, 12345); /* never opened: nothing happens */
	b->ops->free(b);
	event_base_free(base);
}

/* ---- the checks, against a fake backend ---------------------------------------------- */

/* Keeps each request and its callback; the test answers. */
struct fake_backend {
	struct limits_backend base;
	struct anvil_msg req;
	limits_done_fn *done;
	void *arg;
	int asked, closed;
};

static void fake_ask(struct limits_backend *b, struct anvil_msg *req, limits_done_fn *done,
		     void *arg, struct limits_req **handle_r)
{
	struct fake_backend *f = (struct fake_backend *)b;
	f->req = *req;
	f->done = done;
	f->arg = arg;
	f->asked++;
	*handle_r = (struct limits_req *)f; /* any non-NULL handle */
}

static void fake_cancel(struct limits_backend *b, struct limits_req **handle)
{
	(void)b;
	*handle = NULL;
}

static void fake_close(struct limits_backend *b, uint64_t session)
{
	(void)session;
	((struct fake_backend *)b)->closed++;
}

static void fake_free(struct limits_backend *b)
{
	(void)b;
}

static const struct limits_backend_ops fake_ops = { fake_ask, fake_cancel, fake_close,
						    fake_free };

struct run_result {
	bool done;
	enum policy_verdict verdict;
	int code;
	char text[512], reason[64];
};

static void run_done(void *arg, struct policy_reply *r)
{
	struct run_result *rr = arg;
	rr->done = true;
	rr->verdict = r->verdict;
	rr->code = r->code;
	snprintf(rr->text, sizeof(rr->text), "%s", r->text);
	snprintf(rr->reason, sizeof(rr->reason), "%s", r->reason);
}

static char notices[2048];

static void notice(void *arg, const char *subject, const char *body)
{
	(void)arg;
	(void)body;
	strncat(notices, subject, sizeof(notices) - strlen(notices) - 2);
	strcat(notices, "\n");
}

static void request_for(struct policy_request *req, enum policy_stage stage, const char *rcpt)
{
	memset(req, 0, sizeof(*req));
	req->stage = stage;
	struct sockaddr_in *sin = (struct sockaddr_in *)&req->client;
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr);
	snprintf(req->client_addr, sizeof(req->client_addr), "192.0.2.1");
	req->has_sender = true;
	snprintf(req->sender.local, sizeof(req->sender.local), "A");
	snprintf(req->sender.domain, sizeof(req->sender.domain), "b.test");
	req->auth_user = (char *)"Bob";
	if (rcpt != NULL) {
		req->has_rcpt = true;
		snprintf(req->rcpt.local, sizeof(req->rcpt.local), "%s", rcpt);
		snprintf(req->rcpt.domain, sizeof(req->rcpt.domain), "example.test");
	}
}

static enum policy_verdict no_opinion(struct policy_call *call, void *arg)
{
	(void)call;
	(void)arg;
	return POLICY_DUNNO;
}

static void test_checks_ask_for_the_right_items(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/postern-test-limits-XXXXXX";
	char *dir = mkdtemp(tmpl);
	char *conf = safeio_path_join(dir, "postern.conf");
	FILE *f = fopen(conf, "w");
	fputs("hostname = mx.example.test\nlimits_ignore_networks =\n"
	      "greylist_ignore_networks =\nsender_message_rate_block = 5\n"
	      "user_message_rate_warn = 3\nsite_message_rate_panic = 100\n"
	      "client_recipient_rate_block = 7\ngreylist = yes\n", f);
	fclose(f);
	struct config cfg;
	assert_int_equal(config_load(conf, &cfg, stderr), 0);
	struct fake_backend fb = { .base.ops = &fake_ops };
	notices[0] = '\0';
	struct limits *l = limits_new(&cfg, &fb.base, notice, NULL);
	assert_non_null(l);
	struct policy_env env;
	memset(&env, 0, sizeof(env));
	env.cfg = &cfg;
	struct policy_check other = { "other", no_opinion, NULL, NULL };
	policy_env_add(&env, POLICY_RCPT, &other); /* a restriction already there */
	limits_register(l, &env);
	/* the rate check first at MAIL and RCPT, greylisting last at RCPT */
	assert_string_equal(env.checks[POLICY_MAIL][0].name, "rate");
	assert_string_equal(env.checks[POLICY_RCPT][0].name, "rate");
	assert_string_equal(env.checks[POLICY_RCPT][1].name, "other");
	assert_string_equal(env.checks[POLICY_RCPT][2].name, "greylist");

	/* MAIL: a look at the client's block (only its recipient rate is
	 * set), the sender, the user, the site */
	struct policy_request req;
	struct policy_reply reply;
	struct run_result rr = { 0 };
	request_for(&req, POLICY_MAIL, NULL);
	struct policy_run *run = policy_run_start(&env, &req, run_done, &rr, &reply);
	assert_non_null(run);
	assert_int_equal(fb.req.type, ANVIL_MSG_RATE);
	assert_int_equal(fb.req.n, 4);
	assert_string_equal(fb.req.items[0].key, "client:192.0.2.1/32");
	assert_int_equal(fb.req.items[0].cost, 0);
	assert_string_equal(fb.req.items[1].key, "sender:a@b.test");
	assert_int_equal(fb.req.items[1].limit, 5);
	assert_int_equal(fb.req.items[1].block_time, 600);
	assert_string_equal(fb.req.items[2].key, "user:bob");
	assert_int_equal(fb.req.items[2].warn, 3);
	assert_int_equal(fb.req.items[2].limit, 0);
	assert_string_equal(fb.req.items[3].key, "site");
	assert_int_equal(fb.req.items[3].limit, 100);
	assert_int_equal(fb.req.items[3].block_time, 0);
	/* the sender is blocked now, the user passed its warn level */
	struct anvil_msg ans;
	anvil_msg_init(&ans, ANVIL_MSG_RATED);
	ans.n = 4;
	ans.results[1] = (struct anvil_result){ 6, ANVIL_RESULT_REFUSED | ANVIL_RESULT_BLOCKED_NOW |
						       ANVIL_RESULT_OVER_NOW, 600 };
	ans.results[2] = (struct anvil_result){ 4, ANVIL_RESULT_WARNED, 0 };
	fb.done(fb.arg, &ans);
	assert_true(rr.done);
	assert_int_equal(rr.verdict, POLICY_TEMPFAIL);
	assert_int_equal(rr.code, 451);
	assert_string_equal(rr.reason, "sender_message_rate_block");
	assert_non_null(strstr(rr.text, "too much mail from <a@b.test>, try again in 600 seconds"));
	assert_non_null(strstr(notices, "rate warning: bob"));
	assert_non_null(strstr(notices, "blocked for 600s: a@b.test"));

	/* RCPT: the client's recipients, then (after "other") greylisting */
	memset(&rr, 0, sizeof(rr));
	request_for(&req, POLICY_RCPT, "Alice");
	run = policy_run_start(&env, &req, run_done, &rr, &reply);
	assert_non_null(run);
	assert_int_equal(fb.req.n, 1);
	assert_string_equal(fb.req.items[0].key, "client:192.0.2.1/32");
	assert_int_equal(fb.req.items[0].metric, ANVIL_RECIPIENTS);
	anvil_msg_init(&ans, ANVIL_MSG_RATED);
	ans.n = 1;
	fb.done(fb.arg, &ans);
	assert_false(rr.done);
	assert_int_equal(fb.req.type, ANVIL_MSG_GREY);
	assert_string_equal(fb.req.client, "192.0.2.0/24");
	assert_string_equal(fb.req.triplet, "192.0.2.0/24 <a@b.test> <alice@example.test>");
	assert_int_equal(fb.req.delay, 300);
	anvil_msg_init(&ans, ANVIL_MSG_GREYED);
	ans.outcome = ANVIL_GREY_NEW;
	ans.wait = 300;
	fb.done(fb.arg, &ans);
	assert_true(rr.done);
	assert_int_equal(rr.code, 451);
	assert_string_equal(rr.reason, "greylisted");
	assert_non_null(strstr(rr.text, "try again in 300 seconds"));

	/* no answer (the anvil is away): fail open */
	memset(&rr, 0, sizeof(rr));
	run = policy_run_start(&env, &req, run_done, &rr, &reply);
	fb.done(fb.arg, NULL);
	fb.done(fb.arg, NULL);
	assert_true(rr.done);
	assert_int_equal(rr.verdict, POLICY_DUNNO);

	limits_free(&l);
	config_free(&cfg);
	free(conf);
	testutil_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proto_roundtrip),
		cmocka_unit_test(test_proto_violations),
		cmocka_unit_test(test_proto_over_a_socket),
		cmocka_unit_test(test_outbox_keeps_order_until_the_socket_has_room),
		cmocka_unit_test(test_sessions_per_client_and_owner),
		cmocka_unit_test(test_rate_warn_and_limit_without_block),
		cmocka_unit_test(test_rate_slides),
		cmocka_unit_test(test_rate_block_and_cool_down),
		cmocka_unit_test(test_rate_items_all_or_none),
		cmocka_unit_test(test_rate_counters_are_swept),
		cmocka_unit_test(test_greylisting_in_memory),
		cmocka_unit_test(test_lmdb_keeps_blocks_and_greylisting_and_expires_them),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_client_fails_open_without_an_anvil),
		cmocka_unit_test(test_checks_ask_for_the_right_items),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
