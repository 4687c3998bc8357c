/*
 * pop3_message.c - a stored message in POP3's wire form: CRLF line ends,
 * dot-stuffing, TOP's cut (see pop3_message.h).
 *
 * RFCs: RFC 1939 sections 3 (multi-line responses, byte-stuffing), 7
 * (TOP), 11 (LIST sizes). Untrusted input: the message bytes.
 * Privilege: the pop3 worker (`user`).
 */
#include "pop3_message.h"

#include <string.h>

void pop3_encoder_init(struct pop3_encoder *e, bool top, uint64_t body_lines)
{
	memset(e, 0, sizeof(*e));
	e->line_start = true;
	e->top = top;
	e->body_lines = body_lines;
}

/* A line ended: TOP counts it. */
static void line_ended(struct pop3_encoder *e)
{
	bool empty = e->line_len == 0 || (e->line_len == 1 && e->prev_cr);
	e->line_start = true;
	e->line_len = 0;
	e->prev_cr = false;
	if (!e->top)
		return;
	if (!e->in_body) {
		if (empty) {
			e->in_body = true;
			e->done = e->body_lines == 0;
		}
	} else if (--e->body_lines == 0) {
		e->done = true;
	}
}

size_t pop3_encode(struct pop3_encoder *e, const char *in, size_t len, char *out)
{
	size_t i = 0, o = 0;
	while (i < len && !e->done) {
		if (e->line_start && in[i] == '.')
			out[o++] = '.';
		const char *nl = memchr(in + i, '\n', len - i);
		size_t run_end = nl != NULL ? (size_t)(nl - in) : len;
		if (run_end > i) {
			memcpy(out + o, in + i, run_end - i);
			o += run_end - i;
			e->line_len += run_end - i;
			e->prev_cr = in[run_end - 1] == '\r';
			e->line_start = false;
			i = run_end;
		}
		if (nl == NULL)
			break;
		if (!e->prev_cr)
			out[o++] = '\r';
		out[o++] = '\n';
		i++;
		line_ended(e);
	}
	return o;
}

size_t pop3_encode_end(struct pop3_encoder *e, char *out)
{
	size_t o = 0;
	if (!e->line_start) {
		if (!e->prev_cr)
			out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

void pop3_sizer_init(struct pop3_sizer *s)
{
	s->size = 0;
	s->prev_cr = false;
	s->line_start = true;
}

void pop3_sizer_add(struct pop3_sizer *s, const char *in, size_t len)
{
	const char *p = in, *end = in + len;
	s->size += len;
	if (len == 0)
		return;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		bool cr = nl > in ? nl[-1] == '\r' : s->prev_cr;
		if (!cr)
			s->size++; /* the CR added before a bare LF */
		p = nl + 1;
	}
	s->prev_cr = end[-1] == '\r';
	s->line_start = end[-1] == '\n';
}

uint64_t pop3_sizer_end(const struct pop3_sizer *s)
{
	/* A last line without its line end is sent with one. */
	if (s->line_start)
		return s->size;
	return s->size + (s->prev_cr ? 1 : 2);
}
