/*
 * scan_verdict.c - the content pipeline's verdict (scan.h): building one
 * (the helpers stages use), the verdict of a message that could not be
 * scanned, and the normal form every verdict leaves the pipeline in, which
 * the scan protocol (scan_proto.h) also checks on the way in.
 *
 * RFCs: RFC 3463 (enhanced status codes), RFC 5322 section 2.2 (header
 * fields: the form queue_writer_add_header accepts). Untrusted input:
 * what stages put in a verdict may come from the message (a virus name, a
 * file name); it is cut and cleaned here. Privilege: unprivileged
 * scanners, scan master, smtp workers, `postern scan`.
 */
#include "scan.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../lib/xalloc.h"

#define DEFAULT_REJECT_TEXT "Message refused by content policy"
#define DEFAULT_TEMPFAIL_TEXT "Message could not be checked, try again later"

void scan_verdict_init(struct scan_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->action = SCAN_ACCEPT;
}

void scan_verdict_free(struct scan_verdict *v)
{
	strlist_free(&v->headers);
	strlist_free(&v->remove_headers);
	strlist_free(&v->hits);
	scan_verdict_init(v);
}

const char *scan_action_name(enum scan_action a)
{
	static const char *const names[] = { "accept", "tag", "reject",
					     "tempfail", "discard", "quarantine" };
	return (size_t)a < ARRAY_LEN(names) ? names[a] : "?";
}

void scan_verdict_set(struct scan_verdict *v, enum scan_action a, int code, const char *status,
		      const char *reason, const char *fmt, ...)
{
	va_list ap;
	v->action = a;
	v->code = code;
	snprintf(v->status, sizeof(v->status), "%s", status != NULL ? status : "");
	snprintf(v->reason, sizeof(v->reason), "%s", reason != NULL ? reason : "");
	va_start(ap, fmt);
	vsnprintf(v->text, sizeof(v->text), fmt, ap);
	va_end(ap);
}

/* ---- the characters of each field --------------------------------------- */

static bool field_name_char(unsigned char c)
{
	return c > ' ' && c < 127 && c != ':';
}

bool scan_field_name_ok(const char *name)
{
	size_t n = 0;
	while (n <= SCAN_FIELD_NAME_MAX && field_name_char((unsigned char)name[n]))
		n++;
	return n > 0 && n <= SCAN_FIELD_NAME_MAX && name[n] == '\0';
}

bool scan_header_field_ok(const char *field)
{
	size_t len = strnlen(field, SCAN_HEADER_TEXT_MAX + 1), name = 0;
	if (len > SCAN_HEADER_TEXT_MAX)
		return false;
	while (name < len && field_name_char((unsigned char)field[name]))
		name++;
	if (name == 0 || name > 255 || field[name] != ':')
		return false;
	for (size_t i = name + 1; i < len; i++) {
		unsigned char c = (unsigned char)field[i];
		if (c == '\n') {
			if (field[i + 1] != ' ' && field[i + 1] != '\t')
				return false;
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			return false;
		}
	}
	return true;
}

static bool reason_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '-';
}

bool scan_reason_ok(const char *reason)
{
	for (const char *p = reason; *p != '\0'; p++)
		if (!reason_char((unsigned char)*p))
			return false;
	return strlen(reason) < sizeof(((struct scan_verdict *)0)->reason);
}

/* Hits go into log lines as one comma-separated field: no control
 * character, space or comma (UTF-8 file names keep their letters). */
static bool hit_char(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != ',';
}

bool scan_hit_ok(const char *hit)
{
	size_t n = strnlen(hit, SCAN_HIT_MAX + 1);
	if (n == 0 || n > SCAN_HIT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!hit_char((unsigned char)hit[i]))
			return false;
	return true;
}

bool scan_stage_name_ok(const char *name)
{
	size_t n = strnlen(name, SCAN_STAGE_NAME_MAX + 1);
	if (n == 0 || n > SCAN_STAGE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* 1 to 3 digits; advances *p. */
static bool digits(const char **p)
{
	size_t n = 0;
	while (n < 4 && (*p)[n] >= '0' && (*p)[n] <= '9')
		n++;
	*p += n;
	return n >= 1 && n <= 3;
}

bool scan_status_ok(const char *status, char cls)
{
	const char *p = status;
	if (p[0] != cls || p[1] != '.')
		return false;
	p += 2;
	if (!digits(&p) || *p++ != '.' || !digits(&p))
		return false;
	return *p == '\0';
}

/* ---- adding to a verdict ---------------------------------------------------- */

bool scan_verdict_add_header(struct scan_verdict *v, const char *field)
{
	if (v->headers.count >= SCAN_HEADERS_MAX || !scan_header_field_ok(field))
		return false;
	strlist_add(&v->headers, field);
	return true;
}

bool scan_verdict_remove_header(struct scan_verdict *v, const char *name)
{
	if (!scan_field_name_ok(name))
		return false;
	for (size_t i = 0; i < v->remove_headers.count; i++)
		if (strcasecmp(v->remove_headers.items[i], name) == 0)
			return true;
	if (v->remove_headers.count >= SCAN_HEADERS_MAX)
		return false;
	strlist_add(&v->remove_headers, name);
	return true;
}

void scan_verdict_add_hit(struct scan_verdict *v, const char *hit)
{
	char clean[SCAN_HIT_MAX + 1];
	size_t n = strnlen(hit, SCAN_HIT_MAX);
	/* Cut before a UTF-8 sequence rather than inside one. */
	while (n > 0 && n == SCAN_HIT_MAX && ((unsigned char)hit[n] & 0xc0) == 0x80)
		n--;
	if (v->hits.count >= SCAN_HITS_MAX || n == 0)
		return;
	for (size_t i = 0; i < n; i++)
		clean[i] = hit_char((unsigned char)hit[i]) ? hit[i] : '_';
	clean[n] = '\0';
	strlist_add(&v->hits, clean);
}

void scan_verdict_add_timing(struct scan_verdict *v, const char *stage, uint32_t us)
{
	if (v->timing_count >= SCAN_TIMINGS_MAX)
		return;
	v->timings[v->timing_count].stage = stage;
	v->timings[v->timing_count].us = us;
	v->timing_count++;
}

void scan_verdict_fail(struct scan_verdict *v, bool fail_open, const char *reason,
		       const char *fmt, ...)
{
	va_list ap;
	v->action = fail_open ? SCAN_ACCEPT : SCAN_TEMPFAIL;
	v->code = fail_open ? 0 : 451;
	snprintf(v->status, sizeof(v->status), "%s", fail_open ? "" : "4.7.0");
	snprintf(v->reason, sizeof(v->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(v->text, sizeof(v->text), fmt, ap);
	va_end(ap);
}

bool scan_verdict_failed(const struct scan_verdict *v)
{
	return strncmp(v->reason, "scan_", 5) == 0;
}

/* ---- the normal form ------------------------------------------------------- */

static void normalize_reply(struct scan_verdict *v)
{
	bool refuses = v->action == SCAN_REJECT || v->action == SCAN_TEMPFAIL;
	if (!refuses) {
		v->code = 0;
		v->status[0] = '\0';
		return;
	}
	bool reject = v->action == SCAN_REJECT;
	int low = reject ? 500 : 400;
	if (v->code < low || v->code > low + 99) {
		v->code = reject ? 550 : 451;
		snprintf(v->status, sizeof(v->status), "%s", reject ? "5.7.1" : "4.7.0");
	} else if (!scan_status_ok(v->status, reject ? '5' : '4')) {
		snprintf(v->status, sizeof(v->status), "%s", reject ? "5.7.1" : "4.7.0");
	}
	if (v->text[0] == '\0')
		snprintf(v->text, sizeof(v->text), "%s",
			 reject ? DEFAULT_REJECT_TEXT : DEFAULT_TEMPFAIL_TEXT);
}

static void keep_valid_headers(struct scan_verdict *v)
{
	strlist_t kept = { 0 };
	for (size_t i = 0; i < v->headers.count; i++)
		if (kept.count < SCAN_HEADERS_MAX && scan_header_field_ok(v->headers.items[i]))
			strlist_add(&kept, v->headers.items[i]);
	strlist_free(&v->headers);
	v->headers = kept;
	strlist_t names = v->remove_headers;
	memset(&v->remove_headers, 0, sizeof(v->remove_headers));
	for (size_t i = 0; i < names.count; i++)
		scan_verdict_remove_header(v, names.items[i]);
	strlist_free(&names);
}

void scan_verdict_normalize(struct scan_verdict *v)
{
	if ((unsigned)v->action > SCAN_QUARANTINE)
		v->action = SCAN_TEMPFAIL; /* a stage's bug: fail closed */
	normalize_reply(v);
	for (char *p = v->text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	for (char *p = v->reason; *p != '\0'; p++)
		if (!reason_char((unsigned char)*p))
			*p = '_';
	keep_valid_headers(v);
	strlist_t hits = v->hits;
	memset(&v->hits, 0, sizeof(v->hits));
	for (size_t i = 0; i < hits.count; i++)
		scan_verdict_add_hit(v, hits.items[i]);
	strlist_free(&hits);
	size_t kept = 0;
	for (size_t i = 0; i < v->timing_count && i < SCAN_TIMINGS_MAX; i++)
		if (v->timings[i].stage != NULL && scan_stage_name_ok(v->timings[i].stage))
			v->timings[kept++] = v->timings[i];
	v->timing_count = kept;
}
