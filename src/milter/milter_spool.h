/*
 * milter_spool.h - the milter server's copy of one message, as the MTA
 * sends it over the milter protocol (header fields one by one, then body
 * chunks), written to a private file in the form postern's queue stores
 * content: "Name: value" lines with LF line ends, an empty line, the body
 * with LF line ends. The scan master reads it like a queued message
 * (a read-only descriptor and a byte range, src/scan/scan_proto.h).
 *
 * The file is created in a folder of the spool and unlinked at once: the
 * two descriptors (one to write, one read-only for the scan master) are
 * all that is left of it, so nothing stays on disk after a crash.
 *
 * Bounds: the whole message (message_size_limit), the header section
 * (header_size_limit) and the number of header fields
 * (MILTER_SPOOL_FIELDS_MAX); past one of them the spool says so and keeps
 * nothing more. The names of the fields are kept (to count the
 * occurrences a verdict removes).
 *
 * Untrusted input: the header fields and body bytes the MTA relays from
 * the SMTP client. Privilege: the milter process (`user`).
 */
#ifndef POSTERN_MILTER_SPOOL_H
#define POSTERN_MILTER_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../lib/strutil.h"

#define MILTER_SPOOL_FIELDS_MAX 2000 /* header fields per message */

enum milter_spool_status {
	MILTER_SPOOL_OK,
	MILTER_SPOOL_TOO_BIG,        /* message_size_limit */
	MILTER_SPOOL_HEADER_TOO_BIG, /* header_size_limit or the field count */
	MILTER_SPOOL_IO_ERROR,       /* err names it */
};

struct milter_spool_limits {
	uint64_t message_max;
	uint64_t header_max;
	size_t fields_max;
};

struct milter_spool {
	struct milter_spool_limits limits;
	char id[20];             /* postern's id of the message (queue_id_new), "" until opened */
	int fd;                  /* the file, to write; -1: only counting (tests, fuzzing) */
	int ro_fd;               /* the same file, read-only; -1 when fd is */
	buf_t out;               /* written in blocks */
	uint64_t size;           /* bytes of content so far (LF line ends), the trace included */
	uint64_t trace_size;     /* of which the trace field (milter_spool_trace) */
	uint64_t header_size;
	strlist_t names;         /* each header field's name, in order */
	bool in_body;
	bool body_cr;            /* the last body chunk ended in CR */
	enum milter_spool_status status; /* the first problem, then sticky */
	char err[128];
};

/* Start an empty spool that writes nowhere (for tests and fuzzing). */
void milter_spool_init(struct milter_spool *s, const struct milter_spool_limits *limits);
/* Start a spool backed by an unlinked file in dir; -1 with err set. */
int milter_spool_open(struct milter_spool *s, const struct milter_spool_limits *limits,
		      const char *dir);
/* Before the first field: a trace field of our own ("Received: ...",
 * LF line ends, ending in LF) for the copy the scanners read, standing
 * for the MTA's own, which the MTA does not show to milters. It is not
 * one of the message's fields (not counted, not in names) nor part of
 * the message's size; ignored once a field or body byte is in. */
void milter_spool_trace(struct milter_spool *s, const char *field);
/* One header field: name and value as the MTA gives them (the value
 * without the colon, CR LF or LF folds). */
enum milter_spool_status milter_spool_header(struct milter_spool *s, const char *name,
					     const char *value);
/* The end of the header section (also implied by the first body chunk). */
enum milter_spool_status milter_spool_end_of_header(struct milter_spool *s);
/* A chunk of body, CR LF line ends as sent; a CR LF across two chunks is
 * one line end. */
enum milter_spool_status milter_spool_body(struct milter_spool *s, const unsigned char *data,
					   size_t len);
/* Write everything out: 0, or -1 (status and err say why). */
int milter_spool_flush(struct milter_spool *s);
/* How many header fields called name (any case) the message has. */
unsigned milter_spool_count(const struct milter_spool *s, const char *name);
/* Close the descriptors, free the rest; the spool can be opened again. */
void milter_spool_close(struct milter_spool *s);

#endif
