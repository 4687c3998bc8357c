/*
 * reply.c - SMTP replies as values (see reply.h).
 */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void vset(struct smtp_reply *r, int code, const char *status, const char *fmt,
		 va_list ap) PRINTF_LIKE(4, 0);

static void vset(struct smtp_reply *r, int code, const char *status, const char *fmt,
		 va_list ap)
{
	r->code = code;
	snprintf(r->status, sizeof(r->status), "%s", status);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
}

void reply_set(struct smtp_reply *r, int code, const char *status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(r, code, status, fmt, ap);
	va_end(ap);
}

void reply_error(struct smtp_reply *r, int code, const char *status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(r, code, status, fmt, ap);
	va_end(ap);
	r->flags |= REPLY_ERROR;
}

void reply_add_line(struct smtp_reply *r, const char *fmt, ...)
{
	size_t used = strlen(r->text);
	va_list ap;
	if (used + 2 >= sizeof(r->text))
		return;
	r->text[used++] = '\n';
	va_start(ap, fmt);
	vsnprintf(r->text + used, sizeof(r->text) - used, fmt, ap);
	va_end(ap);
}

void reply_from_policy(struct smtp_reply *r, const struct policy_reply *p)
{
	reply_error(r, p->code, p->status, "%s", p->text);
	if (p->code == 421) /* RFC 5321 3.8: the server closes after 421 */
		r->flags |= REPLY_CLOSE;
}

void reply_format(const struct smtp_reply *r, buf_t *out)
{
	const char *line = r->text;
	for (;;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
		buf_printf(out, "%03d%c", r->code, nl != NULL ? '-' : ' ');
		if (r->status[0] != '\0')
			buf_printf(out, "%s ", r->status);
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)line[i];
			buf_putc(out, (c < 0x20 || c == 0x7f) ? '?' : (char)c);
		}
		buf_puts(out, "\r\n");
		if (nl == NULL)
			break;
		line = nl + 1;
	}
}
