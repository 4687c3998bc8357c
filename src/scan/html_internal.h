/*
 * html_internal.h - what the files of the HTML renderer share
 * (html_text.c reads the markup and writes the text, html_style.c acts
 * on tags: text styles and line breaks; html_links.c: URIs, anchors,
 * images). Nothing outside them uses it.
 *
 * Untrusted input: the text of HTML parts. Privilege: unprivileged
 * scanners and `postern scan`.
 */
#ifndef POSTERN_SCAN_HTML_INTERNAL_H
#define POSTERN_SCAN_HTML_INTERNAL_H

#include "html_text.h"

#define HTML_ATTR_MAX 32      /* attributes of one tag read; the others are ignored */
#define HTML_TAG_NAME_MAX 15  /* longer names are no element we act on */

enum html_chunk { CHUNK_NONE, CHUNK_TEXT, CHUNK_SPACE };

/* The next '>', '"', '\'', "-->" or "]]>" ahead, found once (html_text.c). */
enum { AHEAD_GT, AHEAD_DQUOTE, AHEAD_SQUOTE, AHEAD_COMMENT_END, AHEAD_CDATA_END, AHEAD_COUNT };
struct html_ahead {
	size_t from, pos;
	bool valid, none;
};

struct html_attr {
	char name[24];   /* lower case, cut */
	size_t off, len; /* the value (references decoded) in values */
};

/* What text looks like. */
struct html_look {
	int32_t fg, bg; /* 0xRRGGBB */
	int size;       /* <font size>: 3 is the default */
	bool hidden;    /* display:none, visibility:hidden, tiny... */
};

/* A text style: what an element (and those inside it) looks like, to a
 * reader (look) and as SpamAssassin reckons it (sa: the attributes it
 * reads, which leave out bgcolor; it decides where white space is
 * trimmed, so that the text has SpamAssassin's spaces). */
struct html_style {
	char tag[HTML_TAG_NAME_MAX + 1]; /* the element that set it */
	struct html_look look, sa;
};

struct html_renderer {
	const char *s;
	size_t len;
	buf_t *out;
	size_t max_out;
	const struct html_link_handler *handler;
	struct html_stats *st;
	/* the last chunk written */
	enum html_chunk last;
	bool last_hidden, last_word;
	size_t last_start;
	struct html_ahead ahead[AHEAD_COUNT];
	/* the tag being read */
	struct html_attr attrs[HTML_ATTR_MAX];
	size_t nattrs;
	buf_t values;
	buf_t chunk; /* text being collapsed */
	/* styles: styles[0] is the document's */
	struct html_style styles[HTML_STYLE_DEPTH];
	size_t depth;
	int basefont;
	/* the <a> open, its href and text */
	bool in_a;
	buf_t href, anchor;
	buf_t base; /* <base href>, ending in '/', or empty */
};

/* html_text.c */
/* Show white space made by an element ("\n", "\n\n", " "). */
void html_put_space(struct html_renderer *r, const char *ws);
/* The value of the tag's attribute name (lower case), or NULL. */
const char *html_attr(const struct html_renderer *r, const char *name, size_t *len_r);

/* html_style.c */
void html_style_init(struct html_renderer *r);
/* Is text in the current style hidden from a reader? As SpamAssassin
 * reckons it? */
bool html_style_hidden(const struct html_renderer *r);
bool html_style_hidden_sa(const struct html_renderer *r);
/* A start or end tag (name lower case, "" for a name we do not know). */
void html_start_tag(struct html_renderer *r, const char *name);
void html_end_tag(struct html_renderer *r, const char *name);
/* html_links.c */
/* The URIs and images of a start tag (its attributes read). */
void html_tag_links(struct html_renderer *r, const char *name);
/* An <a> ends (or the document): an <a> still open gives its URI. */
void html_links_finish(struct html_renderer *r);

#endif
