/*
 * scan_message.h - the pipeline's MIME pass (private to src/scan/): one
 * pass of the streaming MIME parser over the message, keeping what the
 * stages look at in struct scan_message (scan.h): every part's type,
 * sniffed type, file name and size, the header fields, and the decoded
 * bytes of the parts that may be archives.
 *
 * Bounds: the parser's (struct mime_limits); header fields of the
 * message's own section are all kept, those of the parts while they add
 * up to at most SCAN_PART_HEADERS_FACTOR x max_header_bytes; archive
 * bytes while all parts' together stay within archive_max (a part cut
 * short says archive_truncated).
 *
 * Untrusted input: the whole message. Privilege: unprivileged scanners
 * and `postern scan`.
 */
#ifndef POSTERN_SCAN_MESSAGE_H
#define POSTERN_SCAN_MESSAGE_H

#include "scan.h"

#define SCAN_PART_HEADERS_FACTOR 4
/* Bytes of a leaf part looked at before deciding it is no archive. */
#define SCAN_ARCHIVE_SNIFF_BYTES 512

/* Fill m->parts, headers and mime_problems from m->data[0..len). */
void scan_message_parse(struct scan_message *m, const struct mime_limits *limits,
			uint64_t archive_max);
void scan_message_free(struct scan_message *m);

/* Does a part with this declared or sniffed type, file name or first
 * bytes look like an archive (zip, gzip, tar, 7z, rar, ...)? */
bool scan_looks_like_archive(const char *type, const char *filename,
			     const unsigned char *head, size_t len);

#endif
