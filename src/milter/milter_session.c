/*
 * milter_session.c - one MTA conversation of "postern milter" (see
 * milter_session.h): libmilter's callbacks, on the conversation's own
 * thread; each message spooled (milter_spool.h), judged by the scan
 * master (milter_scan.h), and the verdict turned into the milter's reply
 * and header changes.
 *
 * RFCs: RFC 5321 (the replies the MTA gives for us), RFC 3463 (their
 * enhanced status codes), RFC 5322 (header fields, the trace field).
 * Untrusted input: the envelope, header fields, body and macros the MTA
 * relays; the verdicts. Privilege: the milter process (`user`).
 */
#include "milter_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libmilter/mfdef.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "../queue/capture.h"
#include "../queue/queue_file.h"
#include "../scan/scan_proto.h"
#include "milter_scan.h"
#include "milter_spool.h"

/* What every conversation shares: set before libmilter starts,
 * read-only after (but the session count). */
static struct {
	const struct config *cfg;
	bool scan;
	char *scan_path;
	char *spool_folder;
	struct milter_spool_limits limits;
	struct capture *capture; /* the capture switch; NULL = never on */
	bool over_tcp;           /* milter_listen is inet: (see on_negotiate) */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned sessions;
} G = { .lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

/* One MTA conversation (a connection; several messages may follow). */
struct msession {
	char client_addr[SCAN_CLIENT_ADDR_MAX + 1];
	char helo[SCAN_HELO_MAX + 1];
	bool in_tx;            /* MAIL seen, spool open */
	unsigned long no_reply; /* the SMFIP_NR_* steps the MTA agreed to expect no reply for */
	char sender[QF_ADDR_MAX + 1];
	strlist_t rcpts;
	struct milter_spool spool;
	uint64_t started_us;
};

static uint64_t now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

static struct msession *session_of(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* The MTA's queue id ({i}), for the log lines; "NOQUEUE" before it has one. */
static const char *mta_id(SMFICTX *ctx)
{
	const char *id = smfi_getsymval(ctx, (char *)"i");
	if (id == NULL)
		id = smfi_getsymval(ctx, (char *)"{i}");
	return id != NULL && id[0] != '\0' ? id : "NOQUEUE";
}

/* One message answered: the metrics (the log line is the caller's). */
static void count_message(const char *action, const char *reason)
{
	const char *labels[2] = { action, reason[0] != '\0' ? reason : "-" };
	metrics_count_labels(METRIC_MILTER_MESSAGES, labels, 2);
}

static void tx_end(struct msession *s)
{
	milter_spool_close(&s->spool);
	strlist_free(&s->rcpts);
	s->sender[0] = '\0';
	s->in_tx = false;
}

/* "<addr>" -> "addr", cut to size, control characters made '?' (it goes
 * into log lines); "<>" -> "". */
static void strip_brackets(const char *arg, char *out, size_t size)
{
	size_t len = strlen(arg);
	if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
		arg++;
		len -= 2;
	}
	snprintf(out, size, "%.*s", (int)(len < size ? len : size - 1), arg);
	for (char *p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

/* Printable ASCII without parentheses or backslash (a header comment). */
static void comment_safe(const char *in, char *out, size_t size)
{
	size_t n = 0;
	for (; in != NULL && *in != '\0' && n + 1 < size; in++) {
		unsigned char c = (unsigned char)*in;
		out[n++] = c > 32 && c < 127 && c != '(' && c != ')' && c != '\\' ? (char)c : '?';
	}
	out[n] = '\0';
}

/* Our reply for the MTA to give. smfi_setreply reads text as a format:
 * a '%' is doubled; libmilter refuses a reply longer than 980 bytes, so
 * the text stops well before. */
#define REPLY_TEXT_MAX 900
static void set_reply(SMFICTX *ctx, int code, const char *status, const char *text)
{
	char rcode[8], xcode[16], msg[REPLY_TEXT_MAX];
	size_t o = 0;
	snprintf(rcode, sizeof(rcode), "%d", code);
	snprintf(xcode, sizeof(xcode), "%s", status);
	for (const char *p = text; *p != '\0' && o + 3 < sizeof(msg); p++) {
		if (*p == '%')
			msg[o++] = '%';
		msg[o++] = (*p == '\r' || *p == '\n') ? ' ' : *p;
	}
	msg[o] = '\0';
	if (smfi_setreply(ctx, rcode, xcode[0] != '\0' ? xcode : NULL, msg) != MI_SUCCESS)
		log_warn("%s: milter: the MTA would not take the reply %d %s", mta_id(ctx), code,
			 status);
}

/* Refuse the message for a spool problem (size, header, disk). */
static sfsistat refuse_spool(SMFICTX *ctx, struct msession *s)
{
	const char *id = mta_id(ctx);
	sfsistat rc;
	switch (s->spool.status) {
	case MILTER_SPOOL_TOO_BIG:
		set_reply(ctx, 552, "5.3.4", "Message size exceeds fixed limit");
		log_info("%s: milter action=reject reason=size status=5.3.4 from=<%s> limit=%" PRIu64,
			 id, s->sender, G.cfg->message_size_limit);
		count_message("reject", "size");
		rc = SMFIS_REJECT;
		break;
	case MILTER_SPOOL_HEADER_TOO_BIG:
		set_reply(ctx, 552, "5.3.4", "Message header size exceeds limit");
		log_info("%s: milter action=reject reason=header_size status=5.3.4 from=<%s>", id,
			 s->sender);
		count_message("reject", "header_size");
		rc = SMFIS_REJECT;
		break;
	default:
		set_reply(ctx, 451, "4.3.0", "Error: cannot keep the message, try again later");
		log_error("%s: milter action=tempfail reason=spool_error status=4.3.0 (%s)", id,
			  s->spool.err);
		count_message("tempfail", "spool_error");
		rc = SMFIS_TEMPFAIL;
		break;
	}
	tx_end(s);
	return rc;
}

/* ---- libmilter's callbacks ------------------------------------------------------- */

/* The steps that need no reply from us (the MTA then does not wait for
 * one): the connection, HELO, RCPT and each header field, whose answer
 * is always "go on" (a field past the bounds is refused at the end of
 * the header section, which is answered). */
#define MILTER_NO_REPLY (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_RCPT | SMFIP_NR_HDR)
/* The steps not sent at all: commands unknown to the MTA, DATA. */
#define MILTER_NOT_SENT (SMFIP_NOUNKNOWN | SMFIP_NODATA)
/* Over TCP neither: a packet the MTA sends without waiting for our reply
 * (and Postfix still sends DATA's macros when DATA itself is not sent)
 * sits in its socket behind the previous one until our delayed ACK, about
 * 40 ms per message (Nagle's algorithm on the MTA's side, which we cannot
 * turn off). Answering every step costs a round trip each instead. */
#define MILTER_NOT_SENT_TCP SMFIP_NOUNKNOWN

/* What a step answers: rc, or no reply when the MTA agreed to expect none
 * for it (only ever for "go on"). */
static sfsistat reply_or_not(const struct msession *s, unsigned long step, sfsistat rc)
{
	return rc == SMFIS_CONTINUE && s != NULL && (s->no_reply & step) ? SMFIS_NOREPLY : rc;
}

/* A new conversation's state, counted (the drain waits for it). */
static struct msession *session_new(SMFICTX *ctx)
{
	struct msession *s = xcalloc(1, sizeof(*s));
	s->spool.fd = s->spool.ro_fd = -1;
	smfi_setpriv(ctx, s);
	metrics_count(METRIC_MILTER_CONVERSATIONS);
	pthread_mutex_lock(&G.lock);
	G.sessions++;
	pthread_mutex_unlock(&G.lock);
	return s;
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long actions, unsigned long steps,
			     unsigned long unused2, unsigned long unused3,
			     unsigned long *actions_r, unsigned long *steps_r,
			     unsigned long *unused2_r, unsigned long *unused3_r)
{
	(void)unused2;
	(void)unused3;
	unsigned long need = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;
	if ((actions & need) != need) {
		log_error("milter: the MTA does not allow adding and changing header fields and "
			  "quarantining: the conversation is refused");
		return SMFIS_REJECT;
	}
	struct msession *s = session_of(ctx) != NULL ? session_of(ctx) : session_new(ctx);
	s->no_reply = G.over_tcp ? 0 : steps & MILTER_NO_REPLY;
	*actions_r = need;
	*steps_r = steps & (G.over_tcp ? MILTER_NOT_SENT_TCP : MILTER_NO_REPLY | MILTER_NOT_SENT);
	*unused2_r = *unused3_r = 0;
	return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *addr)
{
	(void)hostname;
	struct msession *s = session_of(ctx);
	if (s == NULL) /* an MTA that did not negotiate (milter protocol 2) */
		s = session_new(ctx);
	if (addr != NULL && addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)addr)->sin_addr, s->client_addr,
			  sizeof(s->client_addr));
	else if (addr != NULL && addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)addr)->sin6_addr,
			  s->client_addr, sizeof(s->client_addr));
	else /* a unix socket or none: what the MTA says */
		comment_safe(smfi_getsymval(ctx, (char *)"{client_addr}"), s->client_addr,
			     sizeof(s->client_addr));
	return reply_or_not(s, SMFIP_NR_CONN, SMFIS_CONTINUE);
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	struct msession *s = session_of(ctx);
	if (s != NULL)
		snprintf(s->helo, sizeof(s->helo), "%s", helo != NULL ? helo : "");
	return reply_or_not(s, SMFIP_NR_HELO, SMFIS_CONTINUE);
}

/* The SIZE= of MAIL, or 0. */
static uint64_t declared_size(char **argv)
{
	for (size_t i = 1; argv[i] != NULL; i++) {
		uint64_t n;
		if (strncasecmp(argv[i], "SIZE=", 5) == 0 && str_parse_uint(argv[i] + 5, &n))
			return n;
	}
	return 0;
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || argv == NULL || argv[0] == NULL)
		return SMFIS_CONTINUE;
	tx_end(s);
	strip_brackets(argv[0], s->sender, sizeof(s->sender));
	if (declared_size(argv) > G.cfg->message_size_limit) {
		s->spool.status = MILTER_SPOOL_TOO_BIG;
		return refuse_spool(ctx, s);
	}
	if (milter_spool_open(&s->spool, &G.limits, G.spool_folder) < 0)
		return refuse_spool(ctx, s);
	s->in_tx = true;
	s->started_us = now_us();
	return SMFIS_CONTINUE;
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
	struct msession *s = session_of(ctx);
	char rcpt[QF_ADDR_MAX + 1];
	if (s == NULL || !s->in_tx || argv == NULL || argv[0] == NULL)
		return reply_or_not(s, SMFIP_NR_RCPT, SMFIS_CONTINUE);
	strip_brackets(argv[0], rcpt, sizeof(rcpt));
	if (rcpt[0] != '\0' && s->rcpts.count < G.cfg->recipient_limit)
		strlist_add(&s->rcpts, rcpt);
	return reply_or_not(s, SMFIP_NR_RCPT, SMFIS_CONTINUE);
}

/* The scanners' copy starts with a trace field like the one postern
 * writes when it receives a message itself, standing for the MTA's own
 * (which the MTA keeps to itself): client, MTA, queue id, recipient. */
static void write_trace(SMFICTX *ctx, struct msession *s)
{
	if (s->spool.size > 0)
		return;
	char helo[256], host[256], id[64], date[64];
	comment_safe(s->helo[0] != '\0' ? s->helo : "unknown", helo, sizeof(helo));
	const char *j = smfi_getsymval(ctx, (char *)"j");
	comment_safe(j != NULL ? j : "localhost", host, sizeof(host));
	comment_safe(mta_id(ctx), id, sizeof(id));
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	const char *tls = smfi_getsymval(ctx, (char *)"{tls_version}");
	buf_t f = BUF_INIT;
	buf_printf(&f, "Received: from %s ([%s%s])\n\tby %s with %s id %s", helo,
		   strchr(s->client_addr, ':') != NULL ? "IPv6:" : "", s->client_addr, host,
		   tls != NULL && tls[0] != '\0' ? "ESMTPS" : "ESMTP", id);
	if (s->rcpts.count == 1)
		buf_printf(&f, "\n\tfor <%s>", s->rcpts.items[0]);
	buf_printf(&f, "; %s\n", date);
	milter_spool_trace(&s->spool, buf_cstr(&f));
	buf_free(&f);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return reply_or_not(s, SMFIP_NR_HDR, SMFIS_CONTINUE);
	write_trace(ctx, s);
	if (milter_spool_header(&s->spool, name != NULL ? name : "",
				value != NULL ? value : "") != MILTER_SPOOL_OK &&
	    !(s->no_reply & SMFIP_NR_HDR))
		return refuse_spool(ctx, s); /* else at the end of the header section */
	return reply_or_not(s, SMFIP_NR_HDR, SMFIS_CONTINUE);
}

/* DATA: nothing to decide; there so that libmilter answers it when the
 * MTA sends it (over TCP, see MILTER_NOT_SENT_TCP). */
static sfsistat on_data(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return SMFIS_CONTINUE;
	write_trace(ctx, s);
	if (milter_spool_end_of_header(&s->spool) != MILTER_SPOOL_OK)
		return refuse_spool(ctx, s);
	return SMFIS_CONTINUE;
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return SMFIS_CONTINUE;
	write_trace(ctx, s);
	if (milter_spool_body(&s->spool, data, len) != MILTER_SPOOL_OK)
		return refuse_spool(ctx, s);
	return SMFIS_CONTINUE;
}

/* "Name: value" -> smfi_insheader at index (the value without the one
 * space after the colon). */
static bool insert_field(SMFICTX *ctx, int index, const char *field)
{
	const char *colon = strchr(field, ':');
	if (colon == NULL)
		return false;
	char *name = xstrndup(field, (size_t)(colon - field));
	const char *value = colon + 1;
	if (*value == ' ')
		value++;
	int rc = smfi_insheader(ctx, index, name, (char *)value);
	free(name);
	return rc == MI_SUCCESS;
}

/* Where the added fields go: below the first field of the header
 * section, which is the MTA's own Received: (Postfix and Sendmail put
 * theirs on top and do not show it to milters; index 0 would be above
 * it), as postern's own delivery puts them below its Received:. */
#define INSERT_AT 1

/* The verdict's header changes: every occurrence of each removed name
 * (counted as received; the last first, so that the indexes hold), then
 * the added fields, in order, at INSERT_AT. */
static void apply_header_changes(SMFICTX *ctx, struct msession *s, const struct scan_verdict *v)
{
	const char *id = mta_id(ctx);
	for (size_t i = 0; i < v->remove_headers.count; i++) {
		const char *name = v->remove_headers.items[i];
		for (unsigned n = milter_spool_count(&s->spool, name); n > 0; n--)
			if (smfi_chgheader(ctx, (char *)name, (int)n, NULL) != MI_SUCCESS)
				log_warn("%s: milter: the MTA would not remove %s #%u", id, name, n);
	}
	for (size_t i = 0; i < v->headers.count; i++)
		if (!insert_field(ctx, INSERT_AT + (int)i, v->headers.items[i]))
			log_warn("%s: milter: the MTA would not add a header field", id);
}

static sfsistat apply_verdict(SMFICTX *ctx, struct msession *s, const struct scan_verdict *v)
{
	switch (v->action) {
	case SCAN_REJECT:
		set_reply(ctx, v->code != 0 ? v->code : 550, v->status[0] != '\0' ? v->status : "5.7.1",
			  v->text);
		return SMFIS_REJECT;
	case SCAN_TEMPFAIL:
		set_reply(ctx, v->code != 0 ? v->code : 451, v->status[0] != '\0' ? v->status : "4.7.0",
			  v->text);
		return SMFIS_TEMPFAIL;
	case SCAN_DISCARD:
		return SMFIS_DISCARD;
	case SCAN_QUARANTINE: {
		apply_header_changes(ctx, s, v);
		char reason[600];
		snprintf(reason, sizeof(reason), "postern: %s",
			 v->text[0] != '\0' ? v->text : v->reason[0] != '\0' ? v->reason : "quarantine");
		if (smfi_quarantine(ctx, reason) != MI_SUCCESS) {
			log_error("%s: milter: the MTA would not quarantine the message: refused for now",
				  mta_id(ctx));
			set_reply(ctx, 451, "4.7.0", "Message could not be checked, try again later");
			return SMFIS_TEMPFAIL;
		}
		return SMFIS_CONTINUE;
	}
	case SCAN_ACCEPT:
	case SCAN_TAG:
		apply_header_changes(ctx, s, v);
		return SMFIS_CONTINUE;
	}
	return SMFIS_CONTINUE;
}

static void log_verdict(SMFICTX *ctx, const struct msession *s, const struct scan_verdict *v,
			const char *detail)
{
	buf_t hits = BUF_INIT;
	for (size_t i = 0; i < v->hits.count; i++)
		buf_printf(&hits, "%s%s", i > 0 ? "," : "", v->hits.items[i]);
	double delay = (double)(now_us() - s->started_us) / 1e6;
	if (scan_verdict_failed(v))
		log_warn("%s: milter action=%s%s reason=%s from=<%s> nrcpt=%zu size=%" PRIu64
			 " id=%s delay=%.3f (%s)", mta_id(ctx), scan_action_name(v->action),
			 v->action != SCAN_TEMPFAIL ? " fail_open=yes" : "", v->reason, s->sender,
			 s->rcpts.count, s->spool.size - s->spool.trace_size, s->spool.id, delay,
			 detail[0] != '\0' ? detail : v->text);
	else
		log_info("%s: milter action=%s%s%s%s%s hits=%s headers=%zu from=<%s> nrcpt=%zu "
			 "size=%" PRIu64 " id=%s delay=%.3f", mta_id(ctx), scan_action_name(v->action),
			 v->reason[0] != '\0' ? " reason=" : "", v->reason,
			 v->code != 0 ? " status=" : "", v->code != 0 ? v->status : "",
			 hits.len > 0 ? buf_cstr(&hits) : "-", v->headers.count, s->sender,
			 s->rcpts.count, s->spool.size - s->spool.trace_size, s->spool.id, delay);
	buf_free(&hits);
}

/* The capture switch (src/queue/capture.h): a copy of the message as the
 * MTA sent it, with the MTA's queue id beside ours (without the trace field our copy starts with), before the
 * verdict, so that refused ones are kept too. */
static void capture_spool(SMFICTX *ctx, const struct msession *s)
{
	if (G.capture == NULL || !capture_on(G.capture))
		return;
	struct capture_message m = {
		.queue_id = s->spool.id, .mta_queue_id = mta_id(ctx),
		.client_addr = s->client_addr,
		.helo = s->helo[0] != '\0' ? s->helo : NULL, .sender = s->sender,
		.rcpts = &s->rcpts, .content_fd = s->spool.ro_fd,
		.content_off = s->spool.trace_size,
		.content_len = s->spool.size - s->spool.trace_size,
	};
	if (capture_matches(G.capture, &m))
		capture_save(G.capture, &m);
}

static sfsistat on_eom(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return SMFIS_CONTINUE;
	write_trace(ctx, s);
	if (milter_spool_end_of_header(&s->spool) != MILTER_SPOOL_OK ||
	    milter_spool_flush(&s->spool) < 0)
		return refuse_spool(ctx, s);
	capture_spool(ctx, s);
	if (!G.scan) {
		log_info("%s: milter action=accept scan=off from=<%s> nrcpt=%zu size=%" PRIu64,
			 mta_id(ctx), s->sender, s->rcpts.count, s->spool.size - s->spool.trace_size);
		count_message("accept", "scan_off");
		tx_end(s);
		return SMFIS_CONTINUE;
	}
	struct milter_scan_request req = { .socket_path = G.scan_path, .id = s->spool.id,
					   .fd = s->spool.ro_fd, .len = s->spool.size,
					   .sender = s->sender, .client_addr = s->client_addr,
					   .helo = s->helo, .rcpts = &s->rcpts };
	struct scan_msg reply;
	char detail[256];
	milter_scan_ask(G.cfg, &req, &reply, detail, sizeof(detail));
	sfsistat rc = apply_verdict(ctx, s, &reply.verdict);
	log_verdict(ctx, s, &reply.verdict, detail);
	count_message(rc == SMFIS_TEMPFAIL && reply.verdict.action == SCAN_QUARANTINE
			      ? "tempfail" : scan_action_name(reply.verdict.action),
		      reply.verdict.reason);
	scan_msg_free(&reply);
	tx_end(s);
	return rc;
}

static sfsistat on_abort(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s != NULL)
		tx_end(s);
	return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s == NULL)
		return SMFIS_CONTINUE;
	tx_end(s);
	free(s);
	smfi_setpriv(ctx, NULL);
	pthread_mutex_lock(&G.lock);
	if (--G.sessions == 0)
		pthread_cond_broadcast(&G.idle);
	pthread_mutex_unlock(&G.lock);
	return SMFIS_CONTINUE;
}

/* ---- the filter ------------------------------------------------------------------ */

struct smfiDesc milter_session_desc = {
	.xxfi_name = (char *)"postern",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
	.xxfi_connect = on_connect,
	.xxfi_helo = on_helo,
	.xxfi_envfrom = on_envfrom,
	.xxfi_envrcpt = on_envrcpt,
	.xxfi_header = on_header,
	.xxfi_data = on_data,
	.xxfi_eoh = on_eoh,
	.xxfi_body = on_body,
	.xxfi_eom = on_eom,
	.xxfi_abort = on_abort,
	.xxfi_close = on_close,
	.xxfi_negotiate = on_negotiate,
};

void milter_session_setup(const struct config *cfg, bool scan)
{
	G.cfg = cfg;
	G.scan = scan;
	G.scan_path = scan_socket_path(cfg->spool_dir);
	G.spool_folder = safeio_path_join(cfg->spool_dir, "incoming");
	G.limits = (struct milter_spool_limits){ .message_max = cfg->message_size_limit,
						 .header_max = cfg->header_size_limit,
						 .fields_max = MILTER_SPOOL_FIELDS_MAX };
	G.capture = capture_new(cfg);
	G.over_tcp = strncmp(cfg->milter_listen, "inet", 4) == 0;
}

unsigned milter_session_count(void)
{
	pthread_mutex_lock(&G.lock);
	unsigned n = G.sessions;
	pthread_mutex_unlock(&G.lock);
	return n;
}

void milter_session_end(void)
{
	capture_free(&G.capture); /* the copies still waiting are written */
	free(G.scan_path);
	free(G.spool_folder);
	G.scan_path = G.spool_folder = NULL;
}

unsigned milter_session_wait(unsigned seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)seconds;
	pthread_mutex_lock(&G.lock);
	if (G.sessions > 0)
		log_info("milter: stopped listening; %u conversation(s) to finish", G.sessions);
	while (G.sessions > 0 && pthread_cond_timedwait(&G.idle, &G.lock, &until) != ETIMEDOUT)
		;
	unsigned left = G.sessions;
	pthread_mutex_unlock(&G.lock);
	return left;
}
