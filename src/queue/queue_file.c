/*
 * queue_file.c - the validating reader of the queue file (format in
 * queue_file.h and docs/queue.md).
 *
 * RFCs: none (private format). Untrusted input: the whole file; the reader
 * bounds every length before using it and reads through a fixed 64 KiB
 * window, so a damaged file costs at most that much memory plus its
 * recipients. Privilege: unprivileged queue roles.
 */
#include "queue_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/xalloc.h"

#define QF_WINDOW (64 * 1024)

/* A read window over the file so that small files cost one pread. */
struct qf_src {
	int fd;
	uint64_t size;
	unsigned char *buf;
	uint64_t base; /* file offset of buf[0] */
	size_t len;    /* valid bytes in buf */
};

/* Make file bytes [off, off + n) (n <= QF_WINDOW) available in *p_r. */
static int src_get(struct qf_src *s, uint64_t off, size_t n,
		   const unsigned char **p_r, char **err_r)
{
	if (off > s->size || n > s->size - off) {
		*err_r = qf_errf("truncated at offset %llu",
				 (unsigned long long)off);
		return QF_ERR_CORRUPT;
	}
	if (off >= s->base && off - s->base + n <= s->len) {
		*p_r = s->buf + (off - s->base);
		return 0;
	}
	uint64_t avail = s->size - off;
	size_t want = avail < QF_WINDOW ? (size_t)avail : QF_WINDOW;
	size_t got = 0;
	while (got < want) {
		ssize_t r = pread(s->fd, s->buf + got, want - got,
				  (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*err_r = qf_errf("read at offset %llu: %s",
					 (unsigned long long)(off + got),
					 r < 0 ? strerror(errno) : "file shrank");
			s->len = 0;
			return QF_ERR_IO;
		}
		got += (size_t)r;
	}
	s->base = off;
	s->len = got;
	*p_r = s->buf;
	return 0;
}

/* Position of each record type in the required order; 0 = unknown. The
 * trailer records (version 2, and 4's i, c, b) share one rank (any order,
 * any number); an O shares its R's rank. N and W are version 3's:
 * required from there, absent before. */
#define RANK_DSN 8
#define RANK_RCPT 9
#define RANK_WARNED 11
#define RANK_CONTENT 12
#define RANK_TRAILER 13
#define RANK_END 14
static int type_rank(unsigned char type)
{
	static const char order[] = "TICHPFSNRAWM";
	const char *p = type != 0 ? strchr(order, type) : NULL;

	if (p != NULL)
		return (int)(p - order) + 1;
	if (type == QF_REC_RCPT_DSN)
		return RANK_RCPT;
	if (type == QF_REC_ADD_HEADER || type == QF_REC_DEL_HEADER ||
	    type == QF_REC_ADD_RCPT || type == QF_REC_NEW_SENDER || type == QF_REC_NOTE ||
	    type == QF_REC_INSERT_HEADER || type == QF_REC_CHANGE_HEADER ||
	    type == QF_REC_NEW_BODY)
		return RANK_TRAILER;
	return type == QF_REC_END ? RANK_END : 0;
}

/* Is type one of the trailer records version 4 brought? */
static bool v4_only(unsigned char type)
{
	return type == QF_REC_INSERT_HEADER || type == QF_REC_CHANGE_HEADER ||
	       type == QF_REC_NEW_BODY;
}

/* May a record of this rank and type follow one of prev_rank and
 * prev_type? */
static bool in_order(const struct qf_msg *m, int prev_rank, unsigned char prev_type,
		     int rank, unsigned char type)
{
	bool v3 = m->version >= 3;

	if (v4_only(type) && m->version < 4)
		return false;
	if (type == QF_REC_RCPT_DSN) /* directly after its R, at most one */
		return v3 && prev_type == QF_REC_RCPT;
	if (rank == prev_rank + 1) {
		if (rank == RANK_DSN || rank == RANK_WARNED)
			return v3;
		return rank != RANK_TRAILER || m->version >= 2;
	}
	if (rank == prev_rank)
		return type == QF_REC_RCPT || rank == RANK_TRAILER;
	/* before version 3: no N between S and R, no W between A and M */
	if (!v3 && ((rank == RANK_RCPT && prev_rank == RANK_DSN - 1) ||
		    (rank == RANK_CONTENT && prev_rank == RANK_WARNED - 1)))
		return true;
	return rank == RANK_END && prev_rank == RANK_CONTENT; /* no trailer */
}

/* Accepted payload length range for each record type. */
static void type_bounds(unsigned char type, uint32_t *min_r, uint32_t *max_r)
{
	switch (type) {
	case QF_REC_ARRIVAL:  *min_r = 8; *max_r = 8; break;
	case QF_REC_ID:       *min_r = QUEUE_ID_LEN; *max_r = QUEUE_ID_LEN; break;
	case QF_REC_CLIENT:
	case QF_REC_HELO:
	case QF_REC_PROTO:    *min_r = 0; *max_r = QF_TEXT_MAX; break;
	case QF_REC_FLAGS:    *min_r = 1; *max_r = 1; break;
	case QF_REC_SENDER:   *min_r = 0; *max_r = QF_ADDR_MAX; break;
	case QF_REC_DSN:      *min_r = QF_DSN_MIN; *max_r = QF_DSN_MAX; break;
	case QF_REC_RCPT:     *min_r = 2; *max_r = 1 + QF_ADDR_MAX; break;
	case QF_REC_RCPT_DSN: *min_r = 1; *max_r = QF_RCPT_DSN_MAX; break;
	case QF_REC_ATTEMPTS: *min_r = QF_ATTEMPTS_LEN; *max_r = QF_ATTEMPTS_LEN; break;
	case QF_REC_WARNED:   *min_r = QF_WARNED_LEN; *max_r = QF_WARNED_LEN; break;
	case QF_REC_CONTENT:  *min_r = 8; *max_r = 8; break;
	case QF_REC_ADD_HEADER: *min_r = 1 + 3; *max_r = 1 + QF_HEADER_TEXT_MAX; break;
	case QF_REC_DEL_HEADER: *min_r = 4 + 1; *max_r = 4 + QF_FIELD_NAME_MAX; break;
	case QF_REC_ADD_RCPT:   *min_r = 2; *max_r = 1 + QF_ADDR_MAX; break;
	case QF_REC_NEW_SENDER: *min_r = 0; *max_r = QF_ADDR_MAX; break;
	case QF_REC_NOTE:       *min_r = QF_NOTE_MIN; *max_r = QF_NOTE_MAX; break;
	case QF_REC_INSERT_HEADER: *min_r = 4 + 3; *max_r = 4 + QF_HEADER_TEXT_MAX; break;
	case QF_REC_CHANGE_HEADER:
		*min_r = 4 + 1 + 1;
		*max_r = 4 + 1 + QF_FIELD_NAME_MAX + QF_HEADER_TEXT_MAX;
		break;
	case QF_REC_NEW_BODY:   *min_r = 8; *max_r = 8; break;
	default:              *min_r = 0; *max_r = 0; break;
	}
}

/* Copy a text payload into a malloc'ed C string after checking it. */
static int take_text(const unsigned char *p, uint32_t len, size_t max,
		     char **out_r, const char *what, char **err_r)
{
	char *s = xstrndup((const char *)p, len);

	if (strlen(s) != len || !qf_text_ok(s, max)) {
		free(s);
		*err_r = qf_errf("bad %s record", what);
		return QF_ERR_CORRUPT;
	}
	*out_r = s;
	return 0;
}

static int take_rcpt(struct qf_msg *m, const unsigned char *p, uint32_t len,
		     uint64_t payload_off, char **err_r)
{
	char status = (char)p[0];

	if (status != QF_RCPT_PENDING && status != QF_RCPT_DONE &&
	    status != QF_RCPT_BOUNCED && !(status == QF_RCPT_REMOVED && m->version >= 2)) {
		*err_r = qf_errf("bad recipient status byte 0x%02x", p[0]);
		return QF_ERR_CORRUPT;
	}
	if (m->rcpt_count >= QF_RCPT_MAX) {
		*err_r = qf_errf("more than %d recipients", QF_RCPT_MAX);
		return QF_ERR_CORRUPT;
	}
	char *addr;
	int rc = take_text(p + 1, len - 1, QF_ADDR_MAX, &addr, "recipient", err_r);
	if (rc != 0)
		return rc;
	/* Capacity doubles each time the count reaches a power of two. */
	size_t n = m->rcpt_count;
	if ((n & (n - 1)) == 0)
		m->rcpts = xreallocarray(m->rcpts, n < 2 ? 4 : n * 2,
					 sizeof(*m->rcpts));
	struct qf_rcpt *r = &m->rcpts[m->rcpt_count++];
	r->addr = addr;
	r->status = status;
	r->status_off = payload_off;
	r->dsn_notify = 0;
	r->dsn_orcpt = NULL;
	return 0;
}

static int take_attempts(struct qf_msg *m, const unsigned char *p,
			 uint64_t payload_off, char **err_r)
{
	const char *reason = (const char *)p + 12;
	size_t rlen = strnlen(reason, QF_REASON_MAX + 1);

	if (rlen > QF_REASON_MAX) {
		*err_r = qf_errf("attempts record: reason not terminated");
		return QF_ERR_CORRUPT;
	}
	m->attempts = qf_get_u32(p);
	m->next_try = qf_get_u64(p + 4);
	memcpy(m->reason, reason, rlen);
	m->reason[rlen] = '\0';
	if (!qf_text_ok(m->reason, QF_REASON_MAX)) {
		*err_r = qf_errf("attempts record: bad reason text");
		return QF_ERR_CORRUPT;
	}
	m->attempts_off = payload_off;
	return 0;
}

/* N: u8 origin, u8 RET, ENVID (may be empty). */
static int take_dsn(struct qf_msg *m, const unsigned char *p, uint32_t len, char **err_r)
{
	bool origin_ok = p[0] == QUEUE_ORIGIN_MAIL || p[0] == QUEUE_ORIGIN_NOTICE ||
			 p[0] == QUEUE_ORIGIN_DOUBLE_BOUNCE;
	bool ret_ok = p[1] == DSN_RET_UNSPECIFIED || p[1] == DSN_RET_FULL ||
		      p[1] == DSN_RET_HDRS;
	char *envid = len > 2 ? xstrndup((const char *)p + 2, len - 2) : NULL;

	if (!origin_ok || !ret_ok ||
	    (envid != NULL && (strlen(envid) != len - 2 || !dsn_envid_valid(envid)))) {
		free(envid);
		*err_r = qf_errf("bad DSN envelope record");
		return QF_ERR_CORRUPT;
	}
	m->origin = (char)p[0];
	m->dsn_ret = (char)p[1];
	m->dsn_envid = envid;
	return 0;
}

/* O: u8 NOTIFY, ORCPT (may be empty), for the R just read. */
static int take_rcpt_dsn(struct qf_msg *m, const unsigned char *p, uint32_t len,
			 char **err_r)
{
	struct qf_rcpt *r = &m->rcpts[m->rcpt_count - 1]; /* in_order: an R precedes */
	char *orcpt = len > 1 ? xstrndup((const char *)p + 1, len - 1) : NULL;

	if (!dsn_notify_valid(p[0]) ||
	    (orcpt != NULL && (strlen(orcpt) != len - 1 || !dsn_orcpt_valid(orcpt)))) {
		free(orcpt);
		*err_r = qf_errf("bad recipient DSN record");
		return QF_ERR_CORRUPT;
	}
	r->dsn_notify = p[0];
	r->dsn_orcpt = orcpt;
	return 0;
}

/* A header field name: printable ASCII without space or colon. */
static bool field_name_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] >= 127 || s[i] == ':')
			return false;
	return len > 0;
}

/* "Name: value", folded lines allowed (LF followed by space or tab). */
static bool header_field_ok(const char *s, size_t len)
{
	const char *colon = memchr(s, ':', len);
	if (colon == NULL || !field_name_ok(s, (size_t)(colon - s)))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' && i + 1 < len && (s[i + 1] == ' ' || s[i + 1] == '\t'))
			continue;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

/* Room for one more header change in m->edits; NULL past the bound. */
static struct qf_header_edit *new_edit(struct qf_msg *m, char **err_r)
{
	if (m->edit_count >= QF_EDITS_MAX) {
		*err_r = qf_errf("more than %d header changes", QF_EDITS_MAX);
		return NULL;
	}
	size_t n = m->edit_count;
	if ((n & (n - 1)) == 0)
		m->edits = xreallocarray(m->edits, n < 2 ? 4 : n * 2, sizeof(*m->edits));
	struct qf_header_edit *e = &m->edits[m->edit_count++];
	memset(e, 0, sizeof(*e));
	return e;
}

/* h: u8 where, field; x: u32 occurrence, name; i: u32 index, field. */
static int take_header_edit(struct qf_msg *m, unsigned char type, const unsigned char *p,
			    uint32_t len, char **err_r)
{
	size_t skip = type == QF_REC_ADD_HEADER ? 1 : 4;
	uint32_t where = type == QF_REC_ADD_HEADER ? p[0] : qf_get_u32(p);
	const char *text = (const char *)p + skip;
	size_t tlen = len - skip;
	bool ok;
	if (type == QF_REC_ADD_HEADER)
		ok = where <= QF_HEADER_END && header_field_ok(text, tlen);
	else if (type == QF_REC_DEL_HEADER)
		ok = field_name_ok(text, tlen);
	else
		ok = header_field_ok(text, tlen); /* i: any index */
	if (!ok || memchr(text, '\0', tlen) != NULL) {
		*err_r = qf_errf("bad header change record '%c'", type);
		return QF_ERR_CORRUPT;
	}
	struct qf_header_edit *e = new_edit(m, err_r);
	if (e == NULL)
		return QF_ERR_CORRUPT;
	e->type = (char)type;
	e->where = where;
	e->text = xstrndup(text, tlen);
	return 0;
}

/* c: u32 occurrence (>= 1), u8 name length, name, the new field or
 * nothing (the field is removed). */
static int take_change_header(struct qf_msg *m, const unsigned char *p, uint32_t len,
			      char **err_r)
{
	uint32_t occurrence = qf_get_u32(p);
	size_t name_len = p[4];
	const char *name = (const char *)p + 5;
	bool ok = occurrence >= 1 && name_len <= len - 5 && field_name_ok(name, name_len);
	const char *field = name + (ok ? name_len : 0);
	size_t field_len = ok ? len - 5 - name_len : 0;

	ok = ok && (field_len == 0 || (header_field_ok(field, field_len) &&
				       memchr(field, '\0', field_len) == NULL));
	if (!ok) {
		*err_r = qf_errf("bad header change record '%c'", QF_REC_CHANGE_HEADER);
		return QF_ERR_CORRUPT;
	}
	struct qf_header_edit *e = new_edit(m, err_r);
	if (e == NULL)
		return QF_ERR_CORRUPT;
	e->type = QF_REC_CHANGE_HEADER;
	e->where = occurrence;
	e->text = xstrndup(name, name_len);
	e->field = field_len > 0 ? xstrndup(field, field_len) : NULL;
	return 0;
}

/* One u16-prefixed text of a q record at *pos, at most max bytes; false
 * if it does not fit in the payload or is not clean text. */
static bool note_string(const unsigned char *p, uint32_t len, uint32_t *pos, size_t max,
			char **out_r)
{
	if (len - *pos < 2)
		return false;
	uint32_t n = (uint32_t)p[*pos] << 8 | p[*pos + 1];
	*pos += 2;
	if (n > max || n > len - *pos)
		return false;
	char *s = xstrndup((const char *)p + *pos, n);
	*pos += n;
	if (strlen(s) != n || !qf_text_ok(s, max)) {
		free(s);
		return false;
	}
	*out_r = s;
	return true;
}

/* The q record (struct qf_note): at most one per file. */
static int take_note(struct qf_msg *m, const unsigned char *p, uint32_t len, char **err_r)
{
	struct qf_note *n = &m->note;
	uint32_t pos = 1;
	bool ok = n->verdict == 0 && (p[0] == QF_NOTE_QUARANTINE || p[0] == QF_NOTE_HOLD);

	if (n->verdict != 0) {
		*err_r = qf_errf("more than one quarantine note");
		return QF_ERR_CORRUPT;
	}
	if (!ok) {
		*err_r = qf_errf("bad quarantine note verdict 0x%02x", p[0]);
		return QF_ERR_CORRUPT;
	}
	n->verdict = (char)p[0];
	ok = note_string(p, len, &pos, QF_NOTE_NAME_MAX, &n->check) &&
	     note_string(p, len, &pos, QF_NOTE_NAME_MAX, &n->reason) &&
	     note_string(p, len, &pos, QF_NOTE_TEXT_MAX, &n->text) && len - pos >= 2;
	uint32_t hits = ok ? (uint32_t)p[pos] << 8 | p[pos + 1] : 0;
	pos += 2;
	ok = ok && hits <= QF_NOTE_HITS_MAX;
	for (uint32_t i = 0; ok && i < hits; i++) {
		char *hit = NULL;
		ok = note_string(p, len, &pos, QF_NOTE_HIT_MAX, &hit) && hit[0] != '\0';
		if (hit != NULL)
			strlist_add(&n->hits, hit);
		free(hit);
	}
	if (!ok || pos != len) {
		*err_r = qf_errf("bad quarantine note record");
		return QF_ERR_CORRUPT;
	}
	return 0;
}

/* Interpret one fixed-size record payload. */
static int take_record(struct qf_msg *m, unsigned char type,
		       const unsigned char *p, uint32_t len,
		       uint64_t payload_off, char **err_r)
{
	switch (type) {
	case QF_REC_ARRIVAL:
		m->arrival_us = qf_get_u64(p);
		return 0;
	case QF_REC_ID:
		memcpy(m->id, p, QUEUE_ID_LEN);
		m->id[QUEUE_ID_LEN] = '\0';
		if (!queue_id_valid(m->id)) {
			*err_r = qf_errf("bad queue id record");
			return QF_ERR_CORRUPT;
		}
		return 0;
	case QF_REC_CLIENT:
		return take_text(p, len, QF_TEXT_MAX, &m->client_addr, "client", err_r);
	case QF_REC_HELO:
		return take_text(p, len, QF_TEXT_MAX, &m->helo, "helo", err_r);
	case QF_REC_PROTO:
		return take_text(p, len, QF_TEXT_MAX, &m->protocol, "protocol", err_r);
	case QF_REC_FLAGS:
		if ((p[0] & ~(QF_FLAG_SMTPUTF8 | QF_FLAG_8BITMIME)) != 0) {
			*err_r = qf_errf("unknown flags 0x%02x", p[0]);
			return QF_ERR_CORRUPT;
		}
		m->smtputf8 = (p[0] & QF_FLAG_SMTPUTF8) != 0;
		m->body_8bitmime = (p[0] & QF_FLAG_8BITMIME) != 0;
		return 0;
	case QF_REC_SENDER:
		return take_text(p, len, QF_ADDR_MAX, &m->sender, "sender", err_r);
	case QF_REC_DSN:
		return take_dsn(m, p, len, err_r);
	case QF_REC_RCPT:
		return take_rcpt(m, p, len, payload_off, err_r);
	case QF_REC_RCPT_DSN:
		return take_rcpt_dsn(m, p, len, err_r);
	case QF_REC_ATTEMPTS:
		return take_attempts(m, p, payload_off, err_r);
	case QF_REC_WARNED:
		m->delay_warned = qf_get_u64(p);
		m->delay_warned_off = payload_off;
		return 0;
	case QF_REC_ADD_RCPT:
		return take_rcpt(m, p, len, payload_off, err_r);
	case QF_REC_NEW_SENDER:
		free(m->sender);
		m->sender = NULL;
		return take_text(p, len, QF_ADDR_MAX, &m->sender, "new sender", err_r);
	case QF_REC_ADD_HEADER:
	case QF_REC_DEL_HEADER:
	case QF_REC_INSERT_HEADER:
		return take_header_edit(m, type, p, len, err_r);
	case QF_REC_CHANGE_HEADER:
		return take_change_header(m, p, len, err_r);
	case QF_REC_NOTE:
		return take_note(m, p, len, err_r);
	default:
		*err_r = qf_errf("unexpected record type 0x%02x", type);
		return QF_ERR_CORRUPT;
	}
}

/* The b record (version 4): u64 length, then that many bytes of a new
 * body; the last one counts. */
static int take_new_body(struct qf_msg *m, struct qf_src *s, uint64_t off,
			 uint64_t *next_r, char **err_r)
{
	const unsigned char *p;
	int rc = src_get(s, off + QF_REC_HDR_LEN, 8, &p, err_r);

	if (rc != 0)
		return rc;
	uint64_t len = qf_get_u64(p), start = off + QF_REC_HDR_LEN + 8;
	if (len > s->size - start) {
		*err_r = qf_errf("new body length %llu exceeds the file",
				 (unsigned long long)len);
		return QF_ERR_CORRUPT;
	}
	m->body_replaced = true;
	m->body_off = start;
	m->body_len = len;
	*next_r = start + len;
	return 0;
}

/* With a replaced body: find where the content's header section ends
 * (the first empty line), reading the content through the window. */
static int find_head(struct qf_msg *m, struct qf_src *s, char **err_r)
{
	uint64_t pos = 0;
	bool line_start = true;
	char last = '\n';

	while (pos < m->content_len) {
		uint64_t left = m->content_len - pos;
		size_t n = left < QF_WINDOW ? (size_t)left : QF_WINDOW;
		const unsigned char *p;
		int rc = src_get(s, m->content_off + pos, n, &p, err_r);
		if (rc != 0)
			return rc;
		for (size_t i = 0; i < n; i++) {
			if (p[i] == '\n' && line_start) {
				m->head_len = pos + i + 1;
				m->head_sep_len = 0;
				return 0;
			}
			line_start = p[i] == '\n';
		}
		last = (char)p[n - 1];
		pos += n;
	}
	/* No empty line: the whole content is header, then one is added. */
	m->head_len = m->content_len;
	m->head_sep_len = last == '\n' ? 1 : 2;
	return 0;
}

/* The M record: u64 content length, then that many bytes, then E. */
static int take_content(struct qf_msg *m, struct qf_src *s, uint64_t off,
			uint64_t *next_r, char **err_r)
{
	const unsigned char *p;
	int rc = src_get(s, off + QF_REC_HDR_LEN, 8, &p, err_r);

	if (rc != 0)
		return rc;
	m->content_len_off = off + QF_REC_HDR_LEN;
	m->content_len = qf_get_u64(p);
	m->content_off = off + QF_REC_HDR_LEN + 8;
	if (m->content_len > s->size - m->content_off) {
		*err_r = qf_errf("content length %llu exceeds the file",
				 (unsigned long long)m->content_len);
		return QF_ERR_CORRUPT;
	}
	*next_r = m->content_off + m->content_len;
	return 0;
}

static int check_header(struct qf_src *s, struct qf_msg *m, char **err_r)
{
	const unsigned char *p;
	int rc = src_get(s, 0, QF_HEADER_LEN, &p, err_r);

	if (rc != 0)
		return rc;
	if (memcmp(p, QF_MAGIC, QF_MAGIC_LEN) != 0 || p[6] != 0) {
		*err_r = qf_errf("not a queue file (bad magic)");
		return QF_ERR_CORRUPT;
	}
	if (p[7] < QF_VERSION_MIN || p[7] > QF_VERSION) {
		*err_r = qf_errf("unsupported queue file version %u", p[7]);
		return QF_ERR_CORRUPT;
	}
	m->version = p[7];
	return 0;
}

/* Walk the records after the header; stop after the end record. */
static int walk_records(struct qf_src *s, struct qf_msg *m, char **err_r)
{
	uint64_t off = QF_HEADER_LEN;
	int prev_rank = 0;
	unsigned char prev_type = 0;

	for (;;) {
		const unsigned char *p;
		int rc = src_get(s, off, QF_REC_HDR_LEN, &p, err_r);
		if (rc != 0)
			return rc;
		unsigned char type = p[0];
		uint32_t len = qf_get_u32(p + 1), min, max;
		int rank = type_rank(type);
		if (rank == 0) {
			*err_r = qf_errf("unknown record type 0x%02x at offset %llu",
					 type, (unsigned long long)off);
			return QF_ERR_CORRUPT;
		}
		if (!in_order(m, prev_rank, prev_type, rank, type)) {
			*err_r = qf_errf("record '%c' out of order at offset %llu",
					 type, (unsigned long long)off);
			return QF_ERR_CORRUPT;
		}
		prev_rank = rank;
		prev_type = type;
		type_bounds(type, &min, &max);
		if (len < min || len > max) {
			*err_r = qf_errf("record '%c' has bad length %lu", type,
					 (unsigned long)len);
			return QF_ERR_CORRUPT;
		}
		if (type == QF_REC_END) {
			if (off + QF_REC_HDR_LEN != s->size) {
				*err_r = qf_errf("trailing bytes after end record");
				return QF_ERR_CORRUPT;
			}
			return 0;
		}
		if (type == QF_REC_CONTENT || type == QF_REC_NEW_BODY) {
			rc = type == QF_REC_CONTENT ? take_content(m, s, off, &off, err_r)
						    : take_new_body(m, s, off, &off, err_r);
			if (rc != 0)
				return rc;
			continue;
		}
		rc = src_get(s, off + QF_REC_HDR_LEN, len, &p, err_r);
		if (rc == 0)
			rc = take_record(m, type, p, len, off + QF_REC_HDR_LEN, err_r);
		if (rc != 0)
			return rc;
		off += QF_REC_HDR_LEN + (uint64_t)len;
	}
}

int qf_read(int fd, struct qf_msg *m, char **err_r)
{
	struct stat st;

	memset(m, 0, sizeof(*m));
	if (fstat(fd, &st) < 0) {
		*err_r = qf_errf("fstat: %s", strerror(errno));
		return QF_ERR_IO;
	}
	if (!S_ISREG(st.st_mode)) {
		*err_r = qf_errf("not a regular file");
		return QF_ERR_CORRUPT;
	}
	struct qf_src s = { fd, (uint64_t)st.st_size, xmalloc(QF_WINDOW), 0, 0 };
	m->file_size = s.size;
	int rc = check_header(&s, m, err_r);
	if (rc == 0)
		rc = walk_records(&s, m, err_r);
	if (rc == 0 && m->body_replaced)
		rc = find_head(m, &s, err_r);
	free(s.buf);
	if (rc != 0)
		qf_msg_free(m);
	return rc;
}

void qf_msg_free(struct qf_msg *m)
{
	for (size_t i = 0; i < m->rcpt_count; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].dsn_orcpt);
	}
	free(m->rcpts);
	free(m->dsn_envid);
	for (size_t i = 0; i < m->edit_count; i++) {
		free(m->edits[i].text);
		free(m->edits[i].field);
	}
	free(m->edits);
	free(m->note.check);
	free(m->note.reason);
	free(m->note.text);
	strlist_free(&m->note.hits);
	free(m->client_addr);
	free(m->helo);
	free(m->protocol);
	free(m->sender);
	memset(m, 0, sizeof(*m));
}

