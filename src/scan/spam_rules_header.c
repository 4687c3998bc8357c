/*
 * spam_rules_header.c - what SpamAssassin's header rules look at, built
 * from the MIME pass's header fields (struct scan_header): a field's
 * instances joined by newlines, decoded (RFC 2047, UTF-8) or as sent
 * (:raw), cut to the first address (:addr) or display name (:name), and
 * the pseudo-fields ALL, ALL:raw, ToCc, MESSAGEID and EnvelopeFrom. Also
 * the header view the prefilter scans: every text a header rule can see
 * is a piece of it.
 *
 * Input: the message's header fields (hostile; already bounded by the
 * MIME pass) and the envelope. Runs in the scanners, once per message
 * and target (cached in struct spam_run).
 */
#include <string.h>

#include "../lib/strutil.h"
#include "spam_rules_impl.h"

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void append_trimmed(buf_t *out, const char *s, size_t n)
{
	while (n > 0 && is_ws(*s)) {
		s++;
		n--;
	}
	while (n > 0 && is_ws(s[n - 1]))
		n--;
	buf_append(out, s, n);
}

/*
 * Walk the first address of a list: the text outside quotes and comments
 * (plain), the first <...> (angle), the first comment and the quoted
 * display name, up to the first ',' or ';' outside them. A group's name
 * ("undisclosed: ...") is dropped.
 */
struct addr_scan {
	buf_t plain, angle, comment, quoted;
	bool has_angle, has_comment, has_quoted;
};

static void addr_scan(const char *v, struct addr_scan *a)
{
	memset(a, 0, sizeof(*a));
	int depth = 0;
	bool in_quote = false, in_angle = false;
	for (const char *p = v; *p != '\0'; p++) {
		char c = *p;
		if (in_quote) {
			if (c == '\\' && p[1] != '\0') {
				buf_putc(&a->quoted, *++p);
			} else if (c == '"') {
				in_quote = false;
			} else {
				buf_putc(&a->quoted, c);
			}
			continue;
		}
		if (depth > 0) {
			if (c == '\\' && p[1] != '\0') {
				p++;
				if (!a->has_comment)
					buf_putc(&a->comment, *p);
			} else if (c == '(') {
				depth++;
			} else if (c == ')') {
				if (--depth == 0)
					a->has_comment = true;
			} else if (!a->has_comment) {
				buf_putc(&a->comment, c);
			}
			continue;
		}
		if (in_angle) {
			if (c == '>') {
				in_angle = false;
				a->has_angle = true;
			} else if (!a->has_angle) {
				buf_putc(&a->angle, c);
			}
			continue;
		}
		switch (c) {
		case '"':
			in_quote = true;
			a->has_quoted = true;
			break;
		case '(':
			depth = 1;  /* only the first comment is kept */
			break;
		case '<':
			in_angle = true;
			break;
		case ':':
			if (!a->has_angle && memchr(a->plain.data ? a->plain.data : "", '@',
						    a->plain.len) == NULL) {
				/* a group's display name */
				buf_reset(&a->plain);
				buf_reset(&a->quoted);
				a->has_quoted = false;
				break;
			}
			buf_putc(&a->plain, c);
			break;
		case ',':
		case ';':
			if (a->plain.len > 0 || a->has_angle)
				return;
			break;
		default:
			buf_putc(&a->plain, c);
		}
	}
}

static void addr_scan_free(struct addr_scan *a)
{
	buf_free(&a->plain);
	buf_free(&a->angle);
	buf_free(&a->comment);
	buf_free(&a->quoted);
}

void spam_header_addr(const char *value, buf_t *out)
{
	struct addr_scan a;
	addr_scan(value, &a);
	if (a.has_angle) {
		append_trimmed(out, buf_cstr(&a.angle), a.angle.len);
	} else {
		/* "Foo Blah example@foo": the word with the '@' */
		const char *s = buf_cstr(&a.plain);
		const char *at = strchr(s, '@');
		if (at != NULL) {
			const char *b = at, *e = at;
			while (b > s && !is_ws(b[-1]))
				b--;
			while (*e != '\0' && !is_ws(*e))
				e++;
			buf_append(out, b, (size_t)(e - b));
		} else {
			append_trimmed(out, s, a.plain.len);
		}
	}
	addr_scan_free(&a);
}

void spam_header_display_name(const char *value, buf_t *out)
{
	struct addr_scan a;
	addr_scan(value, &a);
	buf_t name = BUF_INIT;
	if (a.has_angle) {
		if (a.has_quoted)
			append_trimmed(&name, buf_cstr(&a.quoted), a.quoted.len);
		else
			append_trimmed(&name, buf_cstr(&a.plain), a.plain.len);
	} else if (a.has_comment) {
		append_trimmed(&name, buf_cstr(&a.comment), a.comment.len);
	} else if (a.has_quoted) {
		append_trimmed(&name, buf_cstr(&a.quoted), a.quoted.len);
	}
	const char *s = buf_cstr(&name);
	size_t n = name.len;
	if (n >= 2 && s[0] == '\'' && s[n - 1] == '\'') {
		s++;
		n -= 2;
	}
	buf_append(out, s, n);
	buf_free(&name);
	addr_scan_free(&a);
}

static const struct scan_message *msg_of(const struct spam_text *t)
{
	return t != NULL ? t->msg : NULL;
}

size_t spam_header_count(const struct spam_text *t, const char *name)
{
	const struct scan_message *m = msg_of(t);
	size_t n = 0;
	for (size_t i = 0; m != NULL && i < m->header_count; i++)
		if (m->headers[i].part == 0 && str_eq_nocase(m->headers[i].name, name))
			n++;
	return n;
}

static const char *value_of(const struct scan_header *h, bool raw)
{
	const char *v = raw ? h->raw : h->decoded;
	if (v == NULL)
		v = raw ? h->decoded : h->raw;
	return v != NULL ? v : "";
}

const char *spam_header_first(const struct spam_text *t, const char *name, bool raw)
{
	const struct scan_message *m = msg_of(t);
	for (size_t i = 0; m != NULL && i < m->header_count; i++)
		if (m->headers[i].part == 0 && str_eq_nocase(m->headers[i].name, name))
			return value_of(&m->headers[i], raw);
	return NULL;
}

/* The header section as sent: the message's bytes up to the empty line. */
static void header_section(const struct scan_message *m, buf_t *out)
{
	if (m == NULL || m->data == NULL)
		return;
	const unsigned char *d = m->data;
	size_t i = 0;
	while (i < m->len) {
		const unsigned char *nl = memchr(d + i, '\n', m->len - i);
		size_t end = nl ? (size_t)(nl - d) + 1 : m->len;
		size_t content = end - i;
		if (content <= 2 && (content == 1 || d[i] == '\r'))
			break;  /* "\n" or "\r\n": the end of the header section */
		i = end;
	}
	buf_append(out, d, i);
}

/* One field's value as the target asks, appended. */
static void add_value(buf_t *out, const struct scan_header *h, unsigned mods)
{
	const char *v = value_of(h, (mods & SPAM_HDR_RAW) != 0);
	if (out->len > 0)
		buf_putc(out, '\n');
	if (mods & SPAM_HDR_ADDR)
		spam_header_addr(v, out);
	else if (mods & SPAM_HDR_NAME)
		spam_header_display_name(v, out);
	else
		buf_puts(out, v);
}

static bool part_matches(const struct scan_header *h, bool mime)
{
	return mime ? h->part != 0 : h->part == 0;
}

static void build_named(const struct scan_message *m, const struct spam_hdr_target *tg,
			const char *const *names, struct spam_hdr_text *out)
{
	for (size_t i = 0; m != NULL && i < m->header_count; i++) {
		const struct scan_header *h = &m->headers[i];
		if (!part_matches(h, tg->mime) || h->name == NULL)
			continue;
		for (size_t k = 0; names[k] != NULL; k++) {
			if (str_eq_nocase(h->name, names[k])) {
				add_value(&out->text, h, tg->mods);
				out->present = true;
				break;
			}
		}
	}
}

/* "Name: value\n" */
static void add_line(buf_t *out, const char *name, const char *value)
{
	buf_puts(out, name);
	buf_append(out, ": ", 2);
	buf_puts(out, value);
	buf_putc(out, '\n');
}

static void build_all(const struct scan_message *m, const struct spam_hdr_target *tg,
		      struct spam_hdr_text *out)
{
	out->present = true;
	if ((tg->mods & SPAM_HDR_RAW) && !tg->mime) {
		header_section(m, &out->text);
		return;
	}
	for (size_t i = 0; m != NULL && i < m->header_count; i++) {
		const struct scan_header *h = &m->headers[i];
		if (!part_matches(h, tg->mime) || h->name == NULL)
			continue;
		add_line(&out->text, h->name, value_of(h, (tg->mods & SPAM_HDR_RAW) != 0));
	}
}

const struct spam_hdr_text *spam_run_header(struct spam_run *run, size_t target)
{
	struct spam_hdr_text *out = &run->hdr[target];
	if (out->done)
		return out;
	out->done = true;
	const struct spam_hdr_target *tg = &run->rules->targets[target];
	const struct scan_message *m = msg_of(run->t);
	switch (tg->kind) {
	case SPAM_HDR_NAMED: {
		const char *names[] = { tg->name, NULL };
		build_named(m, tg, names, out);
		break;
	}
	case SPAM_HDR_ALL:
		build_all(m, tg, out);
		break;
	case SPAM_HDR_TOCC: {
		static const char *const names[] = { "To", "Cc", NULL };
		build_named(m, tg, names, out);
		break;
	}
	case SPAM_HDR_MESSAGEID: {
		static const char *const names[] = { "Message-Id", "Resent-Message-Id",
						      "X-Message-Id", NULL };
		build_named(m, tg, names, out);
		break;
	}
	case SPAM_HDR_ENVFROM: {
		const struct scan_envelope *env = run->ctx != NULL ? run->ctx->env : NULL;
		if (env == NULL && m != NULL)
			env = m->env;
		if (env != NULL && env->sender != NULL && env->sender[0] != '\0') {
			buf_puts(&out->text, env->sender);
			out->present = true;
		}
		break;
	}
	}
	return out;
}

void spam_header_view(const struct spam_text *t, const struct scan_envelope *env, bool mime,
		      buf_t *out)
{
	const struct scan_message *m = msg_of(t);
	struct spam_hdr_target tg = { .kind = SPAM_HDR_ALL, .mime = mime };
	struct spam_hdr_text tx = { .text = *out };
	/* decoded, then as sent ("Name: value" lines as ALL has them) */
	build_all(m, &tg, &tx);
	tg.mods = SPAM_HDR_RAW;
	tg.mime = true;  /* the "Name: raw" lines, not the section */
	if (!mime) {
		for (size_t i = 0; m != NULL && i < m->header_count; i++) {
			const struct scan_header *h = &m->headers[i];
			if (h->part == 0 && h->name != NULL)
				add_line(&tx.text, h->name, value_of(h, true));
		}
		header_section(m, &tx.text);
		if (env != NULL && env->sender != NULL)
			buf_printf(&tx.text, "\n%s\n", env->sender);
	} else {
		build_all(m, &tg, &tx);
	}
	*out = tx.text;
}
