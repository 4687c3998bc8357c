/*
 * html_entities.c - HTML character references (numeric, and the named
 * ones mail uses: HTML 4's Latin-1, special and common symbol sets) decoded
 * to UTF-8, for the spam tests' HTML renderer (html_text.c).
 *
 * Read as browsers read them, within reason: "&#65;", "&#x41;" and
 * "&name;"; the numeric forms and the legacy Latin-1 names also without
 * the ';' (not in an attribute value when a letter, digit or '=' follows:
 * "?a=1&copy=2" stays as written there). A reference to NUL, a surrogate
 * or past U+10FFFF gives U+FFFD; Windows-1252's C1 mapping of 0x80-0x9F
 * is applied as browsers do ("&#150;" is an en dash). "&nbsp;" in an
 * attribute value is a space, as SpamAssassin reads it.
 *
 * Untrusted input: the text of HTML parts. Privilege: unprivileged
 * scanners and `postern scan`.
 */
#include "../lib/strutil.h"
#include "html_text.h"

#include <string.h>

struct entity {
	const char *name;
	uint32_t cp;
	bool legacy; /* also recognised without ';' */
};

/* Sorted by name (byte order, as strcmp): looked up by binary search. */
static const struct entity entities[] = {
	{ "AElig", 0x00C6, true },
	{ "Aacute", 0x00C1, true },
	{ "Acirc", 0x00C2, true },
	{ "Agrave", 0x00C0, true },
	{ "Alpha", 0x0391, false },
	{ "Aring", 0x00C5, true },
	{ "Atilde", 0x00C3, true },
	{ "Auml", 0x00C4, true },
	{ "Beta", 0x0392, false },
	{ "Ccedil", 0x00C7, true },
	{ "Dagger", 0x2021, false },
	{ "Delta", 0x0394, false },
	{ "ETH", 0x00D0, true },
	{ "Eacute", 0x00C9, true },
	{ "Ecirc", 0x00CA, true },
	{ "Egrave", 0x00C8, true },
	{ "Euml", 0x00CB, true },
	{ "Gamma", 0x0393, false },
	{ "Iacute", 0x00CD, true },
	{ "Icirc", 0x00CE, true },
	{ "Igrave", 0x00CC, true },
	{ "Iuml", 0x00CF, true },
	{ "Ntilde", 0x00D1, true },
	{ "OElig", 0x0152, false },
	{ "Oacute", 0x00D3, true },
	{ "Ocirc", 0x00D4, true },
	{ "Ograve", 0x00D2, true },
	{ "Omega", 0x03A9, false },
	{ "Oslash", 0x00D8, true },
	{ "Otilde", 0x00D5, true },
	{ "Ouml", 0x00D6, true },
	{ "Prime", 0x2033, false },
	{ "Scaron", 0x0160, false },
	{ "THORN", 0x00DE, true },
	{ "Uacute", 0x00DA, true },
	{ "Ucirc", 0x00DB, true },
	{ "Ugrave", 0x00D9, true },
	{ "Uuml", 0x00DC, true },
	{ "Yacute", 0x00DD, true },
	{ "Yuml", 0x0178, false },
	{ "aacute", 0x00E1, true },
	{ "acirc", 0x00E2, true },
	{ "acute", 0x00B4, true },
	{ "aelig", 0x00E6, true },
	{ "agrave", 0x00E0, true },
	{ "alpha", 0x03B1, false },
	{ "amp", 0x0026, true },
	{ "and", 0x2227, false },
	{ "ang", 0x2220, false },
	{ "apos", 0x0027, false },
	{ "aring", 0x00E5, true },
	{ "asymp", 0x2248, false },
	{ "atilde", 0x00E3, true },
	{ "auml", 0x00E4, true },
	{ "bdquo", 0x201E, false },
	{ "beta", 0x03B2, false },
	{ "brvbar", 0x00A6, true },
	{ "bull", 0x2022, false },
	{ "cap", 0x2229, false },
	{ "ccedil", 0x00E7, true },
	{ "cedil", 0x00B8, true },
	{ "cent", 0x00A2, true },
	{ "circ", 0x02C6, false },
	{ "clubs", 0x2663, false },
	{ "cong", 0x2245, false },
	{ "copy", 0x00A9, true },
	{ "cup", 0x222A, false },
	{ "curren", 0x00A4, true },
	{ "dArr", 0x21D3, false },
	{ "dagger", 0x2020, false },
	{ "darr", 0x2193, false },
	{ "deg", 0x00B0, true },
	{ "delta", 0x03B4, false },
	{ "diams", 0x2666, false },
	{ "divide", 0x00F7, true },
	{ "eacute", 0x00E9, true },
	{ "ecirc", 0x00EA, true },
	{ "egrave", 0x00E8, true },
	{ "empty", 0x2205, false },
	{ "emsp", 0x2003, false },
	{ "ensp", 0x2002, false },
	{ "epsilon", 0x03B5, false },
	{ "equiv", 0x2261, false },
	{ "eth", 0x00F0, true },
	{ "euml", 0x00EB, true },
	{ "euro", 0x20AC, false },
	{ "exist", 0x2203, false },
	{ "fnof", 0x0192, false },
	{ "forall", 0x2200, false },
	{ "frac12", 0x00BD, true },
	{ "frac14", 0x00BC, true },
	{ "frac34", 0x00BE, true },
	{ "frasl", 0x2044, false },
	{ "gamma", 0x03B3, false },
	{ "ge", 0x2265, false },
	{ "gt", 0x003E, true },
	{ "hArr", 0x21D4, false },
	{ "harr", 0x2194, false },
	{ "hearts", 0x2665, false },
	{ "hellip", 0x2026, false },
	{ "iacute", 0x00ED, true },
	{ "icirc", 0x00EE, true },
	{ "iexcl", 0x00A1, true },
	{ "igrave", 0x00EC, true },
	{ "image", 0x2111, false },
	{ "infin", 0x221E, false },
	{ "int", 0x222B, false },
	{ "iquest", 0x00BF, true },
	{ "isin", 0x2208, false },
	{ "iuml", 0x00EF, true },
	{ "lArr", 0x21D0, false },
	{ "lambda", 0x03BB, false },
	{ "lang", 0x2329, false },
	{ "laquo", 0x00AB, true },
	{ "larr", 0x2190, false },
	{ "lceil", 0x2308, false },
	{ "ldquo", 0x201C, false },
	{ "le", 0x2264, false },
	{ "lfloor", 0x230A, false },
	{ "lowast", 0x2217, false },
	{ "loz", 0x25CA, false },
	{ "lrm", 0x200E, false },
	{ "lsaquo", 0x2039, false },
	{ "lsquo", 0x2018, false },
	{ "lt", 0x003C, true },
	{ "macr", 0x00AF, true },
	{ "mdash", 0x2014, false },
	{ "micro", 0x00B5, true },
	{ "middot", 0x00B7, true },
	{ "minus", 0x2212, false },
	{ "mu", 0x03BC, false },
	{ "nabla", 0x2207, false },
	{ "nbsp", 0x00A0, true },
	{ "ndash", 0x2013, false },
	{ "ne", 0x2260, false },
	{ "not", 0x00AC, true },
	{ "notin", 0x2209, false },
	{ "ntilde", 0x00F1, true },
	{ "oacute", 0x00F3, true },
	{ "ocirc", 0x00F4, true },
	{ "oelig", 0x0153, false },
	{ "ograve", 0x00F2, true },
	{ "oline", 0x203E, false },
	{ "omega", 0x03C9, false },
	{ "oplus", 0x2295, false },
	{ "or", 0x2228, false },
	{ "ordf", 0x00AA, true },
	{ "ordm", 0x00BA, true },
	{ "oslash", 0x00F8, true },
	{ "otilde", 0x00F5, true },
	{ "otimes", 0x2297, false },
	{ "ouml", 0x00F6, true },
	{ "para", 0x00B6, true },
	{ "part", 0x2202, false },
	{ "permil", 0x2030, false },
	{ "perp", 0x22A5, false },
	{ "pi", 0x03C0, false },
	{ "plusmn", 0x00B1, true },
	{ "pound", 0x00A3, true },
	{ "prime", 0x2032, false },
	{ "prod", 0x220F, false },
	{ "prop", 0x221D, false },
	{ "quot", 0x0022, true },
	{ "rArr", 0x21D2, false },
	{ "radic", 0x221A, false },
	{ "rang", 0x232A, false },
	{ "raquo", 0x00BB, true },
	{ "rarr", 0x2192, false },
	{ "rceil", 0x2309, false },
	{ "rdquo", 0x201D, false },
	{ "real", 0x211C, false },
	{ "reg", 0x00AE, true },
	{ "rfloor", 0x230B, false },
	{ "rlm", 0x200F, false },
	{ "rsaquo", 0x203A, false },
	{ "rsquo", 0x2019, false },
	{ "sbquo", 0x201A, false },
	{ "scaron", 0x0161, false },
	{ "sdot", 0x22C5, false },
	{ "sect", 0x00A7, true },
	{ "shy", 0x00AD, true },
	{ "sigma", 0x03C3, false },
	{ "sim", 0x223C, false },
	{ "spades", 0x2660, false },
	{ "sub", 0x2282, false },
	{ "sube", 0x2286, false },
	{ "sum", 0x2211, false },
	{ "sup", 0x2283, false },
	{ "sup1", 0x00B9, true },
	{ "sup2", 0x00B2, true },
	{ "sup3", 0x00B3, true },
	{ "supe", 0x2287, false },
	{ "szlig", 0x00DF, true },
	{ "there4", 0x2234, false },
	{ "thinsp", 0x2009, false },
	{ "thorn", 0x00FE, true },
	{ "tilde", 0x02DC, false },
	{ "times", 0x00D7, true },
	{ "trade", 0x2122, false },
	{ "uArr", 0x21D1, false },
	{ "uacute", 0x00FA, true },
	{ "uarr", 0x2191, false },
	{ "ucirc", 0x00FB, true },
	{ "ugrave", 0x00F9, true },
	{ "uml", 0x00A8, true },
	{ "uuml", 0x00FC, true },
	{ "weierp", 0x2118, false },
	{ "yacute", 0x00FD, true },
	{ "yen", 0x00A5, true },
	{ "yuml", 0x00FF, true },
	{ "zwj", 0x200D, false },
	{ "zwnj", 0x200C, false },
};

/* What browsers make of the C1 range in a numeric reference (the
 * Windows-1252 characters there); 0 keeps the code point. */
static const uint16_t c1_map[32] = {
	0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
	0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

size_t html_utf8_put(uint32_t cp, char out[4])
{
	if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		cp = 0xFFFD;
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* "&#..." at s: the bytes it takes, 0 if it is no reference. */
static size_t numeric(const char *s, size_t len, uint32_t *cp_r)
{
	size_t i = 2;
	bool hex = i < len && (s[i] == 'x' || s[i] == 'X');
	if (hex)
		i++;
	size_t digits = 0;
	uint32_t cp = 0;
	for (; i < len; i++, digits++) {
		int v = hex ? str_hex_digit(s[i]) : (s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : -1);
		if (v < 0)
			break;
		if (cp <= 0x10FFFF) /* past it the value only needs to stay invalid */
			cp = cp * (hex ? 16 : 10) + (uint32_t)v;
	}
	if (digits == 0)
		return 0;
	if (i < len && s[i] == ';')
		i++;
	if (cp >= 0x80 && cp <= 0x9F && c1_map[cp - 0x80] != 0)
		cp = c1_map[cp - 0x80];
	*cp_r = cp;
	return i;
}

static const struct entity *find_entity(const char *name, size_t len)
{
	size_t lo = 0, hi = ARRAY_LEN(entities);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *e = entities[mid].name;
		int c = strncmp(e, name, len);
		if (c == 0)
			c = e[len] != '\0' ? 1 : 0;
		if (c == 0)
			return &entities[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

#define ENTITY_NAME_MAX 8 /* the longest name in the table */

size_t html_entity_decode(const char *s, size_t len, bool in_attribute, char out[4],
			  size_t *out_len_r)
{
	if (len < 3 || s[0] != '&')
		return 0;
	uint32_t cp;
	size_t used;
	if (s[1] == '#') {
		used = numeric(s, len, &cp);
	} else {
		size_t n = 1;
		while (n < len && n <= ENTITY_NAME_MAX + 1 && is_alnum(s[n]))
			n++;
		const struct entity *e = n > 1 && n <= ENTITY_NAME_MAX + 1 ? find_entity(s + 1, n - 1)
									 : NULL;
		if (e == NULL)
			return 0;
		bool semicolon = n < len && s[n] == ';';
		if (!semicolon && (!e->legacy || (in_attribute && n < len && s[n] == '=')))
			return 0;
		cp = e->cp;
		if (cp == 0xA0 && semicolon && in_attribute)
			cp = ' '; /* SpamAssassin reads "&nbsp;" as a space before all else */
		used = n + (semicolon ? 1 : 0);
	}
	if (used == 0)
		return 0;
	*out_len_r = html_utf8_put(cp, out);
	return used;
}

void html_decode_entities(const char *s, size_t len, bool in_attribute, buf_t *out)
{
	size_t run = 0, i = 0;
	buf_reserve(out, len);
	while (i < len) {
		const char *amp = memchr(s + i, '&', len - i);
		if (amp == NULL)
			break;
		i = (size_t)(amp - s);
		char utf8[4];
		size_t n;
		size_t used = html_entity_decode(s + i, len - i, in_attribute, utf8, &n);
		if (used == 0) {
			i++;
			continue;
		}
		buf_append(out, s + run, i - run);
		buf_append(out, utf8, n);
		i += used;
		run = i;
	}
	buf_append(out, s + run, len - run);
}
