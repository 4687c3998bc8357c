/*
 * pop3_maildrop.h - one user's Maildir as a POP3 maildrop (RFC 1939),
 * read and changed by the mailbox agent, the pop3 role's process that
 * runs as mail_owner.
 *
 * Opening a maildrop takes its lock (flock on <Maildir>/postern-pop3.lock:
 * a second POP3 session on the same mailbox is refused, RFC 1939 section
 * 8's exclusive access, answered -ERR [IN-USE] by the session), moves
 * every message of new/ into cur/ with an empty info suffix ":2," as
 * Dovecot does, and lists cur/ in arrival order.
 *
 * A message's unique id (UIDL) is the base of its file name, the part
 * before ":2,", which neither Dovecot nor postern ever change (flags
 * only change the suffix): the id stays the same across sessions and
 * across Dovecot's renames. A base name that is not 1 to 70 printable
 * characters (RFC 1939 section 7) is replaced by "H" and 32 hex digits
 * of its 128-bit XXH3 hash.
 *
 * The size of a message is its size as POP3 sends it, CRLF line ends
 * counted: the W= field of the name (which postern and Dovecot write)
 * when there is one, else counted by reading the file.
 *
 * Only regular files are messages: anything else in cur/ is not listed,
 * and a file replaced by something else after the listing is refused
 * (opened non-blocking: a FIFO never stops the agent).
 *
 * Other software (Dovecot's IMAP) may rename or remove files while a
 * session holds the maildrop: a file that is not under its listed name is
 * looked for by its base name; one that is gone answers "gone" and counts
 * as deleted at the update.
 *
 * Untrusted input: the file names in the Maildir (anything that can
 * write there, Dovecot's users included) and the message bytes (counted
 * only). Privilege: the mailbox agent (mail_owner).
 */
#ifndef POSTERN_POP3_MAILDROP_H
#define POSTERN_POP3_MAILDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

/* RFC 1939 section 7: a unique-id is 1 to 70 characters 0x21 to 0x7E. */
#define POP3_UID_MAX 70
/* The most messages a session lists (the oldest ones). */
#define POP3_MAILDROP_MAX 100000
#define POP3_LOCK_NAME "postern-pop3.lock"

struct pop3_mail {
	char *name;         /* file name in cur/ */
	char uid[POP3_UID_MAX + 1];
	uint64_t size;      /* as sent */
	uint64_t file_size; /* bytes of the file (S=, else its length): quota */
};

struct pop3_maildrop {
	char *path;      /* .../Maildir */
	int lock_fd;     /* -1: no lock (the Maildir does not exist yet) */
	struct pop3_mail *mails;
	size_t count;
};

enum pop3_open_result { POP3_OPEN_OK, POP3_OPEN_IN_USE, POP3_OPEN_FAILED };

/* Open the Maildir at path as a maildrop (see above). A Maildir that does
 * not exist yet is an empty maildrop. FAILED sets *err_r (malloc'ed). */
enum pop3_open_result pop3_maildrop_open(const char *path, struct pop3_maildrop *md,
					 char **err_r);

/* Open message i (0-based) read-only; -1 with errno (ENOENT: it is gone). */
int pop3_maildrop_open_mail(struct pop3_maildrop *md, size_t i);

/* The flags of each message at the update. */
#define POP3_MARK_DELETE 0x01
#define POP3_MARK_SEEN 0x02

struct pop3_update_result {
	uint32_t deleted;     /* removed now */
	uint32_t gone;        /* already removed by someone else */
	uint32_t failed;      /* could not be removed (errors logged in *err_r) */
	uint64_t freed_bytes; /* file bytes removed now */
};

/*
 * RFC 1939's UPDATE state: remove the messages marked DELETE, add the
 * Seen flag (S) to those marked SEEN and kept, then record what was
 * freed in the Maildir++ quota file (maildir_quota_add: a line
 * "-bytes -count" in maildirsize, when the file exists). marks has md->count bytes.
 * Returns 0, or -1 with *err_r (malloc'ed) if a message could not be
 * removed (the others are).
 */
int pop3_maildrop_update(struct pop3_maildrop *md, const uint8_t *marks,
			 struct pop3_update_result *r, char **err_r);

/* Release the lock and the memory. */
void pop3_maildrop_close(struct pop3_maildrop *md);

/* The unique id of a file whose base name is base[0..len). */
void pop3_uid_of(const char *base, size_t len, char uid_r[POP3_UID_MAX + 1]);

/* The new name of a file when flag is added to its info (":2,FLAGS",
 * kept sorted as Dovecot writes it); NULL if it has it already or its
 * info is not of version 2. malloc'ed. */
char *pop3_name_with_flag(const char *name, char flag);

#endif
