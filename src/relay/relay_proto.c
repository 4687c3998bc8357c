/*
 * relay_proto.c - encoding, decoding and transport of the messages
 * between the queue manager and the relay delivery agent (protocol in
 * relay_proto.h).
 *
 * RFCs: none. Untrusted input: every packet and descriptor received;
 * each length is checked before it is read. Privilege: the unprivileged
 * queue manager and relay agent.
 */
#include "relay_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/wire.h"
#include "../lib/xalloc.h"

#define RELAY_MAX_FDS 4

static bool text_byte_ok(unsigned char c)
{
	return c >= 0x20 && c != 0x7f;
}

void relay_set_text(char *dst, size_t max, const char *text)
{
	size_t n = strnlen(text, max);

	for (size_t i = 0; i < n; i++)
		dst[i] = text_byte_ok((unsigned char)text[i]) ? text[i] : '?';
	dst[n] = '\0';
}

/* ---- encoding ----------------------------------------------------------------- */

static void put_str(struct wire_writer *w, const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		log_panic("relay_msg_encode: string of %zu bytes, %zu..%zu allowed", n, min, max);
	for (size_t i = 0; i < n; i++)
		if (!text_byte_ok((unsigned char)s[i]))
			log_panic("relay_msg_encode: control character in a string");
	wire_put_u16(w, (uint16_t)n);
	wire_put_bytes(w, s, n);
}

static void encode(const struct relay_msg *m, struct wire_writer *w)
{

	wire_put_u8(w, (uint8_t)m->type);
	switch (m->type) {
	case RELAY_HELLO:
		wire_put_u32(w, m->version);
		break;
	case RELAY_DELIVER:
		if (!queue_id_valid(m->id) || m->rcpt_count == 0 ||
		    m->rcpt_count > RELAY_RCPTS_MAX || m->hop.port == 0 ||
		    (unsigned)m->tls > RELAY_TLS_VERIFY || m->ret > 2)
			log_panic("relay_msg_encode: bad DELIVER request");
		wire_put_u32(w, m->seq);
		wire_put_bytes(w, m->id, QUEUE_ID_LEN);
		put_str(w, m->sender, 0, QF_ADDR_MAX);
		wire_put_u64(w, m->content_off);
		wire_put_u64(w, m->content_len);
		wire_put_u8(w, m->flags);
		put_str(w, m->hop.host, 1, RELAY_HOST_MAX);
		wire_put_u16(w, m->hop.port);
		wire_put_u8(w, (uint8_t)((m->hop.mx ? RELAY_HOP_MX : 0) |
				     (m->hop.literal ? RELAY_HOP_LITERAL : 0)));
		wire_put_u8(w, (uint8_t)m->tls);
		put_str(w, m->envid, 0, RELAY_ENVID_MAX);
		wire_put_u8(w, m->ret);
		wire_put_u16(w, (uint16_t)m->rcpt_count);
		for (size_t i = 0; i < m->rcpt_count; i++) {
			put_str(w, m->rcpts[i].address, 1, QF_ADDR_MAX);
			wire_put_u8(w, m->rcpts[i].notify);
			put_str(w, m->rcpts[i].orcpt, 0, RELAY_ORCPT_MAX);
		}
		break;
	case RELAY_RESULT:
		if (m->rcpt_count == 0 || m->rcpt_count > RELAY_RCPTS_MAX)
			log_panic("relay_msg_encode: bad RESULT");
		wire_put_u32(w, m->seq);
		put_str(w, m->peer, 0, RELAY_PEER_MAX);
		wire_put_u16(w, (uint16_t)m->rcpt_count);
		for (size_t i = 0; i < m->rcpt_count; i++) {
			enum relay_result res = m->rcpts[i].result;
			if (res != RELAY_SENT && res != RELAY_SENT_NO_DSN && res != RELAY_TEMPFAIL &&
			    res != RELAY_PERMFAIL)
				log_panic("relay_msg_encode: bad result %d", (int)res);
			wire_put_u8(w, (uint8_t)res);
			put_str(w, m->rcpts[i].reason, 0, RELAY_REASON_MAX);
		}
		break;
	default:
		log_panic("relay_msg_encode: unknown type %d", (int)m->type);
	}
}

size_t relay_msg_encode(const struct relay_msg *m, unsigned char *out)
{
	buf_t b = BUF_INIT;
	struct wire_writer w = { &b, RELAY_MSG_MAX, "relay_msg_encode" };

	encode(m, &w);
	size_t n = b.len;
	memcpy(out, b.data, n);
	buf_free(&b);
	return n;
}

/* ---- decoding ----------------------------------------------------------------- */

/* A string of min..max bytes into dst (max + 1 bytes). */
static void get_str(struct wire_reader *r, char *dst, size_t min, size_t max, const char *what)
{
	size_t n = wire_get_u16(r);

	dst[0] = '\0';
	if (r->err != NULL)
		return;
	if (n < min || n > max) {
		r->err = what;
		return;
	}
	const unsigned char *d;
	if (!wire_take(r, n, &d))
		return;
	for (size_t i = 0; i < n; i++)
		if (!text_byte_ok(d[i])) {
			r->err = "control character in a string";
			return;
		}
	memcpy(dst, d, n);
	dst[n] = '\0';
}

static void decode_deliver(struct wire_reader *r, struct relay_msg *m)
{
	m->seq = wire_get_u32(r);
	const unsigned char *id;
	if (wire_take(r, QUEUE_ID_LEN, &id)) {
		memcpy(m->id, id, QUEUE_ID_LEN);
		m->id[QUEUE_ID_LEN] = '\0';
		if (!queue_id_valid(m->id))
			r->err = "bad queue id";
	}
	get_str(r, m->sender, 0, QF_ADDR_MAX, "sender too long");
	m->content_off = wire_get_u64(r);
	m->content_len = wire_get_u64(r);
	m->flags = wire_get_u8(r);
	if (r->err == NULL && (m->flags & ~(RELAY_FLAG_SMTPUTF8 | RELAY_FLAG_8BITMIME)) != 0)
		r->err = "unknown message flags";
	get_str(r, m->hop.host, 1, RELAY_HOST_MAX, "bad host length");
	m->hop.port = wire_get_u16(r);
	uint8_t hf = wire_get_u8(r);
	m->hop.mx = (hf & RELAY_HOP_MX) != 0;
	m->hop.literal = (hf & RELAY_HOP_LITERAL) != 0;
	uint8_t tls = wire_get_u8(r);
	m->tls = (enum relay_tls_level)tls;
	if (r->err == NULL && (m->hop.port == 0 || (hf & ~3u) != 0 || tls > RELAY_TLS_VERIFY ||
			       (m->hop.mx && m->hop.literal)))
		r->err = "bad next hop";
	get_str(r, m->envid, 0, RELAY_ENVID_MAX, "envid too long");
	m->ret = wire_get_u8(r);
	if (r->err == NULL && m->ret > 2)
		r->err = "bad RET";
	m->rcpt_count = wire_get_u16(r);
	if (r->err == NULL && (m->rcpt_count == 0 || m->rcpt_count > RELAY_RCPTS_MAX))
		r->err = "bad recipient count";
	for (size_t i = 0; r->err == NULL && i < m->rcpt_count; i++) {
		get_str(r, m->rcpts[i].address, 1, QF_ADDR_MAX, "bad recipient length");
		m->rcpts[i].notify = wire_get_u8(r);
		if (r->err == NULL && (m->rcpts[i].notify & ~15u) != 0)
			r->err = "bad NOTIFY";
		get_str(r, m->rcpts[i].orcpt, 0, RELAY_ORCPT_MAX, "orcpt too long");
	}
}

static void decode_result(struct wire_reader *r, struct relay_msg *m)
{
	m->seq = wire_get_u32(r);
	get_str(r, m->peer, 0, RELAY_PEER_MAX, "peer too long");
	m->rcpt_count = wire_get_u16(r);
	if (r->err == NULL && (m->rcpt_count == 0 || m->rcpt_count > RELAY_RCPTS_MAX))
		r->err = "bad recipient count";
	for (size_t i = 0; r->err == NULL && i < m->rcpt_count; i++) {
		uint8_t res = wire_get_u8(r);
		if (r->err == NULL && res != RELAY_SENT && res != RELAY_SENT_NO_DSN &&
		    res != RELAY_TEMPFAIL && res != RELAY_PERMFAIL)
			r->err = "bad result";
		m->rcpts[i].result = (enum relay_result)res;
		get_str(r, m->rcpts[i].reason, 0, RELAY_REASON_MAX, "reason too long");
	}
}

int relay_msg_decode(const unsigned char *data, size_t len, struct relay_msg *m,
		     const char **err_r)
{
	struct wire_reader r = wire_reader_init(data, len);

	m->type = (enum relay_msg_type)wire_get_u8(&r);
	m->rcpt_count = 0;
	switch (m->type) {
	case RELAY_HELLO:
		m->version = wire_get_u32(&r);
		if (r.err == NULL && m->version != RELAY_PROTO_VERSION)
			r.err = "unknown protocol version";
		break;
	case RELAY_DELIVER:
		decode_deliver(&r, m);
		break;
	case RELAY_RESULT:
		decode_result(&r, m);
		break;
	default:
		if (r.err == NULL)
			r.err = "unknown message type";
	}
	if (r.err == NULL && wire_left(&r) != 0)
		r.err = "bytes left over after the last field";
	*err_r = r.err;
	return r.err == NULL ? 0 : -1;
}

/* ---- transport ---------------------------------------------------------------- */

static bool carries_fd(enum relay_msg_type type)
{
	return type == RELAY_HELLO || type == RELAY_DELIVER;
}

int relay_send(int sock, const struct relay_msg *m, int fd)
{
	unsigned char *data = xmalloc(RELAY_MSG_MAX);
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { data, relay_msg_encode(m, data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if ((fd >= 0) != carries_fd(m->type))
		log_panic("relay_send: descriptor does not match message type %d", (int)m->type);
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.space;
		mh.msg_controllen = sizeof(ctl.space);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	free(data);
	if (n >= 0 && (size_t)n != iov.iov_len) {
		errno = EMSGSIZE;
		return -1;
	}
	return n < 0 ? -1 : 0;
}

int relay_send_raw(int sock, const unsigned char *data, size_t len)
{
	ssize_t n;

	do {
		n = send(sock, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n >= 0 && (size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return n < 0 ? -1 : 0;
}

static int violation(const char *why, int *fds, size_t nfds, const char **err_r)
{
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	*err_r = why;
	errno = EPROTO;
	return -1;
}

int relay_recv(int sock, bool requests, struct relay_msg *m, int *fd_r, const char **err_r)
{
	unsigned char *data = xmalloc(RELAY_MSG_MAX + 1);
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * RELAY_MAX_FDS)];
	} ctl;
	struct iovec iov = { data, RELAY_MSG_MAX + 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.space, .msg_controllen = sizeof(ctl.space) };
	int fds[RELAY_MAX_FDS];
	size_t nfds = 0;
	bool cmsg_ok = true;
	ssize_t n;
	int rc;

	*fd_r = -1;
	*err_r = "receive failed";
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		free(data);
		return -1;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			cmsg_ok = false;
			continue;
		}
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (nfds < RELAY_MAX_FDS)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	if (n == 0 && nfds == 0)
		rc = 0;
	else if (!cmsg_ok || (mh.msg_flags & MSG_CTRUNC) != 0)
		rc = violation("unexpected ancillary data", fds, nfds, err_r);
	else if ((mh.msg_flags & MSG_TRUNC) != 0 || (size_t)n > RELAY_MSG_MAX)
		rc = violation("packet too long", fds, nfds, err_r);
	else if (relay_msg_decode(data, (size_t)n, m, err_r) < 0)
		rc = violation(*err_r, fds, nfds, err_r);
	else if (((unsigned)m->type < 0x80) != requests)
		rc = violation("message sent in the wrong direction", fds, nfds, err_r);
	else if (nfds != (carries_fd(m->type) ? 1u : 0u))
		rc = violation("wrong number of descriptors", fds, nfds, err_r);
	else {
		*fd_r = nfds == 1 ? fds[0] : -1;
		rc = 1;
	}
	free(data);
	return rc;
}
