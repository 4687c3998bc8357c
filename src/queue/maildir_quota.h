/*
 * maildir_quota.h - a Maildir's usage as Maildir++ keeps it in the file
 * "maildirsize", read and written the way Dovecot's maildir quota backend
 * does, so that postern and Dovecot (IMAP, doveadm) share one count.
 *
 * The file: a first line with the limits ("10485760S", "10485760S,1000C",
 * or empty for none), then lines "BYTES COUNT" whose sums are the usage
 * (the first one written by a recalculation, the others appended deltas,
 * negative for removals). It is recalculated (every new/ and cur/ of the
 * Maildir and of its Maildir++ folders scanned, the size taken from the
 * ",S=" of the name or from stat) when it is missing, larger than
 * Maildir++'s 5120 bytes, malformed (a line that is not two integers, a
 * last line without its newline, a negative sum), when its limits line is
 * not the configured one, or when it says the mailbox is over quota while
 * holding deltas or being older than 15 minutes (Dovecot does not trust
 * those either). A recalculation writes "maildirsize.lock" exclusively (the
 * name Dovecot's dotlock uses, so the two never rewrite at once; a lock
 * older than 30 s is stale) and renames it over maildirsize.
 *
 * RFCs: none (Maildir++ as Courier and Dovecot define it). Untrusted
 * input: maildirsize and the file names in the Maildir (the mailbox's
 * owner, or a client with IMAP access, can write them); the parser is
 * bounded by MAILDIRSIZE_MAX. Privilege: mail_owner (the local delivery
 * agent and the quota reader; the POP3 role after deletions).
 */
#ifndef POSTERN_MAILDIR_QUOTA_H
#define POSTERN_MAILDIR_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

/* Maildir++: a maildirsize larger than this is recalculated. */
#define MAILDIRSIZE_MAX 5120
/* Over quota, a file older than this is not trusted (Dovecot's rule). */
#define MAILDIRSIZE_STALE_SECONDS (15 * 60)
/* A refusal rests on a file at most this old (maildir_quota_get_for). */
#define MAILDIRSIZE_CONFIRM_SECONDS 60

/* What the limits line says; 0 = no such limit. */
struct maildir_quota_limits {
	uint64_t bytes;
	uint64_t count;
};

struct maildir_quota_usage {
	uint64_t bytes;
	uint64_t count;
};

enum maildirsize_parse_result {
	MAILDIRSIZE_OK,          /* usage_r holds the sums */
	MAILDIRSIZE_RECALCULATE, /* the file cannot be trusted (why_r says why) */
};

/*
 * Parse the text of a maildirsize file (data[0..len), no NUL needed)
 * against the configured limits. over_is_stale: the file is older than
 * MAILDIRSIZE_STALE_SECONDS (only matters when the sums exceed a limit).
 * On MAILDIRSIZE_OK *usage_r is the usage; *file_limits_r is always what
 * the first line said (zeros when it did not parse). *why_r is a static
 * string for the log on MAILDIRSIZE_RECALCULATE.
 */
enum maildirsize_parse_result
maildirsize_parse(const char *data, size_t len, const struct maildir_quota_limits *configured,
		  bool over_is_stale, struct maildir_quota_limits *file_limits_r,
		  struct maildir_quota_usage *usage_r, const char **why_r);

/* Append the limits line without its newline ("" when neither is set). */
void maildirsize_format_limits(buf_t *out, const struct maildir_quota_limits *limits);

/*
 * The usage of the Maildir at maildir (".../Maildir"), for a user with
 * the given limits: read from maildirsize, recalculated (and the file
 * rewritten) when it cannot be trusted. A Maildir that does not exist
 * yet has usage 0 and nothing is created. Returns 0, or -1 with a
 * malloc'ed *err_r (maildirsize or a folder that cannot be read).
 */
int maildir_quota_get(const char *maildir, const struct maildir_quota_limits *limits,
		      struct maildir_quota_usage *usage_r, char **err_r);

/*
 * The same for a decision: when the usage leaves less than need bytes (or
 * no message) free and maildirsize was last written more than
 * MAILDIRSIZE_CONFIRM_SECONDS ago, the Maildir is counted again first, so
 * that a refusal never rests on a file that may have missed deletions
 * for long (Dovecot without its quota plugin, a shell). At most one count
 * per mailbox per MAILDIRSIZE_CONFIRM_SECONDS: the count rewrites the
 * file. need 0: as maildir_quota_get.
 */
int maildir_quota_get_for(const char *maildir, const struct maildir_quota_limits *limits,
			  uint64_t need, struct maildir_quota_usage *usage_r, char **err_r);

/*
 * Recount the Maildir and rewrite maildirsize (via maildirsize.lock and
 * rename; when another process holds a fresh lock, the count is returned
 * and the file left to it). Returns 0, or -1 with a malloc'ed *err_r when
 * the Maildir cannot be read; a file that cannot be written is only
 * logged (the count stands, the next reader counts again).
 */
int maildir_quota_recalculate(const char *maildir, const struct maildir_quota_limits *limits,
			      struct maildir_quota_usage *usage_r, char **err_r);

/*
 * ADD A DELTA: record that bytes/count were added to (positive) or
 * removed from (NEGATIVE, e.g. POP3 DELE then QUIT) the Maildir, as one
 * "BYTES COUNT\n" line appended with O_APPEND in a single write. Call it
 * after the change is made (a delivery linked into new/, a file
 * unlinked). When maildirsize does not exist (or is not a regular
 * file: it is never waited on) nothing is written: the
 * next reader recalculates from the files (as it does once the appended
 * lines take the file past MAILDIRSIZE_MAX). Returns 0 or -1 with a
 * malloc'ed *err_r.
 */
int maildir_quota_add(const char *maildir, int64_t bytes, int64_t count, char **err_r);

#endif
