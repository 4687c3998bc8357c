/*
 * anvil_proto.c - encoding, decoding and transport of the anvil's
 * messages (the protocol is specified in anvil_proto.h).
 *
 * RFCs: none. Untrusted input: every packet received, in both
 * directions; lengths are checked before each read and the decoder never
 * reads past the packet. Privilege: unprivileged smtp workers and anvil.
 */
#include "anvil_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"

#define ANVIL_DIR "private"

void anvil_msg_init(struct anvil_msg *m, enum anvil_msg_type type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
}

void anvil_key_set(char *key, const char *text)
{
	size_t n = strnlen(text != NULL ? text : "", ANVIL_KEY_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		key[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	key[n] = '\0';
}

static bool key_ok(const char *s, size_t n)
{
	if (n == 0 || n > ANVIL_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* ---- encoding --------------------------------------------------------------- */

static void put_bytes(buf_t *b, const void *data, size_t n)
{
	if (n > ANVIL_MSG_MAX - b->len)
		log_panic("anvil_msg_encode: message longer than %d bytes", ANVIL_MSG_MAX);
	buf_append(b, data, n);
}

static void put_u8(buf_t *b, uint8_t v)
{
	put_bytes(b, &v, 1);
}

static void put_u32(buf_t *b, uint32_t v)
{
	unsigned char x[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	put_bytes(b, x, 4);
}

static void put_u64(buf_t *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static void put_key(buf_t *b, const char *key)
{
	size_t n = strlen(key);
	if (!key_ok(key, n))
		log_panic("anvil_msg_encode: bad key \"%.40s\"", key);
	unsigned char len[2] = { (unsigned char)(n >> 8), (unsigned char)n };
	put_bytes(b, len, 2);
	put_bytes(b, key, n);
}

static void check_bound(bool ok, const char *what)
{
	if (!ok)
		log_panic("anvil_msg_encode: %s out of bounds", what);
}

static void put_items(buf_t *b, const struct anvil_msg *m)
{
	check_bound(m->n <= ANVIL_ITEMS_MAX, "item count");
	put_u8(b, (uint8_t)m->n);
	for (size_t i = 0; i < m->n; i++) {
		const struct anvil_item *it = &m->items[i];
		check_bound(it->metric < ANVIL_METRIC_COUNT && it->cost <= ANVIL_COUNT_MAX &&
			    it->window >= 1 && it->window <= ANVIL_WINDOW_MAX &&
			    it->warn <= ANVIL_COUNT_MAX && it->limit <= ANVIL_COUNT_MAX &&
			    it->block_time <= ANVIL_BLOCK_MAX, "item");
		put_key(b, it->key);
		put_u8(b, (uint8_t)it->metric);
		put_u32(b, it->cost);
		put_u32(b, it->window);
		put_u32(b, it->warn);
		put_u32(b, it->limit);
		put_u32(b, it->block_time);
	}
}

static void put_results(buf_t *b, const struct anvil_msg *m)
{
	check_bound(m->n <= ANVIL_ITEMS_MAX, "result count");
	put_u8(b, (uint8_t)m->n);
	for (size_t i = 0; i < m->n; i++) {
		const struct anvil_result *r = &m->results[i];
		check_bound((r->flags & ~ANVIL_RESULT_ALL) == 0 && r->blocked_for <= ANVIL_BLOCK_MAX,
			    "result");
		put_u32(b, r->count);
		put_u8(b, r->flags);
		put_u32(b, r->blocked_for);
	}
}

void anvil_msg_encode(const struct anvil_msg *m, buf_t *out)
{
	buf_reset(out);
	put_u8(out, (uint8_t)m->type);
	switch (m->type) {
	case ANVIL_MSG_OPEN:
		check_bound((m->flags & ~ANVIL_OPEN_REPLAY) == 0, "flags");
		put_u32(out, m->seq);
		put_u64(out, m->session);
		put_u8(out, m->flags);
		put_key(out, m->client);
		put_items(out, m);
		return;
	case ANVIL_MSG_CLOSE:
		put_u64(out, m->session);
		return;
	case ANVIL_MSG_RATE:
		check_bound(m->n >= 1, "item count");
		put_u32(out, m->seq);
		put_items(out, m);
		return;
	case ANVIL_MSG_GREY:
		check_bound(m->delay >= 1 && m->delay <= ANVIL_WINDOW_MAX && m->retry_window >= 1 &&
			    m->retry_window <= ANVIL_LONG_MAX && m->expiry >= 1 &&
			    m->expiry <= ANVIL_LONG_MAX && m->auto_allow <= ANVIL_COUNT_MAX,
			    "greylisting times");
		put_u32(out, m->seq);
		put_key(out, m->client);
		put_key(out, m->triplet);
		put_u32(out, m->delay);
		put_u32(out, m->retry_window);
		put_u32(out, m->expiry);
		put_u32(out, m->auto_allow);
		return;
	case ANVIL_MSG_OPENED:
		put_u32(out, m->seq);
		put_u32(out, m->total);
		put_u32(out, m->client_count);
		put_results(out, m);
		return;
	case ANVIL_MSG_RATED:
		put_u32(out, m->seq);
		put_results(out, m);
		return;
	case ANVIL_MSG_GREYED:
		check_bound(m->outcome < ANVIL_GREY_OUTCOMES && m->wait <= ANVIL_LONG_MAX, "outcome");
		put_u32(out, m->seq);
		put_u8(out, (uint8_t)m->outcome);
		put_u32(out, m->wait);
		put_u32(out, m->client_passes);
		return;
	}
	log_panic("anvil_msg_encode: unknown type %d", (int)m->type);
}

/* ---- decoding --------------------------------------------------------------- */

struct reader {
	const unsigned char *p;
	size_t left;
	const char *err; /* the first violation, or NULL */
};

static bool take(struct reader *r, size_t n, const unsigned char **data_r)
{
	if (r->err != NULL)
		return false;
	if (n > r->left) {
		r->err = "message truncated";
		return false;
	}
	*data_r = r->p;
	r->p += n;
	r->left -= n;
	return true;
}

static uint8_t get_u8(struct reader *r)
{
	const unsigned char *d;
	return take(r, 1, &d) ? d[0] : 0;
}

static uint32_t get_u32(struct reader *r)
{
	const unsigned char *d;
	if (!take(r, 4, &d))
		return 0;
	return (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
}

static uint64_t get_u64(struct reader *r)
{
	uint64_t hi = get_u32(r);
	return hi << 32 | get_u32(r);
}

static void fail(struct reader *r, const char *why)
{
	if (r->err == NULL)
		r->err = why;
}

/* A bounded number: v within lo..hi, or the violation why. */
static uint32_t get_bounded(struct reader *r, uint32_t lo, uint32_t hi, const char *why)
{
	uint32_t v = get_u32(r);
	if (r->err == NULL && (v < lo || v > hi))
		fail(r, why);
	return v;
}

static void get_key(struct reader *r, char *dst)
{
	const unsigned char *len, *data;
	dst[0] = '\0';
	if (!take(r, 2, &len))
		return;
	size_t n = (size_t)len[0] << 8 | len[1];
	if (n > ANVIL_KEY_MAX) {
		fail(r, "key too long");
		return;
	}
	if (!take(r, n, &data))
		return;
	if (!key_ok((const char *)data, n)) {
		fail(r, "empty key or a control character in a key");
		return;
	}
	memcpy(dst, data, n);
	dst[n] = '\0';
}

static void get_items(struct reader *r, struct anvil_msg *m, size_t min)
{
	m->n = get_u8(r);
	if (r->err == NULL && (m->n < min || m->n > ANVIL_ITEMS_MAX)) {
		fail(r, "bad item count");
		return;
	}
	for (size_t i = 0; i < m->n && r->err == NULL; i++) {
		struct anvil_item *it = &m->items[i];
		get_key(r, it->key);
		uint8_t metric = get_u8(r);
		if (r->err == NULL && metric >= ANVIL_METRIC_COUNT)
			fail(r, "unknown metric");
		it->metric = (enum anvil_metric)metric;
		it->cost = get_bounded(r, 0, ANVIL_COUNT_MAX, "cost out of bounds");
		it->window = get_bounded(r, 1, ANVIL_WINDOW_MAX, "window out of bounds");
		it->warn = get_bounded(r, 0, ANVIL_COUNT_MAX, "warn level out of bounds");
		it->limit = get_bounded(r, 0, ANVIL_COUNT_MAX, "limit out of bounds");
		it->block_time = get_bounded(r, 0, ANVIL_BLOCK_MAX, "block time out of bounds");
	}
}

static void get_results(struct reader *r, struct anvil_msg *m)
{
	m->n = get_u8(r);
	if (r->err == NULL && m->n > ANVIL_ITEMS_MAX) {
		fail(r, "bad result count");
		return;
	}
	for (size_t i = 0; i < m->n && r->err == NULL; i++) {
		struct anvil_result *res = &m->results[i];
		res->count = get_u32(r);
		res->flags = get_u8(r);
		if (r->err == NULL && (res->flags & ~ANVIL_RESULT_ALL) != 0)
			fail(r, "unknown result flag");
		res->blocked_for = get_bounded(r, 0, ANVIL_BLOCK_MAX, "block time out of bounds");
	}
}

static void decode_body(struct reader *r, struct anvil_msg *m)
{
	switch (m->type) {
	case ANVIL_MSG_OPEN:
		m->seq = get_u32(r);
		m->session = get_u64(r);
		m->flags = get_u8(r);
		if (r->err == NULL && (m->flags & ~ANVIL_OPEN_REPLAY) != 0)
			fail(r, "unknown flag");
		get_key(r, m->client);
		get_items(r, m, 0);
		return;
	case ANVIL_MSG_CLOSE:
		m->session = get_u64(r);
		return;
	case ANVIL_MSG_RATE:
		m->seq = get_u32(r);
		get_items(r, m, 1);
		return;
	case ANVIL_MSG_GREY:
		m->seq = get_u32(r);
		get_key(r, m->client);
		get_key(r, m->triplet);
		m->delay = get_bounded(r, 1, ANVIL_WINDOW_MAX, "delay out of bounds");
		m->retry_window = get_bounded(r, 1, ANVIL_LONG_MAX, "retry window out of bounds");
		m->expiry = get_bounded(r, 1, ANVIL_LONG_MAX, "expiry out of bounds");
		m->auto_allow = get_bounded(r, 0, ANVIL_COUNT_MAX, "auto-allow out of bounds");
		return;
	case ANVIL_MSG_OPENED:
		m->seq = get_u32(r);
		m->total = get_u32(r);
		m->client_count = get_u32(r);
		get_results(r, m);
		return;
	case ANVIL_MSG_RATED:
		m->seq = get_u32(r);
		get_results(r, m);
		return;
	case ANVIL_MSG_GREYED: {
		m->seq = get_u32(r);
		uint8_t outcome = get_u8(r);
		if (r->err == NULL && outcome >= ANVIL_GREY_OUTCOMES)
			fail(r, "unknown outcome");
		m->outcome = (enum anvil_grey_outcome)outcome;
		m->wait = get_bounded(r, 0, ANVIL_LONG_MAX, "wait out of bounds");
		m->client_passes = get_u32(r);
		return;
	}
	}
	fail(r, "unknown message type");
}

int anvil_msg_decode(const unsigned char *data, size_t len, struct anvil_msg *m,
		     const char **err_r)
{
	struct reader r = { data, len, NULL };
	if (len > ANVIL_MSG_MAX) {
		*err_r = "message too long";
		return -1;
	}
	uint8_t type = get_u8(&r);
	anvil_msg_init(m, (enum anvil_msg_type)type);
	if (r.err == NULL)
		decode_body(&r, m);
	if (r.err == NULL && r.left != 0)
		r.err = "bytes after the last field";
	*err_r = r.err;
	return r.err == NULL ? 0 : -1;
}

/* ---- transport ---------------------------------------------------------------- */

int anvil_send(int sock, const struct anvil_msg *m)
{
	buf_t packet = BUF_INIT;
	anvil_msg_encode(m, &packet);
	ssize_t n;
	do
		n = send(sock, packet.data, packet.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	int err = errno;
	buf_free(&packet);
	if (n < 0) {
		errno = err;
		return -1;
	}
	return 0;
}

/* ---- the outbox ---------------------------------------------------------------- */

struct anvil_packet {
	struct anvil_packet *next;
	size_t len;
	unsigned char data[];
};

static void outbox_append(struct anvil_outbox *o, const struct anvil_msg *m)
{
	buf_t b = BUF_INIT;
	anvil_msg_encode(m, &b);
	struct anvil_packet *p = xmalloc(sizeof(*p) + b.len);
	p->next = NULL;
	p->len = b.len;
	memcpy(p->data, b.data, b.len);
	buf_free(&b);
	if (o->tail != NULL)
		o->tail->next = p;
	else
		o->head = p;
	o->tail = p;
	o->count++;
}

enum anvil_out anvil_outbox_push(struct anvil_outbox *o, int sock, const struct anvil_msg *m)
{
	if (o->head == NULL) {
		if (anvil_send(sock, m) == 0)
			return ANVIL_OUT_SENT;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return ANVIL_OUT_ERROR;
	}
	if (o->count >= o->max)
		return ANVIL_OUT_FULL;
	outbox_append(o, m);
	return ANVIL_OUT_QUEUED;
}

enum anvil_out anvil_outbox_flush(struct anvil_outbox *o, int sock)
{
	while (o->head != NULL) {
		struct anvil_packet *p = o->head;
		ssize_t n = send(sock, p->data, p->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? ANVIL_OUT_QUEUED
								       : ANVIL_OUT_ERROR;
		o->head = p->next;
		if (o->head == NULL)
			o->tail = NULL;
		o->count--;
		free(p);
	}
	return ANVIL_OUT_SENT;
}

void anvil_outbox_clear(struct anvil_outbox *o)
{
	while (o->head != NULL) {
		struct anvil_packet *p = o->head;
		o->head = p->next;
		free(p);
	}
	o->tail = NULL;
	o->count = 0;
}

int anvil_recv(int sock, bool requests, struct anvil_msg *m, const char **err_r)
{
	unsigned char data[ANVIL_MSG_MAX + 1];
	ssize_t n;
	do
		n = recv(sock, data, sizeof(data), MSG_TRUNC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		*err_r = strerror(errno);
		return -1;
	}
	if (n == 0)
		return 0;
	if ((size_t)n > ANVIL_MSG_MAX) {
		*err_r = "packet too long";
		errno = EPROTO;
		return -1;
	}
	if (anvil_msg_decode(data, (size_t)n, m, err_r) < 0) {
		errno = EPROTO;
		return -1;
	}
	if (anvil_msg_is_request(m->type) != requests) {
		*err_r = "message sent in the wrong direction";
		errno = EPROTO;
		return -1;
	}
	return 1;
}

char *anvil_socket_path(const char *spool_dir)
{
	char *dir = safeio_path_join(spool_dir, ANVIL_DIR);
	char *path = safeio_path_join(dir, ANVIL_SOCKET_NAME);
	free(dir);
	return path;
}
