/*
 * report_line.c - the parser of postern's log lines for postern report,
 * and the counting of what each line says (docs/report.md lists the
 * grammar).
 *
 * A line is "TIME postern/ROLE[PID]: LEVEL: TEXT" (log.c's format; a
 * syslog prefix "Mmm dd hh:mm:ss HOST" before "postern/" is accepted too,
 * and LEVEL may be missing). TEXT may start with a queue id and ": ". What
 * follows is looked up in a table of event kinds by its first words: a new
 * kind of event is one more table entry. Lines that are not postern's, and
 * message lines of a kind not in the table, are counted as not understood,
 * the first few kept as examples with FILE:LINE.
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

static bool starts(slice_t s, const char *word, size_t wlen)
{
	return s.len >= wlen && memcmp(s.ptr, word, wlen) == 0;
}
#define STARTS(s, lit) starts((s), (lit), sizeof(lit) - 1)

static slice_t skip(slice_t s, size_t n)
{
	return n >= s.len ? slice_make(s.ptr + s.len, 0) : slice_make(s.ptr + n, s.len - n);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Digits at the start of s (saturating); false if there are none. */
static bool parse_u64(slice_t s, uint64_t *v_r)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; i < s.len && is_digit(s.ptr[i]); i++)
		v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(s.ptr[i] - '0');
	*v_r = v;
	return i > 0;
}

/* "[-]digits[.digits]" at the start of s. */
static bool parse_number(slice_t s, double *v_r)
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
static bool field(slice_t s, const char *key, slice_t *val_r)
{
	size_t klen = strlen(key);
	size_t i = 0;
	while (i < s.len) {
		while (i < s.len && s.ptr[i] == ' ')
			i++;
		if (i >= s.len || s.ptr[i] == '(')
			return false;
		size_t start = i;
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
		(void)start;
	}
	return false;
}

static void count(struct report *r, enum report_table t, slice_t key)
{
	report_top_add(&r->tables[t], key.ptr, key.len, 1);
}

static void count_cstr(struct report *r, enum report_table t, const char *key)
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

static void count_address(struct report *r, enum report_table addrs, enum report_table domains,
			  slice_t addr)
{
	char dom[REPORT_TOP_KEY_MAX + 1];
	if (addr.len == 0) {
		count_cstr(r, addrs, "<>");
		return;
	}
	count(r, addrs, addr);
	slice_t d = domain_of(addr, dom, sizeof(dom));
	if (d.len > 0)
		count(r, domains, d);
}

/* ---- one line's parts -------------------------------------------------------------- */

struct line_view {
	int hour;      /* -1 if the time has no hour we can read */
	slice_t time;  /* the timestamp as written */
	slice_t role;
	slice_t qid;   /* empty if the line has none */
	slice_t text;  /* after the queue id */
};

static void hourly(struct report *r, const struct line_view *v, enum report_hour_series s)
{
	if (v->hour >= 0)
		r->hourly[v->hour][s]++;
}

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
		v->hour = two_digits(line.ptr + 11);
		rest = skip(line, v->time.len + 1);
	} else if (line.len >= 16 && line.ptr[3] == ' ' && line.ptr[6] == ' ' && line.ptr[9] == ':') {
		/* syslog: "Nov 22 22:03:01 " */
		v->time = slice_make(line.ptr, 15);
		v->hour = two_digits(line.ptr + 7);
		rest = skip(line, 16);
	} else {
		return false;
	}
	if (v->hour > 23)
		v->hour = -1;
	/* At most one word (a host name) before "postern/". */
	if (!STARTS(rest, "postern/")) {
		const char *sp2 = memchr(rest.ptr, ' ', rest.len);
		if (sp2 == NULL)
			return false;
		rest = skip(rest, (size_t)(sp2 - rest.ptr) + 1);
		if (!STARTS(rest, "postern/"))
			return false;
	}
	rest = skip(rest, 8);
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
	rest = skip(rest, i + 2);
	static const char *const levels[] = { "info: ", "warning: ", "error: ", "debug: ",
					      "fatal: ", "panic: " };
	for (size_t k = 0; k < sizeof(levels) / sizeof(levels[0]); k++)
		if (starts(rest, levels[k], strlen(levels[k]))) {
			rest = skip(rest, strlen(levels[k]));
			break;
		}
	/* A queue id: upper-case hex digits, then ": ". */
	size_t q = 0;
	while (q < rest.len && q <= 32 &&
	       (is_digit(rest.ptr[q]) || (rest.ptr[q] >= 'A' && rest.ptr[q] <= 'F')))
		q++;
	if (q >= 10 && q <= 32 && q + 1 < rest.len && rest.ptr[q] == ':' && rest.ptr[q + 1] == ' ') {
		v->qid = slice_make(rest.ptr, q);
		rest = skip(rest, q + 2);
	} else {
		v->qid = slice_make(rest.ptr, 0);
	}
	v->text = rest;
	return true;
}

/* ---- the events -------------------------------------------------------------------- */

/* An event handler: false if the line is not what its words promised. */
typedef bool event_fn(struct report *r, const struct line_view *v, slice_t rest);

static bool ev_known(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)r, (void)v, (void)rest;
	return true;
}

static bool ev_connect(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	slice_t client;
	if (!field(rest, "client", &client))
		return false;
	r->c.connections++;
	count(r, RT_CLIENTS, client);
	return true;
}

/* "reject: STAGE ... code=C X.Y.Z reason=R [restriction=N list=L ...]";
 * client is known already for "client=A reject: ..." lines. */
static bool count_reject(struct report *r, const struct line_view *v, slice_t rest, slice_t client)
{
	slice_t stage_word = rest, reason, restriction;
	const char *sp = memchr(rest.ptr, ' ', rest.len);
	stage_word.len = sp != NULL ? (size_t)(sp - rest.ptr) : rest.len;
	const char *stage;
	if (STARTS(stage_word, "helo="))
		stage = "HELO";
	else if (STARTS(stage_word, "unauthorised"))
		stage = "pipelining";
	else
		stage = NULL;
	uint64_t code = 0;
	slice_t code_s;
	if (field(rest, "code", &code_s))
		parse_u64(code_s, &code);
	if (!field(rest, "reason", &reason))
		reason = slice_from_cstr(stage != NULL && strcmp(stage, "pipelining") == 0
					 ? "pipelining" : "unknown");
	if (client.len == 0)
		field(rest, "client", &client);
	r->c.rejected++;
	if (code >= 400 && code < 500)
		r->c.rejected_temporary++;
	hourly(r, v, RH_REJECTED);
	count(r, RT_REJ_REASON, reason);
	if (stage != NULL)
		count_cstr(r, RT_REJ_STAGE, stage);
	else
		count(r, RT_REJ_STAGE, stage_word);
	if (field(rest, "restriction", &restriction))
		count(r, RT_REJ_RESTRICTION, restriction);
	if (client.len > 0)
		count(r, RT_REJECTED_CLIENTS, client);
	return true;
}

static bool ev_reject(struct report *r, const struct line_view *v, slice_t rest)
{
	return count_reject(r, v, rest, slice_make(rest.ptr, 0));
}

/* "dnsbl: WHAT listed score=N threshold=N action=A: LIST(answer)*W ..." */
static bool ev_dns_list(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	const char *listed = NULL;
	for (size_t i = 0; i + 8 <= rest.len; i++)
		if (memcmp(rest.ptr + i, " listed ", 8) == 0) {
			listed = rest.ptr + i;
			break;
		}
	if (listed == NULL)
		return true; /* looked up, not listed (or lists unanswered) */
	r->c.dns_listed++;
	slice_t action;
	slice_t after = skip(rest, (size_t)(listed - rest.ptr) + 8);
	if (!field(after, "action", &action))
		return false;
	if (action.len > 0 && action.ptr[action.len - 1] == ':')
		action.len--;
	if (!(action.len == 6 && memcmp(action.ptr, "reject", 6) == 0) &&
	    !(action.len == 8 && memcmp(action.ptr, "tempfail", 8) == 0))
		return true;
	const char *colon = memchr(after.ptr, ':', after.len);
	if (colon == NULL)
		return false;
	slice_t lists = skip(after, (size_t)(colon - after.ptr) + 1);
	size_t i = 0;
	while (i < lists.len) {
		while (i < lists.len && lists.ptr[i] == ' ')
			i++;
		size_t start = i;
		while (i < lists.len && lists.ptr[i] != '(' && lists.ptr[i] != ' ')
			i++;
		if (i > start)
			count(r, RT_REJ_DNS_LIST, slice_make(lists.ptr + start, i - start));
		while (i < lists.len && lists.ptr[i] != ' ')
			i++;
	}
	return true;
}

static bool ev_greylist(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v, (void)rest;
	r->c.greylisted++;
	return true;
}

static bool ev_warning(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v, (void)rest;
	r->c.warnings++;
	return true;
}

/* "client=A WHAT...": the session's events named by the words after the
 * client address. */
static const struct {
	const char *words;
	event_fn *handle;
} client_events[] = {
	{ "reject: ", ev_reject },
	{ "dnsbl: ", ev_dns_list },
	{ "rhsbl: ", ev_dns_list },
	{ "connect: refusing", ev_known },
	{ "early talker", ev_known },
	{ "TLS ", ev_known },
	{ "cannot start TLS", ev_known },
	{ "timeout ", ev_known },
	{ "too many errors", ev_known },
	{ "more than ", ev_known },
	{ "unauthorised pipelining", ev_known },
	{ "non-SMTP command", ev_known },
	{ "sent message text", ev_known },
	{ "checks did not answer", ev_known },
};

static bool ev_client(struct report *r, const struct line_view *v, slice_t rest)
{
	const char *sp = memchr(rest.ptr, ' ', rest.len);
	if (sp == NULL)
		return false;
	slice_t client = slice_make(rest.ptr + 7, (size_t)(sp - rest.ptr) - 7);
	slice_t after = skip(rest, (size_t)(sp - rest.ptr) + 1);
	if (STARTS(after, "reject: "))
		return count_reject(r, v, skip(after, 8), client);
	for (size_t i = 1; i < sizeof(client_events) / sizeof(client_events[0]); i++) {
		size_t n = strlen(client_events[i].words);
		if (starts(after, client_events[i].words, n))
			return client_events[i].handle(r, v, skip(after, n));
	}
	/* "QID: client=A helo=H from=<S> status=accepted": MAIL accepted */
	slice_t status;
	if (v->qid.len > 0 && field(after, "status", &status)) {
		r->c.transactions++;
		return true;
	}
	return false;
}

/* "to=<R> [orig_to=<O>] relay=X delay=D attempts=N status=S (text)" from
 * the queue manager, or "to=<R> status=accepted" from the smtp worker. */
static bool delivery_sent(struct report *r, const struct line_view *v, slice_t to, slice_t relay,
			  double delay, slice_t why)
{
	(void)why;
	r->c.delivered++;
	hourly(r, v, RH_DELIVERED);
	count_address(r, RT_RECIPIENTS, RT_RECIPIENT_DOMAINS, to);
	count(r, RT_RELAYS, relay);
	size_t b = 0;
	while (b < REPORT_DELAY_BUCKETS - 1 && delay >= report_delay_bounds[b])
		b++;
	r->delay_hist[b]++;
	return true;
}

/* The first words of a reason, for a table: "5.1.1 user unknown". */
static slice_t short_reason(slice_t why)
{
	if (why.len > 60)
		why.len = 60;
	return why;
}

static bool delivery_deferred(struct report *r, const struct line_view *v, slice_t to,
			      slice_t relay, double delay, slice_t why)
{
	(void)to, (void)relay, (void)delay;
	r->c.deferred++;
	hourly(r, v, RH_DEFERRED);
	count(r, RT_DEFER_REASONS, short_reason(why));
	return true;
}

static bool delivery_bounced(struct report *r, const struct line_view *v, slice_t to,
			     slice_t relay, double delay, slice_t why)
{
	(void)to, (void)relay, (void)delay;
	r->c.bounced++;
	hourly(r, v, RH_BOUNCED);
	count(r, RT_BOUNCE_REASONS, short_reason(why));
	return true;
}

typedef bool delivery_fn(struct report *r, const struct line_view *v, slice_t to, slice_t relay,
			 double delay, slice_t why);

/* status= of a delivery line: one entry per outcome. */
static const struct {
	const char *status;
	delivery_fn *handle;
} delivery_outcomes[] = {
	{ "sent", delivery_sent },
	{ "deferred", delivery_deferred },
	{ "bounced", delivery_bounced },
};

static bool ev_to(struct report *r, const struct line_view *v, slice_t rest)
{
	slice_t to, relay, status, delay_s, why = { "", 0 };
	if (!field(rest, "to", &to) || !field(rest, "status", &status))
		return false;
	if (!field(rest, "relay", &relay)) {
		if (status.len == 8 && memcmp(status.ptr, "accepted", 8) == 0) {
			r->c.recipients_accepted++;
			return true;
		}
		return false;
	}
	double delay = 0;
	if (field(rest, "delay", &delay_s))
		parse_number(delay_s, &delay);
	const char *paren = memchr(rest.ptr, '(', rest.len);
	if (paren != NULL) {
		why = skip(rest, (size_t)(paren - rest.ptr) + 1);
		if (why.len > 0 && why.ptr[why.len - 1] == ')')
			why.len--;
	}
	for (size_t i = 0; i < sizeof(delivery_outcomes) / sizeof(delivery_outcomes[0]); i++)
		if (strlen(delivery_outcomes[i].status) == status.len &&
		    memcmp(delivery_outcomes[i].status, status.ptr, status.len) == 0)
			return delivery_outcomes[i].handle(r, v, to, relay, delay, why);
	return false;
}

/* "accepted from=<S> size=N nrcpt=N protocol=P ... [disposition=D]" */
static bool ev_accepted(struct report *r, const struct line_view *v, slice_t rest)
{
	slice_t from, size_s, disp;
	uint64_t size = 0;
	if (!field(rest, "from", &from) || !field(rest, "size", &size_s) || !parse_u64(size_s, &size))
		return false;
	r->c.received++;
	r->c.bytes_received += size;
	hourly(r, v, RH_RECEIVED);
	count_address(r, RT_SENDERS, RT_SENDER_DOMAINS, from);
	size_t b = 0;
	while (b < REPORT_SIZE_BUCKETS - 1 && size >= report_size_bounds[b])
		b++;
	r->size_hist[b]++;
	if (field(rest, "disposition", &disp)) {
		if (disp.len == 10 && memcmp(disp.ptr, "quarantine", 10) == 0)
			r->c.quarantined++;
		else if (disp.len == 4 && memcmp(disp.ptr, "hold", 4) == 0)
			r->c.held++;
	}
	return true;
}

static bool ev_discarded(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v, (void)rest;
	r->c.discarded++;
	return true;
}

static void count_score(struct report *r, slice_t s)
{
	double score;
	if (!parse_number(s, &score))
		return;
	r->c.spam_scored++;
	r->score_sum += score;
	size_t b = 0;
	while (b < REPORT_SCORE_BUCKETS - 1 && score >= report_score_bounds[b])
		b++;
	r->score_hist[b]++;
}

/* "scan action=A [reason=R] [status=S] hits=H1,H2 headers=N delay=D ..." */
static bool ev_scan(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	slice_t action, hits;
	if (!field(rest, "action", &action))
		return false;
	r->c.scanned++;
	count(r, RT_SCAN_ACTIONS, action);
	bool refused = action.len == 6 && memcmp(action.ptr, "reject", 6) == 0;
	if (!field(rest, "hits", &hits) || (hits.len == 1 && hits.ptr[0] == '-'))
		return true;
	size_t i = 0;
	while (i < hits.len) {
		size_t start = i;
		while (i < hits.len && hits.ptr[i] != ',')
			i++;
		slice_t hit = slice_make(hits.ptr + start, i - start);
		i++;
		if (STARTS(hit, "virus:")) {
			slice_t name = skip(hit, 6);
			count(r, RT_VIRUSES, name);
			if (refused)
				count(r, RT_REJ_VIRUS, name);
		} else if (STARTS(hit, "spam:score=")) {
			count_score(r, skip(hit, 11));
		} else if (STARTS(hit, "spam:") || STARTS(hit, "rule:")) {
			count(r, RT_SPAM_RULES, hit);
			if (refused)
				count(r, RT_REJ_RULE, hit);
		}
	}
	return true;
}

static bool ev_bounce(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	if (STARTS(rest, "dropped"))
		r->c.bounces_dropped++;
	else
		r->c.bounce_notices++;
	return true;
}

static bool ev_removed(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	if (rest.len == 0)
		r->c.removed++;
	return true;
}

static bool ev_quarantine_expired(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v, (void)rest;
	r->c.quarantine_expired++;
	return true;
}

static bool ev_released(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v, (void)rest;
	r->c.released++;
	return true;
}

/*
 * The event kinds, by the words that start the text after the queue id
 * (needs_qid: only with one). A new kind of log line is one entry here
 * (and a line in docs/report.md).
 */
static const struct {
	const char *words;
	bool needs_qid;
	bool whole; /* the handler reads fields from the whole text */
	event_fn *handle;
} events[] = {
	{ "connect client=", false, true, ev_connect },
	{ "disconnect client=", false, false, ev_known },
	{ "client=", false, true, ev_client },
	{ "to=<", true, true, ev_to },
	{ "accepted from=<", true, true, ev_accepted },
	{ "scan action=", true, true, ev_scan },
	{ "reject: ", true, false, ev_reject },
	{ "reject_warning: ", true, false, ev_warning },
	{ "warn: ", true, false, ev_warning },
	{ "discarded from=<", true, true, ev_discarded },
	{ "bounce ", true, false, ev_bounce },
	{ "removed", true, false, ev_removed },
	{ "quarantine expired", true, false, ev_quarantine_expired },
	{ "released into the queue", true, false, ev_released },
	{ "greylist: ", false, false, ev_greylist },
	{ "content rule: ", true, false, ev_known },
	{ "antivirus: ", true, false, ev_known },
	{ "spam: ", true, false, ev_known },
	{ "notice ", true, false, ev_known },
	{ "notices: ", false, false, ev_known },
	{ "lost=during_data", true, false, ev_known },
	{ "timeout after", true, false, ev_known },
	{ "the ", true, false, ev_known },           /* "the STAGE stage could not check ..." */
	{ "scanner pid ", true, false, ev_known },
	{ "no scanner free", true, false, ev_known },
	{ "queue file write error", true, false, ev_known },
	{ "cannot ", true, false, ev_known },
	{ "malformed record", true, false, ev_known },
	{ "set next attempt", true, false, ev_known },
	{ "move to deferred", true, false, ev_known },
	{ "delivery is behind", true, false, ev_known },
};

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

static void note_time(struct report *r, slice_t t)
{
	size_t n = t.len < sizeof(r->first_time) - 1 ? t.len : sizeof(r->first_time) - 1;
	char now[sizeof(r->first_time)];
	memcpy(now, t.ptr, n);
	now[n] = '\0';
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
	r->lines.total++;
	slice_t s = slice_make(line, len);
	if (len > REPORT_LINE_MAX) {
		r->lines.total--;
		report_feed_too_long(r, line, len, where_file, where_line);
		return;
	}
	if (s.len > 0 && s.ptr[s.len - 1] == '\r')
		s.len--;
	struct line_view v;
	if (!parse_header(s, &v)) {
		r->lines.not_understood++;
		keep_sample(r, s, where_file, where_line);
		return;
	}
	note_time(r, v.time);
	bool has_qid = v.qid.len > 0;
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		size_t n = strlen(events[i].words);
		if ((events[i].needs_qid && !has_qid) || !starts(v.text, events[i].words, n))
			continue;
		slice_t rest = events[i].whole ? v.text : skip(v.text, n);
		if (events[i].handle(r, &v, rest)) {
			r->lines.events++;
			return;
		}
		break;
	}
	if (has_qid || STARTS(v.text, "client=")) {
		r->lines.not_understood++;
		keep_sample(r, s, where_file, where_line);
	} else {
		r->lines.daemon++;
	}
}
