/*
 * spam_uri.c - URIs in rendered text and the hosts they name (see
 * spam_uri.h).
 *
 * At each place a URI may start (a word boundary, or after one of
 * ><"'`,{[(| or white space) three forms are tried in this order, as
 * SpamAssassin's parser tries them: a known prefix ("http://", "https://",
 * "ftp://", "www" with up to two digits and ".", "ftp.") and then up to
 * 2048 characters that are not a delimiter (><"`}]{[| or white space);
 * an address ("mailto:..." or user@domain, neither part longer than 251
 * characters, no non-ASCII byte); a bare host name ending in a known
 * top-level domain, where it starts after punctuation or white space,
 * with an optional port and path. The search goes on after a match.
 * What was found loses a ')' that no '(' comes before, and the
 * punctuation at its end that clients do not take into a link.
 *
 * Untrusted input: the rendered text of a message. Privilege:
 * unprivileged scanners and `postern scan`.
 */
#include "spam_uri.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/compat.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"

#define KNOWN_RUN_MAX 2048 /* characters after a known prefix */
#define MAIL_PART_MAX 251  /* characters of either part of an address */
#define HOST_MAX 252       /* a bare host name, without its top-level domain */

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* ---- top-level domains ---------------------------------------------------------- */

/* Sorted (strcmp order): every country's, and the generic ones mail sees
 * most (the old ones, and the newer ones frequent in spam or in ham). */
static const char *const country_tlds[] = {
	"ac", "ad", "ae", "af", "ag", "ai", "al", "am", "ao", "aq", "ar", "as", "at",
	"au", "aw", "ax", "az", "ba", "bb", "bd", "be", "bf", "bg", "bh", "bi", "bj",
	"bl", "bm", "bn", "bo", "bq", "br", "bs", "bt", "bv", "bw", "by", "bz", "ca",
	"cc", "cd", "cf", "cg", "ch", "ci", "ck", "cl", "cm", "cn", "co", "cr", "cu",
	"cv", "cw", "cx", "cy", "cz", "de", "dj", "dk", "dm", "do", "dz", "ec", "ee",
	"eg", "eh", "er", "es", "et", "eu", "fi", "fj", "fk", "fm", "fo", "fr", "ga",
	"gb", "gd", "ge", "gf", "gg", "gh", "gi", "gl", "gm", "gn", "gp", "gq", "gr",
	"gs", "gt", "gu", "gw", "gy", "hk", "hm", "hn", "hr", "ht", "hu", "id", "ie",
	"il", "im", "in", "io", "iq", "ir", "is", "it", "je", "jm", "jo", "jp", "ke",
	"kg", "kh", "ki", "km", "kn", "kp", "kr", "kw", "ky", "kz", "la", "lb", "lc",
	"li", "lk", "lr", "ls", "lt", "lu", "lv", "ly", "ma", "mc", "md", "me", "mf",
	"mg", "mh", "mk", "ml", "mm", "mn", "mo", "mp", "mq", "mr", "ms", "mt", "mu",
	"mv", "mw", "mx", "my", "mz", "na", "nc", "ne", "nf", "ng", "ni", "nl", "no",
	"np", "nr", "nu", "nz", "om", "pa", "pe", "pf", "pg", "ph", "pk", "pl", "pm",
	"pn", "pr", "ps", "pt", "pw", "py", "qa", "re", "ro", "rs", "ru", "rw", "sa",
	"sb", "sc", "sd", "se", "sg", "sh", "si", "sj", "sk", "sl", "sm", "sn", "so",
	"sr", "ss", "st", "su", "sv", "sx", "sy", "sz", "tc", "td", "tf", "tg", "th",
	"tj", "tk", "tl", "tm", "tn", "to", "tr", "tt", "tv", "tw", "tz", "ua", "ug",
	"uk", "us", "uy", "uz", "va", "vc", "ve", "vg", "vi", "vn", "vu", "wf", "ws",
	"ye", "yt", "za", "zm", "zw",
};

static const char *const generic_tlds[] = {
	"academy", "accountant", "aero", "africa", "agency", "amsterdam", "app", "arpa", "art",
	"asia", "autos", "bar", "beauty", "berlin", "best", "bet", "bid", "bike",
	"biz", "blog", "boats", "build", "business", "buzz", "cab", "cafe", "cam",
	"capital", "care", "careers", "cash", "casino", "cat", "center", "cfd", "city",
	"click", "cloud", "club", "codes", "com", "company", "consulting", "cool", "coop",
	"credit", "cyou", "date", "dating", "deals", "design", "dev", "diamonds", "digital",
	"directory", "domains", "download", "edu", "education", "email", "energy", "enterprises", "estate",
	"events", "exchange", "expert", "express", "faith", "farm", "finance", "financial", "fit",
	"fitness", "foundation", "fun", "fund", "gal", "game", "games", "gift", "gifts",
	"global", "gold", "gov", "green", "group", "guide", "guru", "hair", "health",
	"help", "holdings", "homes", "host", "house", "how", "icu", "inc", "info",
	"ink", "institute", "insure", "int", "international", "investments", "jobs", "kim", "land",
	"lawyer", "lease", "legal", "lgbt", "life", "limited", "link", "live", "loan",
	"loans", "lol", "london", "love", "ltd", "makeup", "management", "market", "marketing",
	"mba", "media", "men", "menu", "mil", "mobi", "moe", "mom", "money",
	"monster", "motorcycles", "museum", "name", "net", "network", "news", "ninja", "nyc",
	"one", "online", "ooo", "org", "page", "paris", "partners", "party", "pics",
	"pink", "plus", "poker", "porn", "post", "press", "pro", "pub", "quest",
	"racing", "red", "rest", "review", "rich", "rocks", "run", "sale", "sbs",
	"science", "services", "sex", "sexy", "shop", "shopping", "site", "skin", "social",
	"software", "solutions", "space", "store", "stream", "studio", "support", "surf", "systems",
	"tech", "tel", "tips", "today", "tokyo", "tools", "top", "tours", "town",
	"toys", "trade", "trading", "training", "travel", "university", "uno", "vegas", "ventures",
	"video", "vin", "vip", "vote", "wang", "watch", "webcam", "website", "wiki",
	"win", "work", "world", "wtf", "xin", "xxx", "xyz", "yachts", "yoga",
	"zone",
};

static bool in_sorted(const char *const *list, size_t n, const char *label)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(list[mid], label);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static bool known_label(const char *s, size_t n)
{
	char label[64];
	if (n == 0 || n >= sizeof(label))
		return false;
	if (n > 4 && strncasecmp(s, "xn--", 4) == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		label[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
	label[n] = '\0';
	if (n == 2)
		return in_sorted(country_tlds, ARRAY_LEN(country_tlds), label);
	return in_sorted(generic_tlds, ARRAY_LEN(generic_tlds), label);
}

/* A dotted quad. */
static bool ipv4(const char *h, size_t n)
{
	unsigned dots = 0, digits = 0;
	for (size_t i = 0; i < n; i++) {
		if (h[i] == '.') {
			if (digits == 0)
				return false;
			dots++;
			digits = 0;
		} else if (h[i] >= '0' && h[i] <= '9' && digits < 3) {
			digits++;
		} else {
			return false;
		}
	}
	return dots == 3 && digits > 0;
}

bool spam_uri_host_valid(const char *host, size_t len)
{
	while (len > 0 && host[len - 1] == '.')
		len--;
	if (ipv4(host, len))
		return true;
	if (len == 0 || len > 253)
		return false;
	size_t labels = 1;
	for (size_t i = 0; i < len; i++)
		labels += host[i] == '.';
	if (labels < 2)
		return false;
	size_t start = 0;
	for (size_t k = 0; k < labels; k++) {
		const char *dot = memchr(host + start, '.', len - start);
		size_t end = dot != NULL ? (size_t)(dot - host) : len;
		size_t n = end - start;
		const char *l = host + start;
		if (n == 0 || n > 63 || l[0] == '-' || l[n - 1] == '-')
			return false;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)l[i];
			bool ok = c >= 0x80 || is_alpha((char)c) || is_digit((char)c) || c == '-' ||
				  (c == '_' && k + 2 < labels); /* not in the last two labels */
			if (!ok)
				return false;
		}
		start = end + 1;
	}
	return spam_uri_known_tld(host, len);
}

bool spam_uri_known_tld(const char *host, size_t len)
{
	while (len > 0 && host[len - 1] == '.')
		len--;
	const char *dot = memrchr(host, '.', len);
	if (dot == NULL || dot == host)
		return false;
	size_t start = (size_t)(dot - host) + 1;
	return known_label(host + start, len - start);
}

/* ---- the characters that delimit ------------------------------------------------- */

/* Where a link ends. */
static bool end_delim(unsigned char c)
{
	switch (c) {
	case ' ': case '\t': case '\n': case '\r': case '\f': case '\v': case 0x1b:
	case '>': case '<': case '"': case '`': case '}': case ']': case '{': case '[': case '|':
		return true;
	default:
		return false;
	}
}

/* Where an address ends: also ,(' and any byte of a non-ASCII character. */
static bool mail_delim(unsigned char c)
{
	return end_delim(c) || c >= 0x80 || c == ',' || c == '(' || c == '\'';
}

/* Where a link may start, besides a word boundary. */
static bool start_delim(unsigned char c)
{
	switch (c) {
	case ' ': case '\t': case '\n': case '\r': case '\f': case '\v': case 0x1b:
	case '>': case '<': case '"': case '\'': case '`': case ',': case '{': case '[': case '(':
	case '|':
		return true;
	default:
		return false;
	}
}

/* Where a bare host name may start: after punctuation or white space. */
static bool host_start_delim(unsigned char c)
{
	switch (c) {
	case ' ': case '\t': case '\n': case '\r': case '\f': case '\v': case 0x1b:
	case '!': case '"': case '#': case '$': case '&': case '\'': case '(': case ')': case '*':
	case '+': case ',': case '/': case ':': case ';': case '<': case '=': case '>': case '?':
	case '@': case '[': case '\\': case ']': case '^': case '`': case '{': case '|': case '}':
	case '~':
		return true;
	default:
		return false;
	}
}

static bool is_word(unsigned char c)
{
	return c >= 0x80 || is_alpha((char)c) || is_digit((char)c) || c == '_';
}

static bool is_host_char(char c)
{
	return is_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '-';
}

/* ---- one line -------------------------------------------------------------------- */

struct line {
	const unsigned char *s;
	size_t len;
	/* for each position, the next one (at or after it) where ... ends */
	uint32_t *next_end, *next_mail, *next_local;
};

static void index_line(struct line *l, buf_t *work)
{
	size_t n = l->len + 1;
	buf_reset(work);
	buf_reserve(work, 3 * n * sizeof(uint32_t) + sizeof(uint32_t));
	uint32_t *base = (uint32_t *)(void *)(((uintptr_t)work->data + 3) & ~(uintptr_t)3);
	l->next_end = base;
	l->next_mail = base + n;
	l->next_local = base + 2 * n;
	l->next_end[l->len] = l->next_mail[l->len] = l->next_local[l->len] = (uint32_t)l->len;
	for (size_t i = l->len; i > 0; i--) {
		unsigned char c = l->s[i - 1];
		uint32_t here = (uint32_t)(i - 1);
		l->next_end[i - 1] = end_delim(c) ? here : l->next_end[i];
		l->next_mail[i - 1] = mail_delim(c) ? here : l->next_mail[i];
		l->next_local[i - 1] = mail_delim(c) || c == '@' ? here : l->next_local[i];
	}
}

static bool boundary_before(const struct line *l, size_t p)
{
	bool before = p > 0 && is_word(l->s[p - 1]);
	bool after = p < l->len && is_word(l->s[p]);
	if (before != after)
		return true;
	if (p > 0 && start_delim(l->s[p - 1]))
		return true;
	return p >= 3 && l->s[p - 3] == 0x1b && l->s[p - 2] == '('; /* ISO-2022 shift */
}

static bool has_prefix(const struct line *l, size_t p, const char *prefix)
{
	size_t n = strlen(prefix);
	return l->len - p >= n && strncasecmp((const char *)l->s + p, prefix, n) == 0;
}

/* A run of 1..max characters from p up to the delimiter next[p]: its end, or 0. */
static size_t run_end(const uint32_t *next, size_t p, size_t max)
{
	size_t e = next[p];
	return e > p && e - p <= max ? e : 0;
}

enum kind { KIND_NONE, KIND_KNOWN, KIND_MAIL, KIND_BARE };

static size_t try_known(const struct line *l, size_t p)
{
	unsigned char c = l->s[p] | 0x20;
	if (c != 'h' && c != 'f' && c != 'w')
		return 0;
	size_t k = 0;
	if (has_prefix(l, p, "http://"))
		k = 7;
	else if (has_prefix(l, p, "https://"))
		k = 8;
	else if (has_prefix(l, p, "ftp://"))
		k = 6;
	else if (has_prefix(l, p, "ftp."))
		k = 4;
	else if (has_prefix(l, p, "www")) {
		k = 3;
		while (k < 5 && p + k < l->len && is_digit((char)l->s[p + k]))
			k++;
		if (p + k >= l->len || l->s[p + k] != '.')
			return 0;
		k++;
	}
	if (k == 0 || p + k >= l->len)
		return 0;
	return run_end(l->next_end, p + k, KNOWN_RUN_MAX);
}

static size_t try_mail(const struct line *l, size_t p)
{
	if ((l->s[p] | 0x20) == 'm' && has_prefix(l, p, "mailto:") && p + 7 < l->len) {
		size_t e = run_end(l->next_mail, p + 7, KNOWN_RUN_MAX);
		if (e != 0)
			return e;
	}
	size_t at = run_end(l->next_local, p, MAIL_PART_MAX);
	if (at == 0 || at >= l->len || l->s[at] != '@' || at + 1 >= l->len)
		return 0;
	return run_end(l->next_mail, at + 1, MAIL_PART_MAX);
}

/* What may follow a bare host name ending at e: ".", ":port", "/path". */
static size_t bare_tail(const struct line *l, size_t e)
{
	size_t i = e;
	if (i < l->len && l->s[i] == '.')
		i++;
	if (i + 1 < l->len && l->s[i] == ':' && is_digit((char)l->s[i + 1])) {
		size_t d = i + 1;
		while (d < l->len && is_digit((char)l->s[d]))
			d++;
		if (d - (i + 1) > 5)
			return 0;
		i = d;
	}
	if (i < l->len && l->s[i] == '/') {
		size_t e2 = run_end(l->next_end, i + 1 < l->len ? i + 1 : l->len, KNOWN_RUN_MAX);
		if (i + 1 >= l->len || e2 == 0)
			return 0;
		i = e2;
	}
	return i == l->len || end_delim(l->s[i]) ? i : 0;
}

static size_t try_bare(const struct line *l, size_t p)
{
	if (p > 0 && !host_start_delim(l->s[p - 1]))
		return 0;
	if (!is_alpha((char)l->s[p]) && !is_digit((char)l->s[p]))
		return 0;
	size_t run = p;
	while (run < l->len && is_host_char((char)l->s[run]))
		run++;
	/* the host ends at the run's end, or before a '.' that ends the run */
	size_t ends[2] = { run, run > p + 1 && l->s[run - 1] == '.' ? run - 1 : 0 };
	for (size_t k = 0; k < 2; k++) {
		size_t e = ends[k];
		if (e == 0)
			continue;
		const void *dot = memrchr(l->s + p, '.', e - p);
		if (dot == NULL)
			continue;
		size_t d = (size_t)((const unsigned char *)dot - l->s);
		if (d == p || d - p > HOST_MAX || !known_label((const char *)l->s + d + 1, e - d - 1))
			continue;
		size_t end = bare_tail(l, e);
		if (end != 0)
			return end;
	}
	return 0;
}

/* The part of a match a client takes into its link: a ')' before any '('
 * ends it (the last such one), and so does punctuation at its end. */
static size_t trim_match(const unsigned char *s, size_t n)
{
	const void *open = memchr(s, '(', n);
	size_t before = open != NULL ? (size_t)((const unsigned char *)open - s) : n;
	const void *close = memrchr(s, ')', before);
	if (close != NULL)
		n = (size_t)((const unsigned char *)close - s);
	while (n > 0 && strchr("-~!@#^&*()_+=:;'?,.", s[n - 1]) != NULL && s[n - 1] != '\0')
		n--;
	return n;
}

/* Is "scheme:" or "scheme://" all there is? */
static bool only_scheme(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && is_word((unsigned char)s[i]))
		i++;
	if (i == 0 || i >= n || s[i] != ':')
		return false;
	i++;
	size_t slashes = 0;
	while (i < n && s[i] == '/' && slashes < 2) {
		i++;
		slashes++;
	}
	return i == n;
}

/* "www.", "www2.", "www12." */
static bool www_prefix(const char *s, size_t n)
{
	if (n < 4 || strncasecmp(s, "www", 3) != 0)
		return false;
	size_t i = 3;
	while (i < 5 && i < n && is_digit(s[i]))
		i++;
	return i < n && s[i] == '.';
}

static void found_match(const unsigned char *s, size_t n, enum kind kind, buf_t *out,
			spam_uri_found_fn *found, void *arg)
{
	n = trim_match(s, n);
	const char *raw = (const char *)s;
	if (n == 0 || (kind == KIND_MAIL && memchr(raw, '@', n) == NULL))
		return;
	if (n >= 4 && (strncasecmp(raw, "cid:", 4) == 0 || strncasecmp(raw, "mid:", 4) == 0))
		return;
	if (only_scheme(raw, n))
		return;
	buf_reset(out);
	bool schemeless = !(n >= 5 && strncasecmp(raw, "http:", 5) == 0) &&
			  !(n >= 6 && strncasecmp(raw, "https:", 6) == 0) &&
			  !(n >= 4 && strncasecmp(raw, "ftp:", 4) == 0) &&
			  !(n >= 7 && strncasecmp(raw, "mailto:", 7) == 0);
	const char *at = memchr(raw, '@', n);
	const char *last_at = memrchr(raw, '@', n);
	const char *slash = memchr(raw, '/', n);
	if (!schemeless) {
		/* as written */
	} else if (n >= 4 && strncasecmp(raw, "ftp.", 4) == 0) {
		buf_puts(out, "ftp://");
	} else if (www_prefix(raw, n)) {
		buf_puts(out, "http://");
	} else if (slash != NULL && last_at != NULL && last_at > slash + 1) {
		buf_puts(out, "http://"); /* a '/' before the '@': no address */
	} else if (at != NULL) {
		size_t after = (size_t)(at - raw) + 2;
		if (after >= n || memchr(raw + after, '.', n - after) == NULL ||
		    memmem(raw, n, "&nbsp;", 6) != NULL)
			return;
		/* "mail:", "email:", "skype:" and colons written before an address */
		static const char *const junk[] = { "skype", "e-mail", "email", "mail", "" };
		for (size_t k = 0; k < ARRAY_LEN(junk); k++) {
			size_t jl = strlen(junk[k]);
			if (n > jl && strncasecmp(raw, junk[k], jl) == 0 && raw[jl] == ':') {
				raw += jl;
				n -= jl;
				while (n > 0 && *raw == ':') {
					raw++;
					n--;
				}
				break;
			}
		}
		buf_puts(out, "mailto:");
	} else {
		if (memchr(raw, '.', n) == NULL)
			return;
		buf_puts(out, "http://");
	}
	buf_append(out, raw, n);
	/* a link to no valid host name is no link */
	char *host = spam_uri_host(out->data, out->len);
	bool valid = host != NULL && spam_uri_host_valid(host, strlen(host));
	free(host);
	if (valid)
		found(arg, out->data, out->len);
}

void spam_uri_scan_line(const char *text, size_t len, buf_t *work, spam_uri_found_fn *found,
			void *arg)
{
	if (len == 0 || len > UINT32_MAX - 1)
		return;
	struct line l = { (const unsigned char *)text, len, NULL, NULL, NULL };
	index_line(&l, work);
	buf_t out = BUF_INIT;
	size_t p = 0;
	while (p < len) {
		if (!boundary_before(&l, p)) {
			p++;
			continue;
		}
		size_t e;
		enum kind kind = KIND_NONE;
		if ((e = try_known(&l, p)) != 0)
			kind = KIND_KNOWN;
		else if ((e = try_mail(&l, p)) != 0)
			kind = KIND_MAIL;
		else if ((e = try_bare(&l, p)) != 0)
			kind = KIND_BARE;
		if (kind == KIND_NONE) {
			p++;
			continue;
		}
		found_match(l.s + p, e - p, kind, &out, found, arg);
		p = e > p ? e : p + 1;
	}
	buf_free(&out);
}

/* ---- hosts ----------------------------------------------------------------------- */

/* s[0..n) %-decoded and lower-cased; NULL if empty or holding what no host
 * holds (white space, control characters). */
static char *host_copy(const char *s, size_t n)
{
	while (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0)
		return NULL;
	char *h = xmalloc(n + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%' && i + 2 < n && str_hex_digit(s[i + 1]) >= 0 && str_hex_digit(s[i + 2]) >= 0) {
			c = (char)(str_hex_digit(s[i + 1]) * 16 + str_hex_digit(s[i + 2]));
			i += 2;
		}
		if ((unsigned char)c <= ' ' || c == 0x7f) {
			free(h);
			return NULL;
		}
		h[o++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	h[o] = '\0';
	return h;
}

/* The authority at s (after "scheme:" and its slashes): host without user
 * and port. */
static char *authority_host(const char *s, size_t n)
{
	size_t e = 0;
	while (e < n && s[e] != '/' && s[e] != '\\' && s[e] != '?' && s[e] != '#')
		e++;
	const char *at = memrchr(s, '@', e);
	size_t start = at != NULL ? (size_t)(at - s) + 1 : 0;
	size_t end = e;
	if (start < end && s[start] == '[') { /* an IPv6 literal keeps its colons */
		const char *close = memchr(s + start, ']', end - start);
		if (close != NULL)
			end = (size_t)(close - s) + 1;
	} else {
		const char *colon = memchr(s + start, ':', end - start);
		if (colon != NULL)
			end = (size_t)(colon - s);
	}
	return host_copy(s + start, end - start);
}

char *spam_uri_host(const char *uri, size_t len)
{
	if (len >= 7 && strncasecmp(uri, "mailto:", 7) == 0) {
		const char *at = memrchr(uri, '@', len);
		if (at == NULL)
			return NULL;
		size_t start = (size_t)(at - uri) + 1, end = start;
		while (end < len && uri[end] != '?' && uri[end] != '&' && uri[end] != '>')
			end++;
		while (end - start >= 3 && memcmp(uri + end - 3, "%20", 3) == 0)
			end -= 3;
		return host_copy(uri + start, end - start);
	}
	size_t i = 0;
	while (i < len && (is_alpha(uri[i]) || is_digit(uri[i]) || uri[i] == '+' || uri[i] == '-'))
		i++;
	if (i > 0 && i < len && uri[i] == ':' && is_alpha(uri[0])) {
		size_t s = i + 1;
		size_t slashes = 0;
		while (s < len && (uri[s] == '/' || uri[s] == '\\')) {
			s++;
			slashes++;
		}
		bool web = (i == 4 && strncasecmp(uri, "http", 4) == 0) ||
			   (i == 5 && strncasecmp(uri, "https", 5) == 0) ||
			   (i == 3 && strncasecmp(uri, "ftp", 3) == 0);
		if (!web && slashes < 2)
			return NULL; /* cid:, tel:, javascript:... name no host */
		return authority_host(uri + s, len - s);
	}
	if (len >= 2 && uri[0] == '/' && uri[1] == '/')
		return authority_host(uri + 2, len - 2);
	/* "www.example.com/x": a host if it ends in a domain we know */
	size_t e = 0;
	while (e < len && uri[e] != '/' && uri[e] != '?' && uri[e] != '#')
		e++;
	char *h = authority_host(uri, e);
	if (h != NULL && !spam_uri_known_tld(h, strlen(h))) {
		free(h);
		return NULL;
	}
	return h;
}
