/*
 * test_maildir_quota.c - Maildir++ quotas: the maildirsize parser (limits
 * line, deltas, every reason to recount), the writer (limits line, the
 * recount of INBOX and Maildir++ folders, the lock, appended deltas), the
 * Dovecot quota rules of users_file (quota_rule.c), the senders exempt
 * from quotas, and the smtp worker <-> quota reader messages.
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
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "mail/quota_rule.h"
#include "mail/recipients.h"
#include "queue/maildir_quota.h"
#include "queue/quota_proto.h"

/* ---- the parser ------------------------------------------------------------ */

static enum maildirsize_parse_result parse(const char *text, uint64_t bytes, uint64_t count,
					   bool stale, struct maildir_quota_usage *u,
					   const char **why)
{
	struct maildir_quota_limits conf = { bytes, count }, file;
	return maildirsize_parse(text, strlen(text), &conf, stale, &file, u, why);
}

static void parse_sums_the_lines(void **state)
{
	(void)state;
	struct maildir_quota_usage u;
	const char *why = NULL;
	assert_int_equal(parse("10485760S\n1000 2\n500 1\n-300 -1\n", 10485760, 0, false, &u, &why),
			 MAILDIRSIZE_OK);
	assert_int_equal(u.bytes, 1200);
	assert_int_equal(u.count, 2);
	assert_null(why);
	/* Both limits, blanks around the numbers (Dovecot reads with sscanf). */
	assert_int_equal(parse("10485760S,1000C\n  7\t 3 \n", 10485760, 1000, false, &u, &why),
			 MAILDIRSIZE_OK);
	assert_int_equal(u.bytes, 7);
	assert_int_equal(u.count, 3);
	/* The order of the limits does not matter; neither does an unknown item. */
	assert_int_equal(parse("1000C,2048S\n1 1\n", 2048, 1000, false, &u, &why), MAILDIRSIZE_OK);
	/* No limit at all: an empty first line. */
	assert_int_equal(parse("\n5 1\n", 0, 0, false, &u, &why), MAILDIRSIZE_OK);
	assert_int_equal(u.bytes, 5);
}

static void parse_asks_for_a_recount(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *why;
	} cases[] = {
		{ "", "empty" },
		{ "100S\n5 1", "last line incomplete" },
		{ "200S\n5 1\n", "limits changed" },
		{ "100S,5C\n5 1\n", "limits changed" },
		{ "junk\n5 1\n", "limits changed" },
		{ "100S\n", "no usage line" },
		{ "100S\n5\n", "malformed line" },
		{ "100S\n5 1 2\n", "malformed line" },
		{ "100S\n5x 1\n", "malformed line" },
		{ "100S\n\n5 1\n", "malformed line" },
		{ "100S\n--5 1\n", "malformed line" },
		{ "100S\n99999999999999999999 1\n", "malformed line" },
		{ "100S\n5 1\n-10 -1\n", "negative usage" },
		{ "100S\n5 -2\n", "negative usage" },
		/* over quota with deltas: Dovecot does not trust it either */
		{ "100S\n90 1\n20 1\n", "over quota with deltas or stale" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct maildir_quota_usage u;
		const char *why = NULL;
		enum maildirsize_parse_result r = parse(cases[i].text, 100, 0, false, &u, &why);
		if (r != MAILDIRSIZE_RECALCULATE || why == NULL || strcmp(why, cases[i].why) != 0)
			fail_msg("case %zu %s: result %d why %s, expected %s", i, cases[i].text,
				 (int)r, why ? why : "(none)", cases[i].why);
	}
}

static void parse_over_quota_single_line(void **state)
{
	(void)state;
	struct maildir_quota_usage u;
	const char *why = NULL;
	/* A fresh recount over the quota is believed... */
	assert_int_equal(parse("100S\n150 2\n", 100, 0, false, &u, &why), MAILDIRSIZE_OK);
	assert_int_equal(u.bytes, 150);
	/* ...unless it is older than 15 minutes. */
	assert_int_equal(parse("100S\n150 2\n", 100, 0, true, &u, &why), MAILDIRSIZE_RECALCULATE);
	/* Over the message count works the same way. */
	assert_int_equal(parse("100S,1C\n10 1\n10 1\n", 100, 1, false, &u, &why),
			 MAILDIRSIZE_RECALCULATE);
}

static void parse_bounded(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	buf_puts(&b, "100S\n");
	while (b.len <= MAILDIRSIZE_MAX)
		buf_puts(&b, "1 0\n");
	struct maildir_quota_limits conf = { 100, 0 }, file;
	struct maildir_quota_usage u;
	const char *why = NULL;
	assert_int_equal(maildirsize_parse(b.data, b.len, &conf, false, &file, &u, &why),
			 MAILDIRSIZE_RECALCULATE);
	assert_string_equal(why, "larger than 5120 bytes");
	buf_free(&b);
}

static void limits_line_as_dovecot_writes_it(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	struct maildir_quota_limits l = { 10485760, 0 };
	maildirsize_format_limits(&b, &l);
	assert_string_equal(b.data, "10485760S");
	buf_reset(&b);
	l.count = 1000;
	maildirsize_format_limits(&b, &l);
	assert_string_equal(b.data, "10485760S,1000C");
	buf_reset(&b);
	l.bytes = 0;
	maildirsize_format_limits(&b, &l);
	assert_string_equal(b.data, "1000C");
	buf_free(&b);
}

/* ---- files ----------------------------------------------------------------------- */

struct box {
	char dir[64];
	char *maildir;
};

static void write_file(const char *dir, const char *name, const char *text)
{
	char *p = safeio_path_join(dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, text, strlen(text)), 0);
	close(fd);
	free(p);
}

static char *read_text(const char *dir, const char *name)
{
	char *p = safeio_path_join(dir, name);
	buf_t b = BUF_INIT;
	int rc = safeio_read_file(p, 1 << 20, &b);
	free(p);
	if (rc < 0) {
		buf_free(&b);
		return NULL;
	}
	buf_putc(&b, '\0');
	return b.data;
}

static int box_setup(void **state)
{
	struct box *b = xcalloc(1, sizeof(*b));
	snprintf(b->dir, sizeof(b->dir), "/tmp/postern-quota-XXXXXX");
	assert_non_null(mkdtemp(b->dir));
	b->maildir = safeio_path_join(b->dir, "Maildir");
	static const char *const dirs[] = { "", "/new", "/cur", "/tmp", "/.Sent", "/.Sent/cur",
					    "/.Sent/new", "/.Trash", "/.Trash/cur" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		buf_t p = BUF_INIT;
		buf_printf(&p, "%s%s", b->maildir, dirs[i]);
		assert_int_equal(mkdir(p.data, 0700), 0);
		buf_free(&p);
	}
	*state = b;
	return 0;
}

static int box_teardown(void **state)
{
	struct box *b = *state;
	buf_t cmd = BUF_INIT;
	buf_printf(&cmd, "rm -rf '%s'", b->dir);
	assert_int_equal(system(cmd.data), 0);
	buf_free(&cmd);
	free(b->maildir);
	free(b);
	return 0;
}

static void recount_inbox_and_folders(void **state)
{
	struct box *b = *state;
	char *new_dir = safeio_path_join(b->maildir, "new");
	char *cur_dir = safeio_path_join(b->maildir, "cur");
	char *sent = safeio_path_join(b->maildir, ".Sent/cur");
	char *trash = safeio_path_join(b->maildir, ".Trash/cur");
	write_file(new_dir, "1.M1.h,S=1000,W=1020", "x");        /* the name's S= counts */
	write_file(cur_dir, "2.M2.h,S=500:2,S", "x");
	write_file(cur_dir, "3.M3.h:2,", "twelve bytes");        /* no S=: its size */
	write_file(cur_dir, ".hidden", "ignored");
	write_file(sent, "4.M4.h,S=40:2,S", "x");
	write_file(trash, "5.M5.h,S=7:2,T", "x");                 /* Dovecot counts Trash */
	write_file(b->maildir, "dovecot-uidlist", "ignored: not in new/ or cur/");
	struct maildir_quota_limits l = { 4096, 0 };
	struct maildir_quota_usage u;
	char *err = NULL;
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	assert_int_equal(u.bytes, 1000 + 500 + 12 + 40 + 7);
	assert_int_equal(u.count, 5);
	char *text = read_text(b->maildir, "maildirsize");
	assert_string_equal(text, "4096S\n1559 5\n");
	free(text);
	/* No lock left behind. */
	char *lock = safeio_path_join(b->maildir, "maildirsize.lock");
	assert_int_equal(access(lock, F_OK), -1);
	free(lock);
	free(new_dir);
	free(cur_dir);
	free(sent);
	free(trash);
}

static void deltas_appended_and_read_back(void **state)
{
	struct box *b = *state;
	struct maildir_quota_limits l = { 4096, 10 };
	struct maildir_quota_usage u;
	char *err = NULL;
	/* No file yet: a delta is not written (the next read recounts). */
	assert_int_equal(maildir_quota_add(b->maildir, 100, 1, &err), 0);
	char *text = read_text(b->maildir, "maildirsize");
	assert_null(text);
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	assert_int_equal(u.bytes, 0);
	assert_int_equal(maildir_quota_add(b->maildir, 300, 1, &err), 0);
	assert_int_equal(maildir_quota_add(b->maildir, 200, 2, &err), 0);
	assert_int_equal(maildir_quota_add(b->maildir, -100, -1, &err), 0);
	text = read_text(b->maildir, "maildirsize");
	assert_string_equal(text, "4096S,10C\n0 0\n300 1\n200 2\n-100 -1\n");
	free(text);
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	assert_int_equal(u.bytes, 400);
	assert_int_equal(u.count, 2);
	/* Other limits: recounted from the files (none here) and rewritten. */
	struct maildir_quota_limits other = { 8192, 0 };
	assert_int_equal(maildir_quota_get(b->maildir, &other, &u, &err), 0);
	assert_int_equal(u.bytes, 0);
	text = read_text(b->maildir, "maildirsize");
	assert_string_equal(text, "8192S\n0 0\n");
	free(text);
}

static void broken_file_recounted(void **state)
{
	struct box *b = *state;
	char *cur_dir = safeio_path_join(b->maildir, "cur");
	write_file(cur_dir, "1.M1.h,S=123:2,S", "x");
	write_file(b->maildir, "maildirsize", "100S\nnot numbers\n");
	struct maildir_quota_limits l = { 100, 0 };
	struct maildir_quota_usage u;
	char *err = NULL;
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	assert_int_equal(u.bytes, 123);
	char *text = read_text(b->maildir, "maildirsize");
	assert_string_equal(text, "100S\n123 1\n");
	free(text);
	free(cur_dir);
}

static void fresh_lock_of_another_process_respected(void **state)
{
	struct box *b = *state;
	write_file(b->maildir, "maildirsize.lock", "someone else's");
	write_file(b->maildir, "maildirsize", "100S\n1 1\n1 1\nbroken\n");
	struct maildir_quota_limits l = { 100, 0 };
	struct maildir_quota_usage u;
	char *err = NULL;
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	assert_int_equal(u.bytes, 0); /* the recount is returned... */
	char *text = read_text(b->maildir, "maildirsize");
	assert_string_equal(text, "100S\n1 1\n1 1\nbroken\n"); /* ...the file left to the holder */
	free(text);
	/* A lock older than 30 s was left by a dead process: taken over. */
	char *lock = safeio_path_join(b->maildir, "maildirsize.lock");
	struct timeval old[2] = { { time(NULL) - 60, 0 }, { time(NULL) - 60, 0 } };
	assert_int_equal(utimes(lock, old), 0);
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	text = read_text(b->maildir, "maildirsize");
	assert_string_equal(text, "100S\n0 0\n");
	free(text);
	assert_int_equal(access(lock, F_OK), -1);
	free(lock);
}

/* A refusal rests on a recent file: one that says "full" but was written
 * more than a minute ago is checked against the messages first (the user
 * may have deleted some without a delta: Dovecot without its quota
 * plugin); a recent one is believed. */
static void refusal_confirmed_by_a_count(void **state)
{
	struct box *b = *state;
	char *cur_dir = safeio_path_join(b->maildir, "cur");
	write_file(cur_dir, "1.M1.h,S=100:2,S", "x");
	write_file(b->maildir, "maildirsize", "1000S\n950 3\n");
	struct maildir_quota_limits l = { 1000, 0 };
	struct maildir_quota_usage u;
	char *err = NULL;
	/* No need given, or room enough: the file as it is. */
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	assert_int_equal(u.bytes, 950);
	assert_int_equal(maildir_quota_get_for(b->maildir, &l, 40, &u, &err), 0);
	assert_int_equal(u.bytes, 950);
	/* Recent and full: believed. */
	assert_int_equal(maildir_quota_get_for(b->maildir, &l, 100, &u, &err), 0);
	assert_int_equal(u.bytes, 950);
	/* Older than a minute and full: counted again, and rewritten. */
	char *path = safeio_path_join(b->maildir, "maildirsize");
	struct timeval old[2] = { { time(NULL) - 120, 0 }, { time(NULL) - 120, 0 } };
	assert_int_equal(utimes(path, old), 0);
	assert_int_equal(maildir_quota_get_for(b->maildir, &l, 100, &u, &err), 0);
	assert_int_equal(u.bytes, 100);
	assert_int_equal(u.count, 1);
	char *text = read_text(b->maildir, "maildirsize");
	assert_string_equal(text, "1000S\n100 1\n");
	free(text);
	free(path);
	free(cur_dir);
}

/* A maildirsize that is not a regular file (a FIFO: whoever can write
 * the Maildir can make one) is taken as missing: counted again, and
 * never waited on, which would stop the delivery agent or the quota
 * reader for every mailbox. alarm() turns a hang into a failure. */
static void maildirsize_fifo_is_not_waited_on(void **state)
{
	struct box *b = *state;
	char *path = safeio_path_join(b->maildir, "maildirsize");
	assert_int_equal(mkfifo(path, 0600), 0);
	struct maildir_quota_limits l = { 100, 0 };
	struct maildir_quota_usage u = { 1, 1 };
	char *err = NULL;
	alarm(10);
	assert_int_equal(maildir_quota_add(b->maildir, 5, 1, &err), 0); /* nothing to add to */
	assert_int_equal(maildir_quota_get(b->maildir, &l, &u, &err), 0);
	alarm(0);
	assert_int_equal(u.bytes, 0);
	assert_int_equal(u.count, 0);
	free(path);
}

static void missing_maildir_is_empty(void **state)
{
	struct box *b = *state;
	char *nowhere = safeio_path_join(b->dir, "no/such/Maildir");
	struct maildir_quota_limits l = { 100, 0 };
	struct maildir_quota_usage u = { 1, 1 };
	char *err = NULL;
	assert_int_equal(maildir_quota_get(nowhere, &l, &u, &err), 0);
	assert_int_equal(u.bytes, 0);
	assert_int_equal(u.count, 0);
	assert_int_equal(access(nowhere, F_OK), -1); /* nothing created */
	free(nowhere);
}

/* ---- quota rules and exemptions --------------------------------------------------- */

static void quota_rules(void **state)
{
	(void)state;
	static const struct {
		const char *rule;
		uint64_t bytes, messages;
	} good[] = {
		{ "*:storage=10M", 10ULL << 20, 0 },
		{ "*:storage=100", 100 * 1024, 0 },       /* a bare number counts KiB */
		{ "*:storage=100k", 100 * 1024, 0 },
		{ "*:storage=512B", 512, 0 },
		{ "*:storage=1g", 1ULL << 30, 0 },
		{ "*:storage=2T", 2ULL << 40, 0 },
		{ "*:bytes=102400", 102400, 0 },          /* bytes= counts bytes */
		{ "*:bytes=1M", 1 << 20, 0 },
		{ "*:storage=0", 0, 0 },
		{ "*:storage=1G:messages=1000", 1ULL << 30, 1000 },
		{ "*:messages=5", 0, 5 },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t bytes = 1, messages = 1;
		const char *why = NULL;
		if (!quota_rule_parse(good[i].rule, &bytes, &messages, &why) ||
		    bytes != good[i].bytes || messages != good[i].messages)
			fail_msg("%s: bytes %llu messages %llu (%s)", good[i].rule,
				 (unsigned long long)bytes, (unsigned long long)messages,
				 why ? why : "parsed");
	}
	static const char *const bad[] = {
		"storage=10M", "INBOX:storage=10M", "Trash:storage=+100M", "*:storage=+10M",
		"*:storage=", "*:storage=10X", "*:storage=10MB", "*:storage=10 M", "*:ignore",
		"*:storage=10M:", "*:", "*:storage=99999999999999999999", "*:storage=2000000T",
		"", "*:backend=x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t bytes, messages;
		const char *why = NULL;
		if (quota_rule_parse(bad[i], &bytes, &messages, &why) || why == NULL)
			fail_msg("%s: accepted", bad[i]);
	}
}

static void exempt_senders(void **state)
{
	(void)state;
	strlist_t local = { NULL, 0 };
	strlist_add(&local, "example.test");
	assert_true(quota_sender_exempt("", &local));
	assert_true(quota_sender_exempt("postmaster@example.test", &local));
	assert_true(quota_sender_exempt("PostMaster@EXAMPLE.test", &local));
	assert_true(quota_sender_exempt("MAILER-DAEMON@anywhere.test", &local));
	assert_true(quota_sender_exempt("mailer-daemon@example.test", &local));
	assert_false(quota_sender_exempt("postmaster@remote.test", &local));
	assert_false(quota_sender_exempt("postmasters@example.test", &local));
	assert_false(quota_sender_exempt("user@example.test", &local));
	assert_false(quota_sender_exempt("postmaster", &local));
	strlist_free(&local);
}

/* The grace's arithmetic: percentages rounded down, absolute sizes for
 * bytes only, no limit stays none, and no overflow anywhere. */
static void grace_limits(void **state)
{
	(void)state;
	assert_int_equal(quota_grace_limit(1000, 10, true, true), 1100);
	assert_int_equal(quota_grace_limit(1000, 10, true, false), 1100);
	assert_int_equal(quota_grace_limit(3, 10, true, false), 3);   /* 0.3 rounds down */
	assert_int_equal(quota_grace_limit(3, 34, true, false), 4);   /* 1.02 */
	assert_int_equal(quota_grace_limit(199, 50, true, true), 298); /* 99.5 */
	assert_int_equal(quota_grace_limit(1000, 0, true, true), 1000);
	assert_int_equal(quota_grace_limit(1000, 1000, true, true), 11000);
	assert_int_equal(quota_grace_limit(1000, 500, false, true), 1500);
	assert_int_equal(quota_grace_limit(1000, 500, false, false), 1000);
	assert_int_equal(quota_grace_limit(0, 10, true, true), 0);
	assert_int_equal(quota_grace_limit(0, 500, false, true), 0);
	/* the largest limits: exact where the result fits, saturated where not */
	uint64_t big = 1ULL << 60;
	assert_true(quota_grace_limit(big, 1000, true, true) == big + big * 10);
	assert_true(quota_grace_limit(big, 100, true, true) == 2 * big);
	assert_true(quota_grace_limit(UINT64_MAX, 10, true, true) == UINT64_MAX);
	assert_true(quota_grace_limit(UINT64_MAX - 5, 5, false, true) == UINT64_MAX);
	assert_true(quota_grace_limit(UINT64_MAX / 2, UINT64_MAX, true, true) == UINT64_MAX);
	/* 99 + floor(99 * M / 100) = 99 + M - ceil(M / 100), M / 100 not whole */
	assert_true(quota_grace_limit(99, UINT64_MAX, true, true) ==
		    99 + UINT64_MAX - UINT64_MAX / 100 - 1);
	assert_true(quota_grace_limit(101, UINT64_MAX, true, true) == UINT64_MAX);
	assert_true(quota_grace_limit(1, UINT64_MAX, true, true) ==
		    1 + UINT64_MAX / 100); /* floor(1 * M / 100) */
	assert_true(quota_grace_limit(UINT64_MAX / 200, 100, true, true) ==
		    (UINT64_MAX / 200) * 2);

	assert_true(quota_fits(0, 100, 100));
	assert_false(quota_fits(1, 100, 100));
	assert_true(quota_fits(5, 1000000, 0)); /* no limit */
	assert_false(quota_fits(200, 0, 100)); /* already past */
	assert_false(quota_fits(0, UINT64_MAX, UINT64_MAX - 1));
	assert_true(quota_fits(UINT64_MAX - 1, 1, UINT64_MAX));
	assert_false(quota_fits(UINT64_MAX, 1, UINT64_MAX));
	assert_true(quota_fits(2, 1, 3)); /* a count: a third message */
	assert_false(quota_fits(3, 1, 3));
}

static void users_file_quotas(void **state)
{
	struct box *b = *state;
	write_file(b->dir, "users",
		   "a@x.test:{PLAIN}p::::::userdb_quota_rule=*:storage=10M\n"
		   "b@x.test:{PLAIN}p::::::\n"
		   "c@x.test:{PLAIN}p::::::nopassword userdb_quota_rule=*:storage=0\n"
		   "d@x.test:{PLAIN}p::::::userdb_quota_rule=*:bytes=5000:messages=7\n");
	char *users = safeio_path_join(b->dir, "users");
	char *errors = NULL;
	size_t errors_len = 0;
	FILE *err = open_memstream(&errors, &errors_len);
	struct recipient_tables *t = recipients_load(users, "", NULL, err);
	fclose(err);
	assert_non_null(t);
	assert_int_equal(recipients_quota(t, "a@x.test", 1000), 10 << 20);
	assert_int_equal(recipients_quota(t, "b@x.test", 1000), 1000); /* the global default */
	assert_int_equal(recipients_quota(t, "b@x.test", 0), 0);
	assert_int_equal(recipients_quota(t, "c@x.test", 1000), 0);    /* its own: unlimited */
	assert_int_equal(recipients_quota(t, "d@x.test", 1000), 5000);
	assert_int_equal(recipients_quota_messages(t, "d@x.test"), 7);
	assert_int_equal(recipients_quota_messages(t, "a@x.test"), 0);
	assert_int_equal(recipients_quota_rule_count(t), 3);
	recipients_free(&t);
	free(errors);

	/* A rule postern cannot apply as Dovecot would is a FILE:LINE error. */
	write_file(b->dir, "users",
		   "a@x.test:{PLAIN}p::::::userdb_quota_rule=*:storage=10M\n"
		   "b@x.test:{PLAIN}p::::::userdb_quota_rule=Trash:storage=+10M\n");
	err = open_memstream(&errors, &errors_len);
	t = recipients_load(users, "", NULL, err);
	fclose(err);
	assert_null(t);
	assert_non_null(strstr(errors, "users:2: userdb_quota_rule=Trash:storage=+10M: only the "
				       "quota rule of the whole mailbox"));
	free(errors);
	free(users);
}

/* ---- the quota reader's messages ------------------------------------------------------ */

static void proto_round_trip_and_refusals(void **state)
{
	(void)state;
	unsigned char buf[QUOTA_MSG_MAX];
	struct quota_msg ask = { .type = QUOTA_ASK, .seq = 7, .need = 25600 }, got;
	const char *why = NULL;
	snprintf(ask.address, sizeof(ask.address), "jos\xc3\xa9@example.test");
	size_t n = quota_msg_encode(&ask, buf);
	assert_int_equal(quota_msg_decode(buf, n, &got, &why), 0);
	assert_int_equal(got.type, QUOTA_ASK);
	assert_int_equal(got.seq, 7);
	assert_string_equal(got.address, ask.address);
	assert_int_equal(got.need, 25600);
	assert_int_equal(quota_msg_decode(buf, n - 1, &got, &why), -1); /* truncated */
	unsigned char longer[QUOTA_MSG_MAX + 1];
	memcpy(longer, buf, n);
	longer[n] = 0;
	assert_int_equal(quota_msg_decode(longer, n + 1, &got, &why), -1);
	assert_string_equal(why, "bytes left over");
	buf[7] = ' '; /* a space in the address */
	assert_int_equal(quota_msg_decode(buf, n, &got, &why), -1);

	struct quota_msg usage = { .type = QUOTA_USAGE, .seq = 9, .status = QUOTA_KNOWN,
				   .limit = 1000, .used = 999, .count_limit = 3, .count_used = 2 };
	n = quota_msg_encode(&usage, buf);
	assert_int_equal(quota_msg_decode(buf, n, &got, &why), 0);
	assert_int_equal(got.limit, 1000);
	assert_int_equal(got.used, 999);
	assert_int_equal(got.count_limit, 3);
	assert_int_equal(got.count_used, 2);
	buf[5] = 3; /* no such status */
	assert_int_equal(quota_msg_decode(buf, n, &got, &why), -1);
	buf[0] = 0x42; /* no such type */
	assert_int_equal(quota_msg_decode(buf, n, &got, &why), -1);
	/* An address of length 0 or beyond the bound. */
	unsigned char empty[] = { QUOTA_ASK, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	assert_int_equal(quota_msg_decode(empty, sizeof(empty), &got, &why), -1);
	unsigned char huge[] = { QUOTA_ASK, 0, 0, 0, 1, 0xff, 0xff };
	assert_int_equal(quota_msg_decode(huge, sizeof(huge), &got, &why), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_sums_the_lines),
		cmocka_unit_test(parse_asks_for_a_recount),
		cmocka_unit_test(parse_over_quota_single_line),
		cmocka_unit_test(parse_bounded),
		cmocka_unit_test(limits_line_as_dovecot_writes_it),
		cmocka_unit_test_setup_teardown(recount_inbox_and_folders, box_setup, box_teardown),
		cmocka_unit_test_setup_teardown(deltas_appended_and_read_back, box_setup,
						box_teardown),
		cmocka_unit_test_setup_teardown(broken_file_recounted, box_setup, box_teardown),
		cmocka_unit_test_setup_teardown(fresh_lock_of_another_process_respected, box_setup,
						box_teardown),
		cmocka_unit_test_setup_teardown(missing_maildir_is_empty, box_setup, box_teardown),
		cmocka_unit_test_setup_teardown(maildirsize_fifo_is_not_waited_on, box_setup,
						box_teardown),
		cmocka_unit_test_setup_teardown(refusal_confirmed_by_a_count, box_setup,
						box_teardown),
		cmocka_unit_test(quota_rules),
		cmocka_unit_test_setup_teardown(users_file_quotas, box_setup, box_teardown),
		cmocka_unit_test(exempt_senders),
		cmocka_unit_test(grace_limits),
		cmocka_unit_test(proto_round_trip_and_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
