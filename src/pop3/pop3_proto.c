/*
 * pop3_proto.c - encoding, decoding and transport of the messages between
 * the pop3 worker and its mailbox agent (the protocol is in pop3_proto.h).
 *
 * RFCs: none. Untrusted input: every packet and descriptor received, in
 * either direction. Privilege: the pop3 worker (`user`) and the mailbox
 * agent (mail_owner).
 */
#include "pop3_proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/wire.h"
#include "../lib/xalloc.h"

#define MAX_FDS (POP3_FETCH_MAX + 4) /* room to notice (and close) extra fds */

static bool text_byte_ok(unsigned char c)
{
	return c >= 0x20 && c != 0x7f;
}

static bool uid_byte_ok(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e;
}

void pop3_msg_set_reason(char *dst, const char *text)
{
	size_t n = strnlen(text, POP3_PROTO_REASON_MAX);
	for (size_t i = 0; i < n; i++)
		dst[i] = text_byte_ok((unsigned char)text[i]) ? text[i] : '?';
	dst[n] = '\0';
}

/* ---- encoding ------------------------------------------------------------- */

static void put_str(struct wire_writer *w, const char *s, size_t min, size_t max, bool uid)
{
	size_t n = strlen(s);
	if (n < min || n > max)
		log_panic("pop3_msg_send: string of %zu bytes, %zu..%zu allowed", n, min, max);
	for (size_t i = 0; i < n; i++)
		if (uid ? !uid_byte_ok((unsigned char)s[i]) : !text_byte_ok((unsigned char)s[i]))
			log_panic("pop3_msg_send: bad byte in a string");
	wire_put_u16(w, (uint16_t)n);
	wire_put_bytes(w, s, n);
}

static void encode(const struct pop3_msg *m, struct wire_writer *w)
{
	wire_put_u8(w, (uint8_t)m->type);
	wire_put_u32(w, m->sid);
	switch (m->type) {
	case POP3_MSG_OPEN:
		put_str(w, m->user, 1, POP3_PROTO_USER_MAX, false);
		put_str(w, m->ticket, 0, POP3_PROTO_TICKET_MAX, true);
		break;
	case POP3_MSG_FETCH:
		if (m->fetch_count == 0 || m->fetch_count > POP3_FETCH_MAX)
			log_panic("pop3_msg_send: FETCH of %u", m->fetch_count);
		wire_put_u32(w, m->index);
		wire_put_u8(w, m->fetch_count);
		break;
	case POP3_MSG_UPDATE:
		if (m->count > POP3_MAILDROP_MAX)
			log_panic("pop3_msg_send: %u marks", m->count);
		wire_put_u32(w, m->count);
		for (uint32_t i = 0; i < m->count; i++)
			if (m->marks[i] & ~(POP3_MARK_DELETE | POP3_MARK_SEEN))
				log_panic("pop3_msg_send: bad mark");
		wire_put_bytes(w, m->marks, m->count);
		break;
	case POP3_MSG_CLOSE:
		break;
	case POP3_MSG_ENTRIES:
		if (m->entry_count == 0 || m->entry_count > POP3_ENTRIES_PER_PACKET)
			log_panic("pop3_msg_send: %u entries", m->entry_count);
		wire_put_u16(w, m->entry_count);
		for (uint16_t i = 0; i < m->entry_count; i++) {
			wire_put_u64(w, m->entries[i].size);
			put_str(w, m->entries[i].uid, 1, POP3_UID_MAX, true);
		}
		break;
	case POP3_MSG_OPENED:
		wire_put_u8(w, m->status);
		wire_put_u32(w, m->count);
		put_str(w, m->reason, 0, POP3_PROTO_REASON_MAX, false);
		break;
	case POP3_MSG_MAIL:
		if ((m->status == POP3_STATUS_OK) != (m->fetch_count > 0) ||
		    m->fetch_count > POP3_FETCH_MAX)
			log_panic("pop3_msg_send: MAIL with %u descriptors", m->fetch_count);
		wire_put_u8(w, m->status);
		wire_put_u8(w, m->fetch_count);
		break;
	case POP3_MSG_UPDATED:
		wire_put_u8(w, m->status);
		wire_put_u32(w, m->deleted);
		wire_put_u32(w, m->gone);
		wire_put_u32(w, m->failed);
		put_str(w, m->reason, 0, POP3_PROTO_REASON_MAX, false);
		break;
	}
}

/* ---- decoding ------------------------------------------------------------- */

static void get_str(struct wire_reader *r, char *dst, size_t min, size_t max, bool uid)
{
	uint16_t n = wire_get_u16(r);
	const unsigned char *p;
	dst[0] = '\0';
	if (r->err != NULL)
		return;
	if (n < min || n > max) {
		wire_fail(r, "string length out of bounds");
		return;
	}
	if (!wire_take(r, n, &p))
		return;
	for (uint16_t i = 0; i < n; i++) {
		if (uid ? !uid_byte_ok(p[i]) : !text_byte_ok(p[i])) {
			wire_fail(r, "bad byte in a string");
			return;
		}
	}
	memcpy(dst, p, n);
	dst[n] = '\0';
}

static uint8_t get_status(struct wire_reader *r, bool may_be_one)
{
	uint8_t s = wire_get_u8(r);
	if (s > 2 || (s == 1 && !may_be_one))
		wire_fail(r, "bad status");
	return s;
}

int pop3_msg_decode(const unsigned char *data, size_t len, struct pop3_msg *m,
		    const char **err_r)
{
	struct wire_reader r = wire_reader_init(data, len);
	const unsigned char *p;
	m->type = (enum pop3_msg_type)wire_get_u8(&r);
	m->sid = wire_get_u32(&r);
	switch (m->type) {
	case POP3_MSG_OPEN:
		get_str(&r, m->user, 1, POP3_PROTO_USER_MAX, false);
		get_str(&r, m->ticket, 0, POP3_PROTO_TICKET_MAX, true);
		break;
	case POP3_MSG_FETCH:
		m->index = wire_get_u32(&r);
		m->fetch_count = wire_get_u8(&r);
		if (m->fetch_count == 0 || m->fetch_count > POP3_FETCH_MAX)
			wire_fail(&r, "bad count");
		break;
	case POP3_MSG_UPDATE:
		m->count = wire_get_u32(&r);
		if (m->count > POP3_MAILDROP_MAX)
			wire_fail(&r, "too many marks");
		else if (wire_take(&r, m->count, &p)) {
			m->marks = p;
			for (uint32_t i = 0; i < m->count; i++)
				if (p[i] & ~(POP3_MARK_DELETE | POP3_MARK_SEEN))
					wire_fail(&r, "bad mark");
		}
		break;
	case POP3_MSG_CLOSE:
		break;
	case POP3_MSG_ENTRIES:
		m->entry_count = wire_get_u16(&r);
		if (m->entry_count == 0 || m->entry_count > POP3_ENTRIES_PER_PACKET)
			wire_fail(&r, "bad number of entries");
		for (uint16_t i = 0; r.err == NULL && i < m->entry_count; i++) {
			m->entries[i].size = wire_get_u64(&r);
			get_str(&r, m->entries[i].uid, 1, POP3_UID_MAX, true);
		}
		break;
	case POP3_MSG_OPENED:
		m->status = get_status(&r, true);
		m->count = wire_get_u32(&r);
		get_str(&r, m->reason, 0, POP3_PROTO_REASON_MAX, false);
		break;
	case POP3_MSG_MAIL:
		m->status = get_status(&r, true);
		m->fetch_count = wire_get_u8(&r);
		if ((m->status == POP3_STATUS_OK) != (m->fetch_count > 0) ||
		    m->fetch_count > POP3_FETCH_MAX)
			wire_fail(&r, "bad number of descriptors");
		break;
	case POP3_MSG_UPDATED:
		m->status = get_status(&r, false);
		m->deleted = wire_get_u32(&r);
		m->gone = wire_get_u32(&r);
		m->failed = wire_get_u32(&r);
		get_str(&r, m->reason, 0, POP3_PROTO_REASON_MAX, false);
		break;
	default:
		wire_fail(&r, "unknown message type");
		break;
	}
	if (r.err == NULL && wire_left(&r) != 0)
		wire_fail(&r, "bytes left over");
	if (r.err != NULL) {
		*err_r = r.err;
		return -1;
	}
	return 0;
}

/* ---- transport ---------------------------------------------------------------- */

static size_t fd_count(const struct pop3_msg *m)
{
	return m->type == POP3_MSG_MAIL ? m->fetch_count : 0;
}

int pop3_msg_send(int sock, const struct pop3_msg *m, const int *fds, size_t nfds)
{
	buf_t out = BUF_INIT;
	struct wire_writer w = { &out, POP3_PROTO_MAX, "pop3_msg_send" };
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * POP3_FETCH_MAX)];
	} ctl;
	if (nfds != fd_count(m))
		log_panic("pop3_msg_send: %zu descriptors for message type %d", nfds, (int)m->type);
	encode(m, &w);
	struct iovec iov = { out.data, out.len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.space;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	int e = errno;
	size_t want = out.len;
	buf_free(&out);
	if (n >= 0 && (size_t)n != want) {
		errno = EMSGSIZE;
		return -1;
	}
	errno = e;
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

int pop3_msg_recv(int sock, bool requests, struct pop3_msg *m, unsigned char *buf,
		  int *fds_r, const char **err_r)
{
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	} ctl;
	struct iovec iov = { buf, POP3_PROTO_MAX + 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.space, .msg_controllen = sizeof(ctl.space) };
	int fds[MAX_FDS];
	size_t nfds = 0;
	ssize_t n;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		*err_r = "receive failed";
		return -1;
	}
	bool cmsg_ok = true;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0)) {
			cmsg_ok = false;
			continue;
		}
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (nfds < MAX_FDS)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	if (n == 0 && nfds == 0)
		return 0;
	if (!cmsg_ok || (mh.msg_flags & MSG_CTRUNC) != 0)
		return violation("unexpected ancillary data", fds, nfds, err_r);
	if ((mh.msg_flags & MSG_TRUNC) != 0 || (size_t)n > POP3_PROTO_MAX)
		return violation("packet too long", fds, nfds, err_r);
	if (pop3_msg_decode(buf, (size_t)n, m, err_r) < 0)
		return violation(*err_r, fds, nfds, err_r);
	if (pop3_msg_is_request(m->type) != requests)
		return violation("message sent in the wrong direction", fds, nfds, err_r);
	if (nfds != fd_count(m))
		return violation("wrong number of descriptors", fds, nfds, err_r);
	memcpy(fds_r, fds, nfds * sizeof(int));
	return 1;
}
