/*
 * report_line.c - the reading of one log line for postern report: the
 * line's prefix (time, role, level, queue id), the key=value fields, and
 * the counting of lines and examples of those not understood; what the
 * line says is counted by report_events.c. docs/report.md has the grammar.
 *
 * A line is "TIME postern/ROLE[PID]: LEVEL: TEXT" (log.c's format; a
 * syslog prefix "Mmm dd hh:mm:ss HOST" before "postern/" is accepted too,
 * and LEVEL may be missing). TEXT may start with a queue id and ": ".
 *
 * Untrusted input: the log text, partly written by SMTP clients
 * (addresses, HELO names; log.c escapes control characters). Every read is
 * bounded by the line's length; lines longer than REPORT_LINE_MAX are not
 * parsed. Privilege: the caller's.
 */
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "report.h"
#include "report_parse.h"

const uint64_t report_size_bounds[REPORT_SIZE_BUCKETS - 1] = {
	1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
};
const double report_delay_bounds[REPORT_DELAY_BUCKETS - 1] = {
	0.1, 1, 10, 60, 600, 3600, 6 * 3600, 24 * 3600,
};
const double report_score_bounds[REPORT_SCORE_BUCKETS - 1] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15,
};
const char *const report_table_names[RT_TABLES] = {
	[RT_SENDERS] = "senders",
	[RT_RECIPIENTS] = "recipients",
	[RT_CLIENTS] = "clients",
	[RT_MESSAGE_CLIENTS] = "message_clients",
	[RT_SENDER_DOMAINS] = "sender_domains",
	[RT_RECIPIENT_DOMAINS] = "recipient_domains",
	[RT_REJECTED_CLIENTS] = "rejected_clients",
	[RT_RELAYS] = "relays",
	[RT_REJ_REASON] = "by_reason",
	[RT_REJ_STAGE] = "by_stage",
	[RT_REJ_RESTRICTION] = "by_restriction",
	[RT_REJ_DNS_LIST] = "by_dns_list",
	[RT_REJ_RULE] = "by_rule",
	[RT_REJ_VIRUS] = "by_virus",
	[RT_VIRUSES] = "viruses",
	[RT_SPAM_RULES] = "rules_hit",
	[RT_SCAN_ACTIONS] = "scan_actions",
	[RT_DEFER_REASONS] = "defer_reasons",
	[RT_BOUNCE_REASONS] = "bounce_reasons",
};
const char *const report_hour_names[RH_SERIES] = {
	"received", "delivered", "deferred", "bounced", "rejected",
};

void report_init(struct report *r, size_t capacity)
{
	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < RT_TABLES; i++)
		report_top_init(&r->tables[i], capacity);
}

void report_free(struct report *r)
{
	for (size_t i = 0; i < RT_TABLES; i++)
		report_top_free(&r->tables[i]);
	for (size_t i = 0; i < r->sample_count; i++) {
		free(r->samples[i].where);
		free(r->samples[i].text);
	}
	memset(r, 0, sizeof(*r));
}

/* ---- small readers over a slice ---------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Digits at the start of s (saturating); false if there are none. */
bool report_parse_u64(slice_t s, uint64_t *v_r)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; i < s.len && is_digit(s.ptr[i]); i++)
		v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(s.ptr[i] - '0');
	*v_r = v;
	return i > 0;
}

/* "[-]digits[.digits]" at the start of s. */
bool report_parse_number(slice_t s, double *v_r)
{
	size_t i = 0;
	bool neg = s.len > 0 && s.ptr[0] == '-';
	if (neg)
		i++;
	double v = 0;
	size_t digits = 0;
	for (; i < s.len && is_digit(s.ptr[i]) && digits < 18; i++, digits++)
		v = v * 10 + (s.ptr[i] - '0');
	if (i < s.len && s.ptr[i] == '.') {
		double scale = 0.1;
		for (i++; i < s.len && is_digit(s.ptr[i]); i++, scale /= 10)
			v += (s.ptr[i] - '0') * scale;
	}
	*v_r = neg ? -v : v;
	return digits > 0;
}

/*
 * The value of the field key=VALUE in s: fields are separated by spaces;
 * a value starting with '<' runs to the '>' before a space or the end
 * (an address may hold spaces) and is returned without the brackets; a
 * token starting with '(' ends the fields (free text follows).
 */
bool report_field(slice_t s, const char *key, slice_t *val_r)
{
	size_t klen = strlen(key);
	size_t i = 0;
	while (i < s.len) {
		while (i < s.len && s.ptr[i] == ' ')
			i++;
		if (i >= s.len || s.ptr[i] == '(')
			return false;
		bool match = s.len - i > klen && memcmp(s.ptr + i, key, klen) == 0 &&
			     s.ptr[i + klen] == '=';
		size_t vstart = i + klen + 1;
		if (match && vstart < s.len && s.ptr[vstart] == '<') {
			size_t j = vstart + 1;
			while (j < s.len && !(s.ptr[j] == '>' && (j + 1 == s.len || s.ptr[j + 1] == ' ')))
				j++;
			*val_r = slice_make(s.ptr + vstart + 1, j - vstart - 1);
			return true;
		}
		/* Skip this token; a <...> value may hold spaces. */
		const char *eq = memchr(s.ptr + i, '=', s.len - i);
		const char *sp = memchr(s.ptr + i, ' ', s.len - i);
		if (eq != NULL && (sp == NULL || eq < sp) && (size_t)(eq - s.ptr) + 1 < s.len &&
		    eq[1] == '<') {
			i = (size_t)(eq - s.ptr) + 2;
			while (i < s.len && !(s.ptr[i] == '>' && (i + 1 == s.len || s.ptr[i + 1] == ' ')))
				i++;
			i++;
		} else {
			i = sp != NULL ? (size_t)(sp - s.ptr) : s.len;
		}
		if (match) {
			size_t end = i < s.len ? i : s.len;
			*val_r = slice_make(s.ptr + vstart, end > vstart ? end - vstart : 0);
			return true;
		}
	}
	return false;
}

void report_count(struct report *r, enum report_table t, slice_t key)
{
	report_top_add(&r->tables[t], key.ptr, key.len, 1);
}

void report_count_cstr(struct report *r, enum report_table t, const char *key)
{
	report_top_add(&r->tables[t], key, strlen(key), 1);
}

/* The domain of an address, lower-cased into buf; "" for none. */
static slice_t domain_of(slice_t addr, char *buf, size_t size)
{
	const char *at = NULL;
	for (size_t i = addr.len; i > 0; i--)
		if (addr.ptr[i - 1] == '@') {
			at = addr.ptr + i;
			break;
		}
	if (at == NULL)
		return slice_make(buf, 0);
	size_t n = (size_t)(addr.ptr + addr.len - at);
	if (n >= size)
		n = size - 1;
	for (size_t i = 0; i < n; i++) {
		char c = at[i];
		buf[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	return slice_make(buf, n);
}

void report_count_address(struct report *r, enum report_table addrs, enum report_table domains,
			  slice_t addr)
{
	char dom[REPORT_TOP_KEY_MAX + 1];
	if (addr.len == 0) {
		report_count_cstr(r, addrs, "<>");
		return;
	}
	report_count(r, addrs, addr);
	slice_t d = domain_of(addr, dom, sizeof(dom));
	if (d.len > 0)
		report_count(r, domains, d);
}

/* The day's entry (made if there is room), or NULL. */
static struct report_day *find_day(struct report *r, slice_t day)
{
	if (day.len == 0 || day.len >= sizeof(r->days[0].name))
		return NULL;
	/* Logs run in order: the day of the last line is the likely one. */
	if (r->day_count > 0) {
		struct report_day *d = &r->days[r->day_last];
		if (strlen(d->name) == day.len && memcmp(d->name, day.ptr, day.len) == 0)
			return d;
	}
	for (size_t i = 0; i < r->day_count; i++)
		if (strlen(r->days[i].name) == day.len &&
		    memcmp(r->days[i].name, day.ptr, day.len) == 0) {
			r->day_last = i;
			return &r->days[i];
		}
	if (r->day_count >= REPORT_DAYS_MAX)
		return NULL;
	struct report_day *d = &r->days[r->day_count];
	memcpy(d->name, day.ptr, day.len);
	d->name[day.len] = '\0';
	r->day_last = r->day_count++;
	return d;
}

void report_traffic(struct report *r, const struct line_view *v, enum report_hour_series s)
{
	if (v->hour >= 0)
		r->hourly[v->hour][s]++;
	struct report_day *d = find_day(r, v->day);
	if (d != NULL)
		d->counts[s]++;
	else if (v->day.len > 0)
		r->days_dropped++;
}

/* ---- one line's parts -------------------------------------------------------------- */

static int two_digits(const char *p)
{
	return is_digit(p[0]) && is_digit(p[1]) ? (p[0] - '0') * 10 + (p[1] - '0') : -1;
}

/* "TIME [HOST] postern/ROLE[PID]: [LEVEL: ]TEXT"; false if not postern's. */
static bool parse_header(slice_t line, struct line_view *v)
{
	const char *sp = memchr(line.ptr, ' ', line.len);
	if (sp == NULL)
		return false;
	slice_t rest;
	if (line.len >= 20 && line.ptr[4] == '-' && line.ptr[10] == 'T' && line.ptr[13] == ':') {
		/* ISO 8601: 2026-11-22T22:03:01.123Z */
		v->time = slice_make(line.ptr, (size_t)(sp - line.ptr));
		v->day = slice_make(line.ptr, 10);
		v->hour = two_digits(line.ptr + 11);
		rest = report_skip(line, v->time.len + 1);
	} else if (line.len >= 16 && line.ptr[3] == ' ' && line.ptr[6] == ' ' && line.ptr[9] == ':') {
		/* syslog: "Nov 22 22:03:01 " */
		v->time = slice_make(line.ptr, 15);
		v->day = slice_make(line.ptr, 6);
		v->hour = two_digits(line.ptr + 7);
		rest = report_skip(line, 16);
	} else {
		return false;
	}
	if (v->hour > 23)
		v->hour = -1;
	/* At most one word (a host name) before "postern/". */
	if (!REPORT_STARTS(rest, "postern/")) {
		const char *sp2 = memchr(rest.ptr, ' ', rest.len);
		if (sp2 == NULL)
			return false;
		rest = report_skip(rest, (size_t)(sp2 - rest.ptr) + 1);
		if (!REPORT_STARTS(rest, "postern/"))
			return false;
	}
	rest = report_skip(rest, 8);
	size_t i = 0;
	while (i < rest.len && rest.ptr[i] != '[' && rest.ptr[i] != ':' && rest.ptr[i] != ' ')
		i++;
	v->role = slice_make(rest.ptr, i);
	if (i < rest.len && rest.ptr[i] == '[') {
		while (i < rest.len && rest.ptr[i] != ']')
			i++;
		i++;
	}
	if (i + 1 >= rest.len || rest.ptr[i] != ':' || rest.ptr[i + 1] != ' ')
		return false;
	rest = report_skip(rest, i + 2);
	static const char *const levels[] = { "info: ", "warning: ", "error: ", "debug: ",
					      "fatal: ", "panic: " };
	v->error = false;
	for (size_t k = 0; k < sizeof(levels) / sizeof(levels[0]); k++)
		if (report_starts(rest, levels[k], strlen(levels[k]))) {
			rest = report_skip(rest, strlen(levels[k]));
			v->error = k == 2 || k >= 4;
			break;
		}
	/* A queue id: upper-case hex digits, then ": ". */
	size_t q = 0;
	while (q < rest.len && q <= 32 &&
	       (is_digit(rest.ptr[q]) || (rest.ptr[q] >= 'A' && rest.ptr[q] <= 'F')))
		q++;
	if (q >= 10 && q <= 32 && q + 1 < rest.len && rest.ptr[q] == ':' && rest.ptr[q + 1] == ' ') {
		v->qid = slice_make(rest.ptr, q);
		rest = report_skip(rest, q + 2);
	} else {
		v->qid = slice_make(rest.ptr, 0);
	}
	v->text = rest;
	return true;
}

static void keep_sample(struct report *r, slice_t line, const char *file, uint64_t lineno)
{
	if (r->sample_count >= REPORT_SAMPLES)
		return;
	struct report_sample *s = &r->samples[r->sample_count++];
	buf_t b = BUF_INIT;
	buf_printf(&b, "%s:%llu", file != NULL ? file : "-", (unsigned long long)lineno);
	s->where = buf_steal(&b);
	size_t n = line.len < 200 ? line.len : 200;
	s->text = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line.ptr[i];
		s->text[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	s->text[n] = '\0';
}

/* The first and last time: ISO 8601 times compare as strings; a syslog
 * time ("Nov 30 07:12:01") is used only while no ISO time was seen. */
static void note_time(struct report *r, slice_t t)
{
	size_t n = t.len < sizeof(r->first_time) - 1 ? t.len : sizeof(r->first_time) - 1;
	char now[sizeof(r->first_time)];
	memcpy(now, t.ptr, n);
	now[n] = '\0';
	bool iso = n > 4 && now[4] == '-';
	if (iso && !r->times_iso) {
		r->times_iso = true;
		r->first_time[0] = r->last_time[0] = '\0';
	} else if (!iso && r->times_iso) {
		return;
	}
	if (!iso) {
		if (r->first_time[0] == '\0')
			memcpy(r->first_time, now, n + 1);
		memcpy(r->last_time, now, n + 1);
		return;
	}
	if (r->first_time[0] == '\0' || strcmp(now, r->first_time) < 0)
		memcpy(r->first_time, now, n + 1);
	if (strcmp(now, r->last_time) > 0)
		memcpy(r->last_time, now, n + 1);
}

void report_feed_too_long(struct report *r, const char *head, size_t len, const char *where_file,
			  uint64_t where_line)
{
	r->lines.total++;
	r->lines.too_long++;
	r->lines.not_understood++;
	keep_sample(r, slice_make(head, len), where_file, where_line);
}

void report_feed_line(struct report *r, const char *line, size_t len, const char *where_file,
		      uint64_t where_line)
{
	if (len > REPORT_LINE_MAX) {
		report_feed_too_long(r, line, len, where_file, where_line);
		return;
	}
	r->lines.total++;
	slice_t s = slice_make(line, len);
	if (s.len > 0 && s.ptr[s.len - 1] == '\r')
		s.len--;
	struct line_view v;
	if (!parse_header(s, &v)) {
		r->lines.not_understood++;
		keep_sample(r, s, where_file, where_line);
		return;
	}
	note_time(r, v.time);
	if (v.error)
		r->c.errors++;
	switch (report_event(r, &v)) {
	case REPORT_EVENT_COUNTED:
		r->lines.events++;
		break;
	case REPORT_EVENT_DAEMON:
		r->lines.daemon++;
		break;
	case REPORT_EVENT_UNKNOWN:
		r->lines.not_understood++;
		keep_sample(r, s, where_file, where_line);
		break;
	}
}
