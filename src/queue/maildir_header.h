/*
 * maildir_header.h - edit the header section of a message as its content
 * streams into a Maildir copy.
 *
 * The filter:
 *   - drops every Return-Path: field the message carries (RFC 5321 section
 *     4.4: the final delivery MTA adds its own, maildir.c does);
 *   - drops the fields the queue file's trailer removes (a field name and
 *     which occurrence of it: 1 = the first, 0 = every one; occurrences
 *     count the message's own fields, not the ones added here);
 *   - inserts the trailer's added fields: "top" ones right below the first
 *     field of the content (the Received: postern wrote, so the trace
 *     block stays together), "end" ones before the empty line that ends
 *     the header section (or at the end, if the content has no body).
 * Field names match without regard to case, white space before the colon
 * allowed (RFC 5322 section 4.5), continuation lines share the fate of
 * their field. The body passes unchanged, and neither the header section
 * nor the body is ever held in memory as a whole: at most the start of
 * one line (MHDR_HOLD_MAX bytes).
 *
 * Untrusted input: the message content (LF line ends, as the queue holds
 * it). The edits come from the validated queue file. Privilege: the local
 * delivery agent (mail_owner).
 */
#ifndef POSTERN_MAILDIR_HEADER_H
#define POSTERN_MAILDIR_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"
#include "queue_file.h"

/* Longest line start held back while undecided: a field name of up to
 * QF_FIELD_NAME_MAX bytes plus some white space before the colon. A line
 * whose name is longer is kept as it is. */
#define MHDR_HOLD_MAX (QF_FIELD_NAME_MAX + 17)

struct mhdr_filter {
	int state;            /* internal */
	bool in_body;         /* the header section has ended */
	bool dropping;        /* the current field is being removed */
	bool held_space;      /* white space seen in the held line start */
	char held[MHDR_HOLD_MAX];
	size_t held_len;
	const struct qf_header_edit *edits;
	size_t edit_count;
	unsigned *seen;       /* per edit: fields of its name seen so far */
	unsigned fields;      /* fields started so far */
	bool top_added;
	bool end_added;
};

/* Start a filter applying edits[0..n) (which must outlive it; n may be 0). */
void mhdr_filter_init(struct mhdr_filter *f, const struct qf_header_edit *edits, size_t n);
void mhdr_filter_free(struct mhdr_filter *f);

/*
 * Consume header bytes from in[0..n), up to and including the empty line
 * that ends the header section, appending what survives (and what is
 * added) to out. Returns how many bytes were consumed; once f->in_body is
 * true the rest of in (and all later content) is body, to be copied
 * unchanged by the caller.
 */
size_t mhdr_filter_feed(struct mhdr_filter *f, const char *in, size_t n, buf_t *out);
/* The content ended: append the bytes still held back and the added
 * fields not yet placed (a message without a body). */
void mhdr_filter_end(struct mhdr_filter *f, buf_t *out);

#endif
