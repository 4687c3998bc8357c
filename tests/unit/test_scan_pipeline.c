/*
 * test_scan_pipeline.c - the content pipeline (scan.c) with fake stages:
 * how their answers merge (header fields and hits add up, TAG goes on,
 * the first refusal or disposition decides and the later stages do not
 * run), a stage that cannot work (451 4.7.0, or accepted under
 * scan_fail_open, unless a later stage condemns the message), the MIME
 * bounds (refused or tempfailed as mime_limit_action says, before any
 * stage runs), the verdict's normal form, timings, staleness and freeing;
 * and the MIME pass's archive keeping (what looks like an archive, the
 * scan_archive_max_bytes budget), and the text it keeps for the spam tests
 * (within spam_max_text).
 */
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

#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "scan/scan.h"
#include "scan/scan_message.h"

/* A stage that answers what it is told and remembers what it saw. */
struct fake {
	const char *name;
	int rc;
	enum scan_action action;
	int code;
	const char *status, *text, *reason;
	const char *header, *hit;
	const char *remove; /* a header name to remove */
	bool stale;
	unsigned runs, freed;
	size_t seen_len;
	char seen_sender[64];
	size_t seen_parts;
	struct scan_part seen_archive; /* the first part with archive bytes */
	bool saw_archive;
	char seen_archive_bytes[64];
	char seen_text[64];        /* the first part's text, for the spam tests */
	bool seen_text_truncated;
	char seen_pdf_type[64];    /* the sniffed type of the part named c.pdf, or "" */
	bool ignores_types;
};

static int fake_run(void *ctx, const struct scan_message *m, struct scan_verdict *v)
{
	struct fake *f = ctx;
	f->runs++;
	f->seen_len = m->len;
	snprintf(f->seen_sender, sizeof(f->seen_sender), "%s", m->env->sender);
	f->seen_parts = m->part_count;
	if (m->part_count > 0) {
		snprintf(f->seen_text, sizeof(f->seen_text), "%.*s", (int)m->parts[0].text.len,
			 m->parts[0].text.data != NULL ? m->parts[0].text.data : "");
		f->seen_text_truncated = m->parts[0].text_truncated;
	}
	f->seen_pdf_type[0] = '\0';
	for (size_t i = 0; i < m->part_count; i++)
		if (m->parts[i].filename != NULL && strcmp(m->parts[i].filename, "c.pdf") == 0 &&
		    m->parts[i].sniffed_type != NULL)
			snprintf(f->seen_pdf_type, sizeof(f->seen_pdf_type), "%s",
				 m->parts[i].sniffed_type);
	for (size_t i = 0; i < m->part_count && !f->saw_archive; i++) {
		if (m->parts[i].archive.len == 0 && !m->parts[i].archive_truncated)
			continue;
		f->saw_archive = true;
		f->seen_archive = m->parts[i];
		snprintf(f->seen_archive_bytes, sizeof(f->seen_archive_bytes), "%.*s",
			 (int)m->parts[i].archive.len, m->parts[i].archive.data);
	}
	if (f->rc < 0) {
		snprintf(v->text, sizeof(v->text), "engine is down");
		return -1;
	}
	scan_verdict_set(v, f->action, f->code, f->status != NULL ? f->status : "",
			 f->reason != NULL ? f->reason : "", "%s", f->text != NULL ? f->text : "");
	if (f->header != NULL)
		strlist_add(&v->headers, f->header); /* unchecked, as a careless stage might */
	if (f->hit != NULL)
		scan_verdict_add_hit(v, f->hit);
	if (f->remove != NULL)
		strlist_add(&v->remove_headers, f->remove); /* unchecked too */
	return 0;
}

static bool fake_stale(void *ctx)
{
	return ((struct fake *)ctx)->stale;
}

static void fake_free(void *ctx)
{
	((struct fake *)ctx)->freed++;
}

static void add_fake(struct scan_pipeline *p, struct fake *f)
{
	struct scan_stage s = { f->name, fake_run, fake_stale, fake_free, f, f->ignores_types };
	scan_pipeline_add(p, &s);
}

static char *dir;
static struct config cfg;

static struct scan_pipeline *pipeline(const char *extra_config)
{
	char tmpl[] = "/tmp/postern-test-scan-pipeline-XXXXXX";
	dir = xstrdup(mkdtemp(tmpl));
	char *conf = safeio_path_join(dir, "postern.conf");
	FILE *f = fopen(conf, "w");
	fprintf(f, "hostname = mx.example.test\nspool_dir = spool\n%s", extra_config);
	fclose(f);
	assert_int_equal(config_load(conf, &cfg, stderr), 0);
	free(conf);
	char *err = NULL;
	struct scan_pipeline *p = scan_pipeline_build(&cfg, &err);
	assert_non_null(p);
	assert_int_equal(scan_pipeline_stage_count(p), 0); /* no stage configured */
	return p;
}

static void done(struct scan_pipeline **p)
{
	scan_pipeline_free(p);
	config_free(&cfg);
	testutil_rmtree(dir);
	xfree(&dir);
}

static const struct scan_envelope env = { "660E4F4D8510C00426E", "sender@remote.test", NULL,
					  "192.0.2.1", "client.test" };
static const char plain[] = "From: <a@remote.test>\nSubject: hello\n\nJust text.\n";

static void run(struct scan_pipeline *p, const char *msg, size_t len, struct scan_verdict *v)
{
	scan_verdict_init(v);
	scan_pipeline_run(p, &env, (const unsigned char *)msg, len, v);
}

static bool has_timing(const struct scan_verdict *v, const char *stage)
{
	for (size_t i = 0; i < v->timing_count; i++)
		if (strcmp(v->timings[i].stage, stage) == 0)
			return true;
	return false;
}

/* ---- the tests --------------------------------------------------------------------- */

static void test_stages_see_text_within_spam_max_text(void **state)
{
	(void)state;
	struct scan_pipeline *p = pipeline("");
	struct fake f = { .name = "spam", .action = SCAN_ACCEPT };
	add_fake(p, &f);
	struct scan_verdict v;
	run(p, plain, strlen(plain), &v);
	assert_string_equal(f.seen_text, "Just text.\n");
	assert_false(f.seen_text_truncated);
	scan_verdict_free(&v);
	done(&p);

	p = pipeline("spam_max_text = 5\n");
	add_fake(p, &f);
	run(p, plain, strlen(plain), &v);
	assert_string_equal(f.seen_text, "Just ");
	assert_true(f.seen_text_truncated);
	scan_verdict_free(&v);
	done(&p);
}

static void test_no_stage_accepts(void **state)
{
	(void)state;
	struct scan_pipeline *p = pipeline("");
	struct scan_verdict v;
	run(p, plain, strlen(plain), &v);
	assert_int_equal(v.action, SCAN_ACCEPT);
	assert_int_equal(v.code, 0);
	assert_string_equal(v.reason, "");
	assert_true(has_timing(&v, "mime"));
	assert_false(scan_pipeline_stale(p));
	scan_verdict_free(&v);
	done(&p);
}

static void test_tags_add_up_and_the_first_refusal_decides(void **state)
{
	(void)state;
	struct scan_pipeline *p = pipeline("");
	struct fake tag = { .name = "rules", .action = SCAN_TAG, .header = "X-Rule: warned",
			    .hit = "rule:warn-me", .remove = "X-Spam-Flag" };
	struct fake bad_header = { .name = "spam", .action = SCAN_ACCEPT,
				   .header = "Not a header", .hit = "spam:odd hit,name",
				   .remove = "Not a name" };
	struct fake reject = { .name = "antivirus", .action = SCAN_REJECT, .code = 550,
			       .status = "5.7.0", .text = "virus found: Test",
			       .reason = "virus", .hit = "virus:Test" };
	struct fake after = { .name = "later", .action = SCAN_QUARANTINE };
	add_fake(p, &tag);
	add_fake(p, &bad_header);
	add_fake(p, &reject);
	add_fake(p, &after);
	struct scan_verdict v;
	run(p, plain, strlen(plain), &v);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.status, "5.7.0");
	assert_string_equal(v.text, "virus found: Test");
	assert_string_equal(v.reason, "virus");
	assert_int_equal(v.headers.count, 1); /* the malformed one is dropped */
	assert_string_equal(v.headers.items[0], "X-Rule: warned");
	assert_int_equal(v.remove_headers.count, 1); /* the malformed name is dropped */
	assert_string_equal(v.remove_headers.items[0], "X-Spam-Flag");
	assert_int_equal(v.hits.count, 3);
	assert_string_equal(v.hits.items[1], "spam:odd_hit_name");
	assert_string_equal(v.hits.items[2], "virus:Test");
	assert_int_equal(after.runs, 0);
	assert_true(has_timing(&v, "rules") && has_timing(&v, "antivirus"));
	assert_false(has_timing(&v, "later"));
	assert_int_equal(tag.seen_len, strlen(plain));
	assert_string_equal(tag.seen_sender, "sender@remote.test");
	assert_true(tag.seen_parts >= 1);
	scan_verdict_free(&v);

	/* Without the refusal, the tag goes through. */
	reject.action = SCAN_ACCEPT;
	after.action = SCAN_ACCEPT;
	run(p, plain, strlen(plain), &v);
	assert_int_equal(v.action, SCAN_TAG);
	assert_int_equal(after.runs, 1);
	scan_verdict_free(&v);
	done(&p);
	assert_int_equal(tag.freed, 1);
	assert_int_equal(after.freed, 1);
}

static void test_codes_take_their_defaults(void **state)
{
	(void)state;
	struct scan_pipeline *p = pipeline("");
	struct fake tempfail = { .name = "rules", .action = SCAN_TEMPFAIL, .code = 550,
				 .reason = "greylist me" };
	add_fake(p, &tempfail);
	struct scan_verdict v;
	run(p, plain, strlen(plain), &v);
	assert_int_equal(v.action, SCAN_TEMPFAIL);
	assert_int_equal(v.code, 451);
	assert_string_equal(v.status, "4.7.0");
	assert_true(v.text[0] != '\0');
	assert_string_equal(v.reason, "greylist_me");
	scan_verdict_free(&v);
	done(&p);
}

static void test_a_stage_that_cannot_work(void **state)
{
	(void)state;
	/* Fail closed: 451 4.7.0, and the client hears no detail. */
	struct scan_pipeline *p = pipeline("");
	struct fake down = { .name = "antivirus", .rc = -1 };
	struct fake ok = { .name = "rules", .action = SCAN_TAG, .header = "X-Rule: kept" };
	add_fake(p, &down);
	add_fake(p, &ok);
	struct scan_verdict v;
	run(p, plain, strlen(plain), &v);
	assert_int_equal(v.action, SCAN_TEMPFAIL);
	assert_int_equal(v.code, 451);
	assert_string_equal(v.status, "4.7.0");
	assert_string_equal(v.reason, "scan_failed");
	assert_null(strstr(v.text, "engine"));
	assert_true(scan_verdict_failed(&v));
	assert_int_equal(ok.runs, 1); /* the others still run */
	scan_verdict_free(&v);
	/* ... and one of them may still condemn the message. */
	ok.action = SCAN_REJECT;
	ok.text = "bad attachment";
	run(p, plain, strlen(plain), &v);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_string_equal(v.text, "bad attachment");
	assert_false(scan_verdict_failed(&v));
	scan_verdict_free(&v);
	done(&p);

	/* Fail open: accepted, what the others added kept. */
	p = pipeline("scan_fail_open = yes\n");
	ok.action = SCAN_TAG;
	add_fake(p, &down);
	add_fake(p, &ok);
	run(p, plain, strlen(plain), &v);
	assert_int_equal(v.action, SCAN_TAG);
	assert_int_equal(v.code, 0);
	assert_string_equal(v.reason, "scan_failed");
	assert_true(scan_verdict_failed(&v));
	assert_int_equal(v.headers.count, 1);
	scan_verdict_free(&v);
	done(&p);
}

static void test_mime_bounds_decide_before_the_stages(void **state)
{
	(void)state;
	char big[4096];
	memset(big, 'x', sizeof(big));
	memcpy(big, "Subject: big\n\n", 14);
	big[sizeof(big) - 1] = '\n';
	struct scan_pipeline *p = pipeline("mime_max_decoded_size = 1k\n");
	struct fake never = { .name = "rules", .action = SCAN_ACCEPT };
	add_fake(p, &never);
	struct scan_verdict v;
	run(p, big, sizeof(big), &v);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_int_equal(v.code, 554);
	assert_string_equal(v.status, "5.6.0");
	assert_string_equal(v.reason, "mime_limit");
	assert_non_null(strstr(v.text, "1024 bytes once decoded"));
	assert_int_equal(v.hits.count, 1);
	assert_string_equal(v.hits.items[0], "mime:decoded_too_big");
	assert_int_equal(never.runs, 0);
	scan_verdict_free(&v);
	done(&p);

	p = pipeline("mime_max_decoded_size = 1k\nmime_limit_action = tempfail\n");
	run(p, big, sizeof(big), &v);
	assert_int_equal(v.action, SCAN_TEMPFAIL);
	assert_int_equal(v.code, 451);
	assert_string_equal(v.status, "4.6.0");
	assert_false(scan_verdict_failed(&v));
	scan_verdict_free(&v);
	done(&p);
}

static void test_staleness(void **state)
{
	(void)state;
	struct scan_pipeline *p = pipeline("");
	struct fake a = { .name = "rules" }, b = { .name = "antivirus" };
	add_fake(p, &a);
	add_fake(p, &b);
	assert_false(scan_pipeline_stale(p));
	b.stale = true;
	assert_true(scan_pipeline_stale(p));
	done(&p);
}

static void test_what_looks_like_an_archive(void **state)
{
	(void)state;
	static const unsigned char zip[] = "PK\x03\x04rest";
	unsigned char tar[300] = { 0 };
	memcpy(tar + 257, "ustar", 5);
	assert_true(scan_looks_like_archive("application/zip", NULL, NULL, 0));
	assert_true(scan_looks_like_archive("APPLICATION/X-7Z-COMPRESSED", NULL, NULL, 0));
	assert_true(scan_looks_like_archive("text/plain", "invoice.pdf.ZIP", NULL, 0));
	assert_true(scan_looks_like_archive("text/plain", "a.txt", zip, sizeof(zip) - 1));
	assert_true(scan_looks_like_archive(NULL, NULL, tar, sizeof(tar)));
	assert_true(scan_looks_like_archive(NULL, NULL, (const unsigned char *)"\x1f\x8b\x08", 3));
	assert_false(scan_looks_like_archive("text/plain", "notes.txt",
					     (const unsigned char *)"PK", 2));
	assert_false(scan_looks_like_archive("application/pdf", "zip", NULL, 0));
	assert_false(scan_looks_like_archive(NULL, NULL, tar, 200));
}

/* A message with a text part, a zip sent as text/plain, a zip declared
 * as one and a pdf, each base64. */
static const char multipart[] =
	"From: <a@remote.test>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\n"
	"\n"
	"--b1\n"
	"Content-Type: text/plain\n"
	"\n"
	"hello\n"
	"--b1\n"
	"Content-Type: text/plain; name=\"notes.txt\"\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"UEsDBGxpZXMtYWJvdXQtaXRzLXR5cGU=\n" /* "PK\3\4lies-about-its-type" */
	"--b1\n"
	"Content-Type: application/zip; name=\"b.zip\"\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"UEsDBHNlY29uZC1hcmNoaXZlLWJ5dGVz\n" /* "PK\3\4second-archive-bytes" */
	"--b1\n"
	"Content-Type: application/pdf; name=\"c.pdf\"\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"JVBERi0xLjQgbm90IGFuIGFyY2hpdmU=\n" /* "%PDF-1.4 not an archive" */
	"--b1--\n";

static void parse(struct scan_message *m, const char *text, uint64_t archive_max)
{
	struct mime_limits limits = { 20, 1000, 256 * 1024, 100 * 1024 * 1024, false };
	memset(m, 0, sizeof(*m));
	m->env = &env;
	m->data = (const unsigned char *)text;
	m->len = strlen(text);
	scan_message_parse(m, &limits, archive_max);
}

static void parse_multipart(struct scan_message *m, uint64_t archive_max)
{
	parse(m, multipart, archive_max);
}

static void test_archives_are_kept_within_the_budget(void **state)
{
	(void)state;
	struct scan_message m;
	parse_multipart(&m, 1024 * 1024);
	assert_int_equal(m.part_count, 5);
	assert_string_equal(m.parts[0].content_type, "multipart/mixed");
	assert_int_equal(m.parts[1].archive.len, 0); /* plain text */
	assert_int_equal(m.parts[2].archive.len, strlen("PK\3\4lies-about-its-type"));
	assert_memory_equal(m.parts[2].archive.data, "PK\3\4lies", 8);
	assert_false(m.parts[2].archive_truncated);
	assert_int_equal(m.parts[3].archive.len, strlen("PK\3\4second-archive-bytes"));
	assert_int_equal(m.parts[4].archive.len, 0); /* pdf */
	assert_string_equal(m.parts[3].filename, "b.zip");
	assert_true(m.header_count >= 3);
	assert_string_equal(m.headers[0].name, "From");
	scan_message_free(&m);

	/* A budget for the first archive only: the second is cut. */
	parse_multipart(&m, 30);
	assert_int_equal(m.parts[2].archive.len, strlen("PK\3\4lies-about-its-type"));
	assert_true(m.parts[3].archive.len < strlen("PK\3\4second-archive-bytes"));
	assert_true(m.parts[3].archive_truncated);
	scan_message_free(&m);
}

/* libmagic runs and archive bytes are kept only when a stage reads them:
 * a pipeline of stages that ignore types (the spam stage) sees neither;
 * once a stage that reads them joins, every stage sees both. */
static void test_types_only_for_stages_that_read_them(void **state)
{
	(void)state;
	struct scan_pipeline *p = pipeline("");
	struct fake text_only = { .name = "spam", .action = SCAN_ACCEPT, .ignores_types = true };
	add_fake(p, &text_only);
	struct scan_verdict v;
	run(p, multipart, strlen(multipart), &v);
	assert_int_equal(text_only.runs, 1);
	assert_int_equal(text_only.seen_parts, 5);
	assert_string_equal(text_only.seen_text, ""); /* the multipart's own */
	assert_string_equal(text_only.seen_pdf_type, "");
	assert_string_equal(text_only.seen_archive_bytes, ""); /* no budget for them */
	scan_verdict_free(&v);

	struct fake reader = { .name = "rules", .action = SCAN_ACCEPT };
	add_fake(p, &reader);
	run(p, multipart, strlen(multipart), &v);
	assert_string_equal(reader.seen_pdf_type, "application/pdf");
	assert_true(reader.saw_archive);
	assert_string_equal(reader.seen_archive_bytes, "PK\3\4lies-about-its-type");
	assert_string_equal(text_only.seen_pdf_type, "application/pdf");
	assert_true(text_only.saw_archive);
	scan_verdict_free(&v);
	done(&p);
}

/* A uuencoded zip inside a text part becomes that part's child: kept. */
static void test_uuencoded_archive_is_kept(void **state)
{
	(void)state;
	static const char uu[] =
		"From: <a@remote.test>\n"
		"Subject: uu\n"
		"\n"
		"Here it is:\n"
		"begin 644 notes.zip\n"
		")4$L#!'1E<W0*\n" /* "PK\3\4test\n" */
		"`\n"
		"end\n"
		"Bye.\n";
	struct scan_message m;
	parse(&m, uu, 1024);
	bool found = false;
	for (size_t i = 0; i < m.part_count; i++) {
		if (m.parts[i].filename == NULL || strcmp(m.parts[i].filename, "notes.zip") != 0)
			continue;
		found = true;
		assert_int_equal(m.parts[i].archive.len, 9);
		assert_memory_equal(m.parts[i].archive.data, "PK\3\4test\n", 9);
	}
	assert_true(found);
	scan_message_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stages_see_text_within_spam_max_text),
		cmocka_unit_test(test_no_stage_accepts),
		cmocka_unit_test(test_tags_add_up_and_the_first_refusal_decides),
		cmocka_unit_test(test_codes_take_their_defaults),
		cmocka_unit_test(test_a_stage_that_cannot_work),
		cmocka_unit_test(test_mime_bounds_decide_before_the_stages),
		cmocka_unit_test(test_staleness),
		cmocka_unit_test(test_what_looks_like_an_archive),
		cmocka_unit_test(test_archives_are_kept_within_the_budget),
		cmocka_unit_test(test_uuencoded_archive_is_kept),
		cmocka_unit_test(test_types_only_for_stages_that_read_them),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
