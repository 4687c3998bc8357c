/*
 * report_html.c - postern report --html: one self-contained page, the
 * charts drawn as inline SVG (no external asset, no script): traffic per
 * hour, rejections by reason, size, delay and spam score histograms, and
 * the tables of the text report.
 *
 * Untrusted input: table keys from log lines, written HTML-escaped.
 * Privilege: the caller's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "report.h"
#include "report_out.h"

static const char *const series_colours[RH_SERIES] = {
	"#3b7dd8", "#2f9e44", "#f08c00", "#862e9c", "#e03131",
};

static void put_escaped(buf_t *out, const char *raw)
{
	buf_t clean = BUF_INIT;
	report_put_clean(&clean, raw);
	for (const char *s = buf_cstr(&clean); *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '<': buf_puts(out, "&lt;"); break;
		case '>': buf_puts(out, "&gt;"); break;
		case '&': buf_puts(out, "&amp;"); break;
		case '"': buf_puts(out, "&quot;"); break;
		case '\'': buf_puts(out, "&#39;"); break;
		default: buf_putc(out, (char)c);
		}
	}
	buf_free(&clean);
}

/* Vertical bars: labels[i] under values[i]; one series. */
static void svg_bars(buf_t *out, const char *title, const char *const *labels,
		     const uint64_t *values, size_t n, const char *colour)
{
	const int w = 640, h = 220, left = 50, bottom = 40, top_margin = 24;
	uint64_t max = 1;
	for (size_t i = 0; i < n; i++)
		if (values[i] > max)
			max = values[i];
	double slot = (double)(w - left - 10) / (double)(n > 0 ? n : 1);
	double plot_h = h - bottom - top_margin;
	buf_printf(out, "<svg class=\"chart\" role=\"img\" width=\"%d\" height=\"%d\" "
		   "viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\"><title>", w, h, w, h);
	put_escaped(out, title);
	buf_printf(out, "</title><text x=\"%d\" y=\"16\" class=\"t\">", left);
	put_escaped(out, title);
	buf_printf(out, "</text><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>"
		   "<text x=\"%d\" y=\"%d\" class=\"a\" text-anchor=\"end\">%llu</text>",
		   left, h - bottom, w - 10, h - bottom, left - 4, top_margin + 8,
		   (unsigned long long)max);
	for (size_t i = 0; i < n; i++) {
		double bh = plot_h * (double)values[i] / (double)max;
		double x = left + slot * (double)i + slot * 0.1;
		buf_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
			   "fill=\"%s\"><title>", x, h - bottom - bh, slot * 0.8, bh, colour);
		put_escaped(out, labels[i]);
		buf_printf(out, ": %llu</title></rect>", (unsigned long long)values[i]);
		buf_printf(out, "<text x=\"%.1f\" y=\"%d\" class=\"a\" text-anchor=\"middle\">",
			   x + slot * 0.4, h - bottom + 14);
		put_escaped(out, labels[i]);
		buf_puts(out, "</text>");
	}
	buf_puts(out, "</svg>\n");
}

/* Grouped bars of every series: one group per label (hours or days). */
static void svg_traffic(buf_t *out, const char *title, const char *const *labels,
			const uint64_t (*counts)[RH_SERIES], size_t n)
{
	const int w = 760, h = 260, left = 50, bottom = 60, top_margin = 24;
	uint64_t max = 1;
	for (size_t g = 0; g < n; g++)
		for (size_t s = 0; s < RH_SERIES; s++)
			if (counts[g][s] > max)
				max = counts[g][s];
	double slot = (double)(w - left - 10) / (double)(n > 0 ? n : 1);
	double bar = slot * 0.8 / RH_SERIES, plot_h = h - bottom - top_margin;
	size_t every = n / 24 + 1; /* a label under every group, or every few */
	buf_printf(out, "<svg class=\"chart\" role=\"img\" width=\"%d\" height=\"%d\" "
		   "viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\"><title>", w, h, w, h);
	put_escaped(out, title);
	buf_printf(out, "</title><text x=\"%d\" y=\"16\" class=\"t\">", left);
	put_escaped(out, title);
	buf_printf(out, "</text><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>"
		   "<text x=\"%d\" y=\"%d\" class=\"a\" text-anchor=\"end\">%llu</text>",
		   left, h - bottom, w - 10, h - bottom, left - 4, top_margin + 8,
		   (unsigned long long)max);
	for (size_t g = 0; g < n; g++) {
		for (size_t s = 0; s < RH_SERIES; s++) {
			double bh = plot_h * (double)counts[g][s] / (double)max;
			double x = left + slot * (double)g + slot * 0.1 + bar * (double)s;
			buf_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
				   "fill=\"%s\"><title>", x, h - bottom - bh, bar, bh,
				   series_colours[s]);
			put_escaped(out, labels[g]);
			buf_printf(out, " %s: %llu</title></rect>", report_hour_names[s],
				   (unsigned long long)counts[g][s]);
		}
		if (g % every == 0) {
			buf_printf(out, "<text x=\"%.1f\" y=\"%d\" class=\"a\" "
				   "text-anchor=\"middle\">", left + slot * ((double)g + 0.5),
				   h - bottom + 14);
			put_escaped(out, labels[g]);
			buf_puts(out, "</text>");
		}
	}
	for (size_t s = 0; s < RH_SERIES; s++)
		buf_printf(out, "<rect x=\"%zu\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			   "<text x=\"%zu\" y=\"%d\" class=\"a\">%s</text>", left + s * 120,
			   h - 22, series_colours[s], left + s * 120 + 14, h - 13,
			   report_hour_names[s]);
	buf_puts(out, "</svg>\n");
}

static void svg_hourly(buf_t *out, const struct report *r)
{
	char names[24][12];
	const char *labels[24];
	for (int hr = 0; hr < 24; hr++) {
		snprintf(names[hr], sizeof(names[hr]), "%02d", hr);
		labels[hr] = names[hr];
	}
	svg_traffic(out, "Traffic per hour (UTC)", labels, r->hourly, 24);
}

/* Traffic per day, when the log spans more than one. */
static void svg_daily(buf_t *out, const struct report *r)
{
	if (r->day_count < 2)
		return;
	const struct report_day **days = xcalloc(r->day_count, sizeof(*days));
	size_t n = report_days_sorted(r, days);
	const char **labels = xcalloc(n, sizeof(*labels));
	uint64_t (*counts)[RH_SERIES] = xcalloc(n, sizeof(*counts));
	for (size_t i = 0; i < n; i++) {
		labels[i] = days[i]->name;
		memcpy(counts[i], days[i]->counts, sizeof(counts[i]));
	}
	svg_traffic(out, "Traffic per day", labels, (const uint64_t (*)[RH_SERIES])counts, n);
	free(counts);
	free(labels);
	free(days);
}

/* Horizontal bars of a table's top entries. */
static void svg_table_bars(buf_t *out, const struct report *r, enum report_table table,
			   const char *title, size_t top)
{
	const struct report_top_item **items = xcalloc(top > 0 ? top : 1, sizeof(*items));
	size_t n = report_top_sorted(&r->tables[table], items, top);
	const int w = 640, left = 220, row = 20, top_margin = 26;
	int h = top_margin + (int)(n > 0 ? n : 1) * row + 8;
	uint64_t max = n > 0 ? items[0]->count : 1;
	buf_printf(out, "<svg class=\"chart\" role=\"img\" width=\"%d\" height=\"%d\" "
		   "viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\"><title>", w, h, w, h);
	put_escaped(out, title);
	buf_puts(out, "</title><text x=\"4\" y=\"16\" class=\"t\">");
	put_escaped(out, title);
	buf_puts(out, "</text>");
	if (n == 0)
		buf_printf(out, "<text x=\"%d\" y=\"%d\" class=\"a\">(none)</text>", left,
			   top_margin + 12);
	for (size_t i = 0; i < n; i++) {
		int y = top_margin + (int)i * row;
		double bw = (double)(w - left - 60) * (double)items[i]->count / (double)max;
		buf_printf(out, "<text x=\"%d\" y=\"%d\" class=\"a\" text-anchor=\"end\">",
			   left - 6, y + 13);
		char cut[40];
		snprintf(cut, sizeof(cut), "%s", items[i]->key);
		put_escaped(out, cut);
		buf_printf(out, "</text><rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
			   "fill=\"#e03131\"><title>", left, y + 2, bw, row - 6);
		put_escaped(out, items[i]->key);
		buf_printf(out, ": %llu</title></rect><text x=\"%.1f\" y=\"%d\" class=\"a\">%llu"
			   "</text>", (unsigned long long)items[i]->count, left + bw + 4, y + 13,
			   (unsigned long long)items[i]->count);
	}
	buf_puts(out, "</svg>\n");
	free(items);
}

static void html_table(buf_t *out, const struct report *r, const struct report_table_info *ti,
		       size_t top)
{
	const struct report_top_item **items = xcalloc(top > 0 ? top : 1, sizeof(*items));
	size_t n = report_top_sorted(&r->tables[ti->table], items, top);
	buf_printf(out, "<table class=\"top\" id=\"%s\"><caption>", report_table_names[ti->table]);
	put_escaped(out, ti->title);
	buf_puts(out, "</caption>");
	if (n == 0)
		buf_puts(out, "<tr><td colspan=\"2\">(none)</td></tr>");
	for (size_t i = 0; i < n; i++) {
		buf_printf(out, "<tr><td class=\"n\">%llu</td><td>",
			   (unsigned long long)items[i]->count);
		put_escaped(out, items[i]->key);
		buf_puts(out, "</td></tr>");
	}
	buf_puts(out, "</table>\n");
	free(items);
}

static void svg_histogram(buf_t *out, const struct report *r, enum report_hist hist,
			  const char *colour)
{
	size_t n;
	const uint64_t *v = report_hist(r, hist, &n);
	char labels[16][40];
	const char *ptrs[16];
	for (size_t i = 0; i < n && i < 16; i++) {
		/* "1min - 10min" as "1min-10min": the bars are narrow */
		char wide[40];
		report_bucket_label(hist, i, wide, sizeof(wide));
		size_t k = 0;
		for (const char *c = wide; *c != '\0' && k + 1 < sizeof(labels[i]); c++)
			if (*c != ' ' || (c[1] != '-' && (c == wide || c[-1] != '-')))
				labels[i][k++] = *c;
		labels[i][k] = '\0';
		ptrs[i] = labels[i];
	}
	svg_bars(out, report_hist_titles[hist], ptrs, v, n < 16 ? n : 16, colour);
}

void report_write_html(const struct report *r, size_t top, buf_t *out)
{
	buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		      "<title>postern report</title><style>"
		      "body{font-family:sans-serif;margin:1.5em;color:#222}"
		      "svg.chart{display:block;margin:1em 0;background:#fafafa;border:1px solid #ddd}"
		      "svg .t{font-size:14px;font-weight:bold}svg .a{font-size:10px}"
		      "table{border-collapse:collapse;margin:0.5em 1.5em 1em 0;display:inline-table;"
		      "min-width:16em;"
		      "vertical-align:top}caption{font-weight:bold;text-align:left}"
		      "td{border-bottom:1px solid #eee;padding:2px 8px}td.n{text-align:right}"
		      "</style></head><body>\n<h1>postern report</h1>\n");
	if (r->first_time[0] != '\0') {
		buf_puts(out, "<p>From ");
		put_escaped(out, r->first_time);
		buf_puts(out, " to ");
		put_escaped(out, r->last_time);
		buf_puts(out, "</p>\n");
	}
	buf_puts(out, "<table id=\"counts\"><caption>Messages</caption>");
	for (size_t i = 0; i < report_count_row_count; i++) {
		buf_printf(out, "<tr id=\"count-%s\"><td>", report_count_rows[i].key);
		put_escaped(out, report_count_rows[i].title);
		buf_printf(out, "</td><td class=\"n\">%llu</td></tr>",
			   (unsigned long long)report_count_value(r, i));
	}
	buf_puts(out, "</table>\n<h2>Traffic</h2>\n");
	svg_hourly(out, r);
	svg_daily(out, r);
	buf_puts(out, "<h2>Rejections</h2>\n");
	svg_table_bars(out, r, RT_REJ_REASON, "Rejections by reason", top);
	buf_puts(out, "<h2>Sizes and delays</h2>\n");
	svg_histogram(out, r, REPORT_HIST_SIZE, "#3b7dd8");
	svg_histogram(out, r, REPORT_HIST_DELAY, "#2f9e44");
	buf_puts(out, "<h2>Content scanning</h2>\n");
	svg_histogram(out, r, REPORT_HIST_SCORE, "#f08c00");
	buf_puts(out, "<h2>Tables</h2>\n");
	for (size_t i = 0; i < report_table_info_count; i++)
		html_table(out, r, &report_table_infos[i], top);
	buf_printf(out, "<h2>Lines</h2>\n<table id=\"lines\"><tr><td>read</td><td class=\"n\">%llu"
		   "</td></tr><tr><td>message events</td><td class=\"n\">%llu</td></tr>"
		   "<tr><td>postern's own</td><td class=\"n\">%llu</td></tr>"
		   "<tr><td>not understood</td><td class=\"n\">%llu</td></tr>"
		   "<tr><td>too long</td><td class=\"n\">%llu</td></tr></table>\n",
		   (unsigned long long)r->lines.total, (unsigned long long)r->lines.events,
		   (unsigned long long)r->lines.daemon, (unsigned long long)r->lines.not_understood,
		   (unsigned long long)r->lines.too_long);
	if (r->sample_count > 0) {
		buf_puts(out, "<ul id=\"samples\">");
		for (size_t i = 0; i < r->sample_count; i++) {
			buf_puts(out, "<li><code>");
			put_escaped(out, r->samples[i].where);
			buf_puts(out, ": ");
			put_escaped(out, r->samples[i].text);
			buf_puts(out, "</code></li>");
		}
		buf_puts(out, "</ul>\n");
	}
	buf_puts(out, "</body></html>\n");
}
