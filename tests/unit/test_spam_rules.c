/*
 * test_spam_rules.c - the SpamAssassin-syntax rule engine (src/scan/
 * spam_rules*.c, spam_eval.c): every rule kind and header modifier, meta
 * arithmetic, tflags, score sets, if/ifplugin/include, FILE:LINE errors
 * of strict files and the summary of lenient ones, the literal
 * prefilter, the time budget against a pathological regex, and the real
 * SpamAssassin rules of the Debian package. Messages are struct
 * spam_text filled by hand (spam_text_build is not used here); the rule
 * files are written by these tests into a private folder.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "scan/spam.h"
#include "scan/spam_rules_impl.h"

static char tmpdir[64];
static unsigned file_serial;

/* ---- rule files ------------------------------------------------------------ */

/* Write text to tmpdir/name; the path, malloc'ed. */
static char *write_file(const char *name, const char *text)
{
	char *path = NULL;
	assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static char *new_file(const char *text)
{
	char name[32];
	snprintf(name, sizeof(name), "rules%u.cf", ++file_serial);
	return write_file(name, text);
}

/* Load one path; lenient or strict. Warnings are captured if asked. */
static struct spam_rules *load_path(const char *path, bool lenient, char **warnings_r,
				    char **err_r)
{
	const char *paths[] = { path };
	bool len[] = { lenient };
	struct spam_rules_source src = { paths, 1, len, NULL, false };
	char *out = NULL;
	size_t outlen = 0;
	FILE *w = open_memstream(&out, &outlen);
	struct spam_rules *r = spam_rules_load(&src, w, err_r);
	fclose(w);
	if (warnings_r != NULL)
		*warnings_r = out;
	else
		free(out);
	return r;
}

/* Rules that must load (strict). */
static struct spam_rules *rules_ok(const char *text)
{
	char *path = new_file(text);
	char *err = NULL;
	struct spam_rules *r = load_path(path, false, NULL, &err);
	if (r == NULL)
		fail_msg("did not load: %s", err);
	free(path);
	return r;
}

static void spam_rules_free_ok(const char *text)
{
	struct spam_rules *r = rules_ok(text);
	spam_rules_free(&r);
}

/* Rules that must not load (strict): the error with the folder cut off. */
static char *rules_error(const char *text)
{
	char *path = new_file(text);
	char *err = NULL;
	struct spam_rules *r = load_path(path, false, NULL, &err);
	if (r != NULL) {
		spam_rules_free(&r);
		fail_msg("loaded: %s", text);
	}
	assert_non_null(err);
	/* "/tmp/.../rulesN.cf:LINE: ..." -> "rules.cf:LINE: ..." */
	size_t skip = strlen(tmpdir) + 1;
	const char *e = strncmp(err, tmpdir, skip - 1) == 0 ? err + skip : err;
	const char *base = strrchr(path, '/') + 1;
	char *out = NULL;
	if (strncmp(e, base, strlen(base)) == 0)
		assert_true(asprintf(&out, "rules.cf%s", e + strlen(base)) > 0);
	else
		out = strdup(e);
	free(path);
	free(err);
	return out;
}

#define assert_error(text, expected)                                            \
	do {                                                                    \
		char *e_ = rules_error(text);                                   \
		if (strcmp(e_, (expected)) != 0)                                \
			fail_msg("error \"%s\", wanted \"%s\"", e_, (expected)); \
		free(e_);                                                       \
	} while (0)

/* ---- messages ------------------------------------------------------------- */

struct msg {
	struct scan_header headers[32];
	size_t nh;
	struct scan_part parts[4];
	size_t np;
	struct scan_envelope env;
	strlist_t rcpts;
	struct scan_message m;
	struct spam_text t;
	buf_t data;
};

static void msg_init(struct msg *x)
{
	memset(x, 0, sizeof(*x));
	x->env.queue_id = "QID";
	x->env.sender = "bounce@sender.example";
	x->env.rcpts = &x->rcpts;
	x->env.client_addr = "192.0.2.9";
	x->env.helo = "mx.sender.example";
	x->m.env = &x->env;
	x->t.msg = &x->m;
}

static void msg_header_part(struct msg *x, unsigned part, const char *name, const char *raw,
			    const char *decoded)
{
	assert_true(x->nh < ARRAY_LEN(x->headers));
	struct scan_header *h = &x->headers[x->nh++];
	h->part = part;
	h->name = strdup(name);
	h->raw = strdup(raw);
	h->decoded = strdup(decoded != NULL ? decoded : raw);
}

static void msg_header(struct msg *x, const char *name, const char *value)
{
	msg_header_part(x, 0, name, value, NULL);
}

/* The rendered body (a paragraph a line) and the raw one. */
static void msg_body(struct msg *x, const char *body)
{
	buf_puts(&x->t.body, body);
	buf_puts(&x->t.rawbody, body);
}

static void msg_uri(struct msg *x, const char *uri, const char *host, const char *anchor)
{
	x->t.uris = realloc(x->t.uris, (x->t.uri_count + 1) * sizeof(*x->t.uris));
	struct spam_uri *u = &x->t.uris[x->t.uri_count++];
	u->uri = strdup(uri);
	u->host = host ? strdup(host) : NULL;
	u->anchor_text = anchor ? strdup(anchor) : NULL;
	u->from_html = anchor != NULL;
}

/* The message's bytes from its header fields and raw body; call last. */
static void msg_finish(struct msg *x)
{
	for (size_t i = 0; i < x->nh; i++)
		if (x->headers[i].part == 0)
			buf_printf(&x->data, "%s: %s\r\n", x->headers[i].name, x->headers[i].raw);
	buf_puts(&x->data, "\r\n");
	buf_append(&x->data, x->t.rawbody.data, x->t.rawbody.len);
	x->m.data = (const unsigned char *)buf_cstr(&x->data);
	x->m.len = x->data.len;
	x->m.headers = x->headers;
	x->m.header_count = x->nh;
	x->m.parts = x->parts;
	x->m.part_count = x->np;
}

static void msg_free(struct msg *x)
{
	for (size_t i = 0; i < x->nh; i++) {
		free(x->headers[i].name);
		free(x->headers[i].raw);
		free(x->headers[i].decoded);
	}
	for (size_t i = 0; i < x->t.uri_count; i++) {
		free(x->t.uris[i].uri);
		free(x->t.uris[i].host);
		free(x->t.uris[i].anchor_text);
	}
	free(x->t.uris);
	buf_free(&x->t.body);
	buf_free(&x->t.rawbody);
	buf_free(&x->data);
	strlist_free(&x->rcpts);
}

/* A plain message: From, To, Subject, Date, Message-ID and a body. */
static void msg_plain(struct msg *x, const char *subject, const char *body)
{
	msg_init(x);
	msg_header(x, "From", "\"Alice Example\" <alice@example.org>");
	msg_header(x, "To", "bob@example.net");
	msg_header(x, "Subject", subject);
	msg_header(x, "Date", "Mon, 2 Jun 2025 10:00:00 +0000");
	msg_header(x, "Message-ID", "<1234.abcd@example.org>");
	if (subject != NULL) {
		buf_puts(&x->t.body, subject);
		buf_putc(&x->t.body, '\n');
	}
	msg_body(x, body);
	msg_finish(x);
}

static void run_set(const struct spam_rules *r, struct msg *x, enum spam_score_set set,
		    double bayes, struct spam_result *res)
{
	struct spam_rules_context ctx = { &x->env, bayes, set, 0 };
	spam_result_init(res);
	spam_rules_run(r, &x->t, &ctx, res);
}

static void run(const struct spam_rules *r, struct msg *x, struct spam_result *res)
{
	run_set(r, x, SPAM_SET_LOCAL, -1, res);
}

static const struct spam_hit *find_hit(const struct spam_result *res, const char *name)
{
	for (size_t i = 0; i < res->hit_count; i++)
		if (strcmp(res->hits[i].name, name) == 0)
			return &res->hits[i];
	return NULL;
}

static bool hit(const struct spam_result *res, const char *name)
{
	return find_hit(res, name) != NULL;
}

/* The names hit, "A,B,C" (as X-Spam-Status lists them). */
static char *hit_list(const struct spam_result *res)
{
	buf_t b = BUF_INIT;
	for (size_t i = 0; i < res->hit_count; i++)
		buf_printf(&b, "%s%s", i ? "," : "", res->hits[i].name);
	return buf_steal(&b);
}

#define assert_hits(res, expected)                                              \
	do {                                                                    \
		char *l_ = hit_list(res);                                       \
		if (strcmp(l_, (expected)) != 0)                                \
			fail_msg("hits \"%s\", wanted \"%s\"", l_, (expected)); \
		free(l_);                                                       \
	} while (0)

/* Rules (strict) over a plain message: the hits. */
static void check_plain(const char *rules_text, const char *subject, const char *body,
			const char *expected)
{
	struct spam_rules *r = rules_ok(rules_text);
	struct msg x;
	msg_plain(&x, subject, body);
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, expected);
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

/* ---- rule kinds -------------------------------------------------------------- */

static void test_header_rules(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"# header rules, with comments\n"
		"header SUBJ_FREE     Subject =~ /\\bfree\\b/i\n"
		"header SUBJ_NOT_HI   Subject !~ /^hello/\n"
		"header FROM_ORG      From =~ /example\\.org/\n"
		"header TO_NET        To =~ /\\.net$/\n"
		"header CASE_INSENS   subject =~ /offer/\n"
		"header NO_SUCH       X-Nothing =~ /./\n"
		"header NO_SUCH_NEG   X-Nothing !~ /./\n"
		"header UNSET_TEXT    X-Nothing =~ /^missing$/ [if-unset: missing]\n"
		"header HAS_DATE      exists:Date\n"
		"header HAS_NOTHING   exists:X-Nothing\n"
		"header HASH_IN_RE    Message-ID =~ /\\#?1234/   # a comment after\n"
		"header DELIMS        Subject =~ m{Free\\s+(?:offer|deal)}\n"
		"header DELIMS2       Subject =~ m!offer!i\n"
		"header EXTENDED      Subject =~ /Free \\s+ offer/x\n");
	struct msg x;
	msg_plain(&x, "Free offer", "nothing\n");
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "CASE_INSENS,DELIMS,DELIMS2,EXTENDED,FROM_ORG,HASH_IN_RE,HAS_DATE,"
			  "NO_SUCH_NEG,SUBJ_FREE,SUBJ_NOT_HI,TO_NET,UNSET_TEXT");
	assert_true(res.score > 11.9 && res.score < 12.1);  /* default score 1 each */
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_header_modifiers(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"header FROM_ADDR      From:addr =~ /^alice\\@example\\.org$/\n"
		"header FROM_NAME      From:name =~ /^Alice Example$/\n"
		"header SUBJ_RAW       Subject:raw =~ /=\\?utf-8\\?/\n"
		"header SUBJ_DECODED   Subject =~ /Gr\\xc3\\xbc\\xc3\\x9fe/\n"
		"header SUBJ_RAW_NOT   Subject:raw =~ /Gr\\xc3\\xbc/\n"
		"header ALL_HAS        ALL =~ /^X-Mailer: Bulk/m\n"
		"header ALL_RAW        ALL:raw =~ /^Subject: =\\?utf-8/m\n"
		"header TOCC           ToCc =~ /bob\\@example\\.net\\nfriends: carol/\n"
		"header MSGIDS         MESSAGEID =~ /resent-id/\n"
		"header ENVFROM        EnvelopeFrom =~ /^bounce\\@sender/\n"
		"header TWO_RCVD       Received =~ /hop1.*\\n.*hop2/\n"
		"header REPLY_ADDR     Reply-To:addr =~ /^x\\@y\\.example$/\n"
		"header COMMENT_NAME   Sender:name =~ /^Someone$/\n"
		"header GROUP_ADDR     Cc:addr =~ /^carol\\@example\\.com$/\n");
	struct msg x;
	msg_init(&x);
	msg_header(&x, "Received", "from hop1 by relay");
	msg_header(&x, "Received", "from hop2 by relay");
	msg_header(&x, "From", "\"Alice Example\" <alice@example.org>");
	msg_header(&x, "To", "bob@example.net");
	msg_header(&x, "Cc", "friends: carol@example.com (Carol), dave@example.com;");
	msg_header_part(&x, 0, "Subject", "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Gr\xc3\xbc\xc3\x9f" "e");
	msg_header(&x, "Resent-Message-Id", "<resent-id@example.org>");
	msg_header(&x, "X-Mailer", "Bulk Sender 3");
	msg_header(&x, "Reply-To", "'Why' <x@y.example>, z@y.example");
	msg_header(&x, "Sender", "someone@example.org (Someone)");
	msg_body(&x, "hello\n");
	msg_finish(&x);
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "ALL_HAS,ALL_RAW,COMMENT_NAME,ENVFROM,FROM_ADDR,FROM_NAME,GROUP_ADDR,"
			  "MSGIDS,REPLY_ADDR,SUBJ_DECODED,SUBJ_RAW,TOCC,TWO_RCVD");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_address_helpers(void **state)
{
	(void)state;
	static const struct {
		const char *value, *addr, *name;
	} cases[] = {
		{ "example@foo", "example@foo", "" },
		{ "example@foo (Foo Blah)", "example@foo", "Foo Blah" },
		{ "example@foo, example@bar", "example@foo", "" },
		{ "display: example@foo (Foo Blah), example@bar ;", "example@foo", "Foo Blah" },
		{ "Foo Blah <example@foo>", "example@foo", "Foo Blah" },
		{ "\"Foo Blah\" <example@foo>", "example@foo", "Foo Blah" },
		{ "\"'Foo Blah'\" <example@foo>", "example@foo", "Foo Blah" },
		{ "\"a, b\" <x@y>, c@d", "x@y", "a, b" },
		{ "", "", "" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		buf_t a = BUF_INIT, n = BUF_INIT;
		spam_header_addr(cases[i].value, &a);
		spam_header_display_name(cases[i].value, &n);
		assert_string_equal(buf_cstr(&a), cases[i].addr);
		assert_string_equal(buf_cstr(&n), cases[i].name);
		buf_free(&a);
		buf_free(&n);
	}
}

static void test_mimeheader(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"mimeheader PART_EXE    Content-Type =~ /name=\"?[^\"]+\\.exe/i\n"
		"mimeheader PART_RAW    Content-Type:raw =~ /application/\n"
		"mimeheader NOT_OWN     Subject =~ /./\n");
	struct msg x;
	msg_init(&x);
	msg_header(&x, "Subject", "see attached");
	msg_header(&x, "Content-Type", "multipart/mixed; boundary=b");
	msg_header_part(&x, 1, "Content-Type", "text/plain", NULL);
	msg_header_part(&x, 2, "Content-Type", "application/octet-stream; name=\"Invoice.EXE\"", NULL);
	msg_body(&x, "see attached\n");
	msg_finish(&x);
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "PART_EXE,PART_RAW");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_body_rules(void **state)
{
	(void)state;
	/* body: a paragraph a line, Subject first; a match may not cross lines */
	check_plain("body IN_SUBJECT   /cheap pills/\n"
		    "body NO_SUBJECT   /cheap pills/\n"
		    "tflags NO_SUBJECT nosubject\n"
		    "body ACROSS       /first\\s+second/\n"
		    "body WITHIN       /second\\s+third/\n"
		    "body ANCHORED     /^third line$/\n"
		    "body DOTALL_NO    /paragraph.second/s\n"
		    "body GTUBE_TEST   /GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL/\n",
		    "cheap pills",
		    "the first\nsecond third\nthird line\n"
		    "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n",
		    "ANCHORED,GTUBE_TEST,IN_SUBJECT,WITHIN");
	/* a crossing match does not hide a later one in the same line */
	check_plain("body LATER /a\\s*b/\n", "s", "xa\nyyy a b\n", "LATER");
	check_plain("body LATER_SAME_LINE /a\\W*b/\n", "s", "a a\nb c a b\n", "LATER_SAME_LINE");
}

static void test_rawbody_uri_full(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"rawbody RAW_TAG      /<font\\s+color=\"?\\#fff/i\n"
		"rawbody RAW_MULTI    /^line one\\nline two$/m\n"
		"uri     URI_IP       m{^https?://\\d+\\.\\d+\\.\\d+\\.\\d+/}\n"
		"uri     URI_SHORT    /^https?:\\/\\/(?:bit\\.ly|tinyurl\\.com)\\//i\n"
		"uri     URI_NONE     /nothing-here/\n"
		"full    FULL_HDRBODY /^Subject: Hi\\r?$.*^line one/ms\n"
		"full    FULL_CRLF    /\\r\\n\\r\\n/\n");
	struct msg x;
	msg_init(&x);
	msg_header(&x, "Subject", "Hi");
	buf_puts(&x.t.body, "Hi\nline one line two\n");
	buf_puts(&x.t.rawbody, "line one\nline two\n<FONT color=\"#ffffff\">x</font>\n");
	msg_uri(&x, "http://192.0.2.1/login", "192.0.2.1", NULL);
	msg_uri(&x, "https://BIT.LY/abc", "bit.ly", NULL);
	msg_finish(&x);
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "FULL_CRLF,FULL_HDRBODY,RAW_MULTI,RAW_TAG,URI_IP,URI_SHORT");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

/* ---- meta --------------------------------------------------------------------- */

static void test_meta(void **state)
{
	(void)state;
	check_plain("body __A /alpha/\n"
		    "body __B /beta/\n"
		    "body __C /gamma/\n"
		    "body __D /delta/\n"
		    "meta BOOL_AND      __A && __B\n"
		    "meta BOOL_OR       __C || __A\n"
		    "meta BOOL_NOT      !__C && (__A || __C)\n"
		    "meta NOT_ALL       !(__A && __B)\n"
		    "meta ARITH         (__A + __B + __C + __D) >= 2\n"
		    "meta ARITH_NO      (__A + __B + __C + __D) > 2\n"
		    "meta WEIGHTED      3 * __A - 2 * __B > 0\n"
		    "meta WEIGHTED_NO   2 * __A - 2 * __B > 0\n"
		    "meta EQUAL         __A + __B == 2\n"
		    "meta DIVIDE        (__A + __B) / 2 == 1\n"
		    "meta DIV_ZERO      __A / __C\n"
		    "meta UNKNOWN       __A && !__NEVER_DEFINED\n"
		    "meta UNKNOWN_NO    __NEVER_DEFINED\n"
		    "meta GLOB          rules_matching(__?) >= 2\n"
		    "meta META_OF_META  LATER_META && BOOL_AND\n"
		    "meta LATER_META    __A\n"
		    "meta NEG           -__A < 0\n"
		    "meta PRECEDENCE    __C || __A && __B\n",
		    "subject", "alpha beta\n",
		    "ARITH,BOOL_AND,BOOL_NOT,BOOL_OR,DIVIDE,EQUAL,GLOB,LATER_META,META_OF_META,"
		    "NEG,PRECEDENCE,UNKNOWN,WEIGHTED");
}

static void test_meta_counts_multiple(void **state)
{
	(void)state;
	/* a multiple rule's value is its match count, bounded by maxhits */
	check_plain("body __WORD /\\bbuy\\b/i\n"
		    "tflags __WORD multiple maxhits=3\n"
		    "meta THREE_OR_MORE __WORD >= 3\n"
		    "meta FOUR_OR_MORE  __WORD >= 4\n"
		    "body __ONCE /\\bbuy\\b/i\n"
		    "meta ONCE_IS_ONE   __ONCE == 1\n",
		    "buy", "buy buy now\nbuy and buy\n",
		    "ONCE_IS_ONE,THREE_OR_MORE");
	/* Perl's && and || give the deciding value */
	check_plain("body __W /w/\ntflags __W multiple\n"
		    "meta OR_VALUE (__W || 0) == 5\n"
		    "meta AND_VALUE (1 && __W) == 5\n",
		    "s", "w w w w w\n", "AND_VALUE,OR_VALUE");
}

static void test_meta_errors(void **state)
{
	(void)state;
	assert_error("meta A B && C\nmeta B A\nmeta C 1\n",
		     "rules.cf:1: A: the meta rule depends on itself (through other metas)");
	assert_error("body X /x/\nmeta M X &&\n", "rules.cf:2: M: the expression ends too early");
	assert_error("meta M (X\n", "rules.cf:1: M: \")\" expected at \"\"");
	assert_error("meta M X & Y\n", "rules.cf:1: M: unexpected \"& Y\"");
	assert_error("meta M abs(X)\n",
		     "rules.cf:1: M: unknown function \"abs\" (meta knows rules_matching())");
	assert_error("meta M SELF || X\nmeta SELF M\n",
		     "rules.cf:1: M: the meta rule depends on itself (through other metas)");
	assert_error("meta M\n", "rules.cf:1: M: empty meta expression");
	/* a bound on nesting and length */
	buf_t deep = BUF_INIT;
	buf_puts(&deep, "meta DEEP ");
	for (int i = 0; i < 100; i++)
		buf_putc(&deep, '(');
	buf_puts(&deep, "1");
	for (int i = 0; i < 100; i++)
		buf_putc(&deep, ')');
	buf_putc(&deep, '\n');
	char *e = rules_error(buf_cstr(&deep));
	assert_non_null(strstr(e, "nested more than 64 deep"));
	free(e);
	buf_free(&deep);
	/* 60 levels (30 negations of parenthesised terms) are fine */
	buf_puts(&deep, "body __X /x/\nmeta DEEP ");
	for (int i = 0; i < 30; i++)
		buf_puts(&deep, "!(");
	buf_puts(&deep, "__X");
	for (int i = 0; i < 30; i++)
		buf_putc(&deep, ')');
	buf_putc(&deep, '\n');
	spam_rules_free_ok(buf_cstr(&deep));
	buf_free(&deep);
	buf_t lng = BUF_INIT;
	buf_puts(&lng, "body __X /x/\nmeta LONG __X");
	for (int i = 0; i < 3000; i++)
		buf_puts(&lng, " + __X");
	buf_putc(&lng, '\n');
	e = rules_error(buf_cstr(&lng));
	assert_non_null(strstr(e, "more than 4096 tokens"));
	free(e);
	buf_free(&lng);
}

/* ---- scores and tflags -------------------------------------------------------- */

static void test_scores(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"body ONE      /alpha/\n"
		"score ONE     2.5\n"
		"body FOUR     /alpha/\n"
		"score FOUR    1 2 3 4\n"
		"body DEFAULT  /alpha/\n"
		"body T_TRY    /alpha/\n"
		"body NICE     /alpha/\n"
		"tflags NICE   nice\n"
		"body OFF      /alpha/\n"
		"score OFF     0\n"
		"body __SUB    /alpha/\n"
		"meta SEES_OFF OFF || __SUB\n"
		"meta ONLY_OFF OFF\n"
		"score LATER   0.7\n"
		"body LATER    /alpha/\n"
		"describe LATER  A rule scored before it is defined\n"
		"body RELATIVE /alpha/\n"
		"score RELATIVE 1\n"
		"score RELATIVE (0.5)\n"
		"body BAYES_ONLY /alpha/\n"
		"score BAYES_ONLY 0 0 1.5 1.5\n"
		"body REDEFINED /nomatch/\n"
		"body REDEFINED /alpha/\n"
		"score REDEFINED -1\n");
	struct msg x;
	msg_plain(&x, "s", "alpha\n");
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "DEFAULT,FOUR,LATER,NICE,ONE,REDEFINED,RELATIVE,SEES_OFF,T_TRY");
	assert_true(fabs(find_hit(&res, "ONE")->score - 2.5) < 1e-9);
	assert_true(fabs(find_hit(&res, "FOUR")->score - 1) < 1e-9);
	assert_true(fabs(find_hit(&res, "DEFAULT")->score - 1) < 1e-9);
	assert_true(fabs(find_hit(&res, "T_TRY")->score - 0.01) < 1e-9);
	assert_true(fabs(find_hit(&res, "NICE")->score + 1) < 1e-9);
	assert_true(fabs(find_hit(&res, "RELATIVE")->score - 1.5) < 1e-9);
	assert_string_equal(find_hit(&res, "LATER")->describe, "A rule scored before it is defined");
	assert_null(find_hit(&res, "ONE")->describe);
	double expected = 2.5 + 1 + 0.7 + 1 + 0.01 - 1 + 1.5 - 1 + 1;
	assert_true(fabs(res.score - expected) < 1e-9);
	spam_result_free(&res);
	/* the Bayes score set */
	run_set(r, &x, SPAM_SET_BAYES, 0.5, &res);
	assert_true(fabs(find_hit(&res, "FOUR")->score - 3) < 1e-9);
	assert_true(fabs(find_hit(&res, "BAYES_ONLY")->score - 1.5) < 1e-9);
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
	assert_error("body X /x/\nscore X 1 2\n",
		     "rules.cf:2: X: a score is one number, or four (for the score sets 0 to 3)");
	assert_error("score X lots\n",
		     "rules.cf:1: X: a score is one number, or four (for the score sets 0 to 3), "
		     "between -1000 and 1000");
}

static void test_tflags(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"body MANY      /buy/\n"
		"tflags MANY    multiple maxhits=2\n"
		"score MANY     1.5\n"
		"body LEARNED   /buy/\n"
		"tflags LEARNED learn\n"
		"body NOAUTO    /buy/\n"
		"tflags NOAUTO  noautolearn\n"
		"body NETWORK   /buy/\n"
		"tflags NETWORK net\n"
		"body PLAIN     /buy/\n"
		"tflags PLAIN   publish nopublish userconf\n");
	struct msg x;
	msg_plain(&x, "s", "buy buy buy\n");
	struct spam_result res;
	run_set(r, &x, SPAM_SET_BAYES, 0.5, &res);
	/* NETWORK never runs (no network tests); LEARNED runs with Bayes */
	assert_hits(&res, "LEARNED,MANY,NOAUTO,PLAIN");
	assert_true(fabs(find_hit(&res, "MANY")->score - 3) < 1e-9);  /* 2 hits x 1.5 */
	assert_true(fabs(res.score - 6) < 1e-9);
	assert_true(fabs(res.learn_score - 4) < 1e-9);  /* without learn and noautolearn */
	assert_false(res.autolearn_allowed);
	spam_result_free(&res);
	/* without Bayes, a rule that needs learning does not run */
	run(r, &x, &res);
	assert_hits(&res, "MANY,NOAUTO,PLAIN");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
	assert_error("body X /x/\ntflags X multiple sometimes\n",
		     "rules.cf:2: X: unknown tflags word \"sometimes\"");
	assert_error("body X /x/\ntflags X maxhits=0\n",
		     "rules.cf:2: X: unknown tflags word \"maxhits=0\"");
}

static void test_priority(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok("body LAST /x/\npriority LAST 100\n"
					"body FIRST /x/\npriority FIRST -50\n"
					"body MIDDLE /x/\n");
	assert_int_equal(spam_rules_count(r), 3);
	assert_string_equal(r->rules[0].name, "FIRST");
	assert_string_equal(r->rules[1].name, "MIDDLE");
	assert_string_equal(r->rules[2].name, "LAST");
	spam_rules_free(&r);
	assert_error("body X /x/\npriority X soon\n", "rules.cf:2: X: priority wants a whole number");
}

/* ---- if, ifplugin, include --------------------------------------------------- */

static void test_conditionals(void **state)
{
	(void)state;
	check_plain("ifplugin Mail::SpamAssassin::Plugin::HeaderEval\n"
		    "  body KNOWN_PLUGIN /x/\n"
		    "endif\n"
		    "ifplugin Mail::SpamAssassin::Plugin::NoSuchThing\n"
		    "  body UNKNOWN_PLUGIN /x/\n"
		    "  header BROKEN eval:no_such_eval()\n"
		    "else\n"
		    "  body ELSE_BRANCH /x/\n"
		    "endif\n"
		    "if !plugin(Mail::SpamAssassin::Plugin::NoSuchThing)\n"
		    "  body NOT_PLUGIN /x/\n"
		    "endif\n"
		    "if (version >= 3.004000)\n"
		    "  body NEW_ENOUGH /x/\n"
		    "  if version > 99\n"
		    "    body TOO_NEW /x/\n"
		    "  else\n"
		    "    body NESTED_ELSE /x/\n"
		    "  endif\n"
		    "endif\n"
		    "if can(Mail::SpamAssassin::Conf::feature_bug6558_free)\n"
		    "  body CAN_FEATURE /x/\n"
		    "endif\n"
		    "if can(Mail::SpamAssassin::Conf::feature_nobody_has)\n"
		    "  body CANNOT /x/\n"
		    "endif\n"
		    "enable_compat made_up\n"
		    "if can(Mail::SpamAssassin::Conf::compat_made_up) && perl_version >= 5.010000\n"
		    "  body COMPAT /x/\n"
		    "endif\n"
		    "if 0\n"
		    "  this line is never read\n"
		    "  if nonsense(\n"
		    "  endif\n"
		    "endif\n",
		    "s", "x\n",
		    "CAN_FEATURE,COMPAT,ELSE_BRANCH,KNOWN_PLUGIN,NESTED_ELSE,NEW_ENOUGH,NOT_PLUGIN");
	assert_error("if version >= 3\nbody X /x/\n",
		     "rules.cf:1: this if has no endif before the end of the file");
	assert_error("endif\n", "rules.cf:1: endif without an if, or words after it");
	assert_error("if 1\nelse\nelse\nendif\n",
		     "rules.cf:3: else without an if, a second else, or words after it");
	assert_error("if perl_hacks()\nendif\n",
		     "rules.cf:1: if: unknown function \"perl_hacks\" in a condition");
	assert_error("if version ge 3\nendif\n", "rules.cf:1: if: unexpected \"ge 3\"");
}

static void test_include(void **state)
{
	(void)state;
	char *inner = write_file("inner.cf", "body INCLUDED /x/\ninclude deeper.cf\n");
	char *deeper = write_file("deeper.cf", "body DEEPER /x/\n");
	check_plain("include inner.cf\nbody OUTER /x/\n", "s", "x\n", "DEEPER,INCLUDED,OUTER");
	/* an error in an included file names that file */
	char *bad = write_file("bad.cf", "body OK /x/\nbody BAD /(/\n");
	assert_error("include bad.cf\n",
		     "bad.cf:2: BAD: bad regex at offset 1: missing closing parenthesis");
	char *e = rules_error("body A /a/\ninclude missing.cf\n");
	assert_true(strncmp(e, "rules.cf:2: include: ", 21) == 0);
	assert_non_null(strstr(e, "/missing.cf: cannot read: No such file or directory"));
	free(e);
	free(inner);
	free(deeper);
	free(bad);
}

static void test_include_bounds(void **state)
{
	(void)state;
	/* a file including itself, and two including each other */
	char *self = write_file("self.cf", "body S /x/\ninclude self.cf\n");
	char *err = NULL;
	struct spam_rules *r = load_path(self, false, NULL, &err);
	assert_null(r);
	char *want = NULL;
	assert_true(asprintf(&want, "%s:2: include: %s: included from itself (a loop)", self, self) > 0);
	assert_string_equal(err, want);
	free(err);
	free(want);
	char *a = write_file("ping.cf", "include pong.cf\n");
	char *b = write_file("pong.cf", "include ping.cf\n");
	r = load_path(a, false, NULL, &err);
	assert_null(r);
	assert_non_null(strstr(err, "included from itself (a loop)"));
	free(err);
	/* a chain deeper than the bound */
	char name[32], text[64];
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "chain%d.cf", i);
		snprintf(text, sizeof(text), "body C%d /x/\ninclude chain%d.cf\n", i, i + 1);
		free(write_file(name, text));
	}
	free(write_file("chain12.cf", "body END /x/\n"));
	char *first = NULL;
	assert_true(asprintf(&first, "%s/chain0.cf", tmpdir) > 0);
	r = load_path(first, false, NULL, &err);
	assert_null(r);
	assert_non_null(strstr(err, "include nested more than 8 deep"));
	free(err);
	free(first);
	free(self);
	free(a);
	free(b);
}

/* ---- errors and leniency -------------------------------------------------------- */

static void test_strict_errors(void **state)
{
	(void)state;
	assert_error("body\n", "rules.cf:1: body wants a rule name (letters, digits and _, not "
			       "starting with a digit, at most 127)");
	assert_error("\n\nbody 9LIVES /x/\n", "rules.cf:3: body wants a rule name (letters, "
					      "digits and _, not starting with a digit, at most 127)");
	assert_error("body X /unclosed\n", "rules.cf:1: X: the regex is not closed with /");
	assert_error("body X /a/q\n",
		     "rules.cf:1: X: unknown regex flag \"q\" (postern takes i, s, m and x)");
	assert_error("body X /[ab/\n",
		     "rules.cf:1: X: bad regex at offset 3: missing terminating ] for character "
		     "class");
	assert_error("body X eval:no_such_test()\n",
		     "rules.cf:1: X: postern has no eval: test no_such_test");
	assert_error("header X Subject ~ /a/\n",
		     "rules.cf:1: X: want \"Field =~ /regex/\", \"Field !~ /regex/\", "
		     "\"exists:Field\" or \"eval:test()\"");
	assert_error("header X Subject:lower =~ /a/\n",
		     "rules.cf:1: X: unknown header modifier \":lower\" (postern takes :raw, "
		     ":addr and :name)");
	assert_error("frobnicate everything\n", "rules.cf:1: unknown setting \"frobnicate\"");
	assert_error("header X Subject =~ /a/ trailing\n",
		     "rules.cf:1: X: unexpected \"trailing\" after the regex");
	assert_error("header X Subject =~ /a/ [if-unset: b\n",
		     "rules.cf:1: X: [if-unset: text] is not closed with ]");
	assert_error("body X eval:check_for_uppercase('1')\n",
		     "rules.cf:1: X: eval:check_for_uppercase wants 2 to 2 arguments, quoted and "
		     "separated by commas");
	assert_error("body X eval:check_for_mime('mime_qp_ratio')\n",
		     "rules.cf:1: X: postern's eval:check_for_mime cannot take these arguments");
	assert_error("body X eval:check_bayes('0.1', '0.2'\n",
		     "rules.cf:1: X: the eval: call is not closed with )");
	/* SpamAssassin settings postern ignores are no error */
	check_plain("required_score 5\nreport _SUMMARY_\nadd_header all Status _YESNO_\n"
		    "lang de describe X Deutsch\nloadplugin Mail::SpamAssassin::Plugin::Foo\n"
		    "body X /x/\n", "s", "x\n", "X");
	/* a missing file or folder */
	char *err = NULL;
	struct spam_rules *r = load_path("/nonexistent/rules.cf", false, NULL, &err);
	assert_null(r);
	assert_string_equal(err, "/nonexistent/rules.cf: cannot read: No such file or directory");
	free(err);
}

static void test_lenient_summary(void **state)
{
	(void)state;
	char *path = new_file("body GOOD /good/\n"
			      "body BADRE /[ab/\n"
			      "body BADRE2 /(/\n"
			      "header NET eval:check_rbl('zen', 'zen.example.')\n"
			      "header NET2 eval:check_rbl_sub('zen', '127.0.0.2')\n"
			      "body MIMEQP eval:check_for_mime('mime_qp_count')\n"
			      "header ODD Subject ~ /x/\n"
			      "some_new_setting 42\n"
			      "tflags GOOD multiple some_new_flag\n"
			      "meta GOOD_META GOOD && NET\n");
	char *warn = NULL, *err = NULL;
	struct spam_rules *r = load_path(path, true, &warn, &err);
	assert_non_null(r);
	assert_int_equal(spam_rules_count(r), 2);
	char *want = NULL;
	assert_true(asprintf(&want,
			     "%s: 6 rules skipped: 3 with eval: tests postern does not have "
			     "(check_rbl, check_rbl_sub, check_for_mime('mime_qp_count')); 2 regexes "
			     "PCRE2 cannot take (first: line 2: BADRE: bad regex at offset 3: missing "
			     "terminating ] for character class); 1 line not understood (first: line 7: "
			     "ODD: want \"Field =~ /regex/\", \"Field !~ /regex/\", \"exists:Field\" or "
			     "\"eval:test()\")\n", path) > 0);
	assert_string_equal(warn, want);
	/* the meta over a skipped rule reads it as 0 */
	struct msg x;
	msg_plain(&x, "s", "good\n");
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "GOOD");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
	free(want);
	free(warn);
	free(path);
	/* a folder: its *.cf in name order, later scores win */
	char *dir = NULL;
	assert_true(asprintf(&dir, "%s/sa", tmpdir) > 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	char *f;
	f = write_file("sa/20_rules.cf", "body FOLDER_RULE /x/\nscore FOLDER_RULE 1\n");
	free(f);
	f = write_file("sa/50_scores.cf", "score FOLDER_RULE 3\n");
	free(f);
	f = write_file("sa/README", "not a rule file\n");
	free(f);
	r = load_path(dir, true, &warn, &err);
	assert_non_null(r);
	assert_string_equal(warn, "");
	msg_plain(&x, "s", "x\n");
	run(r, &x, &res);
	assert_hits(&res, "FOLDER_RULE");
	assert_true(fabs(res.score - 3) < 1e-9);
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
	free(warn);
	free(dir);
}

static void test_strict_after_lenient(void **state)
{
	(void)state;
	/* SpamAssassin's folder first (lenient), postern's file last (strict):
	 * its scores override, its errors still fail */
	char *sa = new_file("body SA_RULE /x/\nscore SA_RULE 4\nheader SA_NET eval:check_rbl('a','b')\n");
	char *own = new_file("score SA_RULE 0.5\nbody OWN /x/\n");
	const char *paths[] = { sa, own };
	bool lenient[] = { true, false };
	struct spam_rules_source src = { paths, 2, lenient, NULL, false };
	char *err = NULL;
	struct spam_rules *r = spam_rules_load(&src, NULL, &err);
	assert_non_null(r);
	struct msg x;
	msg_plain(&x, "s", "x\n");
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "OWN,SA_RULE");
	assert_true(fabs(res.score - 1.5) < 1e-9);
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
	char *own_bad = new_file("body OWN eval:check_rbl('a','b')\n");
	paths[1] = own_bad;
	r = spam_rules_load(&src, NULL, &err);
	assert_null(r);
	char *want = NULL;
	assert_true(asprintf(&want, "%s:1: OWN: postern has no eval: test check_rbl", own_bad) > 0);
	assert_string_equal(err, want);
	free(want);
	free(err);
	free(sa);
	free(own);
	free(own_bad);
}

/* ---- ReplaceTags ------------------------------------------------------------------- */

static void test_replace_tags(void **state)
{
	(void)state;
	check_plain("replace_tag   V   (?:[vu]|\\\\\\/)\n"
		    "replace_tag   I   [il1!|]\n"
		    "replace_tag   A   [a@4]\n"
		    "replace_tag   G   [gq]\n"
		    "replace_tag   R   [r]\n"
		    "replace_inter SP  [\\s._-]?\n"
		    "replace_post  P1  {1,2}\n"
		    "body FUZZY /<inter SP><post P1>(?!viagra)<V><I><A><G><R><A>/i\n"
		    "replace_rules FUZZY\n"
		    "body NOT_REPLACED /<V>x/\n"
		    "body NAMED_GROUP /(?<word>wxyz)/\n"
		    "replace_rules NAMED_GROUP\n",
		    "s", "cheap v.1-a.g.r@ today, wxyz\n", "FUZZY,NAMED_GROUP");
}

/* ---- eval tests ------------------------------------------------------------------- */

static void test_eval_headers(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"header MISSING_TO   eval:check_for_missing_to_header()\n"
		"header ALL_CAPS     eval:subject_is_all_caps()\n"
		"header ILLEGAL      eval:check_illegal_chars('Subject', '0.05', '2')\n"
		"header TWO_SUBJECTS eval:check_header_count_range('Subject', '2', '999')\n"
		"header ONE_DATE     eval:check_header_count_range('Date', 1, 1)\n"
		"header DATE_FUTURE  eval:check_for_shifted_date('6', 'undef')\n"
		"header DATE_PAST    eval:check_for_shifted_date('undef', '-6')\n"
		"header DATE_CLOSE   eval:check_for_shifted_date('-1', '1')\n"
		"header NAME_SPOOF   eval:check_fromname_spoof()\n"
		"header REPLY_OTHER  eval:check_replyto_other_domain()\n");
	struct msg x;
	msg_init(&x);
	msg_header(&x, "Received", "from a.example by mx.example.net; Mon, 2 Jun 2025 10:00:00 +0000");
	msg_header(&x, "From", "\"support@paypal.com\" <crook@phish.example>");
	msg_header(&x, "Reply-To", "<collect@elsewhere.example>");
	msg_header(&x, "Subject", "URGENT ACCOUNT NOTICE");
	msg_header(&x, "Subject", "Second \x01\x02 subject");
	msg_header(&x, "Date", "Tue, 3 Jun 2025 04:30:00 -0400");  /* 22.5 hours later */
	msg_body(&x, "x\n");
	msg_finish(&x);
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "ALL_CAPS,DATE_FUTURE,ILLEGAL,MISSING_TO,NAME_SPOOF,ONE_DATE,REPLY_OTHER,"
			  "TWO_SUBJECTS");
	spam_result_free(&res);
	msg_free(&x);
	/* the same with an ordinary message */
	msg_init(&x);
	msg_header(&x, "Received", "from a.example by mx.example.net; Mon, 2 Jun 2025 10:00:00 +0000");
	msg_header(&x, "From", "\"Alice (alice@example.org)\" <alice@mail.example.org>");
	msg_header(&x, "Reply-To", "list@lists.example.org");
	msg_header(&x, "To", "bob@example.net");
	msg_header(&x, "Subject", "RE: Lunch tomorrow?");
	msg_header(&x, "Date", "Mon, 2 Jun 2025 09:59:30 +0000");
	msg_body(&x, "x\n");
	msg_finish(&x);
	run(r, &x, &res);
	assert_hits(&res, "DATE_CLOSE,ONE_DATE");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_eval_received_trail(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok("header FORGED_TRAIL eval:check_for_forged_received_trail()\n");
	/* each relay is named by the one after it: a sound chain */
	struct msg x;
	msg_init(&x);
	msg_header(&x, "Received", "from out.sender.example (out.sender.example [198.51.100.1]) "
		   "by mx.example.net; Mon, 2 Jun 2025 10:00:02 +0000");
	msg_header(&x, "Received", "from desk.sender.example (desk.sender.example [10.0.0.5]) "
		   "by out.sender.example; Mon, 2 Jun 2025 10:00:01 +0000");
	msg_header(&x, "Received", "from localhost by desk.sender.example; Mon, 2 Jun 2025 10:00:00 +0000");
	msg_body(&x, "x\n");
	msg_finish(&x);
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "");
	spam_result_free(&res);
	msg_free(&x);
	/* relays nobody handed the message to: forged below the first hop */
	msg_init(&x);
	msg_header(&x, "Received", "from out.sender.example (out.sender.example [198.51.100.1]) "
		   "by mx.example.net; Mon, 2 Jun 2025 10:00:02 +0000");
	msg_header(&x, "Received", "from a by relay.bigisp.example; Mon, 2 Jun 2025 10:00:01 +0000");
	msg_header(&x, "Received", "from b by gateway.other.example; Mon, 2 Jun 2025 10:00:00 +0000");
	msg_body(&x, "x\n");
	msg_finish(&x);
	run(r, &x, &res);
	assert_hits(&res, "FORGED_TRAIL");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_eval_bayes(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"body BAYES_00 eval:check_bayes('0.00', '0.01')\n"
		"body BAYES_50 eval:check_bayes('0.40', '0.60')\n"
		"body BAYES_99 eval:check_bayes('0.99', '1.00')\n"
		"body BAYES_999 eval:check_bayes('0.999', 'undef')\n"
		"tflags BAYES_00 learn\ntflags BAYES_50 learn\ntflags BAYES_99 learn\n"
		"tflags BAYES_999 learn\n"
		"score BAYES_00 0 0 -1.9 -1.9\nscore BAYES_50 0 0 0.8 0.8\n"
		"score BAYES_99 0 0 3.5 3.5\nscore BAYES_999 0 0 0.2 0.2\n");
	struct msg x;
	msg_plain(&x, "s", "x\n");
	struct spam_result res;
	run_set(r, &x, SPAM_SET_BAYES, 0.0, &res);
	assert_hits(&res, "BAYES_00");
	spam_result_free(&res);
	run_set(r, &x, SPAM_SET_BAYES, 0.5, &res);
	assert_hits(&res, "BAYES_50");
	spam_result_free(&res);
	run_set(r, &x, SPAM_SET_BAYES, 0.9995, &res);
	assert_hits(&res, "BAYES_99,BAYES_999");
	assert_true(fabs(res.score - 3.7) < 1e-9);
	assert_true(fabs(res.learn_score) < 1e-9);
	spam_result_free(&res);
	run_set(r, &x, SPAM_SET_BAYES, -1, &res);  /* too little learned */
	assert_hits(&res, "");
	spam_result_free(&res);
	run_set(r, &x, SPAM_SET_LOCAL, 0.9995, &res);  /* Bayes rules score 0 in set 0 */
	assert_hits(&res, "");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_eval_body_html_uri(void **state)
{
	(void)state;
	struct spam_rules *r = rules_ok(
		"body HTML          eval:check_for_mime_html()\n"
		"body HTML_ONLY     eval:check_for_mime_html_only()\n"
		"body IMAGE_ONLY    eval:html_image_only('0', '400')\n"
		"body INVISIBLE     eval:html_invisible_text('100', '0.2')\n"
		"body OBFU          eval:html_obfuscated_words()\n"
		"body UPPER         eval:check_for_uppercase('50', '100')\n"
		"body SHORT         eval:check_body_length('20')\n"
		"body ATTACHED      eval:check_for_mime('mime_attachment')\n"
		"uri  URI_IP        eval:check_uri_ip_literal()\n"
		"uri  URI_PUNY      eval:check_uri_punycode()\n"
		"uri  URI_MISMATCH  eval:check_uri_text_mismatch()\n"
		"meta TWO_MISMATCH  URI_MISMATCH >= 2\n");
	struct msg x;
	msg_init(&x);
	msg_header(&x, "Subject", "s");
	buf_puts(&x.t.body, "s\n");
	for (int i = 0; i < 10; i++)
		buf_puts(&x.t.body, "THIS IS A LINE OF SHOUTING WORDS AND MORE OF THEM\n");
	buf_puts(&x.t.rawbody, "<html>tiny</html>\n");
	x.t.html = (struct spam_html_facts){ .html_parts = 1, .html_text_bytes = 300,
					     .invisible_text_bytes = 200, .images = 2,
					     .has_obfuscated_words = true };
	x.parts[x.np++] = (struct scan_part){ .index = 0, .parent = -1, .multipart = true,
					      .content_type = (char *)"multipart/mixed" };
	x.parts[x.np++] = (struct scan_part){ .index = 1, .content_type = (char *)"text/html" };
	x.parts[x.np++] = (struct scan_part){ .index = 2, .content_type = (char *)"application/pdf",
					      .filename = (char *)"invoice.pdf" };
	msg_uri(&x, "http://198.51.100.7/x", "198.51.100.7", NULL);
	msg_uri(&x, "https://xn--pypal-4ve.example/login", "xn--pypal-4ve.example", NULL);
	msg_uri(&x, "https://evil.example/a", "evil.example", "https://www.mybank.example/login");
	msg_uri(&x, "https://evil.example/b", "evil.example", "Log in at secure.mybank.example now");
	msg_uri(&x, "https://www.mybank.example/c", "www.mybank.example", "mybank.example");
	msg_finish(&x);
	struct spam_result res;
	run(r, &x, &res);
	assert_hits(&res, "ATTACHED,HTML,HTML_ONLY,IMAGE_ONLY,INVISIBLE,OBFU,SHORT,TWO_MISMATCH,"
			  "UPPER,URI_IP,URI_MISMATCH,URI_PUNY");
	spam_result_free(&res);
	msg_free(&x);
	msg_plain(&x, "s", "an ordinary line of text with some words in it\n");
	msg_uri(&x, "https://www.example.org/", "www.example.org", "www.example.org");
	run(r, &x, &res);
	assert_hits(&res, "");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

/* ---- the prefilter ---------------------------------------------------------------- */

static void test_literals(void **state)
{
	(void)state;
	static const struct {
		const char *pattern;
		uint32_t opts;
		const char *want;  /* the literals, "|" between, caseless marked "~" */
	} cases[] = {
		{ "[ck]redit card", PCRE2_CASELESS, "~credit card|~kredit card" },
		{ "^[^\\]]+ rdns= ", 0, " rdns= " },
		{ "(?:foo|bar)baz\\d+", 0, "foobaz|barbaz" },
		{ "ab?cd", 0, "acd|abcd" },
		{ "(?i)HeLLo wor(?-i)LD", 0, "~hello world" },
		{ "x{2,3}abc", 0, "abc" },
		{ "\\bfree\\s+money\\b", 0, "money" },
		{ "a{,3}bcd", 0, "bcd" },
		{ "\\Qa.b\\E+c", 0, "a.b" },
		{ "\\x41\\x42\\x43", 0, "ABC" },
		{ "(?=abc)abcd", 0, "abcd" },
		{ "(?!viagra)v.agra", 0, "agra" },
		{ "free # comment\n money", PCRE2_EXTENDED, "freemoney" },
		{ "a|bc", 0, "" },              /* "a" is too short */
		{ "ab.cd", 0, "" },
		{ "(abc)\\1", 0, "abc" },
		{ "abc(", 0, "" },              /* broken: nothing */
		{ "[a-z]+@example", 0, "@example" },
		{ "(?<name>abc)def", 0, "abcdef" },
		{ "(*UTF)abc", 0, "abc" },
		{ "abc(?#note)def", 0, "abcdef" },
		{ "x*", 0, "" },
		{ "\\x{0000000000041}BC", 0, "ABC" },
		{ "\\x{FFFFFFFFFF}BCD", 0, "" },  /* beyond a byte: PCRE2 refuses it */
		{ "ab\x85" "cd", PCRE2_EXTENDED, "abcd" },  /* NEL is white space under x */
		/* back-references are no literal text, whatever their form */
		{ "(ab)\\g{-1}xyz", 0, "xyz" },
		{ "(ab)\\g1xyz", 0, "xyz" },
		{ "(?<n>ab)\\k<n>xyz", 0, "xyz" },
		{ "(?<n>ab)\\k{n}xyz", 0, "xyz" },
		{ "(?'n'ab)\\g'n'xyz", 0, "xyz" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct spam_litset s;
		spam_regex_literals(cases[i].pattern, cases[i].opts, &s);
		buf_t b = BUF_INIT;
		for (size_t k = 0; k < s.count; k++)
			buf_printf(&b, "%s%s%s", k ? "|" : "", s.items[k].caseless ? "~" : "",
				   s.items[k].text);
		if (strcmp(buf_cstr(&b), cases[i].want) != 0)
			fail_msg("/%s/: literals \"%s\", wanted \"%s\"", cases[i].pattern, buf_cstr(&b),
				 cases[i].want);
		buf_free(&b);
		spam_litset_free(&s);
	}
}

static void test_prefilter_agrees(void **state)
{
	(void)state;
	/* Rules whose literals are in the message hit, the others do not; the
	 * ones without literals run always; negated header rules hold when
	 * their literal is absent. */
	check_plain("body CASELESS /CHEAP\\s+PILLS/i\n"
		    "body CASED    /CHEAP PILLS/\n"
		    "body NOLIT    /\\d{3}-\\d{4}/\n"
		    "header NEG    Subject !~ /unsubscribe/\n"
		    "header NEG2   Subject !~ /subject/\n"
		    "body ALT      /(?:viagra|cialis|levitra)/i\n",
		    "a subject", "cheap   pills at 555-1234 with CiAlIs\n",
		    "ALT,CASELESS,NEG,NOLIT");
}

/* ---- bounds ----------------------------------------------------------------------- */

static uint64_t elapsed_us(const struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	int64_t us = (int64_t)(b.tv_sec - a->tv_sec) * 1000000 + (b.tv_nsec - a->tv_nsec) / 1000;
	return us > 0 ? (uint64_t)us : 0;
}

/* Run r over x with a budget (0: none): the microseconds it took. */
static uint64_t timed_run(const struct spam_rules *r, struct msg *x, uint64_t budget_us,
			  struct spam_result *res)
{
	struct spam_rules_context ctx = { &x->env, -1, SPAM_SET_LOCAL, budget_us };
	spam_result_init(res);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	spam_rules_run(r, &x->t, &ctx, res);
	return elapsed_us(&t0);
}

static void test_budget(void **state)
{
	(void)state;
	/* A large body of "aaaa...", a "b" at its end (PCRE2 does not even
	 * try a regex whose required byte is absent): (?:a+a+)+b backtracks
	 * exponentially wherever it starts. */
	struct msg x;
	msg_init(&x);
	msg_header(&x, "Subject", "s");
	for (int i = 0; i < 4000; i++) {
		buf_append(&x.t.body, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 64);
		buf_putc(&x.t.body, i % 10 == 9 ? '\n' : ' ');
	}
	buf_puts(&x.t.body, "b\n");
	buf_puts(&x.t.rawbody, "x\n");
	msg_finish(&x);
	/* one such regex: PCRE2's match limit ends it, whatever the size */
	struct spam_rules *r = rules_ok("body SLOW /(?:a+a+)+b/\nbody ALSO /aaaa/\n");
	struct spam_result res;
	uint64_t us = timed_run(r, &x, 0, &res);
	assert_false(res.timed_out);
	assert_hits(&res, "ALSO");
	print_message("one pathological regex over %zu bytes: %llu us\n", x.t.body.len,
		      (unsigned long long)us);
	if (us > 2000000)
		fail_msg("one pathological regex took %llu us", (unsigned long long)us);
	spam_result_free(&res);
	spam_rules_free(&r);
	/* many of them: the budget stops the run in time and says so */
	buf_t rules = BUF_INIT;
	for (int i = 0; i < 300; i++)
		buf_printf(&rules, "body SLOW%d /(?:a+a+)+b/\n", i);
	buf_puts(&rules, "body ALSO /aaaa/\npriority ALSO 10\nmeta AFTER ALSO\nmeta NEGATED !ALSO\n");
	r = rules_ok(buf_cstr(&rules));
	buf_free(&rules);
	/* Hyperscan's gates see that none of them can match this body: PCRE2
	 * never runs them */
	us = timed_run(r, &x, 50000, &res);
	print_message("300 of them, gated, with a 50 ms budget: %llu us\n", (unsigned long long)us);
	assert_false(res.timed_out);
	assert_hits(&res, "AFTER,ALSO");
	spam_result_free(&res);
	/* without the gates (a regex Hyperscan cannot take runs so) */
	spam_rules_set_plain(r, true);
	us = timed_run(r, &x, 50000, &res);
	print_message("300 of them with a 50 ms budget: %llu us\n", (unsigned long long)us);
	assert_true(res.timed_out);
	if (us > 500000)
		fail_msg("a 50 ms budget took %llu us", (unsigned long long)us);
	/* the rules that did not run count 0, and so do the metas over them */
	assert_hits(&res, "");
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_file_bounds(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	buf_puts(&b, "body X /");
	for (size_t i = 0; i < SPAM_RULES_LINE_MAX; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "/\n");
	assert_error(buf_cstr(&b), "rules.cf:1: line longer than 65536 bytes");
	buf_free(&b);
	/* NUL bytes and stray CRs */
	char *path = new_file("body X /x/\r\nbody Y /y/\r\n");
	char *err = NULL;
	struct spam_rules *r = load_path(path, false, NULL, &err);
	assert_non_null(r);
	assert_int_equal(spam_rules_count(r), 2);
	spam_rules_free(&r);
	free(path);
}

static void test_many_metas(void **state)
{
	(void)state;
	/* a chain of metas, each reading the one before, listed last first:
	 * ordered in linear time, evaluated end to end */
	enum { N = 60000 };
	buf_t b = BUF_INIT;
	for (int i = N - 1; i > 0; i--)
		buf_printf(&b, "meta M%d M%d\n", i, i - 1);
	buf_puts(&b, "meta M0 __X\nbody __X /needle/\n");
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct spam_rules *r = rules_ok(buf_cstr(&b));
	uint64_t us = elapsed_us(&t0);
	buf_free(&b);
	print_message("%d chained metas loaded in %llu us\n", N, (unsigned long long)us);
	if (us > 10000000)
		fail_msg("%d chained metas took %llu us to load", N, (unsigned long long)us);
	struct msg x;
	msg_plain(&x, "s", "a needle\n");
	struct spam_result res;
	run(r, &x, &res);
	assert_int_equal(res.hit_count, N);
	assert_true(hit(&res, "M59999"));
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
}

static void test_stale(void **state)
{
	(void)state;
	char *path = new_file("body X /x/\n");
	char *err = NULL;
	struct spam_rules *r = load_path(path, false, NULL, &err);
	assert_non_null(r);
	assert_false(spam_rules_stale(r));
	FILE *f = fopen(path, "a");
	fputs("body Y /y/\n", f);
	fclose(f);
	assert_true(spam_rules_stale(r));
	spam_rules_free(&r);
	unlink(path);
	free(path);
}

/* ---- SpamAssassin's own rules --------------------------------------------------------- */

#define SA_RULES "/usr/share/spamassassin"

static void test_spamassassin_rules(void **state)
{
	(void)state;
	struct stat sb;
	if (stat(SA_RULES "/72_active.cf", &sb) != 0) {
		print_message("SpamAssassin's rules are not installed (Debian package "
			      "spamassassin): not tested\n");
		skip();
	}
	char *warn = NULL, *err = NULL;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct spam_rules *r = load_path(SA_RULES, true, &warn, &err);
	uint64_t us = elapsed_us(&t0);
	if (r == NULL)
		fail_msg("%s", err);
	size_t loaded = spam_rules_count(r), skipped = 0, lines = 0;
	for (const char *p = warn; (p = strstr(p, ".cf: ")) != NULL; p++) {
		skipped += strtoul(p + 5, NULL, 10);
		lines++;
	}
	print_message("SpamAssassin rules: %zu loaded, %zu skipped (%zu files with a summary), "
		      "%.2f s\n%s", loaded, skipped, lines, us / 1e6, warn);
	/* Most of SpamAssassin's rules run; every summary is one line per file */
	assert_true(loaded > 1500);
	assert_true(skipped < loaded / 5);
	for (const char *p = warn; *p != '\0';) {
		const char *nl = strchr(p, '\n');
		assert_non_null(nl);
		assert_true(strncmp(p, SA_RULES "/", strlen(SA_RULES) + 1) == 0);
		p = nl + 1;
	}
	/* GTUBE, written in a message, scores as SpamAssassin's rules say */
	struct msg x;
	msg_plain(&x, "test",
		  "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n");
	struct spam_result res;
	run(r, &x, &res);
	assert_true(hit(&res, "GTUBE"));
	assert_true(fabs(find_hit(&res, "GTUBE")->score - 1000) < 1e-9);
	assert_true(res.score > 990);
	spam_result_free(&res);
	msg_free(&x);
	spam_rules_free(&r);
	free(warn);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/postern-spamrules-XXXXXX");
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
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_header_modifiers),
		cmocka_unit_test(test_address_helpers),
		cmocka_unit_test(test_mimeheader),
		cmocka_unit_test(test_body_rules),
		cmocka_unit_test(test_rawbody_uri_full),
		cmocka_unit_test(test_meta),
		cmocka_unit_test(test_meta_counts_multiple),
		cmocka_unit_test(test_meta_errors),
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_tflags),
		cmocka_unit_test(test_priority),
		cmocka_unit_test(test_conditionals),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_include_bounds),
		cmocka_unit_test(test_strict_errors),
		cmocka_unit_test(test_lenient_summary),
		cmocka_unit_test(test_strict_after_lenient),
		cmocka_unit_test(test_replace_tags),
		cmocka_unit_test(test_eval_headers),
		cmocka_unit_test(test_eval_received_trail),
		cmocka_unit_test(test_eval_bayes),
		cmocka_unit_test(test_eval_body_html_uri),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_prefilter_agrees),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_file_bounds),
		cmocka_unit_test(test_many_metas),
		cmocka_unit_test(test_stale),
		cmocka_unit_test(test_spamassassin_rules),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
