/*
 * spam_text.c - the message as the spam tests see it (spam.h's struct
 * spam_text), built from the MIME pass's kept text parts the way
 * SpamAssassin 4 renders a message, so that rules written for it match
 * the same text (tests/tools/spam_text_compare.py measures how closely):
 *
 *   body     the Subject (the last one, unfolded, RFC 2047 decoded), then
 *            every leaf part in MIME order, a line break between parts:
 *            text/html (or a part named *.htm, *.html, *.shtml) rendered
 *            to its text (html_text.h), any other text/... but vCards and
 *            calendars as plain text, converted to UTF-8
 *            (mime_text_to_utf8); both alternatives of a
 *            multipart/alternative, as SpamAssassin does; each part's
 *            text cut at 50000 characters (after a line end or space
 *            within 1024 more). Then white space runs that hold two line
 *            breaks or more end a paragraph, every other run becomes one
 *            space, so each paragraph is one line; lines longer than
 *            2048 bytes are cut after a space. Zero-width characters and
 *            soft hyphens between two letters are taken out (and
 *            counted): "vi<U+200B>agra" reads "viagra".
 *   rawbody  the same parts and the other text/... and message/... leaves,
 *            transfer encoding undone, charset untouched, each part cut at
 *            500000 bytes.
 *   uris     the URIs of HTML attributes (with the text of each <a>) and
 *            those a mail client would link in the body's text
 *            (spam_uri.h), each once.
 *
 * SpamAssassin's ways kept for the same text: the line end before a
 * boundary stays in a part (but base64); CRLF is LF in text decoded from
 * base64 or quoted-printable and in messages of CRLF lines only; of more
 * than 20 blank lines in a row the first and the last 19 are read.
 *
 * Bounds: body and rawbody at most limits->max_body bytes each (the text
 * beyond is dropped, body_truncated says so, as it does when a part was
 * cut), at most limits->max_uris URIs; the passes are linear in the kept
 * text.
 *
 * Untrusted input: the message's text. Privilege: unprivileged scanners
 * and `postern scan`.
 */
#include "spam.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/hashmap.h"
#include "../lib/xalloc.h"
#include "html_text.h"
#include "scan_message.h"
#include "spam_uri.h"

#define BODY_LINE_MAX 2048      /* SpamAssassin's longest body line */
#define PART_SCAN_MAX 50000      /* its body_part_scan_size: one part's rendered text */
#define RAW_PART_SCAN_MAX 500000 /* its rawbody_part_scan_size: one part's raw text */
#define PART_CUT_SLACK 1024      /* how far past those it looks for a place to cut */
#define BLANK_LINES_MAX 20       /* blank lines in a row it reads */

struct builder {
	struct spam_text *t;
	const struct spam_text_limits *lim;
	hashmap_t seen;  /* uri -> its index + 1 in t->uris */
	size_t uri_cap;
	unsigned zero_width; /* zero-width characters and soft hyphens inside words */
	bool crlf;           /* the message's lines end in CRLF */
};

/* ---- URIs ------------------------------------------------------------------------ */

static void add_uri(struct builder *b, const char *uri, size_t len, bool from_html,
		    const char *anchor, size_t anchor_len)
{
	struct spam_text *t = b->t;
	/* fragments, queries and paths of the same site name no other host */
	if (len <= 1 || uri[0] == '#' || uri[0] == '?' || uri[0] == '&' ||
	    (uri[0] == '/' && uri[1] != '/') || memchr(uri, '\0', len) != NULL)
		return;
	char *key = xstrndup(uri, len);
	size_t at = (size_t)(uintptr_t)hashmap_get(&b->seen, key, NULL);
	if (at != 0) {
		struct spam_uri *u = &t->uris[at - 1];
		u->from_html |= from_html;
		if (u->anchor_text == NULL && anchor != NULL)
			u->anchor_text = xstrndup(anchor, anchor_len);
		free(key);
		return;
	}
	if (t->uri_count >= b->lim->max_uris) {
		free(key);
		return;
	}
	if (t->uri_count == b->uri_cap) {
		b->uri_cap = b->uri_cap != 0 ? b->uri_cap * 2 : 16;
		t->uris = xreallocarray(t->uris, b->uri_cap, sizeof(*t->uris));
	}
	struct spam_uri *u = &t->uris[t->uri_count++];
	u->uri = key;
	u->host = spam_uri_host(uri, len);
	u->anchor_text = anchor != NULL ? xstrndup(anchor, anchor_len) : NULL;
	u->from_html = from_html;
	hashmap_put(&b->seen, key, (void *)(uintptr_t)t->uri_count);
}

static void html_link(void *arg, const char *tag, const char *uri, size_t uri_len,
		      const char *anchor, size_t anchor_len)
{
	(void)tag;
	add_uri(arg, uri, uri_len, true, anchor, anchor_len);
}

static void text_link(void *arg, const char *uri, size_t len)
{
	add_uri(arg, uri, len, false, NULL, 0);
}

static void uris_of_body(struct builder *b)
{
	const buf_t *body = &b->t->body;
	buf_t work = BUF_INIT;
	size_t i = 0;
	while (i < body->len) {
		const char *nl = memchr(body->data + i, '\n', body->len - i);
		size_t end = nl != NULL ? (size_t)(nl - body->data) : body->len;
		spam_uri_scan_line(body->data + i, end - i, &work, text_link, b);
		i = end + 1;
	}
	buf_free(&work);
}

/* ---- the parts ------------------------------------------------------------------- */

static bool ends_in(const char *name, const char *suffix)
{
	size_t n = name != NULL ? strlen(name) : 0, s = strlen(suffix);
	return n >= s && str_eq_nocase(name + n - s, suffix);
}

static bool is_html(const struct scan_part *sp)
{
	return str_eq_nocase(sp->content_type, "text/html") || ends_in(sp->filename, ".htm") ||
	       ends_in(sp->filename, ".html") || ends_in(sp->filename, ".shtml");
}

static const struct scan_part *parent_of(const struct scan_message *m, size_t i)
{
	int parent = m->parts[i].parent;
	/* parts are kept in the order of their index: found at once */
	if (parent >= 0 && (size_t)parent < m->part_count &&
	    (int)m->parts[parent].index == parent)
		return &m->parts[parent];
	for (size_t k = i; k > 0; k--)
		if ((int)m->parts[k - 1].index == m->parts[i].parent)
			return &m->parts[k - 1];
	return NULL;
}

/* Text SpamAssassin reads as plain text: every text/... but HTML, vCards
 * and calendars (it takes a type it does not know, text/enriched or
 * text/rfc822-headers, for text/plain). */
static bool is_plain(const struct scan_part *sp)
{
	const char *t = sp->content_type;
	if (!str_has_prefix_nocase(t, "text") || (t[4] != '\0' && t[4] != '/' && t[4] != ';'))
		return false;
	return !str_eq_nocase(t, "text/html") && !str_eq_nocase(t, "text/x-vcard") &&
	       !str_eq_nocase(t, "text/calendar");
}

/* A leaf in SpamAssassin's sense: not a multipart, not an attached
 * message, not the part of a uuencoded block inside a text part. */
static bool is_leaf(const struct scan_message *m, size_t i)
{
	const struct scan_part *sp = &m->parts[i], *parent = parent_of(m, i);
	return !sp->multipart && !sp->message &&
	       (parent == NULL || parent->multipart || parent->message);
}

/* SpamAssassin keeps the line end before a boundary (which belongs to the
 * boundary) as the last byte of a part's text, unless the text is base64
 * or uuencoded, whose line ends are not text: its paragraphs end there.
 * The body of an attached message ends where the message part does. */
static bool ends_at_boundary(const struct scan_message *m, size_t i)
{
	if (m->parts[i].encoding == MIME_ENC_BASE64 || m->parts[i].encoding == MIME_ENC_UUENCODE)
		return false;
	const struct scan_part *parent = parent_of(m, i);
	for (unsigned hops = 0; parent != NULL && parent->message && hops < m->part_count; hops++)
		parent = parent_of(m, (size_t)(parent - m->parts));
	return parent != NULL && parent->multipart;
}

/* Append s[0..n) with CRLF made LF, within max bytes of out. */
static bool append_lf(buf_t *out, const char *s, size_t n, size_t max)
{
	bool cut = false;
	size_t i = 0;
	buf_reserve(out, n < max ? n : max);
	while (i < n) {
		const char *cr = memchr(s + i, '\r', n - i);
		size_t end = cr != NULL ? (size_t)(cr - s) : n;
		size_t take = end - i;
		if (out->len + take > max) {
			take = max > out->len ? max - out->len : 0;
			cut = true;
		}
		buf_append(out, s + i, take);
		if (cut)
			return true;
		i = end;
		if (cr != NULL) {
			if (i + 1 < n && s[i + 1] == '\n') {
				i++; /* the LF comes next */
				continue;
			}
			if (out->len >= max)
				return true;
			buf_putc(out, '\r');
			i++;
		}
	}
	return false;
}

/* The longest prefix of b within n bytes that cuts no UTF-8 sequence. */
static size_t utf8_prefix(const buf_t *b, size_t n)
{
	if (n >= b->len)
		return b->len;
	while (n > 0 && ((unsigned char)b->data[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* The offset in s[0..n) after its first count characters (UTF-8), or n. */
static size_t char_offset(const char *s, size_t n, size_t count)
{
	size_t i = 0;
	for (; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80 && count-- == 0)
			break;
	return i;
}

/*
 * SpamAssassin's bound of one part's text: past max units (characters of
 * UTF-8 text when chars, bytes otherwise), cut after the first of the
 * bytes in after (in order of preference) that comes within
 * PART_CUT_SLACK units of the bound, else at the bound. True if it cut.
 */
static bool cut_part(buf_t *b, size_t max, const char *after, bool chars)
{
	size_t at_max = chars ? char_offset(b->data, b->len, max) : max;
	if (b->len <= at_max)
		return false;
	max = at_max;
	size_t window = chars ? char_offset(b->data + max, b->len - max, PART_CUT_SLACK + 1)
			      : b->len - max < PART_CUT_SLACK + 1 ? b->len - max : PART_CUT_SLACK + 1;
	for (const char *c = after; *c != '\0'; c++) {
		const char *at = memchr(b->data + max, *c, window);
		if (at != NULL) {
			b->len = (size_t)(at - b->data) + 1;
			b->data[b->len] = '\0';
			return true;
		}
	}
	b->len = utf8_prefix(b, max);
	b->data[b->len] = '\0';
	return true;
}

/* Does the message end its lines in CRLF (its first or last line does)? */
static bool crlf_message(const struct scan_message *m)
{
	const unsigned char *nl = memchr(m->data, '\n', m->len);
	if (nl != NULL && nl > m->data && nl[-1] == '\r')
		return true;
	size_t end = m->len > 0 && m->data[m->len - 1] == '\n' ? m->len - 1 : m->len;
	const unsigned char *prev = end > 0 ? memrchr(m->data, '\n', end) : NULL;
	size_t start = prev != NULL ? (size_t)(prev - m->data) + 1 : 0;
	return end > start && end < m->len && m->data[end - 1] == '\r';
}

static bool blank_line(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
			return false;
	return true;
}

/* SpamAssassin reads a message with at most BLANK_LINES_MAX blank lines
 * in a row: of a longer run it keeps the first and the last ones. Done on
 * out from byte from on, in place. */
static void squeeze_blank_lines(buf_t *out, size_t from)
{
	size_t r = from, w = from, run_start = 0, run_lines = 0;
	while (r < out->len) {
		const char *nl = memchr(out->data + r, '\n', out->len - r);
		size_t end = nl != NULL ? (size_t)(nl - out->data) + 1 : out->len;
		bool blank = nl != NULL && blank_line(out->data + r, end - r - 1);
		if (blank) {
			if (run_lines == 0)
				run_start = w;
			run_lines++;
			if (run_lines > BLANK_LINES_MAX) {
				/* keep the run's first line and its last ones: drop the
				 * second of those kept so far */
				const char *second = memchr(out->data + run_start, '\n', w - run_start);
				size_t at = (size_t)(second - out->data) + 1;
				const char *third = memchr(out->data + at, '\n', w - at);
				size_t drop = (size_t)(third - out->data) + 1 - at;
				memmove(out->data + at, out->data + at + drop, w - at - drop);
				w -= drop;
				run_lines--;
			}
		} else {
			run_lines = 0;
		}
		memmove(out->data + w, out->data + r, end - r);
		w += end - r;
		r = end;
	}
	out->len = w;
	if (out->data != NULL)
		out->data[w] = '\0';
}

/* A part's text with CRLF made LF where SpamAssassin does: text decoded
 * from base64 or quoted-printable, and any text of a message whose lines
 * end in CRLF (a CR in a message of LF lines stays, as white space); and
 * long runs of blank lines squeezed as it does, but in base64. */
static void part_text(const struct builder *b, const struct scan_part *sp, const char *s,
		      size_t n, size_t max, buf_t *out)
{
	size_t from = out->len;
	if (b->crlf || sp->encoding == MIME_ENC_BASE64 || sp->encoding == MIME_ENC_QP)
		append_lf(out, s, n, max);
	else
		buf_append(out, s, n < max ? n : max);
	if (sp->encoding != MIME_ENC_BASE64 && sp->encoding != MIME_ENC_UUENCODE)
		squeeze_blank_lines(out, from);
}

static void rawbody_part(struct builder *b, const struct scan_part *sp, bool boundary)
{
	buf_t *raw = &b->t->rawbody;
	size_t max = b->lim->max_body;
	if (sp->text.len == 0 && !boundary)
		return;
	buf_t part = BUF_INIT;
	part_text(b, sp, buf_cstr(&sp->text), sp->text.len, RAW_PART_SCAN_MAX + PART_CUT_SLACK + 1,
		  &part);
	if (boundary)
		buf_putc(&part, '\n');
	bool cut = cut_part(&part, RAW_PART_SCAN_MAX, "\n> ", false);
	size_t room = max > raw->len ? max - raw->len : 0;
	if (cut || part.len > room)
		b->t->body_truncated = true;
	buf_append(raw, buf_cstr(&part), part.len <= room ? part.len : room);
	buf_free(&part);
	if (raw->len > 0 && raw->data[raw->len - 1] != '\n') {
		if (raw->len < max)
			buf_putc(raw, '\n');
		else
			raw->data[raw->len - 1] = '\n';
	}
}

/* U+201C and U+201D made '"' in HTML source, as SpamAssassin does before
 * reading it (so that they also end attribute values). */
static void straight_quotes(buf_t *b)
{
	size_t o = 0;
	for (size_t i = 0; i < b->len; i++) {
		if (i + 2 < b->len && (unsigned char)b->data[i] == 0xE2 &&
		    (unsigned char)b->data[i + 1] == 0x80 &&
		    ((unsigned char)b->data[i + 2] == 0x9C || (unsigned char)b->data[i + 2] == 0x9D)) {
			b->data[o++] = '"';
			i += 2;
			continue;
		}
		b->data[o++] = b->data[i];
	}
	b->len = o;
	if (b->data != NULL)
		b->data[o] = '\0';
}

/* One part's text for the body, into joined (within max bytes). */
static void body_part(struct builder *b, const struct scan_part *sp, bool html, bool boundary,
		      buf_t *joined, size_t max)
{
	struct spam_html_facts *f = &b->t->html;
	if (html)
		f->html_parts++;
	else
		f->text_parts++;
	if (sp->text.len == 0 && !boundary)
		return;
	buf_t utf8 = BUF_INIT, lf = BUF_INIT, part = BUF_INIT;
	mime_text_to_utf8(sp->charset, buf_cstr(&sp->text), sp->text.len, &utf8);
	part_text(b, sp, buf_cstr(&utf8), utf8.len, SIZE_MAX, &lf);
	if (boundary)
		buf_putc(&lf, '\n');
	buf_free(&utf8);
	/* enough to find where SpamAssassin would cut the part (characters) */
	size_t want = 4 * (PART_SCAN_MAX + PART_CUT_SLACK + 1);
	if (html) {
		straight_quotes(&lf);
		struct html_stats st;
		struct html_link_handler h = { html_link, b };
		html_render(buf_cstr(&lf), lf.len, want, &h, &part, &st);
		f->html_text_bytes += st.visible_bytes;
		f->invisible_text_bytes += st.invisible_bytes;
		f->images += st.images;
		f->image_area += (size_t)st.image_area;
		f->tags += st.tags;
		f->split_words += st.split_words;
	} else {
		buf_append(&part, buf_cstr(&lf), lf.len < want ? lf.len : want);
	}
	buf_free(&lf);
	size_t room = max > joined->len ? max - joined->len : 0;
	if (cut_part(&part, PART_SCAN_MAX, "\n ", true) || part.len > room)
		b->t->body_truncated = true;
	size_t n = utf8_prefix(&part, room);
	buf_append(joined, buf_cstr(&part), n);
	buf_free(&part);
}

/* ---- paragraphs ------------------------------------------------------------------ */

/* The bytes of a white space character at s[i] (Perl's \s on Unicode
 * text: ASCII white space, U+0085, U+00A0, U+1680, U+2000-U+200A,
 * U+2028, U+2029, U+202F, U+205F, U+3000), 0 if there is none. */
static size_t space_at(const unsigned char *s, size_t n, size_t i)
{
	unsigned char c = s[i];
	if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
		return 1;
	if (c == 0xC2 && i + 1 < n && (s[i + 1] == 0x85 || s[i + 1] == 0xA0))
		return 2;
	if (i + 2 >= n)
		return 0;
	if (c == 0xE1 && s[i + 1] == 0x9A && s[i + 2] == 0x80)
		return 3;
	if (c == 0xE2 && s[i + 1] == 0x80 &&
	    (s[i + 2] <= 0x8A || s[i + 2] == 0xA8 || s[i + 2] == 0xA9 || s[i + 2] == 0xAF))
		return s[i + 2] >= 0x80 ? 3 : 0;
	if (c == 0xE2 && s[i + 1] == 0x81 && s[i + 2] == 0x9F)
		return 3;
	if (c == 0xE3 && s[i + 1] == 0x80 && s[i + 2] == 0x80)
		return 3;
	return 0;
}

/* The bytes of a character that shows nothing inside a word (U+200B-D,
 * U+2060, U+FEFF, the soft hyphen U+00AD), 0 if there is none. */
static size_t zero_width_at(const unsigned char *s, size_t n, size_t i)
{
	if (s[i] == 0xC2 && i + 1 < n && s[i + 1] == 0xAD)
		return 2;
	if (i + 2 >= n)
		return 0;
	if (s[i] == 0xE2 && s[i + 1] == 0x80 && s[i + 2] >= 0x8B && s[i + 2] <= 0x8D)
		return 3;
	if (s[i] == 0xE2 && s[i + 1] == 0x81 && s[i + 2] == 0xA0)
		return 3;
	if (s[i] == 0xEF && s[i + 1] == 0xBB && s[i + 2] == 0xBF)
		return 3;
	return 0;
}

/* Can a white space or zero-width character, or a NUL, start with c? */
static bool maybe_special(unsigned char c)
{
	switch (c) {
	case ' ': case '\t': case '\n': case '\r': case '\f': case '\v': case '\0':
	case 0xC2: case 0xE1: case 0xE2: case 0xE3: case 0xEF:
		return true;
	default:
		return false;
	}
}

static bool is_alnum_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * joined -> one line per paragraph, appended to out: a white space run
 * with two line breaks or more becomes a line break (with a space before
 * it if the run had white space before its first line break, and after
 * it likewise), any other run one space; as SpamAssassin's
 * s/\n+\s*\n+/\0/g; s/\s+/ /g. NUL bytes become U+FFFD, zero-width
 * characters between two letters go.
 */
static void paragraphs(struct builder *b, const buf_t *joined, buf_t *out)
{
	const unsigned char *s = (const unsigned char *)joined->data;
	size_t n = joined->len, i = 0;
	buf_reserve(out, n + 1);
	while (i < n) {
		size_t w = space_at(s, n, i);
		if (w > 0) {
			size_t first_nl = SIZE_MAX, last_nl = 0, newlines = 0, j = i;
			while (j < n && (w = space_at(s, n, j)) > 0) {
				if (s[j] == '\n') {
					if (first_nl == SIZE_MAX)
						first_nl = j;
					last_nl = j;
					newlines++;
				}
				j += w;
			}
			if (newlines >= 2) {
				if (first_nl > i)
					buf_putc(out, ' ');
				buf_putc(out, '\n');
				if (last_nl + 1 < j)
					buf_putc(out, ' ');
			} else {
				buf_putc(out, ' ');
			}
			i = j;
			continue;
		}
		size_t z = zero_width_at(s, n, i);
		if (z > 0 && i > 0 && i + z < n && is_alnum_byte(s[i - 1]) && is_alnum_byte(s[i + z])) {
			b->zero_width++;
			i += z;
			continue;
		}
		if (s[i] == '\0') {
			buf_puts(out, "\xEF\xBF\xBD");
			i++;
			continue;
		}
		/* the bytes up to the next one that may start white space, a
		 * zero-width character or a NUL, in one go */
		size_t run = i + 1;
		while (run < n && !maybe_special(s[run]))
			run++;
		buf_append(out, s + i, run - i);
		i = run;
	}
}

/* Append to body within max; false when it did not all fit. */
static bool body_append(buf_t *body, const char *s, size_t n, size_t max)
{
	if (body->len + n <= max) {
		buf_append(body, s, n);
		return true;
	}
	size_t take = max > body->len ? max - body->len : 0;
	while (take > 0 && ((unsigned char)s[take] & 0xC0) == 0x80)
		take--;
	buf_append(body, s, take);
	return false;
}

/* The lines of text into the body, each longer than BODY_LINE_MAX bytes
 * (its line end counted) cut after its last space within the bound (or
 * at the bound if it has none), each ending in '\n'. */
static void body_lines(struct builder *b, const char *s, size_t n)
{
	buf_t *body = &b->t->body;
	if (b->lim->max_body == 0) {
		b->t->body_truncated = true;
		return;
	}
	size_t max = b->lim->max_body - 1; /* the last line end always fits */
	size_t i = 0;
	bool full = false;
	while (i < n && !full) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t end = nl != NULL ? (size_t)(nl - s) + 1 : n;
		while (end - i > BODY_LINE_MAX && !full) {
			const char *sp = memrchr(s + i, ' ', BODY_LINE_MAX + 1);
			size_t piece = sp != NULL ? (size_t)(sp - (s + i)) + 1 : BODY_LINE_MAX;
			while (sp == NULL && piece > 1 && ((unsigned char)s[i + piece] & 0xC0) == 0x80)
				piece--;
			full = !body_append(body, s + i, piece, max) || !body_append(body, "\n", 1, max);
			i += piece;
		}
		full = full || !body_append(body, s + i, end - i, max);
		i = end;
	}
	if (full)
		b->t->body_truncated = true;
	if (body->len == 0 || body->data[body->len - 1] != '\n')
		buf_putc(body, '\n');
}

/* The value of the last Subject field of the message's header section
 * as written (folded), or false. */
static bool raw_subject(const struct scan_message *m, buf_t *value)
{
	const char *s = (const char *)m->data, *end = s + m->len;
	bool found = false, in_subject = false, first = true;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *line_end = nl != NULL ? nl : end;
		size_t len = (size_t)(line_end - s);
		if (len > 0 && s[len - 1] == '\r')
			len--;
		if (first && len >= 5 && memcmp(s, "From ", 5) == 0) {
			/* an mbox separator */
		} else if (len == 0) {
			break;
		} else if (s[0] == ' ' || s[0] == '\t') {
			if (in_subject) {
				buf_putc(value, '\n');
				buf_append(value, s, len);
			}
		} else {
			const char *colon = memchr(s, ':', len);
			size_t name = colon != NULL ? (size_t)(colon - s) : 0;
			while (name > 0 && (s[name - 1] == ' ' || s[name - 1] == '\t'))
				name--;
			in_subject = name == 7 && strncasecmp(s, "Subject", 7) == 0;
			if (in_subject) {
				found = true;
				buf_reset(value);
				buf_append(value, colon + 1, len - (size_t)(colon + 1 - s));
			}
		}
		first = false;
		s = nl != NULL ? nl + 1 : end;
	}
	return found;
}

/* The Subject line, as SpamAssassin reads it: the last Subject field,
 * each line end with the white space after it made one space, white space
 * at its ends dropped, RFC 2047 words decoded, in UTF-8; then '\n'. */
static void subject_line(const struct scan_message *m, buf_t *out)
{
	buf_t raw = BUF_INIT, unfolded = BUF_INIT, decoded = BUF_INIT;
	if (raw_subject(m, &raw)) {
		for (size_t k = 0; k < raw.len; k++) {
			char c = raw.data[k];
			if (c == '\n') {
				while (k + 1 < raw.len && (raw.data[k + 1] == ' ' || raw.data[k + 1] == '\t'))
					k++;
				c = ' ';
			}
			buf_putc(&unfolded, c == '\0' ? ' ' : c);
		}
		size_t a = 0, z = unfolded.len;
		while (a < z && (unfolded.data[a] == ' ' || unfolded.data[a] == '\t'))
			a++;
		while (z > a && (unfolded.data[z - 1] == ' ' || unfolded.data[z - 1] == '\t'))
			z--;
		mime_decode_words(buf_cstr(&unfolded) + a, z - a, &decoded);
		mime_text_to_utf8(NULL, buf_cstr(&decoded), decoded.len, out);
		for (size_t k = 0; k < out->len; k++)
			if (out->data[k] == '\n' || out->data[k] == '\r')
				out->data[k] = ' ';
	}
	buf_free(&raw);
	buf_free(&unfolded);
	buf_free(&decoded);
	buf_putc(out, '\n');
}

/* ---- the whole ------------------------------------------------------------------- */

void spam_text_build(const struct scan_message *m, const struct spam_text_limits *limits,
		     struct spam_text *t)
{
	memset(t, 0, sizeof(*t));
	t->msg = m;
	struct builder b = { .t = t, .lim = limits, .seen = HASHMAP_INIT, .crlf = crlf_message(m) };
	buf_t joined = BUF_INIT, text = BUF_INIT;
	subject_line(m, &text);
	for (size_t i = 0; i < m->part_count; i++) {
		const struct scan_part *sp = &m->parts[i];
		if (!is_leaf(m, i))
			continue;
		if (sp->text_truncated)
			t->body_truncated = true;
		if (joined.len > 0 && joined.len < limits->max_body)
			buf_putc(&joined, '\n');
		bool boundary = ends_at_boundary(m, i);
		bool html = is_html(sp);
		if (html || is_plain(sp))
			body_part(&b, sp, html, boundary, &joined, limits->max_body);
		rawbody_part(&b, sp, boundary);
	}
	paragraphs(&b, &joined, &text);
	buf_free(&joined);
	body_lines(&b, text.data, text.len);
	buf_free(&text);
	t->html.has_obfuscated_words =
		b.zero_width >= 2 ||
		(t->html.split_words >= 3 && t->html.split_words * 20 >= t->html.tags);
	uris_of_body(&b);
	hashmap_free(&b.seen, NULL);
}

void spam_text_free(struct spam_text *t)
{
	buf_free(&t->body);
	buf_free(&t->rawbody);
	for (size_t i = 0; i < t->uri_count; i++) {
		free(t->uris[i].uri);
		free(t->uris[i].host);
		free(t->uris[i].anchor_text);
	}
	xfree(&t->uris);
	memset(t, 0, sizeof(*t));
}
