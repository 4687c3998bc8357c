/*
 * test_spam_text.c - what the spam tests see of a message (spam_text.c
 * and the HTML renderer, html_text.c / html_style.c, and the URI finder,
 * spam_uri.c), built from whole messages through the MIME pass: the body
 * as SpamAssassin renders it (Subject first, paragraphs joined into lines,
 * HTML reduced to its text, both parts of an alternative), charsets made
 * UTF-8, transfer encodings undone, the rawbody, the URIs of text and
 * HTML with their anchor text, the HTML facts (hidden text, images, words
 * split by tags or zero-width characters), and the bounds (spam_max_text
 * in the MIME pass, max_body and max_uris in the build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "scan/html_text.h"
#include "scan/scan_message.h"
#include "scan/spam.h"

static const strlist_t no_rcpts = { NULL, 0 };
static const struct scan_envelope env = { "", "", &no_rcpts, "", "" };
static const struct mime_limits limits = { 20, 1000, 256 * 1024, 100ULL << 20, false };

struct built {
	struct scan_message m;
	struct spam_text t;
};

static void build_limited(struct built *b, const char *msg, uint64_t text_max, size_t max_body,
			  size_t max_uris)
{
	memset(b, 0, sizeof(*b));
	b->m.env = &env;
	b->m.data = (const unsigned char *)msg;
	b->m.len = strlen(msg);
	scan_message_parse_keeping(&b->m, &limits, 0, text_max);
	struct spam_text_limits lim = { max_body, max_uris };
	spam_text_build(&b->m, &lim, &b->t);
}

static void build(struct built *b, const char *msg)
{
	build_limited(b, msg, SCAN_TEXT_MAX_DEFAULT, 1 << 20, 100);
}

static void unbuild(struct built *b)
{
	spam_text_free(&b->t);
	scan_message_free(&b->m);
}

static void assert_body(const char *msg, const char *want)
{
	struct built b;
	build(&b, msg);
	assert_string_equal(b.t.body.data, want);
	assert_int_equal(b.t.body.len, strlen(want));
	unbuild(&b);
}

/* The body of a one-part HTML message without a Subject. */
static void assert_html(const char *html, const char *want)
{
	buf_t msg = BUF_INIT;
	buf_printf(&msg, "Content-Type: text/html; charset=utf-8\n\n%s", html);
	buf_t body = BUF_INIT;
	buf_printf(&body, "\n%s", want);
	assert_body(msg.data, body.data);
	buf_free(&msg);
	buf_free(&body);
}

static const struct spam_uri *find_uri(const struct spam_text *t, const char *uri)
{
	for (size_t i = 0; i < t->uri_count; i++)
		if (strcmp(t->uris[i].uri, uri) == 0)
			return &t->uris[i];
	return NULL;
}

/* ---- the MIME pass keeps the text ------------------------------------------------- */

static void test_mime_pass_keeps_text_parts(void **state)
{
	(void)state;
	const char *msg = "Content-Type: multipart/mixed; boundary=b\n\n"
			  "--b\nContent-Type: text/plain; charset=ISO-8859-1\n"
			  "Content-Transfer-Encoding: quoted-printable\n\ncaf=E9 ok\n"
			  "--b\nContent-Type: image/gif\n\nGIF89a\n"
			  "--b\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n"
			  "--b\nContent-Type: message/delivery-status\n\nStatus: 5.0.0\n--b--\n";
	struct scan_message m = { .env = &env, .data = (const unsigned char *)msg,
				  .len = strlen(msg) };
	scan_message_parse_keeping(&m, &limits, 0, 1000);
	assert_int_equal(m.part_count, 5);
	assert_string_equal(m.parts[1].text.data, "caf\xe9 ok");
	assert_string_equal(m.parts[1].charset, "iso-8859-1");
	assert_int_equal(m.parts[1].encoding, MIME_ENC_QP);
	assert_int_equal(m.parts[2].text.len, 0);  /* an image is no text */
	assert_int_equal(m.parts[3].text.len, 0);  /* nor a calendar */
	assert_string_equal(m.parts[4].text.data, "Status: 5.0.0");
	assert_false(m.parts[1].text_truncated);
	scan_message_free(&m);
}

static void test_mime_pass_text_bound(void **state)
{
	(void)state;
	const char *msg = "Content-Type: multipart/mixed; boundary=b\n\n"
			  "--b\n\n0123456789\n--b\n\nabcdefghij\n--b--\n";
	struct scan_message m = { .env = &env, .data = (const unsigned char *)msg,
				  .len = strlen(msg) };
	scan_message_parse_keeping(&m, &limits, 0, 15);
	assert_string_equal(m.parts[1].text.data, "0123456789");
	assert_false(m.parts[1].text_truncated);
	assert_string_equal(m.parts[2].text.data, "abcde"); /* 15 bytes for the message */
	assert_true(m.parts[2].text_truncated);
	scan_message_free(&m);
}

static void test_mime_pass_text_around_uuencode(void **state)
{
	(void)state;
	const char *msg = "Content-Type: text/plain\n\nbefore\nbegin 644 a.bin\n"
			  "#86)C\n`\nend\nafter\n";
	struct scan_message m = { .env = &env, .data = (const unsigned char *)msg,
				  .len = strlen(msg) };
	scan_message_parse_keeping(&m, &limits, 0, 1000);
	assert_int_equal(m.part_count, 2);
	assert_non_null(strstr(m.parts[0].text.data, "before"));
	assert_non_null(strstr(m.parts[0].text.data, "after"));
	assert_int_equal(m.parts[1].text.len, 0);
	scan_message_free(&m);
}

/* ---- charsets ----------------------------------------------------------------------- */

static void test_charset_iso_8859_1(void **state)
{
	(void)state;
	assert_body("Subject: s\nContent-Type: text/plain; charset=iso-8859-1\n\ncaf\xe9 \xa9\n",
		    "s\ncaf\xc3\xa9 \xc2\xa9 \n");
}

static void test_charset_windows_1252(void **state)
{
	(void)state;
	/* 0x80 the euro sign, 0x93 0x94 curly quotes; ISO-8859-1 is read the same */
	assert_body("Subject: s\nContent-Type: text/plain; charset=windows-1252\n\n"
		    "\x80 5 \x93q\x94\n",
		    "s\n\xe2\x82\xac 5 \xe2\x80\x9cq\xe2\x80\x9d \n");
	assert_body("Subject: s\nContent-Type: text/plain; charset=ISO-8859-1\n\n\x80\n",
		    "s\n\xe2\x82\xac \n");
}

static void test_charset_utf8_and_broken(void **state)
{
	(void)state;
	/* UTF-8 passes; valid UTF-8 under a legacy label is UTF-8 */
	assert_body("Subject: s\nContent-Type: text/plain; charset=utf-8\n\n\xc3\xa9t\xc3\xa9\n",
		    "s\n\xc3\xa9t\xc3\xa9 \n");
	assert_body("Subject: s\nContent-Type: text/plain; charset=iso-8859-1\n\n\xc3\xa9\n",
		    "s\n\xc3\xa9 \n");
	/* bytes UTF-8 does not allow become U+FFFD */
	assert_body("Subject: s\nContent-Type: text/plain; charset=utf-8\n\na\xff" "b\n",
		    "s\na\xef\xbf\xbd" "b \n");
	/* an unknown charset, or none, is read as Windows-1252 */
	assert_body("Subject: s\nContent-Type: text/plain; charset=x-no-such\n\n\xe9\n",
		    "s\n\xc3\xa9 \n");
	assert_body("Subject: s\n\n\xe9\n", "s\n\xc3\xa9 \n");
	/* a NUL byte never reaches the body */
	struct built b;
	const char msg[] = "Subject: s\n\na\0b\n";
	memset(&b, 0, sizeof(b));
	b.m.env = &env;
	b.m.data = (const unsigned char *)msg;
	b.m.len = sizeof(msg) - 1;
	scan_message_parse(&b.m, &limits, 0);
	struct spam_text_limits lim = { 1000, 10 };
	spam_text_build(&b.m, &lim, &b.t);
	assert_string_equal(b.t.body.data, "s\na\xef\xbf\xbd" "b \n");
	unbuild(&b);
}

static void test_charset_subject(void **state)
{
	(void)state;
	/* decoded, unfolded (the fold makes one space), the last Subject */
	assert_body("Subject: first\nSubject: =?iso-8859-1?q?Caf=E9?=\n   and  more\n\nx\n",
		    "Caf\xc3\xa9 and  more\nx \n");
	/* no Subject: an empty first line */
	assert_body("From: a@b\n\nx\n", "\nx \n");
}

/* ---- paragraphs --------------------------------------------------------------------- */

static void test_paragraphs_joined(void **state)
{
	(void)state;
	assert_body("Subject: s\n\nline one\nline two\n\n\nnext  para\ttabs\n  \n last\n",
		    "s\nline one line two\nnext para tabs\n last \n");
}

static void test_long_line_cut_after_space(void **state)
{
	(void)state;
	buf_t msg = BUF_INIT;
	buf_puts(&msg, "Subject: s\n\n");
	for (int i = 0; i < 500; i++)
		buf_puts(&msg, "word ");
	buf_puts(&msg, "\n");
	struct built b;
	build(&b, msg.data);
	const char *line2 = strchr(b.t.body.data, '\n') + 1;
	const char *nl = strchr(line2, '\n');
	/* 2048 bytes at most, cut after a space */
	assert_true(nl - line2 <= 2048);
	assert_int_equal(nl[-1], ' ');
	assert_int_equal(nl[1], 'w');
	unbuild(&b);
	buf_free(&msg);
}

/* ---- transfer encodings and parts --------------------------------------------------- */

static void test_quoted_printable_and_base64(void **state)
{
	(void)state;
	assert_body("Subject: s\nContent-Type: text/plain; charset=utf-8\n"
		    "Content-Transfer-Encoding: quoted-printable\n\n"
		    "soft=\n break =C3=A9=3D\n",
		    "s\nsoft break \xc3\xa9= \n");
	/* "Hello <b>World</b>" */
	assert_body("Subject: s\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n"
		    "SGVsbG8gPGI+V29ybGQ8L2I+\n",
		    "s\nHello World\n");
}

static void test_alternative_renders_both(void **state)
{
	(void)state;
	/* SpamAssassin renders every text part, both alternatives included */
	assert_body("Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n"
		    "--b\nContent-Type: text/plain\n\nplain words\n"
		    "--b\nContent-Type: text/html\n\n<p>html words</p>\n--b--\n",
		    "s\nplain words\nhtml words\n");
}

static void test_other_text_types(void **state)
{
	(void)state;
	/* text/enriched reads as plain text; a part named .html as HTML; an
	 * image is not text; a calendar only in no view */
	struct built b;
	build(&b, "Subject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
		  "--b\nContent-Type: text/enriched\n\nenriched\n"
		  "--b\nContent-Type: application/octet-stream; name=\"page.html\"\n\n<b>bold</b>\n"
		  "--b\nContent-Type: image/png\n\nPNG\n"
		  "--b\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n--b--\n");
	assert_string_equal(b.t.body.data, "s\nenriched\nbold \n");
	assert_int_equal(b.t.html.html_parts, 1);
	assert_int_equal(b.t.html.text_parts, 1);
	assert_null(strstr(b.t.rawbody.data, "PNG"));
	assert_null(strstr(b.t.rawbody.data, "VCALENDAR"));
	assert_non_null(strstr(b.t.rawbody.data, "<b>bold</b>"));
	unbuild(&b);
}

static void test_rawbody_as_sent(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject: s\nContent-Type: multipart/alternative; boundary=b\n\n"
		  "--b\nContent-Type: text/plain; charset=iso-8859-1\n"
		  "Content-Transfer-Encoding: quoted-printable\n\nl1\nl2 =E9\n"
		  "--b\nContent-Type: text/html\n\n<p>x\n<b>y</b></p>\n--b--\n");
	/* decoded, not converted, not rendered, lines as sent */
	assert_string_equal(b.t.rawbody.data, "l1\nl2 \xe9\n<p>x\n<b>y</b></p>\n");
	unbuild(&b);
}

static void test_rawbody_blank_lines_and_crlf(void **state)
{
	(void)state;
	/* of 25 blank lines in a row, SpamAssassin reads the first and the
	 * last 19 */
	buf_t msg = BUF_INIT, want = BUF_INIT;
	buf_puts(&msg, "Subject: s\n\na\n");
	for (int i = 0; i < 25; i++)
		buf_printf(&msg, "%s\n", i == 1 ? "  " : "");
	buf_puts(&msg, "b\n");
	buf_puts(&want, "a\n\n");
	for (int i = 0; i < 19; i++)
		buf_puts(&want, "\n");
	buf_puts(&want, "b\n");
	struct built b;
	build(&b, msg.data);
	assert_string_equal(b.t.rawbody.data, want.data);
	unbuild(&b);
	/* CRLF is LF in a message of CRLF lines; a stray CR in a message of
	 * LF lines stays (white space in the body) */
	build(&b, "Subject: s\r\n\r\nx\r\ny\r\n");
	assert_string_equal(b.t.rawbody.data, "x\ny\n");
	unbuild(&b);
	build(&b, "Subject: s\n\nx\r\n\ny\n");
	assert_string_equal(b.t.rawbody.data, "x\r\n\ny\n");
	assert_string_equal(b.t.body.data, "s\nx \ny \n");
	unbuild(&b);
	buf_free(&msg);
	buf_free(&want);
}

/* ---- HTML ---------------------------------------------------------------------------- */

static void test_html_entities(void **state)
{
	(void)state;
	assert_html("a&amp;b &lt;&gt; &quot;&#65;&#x42;&eacute;&euro;&nbsp;&copy 2002 &bogus; "
		    "&#150; &#0; &#xD800;",
		    "a&b <> \"AB\xc3\xa9\xe2\x82\xac \xc2\xa9 2002 &bogus; \xe2\x80\x93 \xef\xbf\xbd "
		    "\xef\xbf\xbd\n");
}

static void test_html_scripts_styles_comments(void **state)
{
	(void)state;
	assert_html("a<script>var x = '<b>no</b>';</script>b<style>p { x: y }</style>c"
		    "<!-- gone <b>x</b> -->d<!DOCTYPE html><?xml x?>e",
		    "abcde\n");
	/* an unterminated script takes the rest; a comment that never ends in
	 * "-->" ends at the first '>', or takes the rest if there is none */
	assert_html("a<script>b<p>c", "a\n");
	assert_html("a<!-- b <p>c", "ac\n");
	assert_html("a<!-- b c", "a\n");
}

static void test_html_blocks(void **state)
{
	(void)state;
	/* <p> a paragraph, <br> and <div> a line break (a space once joined),
	 * two of them a paragraph; <td> and <li> a space */
	assert_html("<p>one</p><p>two</p>x<br>y<br><br>z<div>d1</div><div>d2</div>"
		    "<table><tr><td>c1</td><td>c2</td></tr></table><ul><li>l1<li>l2</ul>",
		    "\none\ntwo\nx y\nz d1\nd2 c1 c2 l1 l2\n");
}

static void test_html_nested_and_broken(void **state)
{
	(void)state;
	/* nested inline tags leave the words whole; a '<' that starts nothing
	 * is text; a tag that never ends is dropped with the rest; a quoted
	 * '>' does not end a tag; an unknown tag gives nothing */
	assert_html("<b><i><u>deep</u></i> text</b> 1 < 2 <a title='x>y'>t</a><foo>f</foo><b",
		    "deep text 1 < 2 tf\n");
	/* a quote that never closes is an ordinary character */
	assert_html("<a href=\"x>a</a>b", "ab\n");
	/* literal elements */
	assert_html("<xmp><b>x</b></xmp><textarea>&amp;<i>y</i></textarea>",
		    "\n<b>x</b>\n&<i>y</i>\n");
}

static void test_html_whitespace(void **state)
{
	(void)state;
	assert_html("  lots \n of\t\tspace  <b> here </b>  ", " lots of space here \n");
}

/* ---- URIs ---------------------------------------------------------------------------- */

static void test_uris_from_text(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject: see www.Subject.com\n\n"
		  "Go to http://Example.COM:8080/a?b=c (now), www.shop.example.org/x.\n"
		  "Mail me: sales@example.com, or mailto:info@example.net?subject=hi\n"
		  "bare example.info/path and ftp.example.de but not file.txt or a.b\n"
		  "nor www.example.invalid\n");
	const struct spam_uri *u = find_uri(&b.t, "http://Example.COM:8080/a?b=c");
	assert_non_null(u);
	assert_string_equal(u->host, "example.com");
	assert_false(u->from_html);
	assert_null(u->anchor_text);
	assert_non_null(find_uri(&b.t, "http://www.shop.example.org/x"));
	assert_non_null(find_uri(&b.t, "http://www.Subject.com"));
	/* a host name that ends in no known top-level domain is no link */
	assert_null(find_uri(&b.t, "http://www.example.invalid"));
	u = find_uri(&b.t, "mailto:sales@example.com");
	assert_non_null(u);
	assert_string_equal(u->host, "example.com");
	assert_non_null(find_uri(&b.t, "mailto:info@example.net?subject=hi"));
	assert_non_null(find_uri(&b.t, "http://example.info/path"));
	assert_non_null(find_uri(&b.t, "ftp://ftp.example.de"));
	assert_null(find_uri(&b.t, "http://file.txt"));
	assert_null(find_uri(&b.t, "http://a.b"));
	unbuild(&b);
}

static void test_uris_from_html(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject: s\nContent-Type: text/html\n\n"
		  "<base href=\"http://base.example/dir/page.html\">"
		  "<a href=\" http://Evil.EXAMPLE/login?a=1&amp;b=2 \">Your <b>bank</b>\n here</a>"
		  "<a href=\"/rel\">rel</a><img src=\"img.gif\"><form action=\"https://f.example/p\">"
		  "<area href=\"mailto:x@y.example\"><a href=\"#top\">top</a>"
		  "text link http://text.example.com/x");
	const struct spam_uri *u = find_uri(&b.t, "http://Evil.EXAMPLE/login?a=1&b=2");
	assert_non_null(u);
	assert_true(u->from_html);
	assert_string_equal(u->host, "evil.example");
	assert_string_equal(u->anchor_text, "Your bank here");
	assert_non_null(find_uri(&b.t, "http://base.example/rel"));
	assert_non_null(find_uri(&b.t, "http://base.example/dir/img.gif"));
	assert_non_null(find_uri(&b.t, "https://f.example/p"));
	assert_non_null(find_uri(&b.t, "mailto:x@y.example"));
	assert_null(find_uri(&b.t, "#top"));
	u = find_uri(&b.t, "http://text.example.com/x");
	assert_non_null(u);
	assert_false(u->from_html);
	unbuild(&b);
}

/* Regression (found by fuzz_spam_text): an href that is nothing but a
 * byte order mark or line ends left an empty URI written through a NULL
 * buffer; an empty Subject was decoded from a NULL one. */
static void test_empty_uris_and_subject(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject:\nContent-Type: text/html\n\n<a href=\xef\xbb\xbf>x</a>"
		  "<a href=\"\n\t\">y</a><img src=\"  \">");
	assert_int_equal(b.t.uri_count, 0);
	assert_string_equal(b.t.body.data, "\nxy\n");
	unbuild(&b);
	/* a URI cut at its bound ends before a cut UTF-8 sequence */
	buf_t msg = BUF_INIT;
	buf_puts(&msg, "Subject: s\nContent-Type: text/html\n\n<a href=\"http://x.example.com/");
	for (size_t i = 0; i < HTML_URI_MAX; i++)
		buf_puts(&msg, "\xc3\xa9");
	buf_puts(&msg, "\">z</a>");
	build(&b, msg.data);
	assert_int_equal(b.t.uri_count, 1);
	size_t n = strlen(b.t.uris[0].uri);
	assert_true(n <= HTML_URI_MAX);
	assert_int_equal((unsigned char)b.t.uris[0].uri[n - 1], 0xa9);
	unbuild(&b);
	buf_free(&msg);
}

static void test_uris_deduplicated_and_bounded(void **state)
{
	(void)state;
	struct built b;
	build_limited(&b, "Subject: s\nContent-Type: text/html\n\n"
			  "<a href=\"http://a.example.com/\">A</a> http://a.example.com/ "
			  "http://b.example.com/ http://c.example.com/ http://d.example.com/",
		      SCAN_TEXT_MAX_DEFAULT, 1 << 20, 3);
	assert_int_equal(b.t.uri_count, 3);
	const struct spam_uri *u = find_uri(&b.t, "http://a.example.com/");
	assert_non_null(u);
	assert_true(u->from_html);
	assert_string_equal(u->anchor_text, "A");
	unbuild(&b);
}

/* ---- HTML facts ---------------------------------------------------------------------- */

static void test_invisible_text(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject: s\nContent-Type: text/html\n\n<body bgcolor=\"#ffffff\">"
		  "<p>seen</p>"
		  "<font color=\"white\">aaaa</font>"
		  "<font color=\"#fefefe\">bbbb</font>"
		  "<span style=\"display: none\">cccc</span>"
		  "<div style=\"visibility:hidden\">dddd</div>"
		  "<span style=\"font-size:1px\">eeee</span>"
		  "<table bgcolor=\"#000000\"><tr><td><font color=\"#000000\">ffff</font></td></tr>"
		  "</table><font color=\"#000000\">ok</font>");
	/* hidden text is in the body, as SpamAssassin has it */
	assert_non_null(strstr(b.t.body.data, "aaaa"));
	assert_int_equal(b.t.html.invisible_text_bytes, 24);
	assert_int_equal(b.t.html.html_parts, 1);
	assert_true(b.t.html.html_text_bytes >= 6); /* "seen", "ok" */
	unbuild(&b);
}

static void test_images_and_obfuscation(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject: s\nContent-Type: text/html\n\n"
		  "<img src=a.gif width=100 height=50><img src=b.gif width=50% height=10%>"
		  "<img src=c.gif>V<b></b>i<i></i>a<u></u>gra");
	assert_int_equal(b.t.html.images, 3);
	assert_int_equal(b.t.html.image_area, 100 * 50 + 400 * 60);
	assert_int_equal(b.t.html.split_words, 3);
	assert_true(b.t.html.has_obfuscated_words);
	assert_non_null(strstr(b.t.body.data, "Viagra"));
	unbuild(&b);
	/* one drop capital is no obfuscation */
	build(&b, "Subject: s\nContent-Type: text/html\n\n<p><b>W</b>elcome to our <i>news</i>"
		  "letter, it has <b>many</b> tags and <b>few</b> splits</p>");
	assert_false(b.t.html.has_obfuscated_words);
	unbuild(&b);
}

static void test_zero_width_characters(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject: s\nContent-Type: text/plain; charset=utf-8\n\n"
		  "vi\xe2\x80\x8b" "agra ca\xc2\xad" "sh \xe2\x80\x8b alone\n");
	/* taken out between letters (and counted), kept elsewhere */
	assert_string_equal(b.t.body.data, "s\nviagra cash \xe2\x80\x8b alone \n");
	assert_true(b.t.html.has_obfuscated_words);
	unbuild(&b);
}

/* ---- bounds -------------------------------------------------------------------------- */

static void test_huge_part_is_cut(void **state)
{
	(void)state;
	size_t n = 3 * 1024 * 1024;
	char *msg = xmalloc(n + 64);
	int head = snprintf(msg, 64, "Subject: big\n\n");
	for (size_t i = 0; i < n; i++)
		msg[head + i] = i % 80 == 79 ? '\n' : 'a' + (char)(i % 26);
	msg[head + n] = '\0';
	struct built b;
	/* the MIME pass keeps 1 MiB; the body is cut at 100 kB */
	build_limited(&b, msg, 1024 * 1024, 100 * 1000, 10);
	assert_true(b.m.parts[0].text_truncated);
	assert_int_equal(b.m.parts[0].text.len, 1024 * 1024);
	assert_true(b.t.body_truncated);
	assert_true(b.t.body.len <= 100 * 1000);
	assert_true(b.t.rawbody.len <= 100 * 1000);
	assert_int_equal(b.t.body.data[b.t.body.len - 1], '\n');
	unbuild(&b);
	/* SpamAssassin's own bound: one part's rendered text, 50000 characters */
	build_limited(&b, msg, 1024 * 1024, 1 << 20, 10);
	assert_true(b.t.body_truncated);
	assert_true(b.t.body.len < 52000);
	unbuild(&b);
	free(msg);
}

static void test_small_message_not_truncated(void **state)
{
	(void)state;
	struct built b;
	build(&b, "Subject: s\n\nsmall\n");
	assert_false(b.t.body_truncated);
	unbuild(&b);
	/* no room at all: the Subject's line end is kept */
	build_limited(&b, "Subject: s\n\nsmall\n", 0, 1, 10);
	assert_string_equal(b.t.body.data, "\n");
	assert_true(b.t.body_truncated);
	unbuild(&b);
}

/* The renderer's stats, alone. */
static void test_render_direct(void **state)
{
	(void)state;
	buf_t out = BUF_INIT;
	struct html_stats st;
	const char *html = "<p>abc</p><b>defgh</b>";
	html_render(html, strlen(html), 4, NULL, &out, &st);
	assert_true(st.truncated);
	assert_true(out.len <= 4);
	assert_int_equal(st.tags, 4);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mime_pass_keeps_text_parts),
		cmocka_unit_test(test_mime_pass_text_bound),
		cmocka_unit_test(test_mime_pass_text_around_uuencode),
		cmocka_unit_test(test_charset_iso_8859_1),
		cmocka_unit_test(test_charset_windows_1252),
		cmocka_unit_test(test_charset_utf8_and_broken),
		cmocka_unit_test(test_charset_subject),
		cmocka_unit_test(test_paragraphs_joined),
		cmocka_unit_test(test_long_line_cut_after_space),
		cmocka_unit_test(test_quoted_printable_and_base64),
		cmocka_unit_test(test_alternative_renders_both),
		cmocka_unit_test(test_other_text_types),
		cmocka_unit_test(test_rawbody_as_sent),
		cmocka_unit_test(test_rawbody_blank_lines_and_crlf),
		cmocka_unit_test(test_html_entities),
		cmocka_unit_test(test_html_scripts_styles_comments),
		cmocka_unit_test(test_html_blocks),
		cmocka_unit_test(test_html_nested_and_broken),
		cmocka_unit_test(test_html_whitespace),
		cmocka_unit_test(test_uris_from_text),
		cmocka_unit_test(test_uris_from_html),
		cmocka_unit_test(test_uris_deduplicated_and_bounded),
		cmocka_unit_test(test_empty_uris_and_subject),
		cmocka_unit_test(test_invisible_text),
		cmocka_unit_test(test_images_and_obfuscation),
		cmocka_unit_test(test_zero_width_characters),
		cmocka_unit_test(test_huge_part_is_cut),
		cmocka_unit_test(test_small_message_not_truncated),
		cmocka_unit_test(test_render_direct),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
