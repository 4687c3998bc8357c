/*
 * html_links.c - what the elements of an HTML part point to (see
 * html_text.h): the URIs of their attributes (a/area/link href and
 * data-saferedirecturl, img/frame/iframe/embed/script/bgsound src, form
 * action, body/table/tr/td background, base href, meta refresh),
 * references decoded, white space trimmed, resolved against <base href>;
 * the text of each <a>; the images and the area they declare.
 *
 * Untrusted input: the tags and attribute values of HTML parts.
 * Privilege: unprivileged scanners and `postern scan`.
 */
#include "html_internal.h"

#include <string.h>
#include <strings.h>

#include "../lib/compat.h"
#include "../lib/strutil.h"

/* ---- URIs ------------------------------------------------------------------------ */

static bool has_scheme(const char *s, size_t n)
{
	size_t i = 0;
	if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			 (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '-'))
		i++;
	return i < n && s[i] == ':';
}

/* Where a URI's path starts (after "scheme://authority"), or n. */
static size_t path_start(const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	size_t i = colon != NULL ? (size_t)(colon - s) + 1 : 0;
	while (i < n && (s[i] == '/' || s[i] == '\\'))
		i++;
	while (i < n && s[i] != '/' && s[i] != '?' && s[i] != '#')
		i++;
	return i;
}

/* The URI an attribute names: white space (and U+00A0) around and line
 * ends inside removed, so are U+FEFF marks; cut at HTML_URI_MAX; resolved
 * against <base href>. */
static void clean_uri(const struct html_renderer *r, const char *v, size_t n, buf_t *out)
{
	while (n > 0 && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r' || *v == '\f'))
		v++, n--;
	while (n >= 2 && (unsigned char)v[0] == 0xC2 && (unsigned char)v[1] == 0xA0)
		v += 2, n -= 2;
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n' ||
			 v[n - 1] == '\r' || v[n - 1] == '\f' ||
			 (n >= 2 && (unsigned char)v[n - 2] == 0xC2 && (unsigned char)v[n - 1] == 0xA0)))
		n -= (unsigned char)v[n - 1] == 0xA0 ? 2 : 1;
	if (n == 0)
		return;
	if (r->base.len > 0 && !has_scheme(v, n)) {
		if (n >= 2 && v[0] == '/' && v[1] == '/')
			buf_append(out, r->base.data, (size_t)(strchr(r->base.data, ':') - r->base.data) + 1);
		else if (v[0] == '/')
			buf_append(out, r->base.data, path_start(r->base.data, r->base.len));
		else if (v[0] != '#' && v[0] != '?')
			buf_append(out, r->base.data, r->base.len);
	}
	size_t i = 0;
	for (; i < n && out->len < HTML_URI_MAX; i++) {
		if (v[i] == '\n' || v[i] == '\r' || v[i] == '\t')
			continue;
		if (i + 2 < n && memcmp(v + i, "\xEF\xBB\xBF", 3) == 0) {
			i += 2;
			continue;
		}
		buf_putc(out, v[i]);
	}
	if (i < n) { /* cut at the bound: not inside a UTF-8 sequence */
		while (out->len > 0 && ((unsigned char)out->data[out->len - 1] & 0xC0) == 0x80)
			out->len--;
		if (out->len > 0 && (unsigned char)out->data[out->len - 1] >= 0xC0)
			out->len--;
		out->data[out->len] = '\0';
	}
}

static void emit_link(const struct html_renderer *r, const char *tag, const char *v, size_t n,
		      const char *anchor, size_t anchor_len)
{
	if (r->handler == NULL || r->handler->link == NULL || v == NULL)
		return;
	buf_t uri = BUF_INIT;
	clean_uri(r, v, n, &uri);
	if (uri.len > 0)
		r->handler->link(r->handler->arg, tag, uri.data, uri.len, anchor, anchor_len);
	buf_free(&uri);
}

static void emit_attr(const struct html_renderer *r, const char *tag, const char *attr)
{
	size_t n;
	const char *v = html_attr(r, attr, &n);
	emit_link(r, tag, v, v != NULL ? n : 0, NULL, 0);
}

/* An open <a> is over: its URI with its text. */
static void finish_anchor(struct html_renderer *r)
{
	if (!r->in_a)
		return;
	r->in_a = false;
	size_t n = r->anchor.len;
	while (n > 0 && r->anchor.data[n - 1] == ' ')
		n--;
	if (r->href.len > 0)
		emit_link(r, "a", r->href.data, r->href.len, r->anchor.data != NULL ? r->anchor.data : "",
			  n);
	buf_reset(&r->href);
	buf_reset(&r->anchor);
}

void html_links_finish(struct html_renderer *r)
{
	finish_anchor(r);
}

/* <base href="http://host/dir/page.html"> -> "http://host/dir/". */
static void set_base(struct html_renderer *r, const char *v, size_t n)
{
	buf_t uri = BUF_INIT;
	buf_t saved = r->base;
	buf_init(&r->base);
	clean_uri(r, v, n, &uri);
	r->base = saved;
	if (uri.len > 0 && (str_has_prefix_nocase(uri.data, "http:") ||
			    str_has_prefix_nocase(uri.data, "https:") ||
			    str_has_prefix_nocase(uri.data, "ftp:"))) {
		size_t path = path_start(uri.data, uri.len);
		const char *slash = path < uri.len ? memrchr(uri.data + path, '/', uri.len - path) : NULL;
		buf_reset(&r->base);
		buf_append(&r->base, uri.data, slash != NULL ? (size_t)(slash - uri.data) : path);
		buf_putc(&r->base, '/');
	}
	buf_free(&uri);
}

/* <meta http-equiv="refresh" content="5; url=http://...">. */
static void meta_refresh(struct html_renderer *r)
{
	const char *equiv = html_attr(r, "http-equiv", NULL);
	size_t n;
	const char *content = html_attr(r, "content", &n);
	if (equiv == NULL || content == NULL || strcasestr(equiv, "refresh") == NULL)
		return;
	for (size_t i = 0; i + 3 <= n; i++) {
		if (strncasecmp(content + i, "url", 3) != 0)
			continue;
		size_t j = i + 3;
		while (j < n && (content[j] == ' ' || content[j] == '\t'))
			j++;
		if (j >= n || content[j] != '=')
			continue;
		j++;
		while (j < n && (content[j] == ' ' || content[j] == '\'' || content[j] == '"'))
			j++;
		size_t e = j;
		while (e < n && content[e] != ';' && content[e] != '\'' && content[e] != '"')
			e++;
		emit_link(r, "meta", content + j, e - j, NULL, 0);
		return;
	}
}

/* ---- images ---------------------------------------------------------------------- */

/* "120" or "50%" (of 800 x 600, as SpamAssassin reckons); 0 if neither. */
static uint64_t image_side(const char *v, unsigned percent_of)
{
	uint64_t n = 0;
	const char *p = v;
	while (*p >= '0' && *p <= '9') {
		if (n < 100000)
			n = n * 10 + (uint64_t)(*p - '0');
		p++;
	}
	if (p == v)
		return 0;
	if (*p == '%')
		return n * percent_of / 100;
	return *p == '\0' ? n : 0;
}

static void image(struct html_renderer *r)
{
	r->st->images++;
	const char *w = html_attr(r, "width", NULL), *h = html_attr(r, "height", NULL);
	if (w == NULL || h == NULL)
		return;
	uint64_t width = image_side(w, 800), height = image_side(h, 600);
	r->st->image_area += (width > 0 ? width : 200) * (height > 0 ? height : 200);
}

/* ---- tags ------------------------------------------------------------------------ */

static bool name_in(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

void html_tag_links(struct html_renderer *r, const char *name)
{
	static const char *const background[] = { "body", "table", "tr", "td" };
	static const char *const href[] = { "area", "link" };
	static const char *const src[] = { "img", "frame", "iframe", "embed", "script", "bgsound" };
	if (name_in(name, background, ARRAY_LEN(background))) {
		emit_attr(r, name, "background");
	} else if (strcmp(name, "a") == 0) {
		finish_anchor(r);
		size_t n;
		const char *v = html_attr(r, "href", &n);
		r->in_a = true;
		if (v != NULL)
			buf_append(&r->href, v, n);
		emit_attr(r, name, "data-saferedirecturl");
	} else if (name_in(name, href, ARRAY_LEN(href))) {
		emit_attr(r, name, "href");
		emit_attr(r, name, "data-saferedirecturl");
	} else if (name_in(name, src, ARRAY_LEN(src))) {
		emit_attr(r, name, "src");
	} else if (strcmp(name, "form") == 0) {
		emit_attr(r, name, "action");
	} else if (strcmp(name, "base") == 0) {
		size_t n;
		const char *v = html_attr(r, "href", &n);
		if (v != NULL) {
			emit_link(r, name, v, n, NULL, 0);
			set_base(r, v, n);
		}
	} else if (strcmp(name, "meta") == 0) {
		meta_refresh(r);
	}
	if (strcmp(name, "img") == 0)
		image(r);
}
