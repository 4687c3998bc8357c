/*
 * relay_reply.c - parse the replies of the SMTP servers the relay agent
 * talks to, one line at a time, and the capabilities of an EHLO reply
 * (see relay_reply.h for the rules and bounds).
 *
 * RFCs: RFC 5321 section 4.2, RFC 3463, RFC 2034, RFC 1870, RFC 6152,
 * RFC 2920, RFC 3207, RFC 6531, RFC 3461. Untrusted input: every line the
 * peer sends. Privilege: the relay delivery agent (unprivileged).
 */
#include "relay_reply.h"

#include <stdio.h>
#include <string.h>

#include "../lib/strutil.h"
#include "../lib/xalloc.h"

void relay_reply_init(struct relay_reply *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->text);
	buf_init(&r->lines);
}

void relay_reply_reset(struct relay_reply *r)
{
	r->code = 0;
	r->status[0] = '\0';
	r->line_count = 0;
	buf_reset(&r->text);
	buf_reset(&r->lines);
}

void relay_reply_free(struct relay_reply *r)
{
	buf_free(&r->text);
	buf_free(&r->lines);
	memset(r, 0, sizeof(*r));
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* "X.Y.Z" at the start of text, X in 2,4,5, Y up to 3 digits, Z up to 3
 * (RFC 3463 section 2); its length, or 0. */
static size_t enhanced_len(const char *text, size_t len, int code)
{
	size_t i = 0, digits;

	if (len < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') ||
	    text[0] != (char)('0' + code / 100) || text[1] != '.')
		return 0;
	i = 2;
	for (digits = 0; i < len && is_digit(text[i]) && digits < 3; i++)
		digits++;
	if (digits == 0 || i >= len || text[i] != '.')
		return 0;
	i++;
	for (digits = 0; i < len && is_digit(text[i]) && digits < 3; i++)
		digits++;
	if (digits == 0 || (i < len && text[i] != ' '))
		return 0;
	return i;
}

/* Append cleaned text, never past RELAY_REPLY_TEXT_MAX in total. */
static void append_clean(buf_t *b, const char *s, size_t n, size_t max)
{
	for (size_t i = 0; i < n && b->len < max; i++) {
		unsigned char c = (unsigned char)s[i];
		buf_putc(b, c < 0x20 || c == 0x7f ? '?' : (char)c);
	}
}

enum relay_reply_state relay_reply_feed(struct relay_reply *r, const char *line, size_t len,
					const char **err_r)
{
	if (len > RELAY_REPLY_LINE_MAX) {
		*err_r = "reply line too long";
		return RELAY_REPLY_BAD;
	}
	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
	    line[0] < '2' || line[0] > '5') {
		*err_r = "reply without a valid code";
		return RELAY_REPLY_BAD;
	}
	if (len > 3 && line[3] != ' ' && line[3] != '-') {
		*err_r = "bad separator after the reply code";
		return RELAY_REPLY_BAD;
	}
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->line_count > 0 && code != r->code) {
		*err_r = "reply code changes within one reply";
		return RELAY_REPLY_BAD;
	}
	if (r->line_count >= RELAY_REPLY_LINES_MAX) {
		*err_r = "too many reply lines";
		return RELAY_REPLY_BAD;
	}
	const char *text = len > 4 ? line + 4 : "";
	size_t tlen = len > 4 ? len - 4 : 0;
	if (r->line_count == 0) {
		r->code = code;
		size_t el = enhanced_len(text, tlen, code);
		if (el > 0 && el < sizeof(r->status)) {
			memcpy(r->status, text, el);
			r->status[el] = '\0';
		}
	} else if (r->text.len < RELAY_REPLY_TEXT_MAX) {
		append_clean(&r->text, " / ", 3, RELAY_REPLY_TEXT_MAX);
	}
	append_clean(&r->text, line, len, RELAY_REPLY_TEXT_MAX);
	if (r->line_count > 0)
		buf_putc(&r->lines, '\n');
	append_clean(&r->lines, text, tlen, (size_t)RELAY_REPLY_LINES_MAX * RELAY_REPLY_LINE_MAX);
	r->line_count++;
	return len > 3 && line[3] == '-' ? RELAY_REPLY_MORE : RELAY_REPLY_DONE;
}

char *relay_reply_reason(const struct relay_reply *r, const char *peer, const char *during)
{
	buf_t b = BUF_INIT;
	const char *status = r->status;

	if (status[0] == '\0')
		status = r->code >= 500 ? "5.0.0" : r->code >= 400 ? "4.0.0" : "2.0.0";
	buf_printf(&b, "%s host %s said: %s", status, peer, buf_cstr(&r->text));
	if (during != NULL && during[0] != '\0')
		buf_printf(&b, " (in reply to %s)", during);
	return buf_steal(&b);
}

/* The keyword of one EHLO line and where its parameters start. */
static bool keyword_is(const char *line, size_t len, const char *word, const char **params_r)
{
	size_t wl = strlen(word);

	if (len < wl || strncasecmp(line, word, wl) != 0)
		return false;
	if (len > wl && line[wl] != ' ' && line[wl] != '=')
		return false;
	*params_r = len > wl ? line + wl + 1 : line + len;
	return true;
}

static uint64_t size_param(const char *p, size_t n)
{
	uint64_t v = 0;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(p[i]))
			return 0;
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	return v;
}

void relay_caps_parse(const struct relay_reply *r, struct relay_caps *caps_r)
{
	const char *p = buf_cstr(&r->lines), *end = p + r->lines.len;
	bool first = true;

	memset(caps_r, 0, sizeof(*caps_r));
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		const char *params = NULL;
		if (first) {
			first = false;
		} else if (keyword_is(p, len, "PIPELINING", &params)) {
			caps_r->flags |= RELAY_CAP_PIPELINING;
		} else if (keyword_is(p, len, "8BITMIME", &params)) {
			caps_r->flags |= RELAY_CAP_8BITMIME;
		} else if (keyword_is(p, len, "STARTTLS", &params)) {
			caps_r->flags |= RELAY_CAP_STARTTLS;
		} else if (keyword_is(p, len, "SMTPUTF8", &params)) {
			caps_r->flags |= RELAY_CAP_SMTPUTF8;
		} else if (keyword_is(p, len, "DSN", &params)) {
			caps_r->flags |= RELAY_CAP_DSN;
		} else if (keyword_is(p, len, "ENHANCEDSTATUSCODES", &params)) {
			caps_r->flags |= RELAY_CAP_ENHANCED;
		} else if (keyword_is(p, len, "SIZE", &params)) {
			caps_r->flags |= RELAY_CAP_SIZE;
			size_t pl = (size_t)(p + len - params);
			while (pl > 0 && params[pl - 1] == ' ')
				pl--;
			caps_r->size_limit = size_param(params, pl);
		}
		p += len + 1;
	}
}
