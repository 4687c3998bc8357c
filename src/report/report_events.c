/*
 * report_events.c - what each kind of postern log line means to postern
 * report: a table of event kinds, found by the words that start the text
 * after the queue id, each with the handler that counts it. A new kind of
 * log line (a new role's deliveries, say) is one more table entry, and a
 * line in docs/report.md. Message lines of a kind not in the table are
 * "not understood"; other lines without a queue id are postern's own life
 * (start, stop, reload).
 *
 * Untrusted input: the text of log lines (see report_line.c); handlers
 * read fields only through report_field(). Privilege: the caller's.
 */
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "report_parse.h"

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
	if (!report_field(rest, "client", &client))
		return false;
	r->c.connections++;
	report_count(r, RT_CLIENTS, client);
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
	if (REPORT_STARTS(stage_word, "helo="))
		stage = "HELO";
	else if (REPORT_STARTS(stage_word, "unauthorised"))
		stage = "pipelining";
	else
		stage = NULL;
	uint64_t code = 0;
	slice_t code_s;
	if (report_field(rest, "code", &code_s))
		report_parse_u64(code_s, &code);
	if (!report_field(rest, "reason", &reason))
		reason = slice_from_cstr(stage != NULL && strcmp(stage, "pipelining") == 0
					 ? "pipelining" : "unknown");
	if (client.len == 0)
		report_field(rest, "client", &client);
	r->c.rejected++;
	if (code >= 400 && code < 500)
		r->c.rejected_temporary++;
	report_traffic(r, v, RH_REJECTED);
	report_count(r, RT_REJ_REASON, reason);
	if (stage != NULL)
		report_count_cstr(r, RT_REJ_STAGE, stage);
	else
		report_count(r, RT_REJ_STAGE, stage_word);
	if (report_field(rest, "restriction", &restriction))
		report_count(r, RT_REJ_RESTRICTION, restriction);
	if (client.len > 0)
		report_count(r, RT_REJECTED_CLIENTS, client);
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
	slice_t action;
	slice_t after = report_skip(rest, (size_t)(listed - rest.ptr) + 8);
	if (!report_field(after, "action", &action))
		return false;
	r->c.dns_listed++;
	if (action.len > 0 && action.ptr[action.len - 1] == ':')
		action.len--;
	if (!(action.len == 6 && memcmp(action.ptr, "reject", 6) == 0) &&
	    !(action.len == 8 && memcmp(action.ptr, "tempfail", 8) == 0))
		return true;
	const char *colon = memchr(after.ptr, ':', after.len);
	if (colon == NULL)
		return false;
	slice_t lists = report_skip(after, (size_t)(colon - after.ptr) + 1);
	size_t i = 0;
	while (i < lists.len) {
		while (i < lists.len && lists.ptr[i] == ' ')
			i++;
		size_t start = i;
		while (i < lists.len && lists.ptr[i] != '(' && lists.ptr[i] != ' ')
			i++;
		if (i > start)
			report_count(r, RT_REJ_DNS_LIST, slice_make(lists.ptr + start, i - start));
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
 * client address ("client=A reject: ..." is read by ev_client itself,
 * which knows the address). */
static const struct {
	const char *words;
	event_fn *handle;
} client_events[] = {
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
	slice_t after = report_skip(rest, (size_t)(sp - rest.ptr) + 1);
	if (REPORT_STARTS(after, "reject: "))
		return count_reject(r, v, report_skip(after, 8), client);
	for (size_t i = 0; i < sizeof(client_events) / sizeof(client_events[0]); i++) {
		size_t n = strlen(client_events[i].words);
		if (report_starts(after, client_events[i].words, n))
			return client_events[i].handle(r, v, report_skip(after, n));
	}
	/* "QID: client=A helo=H from=<S> status=accepted": MAIL accepted */
	slice_t status;
	if (v->qid.len > 0 && report_field(after, "status", &status)) {
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
	report_traffic(r, v, RH_DELIVERED);
	report_count_address(r, RT_RECIPIENTS, RT_RECIPIENT_DOMAINS, to);
	report_count(r, RT_RELAYS, relay);
	size_t b = 0;
	while (b < REPORT_DELAY_BUCKETS - 1 && delay >= report_delay_bounds[b])
		b++;
	r->delay_hist[b]++;
	return true;
}

/* The first words of a reason, for a table: "5.1.1 user unknown". */
static slice_t short_reason(slice_t why)
{
	if (why.len > 80)
		why.len = 80;
	return why;
}

static bool delivery_deferred(struct report *r, const struct line_view *v, slice_t to,
			      slice_t relay, double delay, slice_t why)
{
	(void)to, (void)relay, (void)delay;
	r->c.deferred++;
	report_traffic(r, v, RH_DEFERRED);
	report_count(r, RT_DEFER_REASONS, short_reason(why));
	return true;
}

static bool delivery_bounced(struct report *r, const struct line_view *v, slice_t to,
			     slice_t relay, double delay, slice_t why)
{
	(void)to, (void)relay, (void)delay;
	r->c.bounced++;
	report_traffic(r, v, RH_BOUNCED);
	report_count(r, RT_BOUNCE_REASONS, short_reason(why));
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
	if (!report_field(rest, "to", &to) || !report_field(rest, "status", &status))
		return false;
	if (!report_field(rest, "relay", &relay)) {
		if (status.len == 8 && memcmp(status.ptr, "accepted", 8) == 0) {
			r->c.recipients_accepted++;
			return true;
		}
		return false;
	}
	double delay = 0;
	if (report_field(rest, "delay", &delay_s))
		report_parse_number(delay_s, &delay);
	const char *paren = memchr(rest.ptr, '(', rest.len);
	if (paren != NULL) {
		why = report_skip(rest, (size_t)(paren - rest.ptr) + 1);
		if (why.len > 0 && why.ptr[why.len - 1] == ')')
			why.len--;
	}
	for (size_t i = 0; i < sizeof(delivery_outcomes) / sizeof(delivery_outcomes[0]); i++)
		if (strlen(delivery_outcomes[i].status) == status.len &&
		    memcmp(delivery_outcomes[i].status, status.ptr, status.len) == 0)
			return delivery_outcomes[i].handle(r, v, to, relay, delay, why);
	return false;
}

/* "accepted from=<S> size=N nrcpt=N protocol=P ... [disposition=D]
 * [client=A]" (client= since issue 13) */
static bool ev_accepted(struct report *r, const struct line_view *v, slice_t rest)
{
	slice_t from, size_s, disp, client;
	uint64_t size = 0;
	if (!report_field(rest, "from", &from) || !report_field(rest, "size", &size_s) || !report_parse_u64(size_s, &size))
		return false;
	r->c.received++;
	r->c.bytes_received += size;
	report_traffic(r, v, RH_RECEIVED);
	report_count_address(r, RT_SENDERS, RT_SENDER_DOMAINS, from);
	size_t b = 0;
	while (b < REPORT_SIZE_BUCKETS - 1 && size >= report_size_bounds[b])
		b++;
	r->size_hist[b]++;
	if (report_field(rest, "client", &client))
		report_count(r, RT_MESSAGE_CLIENTS, client);
	if (report_field(rest, "disposition", &disp)) {
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
	if (!report_parse_number(s, &score))
		return;
	r->c.spam_scored++;
	r->score_sum += score;
	size_t b = 0;
	while (b < REPORT_SCORE_BUCKETS - 1 && score >= report_score_bounds[b])
		b++;
	r->score_hist[b]++;
}

/* "scan action=A [reason=R] [status=S] hits=H1,H2 headers=N delay=D ...", and
 * postern milter's "milter action=..." with the same fields. */
static bool ev_scan(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	slice_t action, hits;
	if (!report_field(rest, "action", &action))
		return false;
	r->c.scanned++;
	report_count(r, RT_SCAN_ACTIONS, action);
	bool refused = action.len == 6 && memcmp(action.ptr, "reject", 6) == 0;
	if (!report_field(rest, "hits", &hits) || (hits.len == 1 && hits.ptr[0] == '-'))
		return true;
	size_t i = 0;
	while (i < hits.len) {
		size_t start = i;
		while (i < hits.len && hits.ptr[i] != ',')
			i++;
		slice_t hit = slice_make(hits.ptr + start, i - start);
		i++;
		if (REPORT_STARTS(hit, "virus:")) {
			slice_t name = report_skip(hit, 6);
			report_count(r, RT_VIRUSES, name);
			if (refused)
				report_count(r, RT_REJ_VIRUS, name);
		} else if (REPORT_STARTS(hit, "spam:score=")) {
			count_score(r, report_skip(hit, 11));
		} else if (REPORT_STARTS(hit, "spam:") || REPORT_STARTS(hit, "rule:")) {
			report_count(r, RT_SPAM_RULES, hit);
			if (refused)
				report_count(r, RT_REJ_RULE, hit);
		}
	}
	return true;
}

/* Delivery status notifications (RFC 3464) the queue manager sends:
 * "bounce ID sent to <S>", "sender is <>: double bounce ID sent to <P>",
 * "success report ID sent to <S>", "relay report ID sent to <S>" (a
 * success relayed to a peer without DSN), "delay warning ID sent to <S>"; and
 * those it does not send: "bounce dropped: ...", "double bounce dropped:
 * ...". */
static bool ev_bounce(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	if (REPORT_STARTS(rest, "dropped"))
		r->c.bounces_dropped++;
	else
		r->c.bounce_notices++;
	return true;
}

static bool ev_double_bounce(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v;
	if (REPORT_STARTS(rest, "dropped"))
		r->c.bounces_dropped++;
	else
		r->c.double_bounces++;
	return true;
}

static bool ev_success_report(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v, (void)rest;
	r->c.success_notices++;
	return true;
}

static bool ev_delay_warning(struct report *r, const struct line_view *v, slice_t rest)
{
	(void)v, (void)rest;
	r->c.delay_warnings++;
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
	{ "milter action=", true, true, ev_scan }, /* postern milter, keyed by the MTA's id */
	{ "reject: ", true, false, ev_reject },
	{ "reject_warning: ", true, false, ev_warning },
	{ "warn: ", true, false, ev_warning },
	{ "hold_warning: ", true, false, ev_warning },
	{ "discard_warning: ", true, false, ev_warning },
	{ "hold: ", true, false, ev_known },
	{ "discard: ", true, false, ev_known },
	{ "quarantine entry ", true, false, ev_known },
	{ "discarded from=<", true, true, ev_discarded },
	{ "bounce ", true, false, ev_bounce },
	{ "sender is <>: double bounce ", true, false, ev_double_bounce },
	{ "double bounce ", true, false, ev_double_bounce },
	{ "success report ", true, false, ev_success_report },
	{ "relay report ", true, false, ev_success_report },
	{ "delay warning ", true, false, ev_delay_warning },
	{ "no bounce for ", true, false, ev_known },
	{ "no delay warning", true, false, ev_known },
	{ "retrying now", true, false, ev_known },
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

enum report_event_result report_event(struct report *r, const struct line_view *v)
{
	bool has_qid = v->qid.len > 0;
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		size_t n = strlen(events[i].words);
		if ((events[i].needs_qid && !has_qid) || !report_starts(v->text, events[i].words, n))
			continue;
		slice_t rest = events[i].whole ? v->text : report_skip(v->text, n);
		if (events[i].handle(r, v, rest))
			return REPORT_EVENT_COUNTED;
		break;
	}
	/* An error about a message is counted as an error, not as unknown. */
	if (!v->error && (has_qid || REPORT_STARTS(v->text, "client=")))
		return REPORT_EVENT_UNKNOWN;
	return REPORT_EVENT_DAEMON;
}
