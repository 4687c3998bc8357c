/*
 * test_antivirus.c - the antivirus stage with libclamav in process and
 * the shipped test signatures (etc/clamav-test, run from the source
 * tree's root as make check-unit does): EICAR, the hash and the pattern
 * signatures found in every encoding, archive and attached message a
 * mail client opens, whatever the declared type and whatever the first
 * header field; clean mail (generated, and the shared corpus when it is
 * there) never flagged; each virus_action; libclamav's limits (a zip
 * bomb, too deep, too big) and clamav_alert_exceeds_max; a signature
 * folder that does not load named in the error; stale() seeing changed
 * signature files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "avmsg.h"
#include "testutil.h"

#include "lib/config.h"
#include "lib/safeio.h"
#include "scan/antivirus.h"

#define EICAR_NAME "Postern.Test.EICAR.UNOFFICIAL"
#define HASH_NAME "Postern.Test.HashSample.UNOFFICIAL"
#define PATTERN_NAME "Postern.Test.Pattern.UNOFFICIAL"
#define CORPUS "../shared/corpus/train"

static char dir[] = "/tmp/postern-test-av-XXXXXX";
static char sigdir[1024];
static struct scan_stage shared; /* default settings, the test signatures */

/* Load a configuration "clamav_db_dir = db\n" + extra. */
static void load_config(const char *db, const char *extra, struct config *cfg)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "hostname = mx.example.test\n");
	if (db != NULL)
		fprintf(f, "clamav_db_dir = %s\n", db);
	fputs(extra, f);
	fclose(f);
	char errbuf[2048] = "";
	FILE *errors = fmemopen(errbuf, sizeof(errbuf), "w");
	int rc = config_load(path, cfg, errors);
	fclose(errors);
	if (rc != 0)
		fail_msg("config: %s", errbuf);
}

/* scan_antivirus_stage_new on such a configuration; *err_r kept. */
static int new_stage(const char *db, const char *extra, struct scan_stage *st, char **err_r)
{
	struct config cfg;
	load_config(db, extra, &cfg);
	int rc = scan_antivirus_stage_new(&cfg, st, err_r);
	config_free(&cfg);
	return rc;
}

static struct scan_stage stage_with(const char *extra)
{
	struct scan_stage st;
	char *err = NULL;
	int rc = new_stage(sigdir, extra, &st, &err);
	if (rc != 0)
		fail_msg("stage: rc %d: %s", rc, err ? err : "");
	return st;
}

static int group_setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL || getcwd(sigdir, sizeof(sigdir) - 32) == NULL)
		return -1;
	strcat(sigdir, "/etc/clamav-test");
	struct stat sb;
	if (stat(sigdir, &sb) != 0) {
		fprintf(stderr, "%s: not found: run the tests from the source tree's root\n",
			sigdir);
		return -1;
	}
	char *err = NULL;
	if (new_stage(sigdir, "", &shared, &err) != 0) {
		fprintf(stderr, "building the stage: %s\n", err ? err : "?");
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	shared.free(shared.ctx);
	return testutil_rmtree(dir);
}

static void verdict_clear(struct scan_verdict *v)
{
	strlist_free(&v->hits);
	strlist_free(&v->headers);
	memset(v, 0, sizeof(*v));
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

/* The shared stage refuses msg with 550 5.7.0 virus found: name. */
static void assert_rejected_as(const buf_t *msg, const char *name)
{
	struct scan_verdict v;
	assert_int_equal(run_stage(&shared, msg->data, msg->len, &v), 0);
	char text[300];
	snprintf(text, sizeof(text), "virus found: %s", name);
	assert_string_equal(v.text, text);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.status, "5.7.0");
	assert_string_equal(v.reason, "virus");
	assert_int_equal(v.hits.count, 1);
	snprintf(text, sizeof(text), "virus:%s", name);
	assert_string_equal(v.hits.items[0], text);
	assert_int_equal(v.headers.count, 0);
	verdict_clear(&v);
}

static void assert_clean(const struct scan_stage *st, const void *data, size_t len,
			 const char *what)
{
	struct scan_verdict v;
	int rc = run_stage(st, data, len, &v);
	if (rc != 0 || v.action != SCAN_ACCEPT || v.hits.count != 0)
		fail_msg("%s: rc %d, action %d, text \"%s\"", what, rc, v.action, v.text);
	verdict_clear(&v);
}

static void eicar_attached(buf_t *msg, const char *cte)
{
	const char *e = avmsg_eicar();
	avmsg_with_attachment(msg, "", "application/octet-stream", "eicar.com", cte, e, strlen(e));
}

/* ---- detection ---- */

static void test_not_configured_is_no_stage(void **state)
{
	(void)state;
	struct scan_stage st;
	char *err = NULL;
	assert_int_equal(new_stage(NULL, "", &st, &err), 1);
	assert_null(err);
}

static void test_eicar_in_the_body(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT;
	buf_printf(&msg, "From: <a@remote.test>\nSubject: hi\n\nSee this:\n%s\n", avmsg_eicar());
	assert_rejected_as(&msg, EICAR_NAME);
	buf_free(&msg);
}

static void test_eicar_base64(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT;
	eicar_attached(&msg, "base64");
	assert_non_null(strstr(msg.data, "WDVPIVAlQEFQ")); /* really encoded */
	assert_rejected_as(&msg, EICAR_NAME);
	buf_free(&msg);
}

static void test_eicar_quoted_printable(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT;
	eicar_attached(&msg, "quoted-printable");
	assert_null(strstr(msg.data, avmsg_eicar()));
	assert_non_null(strstr(msg.data, "X5O=21P=25=40AP=5B4=5CPZX54=28P=5E=297CC=297=7D=24EICAR"));
	assert_rejected_as(&msg, EICAR_NAME);
	buf_free(&msg);
}

static void test_eicar_uuencoded(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT;
	eicar_attached(&msg, "x-uuencode");
	assert_non_null(strstr(msg.data, "begin 644 eicar.com\n"));
	assert_rejected_as(&msg, EICAR_NAME);
	buf_free(&msg);
}

static void test_eicar_in_zip(void **state)
{
	(void)state;
	buf_t zip = BUF_INIT, msg = BUF_INIT;
	const char *e = avmsg_eicar();
	struct avmsg_file files[] = { { "readme.txt", "nothing here\n", 13 },
				      { "tools/eicar.com", e, strlen(e) } };
	avmsg_zip(&zip, files, 2);
	avmsg_with_attachment(&msg, "", "application/zip", "tools.zip", "base64", zip.data, zip.len);
	assert_rejected_as(&msg, EICAR_NAME);
	buf_free(&zip);
	buf_free(&msg);
}

static void test_eicar_in_zip_in_zip(void **state)
{
	(void)state;
	buf_t inner = BUF_INIT, outer = BUF_INIT, msg = BUF_INIT;
	const char *e = avmsg_eicar();
	avmsg_zip1(&inner, "eicar.com", e, strlen(e));
	avmsg_zip1(&outer, "inner.zip", inner.data, inner.len);
	avmsg_with_attachment(&msg, "", "application/zip", "outer.zip", "base64", outer.data,
			      outer.len);
	assert_rejected_as(&msg, EICAR_NAME);
	buf_free(&inner);
	buf_free(&outer);
	buf_free(&msg);
}

static void test_eicar_gzip(void **state)
{
	(void)state;
	buf_t gz = BUF_INIT, msg = BUF_INIT;
	const char *e = avmsg_eicar();
	avmsg_gzip(&gz, e, strlen(e));
	avmsg_with_attachment(&msg, "", "application/gzip", "eicar.com.gz", "base64", gz.data,
			      gz.len);
	assert_rejected_as(&msg, EICAR_NAME);
	buf_free(&gz);
	buf_free(&msg);
}

static void test_eicar_in_attached_message(void **state)
{
	(void)state;
	buf_t inner = BUF_INIT, msg = BUF_INIT, twice = BUF_INIT;
	eicar_attached(&inner, "base64");
	avmsg_with_message(&msg, &inner);
	assert_rejected_as(&msg, EICAR_NAME);
	/* ... and a forwarded forward. */
	avmsg_with_message(&twice, &msg);
	assert_rejected_as(&twice, EICAR_NAME);
	buf_free(&inner);
	buf_free(&msg);
	buf_free(&twice);
}

static void test_eicar_behind_a_lying_content_type(void **state)
{
	(void)state;
	buf_t zip = BUF_INIT, msg = BUF_INIT, txt = BUF_INIT;
	const char *e = avmsg_eicar();
	avmsg_zip1(&zip, "photo.jpg", e, strlen(e));
	avmsg_with_attachment(&msg, "", "image/png", "holiday.png", "base64", zip.data, zip.len);
	assert_rejected_as(&msg, EICAR_NAME);
	avmsg_with_attachment(&txt, "", "text/plain", "notes.txt", "base64", e, strlen(e));
	assert_rejected_as(&txt, EICAR_NAME);
	buf_free(&zip);
	buf_free(&msg);
	buf_free(&txt);
}

/* libclamav decodes parts only of what it recognises as mail, by its
 * first field or a MIME-Version field: a message that starts with
 * another field and has no MIME-Version (mail clients decode it all the
 * same) is still scanned as mail (the mail view). */
static void test_eicar_whatever_the_first_field(void **state)
{
	(void)state;
	const char *firsts[] = {
		"DKIM-Signature: v=1; a=rsa-sha256; d=remote.test; s=x; b=abc\n",
		"X-Whatever: 1\n",
		"Return-Receipt-To: <a@remote.test>\n",
		"",
	};
	const char *e = avmsg_eicar();
	for (size_t i = 0; i < ARRAY_LEN(firsts) * 4; i++) {
		/* A single-part message: the base64 body is the attachment. */
		buf_t msg = BUF_INIT, crlf = BUF_INIT;
		buf_puts(&msg, firsts[i / 4]);
		if (i % 2)
			buf_printf(&msg, "X-Long: %0*d\n", 3000, 0);
		if ((i / 2) % 2)
			buf_puts(&msg, "MIME-Version: 1.0\n");
		buf_puts(&msg, "Content-Type: application/octet-stream; name=\"x.com\"\n"
			       "Content-Transfer-Encoding: base64\n\n");
		avmsg_base64(&msg, e, strlen(e));
		assert_rejected_as(&msg, EICAR_NAME);
		avmsg_crlf(&crlf, &msg);
		assert_rejected_as(&crlf, EICAR_NAME);
		buf_free(&msg);
		buf_free(&crlf);
	}
}

static void test_received_first_and_mbox_messages(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT, mbox = BUF_INIT;
	eicar_attached(&msg, "base64");
	buf_puts(&mbox, "Received: from client.test by mx.example.test\n");
	buf_append(&mbox, msg.data, msg.len);
	assert_rejected_as(&mbox, EICAR_NAME);
	buf_reset(&mbox);
	buf_puts(&mbox, "From sender@remote.test Mon Jan  1 00:00:00 2024\n");
	buf_append(&mbox, msg.data, msg.len);
	assert_rejected_as(&mbox, EICAR_NAME);
	buf_free(&msg);
	buf_free(&mbox);
}

static void test_hash_signature(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT, zip = BUF_INIT, inzip = BUF_INIT;
	const char *sample = AVMSG_HASH_SAMPLE;
	avmsg_with_attachment(&msg, "", "text/plain", "sample.txt", "base64", sample,
			      strlen(sample));
	assert_rejected_as(&msg, HASH_NAME);
	avmsg_zip1(&zip, "docs/sample.txt", sample, strlen(sample));
	avmsg_with_attachment(&inzip, "", "application/zip", "docs.zip", "base64", zip.data,
			      zip.len);
	assert_rejected_as(&inzip, HASH_NAME);
	buf_free(&msg);
	buf_free(&zip);
	buf_free(&inzip);
}

static void test_hash_sample_shipped_matches(void **state)
{
	(void)state;
	buf_t file = BUF_INIT;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/samples/hash-sample.txt", sigdir);
	assert_int_equal(safeio_read_file(path, 4096, &file), 0);
	assert_int_equal(file.len, strlen(AVMSG_HASH_SAMPLE));
	assert_memory_equal(file.data, AVMSG_HASH_SAMPLE, file.len);
	buf_free(&file);
}

static void test_pattern_signature(void **state)
{
	(void)state;
	buf_t gz = BUF_INIT, msg = BUF_INIT;
	avmsg_gzip(&gz, AVMSG_PATTERN_SAMPLE, AVMSG_PATTERN_SAMPLE_LEN);
	avmsg_with_attachment(&msg, "", "application/gzip", "data.bin.gz", "base64", gz.data,
			      gz.len);
	assert_rejected_as(&msg, PATTERN_NAME);
	buf_free(&gz);
	buf_free(&msg);
}

/* ---- clean mail ---- */

static void test_clean_generated_mail(void **state)
{
	(void)state;
	const char *e = avmsg_eicar();
	buf_t m = BUF_INIT, zip = BUF_INIT, gz = BUF_INIT;

	assert_clean(&shared, "", 0, "empty message");
	const char *plain = "From: <a@remote.test>\nSubject: lunch\n\nShall we meet at noon?\n";
	assert_clean(&shared, plain, strlen(plain), "plain text");

	buf_puts(&m, "From: <a@remote.test>\nMIME-Version: 1.0\n"
		     "Content-Type: multipart/alternative; boundary=\"alt\"\n\n--alt\n"
		     "Content-Type: text/plain\n\nHello\n--alt\nContent-Type: text/html\n\n"
		     "<html><body><a href=\"https://bank.example/\">https://bank.example/</a>"
		     "<a href=\"http://other.example/\">https://paypal.example/</a>"
		     "<form action=\"x\"><input type=password></form></body></html>\n--alt--\n");
	assert_clean(&shared, m.data, m.len, "html with a link whose text lies");

	/* Almost EICAR: one byte short, one byte changed. */
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "application/octet-stream", "x.com", "base64", e,
			      strlen(e) - 1);
	assert_clean(&shared, m.data, m.len, "truncated EICAR");
	char changed[69];
	strcpy(changed, e);
	changed[30] = 'X';
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "application/octet-stream", "x.com", "base64", changed,
			      strlen(changed));
	assert_clean(&shared, m.data, m.len, "altered EICAR");

	/* The hash sample with one byte more is another file. */
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "text/plain", "s.txt", "base64",
			      AVMSG_HASH_SAMPLE " ", strlen(AVMSG_HASH_SAMPLE) + 1);
	assert_clean(&shared, m.data, m.len, "hash sample plus a byte");

	/* Archives of ordinary files. */
	char text[4000];
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = "the quick brown fox jumps over the lazy dog\n"[i % 44];
	struct avmsg_file files[] = { { "a.txt", text, sizeof(text) }, { "b/c.txt", "c\n", 2 } };
	avmsg_zip(&zip, files, 2);
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "application/zip", "docs.zip", "base64", zip.data, zip.len);
	assert_clean(&shared, m.data, m.len, "zip of text files");
	avmsg_gzip(&gz, text, sizeof(text));
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "application/gzip", "log.gz", "base64", gz.data, gz.len);
	assert_clean(&shared, m.data, m.len, "gzip of text");

	/* Random bytes, 200 KB. */
	unsigned char *rnd = malloc(200000);
	assert_non_null(rnd);
	uint32_t x = 12345;
	for (size_t i = 0; i < 200000; i++) {
		x = x * 1103515245u + 12345u;
		rnd[i] = (unsigned char)(x >> 16);
	}
	buf_reset(&m);
	avmsg_with_attachment(&m, "", "application/octet-stream", "data.bin", "base64", rnd,
			      200000);
	assert_clean(&shared, m.data, m.len, "random bytes");
	free(rnd);
	buf_free(&m);
	buf_free(&zip);
	buf_free(&gz);
}

/* Every ham message of the shared corpus is accepted. Spam is no virus
 * either; a few spam messages break libclamav's mail parser limits
 * (a Content-Type with thousands of parameters) and are refused as
 * "virus scan incomplete", never as a virus. */
static void test_clean_corpus(void **state)
{
	(void)state;
	const char *folders[] = { CORPUS "/ham", CORPUS "/spam" };
	size_t scanned = 0, incomplete = 0;
	for (size_t f = 0; f < ARRAY_LEN(folders); f++) {
		DIR *d = opendir(folders[f]);
		if (d == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			char path[PATH_MAX];
			snprintf(path, sizeof(path), "%s/%s", folders[f], e->d_name);
			buf_t msg = BUF_INIT;
			if (safeio_read_file(path, 64 << 20, &msg) != 0)
				fail_msg("%s: cannot read", path);
			scanned++;
			if (f == 0) {
				assert_clean(&shared, msg.data, msg.len, path);
			} else {
				struct scan_verdict v;
				int rc = run_stage(&shared, msg.data, msg.len, &v);
				if (rc != 0 || (v.action != SCAN_ACCEPT &&
						strcmp(v.reason, "virus_limit") != 0))
					fail_msg("%s: rc %d: %s", path, rc, v.text);
				incomplete += v.action != SCAN_ACCEPT;
				verdict_clear(&v);
			}
			buf_free(&msg);
		}
		closedir(d);
	}
	if (scanned == 0)
		skip(); /* no corpus beside the tree: the generated mail above */
	printf("corpus: %zu messages, no virus, %zu spam not scanned to the end\n", scanned,
	       incomplete);
}

/* ---- actions ---- */

static void test_quarantine_action(void **state)
{
	(void)state;
	struct scan_stage st = stage_with("virus_action = quarantine\n");
	buf_t msg = BUF_INIT;
	eicar_attached(&msg, "base64");
	struct scan_verdict v;
	assert_int_equal(run_stage(&st, msg.data, msg.len, &v), 0);
	assert_int_equal(v.action, SCAN_QUARANTINE);
	assert_string_equal(v.reason, "virus");
	assert_string_equal(v.text, "virus found: " EICAR_NAME);
	assert_int_equal(v.headers.count, 1);
	assert_string_equal(v.headers.items[0], "X-Postern-Virus: " EICAR_NAME);
	assert_string_equal(v.hits.items[0], "virus:" EICAR_NAME);
	verdict_clear(&v);
	buf_free(&msg);
	st.free(st.ctx);
}

static void test_discard_action(void **state)
{
	(void)state;
	struct scan_stage st = stage_with("virus_action = discard\n");
	buf_t msg = BUF_INIT;
	eicar_attached(&msg, "base64");
	struct scan_verdict v;
	assert_int_equal(run_stage(&st, msg.data, msg.len, &v), 0);
	assert_int_equal(v.action, SCAN_DISCARD);
	assert_string_equal(v.reason, "virus");
	assert_string_equal(v.hits.items[0], "virus:" EICAR_NAME);
	assert_int_equal(v.headers.count, 0);
	verdict_clear(&v);
	const char *clean = "Subject: hi\n\nhello\n";
	assert_clean(&st, clean, strlen(clean), "clean, discard mode");
	buf_free(&msg);
	st.free(st.ctx);
}

/* ---- limits ---- */

/* st refuses msg with 550 5.7.0 TEXT. */
static void assert_refused_with(const struct scan_stage *st, const buf_t *msg, const char *text)
{
	struct scan_verdict v;
	assert_int_equal(run_stage(st, msg->data, msg->len, &v), 0);
	assert_string_equal(v.text, text);
	assert_int_equal(v.action, SCAN_REJECT);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.status, "5.7.0");
	if (strncmp(text, "virus scan incomplete: ", 23) == 0)
		assert_string_equal(v.reason, "virus_limit");
	verdict_clear(&v);
}

static void test_message_over_max_file_size(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT;
	buf_printf(&msg, "Subject: big\n\n%0*d\n", 3000, 0);
	struct scan_stage st = stage_with("clamav_max_file_size = 2k\n");
	assert_refused_with(&st, &msg, "virus scan incomplete: Heuristics.Limits.Exceeded.MaxFileSize");
	st.free(st.ctx);
	st = stage_with("clamav_max_file_size = 2k\nclamav_alert_exceeds_max = no\n");
	assert_clean(&st, msg.data, msg.len, "over the limit, alert off");
	st.free(st.ctx);
	buf_free(&msg);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Eight files of 16 MB of zeros deflate to 130 KB: libclamav stops at
 * clamav_max_scan_size (100M) and the message is refused, without
 * holding the files in memory. (One file over clamav_max_file_size is
 * scanned up to that size: libclamav trims it.) */
static void test_zip_bomb(void **state)
{
	(void)state;
	size_t big = 16u << 20;
	char *zeros = calloc(1, big);
	assert_non_null(zeros);
	struct avmsg_file files[8];
	char names[8][24];
	for (int i = 0; i < 8; i++) {
		snprintf(names[i], sizeof(names[i]), "disk%d.img", i);
		files[i] = (struct avmsg_file){ names[i], zeros, big };
	}
	buf_t zip = BUF_INIT, msg = BUF_INIT;
	avmsg_zip(&zip, files, 8);
	free(zeros);
	assert_true(zip.len < 200000);
	avmsg_with_attachment(&msg, "", "application/zip", "disks.zip", "base64", zip.data, zip.len);
	double t0 = now_s();
	assert_refused_with(&shared, &msg,
			    "virus scan incomplete: Heuristics.Limits.Exceeded.MaxScanSize");
	assert_true(now_s() - t0 < 10.0);
	struct scan_stage st = stage_with("clamav_alert_exceeds_max = no\n");
	assert_clean(&st, msg.data, msg.len, "zip bomb, alert off");
	st.free(st.ctx);
	buf_free(&zip);
	buf_free(&msg);
}

static void test_recursion_limit(void **state)
{
	(void)state;
	const char *e = avmsg_eicar();
	buf_t zip = BUF_INIT, msg = BUF_INIT;
	avmsg_zip1(&zip, "eicar.com", e, strlen(e));
	for (int i = 0; i < 6; i++) {
		buf_t outer = BUF_INIT;
		avmsg_zip1(&outer, "next.zip", zip.data, zip.len);
		buf_free(&zip);
		zip = outer;
	}
	avmsg_with_attachment(&msg, "", "application/zip", "deep.zip", "base64", zip.data, zip.len);
	/* Deep enough for the default limit (16): the virus is found. */
	assert_rejected_as(&msg, EICAR_NAME);
	struct scan_stage st = stage_with("clamav_max_recursion = 4\n");
	assert_refused_with(&st, &msg, "virus scan incomplete: Heuristics.Limits.Exceeded.MaxRecursion");
	st.free(st.ctx);
	buf_free(&zip);
	buf_free(&msg);
}

/* The engine built before fork(2) scans in the children, as the scan
 * master's scanner processes use it (no rebuild there), several at the
 * same time: libclamav names its temporary files from rand(), which a
 * fork copies, so without av_run's reseeding two scanners would pick the
 * same names, delete each other's files and miss the virus. */
static void test_engine_shared_by_forked_children(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT;
	eicar_attached(&msg, "base64");
	pid_t kids[3];
	for (int k = 0; k < 3; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			int ok = 1;
			for (int i = 0; i < 200 && ok; i++) {
				struct scan_verdict v;
				ok = run_stage(&shared, msg.data, msg.len, &v) == 0 &&
				     v.action == SCAN_REJECT &&
				     strcmp(v.text, "virus found: " EICAR_NAME) == 0;
				verdict_clear(&v);
				const char *clean = "Subject: x\n\nhi\n";
				ok = ok && run_stage(&shared, clean, strlen(clean), &v) == 0 &&
				     v.action == SCAN_ACCEPT;
			}
			_exit(ok ? 0 : 1);
		}
	}
	for (int k = 0; k < 3; k++) {
		int status;
		assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	buf_free(&msg);
}

/* ---- the signature folder ---- */

static void write_file(const char *folder, const char *name, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", folder, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void copy_signatures(const char *to)
{
	const char *names[] = { "postern-test.ndb", "postern-test.hdb" };
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", sigdir, names[i]);
		buf_t b = BUF_INIT;
		assert_int_equal(safeio_read_file(path, 1 << 20, &b), 0);
		write_file(to, names[i], b.data);
		buf_free(&b);
	}
}

static void assert_refused(const char *db, const char *want1, const char *want2)
{
	struct scan_stage st;
	char *err = NULL;
	assert_int_equal(new_stage(db, "", &st, &err), -1);
	assert_non_null(err);
	if (strstr(err, want1) == NULL || (want2 != NULL && strstr(err, want2) == NULL))
		fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, want1, want2 ? want2 : "");
	free(err);
}

/* libclamav unpacks into clamav_temp_dir: one that cannot be written is
 * refused when the engine is built, naming the folder; one that can is
 * used (an archive is scanned with it). */
static void test_temp_dir(void **state)
{
	(void)state;
	struct scan_stage st;
	char *err = NULL;
	assert_int_equal(new_stage(sigdir, "clamav_temp_dir = /nonexistent/postern-tmp\n", &st,
				   &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "/nonexistent/postern-tmp: libclamav's temporary folder"));
	free(err);
	char extra[PATH_MAX + 32];
	snprintf(extra, sizeof(extra), "clamav_temp_dir = %s\n", dir);
	st = stage_with(extra);
	const char *e = avmsg_eicar();
	struct avmsg_file files[1] = { { "eicar.com", e, strlen(e) } };
	buf_t zip = BUF_INIT, msg = BUF_INIT;
	avmsg_zip(&zip, files, 1);
	avmsg_with_attachment(&msg, "", "application/zip", "e.zip", "base64", zip.data, zip.len);
	assert_refused_with(&st, &msg, "virus found: " EICAR_NAME);
	st.free(st.ctx);
	buf_free(&zip);
	buf_free(&msg);
}

static void test_signature_folder_errors(void **state)
{
	(void)state;
	char db[1024];
	snprintf(db, sizeof(db), "%s/missing", dir);
	assert_refused(db, db, "cannot read the signature folder: No such file or directory");

	snprintf(db, sizeof(db), "%s/broken", dir);
	assert_int_equal(mkdir(db, 0755), 0);
	copy_signatures(db);
	write_file(db, "local.ndb", "Good.Sig:0:*:41424344454647\nBad.Sig:0:*:zz\n");
	char *file_named = NULL;
	assert_true(asprintf(&file_named, "%s/local.ndb", db) > 0);
	assert_refused(db, db, "Malformed database");
	assert_refused(db, file_named, "line 2");
	free(file_named);

	snprintf(db, sizeof(db), "%s/nothing", dir);
	assert_int_equal(mkdir(db, 0755), 0);
	write_file(db, "README", "no signatures here\n");
	assert_refused(db, db, "cannot load the ClamAV signatures");

	snprintf(db, sizeof(db), "%s/empty", dir);
	assert_int_equal(mkdir(db, 0755), 0);
	write_file(db, "empty.ndb", "# nothing\n");
	assert_refused(db, db, "no ClamAV signatures");
}

static void set_mtime(const char *folder, const char *name, time_t when)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", folder, name);
	struct timespec ts[2] = { { when, 0 }, { when, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_stale_sees_changed_signature_files(void **state)
{
	(void)state;
	char db[1024];
	snprintf(db, sizeof(db), "%s/watched", dir);
	assert_int_equal(mkdir(db, 0755), 0);
	copy_signatures(db);
	struct scan_stage st;
	char *err = NULL;
	assert_int_equal(new_stage(db, "", &st, &err), 0);
	assert_non_null(st.stale);
	assert_false(st.stale(st.ctx));

	/* Not a signature file: no change. */
	write_file(db, "notes.txt", "x\n");
	assert_false(st.stale(st.ctx));
	/* Same content, new time (freshclam rewriting a file). */
	set_mtime(db, "postern-test.hdb", 1000000000);
	assert_true(st.stale(st.ctx));
	assert_false(st.stale(st.ctx)); /* each change once */
	/* A new file, then its removal. */
	write_file(db, "more.ndb", "More.Sig:0:*:41424344454647\n");
	assert_true(st.stale(st.ctx));
	assert_false(st.stale(st.ctx));
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/more.ndb", db);
	assert_int_equal(unlink(path), 0);
	assert_true(st.stale(st.ctx));
	/* A file replaced by rename, same size and time. */
	write_file(db, "new.tmp", "");
	snprintf(path, sizeof(path), "%s/postern-test.ndb", db);
	buf_t b = BUF_INIT;
	assert_int_equal(safeio_read_file(path, 1 << 20, &b), 0);
	write_file(db, "new.tmp", b.data);
	buf_free(&b);
	struct stat old;
	assert_int_equal(stat(path, &old), 0);
	set_mtime(db, "new.tmp", old.st_mtim.tv_sec);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/new.tmp", db);
	assert_int_equal(rename(tmp, path), 0);
	assert_true(st.stale(st.ctx));
	/* The engine built before keeps scanning. */
	buf_t msg = BUF_INIT;
	eicar_attached(&msg, "base64");
	struct scan_verdict v;
	assert_int_equal(run_stage(&st, msg.data, msg.len, &v), 0);
	assert_int_equal(v.action, SCAN_REJECT);
	verdict_clear(&v);
	buf_free(&msg);
	st.free(st.ctx);
}

/* ---- small parts ---- */

static void test_names(void **state)
{
	(void)state;
	assert_int_equal(av_name_kind("Win.Test.EICAR_HDB-1"), AV_NAME_VIRUS);
	assert_int_equal(av_name_kind("Heuristics.Limits.Exceeded.MaxFileSize"), AV_NAME_LIMIT);
	assert_int_equal(av_name_kind("Heuristics.Limits.Exceeded.MaxScanTime"),
			 AV_NAME_TIME_LIMIT);
	assert_int_equal(av_name_kind("Heuristics.Phishing.Email"), AV_NAME_VIRUS);
	char out[16];
	av_name_clean(out, sizeof(out), "Bad\r\nName x\x7f\xc3");
	assert_string_equal(out, "Bad__Name_x__");
	av_name_clean(out, sizeof(out), "");
	assert_string_equal(out, "Unnamed");
	av_name_clean(out, sizeof(out), "A.Very.Long.Name.Indeed");
	assert_string_equal(out, "A.Very.Long.Nam");

	assert_null(av_mail_view_prefix((const unsigned char *)"Received: x\n", 12));
	assert_null(av_mail_view_prefix((const unsigned char *)"From a@b x\n", 11));
	assert_string_equal(av_mail_view_prefix((const unsigned char *)"X-A: 1\r\n", 8),
			    "Received: by postern (antivirus view)\r\n");
	assert_string_equal(av_mail_view_prefix((const unsigned char *)"received: x\n", 12),
			    "Received: by postern (antivirus view)\n");

	assert_true(av_is_signature_file("main.cvd"));
	assert_true(av_is_signature_file("daily.cld"));
	assert_true(av_is_signature_file("local.NDB"));
	assert_false(av_is_signature_file(".hidden.ndb"));
	assert_false(av_is_signature_file("README"));
	assert_false(av_is_signature_file("freshclam.dat"));
	assert_false(av_is_signature_file("ndb"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_configured_is_no_stage),
		cmocka_unit_test(test_eicar_in_the_body),
		cmocka_unit_test(test_eicar_base64),
		cmocka_unit_test(test_eicar_quoted_printable),
		cmocka_unit_test(test_eicar_uuencoded),
		cmocka_unit_test(test_eicar_in_zip),
		cmocka_unit_test(test_eicar_in_zip_in_zip),
		cmocka_unit_test(test_eicar_gzip),
		cmocka_unit_test(test_eicar_in_attached_message),
		cmocka_unit_test(test_eicar_behind_a_lying_content_type),
		cmocka_unit_test(test_eicar_whatever_the_first_field),
		cmocka_unit_test(test_received_first_and_mbox_messages),
		cmocka_unit_test(test_hash_signature),
		cmocka_unit_test(test_hash_sample_shipped_matches),
		cmocka_unit_test(test_pattern_signature),
		cmocka_unit_test(test_clean_generated_mail),
		cmocka_unit_test(test_clean_corpus),
		cmocka_unit_test(test_quarantine_action),
		cmocka_unit_test(test_discard_action),
		cmocka_unit_test(test_message_over_max_file_size),
		cmocka_unit_test(test_zip_bomb),
		cmocka_unit_test(test_temp_dir),
		cmocka_unit_test(test_recursion_limit),
		cmocka_unit_test(test_engine_shared_by_forked_children),
		cmocka_unit_test(test_signature_folder_errors),
		cmocka_unit_test(test_stale_sees_changed_signature_files),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
