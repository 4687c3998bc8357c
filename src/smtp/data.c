/*
 * data.c - streaming DATA/BDAT decoder (see data.h). One pass, one byte
 * at a time through a small state machine; no input is buffered here.
 */
#include "data.h"

#include <string.h>

enum {
	ST_BOL,     /* at the start of a line (after CRLF) */
	ST_BOL_LF,  /* at the start of a line after a bare LF: a dot never ends the data */
	ST_LF_DOT,  /* "." at the start of such a line (normalize mode) */
	ST_BOL_DOT, /* "." at the start of a line */
	ST_DOT_CR,  /* ".\r" at the start of a line */
	ST_MID,     /* inside a line */
	ST_CR,      /* "\r" inside a line, waiting for "\n" */
};

void data_decoder_init(struct data_decoder *d, const struct data_limits *limits,
		       bool dot_mode)
{
	memset(d, 0, sizeof(*d));
	d->limits = *limits;
	d->dot_mode = dot_mode;
	d->state = ST_BOL;
	d->in_header = true;
}

static bool producing(const struct data_decoder *d)
{
	return d->problems == DATA_OK;
}

static void count(struct data_decoder *d, uint64_t n)
{
	d->size += n;
	if (d->size > d->limits.max_size)
		d->problems |= DATA_TOO_BIG;
}

static void emit_char(struct data_decoder *d, char c, buf_t *out)
{
	count(d, 1);
	if (++d->line_len > d->limits.max_line)
		d->problems |= DATA_LINE_TOO_LONG;
	if (d->in_header && ++d->header_size > d->limits.max_header)
		d->problems |= DATA_HEADER_TOO_BIG;
	if (d->in_header && d->limits.reject_8bit_headers && (unsigned char)c >= 0x80)
		d->problems |= DATA_8BIT_HEADER;
	if (producing(d))
		buf_putc(out, c);
}

/* n plain bytes at once (no CR, no LF): the same accounting as n calls
 * of emit_char, the output cut where the first limit is passed. */
static void emit_span(struct data_decoder *d, const char *p, size_t n, buf_t *out)
{
	const struct data_limits *l = &d->limits;
	if (d->in_header && l->reject_8bit_headers) {
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] >= 0x80)
				d->problems |= DATA_8BIT_HEADER;
	}
	if (producing(d)) {
		uint64_t room = d->size < l->max_size ? l->max_size - d->size : 0;
		uint64_t line_room = d->line_len < l->max_line ? l->max_line - d->line_len : 0;
		if (line_room < room)
			room = line_room;
		if (d->in_header) {
			uint64_t header_room = d->header_size < l->max_header
						       ? l->max_header - d->header_size : 0;
			if (header_room < room)
				room = header_room;
		}
		buf_append(out, p, n < room ? n : (size_t)room);
	}
	count(d, n);
	if ((d->line_len += n) > l->max_line)
		d->problems |= DATA_LINE_TOO_LONG;
	if (d->in_header && (d->header_size += n) > l->max_header)
		d->problems |= DATA_HEADER_TOO_BIG;
}

/* Index of the first CR or LF in in[from..len), or len. */
static size_t line_break(const char *in, size_t from, size_t len)
{
	while (from < len && in[from] != '\r' && in[from] != '\n')
		from++;
	return from;
}

static void end_line(struct data_decoder *d, buf_t *out)
{
	count(d, 2);
	if (d->in_header) {
		if (d->line_len == 0)
			d->in_header = false;
		else if ((d->header_size += 2) > d->limits.max_header)
			d->problems |= DATA_HEADER_TOO_BIG;
	}
	d->line_len = 0;
	if (producing(d))
		buf_putc(out, '\n');
	d->state = ST_BOL;
}

/* A bare CR or LF was seen; in normalize mode a bare LF ends the line. */
static void bare(struct data_decoder *d, bool is_lf, buf_t *out)
{
	/* Only CRLF starts a line where "." can end the data: after a bare
	 * LF a dot is plain text, so "\n.\r\n" can never smuggle an end. */
	if (!d->limits.normalize_bare_newlines) {
		d->problems |= DATA_BARE_NEWLINE;
		d->state = is_lf ? ST_BOL_LF : ST_MID;
		return;
	}
	if (is_lf) {
		end_line(d, out);
		d->state = ST_BOL_LF;
	} else {
		d->state = ST_MID; /* bare CR dropped */
	}
}

static void mid_char(struct data_decoder *d, char c, buf_t *out)
{
	if (c == '\r')
		d->state = ST_CR;
	else if (c == '\n')
		bare(d, true, out);
	else {
		emit_char(d, c, out);
		d->state = ST_MID;
	}
}

size_t data_decode(struct data_decoder *d, const char *in, size_t len, buf_t *out)
{
	size_t i;
	for (i = 0; i < len && !d->done; i++) {
		char c = in[i];
		switch (d->state) {
		case ST_BOL:
			if (d->dot_mode && c == '.')
				d->state = ST_BOL_DOT;
			else
				mid_char(d, c, out);
			break;
		case ST_BOL_DOT:
			if (c == '\r') {
				d->state = ST_DOT_CR; /* maybe the end marker */
			} else if (c == '\n') {
				/* A line of one dot ended by a bare LF: nothing
				 * to unstuff (RFC 5321 4.5.2 removes a dot only
				 * before other characters); the dot is content. */
				emit_char(d, '.', out);
				bare(d, true, out);
			} else {
				count(d, 1); /* the stuffed dot counts on the wire */
				mid_char(d, c, out); /* transparency: drop the leading dot */
			}
			break;
		case ST_DOT_CR:
			if (c == '\n') {
				d->done = true; /* the end marker is not content */
			} else {
				count(d, 1);
				bare(d, false, out); /* ".\r" + something */
				if (d->state == ST_MID)
					mid_char(d, c, out);
			}
			break;
		case ST_BOL_LF:
			/* normalize mode: the line is a line, so a leading dot
			 * before other characters is stuffing as after CRLF; but
			 * it can never start the end marker */
			if (c == '.' && d->dot_mode && d->limits.normalize_bare_newlines)
				d->state = ST_LF_DOT;
			else
				mid_char(d, c, out);
			break;
		case ST_LF_DOT:
			if (c == '\r' || c == '\n') {
				emit_char(d, '.', out); /* a lone dot stays */
			} else {
				count(d, 1); /* the stuffed dot counts on the wire */
			}
			mid_char(d, c, out);
			break;
		case ST_MID:
			if (c == '\r' || c == '\n') {
				mid_char(d, c, out);
			} else { /* the rest of the line at once */
				size_t end = line_break(in, i + 1, len);
				emit_span(d, in + i, end - i, out);
				i = end - 1;
			}
			break;
		case ST_CR:
			if (c == '\n') {
				end_line(d, out);
			} else {
				bare(d, false, out);
				mid_char(d, c, out);
			}
			break;
		}
	}
	return i;
}

void data_decoder_finish(struct data_decoder *d, buf_t *out)
{
	if (d->state == ST_CR || d->state == ST_DOT_CR)
		bare(d, false, out);
	if (d->state == ST_BOL_DOT || d->state == ST_LF_DOT) {
		count(d, 1);
		emit_char(d, '.', out);
	}
	if (d->state != ST_BOL && d->line_len > 0 && producing(d))
		end_line(d, out);
	d->done = true;
}
