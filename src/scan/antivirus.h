/*
 * antivirus.h - the parts of the antivirus stage (antivirus.c) that its
 * unit tests reach: the mail view of the message, what a virus name
 * means, the verdict for a virus, and the snapshot of the signature
 * folder that tells the scan master when to rebuild the engine. The
 * stage itself is built by scan_antivirus_stage_new (scan.h).
 *
 * Untrusted input: the message (handed to libclamav or clamd, never
 * parsed here beyond its first bytes) and virus names (from signature
 * files or clamd's answer, made printable before they reach a reply or
 * a header). Runs in the scan master (building) and the unprivileged
 * scanner processes (scanning), and in `postern scan`.
 */
#ifndef POSTERN_ANTIVIRUS_H
#define POSTERN_ANTIVIRUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/config.h"
#include "scan.h"

/*
 * libclamav decodes a message's parts only when it recognises the bytes
 * as mail, which it does by their first header field (Received:,
 * From:, Subject:, ...) or a MIME-Version field; a message without
 * either would have its base64 body scanned as plain text. The scanners therefore
 * see the message behind one Received: field of ours, unless it already
 * starts with "Received: " or an mbox "From " line. Returns the prefix
 * to put before data (with data's line ending), or NULL for none.
 */
const char *av_mail_view_prefix(const unsigned char *data, size_t len);

enum av_name_kind {
	AV_NAME_VIRUS,      /* a signature or heuristic matched */
	AV_NAME_LIMIT,      /* Heuristics.Limits.Exceeded.*: not scanned to the end */
	AV_NAME_TIME_LIMIT, /* Heuristics.Limits.Exceeded.MaxScanTime */
};
enum av_name_kind av_name_kind(const char *name);

/* Copy a virus name as printable ASCII without spaces (at most
 * size - 1 bytes); "" becomes "Unnamed". */
void av_name_clean(char *dst, size_t size, const char *name);

/*
 * Fill v for virus name found (already clean): virus_action says reject
 * (550 5.7.0 virus found: NAME), quarantine or discard; reason "virus",
 * hit "virus:NAME", and the header field "X-Postern-Virus: NAME" for a
 * quarantined message. A limit's name (Heuristics.Limits.Exceeded.*)
 * reads "virus scan incomplete: NAME" with reason "virus_limit". No
 * notice goes to the sender, ever.
 */
void av_verdict_virus(enum virus_action action, const char *name, struct scan_verdict *v);

/* Does a file name look like a ClamAV signature file (.cvd, .cld, .ndb,
 * .hdb, ...: the ones libclamav loads from a folder)? */
bool av_is_signature_file(const char *name);

/* The signature files of a folder, as stat(2) saw them. */
struct av_dbfile {
	char *name;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct timespec ctime;
};
struct av_dbstat {
	struct av_dbfile *files; /* sorted by name */
	size_t count;
};

/* Snapshot dir's signature files. 0, or -1 with a malloc'ed *err_r. */
int av_dbstat_take(const char *dir, struct av_dbstat *stat_r, char **err_r);
bool av_dbstat_equal(const struct av_dbstat *a, const struct av_dbstat *b);
void av_dbstat_free(struct av_dbstat *st);

#endif
