/*
 * test_learn_input.c - what `postern learn` reads (learn_input.h): mbox
 * files cut on their "From " lines (only after an empty line, only lines
 * that look like separators, however the bytes are cut into pieces, LF or
 * CRLF), a file of one message, a message over the size bound left out
 * with the next one still read, empty and unreadable inputs; the pipe
 * between the root reader and the learner (the same messages come out,
 * broken records are refused); and the walk over folders (a Maildir's
 * cur/ and new/, plain folders in name order, hidden files and symbolic
 * links skipped).
 */
#include <errno.h>
#include <fcntl.h>
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

#include "testutil.h"

#include "lib/buf.h"
#include "lib/strutil.h"
#include "scan/learn_input.h"

/* What the handler saw: "source#number:bytes" per message,
 * "source#number!errno" per problem, one per line. */
struct seen {
	buf_t log;
	size_t messages;
	size_t stop_after;  /* 0 = never stop */
};

static bool on_message(void *arg, const struct learn_message *m)
{
	struct seen *s = arg;
	buf_printf(&s->log, "%s#%u:", m->source, m->number);
	buf_append(&s->log, m->data, m->len);
	buf_puts(&s->log, "|\n");
	s->messages++;
	return s->stop_after == 0 || s->messages < s->stop_after;
}

static void on_problem(void *arg, const char *source, unsigned number, int err)
{
	struct seen *s = arg;
	buf_printf(&s->log, "%s#%u!%s\n", source, number,
		   err == EFBIG ? "EFBIG" : err == ENODATA ? "ENODATA" : strerror(err));
}

/* Split text (fed in pieces of `piece` bytes) as file name, with a
 * message bound of max bytes; the log. */
static char *split(const char *name, const char *text, size_t piece, uint64_t max)
{
	struct seen s = { BUF_INIT, 0, 0 };
	struct learn_handler h = { on_message, on_problem, &s };
	struct learn_splitter *sp = learn_splitter_new(max, &h);
	struct learn_sink sink = learn_splitter_sink(sp);
	size_t len = strlen(text);
	assert_true(sink.begin(sink.arg, name));
	for (size_t i = 0; i < len; i += piece)
		assert_true(sink.data(sink.arg, text + i, len - i < piece ? len - i : piece));
	assert_true(sink.end(sink.arg, 0));
	learn_splitter_free(&sp);
	return buf_steal(&s.log);
}

static const char mbox[] =
	"From alice@example.com Thu Aug 22 12:36:23 2002\n"
	"Subject: one\n\nfirst body\nFrom here on, no separator\n\n"
	"From the desk of nobody\n"            /* after an empty line, but no date */
	"\n"
	"From bob@example.com  Fri Aug 23 01:02:03 2002\n"
	"Subject: two\n\nsecond\n"
	"From carol@example.com Sat Aug 24 10:00:00 2002\n"  /* no empty line before */
	"\n"
	"From MAILER-DAEMON Sun Aug 25 11:11:11 2002\n"
	"Subject: three\n\n>From quoted\nlast\n";

static const char mbox_expected[] =
	"box#1:Subject: one\n\nfirst body\nFrom here on, no separator\n\n"
	"From the desk of nobody\n|\n"
	"box#2:Subject: two\n\nsecond\nFrom carol@example.com Sat Aug 24 10:00:00 2002\n|\n"
	"box#3:Subject: three\n\n>From quoted\nlast\n|\n";

static void test_mbox_is_cut_on_separators(void **state)
{
	(void)state;
	/* the same whatever the pieces the bytes come in */
	size_t pieces[] = { 1, 2, 7, 64, 100000 };
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		char *log = split("box", mbox, pieces[i], 1 << 20);
		assert_string_equal(log, mbox_expected);
		free(log);
	}
}

static void test_crlf_mbox(void **state)
{
	(void)state;
	char *log = split("box", "From a@b Mon Jan  1 00:00:00 2024\r\nSubject: x\r\n\r\nbody\r\n\r\n"
			  "From a@b Mon Jan  1 00:00:01 2024\r\nSubject: y\r\n\r\nmore\r\n", 3, 1 << 20);
	assert_string_equal(log, "box#1:Subject: x\r\n\r\nbody\r\n|\n"
			    "box#2:Subject: y\r\n\r\nmore\r\n|\n");
	free(log);
}

static void test_one_message_files(void **state)
{
	(void)state;
	/* no separator first: one message, "From " lines and all */
	char *log = split("msg", "Subject: hi\n\nbody\n\nFrom a@b Mon Jan  1 00:00:00 2024\nx\n",
			  5, 1 << 20);
	assert_string_equal(log, "msg#0:Subject: hi\n\nbody\n\nFrom a@b Mon Jan  1 00:00:00 2024\n"
			    "x\n|\n");
	free(log);
	/* a separator and one message (the corpus's files): number 0 */
	log = split("one", "From a@b Mon Jan  1 00:00:00 2024\nSubject: hi\n\nbody", 4, 1 << 20);
	assert_string_equal(log, "one#0:Subject: hi\n\nbody|\n");
	free(log);
	/* empty */
	log = split("empty", "", 1, 1 << 20);
	assert_string_equal(log, "empty#0!ENODATA\n");
	free(log);
	/* a first line longer than a separator can be */
	char *big = malloc(3000);
	memset(big, 'x', 2999);
	big[2999] = '\0';
	memcpy(big, "From ", 5);
	log = split("long", big, 100, 1 << 20);
	assert_int_equal(strlen(log), strlen("long#0:") + 2999 + 2);
	free(log);
	free(big);
}

static void test_message_over_the_bound(void **state)
{
	(void)state;
	char *log = split("box", "From a@b Mon Jan  1 00:00:00 2024\nSubject: big\n\n0123456789\n\n"
			  "From a@b Mon Jan  1 00:00:01 2024\nSubject: ok\n\nx\n", 6, 24);
	assert_string_equal(log, "box#1!EFBIG\nbox#2:Subject: ok\n\nx\n|\n");
	free(log);
	log = split("file", "Subject: big\n\n0123456789\n", 6, 10);
	assert_string_equal(log, "file#0!EFBIG\n");
	free(log);
}

static void test_separator_lines(void **state)
{
	(void)state;
	const char *yes[] = { "From a@b Thu Aug 22 12:36:23 2002\n", "From MAILER-DAEMON Fri Jan  5 1:02:03 2024",
			      "From x  Sat, 1 Jan 2000 00:00:00 +0000\n" };
	const char *no[] = { "From: a@b Thu Aug 22 12:36:23 2002\n", "From  a@b 12:36 2002",
			     "From the desk of nobody\n", "From a@b 2002\n", "From a@b 12:36\n",
			     ">From a@b Thu Aug 22 12:36:23 2002\n", "From " };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(learn_is_from_line(yes[i], strlen(yes[i])));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(learn_is_from_line(no[i], strlen(no[i])));
}

static void test_stop_is_obeyed(void **state)
{
	(void)state;
	struct seen s = { BUF_INIT, 0, 1 };
	struct learn_handler h = { on_message, on_problem, &s };
	struct learn_splitter *sp = learn_splitter_new(1 << 20, &h);
	struct learn_sink sink = learn_splitter_sink(sp);
	assert_true(sink.begin(sink.arg, "box"));
	assert_false(sink.data(sink.arg, mbox, strlen(mbox)));
	assert_int_equal(s.messages, 1);
	learn_splitter_free(&sp);
	buf_free(&s.log);
}

/* ---- the pipe ---------------------------------------------------------------------- */

static void test_pipe_carries_the_same_messages(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	int wfd = p[1];
	struct learn_sink w = learn_pipe_sink(&wfd);
	/* small enough to fit in the pipe's buffer before anything reads */
	assert_true(w.begin(w.arg, "box"));
	assert_true(w.data(w.arg, mbox, 10));
	assert_true(w.data(w.arg, mbox + 10, strlen(mbox) - 10));
	assert_true(w.end(w.arg, 0));
	assert_true(w.begin(w.arg, "gone"));
	assert_true(w.end(w.arg, ENOENT));
	close(p[1]);
	struct seen s = { BUF_INIT, 0, 0 };
	struct learn_handler h = { on_message, on_problem, &s };
	struct learn_splitter *sp = learn_splitter_new(1 << 20, &h);
	struct learn_sink sink = learn_splitter_sink(sp);
	assert_int_equal(learn_pipe_read(p[0], &sink), 0);
	close(p[0]);
	buf_t expected = BUF_INIT;
	buf_printf(&expected, "%sgone#0!%s\n", mbox_expected, strerror(ENOENT));
	assert_string_equal(buf_cstr(&s.log), buf_cstr(&expected));
	buf_free(&expected);
	buf_free(&s.log);
	learn_splitter_free(&sp);
}

static int read_records(const void *bytes, size_t len)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], bytes, len), (ssize_t)len);
	close(p[1]);
	struct seen s = { BUF_INIT, 0, 0 };
	struct learn_handler h = { on_message, on_problem, &s };
	struct learn_splitter *sp = learn_splitter_new(1 << 20, &h);
	struct learn_sink sink = learn_splitter_sink(sp);
	int rc = learn_pipe_read(p[0], &sink);
	close(p[0]);
	buf_free(&s.log);
	learn_splitter_free(&sp);
	return rc;
}

static void test_pipe_refuses_broken_records(void **state)
{
	(void)state;
	assert_int_equal(read_records("", 0), 0);
	assert_int_equal(read_records("B\0\0\0\1a" "E\0\0\0\4\0\0\0\0", 15), 0);
	assert_int_equal(read_records("D\0\0\0\1a", 6), -1);                 /* data before a begin */
	assert_int_equal(read_records("B\0\0\0\1a", 6), -1);                 /* ends inside a file */
	assert_int_equal(read_records("B\0\0\0\1aB\0\0\0\1b", 12), -1);      /* begin twice */
	assert_int_equal(read_records("B\0\1\0\0", 5), -1);                  /* a name too long */
	assert_int_equal(read_records("B\0\0\0\2a\0", 7), -1);               /* a NUL in the name */
	assert_int_equal(read_records("X\0\0\0\0", 5), -1);
	assert_int_equal(read_records("B\0\0\0\1aD\0\1\0\1", 11), -1);       /* data too long */
	assert_int_equal(read_records("B\0\0\0\1aE\0\0\0\3xyz", 14), -1);    /* end of the wrong size */
	assert_int_equal(read_records("B\0\0", 3), -1);                       /* a cut header */
}

/* ---- walking folders -------------------------------------------------------------------- */

static char dir[64];

static void put_file(const char *rel, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void make_dir(const char *rel)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

static int walk_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/postern-learn-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	make_dir("Maildir");
	make_dir("Maildir/cur");
	make_dir("Maildir/new");
	make_dir("Maildir/tmp");
	make_dir("Maildir/.Junk");
	make_dir("Maildir/.Junk/cur");
	put_file("Maildir/cur/2", "Subject: m2\n\nb\n");
	put_file("Maildir/cur/1", "Subject: m1\n\nb\n");
	put_file("Maildir/new/3", "Subject: m3\n\nb\n");
	put_file("Maildir/tmp/4", "Subject: half-written\n\nb\n");
	put_file("Maildir/.Junk/cur/5", "Subject: other folder\n\nb\n");
	make_dir("plain");
	make_dir("plain/sub");
	put_file("plain/b", "Subject: b\n\nb\n");
	put_file("plain/a", "From x Mon Jan  1 00:00:00 2024\nSubject: a1\n\nb\n\n"
		 "From x Mon Jan  1 00:00:00 2024\nSubject: a2\n\nb\n");
	put_file("plain/.hidden", "Subject: hidden\n\nb\n");
	put_file("plain/sub/c", "Subject: c\n\nb\n");
	char target[256], link[256];
	snprintf(target, sizeof(target), "%s/Maildir/new/3", dir);
	snprintf(link, sizeof(link), "%s/plain/link", dir);
	return symlink(target, link);
}

static int walk_teardown(void **state)
{
	(void)state;
	return testutil_rmtree(dir);
}

static char *walk(const char *rel)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	const char *paths[] = { path };
	struct seen s = { BUF_INIT, 0, 0 };
	struct learn_handler h = { on_message, on_problem, &s };
	struct learn_splitter *sp = learn_splitter_new(1 << 20, &h);
	struct learn_sink sink = learn_splitter_sink(sp);
	assert_true(learn_walk(paths, 1, &sink));
	learn_splitter_free(&sp);
	/* without the folder's own path, for comparing */
	buf_t out = BUF_INIT;
	const char *p = buf_cstr(&s.log);
	size_t dl = strlen(dir) + 1;
	while (*p != '\0') {
		if (strncmp(p, dir, dl - 1) == 0 && p[dl - 1] == '/')
			p += dl;
		const char *nl = strchr(p, '\n');
		buf_append(&out, p, (size_t)(nl - p) + 1);
		p = nl + 1;
	}
	buf_free(&s.log);
	return buf_steal(&out);
}

static void test_walk_a_maildir(void **state)
{
	(void)state;
	char *log = walk("Maildir");
	assert_string_equal(log, "Maildir/cur/1#0:Subject: m1\n\nb\n|\n"
			    "Maildir/cur/2#0:Subject: m2\n\nb\n|\n"
			    "Maildir/new/3#0:Subject: m3\n\nb\n|\n");
	free(log);
}

static void test_walk_a_plain_folder(void **state)
{
	(void)state;
	char *log = walk("plain");
	assert_string_equal(log, "plain/a#1:Subject: a1\n\nb\n|\n"
			    "plain/a#2:Subject: a2\n\nb\n|\n"
			    "plain/b#0:Subject: b\n\nb\n|\n"
			    "plain/sub/c#0:Subject: c\n\nb\n|\n");
	free(log);
	/* a file named on the command line, even through a link, is read */
	log = walk("plain/link");
	assert_string_equal(log, "plain/link#0:Subject: m3\n\nb\n|\n");
	free(log);
	log = walk("no-such-file");
	buf_t expected = BUF_INIT;
	buf_printf(&expected, "no-such-file#0!%s\n", strerror(ENOENT));
	assert_string_equal(log, buf_cstr(&expected));
	buf_free(&expected);
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mbox_is_cut_on_separators),
		cmocka_unit_test(test_crlf_mbox),
		cmocka_unit_test(test_one_message_files),
		cmocka_unit_test(test_message_over_the_bound),
		cmocka_unit_test(test_separator_lines),
		cmocka_unit_test(test_stop_is_obeyed),
		cmocka_unit_test(test_pipe_carries_the_same_messages),
		cmocka_unit_test(test_pipe_refuses_broken_records),
		cmocka_unit_test(test_walk_a_maildir),
		cmocka_unit_test(test_walk_a_plain_folder),
	};
	return cmocka_run_group_tests(tests, walk_setup, walk_teardown);
}
