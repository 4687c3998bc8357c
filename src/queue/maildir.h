/*
 * maildir.h - local delivery into <mail_root>/<domain>/<local>/Maildir.
 *
 * The file name is deterministic per (message, mailbox) so that a delivery
 * repeated after a crash finds the earlier copy instead of making a second:
 *   <arrival_seconds>.Q<queueid>.<hostname>,S=<size>,W=<size with CRLF>
 * See docs/queue.md ("exactly once").
 *
 * Client-supplied Return-Path: fields are dropped from the copy (RFC 5321
 * section 4.4); the one added on top is the only one left.
 *
 * RFCs: RFC 5322 for the two header lines added on top, RFC 5321 4.4.
 * Quota: see struct maildir_delivery's quota_bytes.
 *
 * Untrusted input: the message content (copied; header field names looked
 * at only to drop Return-Path). Privilege: the local delivery agent
 * (local.c), running as mail_owner, owner of mail_root.
 */
#ifndef POSTERN_MAILDIR_H
#define POSTERN_MAILDIR_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "queue_file.h"

enum maildir_result {
	MAILDIR_DELIVERED, /* a new copy is in new/ (fsync'ed, or to be) */
	MAILDIR_ALREADY,   /* an earlier run delivered it (new/ or cur/) */
	MAILDIR_TEMPFAIL,  /* try again later; *err_r "4.x.x text" */
	MAILDIR_PERMFAIL,  /* never going to work; *err_r "5.x.x text" */
};

struct maildir_delivery {
	const char *mail_root;
	const char *hostname;
	const char *address;  /* final recipient "local@domain", lower-case */
	int queue_fd;         /* queue file; content is streamed from it */
	const struct qf_msg *msg;
	bool check_cur;       /* recovered message: look for a read copy */
	/* Quota: bytes and messages, 0 = no such limit (maildir_quota.h).
	 * With either, a new copy that would take the mailbox's usage past
	 * it is not linked into new/ (MAILDIR_PERMFAIL "5.2.2 mailbox full");
	 * with quota_exempt (mail from postmaster or <>, quota_sender_exempt)
	 * the limits are raised by the grace (quota_grace_limit: quota_grace
	 * percent of each, or quota_grace bytes over the byte limit). Every
	 * new copy linked is added to maildirsize. With neither limit,
	 * maildirsize is not touched. */
	uint64_t quota_bytes;
	uint64_t quota_messages;
	bool quota_exempt;
	uint64_t quota_grace;
	bool quota_grace_percent;
};

/* Append "<arrival_seconds>.Q<id>.<hostname>" with '/' and ':' in the
 * hostname written as \057 and \072 (the unique part of the name). */
void maildir_base_name(buf_t *out, uint64_t arrival_us, const char *queue_id,
		       const char *hostname);
/* Append the Maildir folder of address ("<root>/<domain>/<local>/Maildir");
 * false (nothing appended) if either part is unsafe as a path component. */
bool maildir_path(buf_t *out, const char *mail_root, const char *address);

/* Deliver one copy, new/ fsync'ed. *err_r (malloc'ed) is set for the two
 * failures. */
enum maildir_result maildir_deliver(const struct maildir_delivery *d,
				    char **err_r);
/*
 * The same without the final fsync of new/: on DELIVERED, and on ALREADY
 * found by link() EEXIST (an earlier run may have crashed before its
 * fsync), *newdir_r (malloc'ed) is the folder the caller must fsync
 * (maildir_sync_dir) before it counts the copy as delivered; otherwise
 * *newdir_r is NULL.
 */
enum maildir_result maildir_deliver_unsynced(const struct maildir_delivery *d,
					     char **newdir_r, char **err_r);
/* fsync a new/ folder; -1 with a malloc'ed "4.x.x ..." *err_r. */
int maildir_sync_dir(const char *newdir, char **err_r);

#endif
