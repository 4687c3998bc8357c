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
#include "../lib/wire.h"
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

static void put_key(struct wire_writer *w, const char *key)
{
	size_t n = strlen(key);
	if (!key_ok(key, n))
		log_panic("anvil_msg_encode: bad key \"%.40s\"", key);
	wire_put_u16(w, (uint16_t)n);
	wire_put_bytes(w, key, n);
}

static void check_bound(bool ok, const char *what)
{
	if (!ok)
		log_panic("anvil_msg_encode: %s out of bounds", what);
}

static void put_items(struct wire_writer *w, const struct anvil_msg *m)
{
	check_bound(m->n <= ANVIL_ITEMS_MAX, "item count");
	wire_put_u8(w, (uint8_t)m->n);
	for (size_t i = 0; i < m->n; i++) {
		const struct anvil_item *it = &m->items[i];
		check_bound(it->metric < ANVIL_METRIC_COUNT && it->cost <= ANVIL_COUNT_MAX &&
			    it->window >= 1 && it->window <= ANVIL_WINDOW_MAX &&
			    it->warn <= ANVIL_COUNT_MAX && it->limit <= ANVIL_COUNT_MAX &&
			    it->block_time <= ANVIL_BLOCK_MAX, "item");
		put_key(w, it->key);
		wire_put_u8(w, (uint8_t)it->metric);
		wire_put_u32(w, it->cost);
		wire_put_u32(w, it->window);
		wire_put_u32(w, it->warn);
		wire_put_u32(w, it->limit);
		wire_put_u32(w, it->block_time);
	}
}

static void put_results(struct wire_writer *w, const struct anvil_msg *m)
{
	check_bound(m->n <= ANVIL_ITEMS_MAX, "result count");
	wire_put_u8(w, (uint8_t)m->n);
	for (size_t i = 0; i < m->n; i++) {
		const struct anvil_result *r = &m->results[i];
		check_bound((r->flags & ~ANVIL_RESULT_ALL) == 0 && r->blocked_for <= ANVIL_BLOCK_MAX,
			    "result");
		wire_put_u32(w, r->count);
		wire_put_u8(w, r->flags);
		wire_put_u32(w, r->blocked_for);
	}
}

void anvil_msg_encode(const struct anvil_msg *m, buf_t *out)
{
	struct wire_writer w = { out, ANVIL_MSG_MAX, "anvil_msg_encode" };
	buf_reset(out);
	wire_put_u8(&w, (uint8_t)m->type);
	switch (m->type) {
	case ANVIL_MSG_OPEN:
		check_bound((m->flags & ~ANVIL_OPEN_REPLAY) == 0, "flags");
		wire_put_u32(&w, m->seq);
		wire_put_u64(&w, m->session);
		wire_put_u8(&w, m->flags);
		put_key(&w, m->client);
		put_items(&w, m);
		return;
	case ANVIL_MSG_CLOSE:
		wire_put_u64(&w, m->session);
		return;
	case ANVIL_MSG_RATE:
		check_bound(m->n >= 1, "item count");
		wire_put_u32(&w, m->seq);
		put_items(&w, m);
		return;
	case ANVIL_MSG_GREY:
		check_bound(m->delay >= 1 && m->delay <= ANVIL_WINDOW_MAX && m->retry_window >= 1 &&
			    m->retry_window <= ANVIL_LONG_MAX && m->expiry >= 1 &&
			    m->expiry <= ANVIL_LONG_MAX && m->auto_allow <= ANVIL_COUNT_MAX,
			    "greylisting times");
		wire_put_u32(&w, m->seq);
		put_key(&w, m->client);
		put_key(&w, m->triplet);
		wire_put_u32(&w, m->delay);
		wire_put_u32(&w, m->retry_window);
		wire_put_u32(&w, m->expiry);
		wire_put_u32(&w, m->auto_allow);
		return;
	case ANVIL_MSG_OPENED:
		wire_put_u32(&w, m->seq);
		wire_put_u32(&w, m->total);
		wire_put_u32(&w, m->client_count);
		put_results(&w, m);
		return;
	case ANVIL_MSG_RATED:
		wire_put_u32(&w, m->seq);
		put_results(&w, m);
		return;
	case ANVIL_MSG_GREYED:
		check_bound(m->outcome < ANVIL_GREY_OUTCOMES && m->wait <= ANVIL_LONG_MAX, "outcome");
		wire_put_u32(&w, m->seq);
		wire_put_u8(&w, (uint8_t)m->outcome);
		wire_put_u32(&w, m->wait);
		wire_put_u32(&w, m->client_passes);
		return;
	}
	log_panic("anvil_msg_encode: unknown type %d", (int)m->type);
}

/* ---- decoding --------------------------------------------------------------- */

/* A bounded number: v within lo..hi, or the violation why. */
static uint32_t get_bounded(struct wire_reader *r, uint32_t lo, uint32_t hi, const char *why)
{
	uint32_t v = wire_get_u32(r);
	if (r->err == NULL && (v < lo || v > hi))
		wire_fail(r, why);
	return v;
}

static void get_key(struct wire_reader *r, char *dst)
{
	const unsigned char *len, *data;
	dst[0] = '\0';
	if (!wire_take(r, 2, &len))
		return;
	size_t n = (size_t)len[0] << 8 | len[1];
	if (n > ANVIL_KEY_MAX) {
		wire_fail(r, "key too long");
		return;
	}
	if (!wire_take(r, n, &data))
		return;
	if (!key_ok((const char *)data, n)) {
		wire_fail(r, "empty key or a control character in a key");
		return;
	}
	memcpy(dst, data, n);
	dst[n] = '\0';
}

static void get_items(struct wire_reader *r, struct anvil_msg *m, size_t min)
{
	m->n = wire_get_u8(r);
	if (r->err == NULL && (m->n < min || m->n > ANVIL_ITEMS_MAX)) {
		wire_fail(r, "bad item count");
		return;
	}
	for (size_t i = 0; i < m->n && r->err == NULL; i++) {
		struct anvil_item *it = &m->items[i];
		get_key(r, it->key);
		uint8_t metric = wire_get_u8(r);
		if (r->err == NULL && metric >= ANVIL_METRIC_COUNT)
			wire_fail(r, "unknown metric");
		it->metric = (enum anvil_metric)metric;
		it->cost = get_bounded(r, 0, ANVIL_COUNT_MAX, "cost out of bounds");
		it->window = get_bounded(r, 1, ANVIL_WINDOW_MAX, "window out of bounds");
		it->warn = get_bounded(r, 0, ANVIL_COUNT_MAX, "warn level out of bounds");
		it->limit = get_bounded(r, 0, ANVIL_COUNT_MAX, "limit out of bounds");
		it->block_time = get_bounded(r, 0, ANVIL_BLOCK_MAX, "block time out of bounds");
	}
}

static void get_results(struct wire_reader *r, struct anvil_msg *m)
{
	m->n = wire_get_u8(r);
	if (r->err == NULL && m->n > ANVIL_ITEMS_MAX) {
		wire_fail(r, "bad result count");
		return;
	}
	for (size_t i = 0; i < m->n && r->err == NULL; i++) {
		struct anvil_result *res = &m->results[i];
		res->count = wire_get_u32(r);
		res->flags = wire_get_u8(r);
		if (r->err == NULL && (res->flags & ~ANVIL_RESULT_ALL) != 0)
			wire_fail(r, "unknown result flag");
		res->blocked_for = get_bounded(r, 0, ANVIL_BLOCK_MAX, "block time out of bounds");
	}
}

static void decode_body(struct wire_reader *r, struct anvil_msg *m)
{
	switch (m->type) {
	case ANVIL_MSG_OPEN:
		m->seq = wire_get_u32(r);
		m->session = wire_get_u64(r);
		m->flags = wire_get_u8(r);
		if (r->err == NULL && (m->flags & ~ANVIL_OPEN_REPLAY) != 0)
			wire_fail(r, "unknown flag");
		get_key(r, m->client);
		get_items(r, m, 0);
		return;
	case ANVIL_MSG_CLOSE:
		m->session = wire_get_u64(r);
		return;
	case ANVIL_MSG_RATE:
		m->seq = wire_get_u32(r);
		get_items(r, m, 1);
		return;
	case ANVIL_MSG_GREY:
		m->seq = wire_get_u32(r);
		get_key(r, m->client);
		get_key(r, m->triplet);
		m->delay = get_bounded(r, 1, ANVIL_WINDOW_MAX, "delay out of bounds");
		m->retry_window = get_bounded(r, 1, ANVIL_LONG_MAX, "retry window out of bounds");
		m->expiry = get_bounded(r, 1, ANVIL_LONG_MAX, "expiry out of bounds");
		m->auto_allow = get_bounded(r, 0, ANVIL_COUNT_MAX, "auto-allow out of bounds");
		return;
	case ANVIL_MSG_OPENED:
		m->seq = wire_get_u32(r);
		m->total = wire_get_u32(r);
		m->client_count = wire_get_u32(r);
		get_results(r, m);
		return;
	case ANVIL_MSG_RATED:
		m->seq = wire_get_u32(r);
		get_results(r, m);
		return;
	case ANVIL_MSG_GREYED: {
		m->seq = wire_get_u32(r);
		uint8_t outcome = wire_get_u8(r);
		if (r->err == NULL && outcome >= ANVIL_GREY_OUTCOMES)
			wire_fail(r, "unknown outcome");
		m->outcome = (enum anvil_grey_outcome)outcome;
		m->wait = get_bounded(r, 0, ANVIL_LONG_MAX, "wait out of bounds");
		m->client_passes = wire_get_u32(r);
		return;
	}
	}
	wire_fail(r, "unknown message type");
}

int anvil_msg_decode(const unsigned char *data, size_t len, struct anvil_msg *m,
		     const char **err_r)
{
	struct wire_reader r = wire_reader_init(data, len);
	if (len > ANVIL_MSG_MAX) {
		*err_r = "message too long";
		return -1;
	}
	uint8_t type = wire_get_u8(&r);
	anvil_msg_init(m, (enum anvil_msg_type)type);
	if (r.err == NULL)
		decode_body(&r, m);
	if (r.err == NULL && wire_left(&r) != 0)
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
