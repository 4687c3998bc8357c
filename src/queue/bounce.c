/*
 * bounce.c - delivery status notifications: an RFC 3464 multipart/report
 * (RFC 6522) with a human-readable part, a message/delivery-status part
 * (one block per recipient reported; message/global-delivery-status with
 * utf-8 address types when an address needs UTF-8, RFC 6533) and the
 * original header section (text/rfc822-headers) or, for a failure with
 * RET=FULL, the whole message (message/rfc822) up to BOUNCE_FULL_MAX.
 * The same shape serves failures, delay warnings, success reports
 * (RFC 3461 NOTIFY) and double bounces to the postmaster; ENVID and
 * ORCPT are echoed (Original-Envelope-Id, Original-Recipient). The
 * report is queued as a new message from <> (RFC 5321 section 4.5.5),
 * so it is delivered and retried like any other, and a failed report is
 * never answered by another report to <>.
 *
 * RFCs: 3461, 3464, 6522, 6533, 3463 (status codes), 5322 (header
 * syntax and dates), 3834 (Auto-Submitted). Untrusted input: the
 * original message (quoted verbatim and bounded; the MIME boundary is
 * chosen so that it does not occur in it) and its envelope (validated by
 * the queue file reader: no control characters). Privilege: unprivileged
 * queue manager.
 */
#include "bounce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/xalloc.h"
#include "maildir_header.h"

#define BOUNCE_BOUNDARY_TRIES 64
/* RFC 2046 section 5.1.1: a boundary has at most 70 characters. Ours is
 * "=_" ID "/" HOST ["/" N], N < BOUNCE_BOUNDARY_TRIES: the host name (up
 * to 253 characters) is cut to what is left. */
#define BOUNCE_BOUNDARY_MAX 70
#define BOUNCE_BOUNDARY_HOST_MAX (BOUNCE_BOUNDARY_MAX - 2 - QUEUE_ID_LEN - 1 - 3)

void bounce_format_date(buf_t *out, uint64_t time_us)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed",
					    "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
					      "May", "Jun", "Jul", "Aug",
					      "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(time_us / 1000000u);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		buf_puts(out, "Thu, 01 Jan 1970 00:00:00 +0000");
		return;
	}
	buf_printf(out, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
		   tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		   tm.tm_min, tm.tm_sec);
}

/* Count of decimal digits at s, at most max (0 if none or too many). */
static size_t digits(const char *s, size_t max)
{
	size_t n = 0;

	while (s[n] >= '0' && s[n] <= '9')
		n++;
	return n <= max ? n : 0;
}

void bounce_status_code(const char *reason, const char *fallback,
			char *out, size_t outlen)
{
	const char *src = fallback;
	size_t len = strlen(fallback);

	if ((reason[0] == '2' || reason[0] == '4' || reason[0] == '5') &&
	    reason[1] == '.') {
		size_t a = digits(reason + 2, 3);
		size_t b = a > 0 && reason[2 + a] == '.' ? digits(reason + 3 + a, 3) : 0;
		size_t end = 3 + a + b;
		if (b > 0 && (reason[end] == ' ' || reason[end] == '\0')) {
			src = reason;
			len = end;
		}
	}
	if (len >= outlen)
		len = outlen - 1;
	memcpy(out, src, len);
	out[len] = '\0';
}

static bool has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80)
			return true;
	}
	return false;
}

static bool str_8bit(const char *s)
{
	return s != NULL && has_8bit(s, strlen(s));
}

/* Who receives the report. */
static const char *report_to(const struct bounce_request *req)
{
	return req->recipient != NULL ? req->recipient : req->msg->sender;
}

/* Does any address of the report need UTF-8? Then the report is RFC
 * 6533's message/global-delivery-status with utf-8 address types. */
static bool request_has_utf8_address(const struct bounce_request *req)
{
	if (str_8bit(req->msg->sender) || str_8bit(report_to(req)))
		return true;
	for (size_t i = 0; i < req->count; i++) {
		const struct bounce_item *it = &req->items[i];
		if (str_8bit(it->final_rcpt) || str_8bit(it->orig_rcpt) || str_8bit(it->orcpt))
			return true;
	}
	return false;
}

/* "=_<id>/<host>", then "=_<id>/<host>/1", ... (the host name cut so
 * that the boundary stays within RFC 2046's 70 characters) until it
 * occurs nowhere in the quoted text. Bounded: only someone who guessed
 * the bounce id could plant candidates, and after BOUNCE_BOUNDARY_TRIES
 * the last one is used (breaking the structure of that sender's own
 * bounce, nothing else). */
static void choose_boundary(buf_t *b, const char *id, const char *host,
			    const buf_t *quoted)
{
	for (unsigned n = 0; n < BOUNCE_BOUNDARY_TRIES; n++) {
		buf_reset(b);
		buf_printf(b, "=_%.*s/%.*s", QUEUE_ID_LEN, id, BOUNCE_BOUNDARY_HOST_MAX, host);
		if (n > 0)
			buf_printf(b, "/%u", n);
		if (quoted->len == 0 ||
		    memmem(quoted->data, quoted->len, b->data, b->len) == NULL)
			return;
	}
}

/* What the report is like, decided once. */
struct report_shape {
	bool eight;      /* some 8-bit byte anywhere: Content-Transfer-Encoding 8bit */
	bool global;     /* RFC 6533: UTF-8 addresses in the machine-readable part */
	bool full;       /* the whole message is returned, not only its headers */
	bool full_cut;   /* RET=FULL asked, but the message was too big */
};

static const char *const subjects[] = {
	[BOUNCE_FAILED] = "Undelivered Mail Returned to Sender",
	[BOUNCE_DELAYED] = "Delayed Mail (still being retried)",
	[BOUNCE_DELIVERED] = "Successful Mail Delivery Report",
	[BOUNCE_DOUBLE] = "Postmaster notice: undeliverable delivery report",
	[BOUNCE_RELAYED] = "Relayed Mail Report",
};

static void put_top_headers(buf_t *out, const struct bounce_request *req,
			    const char *id, const char *boundary,
			    const struct report_shape *shape)
{
	const char *host = req->hostname;

	buf_printf(out, "Received: by %s (postern) id %s;\n\t", host, id);
	bounce_format_date(out, req->now_us);
	buf_printf(out, "\nFrom: Mail Delivery System <MAILER-DAEMON@%s>\n", host);
	buf_printf(out, "To: <%s>\n", report_to(req));
	buf_printf(out, "Subject: %s\nDate: ", subjects[req->kind]);
	bounce_format_date(out, req->now_us);
	buf_printf(out, "\nMessage-ID: <%s.bounce@%s>\n", id, host);
	buf_puts(out, "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
	buf_printf(out, "Content-Type: multipart/report; report-type=%s;\n"
		   "\tboundary=\"%s\"\n",
		   shape->global ? "global-delivery-status" : "delivery-status", boundary);
	if (shape->eight)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_puts(out, "\nThis is a MIME-encapsulated message.\n\n");
}

static void put_intro(buf_t *out, const struct bounce_request *req)
{
	const char *id = req->msg->id;

	switch (req->kind) {
	case BOUNCE_FAILED:
		buf_printf(out, "Your message (queue id %s) could not be delivered to the\n"
			   "recipients listed below. The mail system gave up for the\n"
			   "reasons shown.\n\n", id);
		break;
	case BOUNCE_DELAYED:
		buf_printf(out, "Your message (queue id %s) has not been delivered yet to\n"
			   "the recipients listed below. This is only a warning: the\n"
			   "mail system keeps trying", id);
		if (req->retry_until != 0) {
			buf_puts(out, " until ");
			bounce_format_date(out, req->retry_until * 1000000u);
		}
		buf_puts(out, ".\nYou do not need to send it again.\n\n");
		break;
	case BOUNCE_DELIVERED:
		buf_printf(out, "Your message (queue id %s) was delivered to the recipients\n"
			   "listed below, as you asked.\n\n", id);
		break;
	case BOUNCE_RELAYED:
		buf_printf(out, "Your message (queue id %s) was passed on for the recipients\n"
			   "listed below to mail servers that do not send delivery\n"
			   "reports: you asked for one, and this is the last you will get.\n\n", id);
		break;
	case BOUNCE_DOUBLE:
		buf_printf(out, "A message from the null sender <> (queue id %s), usually\n"
			   "itself a delivery report, could not be delivered. It cannot\n"
			   "be returned to its sender, so it is reported to you.\n\n", id);
		break;
	}
}

static void put_human_part(buf_t *out, const struct bounce_request *req,
			   const char *boundary, const struct report_shape *shape)
{
	buf_printf(out, "--%s\nContent-Description: Notification\n"
		   "Content-Type: text/plain; charset=%s\n", boundary,
		   shape->eight ? "utf-8" : "us-ascii");
	if (shape->eight)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_printf(out, "\nThis is the postern mail system at %s.\n\n", req->hostname);
	put_intro(out, req);
	for (size_t i = 0; i < req->count; i++) {
		const struct bounce_item *it = &req->items[i];
		buf_printf(out, "<%s>", it->final_rcpt);
		if (it->orig_rcpt != NULL)
			buf_printf(out, " (sent to <%s>)", it->orig_rcpt);
		buf_printf(out, ":\n    %s\n\n", it->reason);
	}
	if (shape->full)
		buf_puts(out, "Your message is attached.\n");
	else if (shape->full_cut)
		buf_printf(out, "Your message was larger than %d bytes: only its headers\n"
			   "are attached.\n", BOUNCE_FULL_MAX);
	else
		buf_puts(out, "The headers of your message are attached.\n");
	buf_puts(out, "\n");
}

/* "rfc822; a@b", or RFC 6533's "utf-8; ..." for a UTF-8 address (raw
 * UTF-8: only in a global report, which every such report is). */
static void put_address_field(buf_t *out, const char *name, const char *address)
{
	buf_printf(out, "%s: %s; %s\n", name, str_8bit(address) ? "utf-8" : "rfc822", address);
}

static const char *const actions[] = {
	[BOUNCE_FAILED] = "failed", [BOUNCE_DELAYED] = "delayed",
	[BOUNCE_DELIVERED] = "delivered", [BOUNCE_DOUBLE] = "failed",
	[BOUNCE_RELAYED] = "relayed",
};

/* An ORCPT as "Original-Recipient: type; address". A utf-8 one in an
 * ASCII report is written as RFC 6533's utf-8-addr-xtext: the characters
 * that are not QCHARs as \x{HEX} (a UTF-8 one makes the report global,
 * where the address is written as it is). */
static void put_orcpt(buf_t *out, const char *orcpt, bool global)
{
	const char *semi = strchr(orcpt, ';');
	bool utf8_type = semi - orcpt == 5 && strncmp(orcpt, "utf-8", 5) == 0;

	buf_printf(out, "Original-Recipient: %.*s; ", (int)(semi - orcpt), orcpt);
	for (const char *p = semi + 1; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (utf8_type && !global && (c < 0x21 || c > 0x7e || c == '+' || c == '=' ||
					     c == '\\'))
			buf_printf(out, "\\x{%02X}", c);
		else
			buf_putc(out, (char)c);
	}
	buf_puts(out, "\n");
}

static void put_recipient_fields(buf_t *out, const struct bounce_request *req,
				 const struct bounce_item *it, bool global)
{
	static const char *const fallback[] = {
		[BOUNCE_FAILED] = "5.0.0", [BOUNCE_DELAYED] = "4.0.0",
		[BOUNCE_DELIVERED] = "2.0.0", [BOUNCE_DOUBLE] = "5.0.0",
		[BOUNCE_RELAYED] = "2.0.0",
	};
	char status[16];

	bounce_status_code(it->reason, fallback[req->kind], status, sizeof(status));
	/* a delay is 4.x.x and a success 2.x.x whatever the reason says (a
	 * failure may be 4.4.7: a temporary error that outlived the queue) */
	bool fixed = req->kind == BOUNCE_DELAYED || req->kind == BOUNCE_DELIVERED ||
		     req->kind == BOUNCE_RELAYED;
	if (fixed && status[0] != fallback[req->kind][0])
		snprintf(status, sizeof(status), "%s", fallback[req->kind]);
	buf_puts(out, "\n");
	if (it->orcpt != NULL)
		put_orcpt(out, it->orcpt, global);
	else if (it->orig_rcpt != NULL)
		put_address_field(out, "Original-Recipient", it->orig_rcpt);
	put_address_field(out, "Final-Recipient", it->final_rcpt);
	buf_printf(out, "Action: %s\nStatus: %s\n", actions[req->kind], status);
	/* A success here is a copy in a local mailbox: no remote MTA took
	 * part, so there is no Remote-MTA (RFC 3464 section 2.3.5) to name
	 * (the Reporting-MTA is this host); a relayed one names the peer. */
	if (req->kind == BOUNCE_RELAYED && it->remote_mta != NULL && it->remote_mta[0] != '\0')
		buf_printf(out, "Remote-MTA: dns; %s\n", it->remote_mta);
	if (req->kind != BOUNCE_DELIVERED && req->kind != BOUNCE_RELAYED)
		buf_printf(out, "Diagnostic-Code: smtp; %s %s\n",
			   status[0] == '4' ? "450" : "550", it->reason);
	buf_puts(out, "Last-Attempt-Date: ");
	bounce_format_date(out, req->now_us);
	buf_puts(out, "\n");
	if (req->kind == BOUNCE_DELAYED && req->retry_until != 0) {
		buf_puts(out, "Will-Retry-Until: ");
		bounce_format_date(out, req->retry_until * 1000000u);
		buf_puts(out, "\n");
	}
}

static void put_dsn_part(buf_t *out, const struct bounce_request *req,
			 const char *boundary, const struct report_shape *shape)
{
	buf_printf(out, "--%s\nContent-Description: Delivery report\n"
		   "Content-Type: message/%sdelivery-status\n", boundary,
		   shape->global ? "global-" : "");
	if (shape->global)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_printf(out, "\nReporting-MTA: dns; %s\n", req->hostname);
	if (req->msg->dsn_envid != NULL)
		buf_printf(out, "Original-Envelope-Id: %s\n", req->msg->dsn_envid);
	buf_printf(out, "X-Postern-Queue-ID: %s\n", req->msg->id);
	buf_puts(out, "Arrival-Date: ");
	bounce_format_date(out, req->msg->arrival_us);
	buf_puts(out, "\n");
	for (size_t i = 0; i < req->count; i++)
		put_recipient_fields(out, req, &req->items[i], shape->global);
	buf_puts(out, "\n");
}

static void put_returned_part(buf_t *out, const char *boundary, const buf_t *quoted,
			      const struct report_shape *shape, bool utf8_message)
{
	size_t len = quoted->len;
	bool eight = has_8bit(quoted->data != NULL ? quoted->data : "", len);
	const char *type;

	if (shape->full)
		type = utf8_message && eight ? "message/global" : "message/rfc822";
	else
		type = utf8_message && eight ? "message/global-headers" : "text/rfc822-headers";
	if (!shape->full) {
		/* The part's own blank line ends the quoted header section. */
		while (len > 0 && quoted->data[len - 1] == '\n')
			len--;
	}
	buf_printf(out, "--%s\nContent-Description: %s\nContent-Type: %s\n", boundary,
		   shape->full ? "Undelivered Message" : "Message Headers", type);
	if (eight)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_puts(out, "\n");
	buf_append(out, quoted->data != NULL ? quoted->data : "", len);
	if (len > 0 && quoted->data[len - 1] != '\n')
		buf_puts(out, "\n");
	buf_printf(out, "%s\n--%s--\n", shape->full ? "" : "\n", boundary);
}

int bounce_build(buf_t *out, const struct bounce_request *req,
		 const char *bounce_id, char **err_r)
{
	buf_t quoted = BUF_INIT, boundary = BUF_INIT;
	struct report_shape shape = { 0 };
	bool want_full = req->kind == BOUNCE_FAILED && req->msg->dsn_ret == DSN_RET_FULL;

	shape.full = want_full && qf_message_size(req->msg) <= BOUNCE_FULL_MAX;
	shape.full_cut = want_full && !shape.full;
	/* The message as it would have been delivered: the header changes
	 * and a replaced body of the end of the message applied. */
	int rc = mhdr_read_message(req->queue_fd, req->msg, !shape.full,
				   shape.full ? BOUNCE_FULL_MAX + BOUNCE_HEADERS_MAX
					      : BOUNCE_HEADERS_MAX,
				   &quoted, err_r);
	if (rc < 0) {
		buf_free(&quoted);
		return -1;
	}
	shape.global = request_has_utf8_address(req);
	shape.eight = shape.global || has_8bit(quoted.data != NULL ? quoted.data : "", quoted.len);
	for (size_t i = 0; i < req->count && !shape.eight; i++)
		shape.eight = str_8bit(req->items[i].reason);
	choose_boundary(&boundary, bounce_id, req->hostname, &quoted);
	put_top_headers(out, req, bounce_id, boundary.data, &shape);
	put_human_part(out, req, boundary.data, &shape);
	put_dsn_part(out, req, boundary.data, &shape);
	put_returned_part(out, boundary.data, &quoted, &shape, req->msg->smtputf8);
	buf_free(&quoted);
	buf_free(&boundary);
	return 0;
}

int bounce_send(const struct bounce_request *req, char *bounce_id_r,
		char **err_r)
{
	const char *to = report_to(req);
	buf_t content = BUF_INIT;
	strlist_t rcpts = { NULL, 0 };

	if (to[0] == '\0') {
		*err_r = qf_errf("refusing to bounce a message from <>");
		return -1;
	}
	queue_id_new(bounce_id_r);
	if (bounce_build(&content, req, bounce_id_r, err_r) < 0)
		return -1;
	strlist_add(&rcpts, to);
	struct queue_envelope env = {
		.arrival_us = req->now_us,
		.client_addr = "local",
		.client_helo = req->hostname,
		.protocol = "LOCAL",
		.sender = "",
		.recipients = &rcpts,
		.smtputf8 = str_8bit(to),
		.body_8bitmime = has_8bit(content.data, content.len),
		.origin = req->kind == BOUNCE_DOUBLE ? QUEUE_ORIGIN_DOUBLE_BOUNCE
						     : QUEUE_ORIGIN_NOTICE,
	};
	int rc = -1;
	struct queue_writer *w = queue_writer_open(req->spool_dir, bounce_id_r,
						   &env, err_r);
	if (w != NULL) {
		if (queue_writer_write(w, content.data, content.len, err_r) < 0)
			queue_writer_abort(&w);
		else
			rc = queue_writer_commit(&w, err_r);
	}
	strlist_free(&rcpts);
	buf_free(&content);
	return rc;
}
