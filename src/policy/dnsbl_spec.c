/*
 * dnsbl_spec.c - the administrator's side of DNS blocklists: list specs
 * (DOMAIN[=FILTER][*WEIGHT], see dnsbl.h), the test of an answer against
 * a list's filter (RFC 5782 section 2.3: listings are 127.0.0.0/8
 * addresses), and reply templates.
 *
 * Input: configuration values (trusted in intent, but parsed strictly and
 * bounded: every problem is an error message, never a crash) and, in
 * templates, values from DNS answers (made printable here).
 */
#include "dnsbl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"

/* ---- list specs ---------------------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A decimal number of at most max at *p; advances *p. */
static bool parse_number(const char **p, const char *end, unsigned max, unsigned *v)
{
	const char *s = *p;
	unsigned n = 0;
	if (s >= end || !is_digit(*s))
		return false;
	for (; s < end && is_digit(*s); s++) {
		n = n * 10 + (unsigned)(*s - '0');
		if (n > max)
			return false;
	}
	*p = s;
	*v = n;
	return true;
}

/* One octet: "N" or "[N;N..M;...]". */
static const char *parse_octet(const char **p, const char *end, struct dnsbl_octet *o)
{
	const char *s = *p;
	unsigned lo, hi;
	o->count = 0;
	if (s < end && *s != '[') {
		if (!parse_number(&s, end, 255, &lo))
			return "an octet of a filter must be a number from 0 to 255 or a [set]";
		o->ranges[0].lo = o->ranges[0].hi = (uint8_t)lo;
		o->count = 1;
		*p = s;
		return NULL;
	}
	s++; /* '[' */
	for (;;) {
		if (o->count >= DNSBL_MAX_RANGES)
			return "too many numbers and ranges in one [set]";
		if (!parse_number(&s, end, 255, &lo))
			return "a [set] holds numbers from 0 to 255 and ranges N..M, separated by ';'";
		hi = lo;
		if (end - s >= 2 && s[0] == '.' && s[1] == '.') {
			s += 2;
			if (!parse_number(&s, end, 255, &hi) || hi < lo)
				return "a range N..M needs numbers from 0 to 255 with N <= M";
		}
		o->ranges[o->count].lo = (uint8_t)lo;
		o->ranges[o->count].hi = (uint8_t)hi;
		o->count++;
		if (s < end && *s == ';') {
			s++;
			continue;
		}
		if (s < end && *s == ']') {
			*p = s + 1;
			return NULL;
		}
		return "a [set] must end with ']'";
	}
}

static const char *parse_pattern(const char **p, const char *end, struct dnsbl_pattern *pat)
{
	for (size_t i = 0; i < 4; i++) {
		if (i > 0) {
			if (*p >= end || **p != '.')
				return "a filter address has four octets separated by '.'";
			(*p)++;
		}
		const char *err = parse_octet(p, end, &pat->octets[i]);
		if (err != NULL)
			return err;
	}
	return NULL;
}

static const char *parse_filter(const char *s, const char *end, struct dnsbl_site *site)
{
	if (s == end)
		return "'=' must be followed by a filter such as 127.0.0.2";
	for (;;) {
		if (site->pattern_count >= DNSBL_MAX_PATTERNS)
			return "too many addresses in the filter";
		const char *err = parse_pattern(&s, end, &site->patterns[site->pattern_count++]);
		if (err != NULL)
			return err;
		if (s == end)
			return NULL;
		if (*s != ';')
			return "filter addresses are separated by ';'";
		s++;
	}
}

static const char *parse_weight(const char *s, const char *end, int *w)
{
	bool negative = false;
	unsigned v;
	if (s < end && (*s == '-' || *s == '+'))
		negative = *s++ == '-';
	if (!parse_number(&s, end, DNSBL_WEIGHT_MAX, &v) || s != end)
		return "a weight is a whole number from -1000 to 1000";
	if (v == 0)
		return "a weight of 0 would make the list count for nothing";
	*w = negative ? -(int)v : (int)v;
	return NULL;
}

static const char *parse_domain(const char *s, size_t len, struct dnsbl_site *site)
{
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0)
		return "missing the list's domain";
	if (len > DNSBL_DOMAIN_MAX)
		return "the list's domain is too long (it must leave room for an IPv6 query)";
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
			  c == '-' || c == '_' || c == '.';
		if (!ok)
			return "the list's domain may hold letters, digits, '-', '_' and '.'";
	}
	memcpy(site->domain, s, len);
	site->domain[len] = '\0';
	str_lower(site->domain);
	if (!dns_name_valid(site->domain))
		return "the list's domain is not a valid DNS name";
	return NULL;
}

bool dnsbl_site_parse(const char *spec, struct dnsbl_site *site_r, const char **err_r)
{
	memset(site_r, 0, sizeof(*site_r));
	site_r->weight = 1;
	size_t len = strlen(spec);
	const char *end = spec + len;
	if (len >= sizeof(site_r->spec)) {
		*err_r = "too long";
		return false;
	}
	memcpy(site_r->spec, spec, len + 1);
	const char *eq = memchr(spec, '=', len);
	const char *star = strrchr(spec, '*');
	if (star != NULL && eq != NULL && star < eq)
		star = NULL; /* a '*' before the filter belongs to the domain: refused there */
	const char *domain_end = eq != NULL ? eq : star != NULL ? star : end;
	const char *err = parse_domain(spec, (size_t)(domain_end - spec), site_r);
	if (err == NULL && eq != NULL)
		err = parse_filter(eq + 1, star != NULL ? star : end, site_r);
	if (err == NULL && star != NULL)
		err = parse_weight(star + 1, end, &site_r->weight);
	if (err != NULL) {
		*err_r = err;
		return false;
	}
	return true;
}

bool dnsbl_sites_parse(const strlist_t *list, struct dnsbl_sites *sites_r, const char **err_r,
		       const char **bad_r)
{
	memset(sites_r, 0, sizeof(*sites_r));
	if (list->count > DNSBL_MAX_SITES) {
		*err_r = "too many lists (at most 32)";
		*bad_r = list->items[DNSBL_MAX_SITES];
		return false;
	}
	if (list->count == 0)
		return true;
	sites_r->items = xcalloc(list->count, sizeof(*sites_r->items));
	for (size_t i = 0; i < list->count; i++) {
		if (!dnsbl_site_parse(list->items[i], &sites_r->items[i], err_r)) {
			*bad_r = list->items[i];
			dnsbl_sites_free(sites_r);
			return false;
		}
		sites_r->count++;
	}
	return true;
}

void dnsbl_sites_free(struct dnsbl_sites *sites)
{
	free(sites->items);
	memset(sites, 0, sizeof(*sites));
}

static bool octet_matches(const struct dnsbl_octet *o, uint8_t v)
{
	for (size_t i = 0; i < o->count; i++)
		if (v >= o->ranges[i].lo && v <= o->ranges[i].hi)
			return true;
	return o->count == 0;
}

bool dnsbl_site_matches(const struct dnsbl_site *site, const unsigned char addr[4])
{
	if (site->pattern_count == 0)
		return addr[0] == 127 && !(addr[1] == 255 && addr[2] == 255);
	for (size_t i = 0; i < site->pattern_count; i++) {
		const struct dnsbl_pattern *p = &site->patterns[i];
		bool all = true;
		for (size_t k = 0; k < 4 && all; k++)
			all = octet_matches(&p->octets[k], addr[k]);
		if (all)
			return true;
	}
	return false;
}

/* ---- reply templates -------------------------------------------------------------- */

static const char *const var_names[] = {
	"client_address", "rbl_class", "rbl_what", "rbl_domain", "rbl_txt", "rbl_answer",
};

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || c == '_';
}

/* The index of the variable named s[0..len), or -1. */
static int var_index(const char *s, size_t len)
{
	for (size_t i = 0; i < ARRAY_LEN(var_names); i++)
		if (strlen(var_names[i]) == len && memcmp(var_names[i], s, len) == 0)
			return (int)i;
	return -1;
}

static const char *var_value(const struct dnsbl_vars *v, int index)
{
	const char *values[] = { v->client_address, v->rbl_class, v->rbl_what,
				 v->rbl_domain, v->rbl_txt, v->rbl_answer };
	const char *s = values[index];
	return s != NULL ? s : "";
}

struct expander {
	const struct dnsbl_vars *vars; /* NULL: only check */
	char *out;
	size_t len, cap;
};

static void put(struct expander *x, const char *s, size_t n)
{
	for (size_t i = 0; i < n && x->vars != NULL && x->len + 1 < x->cap; i++) {
		unsigned char c = (unsigned char)s[i];
		x->out[x->len++] = c >= 32 && c < 127 ? (char)c : '?';
	}
}

/* Where the TEXT of ${name?TEXT} that starts at from ends: the first '}'
 * that does not close a ${name} inside it; len if there is none. */
static size_t text_end(const char *tpl, size_t from, size_t len)
{
	for (size_t j = from; j < len; j++) {
		if (tpl[j] == '$' && j + 1 < len && tpl[j + 1] == '$') {
			j++;
		} else if (tpl[j] == '$' && j + 1 < len && tpl[j + 1] == '{') {
			const char *c = memchr(tpl + j, '}', len - j);
			if (c == NULL)
				return len;
			j = (size_t)(c - tpl);
		} else if (tpl[j] == '}') {
			return j;
		}
	}
	return len;
}

/*
 * Expand (or, without vars, check) tpl[0..len): plain text, $$, $name,
 * ${name}, and when nested is false also ${name?TEXT} and ${name:TEXT}.
 * Returns NULL or a static message.
 */
static const char *expand(struct expander *x, const char *tpl, size_t len, bool nested)
{
	size_t i = 0;
	while (i < len) {
		if (tpl[i] != '$') {
			size_t n = i;
			while (n < len && tpl[n] != '$')
				n++;
			put(x, tpl + i, n - i);
			i = n;
			continue;
		}
		i++;
		if (i < len && tpl[i] == '$') {
			put(x, "$", 1);
			i++;
			continue;
		}
		bool braced = i < len && tpl[i] == '{';
		size_t start = braced ? i + 1 : i, n = start;
		while (n < len && is_name_char(tpl[n]))
			n++;
		int var = var_index(tpl + start, n - start);
		if (n == start)
			return "'$' must be followed by a variable name, '{' or another '$'";
		if (var < 0)
			return "unknown variable (client_address, rbl_class, rbl_what, rbl_domain, "
			       "rbl_txt, rbl_answer)";
		const char *value = x->vars != NULL ? var_value(x->vars, var) : "";
		if (!braced) {
			put(x, value, strlen(value));
			i = n;
			continue;
		}
		if (n < len && tpl[n] == '}') {
			put(x, value, strlen(value));
			i = n + 1;
			continue;
		}
		if (nested || n >= len || (tpl[n] != '?' && tpl[n] != ':'))
			return nested ? "${name?TEXT} and ${name:TEXT} cannot be nested"
				      : "'${name' must be followed by '}', '?TEXT}' or ':TEXT}'";
		size_t close = text_end(tpl, n + 1, len);
		if (close >= len)
			return "'${' without its '}'";
		bool want = tpl[n] == '?' ? value[0] != '\0' : value[0] == '\0';
		struct expander check = { NULL, NULL, 0, 0 };
		const char *err = expand(want ? x : &check, tpl + n + 1, close - (n + 1), true);
		if (err != NULL)
			return err;
		i = close + 1;
	}
	return NULL;
}

const char *dnsbl_template_check(const char *tpl)
{
	struct expander x = { NULL, NULL, 0, 0 };
	return expand(&x, tpl, strlen(tpl), false);
}

void dnsbl_template_expand(const char *tpl, const struct dnsbl_vars *vars, char *out,
			   size_t outlen)
{
	struct expander x = { vars, out, 0, outlen };
	if (outlen == 0)
		return;
	if (expand(&x, tpl, strlen(tpl), false) != NULL)
		x.len = 0; /* unchecked template: nothing rather than half */
	out[x.len] = '\0';
}
