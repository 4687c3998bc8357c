/*
 * mime_header.c - one part's header section (RFC 5322 section 2.2 and
 * 3.6: fields, folding) as its lines come in, then what it declares
 * (RFC 2045: Content-Type, Content-Transfer-Encoding; RFC 2183:
 * Content-Disposition) and its values with RFC 2047 words decoded.
 *
 * Broken sections are read as mail clients read them: a line without a
 * colon, or a folded line with no field before it, is skipped (Thunderbird
 * and MimeKit read on, so a Content-Type after such a line still counts);
 * white space before the colon is allowed (RFC 822's obsolete syntax); a
 * NUL byte becomes a space; an unreadable Content-Type is text/plain
 * (RFC 2045 section 5.2); the first of two fields counts.
 *
 * Bounded: past max_header_bytes (line ends included) or FIELDS_MAX
 * fields, nothing more is kept (MIME_HEADER_TOO_BIG) but the section is
 * still read to its end.
 *
 * Untrusted input: header sections of the message and of its parts. Runs
 * in the unprivileged scanner processes and in `postern scan`.
 */
#include "mime_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/xalloc.h"

#define FIELDS_MAX 4096    /* header fields kept per part (then header_too_big) */
#define FIELD_NAME_MAX 256 /* a longer "name" before ':' is no field name */

void mime_malformed(unsigned *problems, const char *why)
{
	*problems |= MIME_MALFORMED;
#ifdef MIME_TRACE
	fprintf(stderr, "mime: malformed: %s\n", why);
#else
	(void)why;
#endif
}

void mime_section_reset(struct mime_section *s)
{
	buf_reset(&s->text);
	buf_reset(&s->strings);
	s->count = 0;
	s->bytes = 0;
	s->field_open = s->skip_line = s->lines_seen = s->full = false;
}

void mime_section_free(struct mime_section *s)
{
	buf_free(&s->text);
	buf_free(&s->strings);
	free(s->fields);
	free(s->view);
	memset(s, 0, sizeof(*s));
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void close_field(struct mime_section *s)
{
	if (!s->field_open)
		return;
	struct mime_field *f = &s->fields[s->count - 1];
	while (s->text.len > f->raw_off &&
	       (is_wsp(s->text.data[s->text.len - 1]) || s->text.data[s->text.len - 1] == '\r'))
		s->text.len--;
	while (f->raw_off < s->text.len && is_wsp(s->text.data[f->raw_off]))
		f->raw_off++;
	f->raw_len = s->text.len - f->raw_off;
	buf_putc(&s->text, '\0');
	s->field_open = false;
}

static void append_value(struct mime_section *s, const char *v, size_t len, unsigned *problems)
{
	size_t from = s->text.len;
	buf_append(&s->text, v, len);
	/* a NUL would end the value early for every reader: a space instead */
	char *z = memchr(s->text.data + from, '\0', len);
	for (; z != NULL; z = memchr(z, '\0', (size_t)(s->text.data + s->text.len - z))) {
		*z = ' ';
		mime_malformed(problems, "NUL byte in a header field");
	}
}

/* The length of a field name followed by optional white space and ':'
 * at the start of line (the ':' at *colon_r), 0 if there is none. */
static size_t field_name(const char *line, size_t len, size_t *colon_r)
{
	size_t k = 0;
	while (k < len && k < FIELD_NAME_MAX && (unsigned char)line[k] > ' ' &&
	       (unsigned char)line[k] < 127 && line[k] != ':')
		k++;
	size_t name_len = k;
	while (k < len && is_wsp(line[k]))
		k++;
	if (name_len == 0 || k >= len || line[k] != ':')
		return 0;
	*colon_r = k;
	return name_len;
}

static void start_field(struct mime_section *s, const char *name, size_t name_len,
			const char *value, size_t value_len, unsigned *problems)
{
	close_field(s);
	if (s->count >= FIELDS_MAX) {
		s->full = true;
		*problems |= MIME_HEADER_TOO_BIG;
		return;
	}
	if (s->count == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->fields = xreallocarray(s->fields, s->cap, sizeof(*s->fields));
	}
	struct mime_field *f = &s->fields[s->count++];
	f->name_off = s->text.len;
	buf_append(&s->text, name, name_len);
	buf_putc(&s->text, '\0');
	f->raw_off = s->text.len;
	f->raw_len = 0;
	f->decoded_off = SIZE_MAX;
	s->field_open = true;
	append_value(s, value, value_len, problems);
}

bool mime_section_piece(struct mime_section *s, size_t max_bytes, bool may_have_from,
			const char *line, size_t len, size_t eol_len, bool line_start,
			bool complete, unsigned *problems)
{
	if (line_start) {
		s->skip_line = false;
		if (complete && len == 0)
			return true; /* the empty line: the body follows */
	}
	if (!s->full && (s->bytes > max_bytes || len + eol_len > max_bytes - s->bytes)) {
		s->full = true;
		*problems |= MIME_HEADER_TOO_BIG;
	}
	if (s->full)
		return false;
	s->bytes += len + eol_len;
	if (!line_start) {
		if (!s->skip_line && s->field_open)
			append_value(s, line, len, problems);
		return false;
	}
	bool first = !s->lines_seen;
	s->lines_seen = true;
	if (is_wsp(line[0])) {
		if (s->field_open) {
			append_value(s, line, len, problems); /* unfolded: the line end goes */
		} else {
			mime_malformed(problems, "continuation line without a field");
			s->skip_line = true;
		}
		return false;
	}
	if (first && may_have_from && len >= 5 && memcmp(line, "From ", 5) == 0) {
		s->skip_line = true; /* an mbox separator line */
		return false;
	}
	size_t colon, name_len = field_name(line, len, &colon);
	if (name_len == 0) {
		mime_malformed(problems, "header line without a colon");
		close_field(s);
		s->skip_line = true;
		return false;
	}
	start_field(s, line, name_len, line + colon + 1, len - colon - 1, problems);
	return false;
}

static const struct mime_field *find(const struct mime_section *s, const char *name)
{
	for (size_t i = 0; i < s->count; i++)
		if (strcasecmp(s->text.data + s->fields[i].name_off, name) == 0)
			return &s->fields[i];
	return NULL;
}

bool mime_section_has(const struct mime_section *s, const char *name)
{
	return find(s, name) != NULL;
}

size_t mime_section_keep(struct mime_section *s, const char *str, size_t len)
{
	size_t off = s->strings.len;
	buf_append(&s->strings, str, len);
	buf_putc(&s->strings, '\0');
	return off;
}

/* "type/subtype" with token characters on both sides of one '/'. */
static bool valid_type(const char *t, size_t len)
{
	const char *slash = memchr(t, '/', len);
	if (slash == NULL || slash == t || slash == t + len - 1)
		return false;
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)t[k];
		if (t + k == slash)
			continue;
		if (c <= ' ' || c >= 127 || strchr("()<>@,;:\\\"/[]?=", c) != NULL)
			return false;
	}
	return true;
}

static enum mime_encoding encoding_of(const char *token)
{
	static const struct {
		const char *name;
		enum mime_encoding enc;
	} names[] = {
		{ "7bit", MIME_ENC_7BIT },           { "8bit", MIME_ENC_8BIT },
		{ "binary", MIME_ENC_BINARY },       { "base64", MIME_ENC_BASE64 },
		{ "quoted-printable", MIME_ENC_QP }, { "x-uuencode", MIME_ENC_UUENCODE },
		{ "x-uue", MIME_ENC_UUENCODE },      { "uuencode", MIME_ENC_UUENCODE },
		{ "uue", MIME_ENC_UUENCODE },
	};
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (strcmp(token, names[i].name) == 0)
			return names[i].enc;
	return MIME_ENC_UNKNOWN;
}

static void lower(buf_t *b)
{
	for (size_t k = 0; k < b->len; k++)
		if (b->data[k] >= 'A' && b->data[k] <= 'Z')
			b->data[k] = (char)(b->data[k] - 'A' + 'a');
}

void mime_section_end(struct mime_section *s, struct mime_charsets *cs, buf_t *t,
		      const char *default_type, buf_t *boundary, struct mime_declared *d,
		      unsigned *problems)
{
	close_field(s);
	for (size_t i = 0; i < s->count; i++) {
		struct mime_field *f = &s->fields[i];
		const char *raw = s->text.data + f->raw_off;
		if (!mime_words_maybe(raw, f->raw_len))
			continue;
		f->decoded_off = s->strings.len;
		mime_words_decode(cs, raw, f->raw_len, &s->strings);
		buf_putc(&s->strings, '\0');
	}

	const struct mime_field *ct = find(s, "content-type");
	const struct mime_field *cte = find(s, "content-transfer-encoding");
	const struct mime_field *cd = find(s, "content-disposition");
	const char *ct_raw = ct != NULL ? s->text.data + ct->raw_off : NULL;
	const char *cd_raw = cd != NULL ? s->text.data + cd->raw_off : NULL;
	d->content_type = d->charset = d->disposition = d->filename = SIZE_MAX;
	d->encoding = MIME_ENC_7BIT;
	buf_reset(boundary);

	buf_reset(t);
	if (ct != NULL && mime_value_token(ct_raw, ct->raw_len, t) && valid_type(t->data, t->len)) {
		d->content_type = mime_section_keep(s, t->data, t->len);
	} else if (ct != NULL) {
		mime_malformed(problems, "unreadable Content-Type");
		d->content_type = mime_section_keep(s, "text/plain", 10);
	} else {
		d->content_type = mime_section_keep(s, default_type, strlen(default_type));
	}
	if (ct != NULL) {
		buf_reset(t);
		if (mime_param_get(cs, ct_raw, ct->raw_len, "charset", false, t) && t->len > 0) {
			lower(t);
			d->charset = mime_section_keep(s, t->data, t->len);
		}
		mime_param_get(cs, ct_raw, ct->raw_len, "boundary", false, boundary);
	}
	buf_reset(t);
	if (cte != NULL && mime_value_token(s->text.data + cte->raw_off, cte->raw_len, t))
		d->encoding = encoding_of(t->data);
	buf_reset(t);
	if (cd != NULL && mime_value_token(cd_raw, cd->raw_len, t))
		d->disposition = mime_section_keep(s, t->data, t->len);
	buf_reset(t);
	if ((cd != NULL && mime_param_get(cs, cd_raw, cd->raw_len, "filename", true, t)) ||
	    (ct != NULL && mime_param_get(cs, ct_raw, ct->raw_len, "name", true, t)))
		d->filename = mime_section_keep(s, t->data ? t->data : "", t->len);
}

void mime_section_view(struct mime_section *s, const struct mime_declared *d,
		       struct mime_part *part)
{
	if (s->count > s->view_cap) {
		s->view_cap = s->count;
		s->view = xreallocarray(s->view, s->view_cap, sizeof(*s->view));
	}
	for (size_t i = 0; i < s->count; i++) {
		const struct mime_field *f = &s->fields[i];
		s->view[i].name = s->text.data + f->name_off;
		s->view[i].raw = s->text.data + f->raw_off;
		s->view[i].decoded = f->decoded_off == SIZE_MAX ? s->view[i].raw
								: s->strings.data + f->decoded_off;
	}
	part->headers = s->count > 0 ? s->view : NULL;
	part->header_count = s->count;
	const char *str = s->strings.data;
	part->content_type = str + d->content_type;
	part->charset = d->charset != SIZE_MAX ? str + d->charset : NULL;
	part->disposition = d->disposition != SIZE_MAX ? str + d->disposition : NULL;
	part->filename = d->filename != SIZE_MAX ? str + d->filename : NULL;
	part->encoding = d->encoding;
}
