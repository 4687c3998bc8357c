/*
 * address.c - RFC 5321 section 4.1.2 path parser, with the RFC 6531
 * (SMTPUTF8) extension of atext and sub-domains to UTF-8.
 *
 * Untrusted input: the argument of MAIL FROM / RCPT TO as received by the
 * unprivileged smtp worker. The parser never reads past len, copies into
 * fixed arrays sized by the RFC limits, and rejects anything else.
 */
#include "address.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

struct cursor {
	const char *p;
	const char *end;
	unsigned flags;
	bool saw_utf8;
};

static bool at_end(const struct cursor *c)
{
	return c->p >= c->end;
}

static int peek(const struct cursor *c)
{
	return at_end(c) ? -1 : (unsigned char)*c->p;
}

/* Length of a well-formed UTF-8 sequence (2-4 bytes) at c->p, else 0.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq_len(const struct cursor *c)
{
	const unsigned char *s = (const unsigned char *)c->p;
	size_t avail = (size_t)(c->end - c->p), n;
	unsigned cp;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Consume one UTF-8 non-ASCII character if allowed; false otherwise. */
static bool take_utf8(struct cursor *c)
{
	if (!(c->flags & ADDR_ALLOW_UTF8) || peek(c) < 0x80)
		return false;
	size_t n = utf8_seq_len(c);
	if (n == 0)
		return false;
	c->p += n;
	c->saw_utf8 = true;
	return true;
}

static bool is_atext(int ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch > 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL;
}

static bool is_let_dig(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* Dot-string = Atom *("." Atom) */
static bool parse_dot_string(struct cursor *c)
{
	for (;;) {
		const char *start = c->p;
		for (;;) {
			if (is_atext(peek(c)))
				c->p++;
			else if (!take_utf8(c))
				break;
		}
		if (c->p == start)
			return false;
		if (peek(c) != '.')
			return true;
		c->p++;
	}
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE */
static bool parse_quoted_string(struct cursor *c)
{
	c->p++; /* opening quote */
	while (!at_end(c)) {
		int ch = peek(c);
		if (ch == '"') {
			c->p++;
			return true;
		}
		if (ch == '\\') {
			c->p++;
			int q = peek(c);
			if (q < 32 || q > 126)
				return false;
			c->p++;
		} else if (ch >= 32 && ch <= 126) {
			c->p++;
		} else if (!take_utf8(c)) {
			return false;
		}
	}
	return false;
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str] */
static bool parse_domain(struct cursor *c)
{
	for (;;) {
		const char *start = c->p;
		int last = -1;
		while (!at_end(c)) {
			int ch = peek(c);
			if (is_let_dig(ch) || (ch == '-' && c->p != start)) {
				c->p++;
				last = ch;
			} else if (take_utf8(c)) {
				last = 'u';
			} else {
				break;
			}
		}
		if (c->p == start || last == '-')
			return false;
		if (peek(c) != '.')
			return true;
		c->p++;
	}
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 ) "]" */
static bool parse_address_literal(struct cursor *c)
{
	const char *close = memchr(c->p, ']', (size_t)(c->end - c->p));
	char text[64];
	unsigned char bin[16];
	if (close == NULL)
		return false;
	size_t n = (size_t)(close - c->p - 1);
	if (n == 0 || n >= sizeof(text))
		return false;
	memcpy(text, c->p + 1, n);
	text[n] = '\0';
	bool ok;
	if (strncasecmp(text, "IPv6:", 5) == 0)
		ok = inet_pton(AF_INET6, text + 5, bin) == 1;
	else
		ok = inet_pton(AF_INET, text, bin) == 1;
	if (!ok)
		return false;
	c->p = close + 1;
	return true;
}

/* A-d-l = At-domain *( "," At-domain ) ":" -- accepted and ignored */
static bool skip_source_route(struct cursor *c)
{
	for (;;) {
		if (peek(c) != '@')
			return false;
		c->p++;
		if (!parse_domain(c))
			return false;
		if (peek(c) == ':') {
			c->p++;
			return true;
		}
		if (peek(c) != ',')
			return false;
		c->p++;
	}
}

static void copy_lower(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = src[i];
		dst[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
	}
	dst[n] = '\0';
}

static long fail(const char **err_r, const char *why)
{
	*err_r = why;
	return -1;
}

static long parse_mailbox(struct cursor *c, const char *text, struct mail_address *addr,
			  const char **err_r)
{
	const char *local = c->p;
	if (peek(c) == '"') {
		addr->local_quoted = true;
		if (!parse_quoted_string(c))
			return fail(err_r, "bad quoted local part");
	} else if (!parse_dot_string(c)) {
		return fail(err_r, "bad local part");
	}
	size_t local_len = (size_t)(c->p - local);
	if (local_len > ADDR_LOCAL_MAX)
		return fail(err_r, "local part longer than 64 octets");
	if (peek(c) == '>' && (c->flags & ADDR_ALLOW_BARE_POSTMASTER) &&
	    local_len == 10 && strncasecmp(local, "postmaster", 10) == 0) {
		memcpy(addr->local, local, local_len);
		addr->local[local_len] = '\0';
		c->p++;
		return c->p - text;
	}
	if (peek(c) != '@')
		return fail(err_r, "missing @domain");
	c->p++;
	const char *domain = c->p;
	if (peek(c) == '[') {
		addr->domain_literal = true;
		if (!parse_address_literal(c))
			return fail(err_r, "bad address literal");
	} else if (!parse_domain(c)) {
		return fail(err_r, "bad domain");
	}
	size_t domain_len = (size_t)(c->p - domain);
	if (domain_len > ADDR_DOMAIN_MAX)
		return fail(err_r, "domain longer than 255 octets");
	if (peek(c) != '>')
		return fail(err_r, "unexpected character in address");
	c->p++;
	memcpy(addr->local, local, local_len);
	addr->local[local_len] = '\0';
	copy_lower(addr->domain, domain, domain_len);
	return c->p - text;
}

long address_parse_path(const char *text, size_t len, unsigned flags,
			struct mail_address *addr, const char **err_r)
{
	struct cursor c = { text, text + len, flags, false };
	memset(addr, 0, sizeof(*addr));
	if (peek(&c) != '<')
		return fail(err_r, "address must be enclosed in <>");
	const char *close = memchr(text, '>', len);
	if (close != NULL && (size_t)(close - text + 1) > ADDR_PATH_MAX + 2)
		return fail(err_r, "path longer than 256 octets");
	c.p++;
	if (peek(&c) == '>') {
		if (!(flags & ADDR_ALLOW_NULL))
			return fail(err_r, "null address not allowed here");
		addr->is_null = true;
		return 2;
	}
	if (peek(&c) == '@') {
		if (!skip_source_route(&c))
			return fail(err_r, "bad source route");
		addr->had_source_route = true;
	}
	long n = parse_mailbox(&c, text, addr, err_r);
	if (n > 0 && (size_t)n > ADDR_PATH_MAX + 2 && !addr->had_source_route)
		return fail(err_r, "path longer than 256 octets");
	addr->utf8 = c.saw_utf8;
	return n;
}

void address_format(const struct mail_address *addr, char *out, size_t outlen)
{
	if (addr->is_null)
		snprintf(out, outlen, "%s", "");
	else if (addr->domain[0] == '\0')
		snprintf(out, outlen, "%s", addr->local);
	else
		snprintf(out, outlen, "%s@%s", addr->local, addr->domain);
}

bool address_unquoted_local(const struct mail_address *addr, char *out, size_t outlen)
{
	const char *s = addr->local;
	size_t n = 0, len = strlen(s);
	if (addr->local_quoted) {
		s++;
		len -= 2;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (addr->local_quoted && ch == '\\' && i + 1 < len)
			ch = s[++i];
		if (n + 1 >= outlen)
			return false;
		out[n++] = ch;
	}
	out[n] = '\0';
	/* The unquoted form must be a plain dot-atom without routing
	 * characters: no '@', '%', '!' and no empty atoms. */
	if (n == 0 || out[0] == '.' || out[n - 1] == '.' || strstr(out, "..") != NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)out[i];
		if (ch == '%' || ch == '!' || ch == '@')
			return false;
		if (ch < 0x80 && ch != '.' && !is_atext(ch))
			return false;
	}
	return true;
}

bool address_listed(const strlist_t *list, const char *address)
{
	const char *at = strrchr(address, '@');
	for (size_t i = 0; i < list->count; i++) {
		const char *e = list->items[i];
		if (strchr(e, '@') != NULL && e[0] != '@') {
			if (str_eq_nocase(e, address))
				return true;
		} else if (at != NULL && str_eq_nocase(e[0] == '@' ? e + 1 : e, at + 1)) {
			return true;
		}
	}
	return false;
}
