/*
 * maildir_header.h - edit the header section of a message as its content
 * streams into a Maildir copy.
 *
 * The filter:
 *   - drops every Return-Path: field the message carries (RFC 5321 section
 *     4.4: the final delivery MTA adds its own, maildir.c does);
 *   - applies the queue file's header changes in file order to the list
 *     of fields of the header section (the content's, postern's own
 *     Received: first):
 *       h top: below the content's first field (after the fields earlier
 *              h top records put there), or at the top if it has none;
 *       h end: at the end of the header section;
 *       x:     the occurrence-th (0 = every) field of that name among the
 *              content's own fields (fields added by changes not counted);
 *       i:     at position index of the list as the changes before left
 *              it (0 = the top; past the end = at the end);
 *       c:     the occurrence-th field of that name in the list as the
 *              changes before left it (added fields counted) is replaced
 *              by the new field or removed; none: nothing happens.
 *     Return-Path: fields count like any other; they are dropped at the
 *     end. A header section of more than MHDR_FIELDS_MAX fields: the
 *     fields past that many are left as they are (and not counted).
 * Field names match without regard to case, white space before the colon
 * allowed (RFC 5322 section 4.5), continuation lines share the fate of
 * their field; a line that is not a field counts as one no change names.
 * The body passes unchanged, and neither the header section nor the body
 * is ever held in memory as a whole: with changes the header section is
 * read twice (mhdr_filter_learn: the names of its fields, then the plan
 * of what goes where), the second time through mhdr_filter_feed.
 *
 * Untrusted input: the message content (LF line ends, as the queue holds
 * it). The edits come from the validated queue file. Privilege: the local
 * delivery agent (mail_owner), the relay agent, the queue manager
 * (reports) and the queue commands (show).
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

/* Fields of a header section the changes can see. */
#define MHDR_FIELDS_MAX 10000

/* An added field and the content's field it goes above (MHDR_END: at
 * the end of the header section). */
#define MHDR_END ((size_t)-1)
struct mhdr_text {
	size_t before;
	const char *text;
};

struct mhdr_filter {
	int state;            /* internal */
	bool in_body;         /* the header section has ended */
	bool dropping;        /* the current field is being removed */
	bool held_space;      /* white space seen in the held line start */
	bool learning;        /* mhdr_filter_learn's pass */
	char held[MHDR_HOLD_MAX];
	size_t held_len;
	const struct qf_header_edit *edits;
	size_t edit_count;
	size_t fields;        /* fields started so far in this pass */
	/* learnt: the name of each field (NULL: not a field name), lower case */
	char **names;
	size_t name_count;
	/* the plan (edit_count > 0): which of the content's fields stay, and
	 * the added fields in order */
	bool planned;
	bool *keep;
	size_t plan_fields;
	struct mhdr_text *texts;
	size_t text_count, next_text;
};

/* Start a filter applying edits[0..n) (which must outlive it; n may be 0). */
void mhdr_filter_init(struct mhdr_filter *f, const struct qf_header_edit *edits, size_t n);
void mhdr_filter_free(struct mhdr_filter *f);

/*
 * With edits (n > 0), before the first mhdr_filter_feed: show the filter
 * the same header section once. learn consumes bytes of in[0..n) like
 * feed and returns how many; it is done once f->in_body is true (or the
 * content ended). learn_end makes the plan and readies f for feed.
 * mhdr_filter_prepare does both from the queue file (qf_read_content);
 * 0, or -1 with a malloc'ed *err_r on a read error. Without edits they
 * do nothing.
 */
size_t mhdr_filter_learn(struct mhdr_filter *f, const char *in, size_t n);
void mhdr_filter_learn_end(struct mhdr_filter *f);
int mhdr_filter_prepare(struct mhdr_filter *f, int fd, const struct qf_msg *m, char **err_r);

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

/*
 * The message of the queue file as it is delivered, without the lines
 * a delivery adds on top: the header section with the changes applied
 * (Return-Path: fields dropped), then, unless headers_only, the body (the
 * replaced one if any). Appends at most max bytes to out (headers_only:
 * cut at a line end); 0, or -1 with a malloc'ed *err_r.
 */
int mhdr_read_message(int fd, const struct qf_msg *m, bool headers_only, size_t max,
		      buf_t *out, char **err_r);

#endif
