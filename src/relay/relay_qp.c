/*
 * relay_qp.c - the decision whether an 8-bit message can go to a peer
 * without 8BITMIME, and the quoted-printable encoding of its body (see
 * relay_qp.h).
 *
 * RFCs: RFC 6152 section 3, RFC 2045 sections 4 and 6.7, RFC 1428.
 * Untrusted input: the message content, read bounded. Privilege: the
 * relay agent.
 */
#include "relay_qp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/xalloc.h"
#include "relay_body.h"

static const char hex[] = "0123456789ABCDEF";

void relay_qp_init(struct relay_qp *q)
{
	memset(q, 0, sizeof(*q));
}

/* Room for `need` more characters on the line, else a soft break. */
static void room(struct relay_qp *q, size_t need, buf_t *out)
{
	if (q->col + need > RELAY_QP_LINE - 1) {
		buf_append(out, "=\n", 2);
		q->col = 0;
	}
}

static void put_encoded(struct relay_qp *q, unsigned char c, buf_t *out)
{
	char e[3] = { '=', hex[c >> 4], hex[c & 15] };

	room(q, 3, out);
	buf_append(out, e, 3);
	q->col += 3;
}

static void put_plain(struct relay_qp *q, char c, buf_t *out)
{
	room(q, 1, out);
	buf_putc(out, c);
	q->col++;
}

static void flush_held(struct relay_qp *q, bool line_ends, buf_t *out)
{
	if (q->held == 0)
		return;
	if (line_ends)
		put_encoded(q, (unsigned char)q->held, out);
	else
		put_plain(q, q->held, out);
	q->held = 0;
}

void relay_qp_feed(struct relay_qp *q, const char *in, size_t n, buf_t *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '\n') {
			flush_held(q, true, out);
			buf_putc(out, '\n');
			q->col = 0;
			continue;
		}
		flush_held(q, false, out);
		if (c == ' ' || c == '\t')
			q->held = (char)c;
		else if (c >= 33 && c <= 126 && c != '=' && !(c == '.' && q->col == 0))
			put_plain(q, (char)c, out);
		else
			put_encoded(q, c, out); /* a leading '.' too: no dot stuffing needed */
	}
}

void relay_qp_end(struct relay_qp *q, buf_t *out)
{
	flush_held(q, true, out);
}

/* ---- the decision --------------------------------------------------------------- */

/* The header section of the content (up to and without the empty line),
 * at most RELAY_QP_HEADER_MAX bytes; NULL on a read error. */
static char *read_header(int fd, const struct qf_msg *msg, size_t *len_r, bool *whole_r)
{
	size_t cap = qf_message_size(msg) < RELAY_QP_HEADER_MAX ? (size_t)qf_message_size(msg)
							    : RELAY_QP_HEADER_MAX;
	char *h = xmalloc(cap + 1);
	size_t have = 0;

	while (have < cap) {
		long n = qf_read_content(fd, msg, have, h + have, cap - have);
		if (n <= 0) {
			free(h);
			return NULL;
		}
		have += (size_t)n;
	}
	h[have] = '\0';
	*whole_r = false;
	*len_r = have;
	if (have > 0 && h[0] == '\n') {
		*len_r = 0;
		*whole_r = true;
		return h;
	}
	char *end = memmem(h, have, "\n\n", 2);
	if (end != NULL) {
		*len_r = (size_t)(end - h) + 1;
		*whole_r = true;
	} else if (qf_message_size(msg) <= RELAY_QP_HEADER_MAX) {
		*whole_r = true; /* no body at all */
	}
	return h;
}

/* The value of the first field called name (unfolded, trimmed), or NULL. */
static char *field_value(const char *h, size_t len, const char *name)
{
	size_t nl = strlen(name);
	const char *p = h, *end = h + len;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 &&
		    (p[nl] == ':' || p[nl] == ' ' || p[nl] == '\t')) {
			const char *v = memchr(p, ':', (size_t)(eol - p));
			if (v == NULL)
				return NULL;
			buf_t b = BUF_INIT;
			v++;
			for (;;) {
				while (v < eol && (*v == ' ' || *v == '\t'))
					v++;
				buf_append(&b, v, (size_t)(eol - v));
				/* continuation lines */
				if (eol < end && eol + 1 < end && (eol[1] == ' ' || eol[1] == '\t')) {
					v = eol + 1;
					eol = memchr(v, '\n', (size_t)(end - v));
					if (eol == NULL)
						eol = end;
					buf_putc(&b, ' ');
					continue;
				}
				break;
			}
			return buf_steal(&b);
		}
		p = eol + 1;
	}
	return NULL;
}

/* Does a header change add 8-bit text? */
static bool edit_is_8bit(const struct qf_header_edit *e)
{
	const char *added = e->type == QF_REC_CHANGE_HEADER ? e->field
			    : e->type == QF_REC_DEL_HEADER  ? NULL
							    : e->text;
	return added != NULL && relay_body_is_8bit(added, strlen(added));
}

void relay_qp_edits_free(struct qf_header_edit *edits, size_t count, size_t own)
{
	for (size_t i = own; i < count; i++)
		free(edits[i].text);
	free(edits);
}

static void add_edit(struct qf_header_edit *e, size_t *n, char type, uint32_t where,
		     const char *text)
{
	e[*n].type = type;
	e[*n].where = where;
	e[*n].text = xstrdup(text);
	(*n)++;
}

enum relay_qp_verdict relay_qp_plan(int fd, const struct qf_msg *msg, const char **why_r,
				    struct qf_header_edit **edits_r, size_t *count_r)
{
	size_t hlen = 0;
	bool whole = false;
	char *h = read_header(fd, msg, &hlen, &whole);

	*edits_r = NULL;
	*count_r = 0;
	if (h == NULL)
		return RELAY_QP_IO_ERROR;
	if (!whole || relay_body_is_8bit(h, hlen)) {
		free(h);
		*why_r = "its header section has 8-bit text";
		return RELAY_QP_CANNOT;
	}
	for (size_t i = 0; i < msg->edit_count; i++)
		if (edit_is_8bit(&msg->edits[i])) {
			free(h);
			*why_r = "its header section has 8-bit text";
			return RELAY_QP_CANNOT;
		}
	char *ctype = field_value(h, hlen, "Content-Type");
	char *mime = field_value(h, hlen, "MIME-Version");
	free(h);
	if (ctype != NULL && (strncasecmp(ctype, "multipart/", 10) == 0 ||
			      strncasecmp(ctype, "message/", 8) == 0)) {
		free(ctype);
		free(mime);
		*why_r = "it is a multipart message (its 8-bit parts are not converted)";
		return RELAY_QP_CANNOT;
	}
	struct qf_header_edit *e = xcalloc(msg->edit_count + 6, sizeof(*e)); /* ours: at most 5 */
	size_t n = msg->edit_count;
	if (n > 0)
		memcpy(e, msg->edits, n * sizeof(*e));
	add_edit(e, &n, QF_REC_DEL_HEADER, 0, "Content-Transfer-Encoding");
	if (mime == NULL) {
		add_edit(e, &n, QF_REC_ADD_HEADER, QF_HEADER_END, "MIME-Version: 1.0");
		if (ctype != NULL)
			add_edit(e, &n, QF_REC_DEL_HEADER, 0, "Content-Type");
		add_edit(e, &n, QF_REC_ADD_HEADER, QF_HEADER_END,
			 "Content-Type: text/plain; charset=unknown-8bit");
	}
	add_edit(e, &n, QF_REC_ADD_HEADER, QF_HEADER_END,
		 "Content-Transfer-Encoding: quoted-printable");
	free(ctype);
	free(mime);
	*edits_r = e;
	*count_r = n;
	return RELAY_QP_CONVERT;
}
