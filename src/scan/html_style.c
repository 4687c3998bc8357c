/*
 * html_style.c - what the tags of an HTML part do to its rendering (see
 * html_text.h): the white space an element makes and the text styles that
 * tell hidden text (colours, <font size>, CSS display, visibility,
 * opacity, font-size, the hidden attribute), as a reader sees them and as
 * SpamAssassin reckons them. What elements point to is html_links.c's.
 *
 * Elements are those HTML 4 defines and a few mail uses beside them; a
 * tag HTML does not define does nothing, as in SpamAssassin's renderer.
 * The style stack holds HTML_STYLE_DEPTH entries; deeper elements share
 * the innermost style kept.
 *
 * Untrusted input: the tags and attribute values of HTML parts.
 * Privilege: unprivileged scanners and `postern scan`.
 */
#include "html_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../lib/compat.h"
#include "../lib/strutil.h"

#define EL_STYLE 1u /* sets a text style (pushed at its start, popped at its end) */
#define EL_VOID 2u  /* has no end and no content */

struct element {
	const char *name;
	const char *space; /* white space at its start and its end, or NULL */
	unsigned flags;
};

/* Sorted by name (strcmp order). */
static const struct element elements[] = {
	{ "a", NULL, EL_STYLE },
	{ "abbr", NULL, 0 },
	{ "acronym", NULL, 0 },
	{ "address", NULL, 0 },
	{ "applet", NULL, 0 },
	{ "area", NULL, EL_VOID },
	{ "article", NULL, 0 },
	{ "aside", NULL, 0 },
	{ "b", NULL, 0 },
	{ "base", NULL, EL_VOID },
	{ "basefont", NULL, EL_VOID },
	{ "bdo", NULL, 0 },
	{ "bgsound", NULL, EL_VOID },
	{ "big", NULL, EL_STYLE },
	{ "blockquote", "\n\n", 0 },
	{ "body", NULL, EL_STYLE },
	{ "br", "\n", EL_VOID },
	{ "button", NULL, 0 },
	{ "caption", NULL, 0 },
	{ "center", NULL, 0 },
	{ "cite", NULL, 0 },
	{ "code", NULL, 0 },
	{ "col", NULL, EL_VOID },
	{ "colgroup", NULL, 0 },
	{ "dd", " ", 0 },
	{ "del", NULL, 0 },
	{ "dfn", NULL, 0 },
	{ "dir", NULL, 0 },
	{ "div", "\n", EL_STYLE },
	{ "dl", NULL, 0 },
	{ "dt", " ", 0 },
	{ "em", NULL, 0 },
	{ "embed", " ", EL_VOID },
	{ "fieldset", NULL, 0 },
	{ "figcaption", NULL, 0 },
	{ "figure", NULL, 0 },
	{ "font", NULL, EL_STYLE },
	{ "footer", NULL, 0 },
	{ "form", NULL, 0 },
	{ "frame", NULL, EL_VOID },
	{ "frameset", NULL, 0 },
	{ "h1", " ", 0 },
	{ "h2", " ", 0 },
	{ "h3", " ", 0 },
	{ "h4", " ", 0 },
	{ "h5", " ", 0 },
	{ "h6", " ", 0 },
	{ "head", NULL, 0 },
	{ "header", NULL, 0 },
	{ "hr", "\n\n", EL_VOID },
	{ "html", NULL, 0 },
	{ "i", NULL, 0 },
	{ "iframe", NULL, 0 },
	{ "img", NULL, EL_VOID },
	{ "input", NULL, EL_VOID },
	{ "ins", NULL, 0 },
	{ "isindex", NULL, EL_VOID },
	{ "kbd", NULL, 0 },
	{ "label", NULL, 0 },
	{ "legend", NULL, 0 },
	{ "li", " ", 0 },
	{ "link", NULL, EL_VOID },
	{ "listing", "\n\n", 0 },
	{ "main", NULL, 0 },
	{ "map", NULL, 0 },
	{ "marquee", NULL, EL_STYLE },
	{ "menu", NULL, 0 },
	{ "meta", NULL, EL_VOID },
	{ "nav", NULL, 0 },
	{ "nobr", NULL, 0 },
	{ "noframes", NULL, 0 },
	{ "noscript", NULL, 0 },
	{ "object", NULL, 0 },
	{ "ol", NULL, 0 },
	{ "optgroup", NULL, 0 },
	{ "option", NULL, 0 },
	{ "p", "\n\n", EL_STYLE },
	{ "param", NULL, EL_VOID },
	{ "plaintext", "\n\n", 0 },
	{ "pre", "\n\n", 0 },
	{ "q", NULL, 0 },
	{ "s", NULL, 0 },
	{ "samp", NULL, 0 },
	{ "script", NULL, 0 },
	{ "section", NULL, 0 },
	{ "select", NULL, 0 },
	{ "small", NULL, EL_STYLE },
	{ "span", NULL, EL_STYLE },
	{ "strike", NULL, 0 },
	{ "strong", NULL, 0 },
	{ "style", NULL, 0 },
	{ "sub", NULL, 0 },
	{ "sup", NULL, 0 },
	{ "table", NULL, EL_STYLE },
	{ "tbody", NULL, 0 },
	{ "td", " ", EL_STYLE },
	{ "textarea", NULL, 0 },
	{ "tfoot", NULL, 0 },
	{ "th", " ", EL_STYLE },
	{ "thead", NULL, 0 },
	{ "title", "\n\n", 0 },
	{ "tr", NULL, EL_STYLE },
	{ "tt", NULL, 0 },
	{ "u", NULL, 0 },
	{ "ul", NULL, 0 },
	{ "var", NULL, 0 },
	{ "x-sigsep", NULL, 0 },
	{ "x-tab", NULL, 0 },
	{ "xmp", "\n\n", 0 },
};

static const struct element *find_element(const char *name)
{
	size_t lo = 0, hi = ARRAY_LEN(elements);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(elements[mid].name, name);
		if (c == 0)
			return &elements[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- colours ------------------------------------------------------------------- */

static bool is_css_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

#define COLOUR_INVALID (-2) /* SpamAssassin's "invalid": it hides the text */

/* The named colours of CSS, sorted by name. */
static const struct {
	const char *name;
	int32_t rgb;
} colour_names[] = {
	{ "aliceblue", 0xf0f8ff }, { "antiquewhite", 0xfaebd7 }, { "aqua", 0x00ffff },
	{ "aquamarine", 0x7fffd4 }, { "azure", 0xf0ffff }, { "beige", 0xf5f5dc },
	{ "bisque", 0xffe4c4 }, { "black", 0x000000 }, { "blanchedalmond", 0xffebcd },
	{ "blue", 0x0000ff }, { "blueviolet", 0x8a2be2 }, { "brown", 0xa52a2a },
	{ "burlywood", 0xdeb887 }, { "cadetblue", 0x5f9ea0 }, { "chartreuse", 0x7fff00 },
	{ "chocolate", 0xd2691e }, { "coral", 0xff7f50 }, { "cornflowerblue", 0x6495ed },
	{ "cornsilk", 0xfff8dc }, { "crimson", 0xdc143c }, { "cyan", 0x00ffff },
	{ "darkblue", 0x00008b }, { "darkcyan", 0x008b8b }, { "darkgoldenrod", 0xb8860b },
	{ "darkgray", 0xa9a9a9 }, { "darkgreen", 0x006400 }, { "darkgrey", 0xa9a9a9 },
	{ "darkkhaki", 0xbdb76b }, { "darkmagenta", 0x8b008b }, { "darkolivegreen", 0x556b2f },
	{ "darkorange", 0xff8c00 }, { "darkorchid", 0x9932cc }, { "darkred", 0x8b0000 },
	{ "darksalmon", 0xe9967a }, { "darkseagreen", 0x8fbc8f }, { "darkslateblue", 0x483d8b },
	{ "darkslategray", 0x2f4f4f }, { "darkslategrey", 0x2f4f4f }, { "darkturquoise", 0x00ced1 },
	{ "darkviolet", 0x9400d3 }, { "deeppink", 0xff1493 }, { "deepskyblue", 0x00bfff },
	{ "dimgray", 0x696969 }, { "dimgrey", 0x696969 }, { "dodgerblue", 0x1e90ff },
	{ "firebrick", 0xb22222 }, { "floralwhite", 0xfffaf0 }, { "forestgreen", 0x228b22 },
	{ "fuchsia", 0xff00ff }, { "gainsboro", 0xdcdcdc }, { "ghostwhite", 0xf8f8ff },
	{ "gold", 0xffd700 }, { "goldenrod", 0xdaa520 }, { "gray", 0x808080 }, { "green", 0x008000 },
	{ "greenyellow", 0xadff2f }, { "grey", 0x808080 }, { "honeydew", 0xf0fff0 },
	{ "hotpink", 0xff69b4 }, { "indianred", 0xcd5c5c }, { "indigo", 0x4b0082 },
	{ "ivory", 0xfffff0 }, { "khaki", 0xf0e68c }, { "lavender", 0xe6e6fa },
	{ "lavenderblush", 0xfff0f5 }, { "lawngreen", 0x7cfc00 }, { "lemonchiffon", 0xfffacd },
	{ "lightblue", 0xadd8e6 }, { "lightcoral", 0xf08080 }, { "lightcyan", 0xe0ffff },
	{ "lightgoldenrodyellow", 0xfafad2 }, { "lightgray", 0xd3d3d3 }, { "lightgreen", 0x90ee90 },
	{ "lightgrey", 0xd3d3d3 }, { "lightpink", 0xffb6c1 }, { "lightsalmon", 0xffa07a },
	{ "lightseagreen", 0x20b2aa }, { "lightskyblue", 0x87cefa }, { "lightslategray", 0x778899 },
	{ "lightslategrey", 0x778899 }, { "lightsteelblue", 0xb0c4de }, { "lightyellow", 0xffffe0 },
	{ "lime", 0x00ff00 }, { "limegreen", 0x32cd32 }, { "linen", 0xfaf0e6 },
	{ "magenta", 0xff00ff }, { "maroon", 0x800000 }, { "mediumaquamarine", 0x66cdaa },
	{ "mediumblue", 0x0000cd }, { "mediumorchid", 0xba55d3 }, { "mediumpurple", 0x9370db },
	{ "mediumseagreen", 0x3cb371 }, { "mediumslateblue", 0x7b68ee },
	{ "mediumspringgreen", 0x00fa9a }, { "mediumturquoise", 0x48d1cc },
	{ "mediumvioletred", 0xc71585 }, { "midnightblue", 0x191970 }, { "mintcream", 0xf5fffa },
	{ "mistyrose", 0xffe4e1 }, { "moccasin", 0xffe4b5 }, { "navajowhite", 0xffdead },
	{ "navy", 0x000080 }, { "oldlace", 0xfdf5e6 }, { "olive", 0x808000 },
	{ "olivedrab", 0x6b8e23 }, { "orange", 0xffa500 }, { "orangered", 0xff4500 },
	{ "orchid", 0xda70d6 }, { "palegoldenrod", 0xeee8aa }, { "palegreen", 0x98fb98 },
	{ "paleturquoise", 0xafeeee }, { "palevioletred", 0xdb7093 }, { "papayawhip", 0xffefd5 },
	{ "peachpuff", 0xffdab9 }, { "peru", 0xcd853f }, { "pink", 0xffc0cb }, { "plum", 0xdda0dd },
	{ "powderblue", 0xb0e0e6 }, { "purple", 0x800080 }, { "rebeccapurple", 0x663399 },
	{ "red", 0xff0000 }, { "rosybrown", 0xbc8f8f }, { "royalblue", 0x4169e1 },
	{ "saddlebrown", 0x8b4513 }, { "salmon", 0xfa8072 }, { "sandybrown", 0xf4a460 },
	{ "seagreen", 0x2e8b57 }, { "seashell", 0xfff5ee }, { "sienna", 0xa0522d },
	{ "silver", 0xc0c0c0 }, { "skyblue", 0x87ceeb }, { "slateblue", 0x6a5acd },
	{ "slategray", 0x708090 }, { "slategrey", 0x708090 }, { "snow", 0xfffafa },
	{ "springgreen", 0x00ff7f }, { "steelblue", 0x4682b4 }, { "tan", 0xd2b48c },
	{ "teal", 0x008080 }, { "thistle", 0xd8bfd8 }, { "tomato", 0xff6347 },
	{ "turquoise", 0x40e0d0 }, { "violet", 0xee82ee }, { "wheat", 0xf5deb3 },
	{ "white", 0xffffff }, { "whitesmoke", 0xf5f5f5 }, { "yellow", 0xffff00 },
	{ "yellowgreen", 0x9acd32 },
};

static void trim_colour(const char **s, size_t *n)
{
	while (*n > 0 && is_css_space(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && is_css_space((*s)[*n - 1]))
		(*n)--;
}

static int32_t named_colour(const char *s, size_t n)
{
	char name[24];
	if (n == 0 || n >= sizeof(name))
		return -1;
	for (size_t i = 0; i < n; i++)
		name[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
	name[n] = '\0';
	size_t lo = 0, hi = ARRAY_LEN(colour_names);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(colour_names[mid].name, name);
		if (c == 0)
			return colour_names[mid].rgb;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* "rgb(r, g, b)" (numbers or percentages) after the "rgb(". */
static int32_t rgb_function(const char *s, size_t n)
{
	int32_t rgb = 0;
	size_t i = 0;
	for (int k = 0; k < 3; k++) {
		while (i < n && (s[i] == ' ' || s[i] == ','))
			i++;
		long v = 0;
		size_t start = i;
		while (i < n && s[i] >= '0' && s[i] <= '9' && v < 10000)
			v = v * 10 + (s[i++] - '0');
		while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			i++; /* decimals and digits past the bound */
		if (i == start)
			return -1;
		if (i < n && s[i] == '%') {
			v = v * 255 / 100;
			i++;
		}
		rgb = rgb << 8 | (int32_t)(v > 255 ? 255 : v);
	}
	return rgb;
}

static int32_t rgb_colour(const char *s, size_t n)
{
	const char *open = memchr(s, '(', n);
	return open != NULL ? rgb_function(open + 1, n - (size_t)(open + 1 - s)) : -1;
}

/* A colour as browsers read HTML attributes and CSS: a name, #rgb,
 * #rrggbb (also without '#', as old mail writes it), rgb(); -1 if it is
 * none of them. */
static int32_t parse_colour(const char *s, size_t n)
{
	trim_colour(&s, &n);
	if (n >= 4 && strncasecmp(s, "rgb", 3) == 0)
		return rgb_colour(s, n);
	int32_t named = named_colour(s, n);
	if (named >= 0)
		return named;
	if (n > 0 && s[0] == '#') {
		s++;
		n--;
	}
	if (n != 3 && n != 6)
		return -1;
	int32_t rgb = 0;
	for (size_t k = 0; k < n; k++) {
		int d = str_hex_digit(s[k]);
		if (d < 0)
			return -1;
		rgb = n == 3 ? rgb << 8 | d << 4 | d : rgb << 4 | d;
	}
	return rgb;
}

/* A colour as SpamAssassin reads it: a name, rgb(), or '#' and hex digits
 * (others skipped, cut or padded to three or six); anything else is
 * COLOUR_INVALID. */
static int32_t parse_colour_sa(const char *s, size_t n)
{
	trim_colour(&s, &n);
	if (n >= 4 && memmem(s, n, "rgb(", 4) != NULL)
		return rgb_colour(s, n);
	int32_t named = named_colour(s, n);
	if (named >= 0)
		return named;
	if (n == 0 || s[0] != '#')
		return COLOUR_INVALID;
	char hex[6];
	size_t h = 0;
	for (size_t i = 1; i < n; i++) {
		if (str_hex_digit(s[i]) < 0)
			continue;
		if (h < 6)
			hex[h] = s[i];
		h++;
	}
	if (h > 6)
		h = 6;
	if (h > 3 && h < 6)
		h = 3;
	while (h % 3 != 0)
		hex[h++] = '0';
	int32_t rgb = 0;
	for (size_t k = 0; k < h; k++)
		rgb = h == 3 ? rgb << 8 | str_hex_digit(hex[k]) << 4 | str_hex_digit(hex[k])
			     : rgb << 4 | str_hex_digit(hex[k]);
	return rgb;
}

/* Text this colour on that background is as good as invisible: the same,
 * or closer than 12 in a brightness-weighted distance (SpamAssassin's
 * measure of "low contrast"). */
static bool too_close(int32_t fg, int32_t bg)
{
	if (fg < 0 || bg < 0)
		return false;
	double dr = 0.2126 * (((fg >> 16) & 0xff) - ((bg >> 16) & 0xff));
	double dg = 0.7152 * (((fg >> 8) & 0xff) - ((bg >> 8) & 0xff));
	double db = 0.0722 * ((fg & 0xff) - (bg & 0xff));
	return dr * dr + dg * dg + db * db < 12.0 * 12.0;
}

/* ---- styles ---------------------------------------------------------------------- */

void html_style_init(struct html_renderer *r)
{
	struct html_style *s = &r->styles[0];
	memset(s, 0, sizeof(*s));
	s->look.fg = 0x000000;
	s->look.bg = 0xffffff;
	s->look.size = 3;
	s->sa = s->look;
	r->depth = 1;
	r->basefont = 3;
}

bool html_style_hidden(const struct html_renderer *r)
{
	const struct html_look *l = &r->styles[r->depth - 1].look;
	return l->hidden || l->size < 1 || too_close(l->fg, l->bg);
}

bool html_style_hidden_sa(const struct html_renderer *r)
{
	const struct html_look *l = &r->styles[r->depth - 1].sa;
	return l->hidden || l->size <= 1 || l->fg == COLOUR_INVALID || l->bg == COLOUR_INVALID ||
	       too_close(l->fg, l->bg);
}

static bool on_stack(const struct html_renderer *r, const char *tag)
{
	for (size_t k = r->depth; k > 1; k--)
		if (strcmp(r->styles[k - 1].tag, tag) == 0)
			return true;
	return false;
}

/* Pop the styles up to and including the innermost one of tag. */
static void close_style(struct html_renderer *r, const char *tag)
{
	if (!on_stack(r, tag))
		return;
	while (r->depth > 1) {
		bool found = strcmp(r->styles[r->depth - 1].tag, tag) == 0;
		r->depth--;
		if (found)
			return;
	}
}

/* A <td> or <tr> ends the cell (or row) before it, whose end tag is
 * optional. */
static void close_table_style(struct html_renderer *r, const char *tag)
{
	if (!on_stack(r, tag))
		return;
	bool row = strcmp(tag, "tr") == 0;
	while (r->depth > 1) {
		const char *top = r->styles[r->depth - 1].tag;
		if (strcmp(top, "font") == 0 || strcmp(top, "td") == 0 ||
		    (row && strcmp(top, "tr") == 0))
			r->depth--;
		else
			break;
	}
}

/* A number with its unit, e.g. "0.5em": value and the unit's letters. */
static double css_number(const char *s, size_t n, const char **unit_r)
{
	double v = 0, scale = 0;
	size_t i = 0;
	for (; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'); i++) {
		if (s[i] == '.') {
			scale = scale == 0 ? 1 : scale;
			continue;
		}
		if (v < 1e6)
			v = v * 10 + (s[i] - '0');
		if (scale != 0)
			scale *= 10;
	}
	*unit_r = s + i;
	return i == 0 ? -1 : (scale != 0 ? v / scale : v);
}

/* Is this CSS font-size too small to read? */
static bool tiny_font(const char *v, size_t n)
{
	const char *unit;
	double x = css_number(v, n, &unit);
	if (x < 0)
		return false;
	size_t ulen = n - (size_t)(unit - v);
	if (ulen >= 2 && (strncasecmp(unit, "px", 2) == 0 || strncasecmp(unit, "pt", 2) == 0))
		return x < 3;
	if (ulen >= 2 && (strncasecmp(unit, "em", 2) == 0 || strncasecmp(unit, "re", 2) == 0))
		return x < 0.2;
	if (ulen >= 1 && unit[0] == '%')
		return x < 20;
	return x == 0 || (ulen == 0 && x < 3);
}

static bool value_is(const char *v, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(v, word, n) == 0;
}

/* The background colour of a CSS background value: its first word that is
 * a colour; "transparent" is the parent's. */
static void css_background(struct html_look *l, int32_t parent_bg, const char *v, size_t n,
			   int32_t (*colour)(const char *, size_t))
{
	size_t i = 0;
	while (i < n) {
		while (i < n && v[i] == ' ')
			i++;
		size_t w = i;
		int paren = 0;
		while (i < n && (v[i] != ' ' || paren > 0)) {
			paren += v[i] == '(' ? 1 : v[i] == ')' ? -1 : 0;
			i++;
		}
		if (value_is(v + w, i - w, "transparent")) {
			l->bg = parent_bg;
			return;
		}
		int32_t c = colour(v + w, i - w);
		if (c >= 0) {
			l->bg = c;
			return;
		}
	}
}

/* One "property: value" of a style attribute; sa: only what SpamAssassin
 * reads (colours, display, visibility). */
static void css_declaration(struct html_look *l, int32_t parent_bg, const char *p, size_t n,
			    bool sa)
{
	const char *colon = memchr(p, ':', n);
	if (colon == NULL)
		return;
	const char *name = p, *v = colon + 1;
	size_t name_len = (size_t)(colon - p), vlen = n - name_len - 1;
	while (name_len > 0 && is_css_space(*name)) {
		name++;
		name_len--;
	}
	while (name_len > 0 && is_css_space(name[name_len - 1]))
		name_len--;
	while (vlen > 0 && is_css_space(*v)) {
		v++;
		vlen--;
	}
	const char *bang = memchr(v, '!', vlen); /* "!important" */
	if (bang != NULL)
		vlen = (size_t)(bang - v);
	while (vlen > 0 && is_css_space(v[vlen - 1]))
		vlen--;
	int32_t (*colour)(const char *, size_t) = sa ? parse_colour_sa : parse_colour;
	if (value_is(v, vlen, "inherit")) {
		return;
	} else if (value_is(name, name_len, "color")) {
		int32_t c = value_is(v, vlen, "transparent") ? l->bg : colour(v, vlen);
		if (c != -1)
			l->fg = c;
	} else if (sa && value_is(name, name_len, "background-color")) {
		int32_t c = value_is(v, vlen, "transparent") ? parent_bg : colour(v, vlen);
		if (c != -1)
			l->bg = c;
	} else if (value_is(name, name_len, "background-color") ||
		   value_is(name, name_len, "background")) {
		css_background(l, parent_bg, v, vlen, colour);
	} else if (value_is(name, name_len, "display")) {
		if (value_is(v, vlen, "none"))
			l->hidden = true;
	} else if (value_is(name, name_len, "visibility")) {
		if (value_is(v, vlen, "hidden") || (!sa && value_is(v, vlen, "collapse")))
			l->hidden = true;
	} else if (sa) {
		return;
	} else if (value_is(name, name_len, "opacity")) {
		const char *unit;
		double x = css_number(v, vlen, &unit);
		if (x >= 0 && x < 0.1)
			l->hidden = true;
	} else if (value_is(name, name_len, "font-size")) {
		if (tiny_font(v, vlen))
			l->hidden = true;
	}
}

static void css_style(struct html_look *l, int32_t parent_bg, const char *css, size_t n, bool sa)
{
	size_t i = 0;
	while (i < n) {
		const char *semi = memchr(css + i, ';', n - i);
		size_t e = semi != NULL ? (size_t)(semi - css) : n;
		css_declaration(l, parent_bg, css + i, e - i, sa);
		i = e + 1;
	}
}

/* <font size="2">, "+1", "-2". */
static int font_size(const struct html_renderer *r, const char *v, int current)
{
	while (*v == ' ')
		v++;
	int sign = *v == '+' ? 1 : *v == '-' ? -1 : 0;
	const char *d = sign != 0 ? v + 1 : v;
	if (*d < '0' || *d > '9')
		return current;
	int n = 0;
	while (*d >= '0' && *d <= '9' && n < 100)
		n = n * 10 + (*d++ - '0');
	return sign != 0 ? r->basefont + sign * n : n;
}

static void set_colour(int32_t *to, const char *v, int32_t (*colour)(const char *, size_t))
{
	int32_t c = v != NULL ? colour(v, strlen(v)) : -1;
	if (c != -1)
		*to = c;
}

/* The look a reader sees: every colour, size and style attribute. */
static void reader_look(const struct html_renderer *r, const char *tag, struct html_look *l,
			int32_t parent_bg)
{
	if (strcmp(tag, "big") == 0)
		l->size++;
	else if (strcmp(tag, "small") == 0)
		l->size--;
	set_colour(&l->fg, html_attr(r, "color", NULL), parse_colour);
	set_colour(&l->fg, html_attr(r, "text", NULL), parse_colour);
	set_colour(&l->bg, html_attr(r, "bgcolor", NULL), parse_colour);
	const char *v;
	if (strcmp(tag, "font") == 0 && (v = html_attr(r, "size", NULL)) != NULL)
		l->size = font_size(r, v, l->size);
	size_t n;
	if ((v = html_attr(r, "style", &n)) != NULL)
		css_style(l, parent_bg, v, n, false);
	if (html_attr(r, "hidden", NULL) != NULL)
		l->hidden = true;
}

/* The look SpamAssassin reckons: the elements and attributes it reads. */
static void sa_look(const struct html_renderer *r, const char *tag, struct html_look *l,
		    int32_t parent_bg)
{
	static const char *const styled[] = { "table", "td", "tr", "span", "p", "div", "a" };
	if (strcmp(tag, "big") == 0) {
		l->size++;
	} else if (strcmp(tag, "small") == 0) {
		l->size--;
	} else if (strcmp(tag, "font") == 0) {
		set_colour(&l->fg, html_attr(r, "color", NULL), parse_colour_sa);
		const char *v = html_attr(r, "size", NULL);
		if (v != NULL)
			l->size = font_size(r, v, l->size);
	} else if (strcmp(tag, "body") == 0) {
		set_colour(&l->fg, html_attr(r, "text", NULL), parse_colour_sa);
	} else {
		for (size_t i = 0; i < ARRAY_LEN(styled); i++) {
			size_t n;
			const char *v;
			if (strcmp(tag, styled[i]) == 0 && (v = html_attr(r, "style", &n)) != NULL)
				css_style(l, parent_bg, v, n, true);
		}
	}
}

/* An element that sets a text style starts (sa: one SpamAssassin follows). */
static void push_style(struct html_renderer *r, const char *tag, bool sa)
{
	if (strcmp(tag, "th") == 0)
		tag = "td";
	if (strcmp(tag, "td") == 0 || strcmp(tag, "tr") == 0)
		close_table_style(r, tag);
	if (r->depth == HTML_STYLE_DEPTH)
		return; /* deeper elements share the innermost style kept */
	const struct html_style *parent = &r->styles[r->depth - 1];
	struct html_style *s = &r->styles[r->depth++];
	*s = *parent;
	snprintf(s->tag, sizeof(s->tag), "%s", tag);
	reader_look(r, tag, &s->look, parent->look.bg);
	if (sa)
		sa_look(r, tag, &s->sa, parent->sa.bg);
}

/* ---- tags ------------------------------------------------------------------------ */

void html_start_tag(struct html_renderer *r, const char *name)
{
	const struct element *e = find_element(name);
	if (e == NULL)
		return;
	if (strcmp(name, "basefont") == 0) {
		const char *v = html_attr(r, "size", NULL);
		if (v != NULL)
			r->basefont = font_size(r, v, r->basefont);
	} else if ((e->flags & EL_STYLE) != 0) {
		push_style(r, name, true);
	} else if ((e->flags & EL_VOID) == 0 &&
		   (html_attr(r, "style", NULL) != NULL || html_attr(r, "hidden", NULL) != NULL)) {
		push_style(r, name, false);
	}
	if (e->space != NULL)
		html_put_space(r, e->space);
	html_tag_links(r, name);
}

void html_end_tag(struct html_renderer *r, const char *name)
{
	const struct element *e = find_element(name);
	if (e == NULL)
		return;
	/* text after </body> is still shown: its style stays */
	if ((e->flags & EL_VOID) == 0 && strcmp(name, "body") != 0)
		close_style(r, strcmp(name, "th") == 0 ? "td" : name);
	if (e->space != NULL)
		html_put_space(r, e->space);
	if (strcmp(name, "a") == 0)
		html_links_finish(r);
}
