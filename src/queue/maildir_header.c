/*
 * maildir_header.c - a byte-at-a-time filter over the header section that
 * removes client-supplied Return-Path: fields (see maildir_header.h).
 *
 * States: at the start of a line; holding the first bytes of a line that
 * may still turn out to be "Return-Path" [WSP] ":"; copying the rest of a
 * kept line; skipping the rest of a dropped one. A line that starts with
 * space or tab continues the previous field and shares its fate. The
 * first empty line ends the filter's work.
 *
 * RFCs: RFC 5321 section 4.4, RFC 5322 section 2.2 (fields, folding) and
 * 4.5 (obsolete white space before the colon). Untrusted input: the
 * message content. Privilege: the local delivery agent (mail_owner).
 */
#include "maildir_header.h"

#define RP_NAME "return-path"
#define RP_NAME_LEN (sizeof(RP_NAME) - 1)

enum { MH_LINE_START = 0, MH_NAME, MH_KEEP, MH_DROP };

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* The held bytes are not a Return-Path after all: copy them out. */
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

	if (k <= RP_NAME_LEN) {
		if (lower(c) != RP_NAME[k - 1])
			keep_held(f, out);
	} else if (c == ':') {
		f->dropping = true;
		f->held_len = 0;
		f->state = MH_DROP;
	} else if ((c != ' ' && c != '\t') || k == MHDR_HOLD_MAX) {
		keep_held(f, out);
	}
}

static void line_start(struct mhdr_filter *f, char c, buf_t *out)
{
	if (c == '\n') {
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
		f->dropping = false;
		f->held[0] = c;
		f->held_len = 1;
		f->state = MH_NAME;
		decide(f, out);
	}
}

size_t mhdr_filter_feed(struct mhdr_filter *f, const char *in, size_t n,
			buf_t *out)
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
	if (f->state == MH_NAME && f->held_len > 0)
		keep_held(f, out);
}
