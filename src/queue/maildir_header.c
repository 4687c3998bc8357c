/*
 * maildir_header.c - a byte-at-a-time editor of the header section (see
 * maildir_header.h).
 *
 * States: at the start of a line; holding the first bytes of a line until
 * its field name (and colon) is known; copying the rest of a kept line;
 * skipping the rest of a dropped one. A line that starts with space or
 * tab continues the previous field and shares its fate. The first empty
 * line ends the filter's work.
 *
 * RFCs: RFC 5321 section 4.4, RFC 5322 sections 2.2 (fields, folding) and
 * 4.5 (obsolete white space before the colon). Untrusted input: the
 * message content. Privilege: the local delivery agent (mail_owner).
 */
#include "maildir_header.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/strutil.h"
#include "../lib/xalloc.h"

enum { MH_LINE_START = 0, MH_NAME, MH_KEEP, MH_DROP };

void mhdr_filter_init(struct mhdr_filter *f, const struct qf_header_edit *edits, size_t n)
{
	memset(f, 0, sizeof(*f));
	f->edits = edits;
	f->edit_count = n;
	f->seen = n > 0 ? xcalloc(n, sizeof(*f->seen)) : NULL;
}

void mhdr_filter_free(struct mhdr_filter *f)
{
	free(f->seen);
	f->seen = NULL;
}

/* Append the added fields of one position (each with its line end). */
static void add_fields(const struct mhdr_filter *f, uint32_t where, buf_t *out)
{
	for (size_t i = 0; i < f->edit_count; i++) {
		const struct qf_header_edit *e = &f->edits[i];
		if (e->type == QF_REC_ADD_HEADER && e->where == where) {
			buf_puts(out, e->text);
			buf_putc(out, '\n');
		}
	}
}

static void add_top(struct mhdr_filter *f, buf_t *out)
{
	if (!f->top_added)
		add_fields(f, QF_HEADER_TOP, out);
	f->top_added = true;
}

static void add_end(struct mhdr_filter *f, buf_t *out)
{
	add_top(f, out);
	if (!f->end_added)
		add_fields(f, QF_HEADER_END, out);
	f->end_added = true;
}

/* Is a field of this name to be dropped? Counts it for every removal
 * that names it. */
static bool drops(struct mhdr_filter *f, const char *name, size_t len)
{
	bool drop = len == 11 && strncasecmp(name, "return-path", 11) == 0;
	for (size_t i = 0; i < f->edit_count; i++) {
		const struct qf_header_edit *e = &f->edits[i];
		if (e->type != QF_REC_DEL_HEADER || strlen(e->text) != len ||
		    strncasecmp(e->text, name, len) != 0)
			continue;
		f->seen[i]++;
		if (e->where == 0 || e->where == f->seen[i])
			drop = true;
	}
	return drop;
}

/* The held bytes start a field that stays (or no field at all). */
static void keep_held(struct mhdr_filter *f, buf_t *out)
{
	char last = f->held[f->held_len - 1];

	buf_append(out, f->held, f->held_len);
	f->held_len = 0;
	f->state = last == '\n' ? MH_LINE_START : MH_KEEP;
}

/* One more byte of an undecided line start (already in held). */
static void decide(struct mhdr_filter *f, buf_t *out)
{
	size_t k = f->held_len;
	char c = f->held[k - 1];

	if (c == ':' && k > 1) {
		size_t name_len = k - 1;
		while (name_len > 0 && (f->held[name_len - 1] == ' ' || f->held[name_len - 1] == '\t'))
			name_len--;
		if (name_len > 0 && drops(f, f->held, name_len)) {
			f->dropping = true;
			f->held_len = 0;
			f->state = MH_DROP;
		} else {
			keep_held(f, out);
		}
	} else if (c == ' ' || c == '\t') {
		f->held_space = true;
		if (k == MHDR_HOLD_MAX)
			keep_held(f, out);
	} else if (c <= ' ' || c >= 127 || c == ':' || f->held_space || k == MHDR_HOLD_MAX) {
		keep_held(f, out); /* not a field name (or too long to be one we edit) */
	}
}

static void line_start(struct mhdr_filter *f, char c, buf_t *out)
{
	if (c == '\n') {
		add_end(f, out);
		buf_putc(out, c);
		f->in_body = true;
	} else if (c == ' ' || c == '\t') {
		if (f->dropping) {
			f->state = MH_DROP;
		} else {
			buf_putc(out, c);
			f->state = MH_KEEP;
		}
	} else {
		if (++f->fields == 2)
			add_top(f, out); /* below the first field: postern's Received: */
		f->dropping = false;
		f->held_space = false;
		f->held[0] = c;
		f->held_len = 1;
		f->state = MH_NAME;
		decide(f, out);
	}
}

size_t mhdr_filter_feed(struct mhdr_filter *f, const char *in, size_t n, buf_t *out)
{
	size_t i = 0;

	for (; i < n && !f->in_body; i++) {
		char c = in[i];
		switch (f->state) {
		case MH_LINE_START:
			line_start(f, c, out);
			break;
		case MH_NAME:
			f->held[f->held_len++] = c;
			decide(f, out);
			break;
		case MH_KEEP:
			buf_putc(out, c);
			/* fall through */
		default: /* MH_DROP */
			if (c == '\n')
				f->state = MH_LINE_START;
			break;
		}
	}
	return i;
}

void mhdr_filter_end(struct mhdr_filter *f, buf_t *out)
{
	if (f->in_body)
		return;
	if (f->state == MH_NAME && f->held_len > 0)
		keep_held(f, out);
	bool pending = false;
	for (size_t i = 0; i < f->edit_count; i++)
		pending = pending || (f->edits[i].type == QF_REC_ADD_HEADER &&
				      (!f->top_added || !f->end_added));
	if (pending && f->state == MH_KEEP)
		buf_putc(out, '\n'); /* a last field without its line end */
	add_end(f, out);
}
