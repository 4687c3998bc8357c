/*
 * html_text.c - the spam tests' HTML renderer (see html_text.h): one pass
 * over the markup, text collapsed chunk by chunk (a chunk is the text
 * between two pieces of markup), a bounded stack of text styles for
 * telling hidden text, and the URIs of attributes. The styles and
 * attributes it reads are in html_style.c.
 *
 * Untrusted input: the text of HTML parts (UTF-8). Privilege:
 * unprivileged scanners and `postern scan`.
 */
#include "html_internal.h"

#include <string.h>
#include <strings.h>

#include "../lib/compat.h"

#define NPOS ((size_t)-1)

/* ---- the output: chunks of text and of white space ------------------------------ */

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A byte of a word: not white space, not ASCII punctuation (SpamAssassin's
 * test for words split by tags). */
static bool is_word_byte(unsigned char c)
{
	return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
	       (c >= 'a' && c <= 'z');
}

/* Append to the rendered text within max_out, never cutting a UTF-8
 * sequence. */
static void put_out(struct html_renderer *r, const char *s, size_t n)
{
	size_t room = r->max_out > r->out->len ? r->max_out - r->out->len : 0;
	if (n > room) {
		r->st->truncated = true;
		n = room;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	buf_append(r->out, s, n);
}

void html_put_space(struct html_renderer *r, const char *ws)
{
	/* the visible text before loses its trailing space */
	if (r->last == CHUNK_TEXT && !r->last_hidden && r->out->len > r->last_start &&
	    r->out->data[r->out->len - 1] == ' ') {
		r->out->len--;
		r->out->data[r->out->len] = '\0';
	}
	r->last_start = r->out->len;
	put_out(r, ws, strlen(ws));
	r->last = CHUNK_SPACE;
	r->last_hidden = false;
	r->last_word = false;
}

static void add_anchor_text(struct html_renderer *r, const char *s, size_t n)
{
	if (n > 0 && s[0] == ' ' && (r->anchor.len == 0 || r->anchor.data[r->anchor.len - 1] == ' ')) {
		s++;
		n--;
	}
	size_t room = HTML_ANCHOR_TEXT_MAX > r->anchor.len ? HTML_ANCHOR_TEXT_MAX - r->anchor.len : 0;
	if (n > room) {
		n = room;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	buf_append(&r->anchor, s, n);
}

/* The text s[0..len) between two pieces of markup: references decoded
 * (unless literal), white space (and U+00A0) collapsed to one space, then
 * shown. */
static void put_text(struct html_renderer *r, const char *s, size_t len, bool literal)
{
	if (len == 0)
		return;
	buf_t *c = &r->chunk;
	buf_reset(c);
	bool space = false, content = false;
	size_t i = 0;
	while (i < len) {
		unsigned char b = (unsigned char)s[i];
		char utf8[4];
		const char *piece = s + i;
		size_t n = 1, used = 1;
		if (b == '&' && !literal) {
			size_t got = html_entity_decode(s + i, len - i, false, utf8, &n);
			if (got > 0) {
				piece = utf8;
				used = got;
			} else {
				n = 1;
			}
		}
		i += used;
		if ((n == 1 && is_space((unsigned char)piece[0])) ||
		    (n == 2 && (unsigned char)piece[0] == 0xC2 && (unsigned char)piece[1] == 0xA0)) {
			space = true;
			continue;
		}
		if (space)
			buf_putc(c, ' ');
		space = false;
		content = true;
		buf_append(c, piece, n);
	}
	if (space)
		buf_putc(c, ' ');
	bool hidden = content && html_style_hidden(r);
	bool hidden_sa = content && html_style_hidden_sa(r);
	if (content && is_word_byte((unsigned char)c->data[0]) && r->last_word)
		r->st->split_words++;
	const char *t = c->data;
	size_t n = c->len;
	if (r->last == CHUNK_SPACE && !hidden_sa && n > 0 && t[0] == ' ') {
		t++;
		n--;
	}
	r->last_start = r->out->len;
	put_out(r, t, n);
	r->last = CHUNK_TEXT;
	r->last_hidden = hidden_sa;
	r->last_word = n > 0 && is_word_byte((unsigned char)t[n - 1]);
	if (hidden) {
		for (size_t k = 0; k < n; k++)
			r->st->invisible_bytes += t[k] != ' ';
	} else {
		r->st->visible_bytes += n;
	}
	if (r->in_a)
		add_anchor_text(r, t, n);
}

/* ---- finding things ahead, in amortised linear time --------------------------- */

/* The next needle (one of AHEAD_*) at or after from, or NPOS; the queries
 * for one needle come with from never decreasing, so the answer of the
 * last search is reused (and "none" stays none). */
static size_t next_of(struct html_renderer *r, int which, const char *needle, size_t from)
{
	struct html_ahead *a = &r->ahead[which];
	if (a->none)
		return NPOS;
	if (a->valid && a->pos >= from && a->from <= from)
		return a->pos;
	size_t n = strlen(needle);
	const char *p = from < r->len ? (n == 1 ? memchr(r->s + from, needle[0], r->len - from)
						: memmem(r->s + from, r->len - from, needle, n))
				      : NULL;
	if (p == NULL) {
		a->none = true;
		return NPOS;
	}
	a->valid = true;
	a->from = from;
	a->pos = (size_t)(p - r->s);
	return a->pos;
}

static bool is_name_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == ':' || c == '-' || c == '_' || c == '.';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The end of the text of an element whose content is not markup
 * (<script>, <style>, <xmp>, ...): the '<' of its end tag, or the end of
 * the input. */
static size_t raw_text_end(const struct html_renderer *r, size_t from, const char *name)
{
	size_t nlen = strlen(name);
	size_t i = from;
	while (i < r->len) {
		const char *lt = memchr(r->s + i, '<', r->len - i);
		if (lt == NULL)
			break;
		i = (size_t)(lt - r->s);
		if (i + 2 + nlen <= r->len && r->s[i + 1] == '/' &&
		    strncasecmp(r->s + i + 2, name, nlen) == 0 &&
		    (i + 2 + nlen == r->len || !is_name_byte((unsigned char)r->s[i + 2 + nlen])))
			return i;
		i++;
	}
	return r->len;
}

/* After the start tag of an element whose content is not markup: its
 * text (the text of a script or style is not shown; that of a title or
 * textarea has its references decoded; a plaintext runs to the end), and
 * where reading goes on. */
static size_t literal_text(struct html_renderer *r, const char *name, size_t i)
{
	static const char *const shown[] = { "xmp", "iframe", "textarea", "title" };
	if (strcmp(name, "script") == 0 || strcmp(name, "style") == 0)
		return raw_text_end(r, i, name);
	if (strcmp(name, "plaintext") == 0) {
		put_text(r, r->s + i, r->len - i, true);
		return r->len;
	}
	for (size_t k = 0; k < ARRAY_LEN(shown); k++) {
		if (strcmp(name, shown[k]) != 0)
			continue;
		size_t end = raw_text_end(r, i, name);
		put_text(r, r->s + i, end - i, k < 2);
		return end;
	}
	return i;
}

/* ---- tags ------------------------------------------------------------------ */

static void add_attribute(struct html_renderer *r, const char *name, size_t name_len,
			  const char *value, size_t value_len)
{
	if (r->nattrs == HTML_ATTR_MAX)
		return;
	struct html_attr *a = &r->attrs[r->nattrs++];
	size_t n = name_len < sizeof(a->name) - 1 ? name_len : sizeof(a->name) - 1;
	for (size_t k = 0; k < n; k++)
		a->name[k] = lower(name[k]);
	a->name[n] = '\0';
	a->off = r->values.len;
	if (value != NULL)
		html_decode_entities(value, value_len, true, &r->values);
	a->len = r->values.len - a->off;
	buf_putc(&r->values, '\0');
}

static bool is_tag_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '/';
}

/*
 * The attributes of a start tag from i on; the tag's '>' was found at
 * *end (a quoted value may move it further). Returns the position after
 * the tag.
 */
static size_t read_attributes(struct html_renderer *r, size_t i, size_t end)
{
	const char *s = r->s;
	while (i < end) {
		while (i < end && is_tag_space(s[i]))
			i++;
		if (i >= end)
			break;
		size_t name = i;
		while (i < end && !is_tag_space(s[i]) && s[i] != '=')
			i++;
		if (i < end && s[i] == '/' && i > name) /* "x/href": a slash inside the name */
			while (i < end && !is_space((unsigned char)s[i]) && s[i] != '=')
				i++;
		size_t name_len = i - name;
		size_t j = i;
		while (j < end && is_space((unsigned char)s[j]))
			j++;
		if (j >= end || s[j] != '=' || name_len == 0) {
			if (name_len > 0)
				add_attribute(r, s + name, name_len, NULL, 0);
			else
				i++; /* a stray '=' */
			continue;
		}
		j++;
		while (j < end && is_space((unsigned char)s[j]))
			j++;
		if (j < end && (s[j] == '"' || s[j] == '\'')) {
			bool dq = s[j] == '"';
			size_t close = next_of(r, dq ? AHEAD_DQUOTE : AHEAD_SQUOTE, dq ? "\"" : "'", j + 1);
			if (close != NPOS) {
				add_attribute(r, s + name, name_len, s + j + 1, close - j - 1);
				i = close + 1;
				if (i > end) { /* the '>' was inside the value */
					size_t gt = next_of(r, AHEAD_GT, ">", i);
					end = gt != NPOS ? gt : r->len;
				}
				continue;
			}
			/* a quote never closed is an ordinary character */
		}
		size_t v = j;
		while (j < end && !is_space((unsigned char)s[j]))
			j++;
		add_attribute(r, s + name, name_len, s + v, j - v);
		i = j;
	}
	return end < r->len ? end + 1 : r->len;
}

const char *html_attr(const struct html_renderer *r, const char *name, size_t *len_r)
{
	for (size_t k = 0; k < r->nattrs; k++)
		if (strcmp(r->attrs[k].name, name) == 0) {
			if (len_r != NULL)
				*len_r = r->attrs[k].len;
			return r->values.data + r->attrs[k].off;
		}
	return NULL;
}

/* What a piece of markup is. */
enum markup { MARKUP_NONE, MARKUP_IGNORED, MARKUP_CDATA, MARKUP_START, MARKUP_END };

struct markup_read {
	enum markup kind;
	size_t end;                  /* the position after it */
	size_t text, text_len;       /* CDATA: its text */
	char name[HTML_TAG_NAME_MAX + 1]; /* tags: the element, lower case ("" if unknown) */
};

/* A tag at i ('<' then a letter, or "</" then a letter), its attributes
 * into r->attrs. One that never ends takes the rest of the input, as in
 * browsers. */
static void read_tag(struct html_renderer *r, size_t i, struct markup_read *m)
{
	size_t gt = next_of(r, AHEAD_GT, ">", i);
	if (gt == NPOS) {
		m->kind = MARKUP_IGNORED;
		m->end = r->len;
		return;
	}
	bool end_tag = r->s[i + 1] == '/';
	size_t p = i + (end_tag ? 2 : 1);
	size_t n = 0;
	while (p < gt && is_name_byte((unsigned char)r->s[p])) {
		if (n < HTML_TAG_NAME_MAX)
			m->name[n] = lower(r->s[p]);
		n++;
		p++;
	}
	if (n > HTML_TAG_NAME_MAX)
		n = 0; /* no element we know has such a name */
	m->name[n] = '\0';
	r->nattrs = 0;
	buf_reset(&r->values);
	m->kind = end_tag ? MARKUP_END : MARKUP_START;
	m->end = end_tag ? gt + 1 : read_attributes(r, p, gt);
}

/* The markup at i ('<'): false when the '<' is text. */
static bool read_markup(struct html_renderer *r, size_t i, struct markup_read *m)
{
	const char *s = r->s;
	size_t left = r->len - i;
	unsigned char c1 = left > 1 ? (unsigned char)s[i + 1] : 0;
	if (left >= 4 && memcmp(s + i, "<!--", 4) == 0) {
		/* one that never ends with "-->" ends at the first '>' */
		size_t e = next_of(r, AHEAD_COMMENT_END, "-->", i + 4);
		size_t gt = e == NPOS ? next_of(r, AHEAD_GT, ">", i + 4) : NPOS;
		m->kind = MARKUP_IGNORED;
		m->end = e != NPOS ? e + 3 : gt != NPOS ? gt + 1 : r->len;
		return true;
	}
	if (left >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
		size_t e = next_of(r, AHEAD_CDATA_END, "]]>", i + 9);
		m->kind = MARKUP_CDATA;
		m->text = i + 9;
		m->text_len = (e != NPOS ? e : r->len) - m->text;
		m->end = e != NPOS ? e + 3 : r->len;
		return true;
	}
	unsigned char c = c1 == '/' && left > 2 ? (unsigned char)s[i + 2] : c1;
	bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
	/* "<!...>", "<?...>" and "</" without a name up to '>' are nothing */
	if (c1 == '!' || c1 == '?' || (c1 == '/' && !letter)) {
		size_t gt = next_of(r, AHEAD_GT, ">", i);
		m->kind = MARKUP_IGNORED;
		m->end = gt != NPOS ? gt + 1 : r->len;
		return true;
	}
	if (!letter)
		return false;
	read_tag(r, i, m);
	return true;
}

void html_render(const char *html, size_t len, size_t max_out,
		 const struct html_link_handler *handler, buf_t *out, struct html_stats *st)
{
	struct html_renderer r;
	memset(&r, 0, sizeof(r));
	memset(st, 0, sizeof(*st));
	r.s = html;
	r.len = len;
	r.out = out;
	r.max_out = max_out < SIZE_MAX - out->len ? out->len + max_out : SIZE_MAX;
	r.handler = handler;
	r.st = st;
	html_style_init(&r);
	size_t text = 0, i = 0;
	while (i < len) {
		const char *lt = memchr(html + i, '<', len - i);
		if (lt == NULL)
			break;
		i = (size_t)(lt - html);
		struct markup_read m;
		if (!read_markup(&r, i, &m)) {
			/* a '<' that starts no markup starts a new chunk of text, as
			 * in the parser SpamAssassin uses */
			put_text(&r, html + text, i - text, false);
			text = i++;
			continue;
		}
		put_text(&r, html + text, i - text, false);
		text = i = m.end;
		if (m.kind == MARKUP_CDATA) {
			put_text(&r, html + m.text, m.text_len, false);
		} else if (m.kind == MARKUP_START || m.kind == MARKUP_END) {
			st->tags++;
			if (m.kind == MARKUP_END) {
				html_end_tag(&r, m.name);
			} else {
				html_start_tag(&r, m.name);
				text = i = literal_text(&r, m.name, i);
			}
		}
	}
	put_text(&r, html + text, len - text, false);
	html_links_finish(&r);
	buf_free(&r.chunk);
	buf_free(&r.values);
	buf_free(&r.anchor);
	buf_free(&r.href);
	buf_free(&r.base);
}
