/*
 * mime_parser.c - the streaming MIME parser of mime.h: RFC 5322 header
 * sections (folding), RFC 2045/2046 structure (multipart at any nesting,
 * message/rfc822 and message/global inside messages), transfer decoding,
 * uuencoded blocks in plain text parts, and libmagic's type of each
 * leaf part.
 *
 * The input is cut into lines (LF or CRLF) in one pass; a line longer
 * than LINE_CAP is handed on in pieces of exactly LINE_CAP bytes, so that
 * the pieces, and every decision taken on them, are the same however the
 * input was fed. Only whole lines of at most LINE_CAP bytes can be
 * boundaries or header field starts. A line that starts with "--" is
 * compared with the boundary of each open multipart, innermost first (at
 * most max_depth of them, each compared once): the parse is linear in the
 * input. A boundary of an enclosing multipart closes the parts inside it,
 * as in mail clients.
 *
 * The parser keeps one frame per part on the path from the message to
 * the current part (its header fields, its decoder, the first bytes for
 * libmagic), a line buffer and an output buffer; decoded bytes are handed
 * on in pieces of up to OUT_CAP bytes.
 *
 * Untrusted input: the whole message. Runs in the unprivileged scanner
 * processes and in `postern scan`.
 */
#include "mime.h"
#include "mime_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/xalloc.h"

#define LINE_CAP 4096        /* longer lines are handled in pieces */
#define OUT_CAP 16384        /* decoded bytes gathered before part_data */
#define FIELDS_MAX 4096      /* header fields kept per part (then header_too_big) */
#define FIELD_NAME_MAX 256   /* a longer "name" before ':' is no field name */
#define SNIFFED_MAX 128

enum frame_state {
	FS_HEADERS,  /* reading the part's header section */
	FS_LEAF,     /* a leaf's body, decoded to part_data */
	FS_PREAMBLE, /* a multipart before its first boundary */
	FS_CHILDREN, /* a multipart whose child is open above it */
	FS_EPILOGUE, /* a multipart after its close delimiter */
	FS_MESSAGE,  /* message/rfc822: its one child is above it */
	FS_SKIP,     /* a container past max_depth: its body is skipped */
};

struct field {
	size_t name_off, raw_off, raw_len, decoded_off; /* decoded_off SIZE_MAX: same as raw */
};

struct frame {
	struct mime_part part;
	enum frame_state state;
	bool default_digest;   /* no Content-Type means message/rfc822 */
	bool in_multipart;     /* a body part of a multipart */
	bool may_have_from;    /* a message's header: an mbox "From " line may start it */
	/* header section */
	buf_t hbuf;            /* name NUL raw-value NUL, for each field */
	buf_t dbuf;            /* decoded values and the part's strings */
	struct field *fields;
	size_t field_count, field_cap;
	struct mime_header *headers;
	size_t headers_cap;
	size_t header_bytes;
	bool field_open;       /* continuation lines go to the last field */
	bool skip_line;        /* the rest of this line is ignored */
	bool lines_seen;
	bool header_full;
	/* multipart */
	buf_t boundary;
	/* leaf */
	bool synthetic;        /* a uuencoded block found in a text part */
	bool uu_scan;          /* identity-encoded text/plain: look for "begin" lines */
	struct mime_base64 b64;
	struct mime_qp qp;
	struct mime_uu uu;
	bool eol_pending;
	unsigned char eol[2];
	size_t eol_len;
	unsigned char sniff[MIME_SNIFF_BYTES];
	size_t sniff_len;
	char sniffed[SNIFFED_MAX];
};

struct mime_parser {
	struct mime_limits lim;
	struct mime_handler h;
	void *arg;
	struct frame **frames; /* the path; frames[0] is the message */
	size_t nframes, nalloc;
	unsigned next_index;
	unsigned problems;
	uint64_t decoded_total;
	bool decode_stopped;   /* max_decoded_bytes reached */
	bool draining;         /* max_parts reached: the rest is only consumed */
	bool finished;
	bool started;          /* the first piece has been seen */
	bool midline;          /* the next piece continues a line */
	char line[LINE_CAP];
	size_t line_len;
	unsigned char out[OUT_CAP];
	size_t out_len;
	struct frame *out_frame;
	struct mime_charsets charsets;
	buf_t scratch;
};

static void close_top(struct mime_parser *p, bool at_eof);

/* A repair was made; why is said at the call (and printed by builds made
 * with -DMIME_TRACE, for people reading a parse). */
static void malformed(struct mime_parser *p, const char *why)
{
	p->problems |= MIME_MALFORMED;
#ifdef MIME_TRACE
	fprintf(stderr, "mime: malformed: %s\n", why);
#else
	(void)why;
#endif
}

static struct frame *top(struct mime_parser *p)
{
	return p->frames[p->nframes - 1];
}

/* ---- frames ---- */

static struct frame *push_frame(struct mime_parser *p, const struct frame *parent)
{
	if (p->nframes == p->nalloc) {
		p->frames = xreallocarray(p->frames, p->nalloc + 1, sizeof(*p->frames));
		p->frames[p->nalloc++] = xcalloc(1, sizeof(struct frame));
	}
	struct frame *f = p->frames[p->nframes++];
	buf_reset(&f->hbuf);
	buf_reset(&f->dbuf);
	buf_reset(&f->boundary);
	memset(&f->part, 0, sizeof(f->part));
	f->part.parent = parent != NULL ? (int)parent->part.index : -1;
	f->part.depth = parent != NULL ? parent->part.depth + 1 : 0;
	f->state = FS_HEADERS;
	f->default_digest = false;
	f->in_multipart = false;
	f->may_have_from = parent == NULL || parent->state == FS_MESSAGE;
	f->field_count = 0;
	f->header_bytes = 0;
	f->field_open = f->skip_line = f->lines_seen = f->header_full = false;
	f->synthetic = f->uu_scan = false;
	memset(&f->b64, 0, sizeof(f->b64));
	memset(&f->qp, 0, sizeof(f->qp));
	memset(&f->uu, 0, sizeof(f->uu));
	f->eol_pending = false;
	f->eol_len = 0;
	f->sniff_len = 0;
	return f;
}

/* ---- decoded output ---- */

static void out_flush(struct mime_parser *p)
{
	if (p->out_len > 0 && p->out_frame != NULL && p->h.part_data != NULL)
		p->h.part_data(p->arg, &p->out_frame->part, p->out, p->out_len);
	p->out_len = 0;
}

/* Room for n decoded bytes of f (n <= OUT_CAP). */
static unsigned char *out_reserve(struct mime_parser *p, struct frame *f, size_t n)
{
	if (p->out_frame != f || OUT_CAP - p->out_len < n) {
		out_flush(p);
		p->out_frame = f;
	}
	return p->out + p->out_len;
}

/* n bytes were written where out_reserve said: count them, keep the first
 * ones for libmagic, and stop at max_decoded_bytes. */
static void out_commit(struct mime_parser *p, struct frame *f, size_t n)
{
	uint64_t room = p->lim.max_decoded_bytes - p->decoded_total;
	if (n > room) {
		n = (size_t)room;
		p->problems |= MIME_DECODED_TOO_BIG;
		p->decode_stopped = true;
	}
	if (n == 0)
		return;
	if (f->sniff_len < MIME_SNIFF_BYTES) {
		size_t k = MIME_SNIFF_BYTES - f->sniff_len < n ? MIME_SNIFF_BYTES - f->sniff_len : n;
		memcpy(f->sniff + f->sniff_len, p->out + p->out_len, k);
		f->sniff_len += k;
	}
	p->out_len += n;
	p->decoded_total += n;
	f->part.decoded_size += n;
}

static void out_bytes(struct mime_parser *p, struct frame *f, const void *data, size_t n)
{
	unsigned char *o = out_reserve(p, f, n);
	memcpy(o, data, n);
	out_commit(p, f, n);
}

/* ---- header sections ---- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void close_field(struct frame *f)
{
	if (!f->field_open)
		return;
	struct field *fl = &f->fields[f->field_count - 1];
	while (f->hbuf.len > fl->raw_off &&
	       (is_wsp(f->hbuf.data[f->hbuf.len - 1]) || f->hbuf.data[f->hbuf.len - 1] == '\r'))
		f->hbuf.len--;
	while (fl->raw_off < f->hbuf.len && is_wsp(f->hbuf.data[fl->raw_off]))
		fl->raw_off++;
	fl->raw_len = f->hbuf.len - fl->raw_off;
	buf_putc(&f->hbuf, '\0');
	f->field_open = false;
}

static void append_value(struct mime_parser *p, struct frame *f, const char *s, size_t len)
{
	size_t from = f->hbuf.len;
	buf_append(&f->hbuf, s, len);
	/* a NUL would end the value early for every reader: a space instead */
	char *z = memchr(f->hbuf.data + from, '\0', len);
	for (; z != NULL; z = memchr(z, '\0', (size_t)(f->hbuf.data + f->hbuf.len - z))) {
		*z = ' ';
		malformed(p, "NUL byte in a header field");
	}
}

/* The length of a field name followed by optional white space and ':'
 * at the start of s (the ':' at *colon_r), 0 if there is none. */
static size_t field_name(const char *s, size_t len, size_t *colon_r)
{
	size_t k = 0;
	while (k < len && k < FIELD_NAME_MAX && (unsigned char)s[k] > ' ' &&
	       (unsigned char)s[k] < 127 && s[k] != ':')
		k++;
	size_t name_len = k;
	while (k < len && is_wsp(s[k]))
		k++;
	if (name_len == 0 || k >= len || s[k] != ':')
		return 0;
	*colon_r = k;
	return name_len;
}

static void start_field(struct mime_parser *p, struct frame *f, const char *name, size_t name_len,
			const char *value, size_t value_len)
{
	close_field(f);
	if (f->field_count >= FIELDS_MAX) {
		f->header_full = true;
		p->problems |= MIME_HEADER_TOO_BIG;
		return;
	}
	if (f->field_count == f->field_cap) {
		f->field_cap = f->field_cap ? f->field_cap * 2 : 16;
		f->fields = xreallocarray(f->fields, f->field_cap, sizeof(*f->fields));
	}
	struct field *fl = &f->fields[f->field_count++];
	fl->name_off = f->hbuf.len;
	buf_append(&f->hbuf, name, name_len);
	buf_putc(&f->hbuf, '\0');
	fl->raw_off = f->hbuf.len;
	fl->raw_len = 0;
	fl->decoded_off = SIZE_MAX;
	f->field_open = true;
	append_value(p, f, value, value_len);
}

static const struct field *find_field(const struct frame *f, const char *name)
{
	for (size_t i = 0; i < f->field_count; i++)
		if (strcasecmp(f->hbuf.data + f->fields[i].name_off, name) == 0)
			return &f->fields[i];
	return NULL;
}

/* "type/subtype" with token characters on both sides of one '/'. */
static bool valid_type(const char *t, size_t len)
{
	const char *slash = memchr(t, '/', len);
	if (slash == NULL || slash == t || slash == t + len - 1)
		return false;
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)t[k];
		if (t + k == slash)
			continue;
		if (c <= ' ' || c >= 127 || strchr("()<>@,;:\\\"/[]?=", c) != NULL)
			return false;
	}
	return true;
}

static enum mime_encoding encoding_of(const char *token)
{
	static const struct {
		const char *name;
		enum mime_encoding enc;
	} names[] = {
		{ "7bit", MIME_ENC_7BIT },       { "8bit", MIME_ENC_8BIT },
		{ "binary", MIME_ENC_BINARY },   { "base64", MIME_ENC_BASE64 },
		{ "quoted-printable", MIME_ENC_QP }, { "x-uuencode", MIME_ENC_UUENCODE },
		{ "x-uue", MIME_ENC_UUENCODE },  { "uuencode", MIME_ENC_UUENCODE },
		{ "uue", MIME_ENC_UUENCODE },
	};
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (strcmp(token, names[i].name) == 0)
			return names[i].enc;
	return MIME_ENC_UNKNOWN;
}

static bool is_identity(enum mime_encoding e)
{
	return e == MIME_ENC_7BIT || e == MIME_ENC_8BIT || e == MIME_ENC_BINARY ||
	       e == MIME_ENC_UNKNOWN;
}

/* Offsets into f->dbuf of the part's strings, made pointers at the end. */
struct part_strings {
	size_t content_type, charset, disposition, filename; /* SIZE_MAX: none */
};

/* Append s to dbuf as a C string; its offset. */
static size_t keep_string(struct frame *f, const char *s, size_t len)
{
	size_t off = f->dbuf.len;
	buf_append(&f->dbuf, s, len);
	buf_putc(&f->dbuf, '\0');
	return off;
}

/* The decoded form of each field that has encoded words. */
static void decode_fields(struct mime_parser *p, struct frame *f)
{
	for (size_t i = 0; i < f->field_count; i++) {
		struct field *fl = &f->fields[i];
		const char *raw = f->hbuf.data + fl->raw_off;
		if (!mime_words_maybe(raw, fl->raw_len))
			continue;
		fl->decoded_off = f->dbuf.len;
		mime_words_decode(&p->charsets, raw, fl->raw_len, &f->dbuf);
		buf_putc(&f->dbuf, '\0');
	}
}

/* Content-Type, -Transfer-Encoding and -Disposition into the part. */
static void interpret_fields(struct mime_parser *p, struct frame *f, struct part_strings *ps)
{
	const struct field *ct = find_field(f, "content-type");
	const struct field *cte = find_field(f, "content-transfer-encoding");
	const struct field *cd = find_field(f, "content-disposition");
	const char *ct_raw = ct != NULL ? f->hbuf.data + ct->raw_off : NULL;
	const char *cd_raw = cd != NULL ? f->hbuf.data + cd->raw_off : NULL;
	buf_t *t = &p->scratch;

	buf_reset(t);
	if (ct != NULL && mime_value_token(ct_raw, ct->raw_len, t) && valid_type(t->data, t->len)) {
		ps->content_type = keep_string(f, t->data, t->len);
	} else {
		if (ct != NULL)
			malformed(p, "unreadable Content-Type"); /* unreadable: text/plain, as RFC 2045 section 5.2 says */
		const char *def = ct == NULL && f->default_digest ? "message/rfc822" : "text/plain";
		ps->content_type = keep_string(f, def, strlen(def));
	}
	if (ct != NULL) {
		buf_reset(t);
		if (mime_param_get(&p->charsets, ct_raw, ct->raw_len, "charset", false, t) &&
		    t->len > 0) {
			for (size_t k = 0; k < t->len; k++)
				if (t->data[k] >= 'A' && t->data[k] <= 'Z')
					t->data[k] = (char)(t->data[k] - 'A' + 'a');
			ps->charset = keep_string(f, t->data, t->len);
		}
		buf_reset(&f->boundary);
		mime_param_get(&p->charsets, ct_raw, ct->raw_len, "boundary", false, &f->boundary);
	}
	f->part.encoding = MIME_ENC_7BIT;
	if (cte != NULL) {
		buf_reset(t);
		if (mime_value_token(f->hbuf.data + cte->raw_off, cte->raw_len, t))
			f->part.encoding = encoding_of(t->data);
	}
	if (cd != NULL) {
		buf_reset(t);
		if (mime_value_token(cd_raw, cd->raw_len, t))
			ps->disposition = keep_string(f, t->data, t->len);
	}
	buf_reset(t);
	if ((cd != NULL && mime_param_get(&p->charsets, cd_raw, cd->raw_len, "filename", true, t)) ||
	    (ct != NULL && mime_param_get(&p->charsets, ct_raw, ct->raw_len, "name", true, t)))
		ps->filename = keep_string(f, t->data ? t->data : "", t->len);
}

static void set_part_pointers(struct frame *f, const struct part_strings *ps)
{
	if (f->field_count > f->headers_cap) {
		f->headers_cap = f->field_count;
		f->headers = xreallocarray(f->headers, f->headers_cap, sizeof(*f->headers));
	}
	for (size_t i = 0; i < f->field_count; i++) {
		const struct field *fl = &f->fields[i];
		f->headers[i].name = f->hbuf.data + fl->name_off;
		f->headers[i].raw = f->hbuf.data + fl->raw_off;
		f->headers[i].decoded = fl->decoded_off == SIZE_MAX ? f->headers[i].raw
								     : f->dbuf.data + fl->decoded_off;
	}
	f->part.headers = f->field_count > 0 ? f->headers : NULL;
	f->part.header_count = f->field_count;
	const char *d = f->dbuf.data;
	f->part.content_type = d + ps->content_type;
	f->part.charset = ps->charset != SIZE_MAX ? d + ps->charset : NULL;
	f->part.disposition = ps->disposition != SIZE_MAX ? d + ps->disposition : NULL;
	f->part.filename = ps->filename != SIZE_MAX ? d + ps->filename : NULL;
}

static bool is_message_type(const char *type)
{
	return strcmp(type, "message/rfc822") == 0 || strcmp(type, "message/global") == 0 ||
	       strcmp(type, "message/news") == 0;
}

/* Does an enclosing multipart have the same boundary as f? */
static bool reuses_boundary(const struct mime_parser *p, const struct frame *f)
{
	for (size_t k = 0; k + 1 < p->nframes; k++) {
		const struct frame *m = p->frames[k];
		if ((m->state == FS_PREAMBLE || m->state == FS_CHILDREN) &&
		    m->boundary.len == f->boundary.len &&
		    memcmp(m->boundary.data, f->boundary.data, f->boundary.len) == 0)
			return true;
	}
	return false;
}

/* What the body of f is, from its declared type. */
static void choose_body(struct mime_parser *p, struct frame *f)
{
	const char *type = f->part.content_type;
	if (strncmp(type, "multipart/", 10) == 0) {
		if (f->boundary.len == 0) {
			malformed(p, "multipart without boundary"); /* no boundary: its body is read as one leaf */
		} else {
			f->part.multipart = true;
			if (!is_identity(f->part.encoding) || f->part.encoding == MIME_ENC_UNKNOWN)
				malformed(p, "multipart with a transfer encoding (ignored)");
			if (reuses_boundary(p, f))
				malformed(p, "boundary of an enclosing multipart reused");
			if (f->part.depth >= p->lim.max_depth) {
				p->problems |= MIME_TOO_DEEP;
				f->state = FS_SKIP;
			} else {
				f->state = FS_PREAMBLE;
			}
			return;
		}
	} else if (is_message_type(type)) {
		if (!is_identity(f->part.encoding) && f->part.encoding != MIME_ENC_UNKNOWN) {
			malformed(p, "message/rfc822 with an encoding"); /* RFC 2046 5.2.1 forbids it: decoded as a leaf */
		} else {
			f->part.message = true;
			if (f->part.depth >= p->lim.max_depth) {
				p->problems |= MIME_TOO_DEEP;
				f->state = FS_SKIP;
			} else {
				f->state = FS_MESSAGE;
			}
			return;
		}
	}
	f->state = FS_LEAF;
	f->uu_scan = is_identity(f->part.encoding) && strcmp(type, "text/plain") == 0;
}

/* The header section of the top frame f is complete. */
static void end_headers(struct mime_parser *p, struct frame *f)
{
	close_field(f);
	if (p->next_index >= p->lim.max_parts) {
		p->problems |= MIME_TOO_MANY_PARTS;
		p->draining = true;
		p->nframes--; /* never produced */
		return;
	}
	f->part.index = p->next_index++;
	struct part_strings ps = { SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX };
	decode_fields(p, f);
	interpret_fields(p, f, &ps);
	set_part_pointers(f, &ps);
	choose_body(p, f);
	if (f->part.index == 0 && (f->part.multipart || f->part.message) &&
	    find_field(f, "mime-version") == NULL)
		malformed(p, "no MIME-Version"); /* MIME structure without MIME-Version: read as MIME anyway */
	if (p->h.part_begin != NULL)
		p->h.part_begin(p->arg, &f->part);
	if (f->state == FS_MESSAGE)
		push_frame(p, f);
}

static void header_piece(struct mime_parser *p, struct frame *f, const char *s, size_t len,
			 size_t eol_len, bool line_start, bool complete)
{
	if (line_start) {
		f->skip_line = false;
		if (complete && len == 0) {
			end_headers(p, f);
			return;
		}
	}
	if (!f->header_full && (len + eol_len > p->lim.max_header_bytes - f->header_bytes ||
				f->header_bytes > p->lim.max_header_bytes)) {
		f->header_full = true;
		p->problems |= MIME_HEADER_TOO_BIG;
	}
	if (f->header_full)
		return;
	f->header_bytes += len + eol_len;
	if (!line_start) {
		if (!f->skip_line && f->field_open)
			append_value(p, f, s, len);
		return;
	}
	bool first = !f->lines_seen;
	f->lines_seen = true;
	if (is_wsp(s[0])) {
		if (f->field_open) {
			append_value(p, f, s, len); /* unfolding: the line end goes, the space stays */
		} else {
			malformed(p, "continuation line without a field");
			f->skip_line = true;
		}
		return;
	}
	if (first && f->may_have_from && len >= 5 && memcmp(s, "From ", 5) == 0) {
		f->skip_line = true; /* an mbox separator line */
		return;
	}
	size_t colon, name_len = field_name(s, len, &colon);
	if (name_len == 0) {
		/* no field: skipped, as Thunderbird and MimeKit do */
		malformed(p, "header line without a colon");
		close_field(f);
		f->skip_line = true;
		return;
	}
	start_field(p, f, s, name_len, s + colon + 1, len - colon - 1);
}

/* ---- leaf bodies ---- */

static void release_eol(struct mime_parser *p, struct frame *f)
{
	if (!f->eol_pending)
		return;
	f->eol_pending = false;
	if (f->part.encoding == MIME_ENC_QP && f->qp.soft_break) {
		f->qp.soft_break = false;
		return;
	}
	if (f->eol_len > 0)
		out_bytes(p, f, f->eol, f->eol_len);
}

static void hold_eol(struct frame *f, const char *eol, size_t eol_len)
{
	f->eol_pending = true;
	f->eol_len = eol_len;
	memcpy(f->eol, eol, eol_len);
}

/* A uuencoded block starts in the text part f: its own part, a child of f. */
static bool start_uu_block(struct mime_parser *p, struct frame *f, const char *name,
			   size_t name_len)
{
	if (f->part.depth >= p->lim.max_depth) {
		p->problems |= MIME_TOO_DEEP;
		return false; /* its lines stay text */
	}
	if (p->next_index >= p->lim.max_parts) {
		p->problems |= MIME_TOO_MANY_PARTS;
		p->draining = true;
		return true;
	}
	struct frame *c = push_frame(p, f);
	c->part.index = p->next_index++;
	c->state = FS_LEAF;
	c->synthetic = true;
	c->part.encoding = MIME_ENC_UUENCODE;
	c->uu.in_block = true;
	struct part_strings ps = { SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX };
	ps.content_type = keep_string(c, "application/octet-stream", 24);
	ps.disposition = keep_string(c, "attachment", 10);
	buf_t *t = &p->scratch;
	buf_reset(t);
	mime_utf8_sanitize(name, name_len, t);
	ps.filename = keep_string(c, t->data ? t->data : "", t->len);
	set_part_pointers(c, &ps);
	if (p->h.part_begin != NULL)
		p->h.part_begin(p->arg, &c->part);
	return true;
}

static void uu_piece(struct mime_parser *p, struct frame *f, const char *s, size_t len,
		     bool line_start, bool complete)
{
	if (!line_start || !complete || f->uu.ended)
		return; /* longer than LINE_CAP: no uuencoded line */
	if (!f->uu.in_block) {
		const char *name;
		size_t name_len;
		if (mime_uu_begin_line(s, len, &name, &name_len))
			f->uu.in_block = true;
		return;
	}
	if (mime_uu_end_line(s, len)) {
		f->uu.in_block = false;
		f->uu.ended = true;
		if (f->synthetic)
			close_top(p, false);
		return;
	}
	unsigned char *o = out_reserve(p, f, 64);
	out_commit(p, f, mime_uu_decode_line(&f->uu, s, len, o));
}

static void leaf_piece(struct mime_parser *p, struct frame *f, const char *s, size_t len,
		       const char *eol, size_t eol_len, bool line_start, bool complete)
{
	if (p->decode_stopped)
		return;
	unsigned char *o;
	switch (f->part.encoding) {
	case MIME_ENC_BASE64:
		o = out_reserve(p, f, len / 4 * 3 + 3);
		out_commit(p, f, mime_base64_decode(&f->b64, s, len, o));
		break;
	case MIME_ENC_QP:
		if (line_start)
			release_eol(p, f);
		o = out_reserve(p, f, len + MIME_QP_CARRY + 3);
		out_commit(p, f, mime_qp_decode(&f->qp, s, len, complete, o));
		if (complete)
			hold_eol(f, eol, eol_len);
		break;
	case MIME_ENC_UUENCODE:
		uu_piece(p, f, s, len, line_start, complete);
		break;
	default: {
		const char *name;
		size_t name_len;
		if (f->uu_scan && line_start && complete && mime_uu_begin_line(s, len, &name, &name_len) &&
		    start_uu_block(p, f, name, name_len))
			return;
		if (line_start)
			release_eol(p, f);
		out_bytes(p, f, s, len);
		if (complete)
			hold_eol(f, eol, eol_len);
		break;
	}
	}
}

/* The leaf f ends: decoders give what they kept back, libmagic looks. */
static void end_leaf(struct mime_parser *p, struct frame *f, bool at_eof)
{
	if (!p->decode_stopped) {
		unsigned char *o;
		if (f->part.encoding == MIME_ENC_BASE64) {
			o = out_reserve(p, f, 3);
			out_commit(p, f, mime_base64_finish(&f->b64, o));
		} else if (f->part.encoding == MIME_ENC_QP) {
			o = out_reserve(p, f, MIME_QP_CARRY + 3);
			out_commit(p, f, mime_qp_finish(&f->qp, o));
		}
		/* the line end before a boundary belongs to the boundary */
		if (at_eof)
			release_eol(p, f);
	}
	if (f->b64.bad)
		malformed(p, "bad base64");
	if (f->qp.bad)
		malformed(p, "bad quoted-printable");
	if (f->uu.bad)
		malformed(p, "bad uuencoded line");
	if (f->synthetic && !f->uu.ended)
		malformed(p, "uuencoded block without end");
	if (p->out_frame == f) {
		out_flush(p);
		p->out_frame = NULL;
	}
	if (f->sniff_len > 0 && mime_sniff(f->part.content_type, f->sniff, f->sniff_len, f->sniffed, sizeof(f->sniffed)))
		f->part.sniffed_type = f->sniffed;
}

/* Close the innermost open part (a header section not yet ended is
 * ended first; that may open a child, closed by the next call). */
static void close_top(struct mime_parser *p, bool at_eof)
{
	struct frame *f = top(p);
	switch (f->state) {
	case FS_HEADERS:
		if (f->in_multipart && !p->draining)
			malformed(p, "body part header without its empty line"); /* a body part without its empty line */
		end_headers(p, f);
		return;
	case FS_LEAF:
		end_leaf(p, f, at_eof);
		break;
	case FS_PREAMBLE:
		if (!p->draining)
			malformed(p, "multipart boundary never found");
		break;
	case FS_CHILDREN:
		if (!p->draining) /* else the rest was not looked at */
			malformed(p, "multipart without close delimiter");
		break;
	default:
		break;
	}
	if (p->h.part_end != NULL)
		p->h.part_end(p->arg, &f->part);
	p->nframes--;
}

/* ---- boundaries ---- */

enum { NOT_BOUNDARY, DELIMITER, CLOSE_DELIMITER };

static int boundary_kind(const struct frame *m, const char *s, size_t len)
{
	size_t b = m->boundary.len;
	if (len < 2 + b || memcmp(s + 2, m->boundary.data, b) != 0)
		return NOT_BOUNDARY;
	size_t k = 2 + b;
	int kind = DELIMITER;
	if (len - k >= 2 && s[k] == '-' && s[k + 1] == '-') {
		kind = CLOSE_DELIMITER;
		k += 2;
	}
	for (; k < len; k++) /* white space after it, as clients allow */
		if (!is_wsp(s[k]) && s[k] != '\r')
			return NOT_BOUNDARY;
	return kind;
}

/* A body part of which nothing has been seen yet. */
static bool fresh_child(const struct frame *f)
{
	return f->state == FS_HEADERS && !f->lines_seen && f->header_bytes == 0;
}

/* Is the line (starting "--") a boundary of an open multipart? If so,
 * act on it. */
static bool boundary_line(struct mime_parser *p, const char *s, size_t len)
{
	for (size_t k = p->nframes; k-- > 0;) {
		struct frame *m = p->frames[k];
		if (m->state != FS_PREAMBLE && m->state != FS_CHILDREN)
			continue;
		int kind = boundary_kind(m, s, len);
		if (kind == NOT_BOUNDARY)
			continue;
		if (kind == DELIMITER && p->nframes == k + 2 && fresh_child(top(p))) {
			/* "--b" twice: no empty part between them, as in Python */
			malformed(p, "boundary repeated");
			return true;
		}
		while (p->nframes > k + 1 && !p->draining)
			close_top(p, false);
		if (p->draining)
			return true;
		if (p->nframes > k + 1 || p->frames[k] != m)
			return true; /* cannot happen: closing never goes below m */
		if (kind == CLOSE_DELIMITER) {
			if (m->state == FS_PREAMBLE)
				malformed(p, "multipart without parts"); /* a multipart without parts */
			m->state = FS_EPILOGUE;
		} else {
			m->state = FS_CHILDREN;
			struct frame *c = push_frame(p, m);
			c->in_multipart = true;
			c->default_digest = strcmp(m->part.content_type, "multipart/digest") == 0;
		}
		return true;
	}
	return false;
}

/* ---- lines ---- */

/* One piece of input: a whole line (complete; its line end in eol) or
 * LINE_CAP bytes of a longer one. */
static void on_piece(struct mime_parser *p, const char *s, size_t len, const char *eol,
		     size_t eol_len, bool complete)
{
	if (!p->started) {
		p->started = true;
		if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
			s += 3; /* a UTF-8 byte order mark some tools write first */
			len -= 3;
		}
	}
	bool line_start = !p->midline;
	p->midline = !complete;
	if (line_start && complete && len >= 2 && s[0] == '-' && s[1] == '-' &&
	    boundary_line(p, s, len))
		return;
	if (p->draining || p->nframes == 0)
		return;
	struct frame *f = top(p);
	if (f->state == FS_HEADERS)
		header_piece(p, f, s, len, eol_len, line_start, complete);
	else if (f->state == FS_LEAF)
		leaf_piece(p, f, s, len, eol, eol_len, line_start, complete);
	/* preamble, epilogue and skipped bodies are not looked at */
}

/* n bytes of input ending with '\n' (newline) or a piece without one. */
static void on_line(struct mime_parser *p, const char *s, size_t n, bool newline)
{
	if (!newline) {
		on_piece(p, s, n, "", 0, false);
		return;
	}
	size_t eol_len = n >= 2 && s[n - 2] == '\r' ? 2 : 1;
	on_piece(p, s, n - eol_len, s + n - eol_len, eol_len, true);
}

void mime_parser_feed(struct mime_parser *p, const void *data, size_t len)
{
	const char *s = data;
	while (len > 0 && !p->draining && !p->finished) {
		size_t room = LINE_CAP - p->line_len;
		size_t scan = len < room ? len : room;
		const char *nl = memchr(s, '\n', scan);
		size_t n = nl != NULL ? (size_t)(nl - s) + 1 : scan;
		bool whole = nl != NULL || p->line_len + n == LINE_CAP;
		if (p->line_len == 0 && whole) {
			on_line(p, s, n, nl != NULL); /* in place, no copy */
		} else {
			memcpy(p->line + p->line_len, s, n);
			p->line_len += n;
			if (whole) {
				size_t total = p->line_len;
				p->line_len = 0;
				on_line(p, p->line, total, nl != NULL);
			}
		}
		s += n;
		len -= n;
	}
}

struct mime_parser *mime_parser_new(const struct mime_limits *limits,
				    const struct mime_handler *handler, void *arg)
{
	struct mime_parser *p = xcalloc(1, sizeof(*p));
	p->lim = *limits;
	if (handler != NULL)
		p->h = *handler;
	p->arg = arg;
	push_frame(p, NULL);
	return p;
}

unsigned mime_parser_finish(struct mime_parser *p)
{
	if (p->finished)
		return p->problems;
	if (!p->draining && (p->line_len > 0 || p->midline))
		on_piece(p, p->line, p->line_len, "", 0, true);
	p->line_len = 0;
	p->finished = true;
	while (p->nframes > 0)
		close_top(p, true);
	return p->problems;
}

void mime_parser_free(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nalloc; i++) {
		struct frame *f = p->frames[i];
		buf_free(&f->hbuf);
		buf_free(&f->dbuf);
		buf_free(&f->boundary);
		free(f->fields);
		free(f->headers);
		free(f);
	}
	free(p->frames);
	mime_charsets_free(&p->charsets);
	buf_free(&p->scratch);
	free(p);
	*pp = NULL;
}

const char *mime_problem_name(unsigned problem_bit)
{
	switch (problem_bit) {
	case MIME_TOO_DEEP:
		return "too_deep";
	case MIME_TOO_MANY_PARTS:
		return "too_many_parts";
	case MIME_HEADER_TOO_BIG:
		return "header_too_big";
	case MIME_DECODED_TOO_BIG:
		return "decoded_too_big";
	case MIME_MALFORMED:
		return "malformed";
	default:
		return "unknown";
	}
}
