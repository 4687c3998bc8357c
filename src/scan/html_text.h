/*
 * html_text.h - HTML reduced to the text a reader sees, for the spam tests
 * (spam_text.c): the renderer SpamAssassin's body rules were written for,
 * rebuilt from how it behaves. Tags are dropped; <script>, <style>,
 * comments, declarations and processing instructions give no text;
 * character references are decoded (html_entities.c); white space in
 * text collapses to single spaces; <br> and <div> make a line break,
 * <p>, <hr>, <blockquote>, <pre>, <title> (and a few old ones) a
 * paragraph break, <li>, <td>, <th>, <dt>, <dd>, <h1>-<h6> a space, at
 * their start and at their end. Tags HTML does not define give nothing.
 * The caller joins the lines into paragraphs (spam_text.c).
 *
 * On the side: the URIs of attributes (a/area/link href, img/frame/
 * iframe/embed/script/bgsound src, form action, body/table/td background,
 * base href, meta refresh), resolved against <base href>, with the text
 * of each <a>; and facts the eval tests read: text hidden by colour
 * (the same as, or too close to, its background), display:none,
 * visibility:hidden, opacity:0, the hidden attribute or a tiny font
 * (<font size=0>, CSS font-size under 3px or 3pt); <img> tags and their
 * declared area; words split by tags ("V<b></b>iagra").
 *
 * Any input is HTML: unterminated tags, comments and quotes, tags inside
 * attribute values, NUL bytes. One pass, linear in the input (a tag ends
 * at the first '>' outside a quoted value; a quote that is never closed
 * is read as a plain character); memory linear in the output; the style
 * stack is bounded (HTML_STYLE_DEPTH).
 *
 * Untrusted input: the text of HTML parts, already converted to UTF-8.
 * Privilege: unprivileged scanners and `postern scan`.
 */
#ifndef POSTERN_SCAN_HTML_TEXT_H
#define POSTERN_SCAN_HTML_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

#define HTML_STYLE_DEPTH 64     /* nested styled elements followed */
#define HTML_ANCHOR_TEXT_MAX 256 /* bytes of an <a>'s text kept */
#define HTML_URI_MAX 8192        /* bytes of an attribute's URI kept */

struct html_stats {
	size_t visible_bytes;    /* bytes of text shown (white space collapsed) */
	size_t invisible_bytes;  /* bytes of text hidden, white space not counted */
	unsigned tags;           /* start and end tags */
	unsigned split_words;    /* a tag between two letters of a word */
	unsigned images;         /* <img> tags */
	uint64_t image_area;     /* width x height declared (percentages of 800x600) */
	bool truncated;          /* the text reached max_out and was cut */
};

struct html_link_handler {
	/* A URI from an attribute: tag names the element ("a", "img", ...);
	 * uri has its references decoded and white space trimmed (at most
	 * HTML_URI_MAX bytes); for "a", anchor is its text (white space
	 * collapsed, at most HTML_ANCHOR_TEXT_MAX bytes), otherwise NULL.
	 * Neither is NUL-terminated. */
	void (*link)(void *arg, const char *tag, const char *uri, size_t uri_len,
		     const char *anchor, size_t anchor_len);
	void *arg;
};

/*
 * Render html[0..len) (UTF-8) and append its text to out, at most
 * max_out bytes (then st->truncated; the URIs are still read). Line
 * breaks are '\n'; a paragraph break is "\n\n". Text that is hidden is
 * rendered too (SpamAssassin's body rules see it) and counted in
 * st->invisible_bytes. handler may be NULL. st is filled (not added to).
 */
void html_render(const char *html, size_t len, size_t max_out,
		 const struct html_link_handler *handler, buf_t *out, struct html_stats *st);

/* A character reference at s ('&' first): the bytes it takes (0 if it is
 * none), its UTF-8 form in out (*out_len_r bytes). In attribute values a
 * reference without ';' followed by '=' is not one. */
size_t html_entity_decode(const char *s, size_t len, bool in_attribute, char out[4],
			  size_t *out_len_r);
/* s[0..len) with every character reference decoded, appended to out. */
void html_decode_entities(const char *s, size_t len, bool in_attribute, buf_t *out);
/* Code point cp as UTF-8 (NUL, surrogates and values past U+10FFFF as
 * U+FFFD); the bytes written. */
size_t html_utf8_put(uint32_t cp, char out[4]);

#endif
