/*
 * metrics.h - counters and histograms shared by every process of
 * "postern serve", read by the metrics role (src/server/metrics_role.c)
 * which renders them in Prometheus' text format.
 *
 * Design: the supervisor maps one anonymous MAP_SHARED segment
 * (metrics_init) before it forks anything, so every role, agent, scanner
 * and quota reader inherits the same pages. Counters are 64-bit atomics
 * added with relaxed ordering: one locked instruction, no system call, no
 * lock, no message to anyone. Counters never go back; one that a process
 * increments just before it dies is still counted. Histograms have fixed
 * buckets (METRICS_BUCKETS_US), a count and a sum in microseconds.
 * Labelled counters (a family with up to METRICS_LABELS_MAX label values)
 * live in a fixed open-addressed table of METRICS_SERIES_MAX series,
 * claimed lock-free the first time a combination of values is seen; past
 * that the additions count in postern_metrics_series_dropped_total. Each
 * process records its pid and role in a table of METRICS_PROCESSES_MAX
 * slots when it names its role (log_set_role calls
 * metrics_process_role), from which the metrics role derives processes
 * and resident memory per role.
 *
 * Without metrics_init (every command other than serve, the unit tests)
 * every recording call does nothing.
 *
 * Adding a metric is one line in one of the lists below, plus the call
 * where it happens, e.g. the POP3 sessions:
 *   X(POP3_CONNECTIONS, "postern_pop3_connections_total", "POP3 connections ...")
 *   metrics_count(METRIC_POP3_CONNECTIONS);
 * (The lists are X-macros so that the enum, the names and the help text
 * cannot drift apart.)
 *
 * RFCs: none. Untrusted input: label values come from our own reason
 * keys; they are cut and reduced to [A-Za-z0-9_.:@-] anyway. Privilege:
 * any; the segment holds no secret.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Plain counters: X(ID, name, help). */
#define METRICS_COUNTERS(X)                                                                   \
	X(SMTP_CONNECTIONS, "postern_smtp_connections_total",                                   \
	  "SMTP connections accepted by the smtp workers")                                      \
	X(SMTP_TRANSACTIONS, "postern_smtp_transactions_total",                                 \
	  "Mail transactions started (MAIL FROM answered 250)")                                 \
	X(SMTP_MESSAGES_ACCEPTED, "postern_smtp_messages_accepted_total",                       \
	  "Messages answered 250 at the end of data")                                           \
	X(SMTP_RECIPIENTS_ACCEPTED, "postern_smtp_recipients_accepted_total",                   \
	  "Recipients answered 250 at RCPT")                                                    \
	X(DNS_QUERIES, "postern_dns_queries_total", "DNS queries sent (cache misses)")          \
	X(DNS_TIMEOUTS, "postern_dns_timeouts_total", "DNS queries without an answer in time")  \
	X(POP3_CONNECTIONS, "postern_pop3_connections_total",                                   \
	  "POP3 connections given a session")                                                   \
	X(POP3_REFUSED, "postern_pop3_connections_refused_total",                               \
	  "POP3 connections refused at once (pop3_clients, the connection limit, a shutdown)")  \
	X(POP3_RETRIEVED, "postern_pop3_messages_retrieved_total", "Messages sent whole by RETR") \
	X(POP3_DELETED, "postern_pop3_messages_deleted_total",                                  \
	  "Messages removed by POP3 clients at QUIT")                                           \
	X(MILTER_CONVERSATIONS, "postern_milter_conversations_total",                           \
	  "Conversations an MTA opened with postern milter")

/* Labelled counters: X(ID, name, help, label names...) with exactly
 * METRICS_LABELS_MAX label names, NULL for the unused ones. */
#define METRICS_FAMILIES(X)                                                                   \
	X(SMTP_REJECTIONS, "postern_smtp_rejections_total",                                     \
	  "SMTP refusals by stage, reply class, check (the restriction or check that refused) " \
	  "and reason",                                                                         \
	  "stage", "class", "check", "reason")                                                  \
	X(DELIVERIES, "postern_deliveries_total",                                               \
	  "Delivery attempts' results per final recipient", "transport", "status", NULL, NULL)  \
	X(SCAN_VERDICTS, "postern_scan_verdicts_total", "Content scan verdicts", "verdict",      \
	  "reason", NULL, NULL)                                                                 \
	X(AUTH_LOGINS, "postern_auth_logins_total",                                             \
	  "Logins decided by the auth process, by service and result", "service", "result",     \
	  NULL, NULL)                                                                           \
	X(MILTER_MESSAGES, "postern_milter_messages_total",                                     \
	  "Messages postern milter answered, by its answer to the MTA and reason", "action",    \
	  "reason", NULL, NULL)

/* Histograms: X(ID, name, help); buckets METRICS_BUCKETS_US. */
#define METRICS_HISTOGRAMS(X)                                                                 \
	X(SCAN_SECONDS, "postern_scan_duration_seconds",                                        \
	  "Time a scanner took to judge one message")                                           \
	X(DNS_SECONDS, "postern_dns_query_duration_seconds",                                    \
	  "Time from a DNS query to its answer (timeouts included at the timeout)")

#define METRICS_LABELS_MAX 4
#define METRICS_SERIES_MAX 1024
#define METRICS_SERIES_KEY_MAX 160 /* the label values, each ended by a NUL */
#define METRICS_LABEL_VALUE_MAX 40
#define METRICS_PROCESSES_MAX 2048
#define METRICS_ROLE_MAX 16
/* Upper bounds of the histogram buckets, in microseconds (+Inf follows). */
#define METRICS_BUCKETS_US                                                                  \
	{ 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,  \
	  5000000, 10000000, 30000000, 60000000 }
#define METRICS_BUCKET_COUNT 15

#define METRICS_ENUM(id, ...) METRIC_##id,
enum metric_counter { METRICS_COUNTERS(METRICS_ENUM) METRIC_COUNTER_COUNT };
enum metric_family { METRICS_FAMILIES(METRICS_ENUM) METRIC_FAMILY_COUNT };
enum metric_histogram { METRICS_HISTOGRAMS(METRICS_ENUM) METRIC_HISTOGRAM_COUNT };
#undef METRICS_ENUM

/* Map the shared segment (the supervisor, before any fork); -1 with
 * errno if it cannot be mapped (postern then runs without metrics). */
int metrics_init(void);
/* Is there a segment (metrics_init succeeded in this process or an
 * ancestor)? */
bool metrics_enabled(void);

/* Recording: cheap, no system call, safe from any thread. */
void metrics_count(enum metric_counter id);
void metrics_add(enum metric_counter id, uint64_t n);
/* values[0..count): one per label name of the family, in order. */
void metrics_count_labels(enum metric_family id, const char *const *values, size_t count);
void metrics_observe_us(enum metric_histogram id, uint64_t microseconds);
/* The monotonic clock in microseconds (vDSO: no system call). */
uint64_t metrics_now_us(void);

/* This process plays role (at most METRICS_ROLE_MAX - 1 bytes kept):
 * claims a process slot (a few system calls: once per process). */
void metrics_process_role(const char *role);

/* ---- reading (the metrics role) ------------------------------------------- */

struct metrics_def {
	const char *name, *help;
	const char *labels[METRICS_LABELS_MAX]; /* families only; NULL = unused */
};
extern const struct metrics_def metrics_counter_defs[METRIC_COUNTER_COUNT];
extern const struct metrics_def metrics_family_defs[METRIC_FAMILY_COUNT];
extern const struct metrics_def metrics_histogram_defs[METRIC_HISTOGRAM_COUNT];
extern const uint64_t metrics_bucket_us[METRICS_BUCKET_COUNT];

uint64_t metrics_counter_value(enum metric_counter id);
/* Series i (0 <= i < METRICS_SERIES_MAX): false if the slot is unused;
 * else its family, its label values (NUL-separated in key_r, count in
 * *nvalues_r) and value. */
bool metrics_series(size_t i, enum metric_family *family_r,
		    char key_r[METRICS_SERIES_KEY_MAX], size_t *nvalues_r, uint64_t *value_r);
uint64_t metrics_series_dropped(void);
/* Histogram: cumulative counts are for the caller to add up; buckets_r
 * has METRICS_BUCKET_COUNT + 1 entries (the last: above every bound). */
void metrics_histogram(enum metric_histogram id, uint64_t buckets_r[METRICS_BUCKET_COUNT + 1],
		       uint64_t *count_r, uint64_t *sum_us_r);
/* Process slot i: false if unused, else its pid and role. */
bool metrics_process(size_t i, int *pid_r, char role_r[METRICS_ROLE_MAX]);

#endif
