/*
 * test_spam_gates.c - the spam rule engine's fast paths against its plain
 * one (every regex over its whole text, spam_rules_set_plain): the
 * Hyperscan gates of the literal-free regexes, the body rules narrowed to
 * the lines that hold their literals, a regex Hyperscan cannot take; the
 * same hits and scores on messages made to trip them up (tflags multiple
 * and maxhits, nosubject, caseless, anchors, matches that would cross a
 * line, lookaheads). Then the compiled-database cache: reused as it is,
 * rebuilt when it is damaged, truncated, made for other rules, writable
 * by others, a symbolic link, or holds a database Hyperscan refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "testutil.h"

#include "lib/buf.h"
#include "scan/spam.h"
#include "scan/spam_hs_cache.h"
#include "scan/spam_rules_impl.h"

static char tmpdir[64];
static unsigned serial;

/* ---- rules and messages ----------------------------------------------------- */

static struct spam_rules *load(const char *text, const char *cache)
{
	char *path = NULL;
	assert_true(asprintf(&path, "%s/rules%u.cf", tmpdir, ++serial) > 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	const char *paths[] = { path };
	struct spam_rules_source src = { paths, 1, NULL, cache, false };
	char *err = NULL;
	struct spam_rules *r = spam_rules_load(&src, NULL, &err);
	if (r == NULL)
		fail_msg("did not load: %s", err);
	free(path);
	return r;
}

struct msg {
	struct scan_header headers[4];
	struct scan_envelope env;
	strlist_t rcpts;
	struct scan_message m;
	struct spam_text t;
	buf_t data;
};

/* A message with this Subject and body (the body view: the Subject line,
 * then the paragraphs, one a line; rawbody the same). */
static void msg_make(struct msg *x, const char *subject, const char *body)
{
	memset(x, 0, sizeof(*x));
	x->env = (struct scan_envelope){ "QID", "a@example.org", &x->rcpts, "192.0.2.1", "h" };
	x->headers[0] = (struct scan_header){ 0, strdup("Subject"), strdup(subject),
					      strdup(subject) };
	x->m.env = &x->env;
	x->m.headers = x->headers;
	x->m.header_count = 1;
	x->t.msg = &x->m;
	buf_printf(&x->t.body, "%s\n%s", subject, body);
	buf_puts(&x->t.rawbody, body);
	buf_printf(&x->data, "Subject: %s\r\n\r\n%s", subject, body);
	x->m.data = (const unsigned char *)x->data.data;
	x->m.len = x->data.len;
}

static void msg_free(struct msg *x)
{
	free(x->headers[0].name);
	free(x->headers[0].raw);
	free(x->headers[0].decoded);
	buf_free(&x->t.body);
	buf_free(&x->t.rawbody);
	buf_free(&x->data);
}

/* "NAME=score ..." of a run, in the order of the hits. */
static char *run_text(struct spam_rules *r, struct msg *x, bool plain)
{
	spam_rules_set_plain(r, plain);
	struct spam_rules_context ctx = { &x->env, -1, SPAM_SET_LOCAL, 0 };
	struct spam_result res;
	spam_result_init(&res);
	spam_rules_run(r, &x->t, &ctx, &res);
	buf_t b = BUF_INIT;
	for (size_t i = 0; i < res.hit_count; i++)
		buf_printf(&b, "%s%s=%g", i ? " " : "", res.hits[i].name, res.hits[i].score);
	spam_result_free(&res);
	spam_rules_set_plain(r, false);
	return buf_steal(&b);
}

/* The fast and the plain run agree, and give want. */
static void agree(struct spam_rules *r, const char *subject, const char *body, const char *want)
{
	struct msg x;
	msg_make(&x, subject, body);
	char *fast = run_text(r, &x, false);
	char *plain = run_text(r, &x, true);
	if (strcmp(fast, plain) != 0)
		fail_msg("fast \"%s\" but plain \"%s\" on \"%s\"", fast, plain, body);
	if (want != NULL && strcmp(fast, want) != 0)
		fail_msg("hits \"%s\", wanted \"%s\"", fast, want);
	free(fast);
	free(plain);
	msg_free(&x);
}

static const struct spam_rule *rule(const struct spam_rules *r, const char *name)
{
	for (size_t i = 0; i < r->count; i++)
		if (strcmp(r->rules[i].name, name) == 0)
			return &r->rules[i];
	fail_msg("no rule %s", name);
	return NULL;
}

/* ---- the fast paths ------------------------------------------------------------ */

static const char rules_text[] =
	/* literal-free: gated */
	"body GATE_OBFU /v[_\\W]{0,3}i[_\\W]{0,3}a[_\\W]{0,3}g[_\\W]{0,3}r[_\\W]{0,3}a/i\n"
	"body GATE_START /^\\d{3}-\\d{4}\\b/\n"
	"body GATE_END /\\b[a-z]{2}\\d{2}$/\n"
	"body GATE_MULTI /[a-z]\\d[a-z]\\d/\n"
	"tflags GATE_MULTI multiple maxhits=3\n"
	"body GATE_NOSUBJ /[A-Z]{5,}/\n"
	"tflags GATE_NOSUBJ nosubject\n"
	"body GATE_CROSS /\\d\\s+\\d/\n"
	"rawbody GATE_RAW /\\s{8}[a-z]{3}/\n"
	"full GATE_FULL /^[A-Z][a-z]+: [A-Z]+ \\d+/m\n"
	/* an end of subject in a body regex: no gate */
	"body NOGATE_Z /\\d{4}\\z/\n"
	/* Hyperscan takes no end anchor inside: no gate either */
	"body NOGATE_HS /(?:$|\\W)opt\\W?out\\b/i\n"
	/* extended mode skips NEL (0x85) in PCRE2, not in Hyperscan: none */
	"body NOGATE_NEL /\\d\\s\x85\\d/x\n"
	/* literals: narrowed to their lines */
	"body LIT_MULTI /credit\\s+card/i\n"
	"tflags LIT_MULTI multiple\n"
	"body LIT_MAX /buy now/i\n"
	"tflags LIT_MAX multiple maxhits=2\n"
	"body LIT_ANCHOR /^click here\\b/i\n"
	"body LIT_SPAN /win\\s+prize/\n"
	"body LIT_SUBJ /special offer/i\n"
	"tflags LIT_SUBJ nosubject\n"
	/* a lookahead that stays within its line: narrowed too */
	"body LIT_LOOK_LINE /bonus(?! ends\\b)/\n"
	/* literals, but a lookahead that may not, or \\K: the whole body */
	"body LIT_LOOK /free(?!\\s+trial)/\n"
	"body LIT_K /order\\s*\\Know/\n";

static void test_fast_paths_agree(void **state)
{
	(void)state;
	struct spam_rules *r = load(rules_text, NULL);
	assert_non_null(rule(r, "GATE_OBFU")->gate);
	assert_non_null(rule(r, "GATE_MULTI")->gate);
	assert_non_null(rule(r, "GATE_RAW")->gate);
	assert_non_null(rule(r, "GATE_FULL")->gate);
	assert_null(rule(r, "NOGATE_Z")->gate);
	assert_null(rule(r, "NOGATE_HS")->gate);
	assert_null(rule(r, "NOGATE_NEL")->gate);
	assert_null(rule(r, "LIT_MULTI")->gate);
	assert_true(rule(r, "LIT_MULTI")->narrow);
	assert_true(rule(r, "LIT_ANCHOR")->narrow);
	assert_true(rule(r, "LIT_LOOK_LINE")->narrow);
	assert_false(rule(r, "LIT_LOOK")->narrow);
	assert_false(rule(r, "LIT_K")->narrow);

	/* nothing */
	agree(r, "hello", "Just a note about lunch.\nSee you there.\n", "");
	/* the gated ones, each where PCRE2 says */
	agree(r, "VIAGRA 42",
	      "Cheap V-I-A-G-R-A here\n555-1234 is the number\nends in ab12\n"
	      "codes a1b2 c3d4 e5f6 g7h8\nWORDS in CAPITALS\n",
	      "GATE_END=1 GATE_FULL=1 GATE_MULTI=3 GATE_NOSUBJ=1 GATE_OBFU=1 GATE_START=1");
	/* caps only in the Subject: nosubject keeps GATE_NOSUBJ quiet */
	agree(r, "LOUDER", "quiet text\n", "");
	/* digits either side of a line break: PCRE2 reads a line at a time */
	agree(r, "s", "year 2\n3 days\n", "");
	agree(r, "s", "year 2   3 days\n", "GATE_CROSS=1");
	/* an end of subject in the middle of the body is not one */
	agree(r, "s", "code 1234\nmore\n", "");
	agree(r, "s", "more\ncode 1234", "NOGATE_Z=1");
	agree(r, "s", "please opt-out\n", "NOGATE_HS=1");
	agree(r, "s", "room 1 2\n", "GATE_CROSS=1 NOGATE_NEL=1");
	agree(r, "s", "raw        abc\n", "GATE_RAW=1");
	/* literals: every line that holds one, each match counted */
	agree(r, "s",
	      "Our credit card offer.\nnothing here\nCREDIT  card, credit\tcard!\n"
	      "buy now buy now BUY NOW\n",
	      "GATE_NOSUBJ=1 LIT_MAX=2 LIT_MULTI=3");
	agree(r, "s", "well, click here\nClick here to win\n", "LIT_ANCHOR=1");
	/* a match would cross a line: none */
	agree(r, "s", "you win\nprize money\n", "");
	agree(r, "s", "you win  prize money\n", "LIT_SPAN=1");
	/* the literal in the Subject only: nosubject */
	agree(r, "Special offer", "nothing\n", "");
	agree(r, "s", "a special offer\n", "LIT_SUBJ=1");
	/* a lookahead at a line's end sees the next line (PCRE2 reads the
	 * body whole, and looks again within a line only after a match that
	 * crossed one), and so does a match that \K starts on the next line */
	agree(r, "s", "free trial\nfree\n trial\n", "");
	agree(r, "s", "free stuff\n", "LIT_LOOK=1");
	agree(r, "s", "bonus ends\nbonus\n ends\n", "LIT_LOOK_LINE=1");
	agree(r, "s", "bonus ends\n", "");
	agree(r, "s", "order\nnow\n", "LIT_K=1");
	spam_rules_free(&r);
}

/* Many lines, many literals: the narrowing's bookkeeping grows, and a
 * body past SPAM_NARROW_MAX occurrences falls back to the whole body. */
static void test_many_lines(void **state)
{
	(void)state;
	struct spam_rules *r = load("body LIT_MULTI /credit\\s+card/i\ntflags LIT_MULTI multiple\n"
				    "body ONE /zebra crossing/\n", NULL);
	buf_t body = BUF_INIT;
	for (int i = 0; i < 5000; i++)
		buf_puts(&body, i % 7 == 0 ? "credit card\n" : "credit is due\n");
	buf_puts(&body, "a zebra crossing\n");
	agree(r, "s", buf_cstr(&body), "LIT_MULTI=715 ONE=1");
	buf_reset(&body);
	for (int i = 0; i < SPAM_NARROW_MAX + 10; i++)
		buf_puts(&body, "credit\n");
	buf_puts(&body, "credit card\n");
	agree(r, "s", buf_cstr(&body), "LIT_MULTI=1");
	buf_free(&body);
	spam_rules_free(&r);
}

/* The databases compiled in a child process (as a large rule set's are),
 * handed back serialized: the same gates, the same results. */
static void test_compiled_in_a_child(void **state)
{
	(void)state;
	spam_hs_test_child(true);
	struct spam_rules *r = load(rules_text, NULL);
	spam_hs_test_child(false);
	assert_non_null(rule(r, "GATE_OBFU")->gate);
	assert_non_null(rule(r, "GATE_RAW")->gate);
	assert_null(rule(r, "NOGATE_HS")->gate);
	assert_non_null(r->views[SPAM_VIEW_BODY].db);
	agree(r, "VIAGRA 42",
	      "Cheap V-I-A-G-R-A here\n555-1234 is the number\nends in ab12\n"
	      "codes a1b2 c3d4 e5f6 g7h8\nWORDS in CAPITALS\n",
	      "GATE_END=1 GATE_FULL=1 GATE_MULTI=3 GATE_NOSUBJ=1 GATE_OBFU=1 GATE_START=1");
	agree(r, "s", "Our credit card offer.\nCREDIT  card\n", "GATE_NOSUBJ=1 LIT_MULTI=2");
	spam_rules_free(&r);
}

/* ---- the cache ------------------------------------------------------------------- */

static ino_t inode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static char *cache_path(void)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/cache%u", tmpdir, ++serial) > 0);
	return p;
}

/* Load rules_text with the cache, and check the result. */
static ino_t load_checked(const char *cache)
{
	struct spam_rules *r = load(rules_text, cache);
	assert_non_null(rule(r, "GATE_OBFU")->gate);
	agree(r, "s", "v.i.a.g.r.a and credit card\n", "GATE_OBFU=1 LIT_MULTI=1");
	spam_rules_free(&r);
	return inode_of(cache);
}

static void read_all(const char *path, buf_t *b)
{
	buf_reset(b);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(b, chunk, n);
	fclose(f);
}

static void write_all(const char *path, const buf_t *b)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
	fclose(f);
	chmod(path, 0600);
}

static void test_cache_reused(void **state)
{
	(void)state;
	char *cache = cache_path();
	ino_t first = load_checked(cache);
	/* the same rules again: read, not written again */
	assert_true(load_checked(cache) == first);
	char *why = NULL;
	struct spam_hs_cache *c = spam_hs_cache_load(cache, &why);
	assert_null(why);
	/* the gates (GATE_CROSS among them) and the literal databases */
	assert_true(spam_hs_cache_entries(c) >= 8);
	spam_hs_cache_free(&c);
	free(cache);
}

static void test_cache_damaged_or_truncated(void **state)
{
	(void)state;
	char *cache = cache_path();
	load_checked(cache);
	buf_t b = BUF_INIT;
	read_all(cache, &b);
	/* one byte changed in the middle: the checksum fails, rebuilt */
	b.data[b.len / 2] ^= 0x40;
	write_all(cache, &b);
	char *why = NULL;
	struct spam_hs_cache *c = spam_hs_cache_load(cache, &why);
	assert_non_null(why);
	assert_non_null(strstr(why, "checksum"));
	free(why);
	spam_hs_cache_free(&c);
	ino_t damaged = inode_of(cache);
	ino_t rebuilt = load_checked(cache);
	assert_true(rebuilt != damaged);
	assert_true(load_checked(cache) == rebuilt);
	/* cut short */
	read_all(cache, &b);
	b.len = b.len * 2 / 3;
	write_all(cache, &b);
	ino_t cut = inode_of(cache);
	assert_true(load_checked(cache) != cut);
	/* empty, and not a cache at all */
	b.len = 0;
	write_all(cache, &b);
	cut = inode_of(cache);
	assert_true(load_checked(cache) != cut);
	buf_free(&b);
	free(cache);
}

static void test_cache_of_other_rules(void **state)
{
	(void)state;
	char *cache = cache_path();
	struct spam_rules *r = load("body OTHER_A /x[_\\W]{0,2}y[_\\W]{0,2}z/\n"
				    "body OTHER_B /q\\d{3}q/\n", cache);
	spam_rules_free(&r);
	char *why = NULL;
	struct spam_hs_cache *c = spam_hs_cache_load(cache, &why);
	size_t other = spam_hs_cache_entries(c);
	spam_hs_cache_free(&c);
	assert_int_equal(other, 2);  /* two gates, no literal database */
	/* a gate's entry: its flags, then its expression */
	uint8_t flags[4] = { HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH | HS_FLAG_MULTILINE, 0, 0, 0 };
	buf_t key = BUF_INIT;
	buf_append(&key, flags, sizeof(flags));
	buf_puts(&key, "q\\d{3}q");
	c = spam_hs_cache_load(cache, &why);
	hs_database_t *db = NULL;
	uint64_t info;
	assert_int_equal(spam_hs_cache_get(c, SPAM_HS_KIND_GATE, key.data, key.len, &db, &info),
			 SPAM_HS_COMPILED);
	assert_non_null(db);
	hs_free_database(db);
	spam_hs_cache_free(&c);
	/* another rule set: its databases compiled and kept, the others' gone */
	load_checked(cache);
	c = spam_hs_cache_load(cache, &why);
	assert_null(why);
	assert_int_equal(spam_hs_cache_get(c, SPAM_HS_KIND_GATE, key.data, key.len, &db, &info),
			 SPAM_HS_MISS);
	buf_free(&key);
	assert_true(spam_hs_cache_entries(c) > other);
	spam_hs_cache_free(&c);
	free(cache);
}

static void test_cache_not_ours(void **state)
{
	(void)state;
	char *cache = cache_path();
	ino_t first = load_checked(cache);
	/* writable by others: not trusted, replaced by a file of mode 0600 */
	assert_int_equal(chmod(cache, 0666), 0);
	ino_t replaced = load_checked(cache);
	assert_true(replaced != first);
	struct stat st;
	assert_int_equal(stat(cache, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* a symbolic link (to a good cache): not followed, replaced */
	char *target = NULL;
	assert_true(asprintf(&target, "%s.target", cache) > 0);
	assert_int_equal(rename(cache, target), 0);
	assert_int_equal(symlink(target, cache), 0);
	load_checked(cache);
	assert_int_equal(lstat(cache, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	free(target);
	free(cache);
}

/* Change a byte of the first database of this kind (1 gate, 2 literals)
 * well inside it, and make the file's checksum match. */
static void spoil_database(buf_t *b, uint32_t kind)
{
	size_t pos = 32;
	while (pos + 24 <= b->len) {
		const unsigned char *p = (const unsigned char *)b->data + pos;
		uint32_t k = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
		uint32_t klen = p[8] | p[9] << 8 | p[10] << 16 | (uint32_t)p[11] << 24;
		uint32_t dlen = p[12] | p[13] << 8 | p[14] << 16 | (uint32_t)p[15] << 24;
		if (k == kind && dlen > 200) {
			b->data[pos + 24 + klen + dlen - 100] ^= 0x5a;
			uint64_t sum = XXH64(b->data + 32, b->len - 32, 0);
			for (int i = 0; i < 8; i++)
				b->data[24 + i] = (char)(sum >> (8 * i));
			return;
		}
		pos += 24 + klen + dlen;
	}
	fail_msg("no database of kind %u", kind);
}

/* A database whose bytes were changed and the file's checksum made to
 * match: Hyperscan's own check (hs_deserialize_database) refuses it, it
 * is compiled again and the file rewritten; a gate's and a literal
 * database's alike. */
static void test_cache_database_refused(void **state)
{
	(void)state;
	char *cache = cache_path();
	load_checked(cache);
	buf_t b = BUF_INIT;
	for (uint32_t kind = SPAM_HS_KIND_GATE; kind <= SPAM_HS_KIND_LITERALS; kind++) {
		read_all(cache, &b);
		spoil_database(&b, kind);
		write_all(cache, &b);
		char *why = NULL;
		struct spam_hs_cache *c = spam_hs_cache_load(cache, &why);
		assert_null(why);  /* the file as such is sound */
		spam_hs_cache_free(&c);
		ino_t before = inode_of(cache);
		ino_t after = load_checked(cache);  /* every gate there, the same hits */
		assert_true(after != before);
		assert_true(load_checked(cache) == after);  /* and sound again */
	}
	buf_free(&b);
	free(cache);
}

/* ---- running the tests ------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/postern-spamgates-XXXXXX");
	spam_gates_test_all(true);  /* whatever the timing says */
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return testutil_rmtree(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fast_paths_agree),
		cmocka_unit_test(test_many_lines),
		cmocka_unit_test(test_compiled_in_a_child),
		cmocka_unit_test(test_cache_reused),
		cmocka_unit_test(test_cache_damaged_or_truncated),
		cmocka_unit_test(test_cache_of_other_rules),
		cmocka_unit_test(test_cache_not_ours),
		cmocka_unit_test(test_cache_database_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
