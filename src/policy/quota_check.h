/*
 * quota_check.h - the RCPT check of mailbox quotas (552 5.2.2).
 *
 * A local recipient is expanded through the aliases; each final mailbox
 * with a quota (recipients_quota: the user's userdb_quota_rule, else
 * mailbox_quota) is looked up by the worker's quota reader (a mail_owner
 * process the worker forked, src/queue/quota_reader.h) without blocking
 * the loop. The recipient is refused with "552 5.2.2 mailbox full" when
 * any of its mailboxes has less than quota_reject_margin free, or less
 * than the SIZE= the client announced at MAIL. Mail from the null
 * sender, MAILER-DAEMON or a local postmaster (quota_sender_exempt) is
 * refused only when the SIZE= (at least 1 byte; no margin) does not fit
 * in the quota plus its grace (quota_grace, quota_grace_limit); a local
 * postmaster claimed by a client neither authenticated nor in mynetworks
 * is not exempt. The check fails open: a reader that does not
 * answer within QUOTA_CHECK_TIMEOUT_MS, or is gone, lets the recipient
 * through, and the local delivery agent still refuses a copy that does
 * not fit (an immediate bounce).
 *
 * Untrusted input: the client's addresses and SIZE (parsed by the
 * session), the reader's answers (quota_proto.c). Privilege: smtp
 * worker.
 */
#ifndef POSTERN_QUOTA_CHECK_H
#define POSTERN_QUOTA_CHECK_H

#include <event2/event.h>

#include "policy.h"

#define QUOTA_CHECK_TIMEOUT_MS 2000

struct quota_check;

/* A check asking the reader at the other end of sock (taken over). */
struct quota_check *quota_check_new(struct event_base *base, int sock);
/* Append the check to env's RCPT stage. */
void quota_check_register(struct quota_check *q, struct policy_env *env);
/* Close the socket; pending checks must have been cancelled. NULL ok. */
void quota_check_free(struct quota_check **q);

#endif
