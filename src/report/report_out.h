/*
 * report_out.h - what the three outputs of postern report share: the
 * rows of counts, the tables with their titles, the histograms' labels.
 * Internal to src/report/.
 */
#ifndef POSTERN_REPORT_OUT_H
#define POSTERN_REPORT_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "report.h"

struct report_count_row {
	const char *key;   /* the JSON name */
	const char *title; /* the text and HTML label */
	size_t offset;     /* of a uint64_t in struct report_counts */
};
extern const struct report_count_row report_count_rows[];
extern const size_t report_count_row_count;
uint64_t report_count_value(const struct report *r, size_t row);

struct report_table_info {
	enum report_table table;
	const char *title;
	const char *group; /* the JSON object it is in */
};
extern const struct report_table_info report_table_infos[];
extern const size_t report_table_info_count;

enum report_hist { REPORT_HIST_SIZE, REPORT_HIST_DELAY, REPORT_HIST_SCORE };
extern const char *const report_hist_titles[3];
extern const char *const report_hist_names[3];
const uint64_t *report_hist(const struct report *r, enum report_hist h, size_t *n_r);
void report_bucket_label(enum report_hist h, size_t i, char *out, size_t size);
/* s with control characters (C0, DEL, C1) and bytes that are not well-formed UTF-8
 * written as '?'. */
void report_put_clean(buf_t *out, const char *s);
/* The days, in calendar order, into out_r (room for r->day_count). */
size_t report_days_sorted(const struct report *r, const struct report_day **out_r);
void report_format_bytes(uint64_t v, char *out, size_t size);
void report_format_seconds(double s, char *out, size_t size);

#endif
