/*
 * wire.c - the bounded big-endian writer and reader of postern's own
 * socket protocols (wire.h). Untrusted input: the reader's bytes; every
 * read is checked against what is left.
 */
#include "wire.h"

#include "log.h"

void wire_put_bytes(struct wire_writer *w, const void *data, size_t n)
{
	if (w->out->len > w->max || n > w->max - w->out->len)
		log_panic("%s: message longer than %zu bytes", w->what, w->max);
	buf_append(w->out, data, n);
}

void wire_put_u8(struct wire_writer *w, uint8_t v)
{
	wire_put_bytes(w, &v, 1);
}

void wire_put_u16(struct wire_writer *w, uint16_t v)
{
	unsigned char b[2] = { (unsigned char)(v >> 8), (unsigned char)v };
	wire_put_bytes(w, b, 2);
}

void wire_put_u32(struct wire_writer *w, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	wire_put_bytes(w, b, 4);
}

void wire_put_u64(struct wire_writer *w, uint64_t v)
{
	wire_put_u32(w, (uint32_t)(v >> 32));
	wire_put_u32(w, (uint32_t)v);
}

struct wire_reader wire_reader_init(const void *data, size_t len)
{
	return (struct wire_reader){ .p = data, .len = len };
}

void wire_fail(struct wire_reader *r, const char *why)
{
	if (r->err == NULL)
		r->err = why;
}

bool wire_take(struct wire_reader *r, size_t n, const unsigned char **data_r)
{
	if (r->err != NULL)
		return false;
	if (n > r->len - r->pos) {
		r->err = "message ends inside a field";
		return false;
	}
	*data_r = r->p + r->pos;
	r->pos += n;
	return true;
}

uint8_t wire_get_u8(struct wire_reader *r)
{
	const unsigned char *d;
	return wire_take(r, 1, &d) ? d[0] : 0;
}

uint16_t wire_get_u16(struct wire_reader *r)
{
	const unsigned char *d;
	return wire_take(r, 2, &d) ? (uint16_t)(d[0] << 8 | d[1]) : 0;
}

uint32_t wire_get_u32(struct wire_reader *r)
{
	const unsigned char *d;
	if (!wire_take(r, 4, &d))
		return 0;
	return (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
}

uint64_t wire_get_u64(struct wire_reader *r)
{
	uint64_t hi = wire_get_u32(r);
	return hi << 32 | wire_get_u32(r);
}

size_t wire_left(const struct wire_reader *r)
{
	return r->len - r->pos;
}
