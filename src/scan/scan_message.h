/*
 * scan_message.h - the pipeline's MIME pass (private to src/scan/): one
 * pass of the streaming MIME parser over the message, keeping what the
 * stages look at in struct scan_message (scan.h): every part's type,
 * sniffed type, file name and size, the header fields, and the decoded
 * bytes of the parts that may be archives and of the text parts the spam
 * tests read.
 *
 * Bounds: the parser's (struct mime_limits); header fields of the
 * message's own section are all kept, those of the parts while they add
 * up to at most SCAN_PART_HEADERS_FACTOR x max_header_bytes; archive
 * bytes while all parts' together stay within archive_max (a part cut
 * short says archive_truncated); text bytes likewise within text_max
 * (text_truncated).
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

/* The text kept when the caller does not say (spam_max_text's default). */
#define SCAN_TEXT_MAX_DEFAULT (1024 * 1024)

/* Fill m->parts, headers and mime_problems from m->data[0..len), keeping
 * archive bytes within archive_max and text bytes within text_max. */
void scan_message_parse_keeping(struct scan_message *m, const struct mime_limits *limits,
				uint64_t archive_max, uint64_t text_max);
/* The same with text_max SCAN_TEXT_MAX_DEFAULT. */
void scan_message_parse(struct scan_message *m, const struct mime_limits *limits,
			uint64_t archive_max);
void scan_message_free(struct scan_message *m);

/* Does the spam tests' text include a leaf part of this declared type
 * and file name? text/... but text/calendar (SpamAssassin's choice: an
 * invitation is not read as text), message/... leaves (a delivery
 * report), and anything named *.htm, *.html or *.shtml (read as HTML). */
bool scan_message_wants_text(const char *type, const char *filename);

/* Does a part with this declared or sniffed type, file name or first
 * bytes look like an archive (zip, gzip, tar, 7z, rar, ...)? */
bool scan_looks_like_archive(const char *type, const char *filename,
			     const unsigned char *head, size_t len);

#endif
