/*
 * test_bayes.c - Bayes (spam.h): the tokenizer on hand-made messages
 * (which tokens a Subject, a From, a Received field, URIs and body words
 * make; case, long words, numbers, deduplication, the bound), the
 * chi-square arithmetic on known counts against values worked out by
 * hand, and the LMDB token store: learning, learning twice, moving a
 * message to the other class, forgetting, totals, expiry by age and by
 * size, a map that grows, a read-only handle before anything is learned,
 * and a reader process that looks up while a writer learns 1000 messages
 * (the totals never go backwards and never show half a learning).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/xalloc.h"
#include "scan/scan_message.h"
#include "scan/spam.h"
#include "scan/spam_store_lmdb.h"
#include "scan/spam_token.h"

/* ---- hand-made messages ------------------------------------------------------------ */

struct handmade {
	struct scan_message m;
	struct scan_header h[16];
	struct spam_text t;
	struct spam_uri uris[4];
};

static const strlist_t no_rcpts = { NULL, 0 };
static const struct scan_envelope offline = { "", "", &no_rcpts, "", "" };

/* fields: "Name", "decoded value", ... NULL; body: the text Bayes reads. */
static void make(struct handmade *x, const char *body, ...)
{
	memset(x, 0, sizeof(*x));
	x->m.env = &offline;
	x->m.headers = x->h;
	va_list ap;
	va_start(ap, body);
	const char *name;
	while ((name = va_arg(ap, const char *)) != NULL) {
		const char *value = va_arg(ap, const char *);
		struct scan_header *h = &x->h[x->m.header_count++];
		h->part = 0;
		h->name = (char *)name;
		h->raw = h->decoded = (char *)value;
	}
	va_end(ap);
	x->t.msg = &x->m;
	buf_puts(&x->t.body, body);
}

static void unmake(struct handmade *x)
{
	buf_free(&x->t.body);
}

static size_t tokenize(struct handmade *x, uint64_t *tokens, size_t max)
{
	return spam_tokenize(&x->t, tokens, max);
}

static size_t count_of(const uint64_t *tokens, size_t n, const char *prefix, const char *text)
{
	uint64_t h = spam_token_hash(prefix, text);
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += tokens[i] == h;
	return c;
}

#define assert_token(tokens, n, prefix, text) \
	assert_int_equal(count_of(tokens, n, prefix, text), 1)
#define assert_no_token(tokens, n, prefix, text) \
	assert_int_equal(count_of(tokens, n, prefix, text), 0)

/* ---- the tokenizer ------------------------------------------------------------------- */

static void test_subject_and_body_words_differ(void **state)
{
	(void)state;
	struct handmade x;
	uint64_t t[SPAM_TOKENS_MAX];
	make(&x, "Buy cheap watches now\n", "Subject", "Cheap Watches", NULL);
	size_t n = tokenize(&x, t, SPAM_TOKENS_MAX);
	assert_token(t, n, "S:", "cheap");
	assert_token(t, n, "S:", "watches");
	assert_token(t, n, "", "cheap");
	assert_token(t, n, "", "buy");
	assert_true(spam_token_hash("S:", "cheap") != spam_token_hash("", "cheap"));
	assert_no_token(t, n, "", "Cheap");    /* folded */
	assert_no_token(t, n, "S:", "now");    /* the body's, not the Subject's */
	assert_token(t, n, "HN:", "subject");
	assert_token(t, n, "MID:", "none");    /* absent fields say so */
	assert_token(t, n, "D:", "none");
	unmake(&x);
}

static void test_case_caps_and_unicode(void **state)
{
	(void)state;
	struct handmade x;
	uint64_t t[SPAM_TOKENS_MAX];
	make(&x, "FREE money Hello \xc3\x89" "COLE \xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2 "
	     "ok go\xe2\x80\x94now don't e-mail\n", NULL);
	size_t n = tokenize(&x, t, SPAM_TOKENS_MAX);
	assert_token(t, n, "", "free");
	assert_token(t, n, "C:", "free");      /* written in capitals */
	assert_no_token(t, n, "C:", "money");
	assert_no_token(t, n, "C:", "hello");  /* only a capital first letter */
	assert_token(t, n, "", "hello");
	assert_token(t, n, "", "\xc3\xa9" "cole");                    /* Latin-1 folded */
	assert_token(t, n, "", "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"); /* Cyrillic */
	assert_no_token(t, n, "", "ok");       /* shorter than 3 bytes */
	assert_token(t, n, "", "now");         /* an em dash separates */
	assert_token(t, n, "", "don't");
	assert_token(t, n, "", "e-mail");
	unmake(&x);
}

static void test_long_words_numbers_punctuation(void **state)
{
	(void)state;
	struct handmade x;
	uint64_t t[SPAM_TOKENS_MAX];
	make(&x, "abcdefghijklmnopqrstuvwxyz0123 call 1-800-555-1212 for $1,000,000 in 2002, "
	     "only $5 or 50% off!!!! www.example.com.\n", NULL);
	size_t n = tokenize(&x, t, SPAM_TOKENS_MAX);
	assert_token(t, n, "", "L:abcdefgh:3");   /* 30 bytes: the first 8 and 30/8 */
	assert_no_token(t, n, "", "abcdefghijklmnopqrstuvwxyz0123");
	assert_token(t, n, "", "#-#-#-#");        /* 5 digits or more: the shape */
	assert_token(t, n, "", "$#,#,#");
	assert_token(t, n, "", "2002");           /* 4 digits stay */
	assert_token(t, n, "", "$5");             /* a price is no short word */
	assert_token(t, n, "", "50%");
	assert_token(t, n, "P:", "!!!");
	assert_token(t, n, "", "off");
	assert_token(t, n, "", "www.example.com"); /* the final dot is no joiner */
	unmake(&x);
}

static void test_header_tokens(void **state)
{
	(void)state;
	struct handmade x;
	uint64_t t[SPAM_TOKENS_MAX];
	make(&x, "",
	     "Received", "from mail.example.org (mail.example.org [192.0.2.7]) by mx.test.net "
	     "(Postfix) with ESMTP id 4A3B2C; Thu, 22 Aug 2002 07:36:16 -0400",
	     "From", "\"John Smith\" <John.Smith@Mail.Example.COM>",
	     "Reply-To", "offers@deals.example",
	     "To", "a@one.test, \"B, b\" <b@two.test>",
	     "Message-ID", "<1234.5678@host.example.net>",
	     "Content-Type", "text/plain; charset=\"ISO-8859-1\"; boundary=\"----=_NextPart_000_0012\"",
	     "X-Mailer", "Microsoft Outlook Express 6.00.2600.0000",
	     "X-Spam-Status", "Yes, score=99",
	     "Date", "Thu, 22 Aug 2002 07:36:16 -0400",
	     NULL);
	size_t n = tokenize(&x, t, SPAM_TOKENS_MAX);
	assert_token(t, n, "H:", "mail.example.org");
	assert_token(t, n, "H@", "example.org");
	assert_token(t, n, "H:ip:", "192.0.2.7");
	assert_token(t, n, "H:net:", "192.0.2");
	assert_token(t, n, "H:with:", "esmtp");
	assert_token(t, n, "H:w:", "postfix");
	assert_no_token(t, n, "H:w:", "thu");     /* the date is left out */
	assert_no_token(t, n, "H:w:", "aug");
	assert_token(t, n, "F:", "john.smith@mail.example.com");
	assert_token(t, n, "F@", "mail.example.com");
	assert_token(t, n, "F@", "example.com");
	assert_token(t, n, "Fn:", "john");
	assert_token(t, n, "Fn:", "smith");
	assert_token(t, n, "R:", "offers@deals.example");
	assert_token(t, n, "T:", "a@one.test");
	assert_token(t, n, "T:", "b@two.test");   /* the comma in quotes splits nothing */
	assert_token(t, n, "T#", "2");
	assert_token(t, n, "MID@", "host.example.net");
	assert_token(t, n, "CT:", "text/plain");
	assert_token(t, n, "CS:", "iso-8859-1");
	assert_token(t, n, "B:", "----=_a_9");
	assert_token(t, n, "UA:", "outlook");
	assert_token(t, n, "UA:", "#.#.#.#");
	assert_no_token(t, n, "HN:", "x-spam-status"); /* a filter's field is never a token */
	assert_no_token(t, n, "D:", "none");
	assert_no_token(t, n, "", "john");        /* header words are not body words */
	unmake(&x);
}

static void test_uri_tokens(void **state)
{
	(void)state;
	struct handmade x;
	uint64_t t[SPAM_TOKENS_MAX];
	make(&x, "", NULL);
	x.uris[0] = (struct spam_uri){ "http://www.Spam.example.com/x", "www.spam.example.com",
				       NULL, false };
	x.uris[1] = (struct spam_uri){ "https://192.0.2.9/", "192.0.2.9", NULL, true };
	x.uris[2] = (struct spam_uri){ "mailto:a@b.example", NULL, NULL, false };
	x.t.uris = x.uris;
	x.t.uri_count = 3;
	size_t n = tokenize(&x, t, SPAM_TOKENS_MAX);
	assert_token(t, n, "U@", "www.spam.example.com");
	assert_token(t, n, "U@", "spam.example.com");
	assert_token(t, n, "U@", "example.com");
	assert_no_token(t, n, "U@", "com");
	assert_token(t, n, "U:ip", "");
	assert_token(t, n, "U@", "192.0.2.9");
	assert_token(t, n, "U:s:", "http");
	assert_token(t, n, "U:s:", "https");
	assert_token(t, n, "U:s:", "mailto");
	unmake(&x);
}

static void test_deduplicated_and_bounded(void **state)
{
	(void)state;
	struct handmade x;
	uint64_t t[SPAM_TOKENS_MAX];
	buf_t body = BUF_INIT;
	for (int i = 0; i < 500; i++)
		buf_printf(&body, "word%03d again again ", i);
	make(&x, buf_cstr(&body), "Subject", "hello", NULL);
	size_t n = tokenize(&x, t, SPAM_TOKENS_MAX);
	assert_int_equal(count_of(t, n, "", "again"), 1);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_true(t[i] != t[j]);
	/* at most max, the header's first */
	size_t small = tokenize(&x, t, 10);
	assert_int_equal(small, 10);
	assert_int_equal(count_of(t, small, "S:", "hello"), 1);
	assert_int_equal(tokenize(&x, t, 0), 0);
	unmake(&x);
	buf_free(&body);
}

static void test_message_id(void **state)
{
	(void)state;
	static const char lf[] = "Message-ID: <a@b>\nSubject: x\n\nline one\nline two\n";
	static const char crlf[] = "Message-ID: <a@b>\r\nSubject: y\r\n\r\nline one\r\nline two\r\n\r\n";
	static const char other_id[] = "Message-ID: <c@d>\nSubject: x\n\nline one\nline two\n";
	static const char other_body[] = "Message-ID: <a@b>\nSubject: x\n\nline one\nline 2\n";
	struct mime_limits limits = { 20, 100, 65536, 1 << 20, false };
	uint64_t ids[4];
	const char *texts[4] = { lf, crlf, other_id, other_body };
	for (int i = 0; i < 4; i++) {
		struct scan_message m = { .env = &offline, .data = (const unsigned char *)texts[i],
					  .len = strlen(texts[i]) };
		scan_message_parse(&m, &limits, 0);
		ids[i] = spam_message_id(&m);
		scan_message_free(&m);
	}
	assert_true(ids[0] == ids[1]);  /* line ends and header fields besides Message-ID do not count */
	assert_true(ids[0] != ids[2]);
	assert_true(ids[0] != ids[3]);
}

/* ---- the arithmetic, on a store that answers known counts ------------------------------- */

struct fake_store {
	struct spam_store base;
	uint32_t nspam, nham;
	const struct spam_token_counts *counts;  /* counts[i] for token i + 1 */
	size_t count_n;
};

static int fake_lookup(struct spam_store *s, const uint64_t *tokens, size_t n,
		       struct spam_token_counts *out, uint32_t *nspam_r, uint32_t *nham_r)
{
	struct fake_store *f = (struct fake_store *)s;
	for (size_t i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		if (tokens[i] >= 1 && tokens[i] <= f->count_n)
			out[i] = f->counts[tokens[i] - 1];
	}
	*nspam_r = f->nspam;
	*nham_r = f->nham;
	return 0;
}

static const struct spam_store_ops fake_ops = { NULL, fake_lookup, NULL, NULL, NULL, NULL, NULL };

static double classify(uint32_t nspam, uint32_t nham, const struct spam_token_counts *counts,
		       size_t n, struct spam_bayes_detail *d)
{
	struct fake_store f = { { &fake_ops }, nspam, nham, counts, n };
	uint64_t *tokens = xcalloc(n + 1, sizeof(*tokens));
	for (size_t i = 0; i < n; i++)
		tokens[i] = i + 1;
	double p = spam_bayes_classify(&f.base, tokens, n, 200, d);
	free(tokens);
	return p;
}

static void test_one_clue_is_its_own_probability(void **state)
{
	(void)state;
	/* spam 100 of 200, ham 0: p = 1, n = 100, f = (0.45 * 0.5 + 100) / 100.45;
	 * with one clue Fisher's combining gives f itself:
	 * H = e^(ln f) = f, S = e^(ln(1-f)) = 1 - f, (1 + f - (1 - f)) / 2 = f. */
	struct spam_token_counts c[] = { { 100, 0, 0 } };
	struct spam_bayes_detail d;
	double p = classify(200, 200, c, 1, &d);
	assert_true(fabs(p - 100.225 / 100.45) < 1e-12);
	assert_int_equal(d.known, 1);
	assert_int_equal(d.used, 1);
	assert_int_equal(d.nspam, 200);
}

static void test_two_and_three_clues(void **state)
{
	(void)state;
	/* f1 = 100.225/100.45 (spam 100), f3 = 1.225/1.45 (spam 1): with two
	 * clues the tails are P(1 - ln P): P = (1-f1)(1-f3) = 0.00034757,
	 * S = 0.0031158; Q = f1 f3 = 0.8429352, H = 0.9869635;
	 * (1 + H - S)/2 = 0.9919238. */
	struct spam_token_counts two[] = { { 100, 0, 0 }, { 1, 0, 0 } };
	assert_true(fabs(classify(200, 200, two, 2, NULL) - 0.9919238272096222) < 1e-9);
	/* Evidence both ways lands near the middle: f1 and f2 = 0.225/50.45
	 * (ham 50) give 0.5063500; adding f4 = 20.225/21.45 (spam 20, ham 1)
	 * 0.5418127. */
	struct spam_token_counts both[] = { { 100, 0, 0 }, { 0, 50, 0 } };
	assert_true(fabs(classify(200, 200, both, 2, NULL) - 0.5063499924440673) < 1e-9);
	struct spam_token_counts three[] = { { 100, 0, 0 }, { 0, 50, 0 }, { 20, 1, 0 } };
	assert_true(fabs(classify(200, 200, three, 3, NULL) - 0.5418127333309124) < 1e-9);
}

static void test_weak_tokens_are_left_out(void **state)
{
	(void)state;
	struct spam_bayes_detail d;
	/* f = 0.5 (as often in both), f = 3.225/5.45 = 0.592 (|f - 0.5| < 0.1),
	 * and rates, not counts, compare: 2 of 400 spam vs 1 of 200 ham is 0.5 */
	struct spam_token_counts c[] = { { 10, 10, 0 }, { 3, 2, 0 }, { 0, 0, 0 } };
	assert_true(fabs(classify(200, 200, c, 3, &d) - 0.5) < 1e-12);
	assert_int_equal(d.known, 2);
	assert_int_equal(d.used, 0);
	struct spam_token_counts r[] = { { 2, 1, 0 } };
	assert_true(fabs(classify(400, 200, r, 1, &d) - 0.5) < 1e-12);
	assert_int_equal(d.used, 0);
	/* a count above its total (a damaged store) is cut to the total */
	struct spam_token_counts big[] = { { 5000, 0, 0 } };
	assert_true(fabs(classify(200, 200, big, 1, NULL) - 200.225 / 200.45) < 1e-12);
}

static void test_at_most_150_clues(void **state)
{
	(void)state;
	struct spam_token_counts c[400];
	for (size_t i = 0; i < 400; i++)
		c[i] = (struct spam_token_counts){ i < 200 ? 50 : 0, i < 200 ? 0 : 1, 0 };
	struct spam_bayes_detail d;
	double p = classify(200, 200, c, 400, &d);
	assert_int_equal(d.known, 400);
	assert_int_equal(d.used, 150);
	assert_true(p > 0.999);  /* the 150 strongest are the spam ones (f = 0.99) */
}

static void test_too_little_learned(void **state)
{
	(void)state;
	struct spam_token_counts c[] = { { 100, 0, 0 } };
	struct spam_bayes_detail d;
	assert_true(classify(199, 5000, c, 1, &d) < 0);
	assert_int_equal(d.nspam, 199);
	assert_true(classify(5000, 0, c, 1, NULL) < 0);
	assert_true(classify(200, 200, c, 1, NULL) >= 0);
}

/* ---- the LMDB store --------------------------------------------------------------------- */

static char store_dir[64];

static int store_setup(void **state)
{
	(void)state;
	snprintf(store_dir, sizeof(store_dir), "/tmp/postern-bayes-XXXXXX");
	return mkdtemp(store_dir) == NULL ? -1 : 0;
}

static int store_teardown(void **state)
{
	(void)state;
	return testutil_rmtree(store_dir);
}

static struct spam_store *open_store(const char *sub, bool writable, uint64_t map_size)
{
	char path[128], *err = NULL;
	snprintf(path, sizeof(path), "%s/%s", store_dir, sub);
	struct spam_store *s = spam_store_lmdb_open(path, writable, map_size, &err);
	if (s == NULL)
		fail_msg("open %s: %s", path, err);
	return s;
}

static void totals_are(struct spam_store *s, uint32_t spam, uint32_t ham)
{
	uint32_t ns, nh;
	if (s->ops->totals(s, &ns, &nh) != 0)
		fail_msg("totals: %s", s->ops->last_error(s));
	assert_int_equal(ns, spam);
	assert_int_equal(nh, ham);
}

static struct spam_token_counts counts_of(struct spam_store *s, uint64_t token)
{
	struct spam_token_counts c;
	assert_int_equal(s->ops->lookup(s, &token, 1, &c, NULL, NULL), 0);
	return c;
}

static void test_learn_twice_switch_forget(void **state)
{
	(void)state;
	struct spam_store *s = open_store("a", true, 1 << 20);
	const uint64_t toks[] = { 11, 12, 13 }, other[] = { 13, 14 };
	enum spam_learn_outcome o;
	totals_are(s, 0, 0);
	assert_int_equal(s->ops->learn(s, 1, toks, 3, SPAM_LEARN_SPAM, &o), 0);
	assert_int_equal(o, SPAM_LEARN_DONE);
	assert_int_equal(s->ops->learn(s, 2, other, 2, SPAM_LEARN_SPAM, &o), 0);
	totals_are(s, 2, 0);
	assert_int_equal(counts_of(s, 13).spam, 2);
	assert_true(counts_of(s, 13).atime > 19000);  /* today, in days */
	/* the same message again: nothing changes */
	assert_int_equal(s->ops->learn(s, 1, toks, 3, SPAM_LEARN_SPAM, &o), 0);
	assert_int_equal(o, SPAM_LEARN_ALREADY);
	totals_are(s, 2, 0);
	assert_int_equal(counts_of(s, 11).spam, 1);
	/* as ham now: moved over */
	assert_int_equal(s->ops->learn(s, 1, toks, 3, SPAM_LEARN_HAM, &o), 0);
	assert_int_equal(o, SPAM_LEARN_SWITCHED);
	totals_are(s, 1, 1);
	struct spam_token_counts c = counts_of(s, 13);
	assert_int_equal(c.spam, 1);
	assert_int_equal(c.ham, 1);
	/* forgotten: as if never learned */
	assert_int_equal(s->ops->learn(s, 1, toks, 3, SPAM_LEARN_FORGET, &o), 0);
	assert_int_equal(o, SPAM_LEARN_DONE);
	assert_int_equal(s->ops->learn(s, 1, toks, 3, SPAM_LEARN_FORGET, &o), 0);
	assert_int_equal(o, SPAM_LEARN_UNKNOWN);
	assert_int_equal(s->ops->learn(s, 2, other, 2, SPAM_LEARN_FORGET, &o), 0);
	totals_are(s, 0, 0);
	struct spam_store_stats st;
	assert_int_equal(s->ops->stats(s, &st), 0);
	assert_int_equal(st.tokens, 0);     /* zero counts leave no record */
	assert_int_equal(st.messages, 0);
	assert_int_equal(counts_of(s, 13).spam, 0);
	s->ops->close(s);
}

static void test_reopen_keeps_everything(void **state)
{
	(void)state;
	struct spam_store *s = open_store("b", true, 1 << 20);
	const uint64_t toks[] = { 5, 6 };
	assert_int_equal(s->ops->learn(s, 9, toks, 2, SPAM_LEARN_HAM, NULL), 0);
	s->ops->close(s);
	s = open_store("b", false, 0);
	totals_are(s, 0, 1);
	assert_int_equal(counts_of(s, 6).ham, 1);
	/* a read-only handle cannot learn, and says why */
	assert_int_equal(s->ops->learn(s, 10, toks, 2, SPAM_LEARN_HAM, NULL), -1);
	assert_non_null(strstr(s->ops->last_error(s), "read-only"));
	s->ops->close(s);
}

static void test_reader_before_anything_is_learned(void **state)
{
	(void)state;
	struct spam_store *r = open_store("c", false, 0);  /* no folder yet: empty */
	totals_are(r, 0, 0);
	assert_int_equal(counts_of(r, 1).spam, 0);
	struct spam_store *w = open_store("c", true, 1 << 20);
	const uint64_t toks[] = { 1 };
	assert_int_equal(w->ops->learn(w, 1, toks, 1, SPAM_LEARN_SPAM, NULL), 0);
	totals_are(r, 1, 0);  /* the same reader sees it once it exists */
	assert_int_equal(counts_of(r, 1).spam, 1);
	w->ops->close(w);
	r->ops->close(r);
}

static void test_expiry_by_age(void **state)
{
	(void)state;
	struct spam_store *s = open_store("d", true, 1 << 20);
	const uint64_t a[] = { 10, 11 }, b[] = { 11, 12 }, c[] = { 12, 13 };
	spam_store_lmdb_set_today(s, 1000);
	assert_int_equal(s->ops->learn(s, 1, a, 2, SPAM_LEARN_SPAM, NULL), 0);
	assert_int_equal(s->ops->learn(s, 2, b, 2, SPAM_LEARN_HAM, NULL), 0);
	spam_store_lmdb_set_today(s, 1100);
	assert_int_equal(s->ops->learn(s, 3, c, 2, SPAM_LEARN_SPAM, NULL), 0);
	/* 10: rare and old, goes; 11: old but in two messages; 12: learned
	 * from on day 1100; 13: new */
	uint64_t removed;
	assert_int_equal(s->ops->expire(s, 1050, 2, 0, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(counts_of(s, 10).spam, 0);
	assert_int_equal(counts_of(s, 11).ham, 1);
	assert_int_equal(counts_of(s, 12).spam, 1);
	assert_int_equal(counts_of(s, 12).atime, 1100);
	struct spam_store_stats st;
	assert_int_equal(s->ops->stats(s, &st), 0);
	assert_int_equal(st.tokens, 3);
	assert_int_equal(st.last_expire, 1100);
	totals_are(s, 2, 1);  /* messages stay learned */
	/* the records of messages 1 and 2 (day 1000) are gone, 3's stays:
	 * 1 can no longer be forgotten, 3 is still known */
	assert_int_equal(st.messages, 1);
	enum spam_learn_outcome out;
	assert_int_equal(s->ops->learn(s, 1, a, 2, SPAM_LEARN_FORGET, &out), 0);
	assert_int_equal(out, SPAM_LEARN_UNKNOWN);
	assert_int_equal(s->ops->learn(s, 3, c, 2, SPAM_LEARN_SPAM, &out), 0);
	assert_int_equal(out, SPAM_LEARN_ALREADY);
	s->ops->close(s);
}

static void test_expiry_by_size(void **state)
{
	(void)state;
	struct spam_store *s = open_store("e", true, 1 << 20);
	uint64_t toks[8];
	/* day 500: tokens 1..4 (token 1 in three messages); day 600: 5..8 */
	spam_store_lmdb_set_today(s, 500);
	for (uint64_t m = 0; m < 3; m++) {
		size_t n = 0;
		toks[n++] = 1;
		if (m == 0)
			for (uint64_t t = 2; t <= 4; t++)
				toks[n++] = t;
		assert_int_equal(s->ops->learn(s, 100 + m, toks, n, SPAM_LEARN_SPAM, NULL), 0);
	}
	spam_store_lmdb_set_today(s, 600);
	for (uint64_t t = 5; t <= 8; t++)
		toks[t - 5] = t;
	assert_int_equal(s->ops->learn(s, 200, toks, 4, SPAM_LEARN_HAM, NULL), 0);
	/* down to 5 tokens: three go, the oldest and rarest first: 2, 3, 4 */
	uint64_t removed;
	assert_int_equal(s->ops->expire(s, 0, 0, 5, &removed), 0);
	assert_int_equal(removed, 3);
	assert_int_equal(counts_of(s, 1).spam, 3);
	for (uint64_t t = 2; t <= 4; t++)
		assert_int_equal(counts_of(s, t).spam, 0);
	/* down to 2: token 1 (day 500) goes before the day-600 ones, then two
	 * of those equal ones */
	assert_int_equal(s->ops->expire(s, 0, 0, 2, &removed), 0);
	assert_int_equal(removed, 3);
	assert_int_equal(counts_of(s, 1).spam, 0);
	struct spam_store_stats st;
	assert_int_equal(s->ops->stats(s, &st), 0);
	assert_int_equal(st.tokens, 2);
	s->ops->close(s);
}

static void test_maintain_runs_when_due(void **state)
{
	(void)state;
	struct spam_store *s = open_store("f", true, 1 << 20);
	const uint64_t a[] = { 1, 2, 3 };
	uint64_t removed;
	spam_store_lmdb_set_today(s, 100);  /* learned long ago */
	assert_int_equal(s->ops->learn(s, 1, a, 3, SPAM_LEARN_SPAM, NULL), 0);
	spam_store_lmdb_set_today(s, 0);
	/* never expired: due; rare tokens older than 30 days go */
	assert_int_equal(spam_bayes_maintain(s, 30, 0, false, &removed), 0);
	assert_int_equal(removed, 3);
	assert_int_equal(s->ops->learn(s, 2, a, 3, SPAM_LEARN_SPAM, NULL), 0);
	/* expired today already and within bounds: not due */
	assert_int_equal(spam_bayes_maintain(s, 30, 1000, false, &removed), 0);
	assert_int_equal(removed, 0);
	/* more tokens than the bound: due at once */
	assert_int_equal(spam_bayes_maintain(s, 30, 2, false, &removed), 0);
	assert_int_equal(removed, 1);
	s->ops->close(s);
}

static void test_map_grows(void **state)
{
	(void)state;
	struct spam_store *w = open_store("g", true, 1 << 20);
	struct spam_store *r = open_store("g", false, 0);
	totals_are(r, 0, 0);  /* the reader's environment maps the small map */
	uint64_t *toks = xcalloc(SPAM_TOKENS_MAX, sizeof(*toks));
	for (uint64_t m = 0; m < 40; m++) {
		for (size_t i = 0; i < SPAM_TOKENS_MAX; i++)
			toks[i] = m * SPAM_TOKENS_MAX + i + 1;
		assert_int_equal(w->ops->learn(w, m + 1, toks, SPAM_TOKENS_MAX, SPAM_LEARN_SPAM,
					       NULL), 0);
	}
	struct spam_store_stats st;
	assert_int_equal(w->ops->stats(w, &st), 0);
	assert_int_equal(st.tokens, 40 * SPAM_TOKENS_MAX);
	assert_true(st.map_bytes > (1 << 20));
	/* the reader adopts the grown map */
	totals_are(r, 40, 0);
	assert_int_equal(counts_of(r, 40 * SPAM_TOKENS_MAX).spam, 1);
	free(toks);
	r->ops->close(r);
	w->ops->close(w);
}

/* A reader process loops over lookups while this process learns: each
 * message has the token COMMON and one of its own, so in any snapshot
 * COMMON's counts equal the totals; the totals never go down. */
#define COMMON 0xC0FFEE
#define LEARNINGS 1000

static int reader_loop(struct spam_store *r, int out)
{
	uint64_t toks[1] = { COMMON };
	uint32_t last = 0, states = 0, bad = 0;
	for (;;) {
		struct spam_token_counts c;
		uint32_t ns, nh;
		if (r->ops->lookup(r, toks, 1, &c, &ns, &nh) != 0) {
			bad++;
			break;
		}
		if (c.spam != ns || c.ham != nh || ns + nh < last)
			bad++;
		if (ns + nh != last)
			states++;
		last = ns + nh;
		if (last >= LEARNINGS)
			break;
	}
	uint32_t report[2] = { bad, states };
	return write(out, report, sizeof(report)) == sizeof(report) ? 0 : 1;
}

static void test_reader_never_sees_half_a_learning(void **state)
{
	(void)state;
	struct spam_store *w = open_store("h", true, 1 << 20);
	/* the reader's handle is made (and used) before fork: the child must
	 * open its own environment */
	struct spam_store *r = open_store("h", false, 0);
	totals_are(r, 0, 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		_exit(reader_loop(r, p[1]));
	}
	close(p[1]);
	for (uint64_t m = 0; m < LEARNINGS; m++) {
		uint64_t toks[3] = { COMMON, 1000000 + m, 2000000 + m };
		assert_int_equal(w->ops->learn(w, m + 1, toks, 3,
					       m % 2 ? SPAM_LEARN_HAM : SPAM_LEARN_SPAM, NULL), 0);
	}
	uint32_t report[2] = { 99, 0 };
	assert_int_equal(read(p[0], report, sizeof(report)), sizeof(report));
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(report[0], 0);    /* no torn or backward snapshot */
	assert_true(report[1] >= 2);       /* and it did read while learning went on */
	print_message("reader saw %u states of %d learnings\n", report[1], LEARNINGS);
	totals_are(r, LEARNINGS / 2, LEARNINGS / 2);
	close(p[0]);
	r->ops->close(r);
	w->ops->close(w);
}

/* Handles of one process on one store share its environment: LMDB breaks
 * when a process opens the same files twice (a second open finds itself
 * alone and resets the reader table; closing it drops the process's
 * locks), which showed as MDB_BAD_RSLOT in the reader. */
static void test_two_handles_in_one_process(void **state)
{
	(void)state;
	const uint64_t toks[] = { 5 };
	struct spam_store *w = open_store("k", true, 1 << 20);
	assert_int_equal(w->ops->learn(w, 1, toks, 1, SPAM_LEARN_SPAM, NULL), 0);
	w->ops->close(w);
	struct spam_store *r = open_store("k", false, 0);
	totals_are(r, 1, 0);
	w = open_store("k", true, 1 << 20);
	assert_int_equal(w->ops->learn(w, 2, toks, 1, SPAM_LEARN_SPAM, NULL), 0);
	totals_are(r, 2, 0);
	struct spam_store *r2 = open_store("k", false, 0);
	totals_are(r2, 2, 0);
	w->ops->close(w);
	totals_are(r, 2, 0);
	r->ops->close(r);
	totals_are(r2, 2, 0);
	assert_int_equal(counts_of(r2, 5).spam, 2);
	r2->ops->close(r2);
}

/* A writable handle made before fork (the stage's, for auto-learn, made
 * in the scan master) learns in the child with the child's own
 * environment, and the parent sees it. */
static void test_writable_handle_across_fork(void **state)
{
	(void)state;
	struct spam_store *w = open_store("j", true, 1 << 20);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		const uint64_t toks[] = { 77 };
		_exit(w->ops->learn(w, 1, toks, 1, SPAM_LEARN_SPAM, NULL) == 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	totals_are(w, 1, 0);
	assert_int_equal(counts_of(w, 77).spam, 1);
	w->ops->close(w);
}

static void test_learn_a_spam_text(void **state)
{
	(void)state;
	struct spam_store *s = open_store("i", true, 1 << 20);
	static const char raw[] = "Subject: Win money\nMessage-ID: <x@y>\n\nWin big money now\n";
	struct mime_limits limits = { 20, 100, 65536, 1 << 20, false };
	struct scan_message m = { .env = &offline, .data = (const unsigned char *)raw,
				  .len = strlen(raw) };
	scan_message_parse(&m, &limits, 0);
	struct spam_text t;
	memset(&t, 0, sizeof(t));
	t.msg = &m;
	buf_puts(&t.body, "Win big money now\n");
	enum spam_learn_outcome o;
	assert_int_equal(spam_bayes_learn(s, &t, SPAM_LEARN_SPAM, &o), 0);
	assert_int_equal(o, SPAM_LEARN_DONE);
	assert_int_equal(spam_bayes_learn(s, &t, SPAM_LEARN_SPAM, &o), 0);
	assert_int_equal(o, SPAM_LEARN_ALREADY);
	totals_are(s, 1, 0);
	assert_int_equal(counts_of(s, spam_token_hash("S:", "money")).spam, 1);
	assert_int_equal(counts_of(s, spam_token_hash("", "money")).spam, 1);
	buf_free(&t.body);
	scan_message_free(&m);
	s->ops->close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_subject_and_body_words_differ),
		cmocka_unit_test(test_case_caps_and_unicode),
		cmocka_unit_test(test_long_words_numbers_punctuation),
		cmocka_unit_test(test_header_tokens),
		cmocka_unit_test(test_uri_tokens),
		cmocka_unit_test(test_deduplicated_and_bounded),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test(test_one_clue_is_its_own_probability),
		cmocka_unit_test(test_two_and_three_clues),
		cmocka_unit_test(test_weak_tokens_are_left_out),
		cmocka_unit_test(test_at_most_150_clues),
		cmocka_unit_test(test_too_little_learned),
		cmocka_unit_test(test_learn_twice_switch_forget),
		cmocka_unit_test(test_reopen_keeps_everything),
		cmocka_unit_test(test_reader_before_anything_is_learned),
		cmocka_unit_test(test_expiry_by_age),
		cmocka_unit_test(test_expiry_by_size),
		cmocka_unit_test(test_maintain_runs_when_due),
		cmocka_unit_test(test_map_grows),
		cmocka_unit_test(test_reader_never_sees_half_a_learning),
		cmocka_unit_test(test_two_handles_in_one_process),
		cmocka_unit_test(test_writable_handle_across_fork),
		cmocka_unit_test(test_learn_a_spam_text),
	};
	return cmocka_run_group_tests(tests, store_setup, store_teardown);
}
