/*
 * test_rules.c - the content policy (src/scan/rules*.c): the rules file
 * parser and its "FILE:LINE: message" errors, every kind of test and
 * action on hand-built struct scan_message (file names already RFC 2047
 * / 2231 decoded to UTF-8 by the MIME pass), archives built here with
 * libarchive (zip, nested zip, encrypted zip, tar.gz, 7z, damaged ones,
 * bombs), PCRE2 limits, and the stage's constructor.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "scan/rules.h"
#include "scan/scan.h"

/* ---- helpers ------------------------------------------------------------ */

/* The verdict as a stage receives it (what scan_verdict_init gives). */
static void verdict_init(struct scan_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->action = SCAN_ACCEPT;
}

static void verdict_free(struct scan_verdict *v)
{
	strlist_free(&v->headers);
	strlist_free(&v->hits);
}

static bool has_item(const strlist_t *l, const char *s)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i], s) == 0)
			return true;
	return false;
}

/* Parse text that must be right (its problems are printed if not). */
static struct scan_rules *rules_ok(const char *text)
{
	struct scan_rules *r = scan_rules_parse("rules", text, strlen(text), stderr);
	assert_non_null(r);
	return r;
}

/* Parse text that must be wrong; the first problem line, malloc'ed. */
static char *first_error(const char *text)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	struct scan_rules *r = scan_rules_parse("rules", text, strlen(text), f);
	fclose(f);
	if (r != NULL) {
		scan_rules_free(&r);
		fail_msg("accepted: %s", text);
	}
	out[strcspn(out, "\n")] = '\0';
	return out;
}

struct msg {
	struct scan_part parts[8];
	size_t np;
	struct scan_header headers[16];
	size_t nh;
	strlist_t rcpts;
	struct scan_envelope env;
	struct scan_message m;
};

static void msg_init(struct msg *b)
{
	memset(b, 0, sizeof(*b));
	b->env.queue_id = "TESTQUEUEID";
	b->env.sender = "someone@remote.test";
	b->env.client_addr = "198.51.100.7";
	b->env.helo = "client.remote.test";
	strlist_add(&b->rcpts, "alice@example.test");
	b->env.rcpts = &b->rcpts;
	b->m.env = &b->env;
	b->m.parts = b->parts;
	b->m.headers = b->headers;
	/* part 0: the message itself */
	b->parts[0].content_type = (char *)"multipart/mixed";
	b->parts[0].parent = -1;
	b->parts[0].multipart = true;
	b->np = 1;
	b->m.part_count = 1;
}

static struct scan_part *add_part(struct msg *b, const char *type, const char *sniffed,
				  const char *filename, uint64_t size)
{
	assert_true(b->np < 8);
	struct scan_part *p = &b->parts[b->np];
	p->index = (unsigned)b->np;
	p->depth = 1;
	p->parent = 0;
	p->content_type = (char *)type;
	p->sniffed_type = (char *)sniffed;
	p->filename = (char *)filename;
	p->disposition = filename != NULL ? (char *)"attachment" : NULL;
	p->decoded_size = size;
	b->np++;
	b->m.part_count = b->np;
	return p;
}

static void add_header(struct msg *b, unsigned part, const char *name, const char *raw,
		       const char *decoded)
{
	assert_true(b->nh < 16);
	struct scan_header *h = &b->headers[b->nh++];
	h->part = part;
	h->name = (char *)name;
	h->raw = (char *)raw;
	h->decoded = (char *)(decoded != NULL ? decoded : raw);
	b->m.header_count = b->nh;
}

static void msg_free(struct msg *b)
{
	for (size_t i = 0; i < b->np; i++)
		buf_free(&b->parts[i].archive);
	strlist_free(&b->rcpts);
}

/* Judge b with rules text; v filled (init'ed here). */
static void judge_text(const char *text, struct msg *b, struct scan_verdict *v)
{
	struct scan_rules *r = rules_ok(text);
	verdict_init(v);
	assert_int_equal(scan_rules_judge(r, &b->m, v), 0);
	scan_rules_free(&r);
}

/* Does a rule of text hit the message b? (its only rule, named "t") */
static bool hits(const char *text, struct msg *b)
{
	struct scan_verdict v;
	judge_text(text, b, &v);
	bool hit = has_item(&v.hits, "rule:t");
	verdict_free(&v);
	return hit;
}

/* A message with one attachment named name. */
static bool name_hits(const char *tests, const char *name)
{
	struct msg b;
	msg_init(&b);
	add_part(&b, "text/plain", "text/plain", NULL, 10);
	add_part(&b, "application/octet-stream", "application/octet-stream", name, 100);
	char text[1024];
	snprintf(text, sizeof(text), "rule t\n    %s\n    reject\n", tests);
	bool hit = hits(text, &b);
	msg_free(&b);
	return hit;
}

/* ---- archives made with libarchive ---------------------------------------- */

struct entry {
	const char *name;
	const void *data;
	size_t len;
};

/* An archive in memory: format "zip", "7z", "tar.gz"; password: encrypt
 * with zip's traditional encryption (or "aes256:PASSWORD"). */
static void make_archive(buf_t *out, const char *format, const char *password,
			 const struct entry *entries, size_t n)
{
	struct archive *a = archive_write_new();
	if (strcmp(format, "zip") == 0)
		assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
	else if (strcmp(format, "7z") == 0)
		assert_int_equal(archive_write_set_format_7zip(a), ARCHIVE_OK);
	else {
		assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
		assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	}
	if (password != NULL) {
		bool aes = strncmp(password, "aes256:", 7) == 0;
		assert_int_equal(archive_write_set_options(a, aes ? "zip:encryption=aes256"
								  : "zip:encryption=zipcrypt"),
				 ARCHIVE_OK);
		assert_int_equal(archive_write_set_passphrase(a, aes ? password + 7 : password),
				 ARCHIVE_OK);
	}
	size_t cap = 1 << 20;
	for (size_t i = 0; i < n; i++)
		cap += entries[i].len + entries[i].len / 2;
	buf_reset(out);
	buf_reserve(out, cap);
	size_t used = 0;
	assert_int_equal(archive_write_open_memory(a, out->data, cap, &used), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, entries[i].name);
		archive_entry_set_size(e, (la_int64_t)entries[i].len);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		if (entries[i].len > 0)
			assert_int_equal(archive_write_data(a, entries[i].data, entries[i].len),
					 (la_ssize_t)entries[i].len);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	out->len = used;
}

static const char pe_bytes[] = "MZ\x90\0\3\0\0\0 this is not really a program";

static void list(const buf_t *b, struct scan_rules_archive_listing *l)
{
	scan_rules_archive_list(b->data, b->len, &scan_rules_archive_default_limits, l);
}

/* A message whose attachment name holds archive bytes. */
static void attach_archive(struct msg *b, const char *name, const buf_t *bytes)
{
	struct scan_part *p = add_part(b, "application/zip", "application/zip", name, bytes->len);
	buf_append(&p->archive, bytes->data, bytes->len);
}

/* ---- the rules file --------------------------------------------------------- */

static void test_example_file_loads(void **state)
{
	(void)state;
	/* The shipped example must always load: tests run from the top folder. */
	char path[512];
	const char *self = __FILE__;
	const char *tail = strstr(self, "tests/unit/test_rules.c");
	snprintf(path, sizeof(path), "%.*setc/content-rules.example",
		 tail != NULL ? (int)(tail - self) : 0, self);
	struct scan_rules *r = scan_rules_load(path, stderr);
	assert_non_null(r);
	assert_true(scan_rules_count(r) >= 15);
	scan_rules_free(&r);
}

static void test_syntax_forms(void **state)
{
	(void)state;
	struct scan_rules *r = rules_ok(
		"# a comment\n"
		"\n"
		"rule a-1\n"
		"    extension exe, scr,   # a comment after a comma: the list goes on\n"
		"              PIF .com\n"
		"    reject \"say \\\"no\\\" \\\\ here\"   # comment after the text\n"
		"rule b_2\n"
		"  header Subject /a #b c\\/d/i\n"
		"  tag \"X-Test: yes\"\r\n"
		"rule c.3\n"
		"\tclient 192.0.2.0/24,2001:db8::/32\n"
		"\tsender <> @example.test <Bob@Example.test>\n"
		"\tsize 10k-20k\n"
		"\ttype image/*\n"
		"\tany-header * longer-than 500\n"
		"\tin-archive filename /^x/\n"
		"\tquarantine\n"
		"rule d\n"
		"    header Subject raw /=\\?utf-8\\?/i\n"
		"    warn");
	assert_int_equal(scan_rules_count(r), 4);
	scan_rules_free(&r);
}

/* A stray comma at the end of a list does not swallow the next line when
 * that line is a rule, a test or an action. */
static void test_trailing_comma_before_a_line(void **state)
{
	(void)state;
	struct scan_rules *r = rules_ok("rule a\n extension exe,\n reject\n"
					"rule b\n extension scr,\n\n size 5,\n warn\n"
					"rule c\n extension com,\n type text/plain\n tag\n");
	assert_int_equal(scan_rules_count(r), 3);
	scan_rules_free(&r);
	char *err = first_error("rule a\n extension exe,\nrule b\n extension scr\n reject\n");
	assert_string_equal(err, "rules:1: rule \"a\" has no action: reject, tempfail, discard, "
			    "quarantine, warn or tag");
	free(err);
}

/* Every problem the parser reports, each with its line. */
static void test_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *error;
	} cases[] = {
		{ "extension exe\n",
		  "rules:1: \"extension\" outside a rule: start each rule with a line \"rule NAME\"" },
		{ "rule\n", "rules:1: expected \"rule NAME\", one name" },
		{ "rule a b\n", "rules:1: expected \"rule NAME\", one name" },
		{ "rule -a\n", "rules:1: bad rule name \"-a\": use letters, digits, '-', '_' and '.', "
			       "starting with a letter or digit, at most 64" },
		{ "rule a\n extension exe\n reject\nrule a\n extension exe\n reject\n",
		  "rules:4: rule \"a\" is already defined on line 1" },
		{ "\n\nrule a\n reject\n",
		  "rules:3: rule \"a\" has no test: say what it looks for (e.g. extension exe)" },
		{ "rule a\n extension exe\n",
		  "rules:1: rule \"a\" has no action: reject, tempfail, discard, quarantine, warn "
		  "or tag" },
		{ "rule a\n extension exe\n reject\n warn\n",
		  "rules:4: a second action: rule \"a\" already says reject on line 3" },
		{ "rule a\n frobnicate exe\n reject\n",
		  "rules:2: unknown word \"frobnicate\": expected a test (extension, double-extension, "
		  "filename, trailing-dot-or-space, size, type, declared-type, detected-type, "
		  "encrypted-archive, unreadable-archive, in-archive, header, any-header, sender, "
		  "recipient, client, helo) or an action (reject, tempfail, discard, quarantine, "
		  "warn, tag)" },
		{ "rule a\n extension\n reject\n", "rules:2: extension: expected values after it" },
		{ "rule a\n extension file.exe\n reject\n",
		  "rules:2: \"file.exe\" is not an extension: write exe, not file.exe (the last part "
		  "of a name, after its last dot)" },
		{ "rule a\n extension /exe/\n reject\n",
		  "rules:2: extension cannot be a regex: list the values" },
		{ "rule a\n filename /a/ /b/\n reject\n",
		  "rules:2: filename: one regex only, and nothing after it (use | inside it for "
		  "alternatives)" },
		{ "rule a\n filename x \"y\"\n reject\n",
		  "rules:2: filename: a quoted text among values (mix neither regexes nor quoted "
		  "text with values)" },
		{ "rule a\n filename /(/\n reject\n",
		  "rules:2: bad regex /(/: missing closing parenthesis (at character 2)" },
		{ "rule a\n filename /abc\n reject\n",
		  "rules:2: regex not closed: it must end with / (write \\/ for a slash in it)" },
		{ "rule a\n filename //\n reject\n", "rules:2: empty regex //" },
		{ "rule a\n filename /a/x\n reject\n",
		  "rules:2: unknown regex flag \"x\" (the only flag is i: ignore case)" },
		{ "rule a\n trailing-dot-or-space yes\n reject\n",
		  "rules:2: trailing-dot-or-space takes no value" },
		{ "rule a\n size big\n reject\n",
		  "rules:2: size: expected a size in bytes such as 24576 or 24k, or a range such as "
		  "10k-20k, not \"big\"" },
		{ "rule a\n size 20k-10k\n reject\n",
		  "rules:2: size: expected a size in bytes such as 24576 or 24k, or a range such as "
		  "10k-20k, not \"20k-10k\"" },
		{ "rule a\n size 1 2\n reject\n", "rules:2: size: one size or range only" },
		{ "rule a\n size\n reject\n", "rules:2: size: expected a size after it" },
		{ "rule a\n sender\n reject\n", "rules:2: sender: expected values or a /regex/ after it" },
		{ "rule a\n \"x\"\n reject\n",
		  "rules:2: a line starts with a word (rule, a test or an action), not with a quoted text" },
		{ "rule a\n type exe\n reject\n",
		  "rules:2: \"exe\" is not a content type such as application/zip or image/*" },
		{ "rule a\n detected-type */x\n reject\n",
		  "rules:2: \"*/x\" is not a content type such as application/zip or image/*" },
		{ "rule a\n sender bob\n reject\n",
		  "rules:2: \"bob\" is not an address such as user@example.test, @example.test (any "
		  "address there) or <> (the null sender)" },
		{ "rule a\n client 300.1.1.1\n reject\n",
		  "rules:2: client: \"300.1.1.1\": bad network address (expected addresses or "
		  "networks such as 192.0.2.0/24 or 2001:db8::/32, or a /regex/)" },
		{ "rule a\n header\n reject\n",
		  "rules:2: header: expected a field name (or *) and then longer-than N or a /regex/" },
		{ "rule a\n header Sub:ject /x/\n reject\n",
		  "rules:2: header: \"Sub:ject\" is not a header field name" },
		{ "rule a\n header Date longer-than x\n reject\n",
		  "rules:2: header: longer-than expects one number of characters" },
		{ "rule a\n header Date shorter-than 5\n reject\n",
		  "rules:2: header: after the field name, expected longer-than N, a /regex/ or raw "
		  "/regex/" },
		{ "rule a\n in-archive size 5\n reject\n",
		  "rules:2: in-archive works with the tests of names only: extension, "
		  "double-extension, filename, trailing-dot-or-space" },
		{ "rule a\n in-archive\n reject\n",
		  "rules:2: in-archive: expected a test of names after it: extension, "
		  "double-extension, filename or trailing-dot-or-space" },
		{ "rule a\n extension exe\n reject Not here\n",
		  "rules:3: reject: only a text in double quotes may follow it, e.g. reject \"Not "
		  "accepted here\"" },
		{ "rule a\n extension exe\n reject \"a\" \"b\"\n",
		  "rules:3: reject: only a text in double quotes may follow it, e.g. reject \"Not "
		  "accepted here\"" },
		{ "rule a\n extension exe\n reject \"caf\xc3\xa9\"\n",
		  "rules:3: reject: the text may hold only printable ASCII characters" },
		{ "rule a\n extension exe\n reject \"\"\n",
		  "rules:3: reject: the text is empty (leave it out to get the default)" },
		{ "rule a\n extension exe\n tag \"no colon\"\n",
		  "rules:3: tag: tag: the text must be a header field, \"Name: value\"" },
		{ "rule a\n extension exe\n tag \"X-A:b\"\n",
		  "rules:3: tag: tag: write one space after the colon, then the value" },
		{ "rule a\n extension exe\n reject \"open\n",
		  "rules:3: quoted text not closed with \"" },
		{ "rule a\n extension exe\n reject \"a\\n\"\n",
		  "rules:3: in quoted text a backslash may only come before \" or \\" },
		{ "rule a\n extension exe\n reject \"a\"b\n",
		  "rules:3: expected a space after the closing \"" },
		{ "rule a\n /x/\n reject\n",
		  "rules:2: a line starts with a word (rule, a test or an action), not with a regex" },
		{ "rule a\n extension exe\n reject\n\0\n", "rules:4: line contains a NUL byte" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].text);
		if (strcmp(cases[i].text, "rule a\n extension exe\n reject\n") == 0)
			len += 2; /* the NUL case: the byte after "reject\n" and its line end */
		char *out = NULL;
		size_t outlen = 0;
		FILE *f = open_memstream(&out, &outlen);
		struct scan_rules *r = scan_rules_parse("rules", cases[i].text, len, f);
		fclose(f);
		if (r != NULL)
			fail_msg("case %zu accepted", i);
		out[strcspn(out, "\n")] = '\0';
		if (strcmp(out, cases[i].error) != 0)
			fail_msg("case %zu:\n  got      %s\n  expected %s", i, out, cases[i].error);
		free(out);
	}
}

static void test_long_line_and_many_errors(void **state)
{
	(void)state;
	buf_t text = BUF_INIT;
	buf_puts(&text, "rule a\n extension ");
	for (int i = 0; i < 1000; i++)
		buf_puts(&text, "abcde ");
	buf_puts(&text, "\n reject\n");
	char *err = first_error(buf_cstr(&text));
	assert_string_equal(err, "rules:2: line longer than 4096 bytes");
	free(err);
	buf_free(&text);
	/* Every problem is reported, not only the first. */
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	const char *bad = "rule a\n bogus\n reject\nrule b\n size x\n warn\n";
	assert_null(scan_rules_parse("rules", bad, strlen(bad), f));
	fclose(f);
	assert_non_null(strstr(out, "rules:2: unknown word \"bogus\""));
	assert_non_null(strstr(out, "rules:5: size: expected a size"));
	free(out);
}

/* The bounds of the file: values in a test, rules, reply text, size. */
static void test_file_bounds(void **state)
{
	(void)state;
	buf_t text = BUF_INIT;
	buf_puts(&text, "rule a\n extension ");
	for (int i = 0; i < 4100; i++)
		buf_printf(&text, "e%d,%s", i, i % 100 == 99 ? "\n" : "");
	buf_puts(&text, "x\n reject\n");
	char *err = first_error(buf_cstr(&text));
	assert_string_equal(err, "rules:42: more than 4096 values in one test");
	free(err);

	buf_reset(&text);
	for (int i = 0; i <= SCAN_RULES_MAX; i++)
		buf_printf(&text, "rule r%d\n size %d\n warn\n", i, i);
	err = first_error(buf_cstr(&text));
	assert_string_equal(err, "rules:30001: more than 10000 rules");
	free(err);

	buf_reset(&text);
	buf_puts(&text, "rule a\n extension exe\n reject \"");
	for (int i = 0; i < SCAN_RULES_TEXT_MAX + 1; i++)
		buf_putc(&text, 'x');
	buf_puts(&text, "\"\n");
	err = first_error(buf_cstr(&text));
	assert_string_equal(err, "rules:3: reject: the text is too long");
	free(err);

	buf_reset(&text);
	while (text.len <= SCAN_RULES_FILE_MAX)
		buf_puts(&text, "# a long file of comments, longer than the bound\n");
	err = first_error(buf_cstr(&text));
	assert_string_equal(err, "rules: larger than 1048576 bytes");
	free(err);
	/* The same read from a file. */
	char path[] = "/tmp/postern-test-rules-big-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text.data, text.len), (ssize_t)text.len);
	close(fd);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_null(scan_rules_load(path, f));
	fclose(f);
	char expect[200];
	snprintf(expect, sizeof(expect), "%s: larger than 1048576 bytes\n", path);
	assert_string_equal(out, expect);
	free(out);
	unlink(path);
	buf_free(&text);
}

static void test_missing_file(void **state)
{
	(void)state;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_null(scan_rules_load("/nonexistent/rules", f));
	fclose(f);
	assert_string_equal(out, "/nonexistent/rules: cannot read: No such file or directory\n");
	free(out);
}

/* ---- file names ------------------------------------------------------------- */

static void test_extension(void **state)
{
	(void)state;
	/* Names arrive decoded: "=?utf-8?q?Rechnung_M=C3=A4rz.EXE?=" (RFC 2047) and
	 * filename*=utf-8''%D1%81%D1%87%D0%B5%D1%82.Exe (RFC 2231). */
	assert_true(name_hits("extension exe", "Rechnung M\xc3\xa4rz.EXE"));
	assert_true(name_hits("extension exe", "\xd1\x81\xd1\x87\xd0\xb5\xd1\x82.Exe"));
	assert_true(name_hits("extension exe scr", "photo.scr"));
	assert_true(name_hits("extension .exe", "a.exe"));
	assert_true(name_hits("extension exe", "C:\\temp\\a.exe"));
	assert_true(name_hits("extension exe", "dir/a.exe"));
	/* Windows drops trailing dots and spaces: still an exe. */
	assert_true(name_hits("extension exe", "a.exe."));
	assert_true(name_hits("extension exe", "a.exe . . "));
	assert_false(name_hits("extension exe", "a.exe.txt"));
	assert_false(name_hits("extension exe", "exe"));
	assert_false(name_hits("extension exe", "a.exex"));
	assert_false(name_hits("extension exe", "r\xc3\xa9sum\xc3\xa9.pdf"));
	/* A lookalike letter (Cyrillic "е") is not the extension Windows runs. */
	assert_false(name_hits("extension exe", "a.\xd0\xb5xe"));
}

static void test_double_extension(void **state)
{
	(void)state;
	const char *t = "double-extension exe scr";
	assert_true(name_hits(t, "invoice.pdf.exe"));
	assert_true(name_hits(t, "Invoice.PDF.EXE"));
	assert_true(name_hits(t, "photo.jpeg     .scr"));
	assert_true(name_hits(t, "invoice.pdf.exe."));
	assert_true(name_hits(t, "Rechnung M\xc3\xa4rz.docx.exe"));
	assert_false(name_hits(t, "invoice.exe"));
	assert_false(name_hits(t, "setup-1.2.exe"));   /* a version number */
	assert_false(name_hits(t, "archive.tar.gz"));  /* gz not listed */
	assert_false(name_hits(t, "notes.backup1.exe")); /* 7 characters: not a type */
	assert_false(name_hits(t, "invoice.pdf"));
}

static void test_trailing_dot_or_space(void **state)
{
	(void)state;
	const char *t = "trailing-dot-or-space";
	assert_true(name_hits(t, "report.exe."));
	assert_true(name_hits(t, "report.exe "));
	assert_true(name_hits(t, "report.pdf\t"));
	assert_false(name_hits(t, "report.exe"));
	assert_false(name_hits(t, "report. exe"));
}

static void test_filename_and_size(void **state)
{
	(void)state;
	assert_true(name_hits("filename Invoice.ZIP other.zip", "invoice.zip"));
	assert_false(name_hits("filename invoice.zip", "invoice.zip.exe"));
	assert_true(name_hits("filename /^scan_\\d+\\.zip$/i", "SCAN_0412.ZIP"));
	assert_false(name_hits("filename /^scan_\\d+\\.zip$/", "SCAN_0412.ZIP"));
	/* UTF-8 in a regex and in the name. */
	assert_true(name_hits("filename /^Rechnung M\xc3\xa4rz/", "Rechnung M\xc3\xa4rz.pdf"));
	assert_true(name_hits("filename /\\x{202E}/", "invoice\xe2\x80\xae" "fdp.exe"));
	/* name_hits' attachment is 100 bytes. */
	assert_true(name_hits("filename a.zip\n size 100", "a.zip"));
	assert_false(name_hits("filename a.zip\n size 101", "a.zip"));
	assert_true(name_hits("size 50-100", "x"));
	assert_false(name_hits("size 1k-2k", "x"));
}

static void test_tests_hold_for_the_same_part(void **state)
{
	(void)state;
	struct msg b;
	msg_init(&b);
	add_part(&b, "application/zip", NULL, "a.zip", 50);
	add_part(&b, "application/zip", NULL, "b.zip", 100);
	assert_false(hits("rule t\n filename a.zip\n size 100\n reject\n", &b));
	assert_true(hits("rule t\n filename b.zip\n size 100\n reject\n", &b));
	msg_free(&b);
}

/* ---- types ------------------------------------------------------------------ */

static void test_types(void **state)
{
	(void)state;
	struct msg b;
	msg_init(&b);
	add_part(&b, "text/plain", "text/plain", NULL, 10);
	/* An exe renamed .txt: the bytes say what it is. */
	add_part(&b, "text/plain", "application/x-dosexec", "notes.txt", 4096);
	assert_true(hits("rule t\n detected-type application/x-dosexec\n reject\n", &b));
	assert_true(hits("rule t\n type application/x-dosexec\n reject\n", &b));
	assert_false(hits("rule t\n declared-type application/x-dosexec\n reject\n", &b));
	assert_true(hits("rule t\n declared-type TEXT/*\n reject\n", &b));
	assert_false(hits("rule t\n type image/*\n reject\n", &b));
	/* Both tests on the same part: the exe, not the body. */
	assert_true(hits("rule t\n type application/x-dosexec\n extension txt\n reject\n", &b));
	msg_free(&b);

	/* message/partial, as the whole message (part 0) or as a part. */
	msg_init(&b);
	b.parts[0].content_type = (char *)"message/partial";
	b.parts[0].multipart = false;
	assert_true(hits("rule t\n type message/partial\n reject\n", &b));
	msg_free(&b);
	msg_init(&b);
	add_part(&b, "message/partial", NULL, NULL, 500);
	assert_true(hits("rule t\n type message/partial\n reject\n", &b));
	msg_free(&b);
}

/* ---- headers ---------------------------------------------------------------- */

static void test_headers(void **state)
{
	(void)state;
	struct msg b;
	msg_init(&b);
	add_header(&b, 0, "Subject", "=?utf-8?q?Gewinn_f=C3=BCr_Sie?=", "Gewinn f\xc3\xbcr Sie");
	add_header(&b, 0, "Date", "Mon, 1 Jan 2024 10:00:00 +0000", NULL);
	add_part(&b, "message/rfc822", NULL, NULL, 300);
	add_header(&b, 1, "X-Inner", "inner value", NULL);
	/* The decoded value, ignoring case; or the raw one. */
	assert_true(hits("rule t\n header subject /gewinn f\xc3\xbcr/i\n reject\n", &b));
	assert_false(hits("rule t\n header Subject /gewinn/\n reject\n", &b));
	assert_true(hits("rule t\n header Subject raw /=\\?utf-8\\?q\\?/\n reject\n", &b));
	assert_false(hits("rule t\n header Subject /=\\?utf-8/\n reject\n", &b));
	assert_true(hits("rule t\n header * /^Mon,/\n reject\n", &b));
	/* header: the message's own fields; any-header: the parts' too. */
	assert_false(hits("rule t\n header X-Inner /inner/\n reject\n", &b));
	assert_true(hits("rule t\n any-header X-Inner /inner/\n reject\n", &b));
	assert_false(hits("rule t\n header Date longer-than 30\n reject\n", &b));
	assert_true(hits("rule t\n header Date longer-than 29\n reject\n", &b));
	msg_free(&b);

	/* Bytes that are not UTF-8 (an unknown charset kept as written) are
	 * matched around, never an error. */
	msg_init(&b);
	add_header(&b, 0, "Subject", "=?x-unknown?b?...?= \xff\xfe caf\xe9 offer", NULL);
	assert_true(hits("rule t\n header Subject /offer$/\n reject\n", &b));
	assert_false(hits("rule t\n header Subject /^caf/\n reject\n", &b));
	msg_free(&b);

	/* The old overflow attack: an endless Date in an attached message. */
	msg_init(&b);
	char long_date[2001];
	memset(long_date, 'A', 2000);
	long_date[2000] = '\0';
	add_part(&b, "message/rfc822", NULL, NULL, 3000);
	add_header(&b, 1, "Date", long_date, NULL);
	assert_false(hits("rule t\n header Date longer-than 200\n reject\n", &b));
	assert_true(hits("rule t\n any-header date longer-than 200\n reject\n", &b));
	msg_free(&b);
}

/* A pathological regex on a long value: bounded, and counted as no match. */
static void test_regex_limits(void **state)
{
	(void)state;
	struct msg b;
	msg_init(&b);
	size_t n = 100000;
	char *value = malloc(n + 2);
	memset(value, 'a', n);
	value[n] = '!';
	value[n + 1] = '\0';
	add_header(&b, 0, "Subject", value, NULL);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct scan_verdict v;
	judge_text("rule t\n header Subject /^(a+)+$/\n reject\n"
		   "rule u\n header Subject /(a|aa)+b/\n reject\n"
		   "rule w\n header Subject /a!/\n warn\n", &b, &v);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	assert_true(ms < 2000);
	assert_int_equal(v.action, SCAN_ACCEPT);
	assert_false(has_item(&v.hits, "rule:t"));
	assert_false(has_item(&v.hits, "rule:u"));
	assert_true(has_item(&v.hits, "rule:w")); /* the next rules still run */
	verdict_free(&v);
	free(value);
	msg_free(&b);
}

/* ---- the envelope ------------------------------------------------------------- */

static void test_envelope(void **state)
{
	(void)state;
	struct msg b;
	msg_init(&b);
	strlist_add(&b.rcpts, "Bob@Example.test");
	assert_true(hits("rule t\n sender someone@REMOTE.test\n reject\n", &b));
	assert_true(hits("rule t\n sender @remote.test\n reject\n", &b));
	assert_false(hits("rule t\n sender @mote.test\n reject\n", &b));
	assert_false(hits("rule t\n sender <>\n reject\n", &b));
	assert_true(hits("rule t\n sender /^some/\n reject\n", &b));
	assert_true(hits("rule t\n recipient bob@example.test\n reject\n", &b));
	assert_true(hits("rule t\n recipient /^alice@/\n reject\n", &b));
	assert_false(hits("rule t\n recipient carol@example.test\n reject\n", &b));
	assert_true(hits("rule t\n client 198.51.100.0/24\n reject\n", &b));
	assert_false(hits("rule t\n client 198.51.101.0/24 2001:db8::/32\n reject\n", &b));
	assert_true(hits("rule t\n client /^198\\.51\\./\n reject\n", &b));
	assert_true(hits("rule t\n helo CLIENT.remote.test\n reject\n", &b));
	assert_true(hits("rule t\n helo /\\.test$/\n reject\n", &b));
	/* All tests must hold. */
	assert_false(hits("rule t\n sender @remote.test\n client 10.0.0.0/8\n reject\n", &b));
	b.env.sender = "";
	b.env.client_addr = "2001:db8::25";
	assert_true(hits("rule t\n sender <>\n reject\n", &b));
	assert_true(hits("rule t\n client 2001:db8::/32\n reject\n", &b));
	msg_free(&b);
}

/* ---- actions ------------------------------------------------------------------ */

static void exe_message(struct msg *b)
{
	msg_init(b);
	add_part(b, "text/plain", "text/plain", NULL, 10);
	add_part(b, "application/octet-stream", "application/x-dosexec", "invoice.pdf.exe", 4096);
}

static void test_reject_and_tempfail(void **state)
{
	(void)state;
	struct msg b;
	exe_message(&b);
	struct scan_verdict v;
	judge_text("rule no-exe\n extension exe\n reject \"Programs are not accepted\"\n", &b, &v);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.status, "5.7.1");
	assert_string_equal(v.text, "Programs are not accepted");
	assert_string_equal(v.reason, "content_rule");
	assert_true(has_item(&v.hits, "rule:no-exe"));
	verdict_free(&v);
	judge_text("rule no-exe\n extension exe\n reject\n", &b, &v);
	assert_string_equal(v.text, "message refused by content rule no-exe");
	verdict_free(&v);
	judge_text("rule later\n extension exe\n tempfail\n", &b, &v);
	assert_int_equal(v.action, SCAN_TEMPFAIL);
	assert_int_equal(v.code, 451);
	assert_string_equal(v.status, "4.7.1");
	assert_string_equal(v.text, "message deferred by content rule later, try again later");
	verdict_free(&v);
	msg_free(&b);
}

static void test_discard_and_quarantine(void **state)
{
	(void)state;
	struct msg b;
	exe_message(&b);
	struct scan_verdict v;
	judge_text("rule d\n extension exe\n discard\n", &b, &v);
	assert_int_equal(v.action, SCAN_DISCARD);
	assert_string_equal(v.reason, "content_rule");
	assert_string_equal(v.text, "content rule d");
	verdict_free(&v);
	judge_text("rule q\n extension exe\n quarantine \"held for review\"\n", &b, &v);
	assert_int_equal(v.action, SCAN_QUARANTINE);
	assert_string_equal(v.text, "held for review");
	assert_true(has_item(&v.hits, "rule:q"));
	verdict_free(&v);
	msg_free(&b);
}

/* Run f with stderr sent to a file; return what was written (malloc'ed). */
static char *capture_stderr(const char *rules_text, struct msg *b, struct scan_verdict *v)
{
	char path[] = "/tmp/postern-test-rules-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	judge_text(rules_text, b, v);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	buf_t log = BUF_INIT;
	char chunk[4096];
	ssize_t k;
	lseek(fd, 0, SEEK_SET);
	while ((k = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(&log, chunk, (size_t)k);
	close(fd);
	unlink(path);
	return buf_steal(&log);
}

static void test_warn_logs_only(void **state)
{
	(void)state;
	struct msg b;
	exe_message(&b);
	struct scan_verdict v;
	char *log = capture_stderr("rule try-exe\n extension exe\n warn \"would refuse\"\n", &b, &v);
	assert_int_equal(v.action, SCAN_ACCEPT);
	assert_int_equal(v.code, 0);
	assert_int_equal(v.headers.count, 0);
	assert_true(has_item(&v.hits, "rule:try-exe"));
	assert_non_null(strstr(log, "TESTQUEUEID: content rule: rule=try-exe action=warn part=2 "
				    "filename=\"invoice.pdf.exe\" type=application/octet-stream "
				    "detected=application/x-dosexec text=\"would refuse\""));
	free(log);
	verdict_free(&v);
	msg_free(&b);
}

static void test_tag(void **state)
{
	(void)state;
	struct msg b;
	exe_message(&b);
	struct scan_verdict v;
	judge_text("rule mark\n extension exe\n tag\n"
		   "rule mark2\n type application/x-dosexec\n tag \"X-Suspect: program\"\n", &b, &v);
	assert_int_equal(v.action, SCAN_TAG);
	assert_int_equal(v.headers.count, 2);
	assert_string_equal(v.headers.items[0], "X-Postern-Rule: mark");
	assert_string_equal(v.headers.items[1], "X-Suspect: program");
	verdict_free(&v);
	msg_free(&b);
}

/* The first blocking rule decides; every warn and tag rule applies. */
static void test_precedence(void **state)
{
	(void)state;
	struct msg b;
	exe_message(&b);
	struct scan_verdict v;
	judge_text("rule w1\n extension exe\n warn\n"
		   "rule clean\n extension pdf\n reject \"not this one\"\n"
		   "rule first\n double-extension exe\n quarantine\n"
		   "rule second\n extension exe\n reject \"too late\"\n"
		   "rule t1\n extension exe\n tag\n"
		   "rule w2\n type application/x-dosexec\n warn\n", &b, &v);
	assert_int_equal(v.action, SCAN_QUARANTINE);
	assert_string_equal(v.text, "content rule first");
	assert_true(has_item(&v.hits, "rule:w1"));
	assert_true(has_item(&v.hits, "rule:first"));
	assert_false(has_item(&v.hits, "rule:second"));
	assert_false(has_item(&v.hits, "rule:clean"));
	assert_true(has_item(&v.hits, "rule:t1"));
	assert_true(has_item(&v.hits, "rule:w2"));
	assert_true(has_item(&v.headers, "X-Postern-Rule: t1")); /* kept on quarantine */
	verdict_free(&v);
	msg_free(&b);
}

/* A clean message passes the shipped example untouched. */
static void test_clean_message_passes_example(void **state)
{
	(void)state;
	char path[512];
	const char *self = __FILE__;
	const char *tail = strstr(self, "tests/unit/test_rules.c");
	snprintf(path, sizeof(path), "%.*setc/content-rules.example",
		 tail != NULL ? (int)(tail - self) : 0, self);
	struct scan_rules *r = scan_rules_load(path, stderr);
	assert_non_null(r);
	struct msg b;
	msg_init(&b);
	add_header(&b, 0, "Date", "Tue, 2 Jan 2024 09:30:00 +0100", NULL);
	add_header(&b, 0, "MIME-Version", "1.0", NULL);
	add_header(&b, 0, "Subject", "Quarterly report", NULL);
	add_part(&b, "text/plain", "text/plain", NULL, 400);
	add_part(&b, "application/pdf", "application/pdf", "report.final.pdf", 90000);
	add_part(&b, "image/jpeg", "image/jpeg", "photo 2024.01.02.jpg", 200000);
	buf_t zip = BUF_INIT;
	struct entry docs[] = { { "docs/minutes.txt", "minutes", 7 },
				{ "docs/budget.xlsx", "PK..", 4 } };
	make_archive(&zip, "zip", NULL, docs, 2);
	attach_archive(&b, "docs.zip", &zip);
	struct scan_verdict v;
	verdict_init(&v);
	scan_rules_judge(r, &b.m, &v);
	assert_int_equal(v.action, SCAN_ACCEPT);
	if (v.hits.count != 0)
		fail_msg("a clean message hit %s", v.hits.items[0]);
	verdict_free(&v);
	/* ... and the same message with a program in the zip does not. */
	struct entry bad[] = { { "docs/minutes.txt", "minutes", 7 },
			       { "docs/setup.EXE", pe_bytes, sizeof(pe_bytes) } };
	make_archive(&zip, "zip", NULL, bad, 2);
	buf_reset(&b.parts[b.np - 1].archive);
	buf_append(&b.parts[b.np - 1].archive, zip.data, zip.len);
	verdict_init(&v);
	scan_rules_judge(r, &b.m, &v);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_true(has_item(&v.hits, "rule:programs-in-archive"));
	verdict_free(&v);
	buf_free(&zip);
	msg_free(&b);
	scan_rules_free(&r);
}

/* ---- archives ------------------------------------------------------------------ */

static void test_archive_listing(void **state)
{
	(void)state;
	buf_t a = BUF_INIT;
	struct entry e[] = { { "readme.txt", "hello", 5 }, { "bin/Invoice.PDF.exe", pe_bytes, 20 } };
	const char *formats[] = { "zip", "7z", "tar.gz" };
	for (size_t f = 0; f < 3; f++) {
		make_archive(&a, formats[f], NULL, e, 2);
		struct scan_rules_archive_listing l;
		list(&a, &l);
		if (l.unreadable)
			fail_msg("%s: %s", formats[f], l.problem);
		assert_int_equal(l.count, 2);
		assert_string_equal(l.members[1].name, "bin/Invoice.PDF.exe");
		assert_int_equal(l.members[1].depth, 1);
		assert_false(l.encrypted);
		scan_rules_archive_listing_free(&l);
	}
	buf_free(&a);
}

static void test_in_archive_rules(void **state)
{
	(void)state;
	buf_t a = BUF_INIT;
	struct entry e[] = { { "readme.txt", "hello", 5 }, { "bin/Invoice.PDF.exe", pe_bytes, 20 } };
	make_archive(&a, "zip", NULL, e, 2);
	struct msg b;
	msg_init(&b);
	attach_archive(&b, "files.zip", &a);
	assert_true(hits("rule t\n in-archive extension exe\n reject\n", &b));
	assert_true(hits("rule t\n in-archive double-extension exe\n reject\n", &b));
	assert_true(hits("rule t\n in-archive filename /^invoice/i\n reject\n", &b));
	assert_true(hits("rule t\n filename files.zip\n in-archive extension exe\n reject\n", &b));
	assert_false(hits("rule t\n filename other.zip\n in-archive extension exe\n reject\n", &b));
	/* The in-archive tests hold for one name: not readme.txt's name with the exe's extension. */
	assert_false(hits("rule t\n in-archive extension exe\n in-archive filename readme.txt\n"
			  " reject\n", &b));
	/* The attachment's own name is not a name inside. */
	assert_false(hits("rule t\n in-archive extension zip\n reject\n", &b));
	assert_false(hits("rule t\n extension exe\n reject\n", &b));
	assert_false(hits("rule t\n encrypted-archive\n reject\n", &b));
	assert_false(hits("rule t\n unreadable-archive\n reject\n", &b));
	msg_free(&b);
	buf_free(&a);
}

static void test_nested_archives(void **state)
{
	(void)state;
	buf_t inner = BUF_INIT, middle = BUF_INIT, outer = BUF_INIT;
	struct entry e1[] = { { "deep/run.scr", pe_bytes, 20 } };
	make_archive(&inner, "zip", NULL, e1, 1);
	/* The inner zip's name says nothing: it is found by its first bytes. */
	struct entry e2[] = { { "notes.txt", "x", 1 }, { "data.bin", inner.data, inner.len } };
	make_archive(&middle, "tar.gz", NULL, e2, 2);
	struct entry e3[] = { { "stuff.tgz", middle.data, middle.len } };
	make_archive(&outer, "zip", NULL, e3, 1);
	struct scan_rules_archive_listing l;
	list(&outer, &l);
	assert_false(l.unreadable);
	assert_int_equal(l.count, 4);
	assert_string_equal(l.members[3].name, "deep/run.scr");
	assert_int_equal(l.members[3].depth, 3);
	scan_rules_archive_listing_free(&l);

	struct msg b;
	msg_init(&b);
	attach_archive(&b, "outer.zip", &outer);
	assert_true(hits("rule t\n in-archive extension scr\n reject\n", &b));
	msg_free(&b);

	/* Deeper than the bound: the names seen are kept, the rest is unreadable. */
	struct scan_rules_archive_limits lim = scan_rules_archive_default_limits;
	lim.max_depth = 2;
	scan_rules_archive_list(outer.data, outer.len, &lim, &l);
	assert_true(l.unreadable);
	assert_string_equal(l.problem, "archives nested deeper than 2");
	assert_int_equal(l.count, 3);
	scan_rules_archive_listing_free(&l);
	buf_free(&inner);
	buf_free(&middle);
	buf_free(&outer);
}

static void test_encrypted_archives(void **state)
{
	(void)state;
	buf_t a = BUF_INIT;
	struct entry e[] = { { "secret.exe", pe_bytes, 20 } };
	const char *passwords[] = { "infected", "aes256:infected" };
	for (size_t i = 0; i < 2; i++) {
		make_archive(&a, "zip", passwords[i], e, 1);
		struct msg b;
		msg_init(&b);
		attach_archive(&b, "locked.zip", &a);
		struct scan_verdict v;
		judge_text("rule t\n encrypted-archive\n quarantine \"password-protected archive\"\n"
			   "rule n\n in-archive extension exe\n warn\n"
			   "rule u\n unreadable-archive\n warn\n", &b, &v);
		assert_int_equal(v.action, SCAN_QUARANTINE);
		assert_true(has_item(&v.hits, "rule:t"));
		/* The names of an encrypted zip are still there to see. */
		assert_true(has_item(&v.hits, "rule:n"));
		assert_false(has_item(&v.hits, "rule:u"));
		verdict_free(&v);
		msg_free(&b);
	}
	buf_free(&a);
}

static void test_damaged_archives(void **state)
{
	(void)state;
	buf_t a = BUF_INIT;
	struct entry e[] = { { "one.txt", "one", 3 }, { "two.exe", pe_bytes, 20 } };
	make_archive(&a, "7z", NULL, e, 2);
	struct scan_rules_archive_listing l;
	/* Every prefix of a 7z and of a zip, and flipped bytes: never a crash. */
	for (size_t n = 0; n < a.len; n += 7) {
		scan_rules_archive_list(a.data, n, &scan_rules_archive_default_limits, &l);
		assert_true(l.unreadable);
		scan_rules_archive_listing_free(&l);
	}
	make_archive(&a, "zip", NULL, e, 2);
	for (size_t n = 0; n < a.len; n += 5) {
		buf_t copy = BUF_INIT;
		buf_append(&copy, a.data, a.len);
		copy.data[n] ^= 0x5a;
		scan_rules_archive_list(copy.data, copy.len, &scan_rules_archive_default_limits, &l);
		scan_rules_archive_listing_free(&l);
		scan_rules_archive_list(copy.data, n, &scan_rules_archive_default_limits, &l);
		scan_rules_archive_listing_free(&l);
		buf_free(&copy);
	}
	/* Not an archive at all. */
	scan_rules_archive_list("just some text", 14, &scan_rules_archive_default_limits, &l);
	assert_true(l.unreadable);
	assert_int_equal(l.count, 0);
	scan_rules_archive_listing_free(&l);

	struct msg b;
	msg_init(&b);
	struct scan_part *p = add_part(&b, "application/zip", NULL, "broken.zip", 10);
	buf_append(&p->archive, "PK\3\4garbage", 11);
	assert_true(hits("rule t\n unreadable-archive\n reject\n", &b));
	assert_false(hits("rule t\n in-archive extension exe\n reject\n", &b));
	msg_free(&b);

	/* Kept only in part by the MIME pass (past scan_archive_max_bytes). */
	make_archive(&a, "zip", NULL, e, 2);
	msg_init(&b);
	attach_archive(&b, "big.zip", &a);
	b.parts[1].archive_truncated = true;
	assert_true(hits("rule t\n unreadable-archive\n reject\n", &b));
	msg_free(&b);
	buf_free(&a);
}

/* A single compressed file (log.gz) is no archive and not unreadable. */
static void test_single_compressed_file(void **state)
{
	(void)state;
	struct archive *w = archive_write_new();
	archive_write_set_format_raw(w);
	archive_write_add_filter_gzip(w);
	char out[4096];
	size_t used = 0;
	archive_write_open_memory(w, out, sizeof(out), &used);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "log");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_size(e, 12);
	archive_write_header(w, e);
	archive_write_data(w, "line one\nend", 12);
	archive_entry_free(e);
	archive_write_close(w);
	archive_write_free(w);
	struct scan_rules_archive_listing l;
	scan_rules_archive_list(out, used, &scan_rules_archive_default_limits, &l);
	assert_false(l.unreadable);
	assert_int_equal(l.count, 0);
	scan_rules_archive_listing_free(&l);
}

/* Bombs: too many names, too many bytes to decompress, past the time. */
static void test_archive_bounds(void **state)
{
	(void)state;
	struct entry many[50];
	char names[50][24];
	for (int i = 0; i < 50; i++) {
		snprintf(names[i], sizeof(names[i]), "f%02d.txt", i);
		many[i] = (struct entry){ names[i], "x", 1 };
	}
	buf_t a = BUF_INIT;
	make_archive(&a, "zip", NULL, many, 50);
	struct scan_rules_archive_limits lim = scan_rules_archive_default_limits;
	lim.max_entries = 20;
	struct scan_rules_archive_listing l;
	scan_rules_archive_list(a.data, a.len, &lim, &l);
	assert_true(l.unreadable);
	assert_string_equal(l.problem, "more than 20 names");
	assert_int_equal(l.count, 20);
	scan_rules_archive_listing_free(&l);

	/* 16 MiB of zeros in a tar.gz of about 16 KiB: stopped at the byte bound. */
	size_t big = 16u << 20;
	char *zeros = calloc(1, big);
	struct entry e[] = { { "zeros.bin", zeros, big }, { "after.exe", pe_bytes, 20 } };
	make_archive(&a, "tar.gz", NULL, e, 2);
	free(zeros);
	lim = scan_rules_archive_default_limits;
	lim.max_bytes = 4u << 20;
	scan_rules_archive_list(a.data, a.len, &lim, &l);
	assert_true(l.unreadable);
	assert_string_equal(l.problem, "more than 4194304 bytes to decompress");
	assert_int_equal(l.count, 1);
	scan_rules_archive_listing_free(&l);
	/* The time bound. */
	lim = scan_rules_archive_default_limits;
	lim.max_ms = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	scan_rules_archive_list(a.data, a.len, &lim, &l);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(l.unreadable);
	assert_string_equal(l.problem, "out of time");
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	scan_rules_archive_listing_free(&l);
	/* An inner archive larger than the bound is not held in memory. */
	lim = scan_rules_archive_default_limits;
	lim.max_inner_bytes = 100;
	struct entry in[] = { { "inner.zip", a.data, a.len } };
	buf_t outer = BUF_INIT;
	make_archive(&outer, "zip", NULL, in, 1);
	scan_rules_archive_list(outer.data, outer.len, &lim, &l);
	assert_true(l.unreadable);
	assert_string_equal(l.problem, "inner.zip: an inner archive larger than 100 bytes");
	scan_rules_archive_listing_free(&l);
	buf_free(&outer);
	buf_free(&a);
}

/* ---- the stage ------------------------------------------------------------------ */

TESTUTIL_PRIVATE_DIR("rules")

static char *write_rules(const char *text)
{
	static char path[300];
	snprintf(path, sizeof(path), "%s/content-rules", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_stage(void **state)
{
	(void)state;
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	struct scan_stage stage;
	char *err = NULL;
	cfg.content_rules_file = (char *)"";
	assert_int_equal(scan_rules_stage_new(&cfg, &stage, &err), 1);
	assert_int_equal(scan_rules_check(&cfg, stderr), 0);

	cfg.content_rules_file = write_rules("rule a\n extension exe\n reject\n");
	assert_int_equal(scan_rules_stage_new(&cfg, &stage, &err), 0);
	assert_string_equal(stage.name, "rules");
	assert_null(stage.stale);
	struct msg b;
	exe_message(&b);
	struct scan_verdict v;
	verdict_init(&v);
	assert_int_equal(stage.run(stage.ctx, &b.m, &v), 0);
	assert_int_equal(v.action, SCAN_REJECT);
	verdict_free(&v);
	msg_free(&b);
	stage.free(stage.ctx);

	/* A wrong file: the first problem names file and line, and how many follow. */
	char *path = write_rules("rule a\n extension exe\n reject\nrule b\n bogus\n reject\n"
				 "rule c\n size x\n warn\n");
	cfg.content_rules_file = path;
	assert_int_equal(scan_rules_stage_new(&cfg, &stage, &err), -1);
	char expect[600];
	snprintf(expect, sizeof(expect), "%s:5: unknown word \"bogus\"", path);
	assert_non_null(strstr(err, expect));
	assert_non_null(strstr(err, "(and 1 more problem: postern check-config lists them)"));
	assert_null(strchr(err, '\n'));
	free(err);
	FILE *devnull = fopen("/dev/null", "w");
	assert_int_equal(scan_rules_check(&cfg, devnull), 2);
	fclose(devnull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_file_loads),
		cmocka_unit_test(test_syntax_forms),
		cmocka_unit_test(test_trailing_comma_before_a_line),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_long_line_and_many_errors),
		cmocka_unit_test(test_file_bounds),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_extension),
		cmocka_unit_test(test_double_extension),
		cmocka_unit_test(test_trailing_dot_or_space),
		cmocka_unit_test(test_filename_and_size),
		cmocka_unit_test(test_tests_hold_for_the_same_part),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_regex_limits),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_reject_and_tempfail),
		cmocka_unit_test(test_discard_and_quarantine),
		cmocka_unit_test(test_warn_logs_only),
		cmocka_unit_test(test_tag),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_clean_message_passes_example),
		cmocka_unit_test(test_archive_listing),
		cmocka_unit_test(test_in_archive_rules),
		cmocka_unit_test(test_nested_archives),
		cmocka_unit_test(test_encrypted_archives),
		cmocka_unit_test(test_damaged_archives),
		cmocka_unit_test(test_single_compressed_file),
		cmocka_unit_test(test_archive_bounds),
		cmocka_unit_test(test_stage),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
