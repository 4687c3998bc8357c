/*
 * report_parse.h - what report_line.c (the reading of a line) and
 * report_events.c (the meaning of its words) share. Internal to
 * src/report/.
 */
#ifndef POSTERN_REPORT_PARSE_H
#define POSTERN_REPORT_PARSE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../lib/buf.h"
#include "report.h"

/* One line, taken apart (slices into the line). */
struct line_view {
	int hour;     /* 0 - 23, or -1 if the time has no hour we can read */
	slice_t time; /* the timestamp as written */
	slice_t day;  /* its day: "2026-11-30" or "Nov 30" */
	slice_t role;
	bool error;   /* logged at level error, fatal or panic */
	slice_t qid;  /* empty if the line has none */
	slice_t text; /* after the queue id */
};

static inline bool report_starts(slice_t s, const char *word, size_t wlen)
{
	return s.len >= wlen && memcmp(s.ptr, word, wlen) == 0;
}
#define REPORT_STARTS(s, lit) report_starts((s), (lit), sizeof(lit) - 1)

static inline slice_t report_skip(slice_t s, size_t n)
{
	return n >= s.len ? slice_make(s.ptr + s.len, 0) : slice_make(s.ptr + n, s.len - n);
}

/* Digits at the start of s (saturating); false if there are none. */
bool report_parse_u64(slice_t s, uint64_t *v_r);
/* "[-]digits[.digits]" at the start of s; false without digits. */
bool report_parse_number(slice_t s, double *v_r);
/*
 * The value of the field key=VALUE in s: fields are separated by spaces;
 * a value starting with '<' runs to the '>' before a space or the end (an
 * address may hold spaces and text like "reason=x") and is returned
 * without the brackets; a token starting with '(' ends the fields (free
 * text follows). False if there is no such field.
 */
bool report_field(slice_t s, const char *key, slice_t *val_r);

/* Count one for key in table t. */
void report_count(struct report *r, enum report_table t, slice_t key);
void report_count_cstr(struct report *r, enum report_table t, const char *key);
/* Count an address ("" as "<>") and its lower-cased domain. */
void report_count_address(struct report *r, enum report_table addrs, enum report_table domains,
			  slice_t addr);
/* Count one in the hour and the day of the line for series s. */
void report_traffic(struct report *r, const struct line_view *v, enum report_hour_series s);

enum report_event_result {
	REPORT_EVENT_COUNTED, /* a message event, counted */
	REPORT_EVENT_DAEMON,  /* postern's own life: start, stop, reload, ... */
	REPORT_EVENT_UNKNOWN, /* a message or session line of a kind not known */
};
/* Count what the line says (report_events.c). */
enum report_event_result report_event(struct report *r, const struct line_view *v);

#endif
