/*
 * test_notice.c - the administrator's notices: the template file (every
 * mistake named FILE:LINE), the placeholders filled with cleaned values
 * (no value can add a header field), the notice queued as a message from
 * <>, and the rate bound.
 */
#include <fcntl.h>
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
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/notice.h"
#include "queue/notifier.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

/* Parse text; the problems printed, or NULL if it was accepted. */
static char *problems_of(const char *text)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	struct notice_template *t = notice_template_parse("notice.txt", text, strlen(text), f);
	fclose(f);
	if (t != NULL) {
		notice_template_free(&t);
		assert_int_equal(len, 0);
		free(out);
		return NULL;
	}
	return out;
}

static void expect_problem(const char *text, const char *want)
{
	char *got = problems_of(text);
	if (got == NULL || strstr(got, want) == NULL)
		fail_msg("template %s: expected \"%s\", got \"%s\"", text, want,
			 got != NULL ? got : "(accepted)");
	free(got);
}

static void test_template_errors(void **state)
{
	(void)state;
	assert_null(problems_of("Subject: {virus} in {queue_id}\n\nBody {sender} {x\n{ }\n"));
	assert_null(problems_of("\nno header fields at all: a default Subject: is added\n"));
	assert_null(problems_of("X-Note: a\n\tcontinued {rule}\r\nSubject: s\r\n\r\nCRLF too\r\n"));
	expect_problem("Subject: {virus_name}\n\nx\n",
		       "notice.txt:1: unknown placeholder {virus_name} (known: {sender},");
	expect_problem("Subject: ok\n\nline two {Sender} is literal, {nope} is not\n",
		       "notice.txt:3: unknown placeholder {nope}");
	expect_problem("Hello admin,\n\nbody\n",
		       "notice.txt:1: expected a header field such as \"Subject: ...\"");
	expect_problem("Subject: a\nFrom: me@example.test\n\nx\n",
		       "notice.txt:2: From: is set by postern, not by the template");
	expect_problem("content-type: text/html\n\nx\n", "notice.txt:1: content-type: is set by postern");
	expect_problem(" folded first\n\nx\n", "notice.txt:1: a continuation line without a field");
	expect_problem("{subject}: x\n\nx\n", "notice.txt:1: expected a header field");
	expect_problem("Subject: a\n\nbell \x07 here\n", "notice.txt:3: control character 0x07");
	expect_problem("Subject: caf\xe9\n\nx\n", "notice.txt:1: not UTF-8 text");
	expect_problem("Subject: only headers\n", "notice.txt: no empty line");
	expect_problem("", "notice.txt: the file is empty");
	char nul[] = "Subject: a\n\nNUL\0here\n";
	FILE *devnull = fopen("/dev/null", "w");
	assert_null(notice_template_parse("n", nul, sizeof(nul) - 1, devnull));
	fclose(devnull);

	/* from a file: its path is the FILE of the messages */
	char tmpl[] = "/tmp/postern-test-notice-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	const char bad[] = "Subject: ok\n\n{oops}\n";
	assert_int_equal(write(fd, bad, sizeof(bad) - 1), (ssize_t)sizeof(bad) - 1);
	close(fd);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_null(notice_template_load(tmpl, f));
	assert_null(notice_template_load("/nonexistent/notice.txt", f));
	fclose(f);
	buf_t want = BUF_INIT;
	buf_printf(&want, "%s:3: unknown placeholder {oops}", tmpl);
	assert_non_null(strstr(out, want.data));
	assert_non_null(strstr(out, "/nonexistent/notice.txt: notify_template: cannot read: "
				    "No such file or directory"));
	unlink(tmpl);
	free(out);
	buf_free(&want);
	struct notice_template *t = notice_template_load("", stderr);
	assert_non_null(t); /* "" is the built-in text */
	notice_template_free(&t);
}

static const struct notice_info *sample(strlist_t *rcpts, strlist_t *hits)
{
	static struct notice_info info;
	memset(rcpts, 0, sizeof(*rcpts));
	memset(hits, 0, sizeof(*hits));
	strlist_add(rcpts, "alice@example.test");
	strlist_add(rcpts, "bob@example.test");
	strlist_add(hits, "virus:Eicar-Test-Signature");
	strlist_add(hits, "virus:Second");
	strlist_add(hits, "rule:no_exe");
	strlist_add(hits, "attachment:invoice.pdf.exe");
	strlist_add(hits, "virus:"); /* empty name: left out */
	memset(&info, 0, sizeof(info));
	info.event = NOTICE_QUARANTINED;
	info.queue_id = "6617EFE92D921002845";
	info.sender = "x@remote.test";
	info.rcpts = rcpts;
	info.client_addr = "192.0.2.7";
	info.helo = "bad.example";
	info.check = "scan";
	info.reason = "virus";
	info.text = "virus found: Eicar-Test-Signature";
	info.hits = hits;
	info.subject = "Your invoice";
	info.hostname = "mx.example.test";
	info.when_us = 1796000000000000ull;
	return &info;
}

static void test_build(void **state)
{
	(void)state;
	strlist_t rcpts, hits, to = { NULL, 0 };
	struct notice_info info = *sample(&rcpts, &hits);
	strlist_add(&to, "postmaster@example.test");
	const char text[] = "Subject: {action} {queue_id} ({check})\n"
			    "X-Virus: {virus}\n\n"
			    "{sender} -> {recipients}\n{rule} / {attachment} / {reason}\n"
			    "{subject} from {client} {helo} at {hostname}, {date}\n"
			    "{ not a placeholder } {Subject}\n";
	struct notice_template *t = notice_template_parse("t", text, sizeof(text) - 1, stderr);
	assert_non_null(t);
	buf_t out = BUF_INIT;
	bool eight = true;
	notice_build(&out, t, &info, &to, "6617EFE931621002845", info.when_us, &eight);
	assert_false(eight);
	const char *want[] = {
		"Received: by mx.example.test (postern) id 6617EFE931621002845;\n\t",
		"\nFrom: Mail Gateway <MAILER-DAEMON@mx.example.test>\nTo: <postmaster@example.test>\n",
		"\nMessage-ID: <6617EFE931621002845.notice@mx.example.test>\n",
		"\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\n"
		"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n",
		"\nSubject: quarantined 6617EFE92D921002845 (scan)\n"
		"X-Virus: Eicar-Test-Signature, Second\n\n"
		"x@remote.test -> alice@example.test, bob@example.test\n"
		"no_exe / invoice.pdf.exe / virus found: Eicar-Test-Signature\n"
		"Your invoice from 192.0.2.7 bad.example at mx.example.test, ",
		" +0000\n{ not a placeholder } {Subject}\n",
	};
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		if (strstr(out.data, want[i]) == NULL)
			fail_msg("\"%s\" not in:\n%s", want[i], out.data);
	notice_template_free(&t);

	/* hostile values: no header can be added, nothing runs on */
	buf_reset(&out);
	info.subject = "x\nBcc: victim@example.test\r\nX-Evil: 1";
	info.text = "virus found: \xc3\xa9vil\n\nbody injection";
	info.sender = "";
	char long_value[2000];
	memset(long_value, 'A', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	info.helo = long_value;
	for (int i = 0; i < 12; i++)
		strlist_add(&rcpts, "more@example.test");
	t = notice_template_builtin();
	notice_build(&out, t, &info, &to, "6617EFE931621002845", info.when_us, &eight);
	assert_true(eight); /* é */
	assert_non_null(strstr(out.data, "Content-Transfer-Encoding: 8bit\n"));
	assert_null(strstr(out.data, "\nBcc:"));
	assert_null(strstr(out.data, "\nX-Evil:"));
	assert_null(strstr(out.data, "\r"));
	assert_non_null(strstr(out.data, "\nSubject: [mx.example.test] quarantined: virus found: "
					 "\xc3\xa9vil  body injection\n"));
	assert_non_null(strstr(out.data, "  Subject:     x Bcc: victim@example.test  X-Evil: 1\n"));
	assert_non_null(strstr(out.data, "  Sender:      <>\n"));
	assert_non_null(strstr(out.data, "bob@example.test, more@example.test, more@example.test,"));
	assert_non_null(strstr(out.data, " and 4 more\n"));
	char *helo = strstr(out.data, "(HELO A");
	assert_non_null(helo);
	assert_int_equal(strspn(helo + 6, "A"), NOTICE_VALUE_MAX);
	assert_int_equal(strncmp(helo + 6 + NOTICE_VALUE_MAX, "...)", 4), 0);
	notice_template_free(&t);

	/* refused and discarded say what happened */
	info.event = NOTICE_REFUSED;
	t = notice_template_builtin();
	buf_reset(&out);
	notice_build(&out, t, &info, &to, "6617EFE931621002845", info.when_us, &eight);
	assert_non_null(strstr(out.data, "The mail gateway mx.example.test refused a message."));
	assert_null(strstr(out.data, "postern quarantine release"));
	info.event = NOTICE_DISCARDED;
	buf_reset(&out);
	notice_build(&out, t, &info, &to, "6617EFE931621002845", info.when_us, &eight);
	assert_non_null(strstr(out.data, "discarded a message"));
	notice_template_free(&t);
	buf_free(&out);
	strlist_free(&rcpts);
	strlist_free(&hits);
	strlist_free(&to);
}

static void test_is_virus(void **state)
{
	(void)state;
	strlist_t hits = { NULL, 0 };
	struct notice_info info = { .reason = "content_rule", .hits = &hits };
	assert_false(notice_is_virus(&info));
	strlist_add(&hits, "rule:virus_like_name");
	assert_false(notice_is_virus(&info));
	strlist_add(&hits, "virus:X");
	assert_true(notice_is_virus(&info));
	strlist_free(&hits);
	info.reason = "virus";
	assert_true(notice_is_virus(&info));
	info.hits = NULL;
	info.reason = NULL;
	assert_false(notice_is_virus(&info));
}

/* A queued notice is a message like a bounce: from <>, protocol LOCAL,
 * to the addresses given, readable by the queue manager. */
static void test_queue(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/postern-test-notice-XXXXXX";
	char *err = NULL, id[QUEUE_ID_LEN + 1];
	assert_non_null(mkdtemp(tmpl));
	char *spool = safeio_path_join(tmpl, "spool");
	assert_int_equal(queue_dirs_create(spool, &err), 0);
	strlist_t rcpts, hits, to = { NULL, 0 };
	const struct notice_info *info = sample(&rcpts, &hits);
	strlist_add(&to, "postmaster@example.test");
	strlist_add(&to, "x@remote.test");
	struct notice_template *t = notice_template_builtin();
	assert_int_equal(notice_queue(spool, "mx.example.test", NULL, t, info, &to, info->when_us,
				      id, &err), 0);
	char *dir = safeio_path_join(spool, "queue"), *path = safeio_path_join(dir, id);
	int fd = open(path, O_RDONLY);
	struct qf_msg m;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_string_equal(m.sender, "");
	assert_string_equal(m.protocol, "LOCAL");
	assert_string_equal(m.client_addr, "local");
	assert_int_equal(m.rcpt_count, 2);
	assert_string_equal(m.rcpts[1].addr, "x@remote.test");
	assert_int_equal(m.note.verdict, 0);
	buf_t headers = BUF_INIT;
	assert_int_equal(qf_read_headers(fd, &m, 65536, &headers, &err), 0);
	assert_non_null(strstr(headers.data, "To: <postmaster@example.test>,\n\t<x@remote.test>\n"));
	qf_msg_free(&m);
	close(fd);
	buf_free(&headers);
	notice_template_free(&t);
	strlist_free(&rcpts);
	strlist_free(&hits);
	strlist_free(&to);
	free(path);
	free(dir);
	free(spool);
	testutil_rmtree(tmpl);
}

static void test_rate(void **state)
{
	(void)state;
	struct notice_rate r = { .limit = 3, .window_ms = 60000, .window_start_ms = 1000 };
	for (int i = 0; i < 3; i++)
		assert_true(notice_rate_take(&r, 1000 + (uint64_t)i));
	assert_false(notice_rate_take(&r, 2000));
	assert_false(notice_rate_take(&r, 60999));
	assert_int_equal(r.suppressed, 2);
	assert_true(notice_rate_take(&r, 61000)); /* a new window */
	assert_int_equal(r.sent, 1);
	assert_int_equal(r.suppressed, 2);        /* until the summary takes them */
	assert_true(notice_rate_take(&r, 500));   /* a clock that went back: new window */
	assert_int_equal(r.window_start_ms, 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_template_errors),
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_is_virus),
		cmocka_unit_test(test_queue),
		cmocka_unit_test(test_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
