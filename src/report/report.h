/*
 * report.h - postern report: a summary of postern's own log lines
 * (docs/report.md has the grammar it relies on).
 *
 * report_feed_line() takes one line at a time, in any order of files;
 * lines it does not understand are counted, never fatal. Every table is
 * bounded (report_top.h), so memory does not grow with the log.
 *
 * Untrusted input: the log text (parts of it come from SMTP clients:
 * addresses, HELO names). Privilege: whoever runs the command; the
 * report reads only the files it is given.
 */
#ifndef POSTERN_REPORT_H
#define POSTERN_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "report_top.h"

/* The longest line looked at; longer ones are counted as too long. */
#define REPORT_LINE_MAX 8192
/* How many lines that were not understood are kept as examples. */
#define REPORT_SAMPLES 5

/* Histogram buckets: bucket i counts values below bounds[i] (and at or
 * above bounds[i - 1]); the last bucket counts the rest. */
#define REPORT_SIZE_BUCKETS 9
#define REPORT_DELAY_BUCKETS 9
#define REPORT_SCORE_BUCKETS 13
/* Days kept for the traffic per day (more than a year of daily logs);
 * the series of later days are only in the totals. */
#define REPORT_DAYS_MAX 400

enum report_hour_series { RH_RECEIVED, RH_DELIVERED, RH_DEFERRED, RH_BOUNCED, RH_REJECTED,
			  RH_SERIES };

enum report_table {
	RT_SENDERS, RT_RECIPIENTS, RT_CLIENTS, RT_MESSAGE_CLIENTS, RT_SENDER_DOMAINS,
	RT_RECIPIENT_DOMAINS,
	RT_REJECTED_CLIENTS, RT_RELAYS,
	RT_REJ_REASON, RT_REJ_STAGE, RT_REJ_RESTRICTION, RT_REJ_DNS_LIST, RT_REJ_RULE,
	RT_REJ_VIRUS, RT_VIRUSES, RT_SPAM_RULES, RT_SCAN_ACTIONS, RT_DEFER_REASONS,
	RT_BOUNCE_REASONS, RT_TABLES
};

struct report_counts {
	uint64_t received, delivered, deferred, bounced, rejected, quarantined;
	uint64_t rejected_temporary; /* of rejected: 4xx replies */
	uint64_t held, discarded, released, quarantine_expired;
	uint64_t connections, transactions, recipients_accepted;
	uint64_t bytes_received;
	uint64_t bounce_notices, bounces_dropped, removed;
	uint64_t double_bounces, success_notices, delay_warnings; /* other DSNs sent */
	uint64_t scanned, spam_scored, greylisted, dns_listed, warnings;
	uint64_t errors; /* lines at level error, fatal or panic */
};

struct report_lines {
	uint64_t total;
	uint64_t events;        /* understood as a message event */
	uint64_t daemon;        /* postern's own life (start, stop, reload, ...) */
	uint64_t not_understood; /* not a postern line, or an unknown event */
	uint64_t too_long;      /* cut at REPORT_LINE_MAX (and counted not understood) */
};

struct report_day {
	char name[12]; /* "2026-11-30", or "Nov 30" from a syslog time */
	uint64_t counts[RH_SERIES];
};

struct report_sample {
	char *where; /* FILE:LINE */
	char *text;  /* cut to 200 bytes */
};

struct report {
	struct report_counts c;
	struct report_lines lines;
	struct report_top tables[RT_TABLES];
	uint64_t size_hist[REPORT_SIZE_BUCKETS];
	uint64_t delay_hist[REPORT_DELAY_BUCKETS];
	uint64_t score_hist[REPORT_SCORE_BUCKETS];
	double score_sum;
	uint64_t hourly[24][RH_SERIES]; /* summed over the days */
	struct report_day days[REPORT_DAYS_MAX];
	size_t day_count, day_last;
	uint64_t days_dropped; /* events of days past REPORT_DAYS_MAX */
	char first_time[32], last_time[32]; /* timestamps as logged, "" if none */
	bool times_iso; /* first/last are ISO 8601 times (syslog times are then ignored) */
	struct report_sample samples[REPORT_SAMPLES];
	size_t sample_count;
};

/* Bucket bounds (the upper bound of each bucket but the last). */
extern const uint64_t report_size_bounds[REPORT_SIZE_BUCKETS - 1];   /* bytes */
extern const double report_delay_bounds[REPORT_DELAY_BUCKETS - 1];   /* seconds */
extern const double report_score_bounds[REPORT_SCORE_BUCKETS - 1];   /* points */
/* Names of the tables and series for output ("senders", ...). */
extern const char *const report_table_names[RT_TABLES];
extern const char *const report_hour_names[RH_SERIES];

/* capacity: counters per top table (at least 1). */
void report_init(struct report *r, size_t capacity);
void report_free(struct report *r);

/* One log line without its newline (len may exceed REPORT_LINE_MAX: it is
 * then counted as too long). where_file/where_line name it in samples. */
void report_feed_line(struct report *r, const char *line, size_t len, const char *where_file,
		      uint64_t where_line);

/* A line longer than REPORT_LINE_MAX, of which head[0 .. len) was kept:
 * counted as too long (and not understood). */
void report_feed_too_long(struct report *r, const char *head, size_t len, const char *where_file,
			  uint64_t where_line);

/* Outputs: top: entries per table shown. */
void report_write_text(const struct report *r, size_t top, buf_t *out);
void report_write_json(const struct report *r, size_t top, buf_t *out);
void report_write_html(const struct report *r, size_t top, buf_t *out);

/* The command: postern report [--json|--html] [--top N] [LOGFILE...|-].
 * argv holds the arguments after "report". Returns the exit status. */
int report_cli_main(int argc, char **argv);

#endif
