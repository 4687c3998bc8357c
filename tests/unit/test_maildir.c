/*
 * test_maildir.c - Maildir delivery: the deterministic name with S=/W=,
 * the added header lines, link()-EEXIST idempotence, stale tmp files, the
 * cur/ check for recovered messages, unsafe mailbox names, and the removal
 * of client-supplied Return-Path: fields (whole, and fed in every split).
 */
#include <dirent.h>
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
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/maildir.h"
#include "queue/maildir_header.h"
#include "queue/maildir_quota.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

struct fixture {
	char *dir;   /* mkdtemp root */
	char *spool;
	char *mail_root;
	char *qpath;
	int fd;
	struct qf_msg msg;
};

static const char body[] = "Received: by test\nSubject: hi\n\nline one\nline two\n";

static char *join2(const char *a, const char *b)
{
	return safeio_path_join(a, b);
}

/* Queue content as a new message in f->spool and open it as f->fd/f->msg. */
static void queue_content(struct fixture *f, const char *content, size_t len)
{
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	strlist_t rcpts = { NULL, 0 };

	strlist_add(&rcpts, "u@example.test");
	struct queue_envelope env = {
		.arrival_us = 1700000000999999ull, .client_addr = "192.0.2.1",
		.client_helo = "h", .protocol = "SMTP", .sender = "s@remote.test",
		.recipients = &rcpts,
	};
	queue_id_new(id);
	struct queue_writer *w = queue_writer_open(f->spool, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, content, len, &err), 0);
	assert_int_equal(queue_writer_commit(&w, &err), 0);
	strlist_free(&rcpts);
	char *qdir = join2(f->spool, "queue");
	free(f->qpath);
	f->qpath = join2(qdir, id);
	free(qdir);
	if (f->fd >= 0) {
		close(f->fd);
		qf_msg_free(&f->msg);
	}
	f->fd = open(f->qpath, O_RDONLY);
	assert_true(f->fd >= 0);
	assert_int_equal(qf_read(f->fd, &f->msg, &err), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/postern-test-maildir-XXXXXX";
	char *err = NULL;

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	f->spool = join2(f->dir, "spool");
	f->mail_root = join2(f->dir, "mail");
	f->fd = -1;
	assert_int_equal(queue_dirs_create(f->spool, &err), 0);
	queue_content(f, body, sizeof(body) - 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->fd);
	qf_msg_free(&f->msg);
	testutil_rmtree(f->dir);
	free(f->dir);
	free(f->spool);
	free(f->mail_root);
	free(f->qpath);
	free(f);
	return 0;
}

static struct maildir_delivery make_delivery(struct fixture *f,
					     const char *address)
{
	struct maildir_delivery d = {
		.mail_root = f->mail_root, .hostname = "mx.example.test",
		.address = address, .queue_fd = f->fd, .msg = &f->msg,
		.check_cur = false,
	};
	return d;
}

/* Names of the files in folder (sorted into one '|'-joined string). */
static char *list_folder(const char *path)
{
	DIR *dir = opendir(path);
	buf_t b = BUF_INIT;
	struct dirent *de;

	if (dir == NULL)
		return xstrdup("<missing>");
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (b.len > 0)
			buf_putc(&b, '|');
		buf_puts(&b, de->d_name);
	}
	closedir(dir);
	return buf_steal(&b);
}

static char *mailbox_sub(struct fixture *f, const char *sub)
{
	buf_t b = BUF_INIT;

	buf_printf(&b, "%s/example.test/u/Maildir/%s", f->mail_root, sub);
	return buf_steal(&b);
}

static char *expected_name(struct fixture *f)
{
	buf_t b = BUF_INIT;
	/* 2 added lines + content; W counts one more byte per LF. */
	const char *added = "Return-Path: <s@remote.test>\nDelivered-To: u@example.test\n";
	size_t size = strlen(added) + sizeof(body) - 1;
	size_t lfs = 2 + 5;

	buf_printf(&b, "1700000000.Q%s.mx.example.test,S=%zu,W=%zu", f->msg.id,
		   size, size + lfs);
	return buf_steal(&b);
}

static void test_base_name(void **state)
{
	buf_t b = BUF_INIT;

	(void)state;
	maildir_base_name(&b, 1700000000999999ull, "0123456789ABCDEF012",
			  "a/b:c.example");
	assert_string_equal(buf_cstr(&b),
			    "1700000000.Q0123456789ABCDEF012.a\\057b\\072c.example");
	buf_free(&b);
}

static void test_path_safety(void **state)
{
	buf_t b = BUF_INIT;

	(void)state;
	assert_true(maildir_path(&b, "/m", "user@example.test"));
	assert_string_equal(buf_cstr(&b), "/m/example.test/user/Maildir");
	buf_reset(&b);
	assert_false(maildir_path(&b, "/m", "../x@example.test"));
	assert_false(maildir_path(&b, "/m", "a/b@example.test"));
	assert_false(maildir_path(&b, "/m", "user@../etc"));
	assert_false(maildir_path(&b, "/m", "user@"));
	assert_false(maildir_path(&b, "/m", "@example.test"));
	assert_false(maildir_path(&b, "/m", "noat"));
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

static void test_deliver_once(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d = make_delivery(f, "u@example.test");
	char *err = NULL;

	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	char *newdir = mailbox_sub(f, "new"), *tmpdir = mailbox_sub(f, "tmp");
	char *name = expected_name(f), *files = list_folder(newdir);
	assert_string_equal(files, name);
	char *tmpfiles = list_folder(tmpdir);
	assert_string_equal(tmpfiles, "");

	struct stat st;
	char *full = join2(newdir, name);
	assert_int_equal(stat(full, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	buf_t content = BUF_INIT;
	assert_int_equal(safeio_read_file(full, 1 << 20, &content), 0);
	assert_string_equal(buf_cstr(&content),
			    "Return-Path: <s@remote.test>\n"
			    "Delivered-To: u@example.test\n"
			    "Received: by test\nSubject: hi\n\nline one\nline two\n");
	assert_int_equal((uint64_t)st.st_size, content.len);
	char *md = mailbox_sub(f, "");
	assert_int_equal(stat(md, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	/* A second run (say, after a crash before the status byte was
	 * written) finds the copy through link() EEXIST: still one file. */
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_ALREADY);
	char *files2 = list_folder(newdir);
	assert_string_equal(files2, name);
	free(tmpfiles);
	tmpfiles = list_folder(tmpdir);
	assert_string_equal(tmpfiles, "");

	buf_free(&content);
	free(md);
	free(full);
	free(files);
	free(files2);
	free(tmpfiles);
	free(name);
	free(newdir);
	free(tmpdir);
}

static void test_stale_tmp_replaced(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d = make_delivery(f, "u@example.test");
	char *tmpdir = mailbox_sub(f, "tmp"), *newdir = mailbox_sub(f, "new");
	buf_t base = BUF_INIT;
	char *err = NULL;

	assert_int_equal(safeio_mkdir_p(tmpdir, 0700), 0);
	maildir_base_name(&base, f->msg.arrival_us, f->msg.id, "mx.example.test");
	char *stale = join2(tmpdir, base.data);
	int fd = open(stale, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "half", 4), 4);
	close(fd);

	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	char *tmpfiles = list_folder(tmpdir), *newfiles = list_folder(newdir);
	char *name = expected_name(f);
	assert_string_equal(tmpfiles, "");
	assert_string_equal(newfiles, name);
	free(name);
	free(tmpfiles);
	free(newfiles);
	free(stale);
	buf_free(&base);
	free(tmpdir);
	free(newdir);
}

static void test_recovered_checks_cur(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d = make_delivery(f, "u@example.test");
	char *newdir = mailbox_sub(f, "new"), *curdir = mailbox_sub(f, "cur");
	char *err = NULL;

	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	/* The user reads it: the MUA moves it to cur/ with flags. */
	char *name = expected_name(f);
	char *from = join2(newdir, name);
	buf_t to = BUF_INIT;
	buf_printf(&to, "%s/%s:2,S", curdir, name);
	assert_int_equal(rename(from, to.data), 0);

	/* Recovered at start-up: the copy in cur/ counts as delivered. */
	d.check_cur = true;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_ALREADY);
	char *newfiles = list_folder(newdir);
	assert_string_equal(newfiles, "");
	free(newfiles);

	/* A different hostname in the name is still the same message. */
	d.hostname = "renamed.example.test";
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_ALREADY);

	buf_free(&to);
	free(from);
	free(name);
	free(newdir);
	free(curdir);
}

static void test_unsafe_and_unwritable(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d = make_delivery(f, "../evil@example.test");
	char *err = NULL;

	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_PERMFAIL);
	assert_non_null(err);
	assert_int_equal(strncmp(err, "5.1.3 ", 6), 0);
	free(err);
	err = NULL;

	/* mail_root is a file, not a folder (works even as root): the
	 * environment is broken, which is a temporary failure. */
	int fd = open(f->mail_root, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	d.address = "u@example.test";
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_TEMPFAIL);
	assert_non_null(err);
	assert_int_equal(strncmp(err, "4.3.0 ", 6), 0);
	free(err);
}

/* Content with forged Return-Path fields in every shape, and what the
 * filter must leave of it. */
static const char forged[] =
	"Received: by test\n"
	"Return-Path: <forged@evil.test>\n"
	"Subject: hi\n"
	"RETURN-PATH \t: <a@evil.test>\n"
	"  <folded@evil.test>\n"
	"\tstill folded\n"
	"Return-Paths: kept\n"
	"Return-Pat\n"
	"X-Return-Path: kept\n"
	"return-path:<b@evil.test>\n"
	"To: u@example.test\n"
	"  folded to\n"
	"\n"
	"Return-Path: <body@stays.test>\n"
	"body\n";
static const char filtered[] =
	"Received: by test\n"
	"Subject: hi\n"
	"Return-Paths: kept\n"
	"Return-Pat\n"
	"X-Return-Path: kept\n"
	"To: u@example.test\n"
	"  folded to\n"
	"\n"
	"Return-Path: <body@stays.test>\n"
	"body\n";

/* Run in through the filter in pieces of `step` bytes, the way
 * write_copy does: header bytes filtered, the rest copied. */
static char *edit_in_steps(const char *in, size_t len, size_t step,
			   const struct qf_header_edit *edits, size_t edit_count)
{
	struct mhdr_filter f;
	buf_t out = BUF_INIT;
	mhdr_filter_init(&f, edits, edit_count);

	/* the first pass, learning the field names, in the same steps */
	for (size_t pos = 0; pos < len && !f.in_body; pos += step)
		mhdr_filter_learn(&f, in + pos, len - pos < step ? len - pos : step);
	mhdr_filter_learn_end(&f);
	for (size_t pos = 0; pos < len; pos += step) {
		size_t n = len - pos < step ? len - pos : step;
		size_t used = mhdr_filter_feed(&f, in + pos, n, &out);
		buf_append(&out, in + pos + used, n - used);
	}
	mhdr_filter_end(&f, &out);
	mhdr_filter_free(&f);
	return buf_steal(&out);
}

static char *filter_in_steps(const char *in, size_t len, size_t step)
{
	return edit_in_steps(in, len, step, NULL, 0);
}

static void test_return_path_filter(void **state)
{
	(void)state;
	for (size_t step = 1; step <= sizeof(forged); step++) {
		char *out = filter_in_steps(forged, sizeof(forged) - 1, step);
		assert_string_equal(out, filtered);
		free(out);
	}
	/* No empty line, a last line without LF that could still have been
	 * a Return-Path, and one that is. */
	char *out = filter_in_steps("A: b\nReturn", 11, 3);
	assert_string_equal(out, "A: b\nReturn");
	free(out);
	out = filter_in_steps("A: b\nReturn-Path: <x>", 22, 4);
	assert_string_equal(out, "A: b\n");
	free(out);
	out = filter_in_steps("", 0, 1);
	assert_string_equal(out, "");
	free(out);
}

/* The queue file's header changes: removals by name and occurrence (of
 * the message's own fields), additions at the top (below the first
 * field, postern's Received:) and at the end of the header section. */
static void test_header_edits(void **state)
{
	(void)state;
	static const char in[] =
		"Received: by postern\n"
		"Subject: one\n"
		"X-Old: first\n"
		"x-old : second\n"
		"  folded second\n"
		"X-Old: third\n"
		"DKIM-Signature: a=1\n"
		"\n"
		"X-Old: in the body\n";
	static const char want[] =
		"Received: by postern\n"
		"X-Spam-Flag: YES\n"
		"X-Spam-Score: 9.1\n"
		"Subject: one\n"
		"X-Old: first\n"
		"X-Old: third\n"
		"X-Spam-Report: long\n\twrapped\n"
		"\n"
		"X-Old: in the body\n";
	struct qf_header_edit edits[] = {
		{ QF_REC_ADD_HEADER, QF_HEADER_TOP, (char *)"X-Spam-Flag: YES", NULL },
		{ QF_REC_DEL_HEADER, 2, (char *)"X-OLD", NULL },
		{ QF_REC_ADD_HEADER, QF_HEADER_END, (char *)"X-Spam-Report: long\n\twrapped", NULL },
		{ QF_REC_DEL_HEADER, 0, (char *)"dkim-signature", NULL },
		{ QF_REC_ADD_HEADER, QF_HEADER_TOP, (char *)"X-Spam-Score: 9.1", NULL },
	};
	for (size_t step = 1; step <= sizeof(in); step++) {
		char *out = edit_in_steps(in, sizeof(in) - 1, step, edits, ARRAY_LEN(edits));
		assert_string_equal(out, want);
		free(out);
	}
	/* No body, no empty line, a single field: everything still placed. */
	char *out = edit_in_steps("Received: x", 11, 2, edits, ARRAY_LEN(edits));
	assert_string_equal(out, "Received: x\nX-Spam-Flag: YES\nX-Spam-Score: 9.1\n"
				 "X-Spam-Report: long\n\twrapped\n");
	free(out);
	out = edit_in_steps("\nbody\n", 6, 1, edits, ARRAY_LEN(edits));
	assert_string_equal(out, "X-Spam-Flag: YES\nX-Spam-Score: 9.1\n"
				 "X-Spam-Report: long\n\twrapped\n\nbody\n");
	free(out);
}

static void test_deliver_drops_return_path(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d;
	const char *added = "Return-Path: <s@remote.test>\nDelivered-To: u@example.test\n";
	char *err = NULL;

	queue_content(f, forged, sizeof(forged) - 1);
	d = make_delivery(f, "u@example.test");
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	char *newdir = mailbox_sub(f, "new"), *files = list_folder(newdir);
	size_t size = strlen(added) + sizeof(filtered) - 1;
	size_t lfs = 2 + 10;
	buf_t name = BUF_INIT, want = BUF_INIT, content = BUF_INIT;
	buf_printf(&name, "1700000000.Q%s.mx.example.test,S=%zu,W=%zu",
		   f->msg.id, size, size + lfs);
	assert_string_equal(files, buf_cstr(&name));
	char *full = join2(newdir, files);
	assert_int_equal(safeio_read_file(full, 1 << 20, &content), 0);
	buf_printf(&want, "%s%s", added, filtered);
	assert_string_equal(buf_cstr(&content), buf_cstr(&want));
	assert_int_equal(content.len, size);
	/* Same name on a retry: still exactly one copy. */
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_ALREADY);
	free(files);
	files = list_folder(newdir);
	assert_string_equal(files, buf_cstr(&name));
	buf_free(&name);
	buf_free(&want);
	buf_free(&content);
	free(full);
	free(files);
	free(newdir);
}

static char *maildirsize_text(struct fixture *f)
{
	char *path = mailbox_sub(f, "maildirsize");
	buf_t b = BUF_INIT;
	int rc = safeio_read_file(path, 1 << 16, &b);
	free(path);
	if (rc < 0)
		return xstrdup("<missing>");
	buf_putc(&b, '\0');
	return b.data;
}

/* With a quota: a copy that fits is counted in maildirsize; one that does
 * not is refused for good (5.2.2) and leaves nothing behind; the retry of
 * a copy a crashed attempt had already linked is not refused, although
 * the usage (which counts it) leaves no room for it. */
static void test_quota_fits_refused_and_retried(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d = make_delivery(f, "u@example.test");
	char *err = NULL, *name = expected_name(f);
	size_t size = strlen("Return-Path: <s@remote.test>\nDelivered-To: u@example.test\n") +
		      sizeof(body) - 1;

	d.quota_bytes = 10000;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	char *text = maildirsize_text(f), *want = NULL;
	buf_t w = BUF_INIT;
	buf_printf(&w, "10000S\n0 0\n%zu 1\n", size);
	want = buf_steal(&w);
	assert_string_equal(text, want);
	free(text);
	free(want);

	/* The same copy again (a retry after a crash before the D mark),
	 * with a quota the usage now fills: found, not refused. */
	d.quota_bytes = size;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_ALREADY);

	/* Another message that does not fit: refused for good. */
	static const char big[] = "Subject: big\n\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
	queue_content(f, big, sizeof(big) - 1);
	d = make_delivery(f, "u@example.test");
	d.quota_bytes = size + 50;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_PERMFAIL);
	assert_non_null(strstr(err, "5.2.2 mailbox full: u@example.test"));
	free(err);
	err = NULL;
	char *newdir = mailbox_sub(f, "new"), *tmpdir = mailbox_sub(f, "tmp");
	char *listed = list_folder(newdir);
	assert_string_equal(listed, name); /* only the first copy */
	free(listed);
	listed = list_folder(tmpdir);
	assert_string_equal(listed, "");
	free(listed);
	/* The postmaster and bounces get past the quota, but only within the
	 * grace: none (0) refuses them as anyone, 1000 bytes lets them in,
	 * and they are counted. */
	d.quota_exempt = true;
	d.quota_grace = 0;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_PERMFAIL);
	assert_non_null(strstr(err, "5.2.2 mailbox full: u@example.test (quota with its grace"));
	free(err);
	err = NULL;
	d.quota_grace = 1000;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	struct maildir_quota_limits limits = { size + 50, 0 };
	struct maildir_quota_usage used;
	char *maildir = mailbox_sub(f, "");
	assert_int_equal(maildir_quota_get(maildir, &limits, &used, &err), 0);
	assert_int_equal(used.count, 2);
	assert_true(used.bytes > size + 50); /* past the quota */
	/* Once quota + grace is used, an exempt sender is refused too. */
	queue_content(f, big, sizeof(big) - 1);
	d = make_delivery(f, "u@example.test");
	d.quota_bytes = size + 50;
	d.quota_exempt = true;
	d.quota_grace = used.bytes - (size + 50) + 10; /* room for 10 bytes more */
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_PERMFAIL);
	assert_non_null(strstr(err, "5.2.2 mailbox full"));
	free(err);
	err = NULL;
	d.quota_grace_percent = true; /* 1000% of the quota: room enough */
	d.quota_grace = 1000;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	assert_int_equal(maildir_quota_get(maildir, &limits, &used, &err), 0);
	assert_int_equal(used.count, 3);
	free(maildir);
	/* A message count limit: one more is refused. */
	queue_content(f, big, sizeof(big) - 1);
	d = make_delivery(f, "u@example.test");
	d.quota_messages = 3;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_PERMFAIL);
	assert_non_null(strstr(err, "quota 3 messages"));
	free(err);
	err = NULL;
	/* An exempt sender gets a percentage grace on the count too (10% of
	 * 3 rounds down to none; 34% is one message), none from a byte grace. */
	d.quota_exempt = true;
	d.quota_grace = 10;
	d.quota_grace_percent = true;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_PERMFAIL);
	free(err);
	err = NULL;
	d.quota_grace = 1 << 20;
	d.quota_grace_percent = false;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_PERMFAIL);
	free(err);
	err = NULL;
	d.quota_grace = 34;
	d.quota_grace_percent = true;
	assert_int_equal(maildir_deliver(&d, &err), MAILDIR_DELIVERED);
	d.quota_exempt = false;
	free(err);
	free(newdir);
	free(tmpdir);
	free(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_name),
		cmocka_unit_test(test_path_safety),
		cmocka_unit_test_setup_teardown(test_deliver_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota_fits_refused_and_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_tmp_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recovered_checks_cur, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_and_unwritable, setup, teardown),
		cmocka_unit_test(test_return_path_filter),
		cmocka_unit_test(test_header_edits),
		cmocka_unit_test_setup_teardown(test_deliver_drops_return_path, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
