/*
 * auth_proto.c - encoding and strict decoding of the auth messages (see
 * auth_proto.h). Untrusted input: a peer process's packets. Privilege:
 * whichever side calls it (smtp or pop3 worker, auth process).
 */
#include "auth_proto.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/wire.h"

static void put_str(struct wire_writer *w, const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n > max)
		log_panic("auth_msg_encode: a field of %zu bytes (at most %zu)", n, max);
	wire_put_u16(w, (uint16_t)n);
	wire_put_bytes(w, s, n);
}

void auth_msg_encode(const struct auth_msg *m, buf_t *out)
{
	struct wire_writer w = { out, AUTH_MSG_MAX, "auth_msg_encode" };
	buf_reset(out);
	wire_put_u8(&w, m->type);
	wire_put_u32(&w, m->seq);
	if (m->type == AUTH_MSG_CHECK) {
		wire_put_u8(&w, m->service);
		put_str(&w, m->client_ip, AUTH_IP_MAX);
		put_str(&w, m->user, AUTH_USER_MAX);
		put_str(&w, m->password, AUTH_PASSWORD_MAX);
		put_str(&w, m->session_id, AUTH_SESSION_MAX);
	} else {
		wire_put_u8(&w, m->verdict);
		put_str(&w, m->user, AUTH_USER_MAX);
		put_str(&w, m->why, AUTH_WHY_MAX);
		put_str(&w, m->ticket, AUTH_TICKET_TEXT_LEN);
	}
}

/* A string field into out (size max + 1); violations recorded in r. */
static void get_str(struct wire_reader *r, char *out, size_t max)
{
	const unsigned char *p;
	out[0] = '\0';
	size_t n = wire_get_u16(r);
	if (r->err != NULL)
		return;
	if (n > max) {
		wire_fail(r, "a field is too long");
		return;
	}
	if (!wire_take(r, n, &p))
		return;
	if (memchr(p, '\0', n) != NULL) {
		wire_fail(r, "a field holds a NUL byte");
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

/* Only characters of an address or an id: a worker cannot smuggle
 * "field=value" words into the auth process's log lines. */
static bool token_ok(const char *s, const char *extra)
{
	for (; *s != '\0'; s++)
		if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
		      ('0' <= *s && *s <= '9') || strchr(extra, *s) != NULL))
			return false;
	return true;
}

bool auth_msg_decode(const void *data, size_t len, bool requests, struct auth_msg *m,
		     const char **err_r)
{
	memset(m, 0, sizeof(*m));
	if (len > AUTH_MSG_MAX) {
		*err_r = "packet too long";
		return false;
	}
	struct wire_reader r = wire_reader_init(data, len);
	m->type = wire_get_u8(&r);
	m->seq = wire_get_u32(&r);
	if (r.err == NULL && m->type != (requests ? AUTH_MSG_CHECK : AUTH_MSG_RESULT))
		wire_fail(&r, "unexpected message type");
	if (r.err == NULL && requests) {
		m->service = wire_get_u8(&r);
		if (r.err == NULL && m->service > AUTH_SERVICE_LAST)
			wire_fail(&r, "unknown service");
		get_str(&r, m->client_ip, AUTH_IP_MAX);
		get_str(&r, m->user, AUTH_USER_MAX);
		get_str(&r, m->password, AUTH_PASSWORD_MAX);
		get_str(&r, m->session_id, AUTH_SESSION_MAX);
		if (r.err == NULL && !token_ok(m->client_ip, ".:%"))
			wire_fail(&r, "client address with a character no address has");
		if (r.err == NULL && !token_ok(m->session_id, ".-_:"))
			wire_fail(&r, "session id with a character no id has");
	} else if (r.err == NULL) {
		m->verdict = wire_get_u8(&r);
		if (r.err == NULL && m->verdict > AUTH_TEMPFAIL)
			wire_fail(&r, "unknown verdict");
		get_str(&r, m->user, AUTH_USER_MAX);
		get_str(&r, m->why, AUTH_WHY_MAX);
		get_str(&r, m->ticket, AUTH_TICKET_TEXT_LEN);
		if (r.err == NULL && !auth_ticket_syntax_ok(m->ticket))
			wire_fail(&r, "a malformed login ticket");
		if (r.err == NULL && m->ticket[0] != '\0' && m->verdict != AUTH_OK)
			wire_fail(&r, "a login ticket with a refusal");
	}
	if (r.err == NULL && wire_left(&r) != 0)
		wire_fail(&r, "bytes after the message");
	if (r.err != NULL) {
		*err_r = r.err;
		auth_msg_wipe(m);
		return false;
	}
	return true;
}

void auth_msg_wipe(struct auth_msg *m)
{
	explicit_bzero(m, sizeof(*m));
}

char *auth_socket_path(const char *spool_dir)
{
	char *dir = safeio_path_join(spool_dir, "private");
	char *path = safeio_path_join(dir, AUTH_SOCKET_NAME);
	free(dir);
	return path;
}
