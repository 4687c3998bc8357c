/*
 * queue_record.c - the small pieces of the queue file format shared by
 * the writer, the reader and the queue manager: big-endian integers,
 * record encoding, in-place updates of the status byte and attempts
 * record, and streaming access to the message content.
 *
 * RFCs: none (private format, see queue_file.h). Untrusted input: content
 * bytes are copied, never interpreted, except qf_read_headers() which only
 * looks for the first empty line and is bounded by its caller.
 * Privilege: unprivileged queue roles.
 */
#include "queue_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"

#define QF_CONTENT_READ_MAX ((size_t)1 << 30)

char *qf_errf(const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return buf_steal(&b);
}

/* ---- encoding ---------------------------------------------------------- */

void qf_put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

void qf_put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

uint32_t qf_get_u32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = (v << 8) | p[i];
	return v;
}

uint64_t qf_get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

void qf_put_header(buf_t *b)
{
	unsigned char h[QF_HEADER_LEN];

	memcpy(h, QF_MAGIC, QF_MAGIC_LEN);
	h[6] = 0;
	h[7] = QF_VERSION;
	buf_append(b, h, sizeof(h));
}

void qf_put_record(buf_t *b, enum qf_type type, const void *payload,
		   uint32_t len)
{
	unsigned char h[QF_REC_HDR_LEN];

	h[0] = (unsigned char)type;
	qf_put_u32(h + 1, len);
	buf_append(b, h, sizeof(h));
	if (len > 0)
		buf_append(b, payload, len);
}

void qf_encode_attempts(unsigned char *out, uint32_t attempts,
			uint64_t next_try, const char *reason)
{
	size_t rlen = strnlen(reason, QF_REASON_MAX);

	memset(out, 0, QF_ATTEMPTS_LEN);
	qf_put_u32(out, attempts);
	qf_put_u64(out + 4, next_try);
	memcpy(out + 12, reason, rlen);
	/* The reader insists on printable text: keep it so. */
	for (size_t i = 0; i < rlen; i++) {
		unsigned char c = out[12 + i];
		if (c < 0x20 || c == 0x7f)
			out[12 + i] = '?';
	}
}

bool qf_text_ok(const char *s, size_t max)
{
	for (size_t n = 0; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];
		if (n >= max || c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* ---- in-place updates ---------------------------------------------------- */

int qf_set_rcpt_status(int fd, struct qf_msg *m, size_t i,
		       enum qf_rcpt_status status, char **err_r)
{
	char c = (char)status;

	if (i >= m->rcpt_count)
		log_panic("qf_set_rcpt_status: index %zu of %zu", i, m->rcpt_count);
	if (safeio_pwrite_all(fd, &c, 1, (off_t)m->rcpts[i].status_off) < 0) {
		*err_r = qf_errf("write recipient status: %s", strerror(errno));
		return -1;
	}
	m->rcpts[i].status = c;
	return 0;
}

int qf_set_attempts(int fd, struct qf_msg *m, uint32_t attempts,
		    uint64_t next_try, const char *reason, char **err_r)
{
	unsigned char rec[QF_ATTEMPTS_LEN];

	qf_encode_attempts(rec, attempts, next_try, reason);
	if (safeio_pwrite_all(fd, rec, sizeof(rec), (off_t)m->attempts_off) < 0) {
		*err_r = qf_errf("write attempts record: %s", strerror(errno));
		return -1;
	}
	m->attempts = attempts;
	m->next_try = next_try;
	memcpy(m->reason, rec + 12, QF_REASON_MAX + 1);
	return 0;
}

int qf_set_delay_warned(int fd, struct qf_msg *m, uint64_t when, char **err_r)
{
	unsigned char rec[QF_WARNED_LEN];

	if (m->delay_warned_off == 0) {
		*err_r = qf_errf("queue file version %u has no delay warning record",
				 (unsigned)m->version);
		return -1;
	}
	qf_put_u64(rec, when);
	if (safeio_pwrite_all(fd, rec, sizeof(rec), (off_t)m->delay_warned_off) < 0) {
		*err_r = qf_errf("write delay warning record: %s", strerror(errno));
		return -1;
	}
	m->delay_warned = when;
	return 0;
}

size_t qf_pending_count(const struct qf_msg *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->rcpt_count; i++)
		n += m->rcpts[i].status == QF_RCPT_PENDING;
	return n;
}

/* ---- content ------------------------------------------------------------- */

/* pread up to len bytes at file offset off; -1 with errno, EIO if the
 * file ends there. */
static long read_at(int fd, uint64_t off, void *data, size_t len)
{
	if (len > QF_CONTENT_READ_MAX)
		len = QF_CONTENT_READ_MAX;
	for (;;) {
		ssize_t r = pread(fd, data, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			errno = EIO; /* the file shrank under us */
			return -1;
		}
		return (long)r;
	}
}

long qf_read_content(int fd, const struct qf_msg *m, uint64_t pos,
		     void *data, size_t len)
{
	if (!m->body_replaced) {
		if (pos >= m->content_len)
			return 0;
		if (len > m->content_len - pos)
			len = (size_t)(m->content_len - pos);
		return len == 0 ? 0 : read_at(fd, m->content_off + pos, data, len);
	}
	/* the content's header section, the line ends that close it, the new body */
	if (len == 0)
		return 0;
	if (pos < m->head_len) {
		if (len > m->head_len - pos)
			len = (size_t)(m->head_len - pos);
		return read_at(fd, m->content_off + pos, data, len);
	}
	pos -= m->head_len;
	if (pos < m->head_sep_len) {
		static const char sep[2] = { '\n', '\n' };
		size_t n = m->head_sep_len - (size_t)pos;
		n = n < len ? n : len;
		memcpy(data, sep, n);
		return (long)n;
	}
	pos -= m->head_sep_len;
	if (pos >= m->body_len)
		return 0;
	if (len > m->body_len - pos)
		len = (size_t)(m->body_len - pos);
	return read_at(fd, m->body_off + pos, data, len);
}

int qf_read_headers(int fd, const struct qf_msg *m, size_t max, buf_t *out,
		    char **err_r)
{
	char chunk[8192];
	uint64_t pos = 0;
	size_t start = out->len;

	while (out->len - start < max) {
		size_t room = max - (out->len - start);
		long n = qf_read_content(fd, m, pos, chunk,
					 room < sizeof(chunk) ? room : sizeof(chunk));
		if (n < 0) {
			*err_r = qf_errf("read content: %s", strerror(errno));
			return -1;
		}
		if (n == 0)
			return 0;
		for (long i = 0; i < n; i++) {
			bool line_start = out->len == start || out->data[out->len - 1] == '\n';
			buf_putc(out, chunk[i]);
			if (chunk[i] == '\n' && line_start)
				return 0; /* the empty line that ends the header */
		}
		pos += (uint64_t)n;
	}
	/* Cut at the last complete line. */
	while (out->len > start && out->data[out->len - 1] != '\n')
		out->len--;
	if (out->data != NULL)
		out->data[out->len] = '\0';
	return 0;
}

/* Does the line at hdr[0 .. len) start the field called name? */
static bool field_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name), i = n;

	if (len < n + 1 || strncasecmp(line, name, n) != 0)
		return false;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i < len && line[i] == ':';
}

/* Append c to out unless it would be a second space in a row (or a
 * leading one). */
static void put_value_char(buf_t *out, size_t start, char c)
{
	bool space = c == ' ' || c == '\t';
	if (space && (out->len == start || out->data[out->len - 1] == ' '))
		return;
	buf_putc(out, space ? ' ' : c);
}

bool qf_header_value(const char *hdr, size_t len, const char *name, size_t max,
		     buf_t *out)
{
	size_t pos = 0;

	while (pos < len && hdr[pos] != '\n') {
		const char *line = hdr + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
		pos += line_len + (nl != NULL);
		if (line[0] == ' ' || line[0] == '\t' || !field_is(line, line_len, name))
			continue;
		size_t start = out->len;
		const char *v = memchr(line, ':', line_len) + 1;
		size_t vlen = line_len - (size_t)(v - line);
		for (;;) {
			for (size_t i = 0; i < vlen; i++) {
				unsigned char c = (unsigned char)v[i];
				put_value_char(out, start, (c < 0x20 && c != '\t') || c == 0x7f
								  ? '?' : (char)c);
			}
			/* a continuation line: LF then white space */
			if (pos >= len || (hdr[pos] != ' ' && hdr[pos] != '\t'))
				break;
			put_value_char(out, start, ' ');
			v = hdr + pos;
			nl = memchr(v, '\n', len - pos);
			vlen = nl != NULL ? (size_t)(nl - v) : len - pos;
			pos += vlen + (nl != NULL);
		}
		while (out->len > start && out->data[out->len - 1] == ' ')
			out->len--;
		if (out->len - start > max) {
			size_t cut = start + max;
			while (cut > start && ((unsigned char)out->data[cut] & 0xc0) == 0x80)
				cut--;
			out->len = cut;
		}
		if (out->data != NULL)
			out->data[out->len] = '\0';
		return true;
	}
	return false;
}
