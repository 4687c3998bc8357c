/*
 * local_proto.c - encoding, decoding and transport of the messages
 * between the queue manager and the local delivery agent (the protocol
 * is specified in local_proto.h).
 *
 * RFCs: none. Untrusted input: every packet and descriptor received, in
 * either direction; lengths are checked before each read and the decoder
 * never reads past the packet. Privilege: unprivileged queue manager and
 * local delivery agent.
 */
#include "local_proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/wire.h"

#define LOCAL_MAX_FDS 4 /* room to notice (and close) unexpected extra fds */

int local_msg_fd_count(enum local_msg_type type)
{
	return type == LOCAL_HELLO || type == LOCAL_DELIVER ? 1 : 0;
}

static bool text_byte_ok(unsigned char c)
{
	return c >= 0x20 && c != 0x7f;
}

void local_set_reason(char *dst, const char *text)
{
	size_t n = strnlen(text, LOCAL_REASON_MAX);

	for (size_t i = 0; i < n; i++)
		dst[i] = text_byte_ok((unsigned char)text[i]) ? text[i] : '?';
	dst[n] = '\0';
}

/* ---- encoding ------------------------------------------------------------- */

static void put_str(struct wire_writer *w, const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n > max)
		log_panic("local_msg_encode: string of %zu bytes, at most %zu allowed", n, max);
	for (size_t i = 0; i < n; i++)
		if (!text_byte_ok((unsigned char)s[i]))
			log_panic("local_msg_encode: control character in a string");
	wire_put_u16(w, (uint16_t)n);
	wire_put_bytes(w, s, n);
}

static void encode(const struct local_msg *m, struct wire_writer *w)
{
	wire_put_u8(w, (uint8_t)m->type);
	switch (m->type) {
	case LOCAL_HELLO:
		wire_put_u32(w, m->version);
		break;
	case LOCAL_DELIVER:
		if (!queue_id_valid(m->id) || m->address[0] == '\0')
			log_panic("local_msg_encode: bad DELIVER request");
		wire_put_u32(w, m->seq);
		wire_put_bytes(w, m->id, QUEUE_ID_LEN);
		wire_put_u64(w, m->arrival_us);
		put_str(w, m->sender, QF_ADDR_MAX);
		wire_put_u64(w, m->content_off);
		wire_put_u64(w, m->content_len);
		put_str(w, m->address, QF_ADDR_MAX);
		wire_put_u8(w, m->check_cur ? LOCAL_FLAG_CHECK_CUR : 0);
		break;
	case LOCAL_SYNC:
		wire_put_u32(w, m->seq);
		break;
	case LOCAL_RESULT:
		if ((unsigned)m->result > LOCAL_PERMFAIL)
			log_panic("local_msg_encode: bad result %d", (int)m->result);
		wire_put_u32(w, m->seq);
		wire_put_u8(w, (uint8_t)m->result);
		wire_put_u32(w, m->folder);
		put_str(w, m->reason, LOCAL_REASON_MAX);
		break;
	case LOCAL_SYNC_FAIL:
		wire_put_u32(w, m->seq);
		wire_put_u32(w, m->folder);
		put_str(w, m->reason, LOCAL_REASON_MAX);
		break;
	case LOCAL_SYNC_DONE:
		wire_put_u32(w, m->seq);
		wire_put_u32(w, m->folders);
		wire_put_u32(w, m->failed);
		break;
	default:
		log_panic("local_msg_encode: unknown type %d", (int)m->type);
	}
}

size_t local_msg_encode(const struct local_msg *m, unsigned char *out)
{
	buf_t b = BUF_INIT;
	struct wire_writer w = { &b, LOCAL_MSG_MAX, "local_msg_encode" };

	encode(m, &w);
	size_t n = b.len;
	memcpy(out, b.data, n);
	buf_free(&b);
	return n;
}

/* ---- decoding --------------------------------------------------------------- */

/* A string of min..max bytes into dst (max + 1 bytes). */
static void get_str(struct wire_reader *r, char *dst, size_t min, size_t max,
		    const char *what)
{
	const unsigned char *d;
	size_t n = wire_get_u16(r);

	dst[0] = '\0';
	if (r->err != NULL)
		return;
	if (n < min || n > max) {
		r->err = what;
		return;
	}
	if (!wire_take(r, n, &d))
		return;
	for (size_t i = 0; i < n; i++) {
		if (!text_byte_ok(d[i])) {
			r->err = "control character in a string";
			return;
		}
	}
	memcpy(dst, d, n);
	dst[n] = '\0';
}

static void get_id(struct wire_reader *r, char *id)
{
	const unsigned char *d;

	id[0] = '\0';
	if (!wire_take(r, QUEUE_ID_LEN, &d))
		return;
	memcpy(id, d, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	if (!queue_id_valid(id))
		r->err = "bad queue id";
}

static void decode_deliver(struct wire_reader *r, struct local_msg *m)
{
	m->seq = wire_get_u32(r);
	get_id(r, m->id);
	m->arrival_us = wire_get_u64(r);
	get_str(r, m->sender, 0, QF_ADDR_MAX, "sender length out of bounds");
	m->content_off = wire_get_u64(r);
	m->content_len = wire_get_u64(r);
	get_str(r, m->address, 1, QF_ADDR_MAX, "address length out of bounds");
	uint8_t flags = wire_get_u8(r);
	if (r->err == NULL && (flags & ~LOCAL_FLAG_CHECK_CUR) != 0)
		r->err = "unknown flag bits";
	m->check_cur = (flags & LOCAL_FLAG_CHECK_CUR) != 0;
	if (r->err == NULL && m->content_len > UINT64_MAX - m->content_off)
		r->err = "content range overflows";
}

static void decode_result(struct wire_reader *r, struct local_msg *m)
{
	m->seq = wire_get_u32(r);
	uint8_t result = wire_get_u8(r);
	if (r->err == NULL && result > LOCAL_PERMFAIL)
		r->err = "unknown result";
	m->result = (enum local_result)result;
	m->folder = wire_get_u32(r);
	get_str(r, m->reason, 0, LOCAL_REASON_MAX, "reason too long");
}

int local_msg_decode(const unsigned char *data, size_t len, struct local_msg *m,
		     const char **err_r)
{
	struct wire_reader r = wire_reader_init(data, len);

	memset(m, 0, sizeof(*m));
	m->type = (enum local_msg_type)wire_get_u8(&r);
	switch (r.err == NULL ? m->type : 0) {
	case LOCAL_HELLO:
		m->version = wire_get_u32(&r);
		if (r.err == NULL && m->version != LOCAL_PROTO_VERSION)
			r.err = "unsupported protocol version";
		break;
	case LOCAL_DELIVER:
		decode_deliver(&r, m);
		break;
	case LOCAL_SYNC:
		m->seq = wire_get_u32(&r);
		break;
	case LOCAL_RESULT:
		decode_result(&r, m);
		break;
	case LOCAL_SYNC_FAIL:
		m->seq = wire_get_u32(&r);
		m->folder = wire_get_u32(&r);
		get_str(&r, m->reason, 0, LOCAL_REASON_MAX, "reason too long");
		if (r.err == NULL && m->folder == 0)
			r.err = "folder 0 in SYNC_FAIL";
		break;
	case LOCAL_SYNC_DONE:
		m->seq = wire_get_u32(&r);
		m->folders = wire_get_u32(&r);
		m->failed = wire_get_u32(&r);
		if (r.err == NULL && m->failed > m->folders)
			r.err = "more failed folders than folders";
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

int local_send(int sock, const struct local_msg *m, int fd)
{
	unsigned char data[LOCAL_MSG_MAX];
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { data, local_msg_encode(m, data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if ((fd >= 0) != (local_msg_fd_count(m->type) == 1))
		log_panic("local_send: descriptor does not match message type %d", (int)m->type);
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
	if (n >= 0 && (size_t)n != iov.iov_len) {
		errno = EMSGSIZE;
		return -1;
	}
	return n < 0 ? -1 : 0;
}

/* Collect the descriptors of every SCM_RIGHTS block; false if any other
 * ancillary data came along. */
static bool collect_fds(struct msghdr *mh, int *fds, size_t *count_r)
{
	bool ok = true;

	*count_r = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0)) {
			ok = false;
			continue;
		}
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*count_r < LOCAL_MAX_FDS)
				fds[(*count_r)++] = fd;
			else
				close(fd);
		}
	}
	return ok;
}

static int violation(const char *why, int *fds, size_t nfds, const char **err_r)
{
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	*err_r = why;
	errno = EPROTO;
	return -1;
}

int local_recv(int sock, bool requests, struct local_msg *m, int *fd_r,
	       const char **err_r)
{
	unsigned char data[LOCAL_MSG_MAX + 1];
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * LOCAL_MAX_FDS)];
	} ctl;
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.space, .msg_controllen = sizeof(ctl.space) };
	int fds[LOCAL_MAX_FDS];
	size_t nfds = 0;
	ssize_t n;

	*fd_r = -1;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		*err_r = "receive failed";
		return -1;
	}
	bool cmsg_ok = collect_fds(&mh, fds, &nfds);
	if (n == 0 && nfds == 0)
		return 0;
	if (!cmsg_ok || (mh.msg_flags & MSG_CTRUNC) != 0)
		return violation("unexpected ancillary data", fds, nfds, err_r);
	if ((mh.msg_flags & MSG_TRUNC) != 0 || (size_t)n > LOCAL_MSG_MAX)
		return violation("packet too long", fds, nfds, err_r);
	if (local_msg_decode(data, (size_t)n, m, err_r) < 0)
		return violation(*err_r, fds, nfds, err_r);
	if (local_is_request(m->type) != requests)
		return violation("message sent in the wrong direction", fds, nfds, err_r);
	if (nfds != (size_t)local_msg_fd_count(m->type))
		return violation("wrong number of descriptors", fds, nfds, err_r);
	*fd_r = nfds == 1 ? fds[0] : -1;
	return 1;
}
