/*
 * report_text.c - postern report's plain text and JSON outputs (the
 * numbers of struct report, nothing computed anew: the three outputs
 * agree by construction).
 *
 * Untrusted input: keys of the tables come from log lines; JSON strings
 * are escaped by json.c, text output replaces control characters.
 * Privilege: the caller's.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/json.h"
#include "../lib/xalloc.h"
#include "report.h"
#include "report_out.h"

const struct report_count_row report_count_rows[] = {
	{ "received", "Received", offsetof(struct report_counts, received) },
	{ "delivered", "Delivered", offsetof(struct report_counts, delivered) },
	{ "deferred", "Deferred", offsetof(struct report_counts, deferred) },
	{ "bounced", "Bounced", offsetof(struct report_counts, bounced) },
	{ "rejected", "Rejected", offsetof(struct report_counts, rejected) },
	{ "quarantined", "Quarantined", offsetof(struct report_counts, quarantined) },
	{ "rejected_temporary", "  of rejected: temporary (4xx)",
	  offsetof(struct report_counts, rejected_temporary) },
	{ "held", "Held", offsetof(struct report_counts, held) },
	{ "discarded", "Discarded", offsetof(struct report_counts, discarded) },
	{ "released", "Released from quarantine/hold", offsetof(struct report_counts, released) },
	{ "quarantine_expired", "Quarantine entries expired",
	  offsetof(struct report_counts, quarantine_expired) },
	{ "connections", "Connections", offsetof(struct report_counts, connections) },
	{ "transactions", "Transactions (MAIL accepted)",
	  offsetof(struct report_counts, transactions) },
	{ "recipients_accepted", "Recipients accepted",
	  offsetof(struct report_counts, recipients_accepted) },
	{ "bytes_received", "Bytes received", offsetof(struct report_counts, bytes_received) },
	{ "bounce_notices", "Bounce notices sent", offsetof(struct report_counts, bounce_notices) },
	{ "bounces_dropped", "Bounces dropped",
	  offsetof(struct report_counts, bounces_dropped) },
	{ "double_bounces", "Double bounces to the postmaster",
	  offsetof(struct report_counts, double_bounces) },
	{ "success_notices", "Success reports sent (NOTIFY=SUCCESS)",
	  offsetof(struct report_counts, success_notices) },
	{ "delay_warnings", "Delay warnings sent", offsetof(struct report_counts, delay_warnings) },
	{ "removed", "Messages removed from the queue", offsetof(struct report_counts, removed) },
	{ "scanned", "Messages scanned", offsetof(struct report_counts, scanned) },
	{ "spam_scored", "Spam scores seen", offsetof(struct report_counts, spam_scored) },
	{ "greylisted", "Greylisting events", offsetof(struct report_counts, greylisted) },
	{ "dns_listed", "DNS list hits", offsetof(struct report_counts, dns_listed) },
	{ "warnings", "Restriction warnings", offsetof(struct report_counts, warnings) },
	{ "errors", "Errors logged", offsetof(struct report_counts, errors) },
};
const size_t report_count_row_count = sizeof(report_count_rows) / sizeof(report_count_rows[0]);

const struct report_table_info report_table_infos[] = {
	{ RT_REJ_REASON, "Rejections by reason", "rejections" },
	{ RT_REJ_STAGE, "Rejections by stage", "rejections" },
	{ RT_REJ_RESTRICTION, "Rejections by restriction", "rejections" },
	{ RT_REJ_DNS_LIST, "Refusals by DNS list", "rejections" },
	{ RT_REJ_RULE, "Rejections by rule", "rejections" },
	{ RT_REJ_VIRUS, "Rejections by virus", "rejections" },
	{ RT_SENDERS, "Top senders (messages received)", "top" },
	{ RT_RECIPIENTS, "Top recipients (deliveries)", "top" },
	{ RT_CLIENTS, "Top client addresses (connections)", "top" },
	{ RT_MESSAGE_CLIENTS, "Top client addresses (messages received)", "top" },
	{ RT_SENDER_DOMAINS, "Top sender domains", "top" },
	{ RT_RECIPIENT_DOMAINS, "Top recipient domains", "top" },
	{ RT_REJECTED_CLIENTS, "Top rejected client addresses", "top" },
	{ RT_RELAYS, "Deliveries by relay", "top" },
	{ RT_VIRUSES, "Viruses found", "scan" },
	{ RT_SPAM_RULES, "Rules hit", "scan" },
	{ RT_SCAN_ACTIONS, "Scan verdicts", "scan" },
	{ RT_DEFER_REASONS, "Deferral reasons", "delivery" },
	{ RT_BOUNCE_REASONS, "Bounce reasons", "delivery" },
};
const size_t report_table_info_count = sizeof(report_table_infos) / sizeof(report_table_infos[0]);

uint64_t report_count_value(const struct report *r, size_t row)
{
	uint64_t v;
	memcpy(&v, (const char *)&r->c + report_count_rows[row].offset, sizeof(v));
	return v;
}

void report_bucket_label(enum report_hist h, size_t i, char *out, size_t size)
{
	char lo[32] = "", hi[32] = "";
	switch (h) {
	case REPORT_HIST_SIZE:
		if (i > 0)
			report_format_bytes(report_size_bounds[i - 1], lo, sizeof(lo));
		if (i < REPORT_SIZE_BUCKETS - 1)
			report_format_bytes(report_size_bounds[i], hi, sizeof(hi));
		break;
	case REPORT_HIST_DELAY:
		if (i > 0)
			report_format_seconds(report_delay_bounds[i - 1], lo, sizeof(lo));
		if (i < REPORT_DELAY_BUCKETS - 1)
			report_format_seconds(report_delay_bounds[i], hi, sizeof(hi));
		break;
	case REPORT_HIST_SCORE:
		if (i > 0)
			snprintf(lo, sizeof(lo), "%g", report_score_bounds[i - 1]);
		if (i < REPORT_SCORE_BUCKETS - 1)
			snprintf(hi, sizeof(hi), "%g", report_score_bounds[i]);
		break;
	}
	if (lo[0] == '\0')
		snprintf(out, size, "< %s", hi);
	else if (hi[0] == '\0')
		snprintf(out, size, ">= %s", lo);
	else
		snprintf(out, size, "%s - %s", lo, hi);
}

const uint64_t *report_hist(const struct report *r, enum report_hist h, size_t *n_r)
{
	switch (h) {
	case REPORT_HIST_SIZE:
		*n_r = REPORT_SIZE_BUCKETS;
		return r->size_hist;
	case REPORT_HIST_DELAY:
		*n_r = REPORT_DELAY_BUCKETS;
		return r->delay_hist;
	case REPORT_HIST_SCORE:
		*n_r = REPORT_SCORE_BUCKETS;
		return r->score_hist;
	}
	*n_r = 0;
	return NULL;
}

const char *const report_hist_titles[3] = {
	"Message sizes (received)", "Delivery delays (arrival to delivery)", "Spam scores",
};
const char *const report_hist_names[3] = { "size", "delay", "spam_score" };

void report_format_bytes(uint64_t v, char *out, size_t size)
{
	if (v >= 1048576 && v % 1048576 == 0)
		snprintf(out, size, "%lluM", (unsigned long long)(v / 1048576));
	else if (v >= 1024 && v % 1024 == 0)
		snprintf(out, size, "%lluK", (unsigned long long)(v / 1024));
	else
		snprintf(out, size, "%llu", (unsigned long long)v);
}

void report_format_seconds(double s, char *out, size_t size)
{
	if (s >= 3600)
		snprintf(out, size, "%gh", s / 3600);
	else if (s >= 60)
		snprintf(out, size, "%gmin", s / 60);
	else
		snprintf(out, size, "%gs", s);
}

void report_put_clean(buf_t *out, const char *s)
{
	size_t len = strlen(s);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80) {
			size_t n = json_utf8_char_len((const unsigned char *)s + i, len - i);
			/* U+0080..U+009F are C1 controls: a terminal may take
			 * U+009B for CSI (as spool_cli_put_escaped knows) */
			bool c1 = n == 2 && c == 0xc2 && (unsigned char)s[i + 1] < 0xa0;
			if (n > 0) {
				if (c1)
					buf_putc(out, '?');
				else
					buf_append(out, s + i, n);
				i += n;
				continue;
			}
		}
		buf_putc(out, c < 0x20 || c >= 0x7f ? '?' : (char)c);
		i++;
	}
}

/* "Nov 30" as 1130, an ISO day as 0 (ISO days sort as strings, first). */
static int syslog_day_rank(const char *name)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	if (name[0] == '\0' || name[4] == '-' || strlen(name) != 6)
		return 0;
	for (int m = 0; m < 12; m++)
		if (memcmp(name, months + 3 * m, 3) == 0)
			return (m + 1) * 100 + atoi(name + 4);
	return 0;
}

static int by_day(const void *a, const void *b)
{
	const struct report_day *x = *(const struct report_day *const *)a;
	const struct report_day *y = *(const struct report_day *const *)b;
	int rx = syslog_day_rank(x->name), ry = syslog_day_rank(y->name);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	return strcmp(x->name, y->name);
}

size_t report_days_sorted(const struct report *r, const struct report_day **out_r)
{
	for (size_t i = 0; i < r->day_count; i++)
		out_r[i] = &r->days[i];
	qsort(out_r, r->day_count, sizeof(*out_r), by_day);
	return r->day_count;
}

/* Text: a key with control characters and broken UTF-8 replaced, padded
 * to width bytes. */
static void put_clean(buf_t *out, const char *s, size_t width)
{
	size_t before = out->len;
	report_put_clean(out, s);
	for (size_t n = out->len - before; n < width; n++)
		buf_putc(out, ' ');
}

static void text_table(const struct report *r, const struct report_table_info *ti, size_t top,
		       buf_t *out)
{
	const struct report_top *t = &r->tables[ti->table];
	buf_printf(out, "\n%s\n", ti->title);
	const struct report_top_item **items = xcalloc(top > 0 ? top : 1, sizeof(*items));
	size_t n = report_top_sorted(t, items, top);
	if (n == 0)
		buf_puts(out, "  (none)\n");
	for (size_t i = 0; i < n; i++) {
		buf_printf(out, "  %10llu  ", (unsigned long long)items[i]->count);
		put_clean(out, items[i]->key, 0);
		if (items[i]->error > 0)
			buf_printf(out, "  (at most %llu too high)",
				   (unsigned long long)items[i]->error);
		buf_putc(out, '\n');
	}
	if (t->used > n)
		buf_printf(out, "  ... %zu more%s\n", t->used - n,
			   report_top_exact(t) ? "" : " kept (more were seen)");
	free(items);
}

void report_write_text(const struct report *r, size_t top, buf_t *out)
{
	buf_puts(out, "postern report\n");
	if (r->first_time[0] != '\0')
		buf_printf(out, "From %s to %s\n", r->first_time, r->last_time);
	buf_puts(out, "\nMessages\n");
	for (size_t i = 0; i < report_count_row_count; i++) {
		buf_puts(out, "  ");
		put_clean(out, report_count_rows[i].title, 34);
		buf_printf(out, "%12llu\n", (unsigned long long)report_count_value(r, i));
	}
	if (r->c.spam_scored > 0)
		buf_printf(out, "  %-34s%12.2f\n", "Mean spam score",
			   r->score_sum / (double)r->c.spam_scored);
	for (size_t i = 0; i < report_table_info_count; i++)
		text_table(r, &report_table_infos[i], top, out);
	for (int h = 0; h < 3; h++) {
		size_t n;
		const uint64_t *v = report_hist(r, (enum report_hist)h, &n);
		buf_printf(out, "\n%s\n", report_hist_titles[h]);
		for (size_t i = 0; i < n; i++) {
			char label[64];
			report_bucket_label((enum report_hist)h, i, label, sizeof(label));
			buf_printf(out, "  %-20s%10llu\n", label, (unsigned long long)v[i]);
		}
	}
	buf_puts(out, "\nPer hour (UTC)\n  hour");
	for (size_t s = 0; s < RH_SERIES; s++)
		buf_printf(out, "%11s", report_hour_names[s]);
	buf_putc(out, '\n');
	for (int h = 0; h < 24; h++) {
		buf_printf(out, "  %02d  ", h);
		for (size_t s = 0; s < RH_SERIES; s++)
			buf_printf(out, "%11llu", (unsigned long long)r->hourly[h][s]);
		buf_putc(out, '\n');
	}
	const struct report_day **days = xcalloc(r->day_count + 1, sizeof(*days));
	size_t nd = report_days_sorted(r, days);
	buf_puts(out, "\nPer day\n  day        ");
	for (size_t s = 0; s < RH_SERIES; s++)
		buf_printf(out, "%11s", report_hour_names[s]);
	buf_putc(out, '\n');
	for (size_t d = 0; d < nd; d++) {
		buf_printf(out, "  %-11s", days[d]->name);
		for (size_t s = 0; s < RH_SERIES; s++)
			buf_printf(out, "%11llu", (unsigned long long)days[d]->counts[s]);
		buf_putc(out, '\n');
	}
	if (r->days_dropped > 0)
		buf_printf(out, "  (%llu events of days after the first %d are in the totals only)\n",
			   (unsigned long long)r->days_dropped, REPORT_DAYS_MAX);
	free(days);
	buf_printf(out, "\nLines\n  %-34s%12llu\n  %-34s%12llu\n  %-34s%12llu\n"
		   "  %-34s%12llu\n  %-34s%12llu\n",
		   "read", (unsigned long long)r->lines.total, "message events",
		   (unsigned long long)r->lines.events, "postern's own (start, stop, ...)",
		   (unsigned long long)r->lines.daemon, "not understood",
		   (unsigned long long)r->lines.not_understood, "  of which too long",
		   (unsigned long long)r->lines.too_long);
	for (size_t i = 0; i < r->sample_count; i++) {
		buf_printf(out, "  %s: ", r->samples[i].where);
		put_clean(out, r->samples[i].text, 0);
		buf_putc(out, '\n');
	}
}

/* ---- JSON ---------------------------------------------------------------------- */

static void json_table(const struct report *r, enum report_table table, size_t top, buf_t *out)
{
	const struct report_top *t = &r->tables[table];
	const struct report_top_item **items = xcalloc(top > 0 ? top : 1, sizeof(*items));
	size_t n = report_top_sorted(t, items, top);
	buf_puts(out, "[");
	for (size_t i = 0; i < n; i++) {
		buf_puts(out, i > 0 ? ",{\"name\":" : "{\"name\":");
		json_put_cstr(out, items[i]->key);
		buf_printf(out, ",\"count\":%llu", (unsigned long long)items[i]->count);
		if (items[i]->error > 0)
			buf_printf(out, ",\"overcount_at_most\":%llu",
				   (unsigned long long)items[i]->error);
		buf_puts(out, "}");
	}
	buf_puts(out, "]");
	free(items);
}

static void json_group(const struct report *r, const char *group, size_t top, buf_t *out)
{
	buf_printf(out, ",\"%s\":{", group);
	bool first = true;
	for (size_t i = 0; i < report_table_info_count; i++) {
		const struct report_table_info *ti = &report_table_infos[i];
		if (strcmp(ti->group, group) != 0)
			continue;
		buf_printf(out, "%s\"%s\":", first ? "" : ",", report_table_names[ti->table]);
		json_table(r, ti->table, top, out);
		first = false;
	}
	buf_puts(out, "}");
}

void report_write_json(const struct report *r, size_t top, buf_t *out)
{
	buf_puts(out, "{");
	for (size_t i = 0; i < report_count_row_count; i++)
		buf_printf(out, "%s\"%s\":%llu", i > 0 ? "," : "", report_count_rows[i].key,
			   (unsigned long long)report_count_value(r, i));
	buf_puts(out, ",\"first\":");
	json_put_cstr(out, r->first_time[0] != '\0' ? r->first_time : NULL);
	buf_puts(out, ",\"last\":");
	json_put_cstr(out, r->last_time[0] != '\0' ? r->last_time : NULL);
	if (r->c.spam_scored > 0)
		buf_printf(out, ",\"spam_score_mean\":%.3f", r->score_sum / (double)r->c.spam_scored);
	json_group(r, "rejections", top, out);
	json_group(r, "top", top, out);
	json_group(r, "scan", top, out);
	json_group(r, "delivery", top, out);
	buf_puts(out, ",\"histograms\":{");
	for (int h = 0; h < 3; h++) {
		size_t n;
		const uint64_t *v = report_hist(r, (enum report_hist)h, &n);
		buf_printf(out, "%s\"%s\":[", h > 0 ? "," : "", report_hist_names[h]);
		for (size_t i = 0; i < n; i++) {
			char label[64];
			report_bucket_label((enum report_hist)h, i, label, sizeof(label));
			buf_printf(out, "%s{\"bucket\":", i > 0 ? "," : "");
			json_put_cstr(out, label);
			buf_printf(out, ",\"count\":%llu}", (unsigned long long)v[i]);
		}
		buf_puts(out, "]");
	}
	buf_puts(out, "},\"hourly\":[");
	for (int h = 0; h < 24; h++) {
		buf_printf(out, "%s{\"hour\":%d", h > 0 ? "," : "", h);
		for (size_t s = 0; s < RH_SERIES; s++)
			buf_printf(out, ",\"%s\":%llu", report_hour_names[s],
				   (unsigned long long)r->hourly[h][s]);
		buf_puts(out, "}");
	}
	buf_puts(out, "],\"daily\":[");
	const struct report_day **days = xcalloc(r->day_count + 1, sizeof(*days));
	size_t nd = report_days_sorted(r, days);
	for (size_t d = 0; d < nd; d++) {
		buf_puts(out, d > 0 ? ",{\"day\":" : "{\"day\":");
		json_put_cstr(out, days[d]->name);
		for (size_t s = 0; s < RH_SERIES; s++)
			buf_printf(out, ",\"%s\":%llu", report_hour_names[s],
				   (unsigned long long)days[d]->counts[s]);
		buf_puts(out, "}");
	}
	free(days);
	buf_printf(out, "],\"days_not_kept\":%llu", (unsigned long long)r->days_dropped);
	bool exact = true;
	for (size_t i = 0; i < RT_TABLES; i++)
		exact = exact && report_top_exact(&r->tables[i]);
	buf_printf(out, ",\"top_counts_exact\":%s", exact ? "true" : "false");
	buf_printf(out, ",\"lines\":{\"total\":%llu,\"events\":%llu,\"daemon\":%llu,"
		   "\"not_understood\":%llu,\"too_long\":%llu,\"samples\":[",
		   (unsigned long long)r->lines.total, (unsigned long long)r->lines.events,
		   (unsigned long long)r->lines.daemon, (unsigned long long)r->lines.not_understood,
		   (unsigned long long)r->lines.too_long);
	for (size_t i = 0; i < r->sample_count; i++) {
		buf_puts(out, i > 0 ? ",{\"where\":" : "{\"where\":");
		json_put_cstr(out, r->samples[i].where);
		buf_puts(out, ",\"text\":");
		json_put_cstr(out, r->samples[i].text);
		buf_puts(out, "}");
	}
	buf_puts(out, "]}}\n");
}
