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

#define LINE_CAP 4096 /* longer lines are handled in pieces */
#define OUT_CAP 16384 /* decoded bytes gathered before part_data */
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

struct frame {
	struct mime_part part;
	enum frame_state state;
	bool default_digest; /* no Content-Type means message/rfc822 */
	bool in_multipart;   /* a body part of a multipart */
	bool may_have_from;  /* a message's header: an mbox "From " line may start it */
	struct mime_section hdr;
	/* multipart */
	buf_t boundary;
	/* leaf */
	bool synthetic; /* a uuencoded block found in a text part */
	bool uu_scan;   /* identity-encoded text/plain: look for "begin" lines */
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
	bool decode_stopped; /* max_decoded_bytes reached */
	bool draining;       /* max_parts reached: the rest is only consumed */
	bool finished;
	bool started; /* the first piece has been seen */
	bool midline; /* the next piece continues a line */
	char line[LINE_CAP];
	size_t line_len;
	unsigned char out[OUT_CAP];
	size_t out_len;
	struct frame *out_frame;
	struct mime_charsets charsets;
	buf_t scratch;
};

static void close_top(struct mime_parser *p, bool at_eof);

static void malformed(struct mime_parser *p, const char *why)
{
	mime_malformed(&p->problems, why);
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
	mime_section_reset(&f->hdr);
	buf_reset(&f->boundary);
	memset(&f->part, 0, sizeof(f->part));
	f->part.parent = parent != NULL ? (int)parent->part.index : -1;
	f->part.depth = parent != NULL ? parent->part.depth + 1 : 0;
	f->state = FS_HEADERS;
	f->default_digest = false;
	f->in_multipart = false;
	f->may_have_from = parent == NULL || parent->state == FS_MESSAGE;
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
	if (f->sniff_len < MIME_SNIFF_BYTES && !p->lim.no_sniff) {
		size_t k =
			MIME_SNIFF_BYTES - f->sniff_len < n ? MIME_SNIFF_BYTES - f->sniff_len : n;
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

static bool is_identity(enum mime_encoding e)
{
	return e == MIME_ENC_7BIT || e == MIME_ENC_8BIT || e == MIME_ENC_BINARY ||
	       e == MIME_ENC_UNKNOWN;
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

/* A multipart or message part past max_depth is reported, its body skipped. */
static enum frame_state container(struct mime_parser *p, const struct frame *f,
				  enum frame_state state)
{
	if (f->part.depth < p->lim.max_depth)
		return state;
	p->problems |= MIME_TOO_DEEP;
	return FS_SKIP;
}

/* What the body of f is, from its declared type. */
static void choose_body(struct mime_parser *p, struct frame *f)
{
	const char *type = f->part.content_type;
	enum mime_encoding enc = f->part.encoding;
	bool multipart = strncmp(type, "multipart/", 10) == 0;
	if (multipart && f->boundary.len > 0) {
		f->part.multipart = true;
		if (enc != MIME_ENC_7BIT && enc != MIME_ENC_8BIT && enc != MIME_ENC_BINARY)
			malformed(p, "multipart with a transfer encoding (ignored)");
		if (reuses_boundary(p, f))
			malformed(p, "boundary of an enclosing multipart reused");
		f->state = container(p, f, FS_PREAMBLE);
		return;
	}
	if (is_message_type(type) && is_identity(enc)) {
		f->part.message = true;
		f->state = container(p, f, FS_MESSAGE);
		return;
	}
	if (multipart) /* read as one leaf, as Python's email package does */
		malformed(p, "multipart without boundary");
	else if (is_message_type(type)) /* RFC 2046 5.2.1 forbids it: decoded, a leaf */
		malformed(p, "message/rfc822 with a transfer encoding");
	f->state = FS_LEAF;
	f->uu_scan = is_identity(enc) && strcmp(type, "text/plain") == 0;
}

/* The header section of the top frame f is complete. */
static void end_headers(struct mime_parser *p, struct frame *f)
{
	if (p->next_index >= p->lim.max_parts) {
		p->problems |= MIME_TOO_MANY_PARTS;
		p->draining = true;
		p->nframes--; /* never produced */
		return;
	}
	f->part.index = p->next_index++;
	struct mime_declared d;
	mime_section_end(&f->hdr, &p->charsets, &p->scratch,
			 f->default_digest ? "message/rfc822" : "text/plain", &f->boundary, &d,
			 &p->problems);
	mime_section_view(&f->hdr, &d, &f->part);
	choose_body(p, f);
	if (f->part.index == 0 && (f->part.multipart || f->part.message) &&
	    !mime_section_has(&f->hdr, "mime-version"))
		malformed(p, "MIME structure without MIME-Version (read as MIME all the same)");
	if (p->h.part_begin != NULL)
		p->h.part_begin(p->arg, &f->part);
	if (f->state == FS_MESSAGE)
		push_frame(p, f);
}

static void header_piece(struct mime_parser *p, struct frame *f, const char *s, size_t len,
			 size_t eol_len, bool line_start, bool complete)
{
	if (mime_section_piece(&f->hdr, p->lim.max_header_bytes, f->may_have_from, s, len, eol_len,
			       line_start, complete, &p->problems))
		end_headers(p, f);
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
	c->uu.in_block = true;
	struct mime_declared d;
	d.content_type = mime_section_keep(&c->hdr, "application/octet-stream", 24);
	d.charset = SIZE_MAX;
	d.disposition = mime_section_keep(&c->hdr, "attachment", 10);
	buf_t *t = &p->scratch;
	buf_reset(t);
	mime_utf8_sanitize(name, name_len, t);
	d.filename = mime_section_keep(&c->hdr, t->data ? t->data : "", t->len);
	d.encoding = MIME_ENC_UUENCODE;
	mime_section_view(&c->hdr, &d, &c->part);
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
		if (f->uu_scan && line_start && complete &&
		    mime_uu_begin_line(s, len, &name, &name_len) &&
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
	if (f->synthetic && !f->uu.ended && !p->decode_stopped)
		malformed(p, "uuencoded block without end");
	if (p->out_frame == f) {
		out_flush(p);
		p->out_frame = NULL;
	}
	if (f->sniff_len > 0 && mime_sniff(f->part.content_type, f->sniff, f->sniff_len, f->sniffed,
					   sizeof(f->sniffed)))
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
			malformed(p, "body part header without its empty line");
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
	return f->state == FS_HEADERS && !f->hdr.lines_seen && f->hdr.bytes == 0;
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
		if (kind == CLOSE_DELIMITER) {
			if (m->state == FS_PREAMBLE)
				malformed(p, "multipart without parts");
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
	if (p->draining)
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
		mime_section_free(&f->hdr);
		buf_free(&f->boundary);
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
