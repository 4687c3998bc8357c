/*
 * quota_proto.c - encoding and strict decoding of the smtp worker <->
 * quota reader messages (see quota_proto.h).
 *
 * Untrusted input: every packet (the reader decodes what a worker that
 * parses the network sends; the worker decodes what the reader sends).
 * Privilege: smtp worker (user) and quota reader (mail_owner).
 */
#include "quota_proto.h"

#include <string.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/wire.h"

static bool address_byte_ok(unsigned char c)
{
	return c > 0x20 && c != 0x7f; /* UTF-8 addresses (SMTPUTF8) pass */
}

size_t quota_msg_encode(const struct quota_msg *m, unsigned char *out)
{
	buf_t b = BUF_INIT;
	struct wire_writer w = { &b, QUOTA_MSG_MAX, "quota_msg_encode" };

	wire_put_u8(&w, (uint8_t)m->type);
	wire_put_u32(&w, m->seq);
	if (m->type == QUOTA_ASK) {
		size_t n = strlen(m->address);
		for (size_t i = 0; i < n; i++)
			if (!address_byte_ok((unsigned char)m->address[i]))
				log_panic("quota_msg_encode: bad address byte");
		if (n == 0 || n > QF_ADDR_MAX)
			log_panic("quota_msg_encode: bad address length %zu", n);
		wire_put_u16(&w, (uint16_t)n);
		wire_put_bytes(&w, m->address, n);
		wire_put_u64(&w, m->need);
	} else if (m->type == QUOTA_USAGE) {
		if ((unsigned)m->status > QUOTA_UNKNOWN)
			log_panic("quota_msg_encode: bad status %d", (int)m->status);
		wire_put_u8(&w, (uint8_t)m->status);
		wire_put_u64(&w, m->limit);
		wire_put_u64(&w, m->used);
		wire_put_u64(&w, m->count_limit);
		wire_put_u64(&w, m->count_used);
	} else {
		log_panic("quota_msg_encode: unknown type %d", (int)m->type);
	}
	size_t n = b.len;
	memcpy(out, b.data, n);
	buf_free(&b);
	return n;
}

int quota_msg_decode(const unsigned char *data, size_t len, struct quota_msg *m,
		     const char **why_r)
{
	struct wire_reader r = wire_reader_init(data, len);

	memset(m, 0, sizeof(*m));
	m->type = wire_get_u8(&r);
	m->seq = wire_get_u32(&r);
	if (r.err == NULL && m->type == QUOTA_ASK) {
		size_t n = wire_get_u16(&r);
		const unsigned char *p = NULL;
		if (r.err == NULL && (n == 0 || n > QF_ADDR_MAX))
			wire_fail(&r, "address length out of bounds");
		else if (wire_take(&r, n, &p)) {
			for (size_t i = 0; i < n && r.err == NULL; i++)
				if (!address_byte_ok(p[i]))
					wire_fail(&r, "bad byte in the address");
			if (r.err == NULL)
				memcpy(m->address, p, n);
		}
		m->need = wire_get_u64(&r);
	} else if (r.err == NULL && m->type == QUOTA_USAGE) {
		uint8_t status = wire_get_u8(&r);
		if (r.err == NULL && status > QUOTA_UNKNOWN)
			wire_fail(&r, "unknown status");
		m->status = (enum quota_status)status;
		m->limit = wire_get_u64(&r);
		m->used = wire_get_u64(&r);
		m->count_limit = wire_get_u64(&r);
		m->count_used = wire_get_u64(&r);
	} else if (r.err == NULL) {
		wire_fail(&r, "unknown message type");
	}
	if (r.err == NULL && wire_left(&r) != 0)
		wire_fail(&r, "bytes left over");
	*why_r = r.err;
	return r.err == NULL ? 0 : -1;
}
