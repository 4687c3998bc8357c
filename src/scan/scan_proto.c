/*
 * scan_proto.c - encoding, decoding and transport of the content scanning
 * messages between the smtp workers, the scan master and the scanners
 * (the protocol is specified in scan_proto.h), and the scan master's
 * socket.
 *
 * RFCs: none. Untrusted input: every packet and descriptor received, in
 * every direction; lengths are checked before each read and the decoder
 * never reads past the packet. Privilege: unprivileged smtp workers, scan
 * master and scanners.
 */
#include "scan_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/unixsock.h"
#include "../lib/wire.h"
#include "../lib/xalloc.h"

#define SCAN_MAX_FDS 4 /* room to notice (and close) unexpected extra fds */

void scan_msg_init(struct scan_msg *m, enum scan_msg_type type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	scan_verdict_init(&m->verdict);
}

void scan_msg_free(struct scan_msg *m)
{
	strlist_free(&m->rcpts);
	scan_verdict_free(&m->verdict);
}

/* ---- the characters of each kind of string --------------------------------- */

enum str_kind {
	STR_TEXT,    /* no control character (UTF-8 allowed): addresses, HELO */
	STR_ASCII,   /* printable ASCII: reply text */
	STR_STATUS,  /* checked as a whole with the action */
	STR_REASON,
	STR_HEADER,
	STR_FIELD_NAME,
	STR_HIT,
	STR_STAGE,
};

static bool text_ok(const char *s, size_t n, bool ascii)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || (ascii && c > 0x7e))
			return false;
	}
	return true;
}

/* s (NUL-terminated, n bytes) is a valid string of its kind? */
static bool str_ok(enum str_kind kind, const char *s, size_t n)
{
	if (memchr(s, '\0', n) != NULL)
		return false;
	switch (kind) {
	case STR_TEXT:
		return text_ok(s, n, false);
	case STR_ASCII:
	case STR_STATUS:
		return text_ok(s, n, true);
	case STR_REASON:
		return scan_reason_ok(s);
	case STR_HEADER:
		return scan_header_field_ok(s);
	case STR_FIELD_NAME:
		return scan_field_name_ok(s);
	case STR_HIT:
		return scan_hit_ok(s);
	case STR_STAGE:
		return scan_stage_name_ok(s);
	}
	return false;
}

/* Copy text into dst (max + 1 bytes): control characters become '?', cut
 * at max bytes. */
static void clean_copy(char *dst, const char *text, size_t max)
{
	size_t n = strnlen(text != NULL ? text : "", max);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	dst[n] = '\0';
}

void scan_msg_set_envelope(struct scan_msg *m, const char *sender, const char *client_addr,
			   const char *helo, const strlist_t *rcpts)
{
	clean_copy(m->sender, sender, QF_ADDR_MAX);
	clean_copy(m->client_addr, client_addr, SCAN_CLIENT_ADDR_MAX);
	clean_copy(m->helo, helo, SCAN_HELO_MAX);
	strlist_free(&m->rcpts);
	m->rcpt_total = 0;
	for (size_t i = 0; rcpts != NULL && i < rcpts->count; i++) {
		char addr[QF_ADDR_MAX + 1];
		clean_copy(addr, rcpts->items[i], QF_ADDR_MAX);
		if (addr[0] == '\0')
			continue;
		strlist_add(&m->rcpts, addr);
		m->rcpt_total++;
	}
}

/* ---- encoding --------------------------------------------------------------- */

static void put_str(struct wire_writer *w, enum str_kind kind, const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);
	if (n < min || n > max || !str_ok(kind, s, n))
		log_panic("scan_msg_encode: a string field is out of its bounds (kind %d)",
			  (int)kind);
	wire_put_u16(w, (uint16_t)n);
	wire_put_bytes(w, s, n);
}

static void encode_request(const struct scan_msg *m, struct wire_writer *w)
{
	if (!queue_id_valid(m->id) || m->content_len > UINT64_MAX - m->content_off)
		log_panic("scan_msg_encode: bad REQUEST");
	wire_put_u32(w, m->seq);
	wire_put_bytes(w, m->id, QUEUE_ID_LEN);
	wire_put_u64(w, m->content_off);
	wire_put_u64(w, m->content_len);
	put_str(w, STR_TEXT, m->sender, 0, QF_ADDR_MAX);
	put_str(w, STR_TEXT, m->client_addr, 0, SCAN_CLIENT_ADDR_MAX);
	put_str(w, STR_TEXT, m->helo, 0, SCAN_HELO_MAX);
	/* As many recipients as fit; the count is patched in at the end. */
	buf_t *b = w->out;
	size_t fit = 0, total_at = b->len;
	wire_put_u32(w, 0);
	size_t count_at = b->len;
	wire_put_u16(w, 0);
	for (size_t i = 0; i < m->rcpts.count && fit < UINT16_MAX; i++) {
		size_t n = strlen(m->rcpts.items[i]);
		if (2 + n > SCAN_MSG_MAX - b->len)
			break;
		put_str(w, STR_TEXT, m->rcpts.items[i], 1, QF_ADDR_MAX);
		fit++;
	}
	uint32_t total = m->rcpt_total > m->rcpts.count ? m->rcpt_total : (uint32_t)m->rcpts.count;
	qf_put_u32((unsigned char *)b->data + total_at, total);
	b->data[count_at] = (char)(fit >> 8);
	b->data[count_at + 1] = (char)fit;
}

static void encode_verdict(const struct scan_msg *m, struct wire_writer *w)
{
	const struct scan_verdict *v = &m->verdict;
	bool refuses = v->action == SCAN_REJECT || v->action == SCAN_TEMPFAIL;
	char cls = v->action == SCAN_REJECT ? '5' : '4';
	if ((unsigned)v->action > SCAN_QUARANTINE ||
	    (refuses ? (v->code / 100 != cls - '0' || !scan_status_ok(v->status, cls) ||
			v->text[0] == '\0')
		     : (v->code != 0 || v->status[0] != '\0')) ||
	    v->headers.count > SCAN_HEADERS_MAX || v->remove_headers.count > SCAN_HEADERS_MAX ||
	    v->hits.count > SCAN_HITS_MAX ||
	    v->timing_count > SCAN_TIMINGS_MAX)
		log_panic("scan_msg_encode: a VERDICT that is not normalized");
	wire_put_u32(w, m->seq);
	wire_put_u8(w, (uint8_t)v->action);
	wire_put_u16(w, (uint16_t)v->code);
	put_str(w, STR_STATUS, v->status, 0, sizeof(v->status) - 1);
	put_str(w, STR_ASCII, v->text, 0, sizeof(v->text) - 1);
	put_str(w, STR_REASON, v->reason, 0, sizeof(v->reason) - 1);
	wire_put_u8(w, (uint8_t)v->headers.count);
	for (size_t i = 0; i < v->headers.count; i++)
		put_str(w, STR_HEADER, v->headers.items[i], 1, SCAN_HEADER_TEXT_MAX);
	wire_put_u8(w, (uint8_t)v->remove_headers.count);
	for (size_t i = 0; i < v->remove_headers.count; i++)
		put_str(w, STR_FIELD_NAME, v->remove_headers.items[i], 1, SCAN_FIELD_NAME_MAX);
	wire_put_u8(w, (uint8_t)v->hits.count);
	for (size_t i = 0; i < v->hits.count; i++)
		put_str(w, STR_HIT, v->hits.items[i], 1, SCAN_HIT_MAX);
	wire_put_u8(w, (uint8_t)v->timing_count);
	for (size_t i = 0; i < v->timing_count; i++) {
		put_str(w, STR_STAGE, v->timings[i].stage, 1, SCAN_STAGE_NAME_MAX);
		wire_put_u32(w, v->timings[i].us);
	}
}

void scan_msg_encode(const struct scan_msg *m, buf_t *out)
{
	struct wire_writer w = { out, SCAN_MSG_MAX, "scan_msg_encode" };
	buf_reset(out);
	wire_put_u8(&w, (uint8_t)m->type);
	switch (m->type) {
	case SCAN_MSG_REQUEST:
		encode_request(m, &w);
		break;
	case SCAN_MSG_VERDICT:
		encode_verdict(m, &w);
		break;
	case SCAN_MSG_DRAIN:
		break;
	default:
		log_panic("scan_msg_encode: unknown type %d", (int)m->type);
	}
}

/* ---- decoding ---------------------------------------------------------------- */

/* A string of min..max bytes of its kind into dst (max + 1 bytes). */
static void get_str(struct wire_reader *r, enum str_kind kind, char *dst, size_t min, size_t max,
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
	memcpy(dst, d, n);
	dst[n] = '\0';
	if (!str_ok(kind, dst, n)) {
		r->err = "a string holds characters its field does not allow";
		dst[0] = '\0';
	}
}

/* The same into a list (item max bytes at most). */
static void get_str_item(struct wire_reader *r, enum str_kind kind, strlist_t *list, size_t max,
			 const char *what)
{
	char *item = xmalloc(max + 1);
	get_str(r, kind, item, 1, max, what);
	if (r->err == NULL)
		strlist_add(list, item);
	free(item);
}

static void decode_request(struct wire_reader *r, struct scan_msg *m)
{
	const unsigned char *d;
	m->seq = wire_get_u32(r);
	if (wire_take(r, QUEUE_ID_LEN, &d)) {
		memcpy(m->id, d, QUEUE_ID_LEN);
		m->id[QUEUE_ID_LEN] = '\0';
		if (!queue_id_valid(m->id))
			r->err = "bad queue id";
	}
	m->content_off = wire_get_u64(r);
	m->content_len = wire_get_u64(r);
	if (r->err == NULL && m->content_len > UINT64_MAX - m->content_off)
		r->err = "content range overflows";
	get_str(r, STR_TEXT, m->sender, 0, QF_ADDR_MAX, "sender length out of bounds");
	get_str(r, STR_TEXT, m->client_addr, 0, SCAN_CLIENT_ADDR_MAX,
		"client address length out of bounds");
	get_str(r, STR_TEXT, m->helo, 0, SCAN_HELO_MAX, "HELO length out of bounds");
	m->rcpt_total = wire_get_u32(r);
	uint16_t count = wire_get_u16(r);
	if (r->err == NULL && count > m->rcpt_total)
		r->err = "more recipients listed than there are";
	for (uint16_t i = 0; i < count && r->err == NULL; i++)
		get_str_item(r, STR_TEXT, &m->rcpts, QF_ADDR_MAX, "recipient length out of bounds");
}

static void decode_verdict(struct wire_reader *r, struct scan_msg *m)
{
	struct scan_verdict *v = &m->verdict;
	m->seq = wire_get_u32(r);
	uint8_t action = wire_get_u8(r);
	v->code = wire_get_u16(r);
	get_str(r, STR_STATUS, v->status, 0, sizeof(v->status) - 1, "status too long");
	get_str(r, STR_ASCII, v->text, 0, sizeof(v->text) - 1, "text too long");
	get_str(r, STR_REASON, v->reason, 0, sizeof(v->reason) - 1, "reason too long");
	if (r->err != NULL)
		return;
	if (action > SCAN_QUARANTINE) {
		r->err = "unknown action";
		return;
	}
	v->action = (enum scan_action)action;
	bool refuses = v->action == SCAN_REJECT || v->action == SCAN_TEMPFAIL;
	char cls = v->action == SCAN_REJECT ? '5' : '4';
	if (refuses ? (v->code / 100 != cls - '0' || !scan_status_ok(v->status, cls) ||
		       v->text[0] == '\0')
		    : (v->code != 0 || v->status[0] != '\0')) {
		r->err = "code, status or text does not fit the action";
		return;
	}
	uint8_t n = wire_get_u8(r);
	if (r->err == NULL && n > SCAN_HEADERS_MAX)
		r->err = "too many header fields";
	for (uint8_t i = 0; i < n && r->err == NULL; i++)
		get_str_item(r, STR_HEADER, &v->headers, SCAN_HEADER_TEXT_MAX,
			     "header field length out of bounds");
	n = wire_get_u8(r);
	if (r->err == NULL && n > SCAN_HEADERS_MAX)
		r->err = "too many header names to remove";
	for (uint8_t i = 0; i < n && r->err == NULL; i++)
		get_str_item(r, STR_FIELD_NAME, &v->remove_headers, SCAN_FIELD_NAME_MAX,
			     "header name length out of bounds");
	/* The normal form lists a name once (scan_verdict_remove_header). */
	for (size_t i = 0; r->err == NULL && i < v->remove_headers.count; i++)
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(v->remove_headers.items[i], v->remove_headers.items[j]) == 0)
				r->err = "a header name to remove is listed twice";
	n = wire_get_u8(r);
	if (r->err == NULL && n > SCAN_HITS_MAX)
		r->err = "too many hits";
	for (uint8_t i = 0; i < n && r->err == NULL; i++)
		get_str_item(r, STR_HIT, &v->hits, SCAN_HIT_MAX, "hit length out of bounds");
	n = wire_get_u8(r);
	if (r->err == NULL && n > SCAN_TIMINGS_MAX)
		r->err = "too many timings";
	for (uint8_t i = 0; i < n && r->err == NULL; i++) {
		get_str(r, STR_STAGE, m->timing_names[i], 1, SCAN_STAGE_NAME_MAX,
			"stage name length out of bounds");
		v->timings[i].stage = m->timing_names[i];
		v->timings[i].us = wire_get_u32(r);
		v->timing_count = i + 1u;
	}
}

int scan_msg_decode(const unsigned char *data, size_t len, struct scan_msg *m,
		    const char **err_r)
{
	struct wire_reader r = wire_reader_init(data, len);
	scan_msg_init(m, 0);
	if (len > SCAN_MSG_MAX)
		r.err = "packet too long";
	m->type = (enum scan_msg_type)wire_get_u8(&r);
	switch (r.err == NULL ? m->type : 0) {
	case SCAN_MSG_REQUEST:
		decode_request(&r, m);
		break;
	case SCAN_MSG_VERDICT:
		decode_verdict(&r, m);
		break;
	case SCAN_MSG_DRAIN:
		break;
	default:
		if (r.err == NULL)
			r.err = "unknown message type";
	}
	if (r.err == NULL && r.pos != r.len)
		r.err = "bytes left over after the last field";
	*err_r = r.err;
	return r.err == NULL ? 0 : -1;
}

/* ---- transport ------------------------------------------------------------------ */

int scan_send_encoded(int sock, const buf_t *packet, int fd)
{
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { packet->data, packet->len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	bool request = packet->len > 0 && scan_msg_is_request((unsigned char)packet->data[0]);

	if ((fd >= 0) != request)
		log_panic("scan_send: a descriptor goes with a REQUEST and only with it");
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

int scan_send(int sock, const struct scan_msg *m, int fd)
{
	buf_t packet = BUF_INIT;
	scan_msg_encode(m, &packet);
	int rc = scan_send_encoded(sock, &packet, fd);
	int err = errno;
	buf_free(&packet);
	errno = err;
	return rc;
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
			if (*count_r < SCAN_MAX_FDS)
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

/* A regular file opened for reading only? */
static bool readonly_file(int fd)
{
	struct stat st;
	int flags = fcntl(fd, F_GETFL);
	return flags >= 0 && (flags & O_ACCMODE) == O_RDONLY && fstat(fd, &st) == 0 &&
	       S_ISREG(st.st_mode);
}

int scan_recv(int sock, bool requests, struct scan_msg *m, int *fd_r, const char **err_r)
{
	unsigned char *data = xmalloc(SCAN_MSG_MAX + 1);
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * SCAN_MAX_FDS)];
	} ctl;
	struct iovec iov = { data, SCAN_MSG_MAX + 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.space, .msg_controllen = sizeof(ctl.space) };
	int fds[SCAN_MAX_FDS];
	size_t nfds = 0;
	ssize_t n;
	int rc;

	scan_msg_init(m, 0);
	*fd_r = -1;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		*err_r = errno == EAGAIN ? "nothing to receive" : "receive failed";
		rc = -1;
		goto out;
	}
	bool cmsg_ok = collect_fds(&mh, fds, &nfds);
	if (n == 0 && nfds == 0) {
		rc = 0;
		goto out;
	}
	if (!cmsg_ok || (mh.msg_flags & MSG_CTRUNC) != 0)
		rc = violation("unexpected ancillary data", fds, nfds, err_r);
	else if ((mh.msg_flags & MSG_TRUNC) != 0 || (size_t)n > SCAN_MSG_MAX)
		rc = violation("packet too long", fds, nfds, err_r);
	else if (scan_msg_decode(data, (size_t)n, m, err_r) < 0)
		rc = violation(*err_r, fds, nfds, err_r);
	else if (scan_msg_is_request(m->type) != requests)
		rc = violation("message sent in the wrong direction", fds, nfds, err_r);
	else if (nfds != (m->type == SCAN_MSG_REQUEST ? 1u : 0u))
		rc = violation("wrong number of descriptors", fds, nfds, err_r);
	else if (nfds == 1 && !readonly_file(fds[0]))
		rc = violation("the descriptor is not a regular file open read-only", fds, nfds,
			       err_r);
	else {
		*fd_r = nfds == 1 ? fds[0] : -1;
		rc = 1;
	}
	if (rc < 0) {
		int err = errno;
		scan_msg_free(m);
		errno = err;
	}
out:
	free(data);
	return rc;
}

/* ---- the scan master's socket ----------------------------------------------- */

char *scan_socket_path(const char *spool_dir)
{
	char *dir = safeio_path_join(spool_dir, SCAN_SOCKET_FOLDER);
	char *path = safeio_path_join(dir, SCAN_SOCKET_NAME);
	free(dir);
	return path;
}

int scan_socket_connect(const char *path)
{
	return unixsock_connect(path);
}

int scan_socket_listen(const char *path)
{
	return unixsock_listen(path, 128);
}
