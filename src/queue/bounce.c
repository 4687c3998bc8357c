/*
 * bounce.c - non-delivery reports: an RFC 3464 multipart/report
 * (report-type=delivery-status, RFC 6522) with a human-readable part, a
 * message/delivery-status part (one block per failed recipient) and the
 * original header section as text/rfc822-headers. The report is queued as
 * a new message from <> to the original sender (RFC 5321 section 4.5.5),
 * so it is delivered, retried and never bounced again like any other.
 *
 * RFCs: 3464, 6522, 3463 (status codes), 5322 (header syntax and dates),
 * 3834 (Auto-Submitted). Untrusted input: the original message's header
 * section (quoted verbatim, bounded to BOUNCE_HEADERS_MAX, the MIME
 * boundary is chosen so that it does not occur in it) and its envelope
 * addresses (validated by the queue file reader: no control characters).
 * Privilege: unprivileged queue manager.
 */
#include "bounce.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/xalloc.h"

#define BOUNCE_BOUNDARY_TRIES 64

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

static bool request_has_8bit(const struct bounce_request *req,
			     const buf_t *headers)
{
	if (has_8bit(headers->data != NULL ? headers->data : "", headers->len) ||
	    has_8bit(req->msg->sender, strlen(req->msg->sender)))
		return true;
	for (size_t i = 0; i < req->count; i++) {
		const struct bounce_item *it = &req->items[i];
		if (has_8bit(it->final_rcpt, strlen(it->final_rcpt)) ||
		    (it->orig_rcpt != NULL &&
		     has_8bit(it->orig_rcpt, strlen(it->orig_rcpt))))
			return true;
	}
	return false;
}

/* "=_<id>/<host>", then "=_<id>/<host>/1", ... until it occurs nowhere in
 * the quoted text. Bounded: only someone who guessed the bounce id could
 * plant candidates, and after BOUNCE_BOUNDARY_TRIES the last one is used
 * (breaking the structure of that sender's own bounce, nothing else). */
static void choose_boundary(buf_t *b, const char *id, const char *host,
			    const buf_t *quoted)
{
	for (unsigned n = 0; n < BOUNCE_BOUNDARY_TRIES; n++) {
		buf_reset(b);
		buf_printf(b, "=_%s/%s", id, host);
		if (n > 0)
			buf_printf(b, "/%u", n);
		if (quoted->len == 0 ||
		    memmem(quoted->data, quoted->len, b->data, b->len) == NULL)
			return;
	}
}

static void put_top_headers(buf_t *out, const struct bounce_request *req,
			    const char *id, const char *boundary, bool eight)
{
	const char *host = req->hostname;

	buf_printf(out, "Received: by %s (postern) id %s;\n\t", host, id);
	bounce_format_date(out, req->now_us);
	buf_printf(out, "\nFrom: Mail Delivery System <MAILER-DAEMON@%s>\n", host);
	buf_printf(out, "To: <%s>\n", req->msg->sender);
	buf_puts(out, "Subject: Undelivered Mail Returned to Sender\nDate: ");
	bounce_format_date(out, req->now_us);
	buf_printf(out, "\nMessage-ID: <%s.bounce@%s>\n", id, host);
	buf_puts(out, "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
	buf_printf(out, "Content-Type: multipart/report; report-type=delivery-status;\n"
		   "\tboundary=\"%s\"\n", boundary);
	if (eight)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_puts(out, "\nThis is a MIME-encapsulated message.\n\n");
}

static void put_human_part(buf_t *out, const struct bounce_request *req,
			   const char *boundary, bool eight)
{
	buf_printf(out, "--%s\nContent-Description: Notification\n"
		   "Content-Type: text/plain; charset=%s\n", boundary,
		   eight ? "utf-8" : "us-ascii");
	if (eight)
		buf_puts(out, "Content-Transfer-Encoding: 8bit\n");
	buf_printf(out, "\nThis is the postern mail system at %s.\n\n"
		   "Your message (queue id %s) could not be delivered to the\n"
		   "recipients listed below. The mail system gave up for the\n"
		   "reasons shown; the headers of your message are attached.\n\n",
		   req->hostname, req->msg->id);
	for (size_t i = 0; i < req->count; i++) {
		const struct bounce_item *it = &req->items[i];
		buf_printf(out, "<%s>", it->final_rcpt);
		if (it->orig_rcpt != NULL)
			buf_printf(out, " (sent to <%s>)", it->orig_rcpt);
		buf_printf(out, ":\n    %s\n\n", it->reason);
	}
}

static void put_dsn_part(buf_t *out, const struct bounce_request *req,
			 const char *boundary)
{
	buf_printf(out, "--%s\nContent-Description: Delivery report\n"
		   "Content-Type: message/delivery-status\n\n", boundary);
	buf_printf(out, "Reporting-MTA: dns; %s\nX-Postern-Queue-ID: %s\n",
		   req->hostname, req->msg->id);
	buf_puts(out, "Arrival-Date: ");
	bounce_format_date(out, req->msg->arrival_us);
	buf_puts(out, "\n");
	for (size_t i = 0; i < req->count; i++) {
		const struct bounce_item *it = &req->items[i];
		char status[16];
		bounce_status_code(it->reason, "5.0.0", status, sizeof(status));
		buf_printf(out, "\nFinal-Recipient: rfc822; %s\n", it->final_rcpt);
		if (it->orig_rcpt != NULL)
			buf_printf(out, "Original-Recipient: rfc822; %s\n", it->orig_rcpt);
		buf_printf(out, "Action: failed\nStatus: %s\n"
			   "Diagnostic-Code: smtp; %s %s\n",
			   status, status[0] == '4' ? "450" : "550", it->reason);
	}
	buf_puts(out, "\n");
}

static void put_headers_part(buf_t *out, const char *boundary,
			     const buf_t *headers)
{
	size_t len = headers->len;

	/* The part's own blank line ends the quoted header section. */
	while (len > 0 && headers->data[len - 1] == '\n')
		len--;
	buf_printf(out, "--%s\nContent-Description: Undelivered Message Headers\n"
		   "Content-Type: text/rfc822-headers\n\n", boundary);
	buf_append(out, headers->data != NULL ? headers->data : "", len);
	buf_printf(out, "\n\n--%s--\n", boundary);
}

int bounce_build(buf_t *out, const struct bounce_request *req,
		 const char *bounce_id, char **err_r)
{
	buf_t headers = BUF_INIT, boundary = BUF_INIT;

	if (qf_read_headers(req->queue_fd, req->msg, BOUNCE_HEADERS_MAX, &headers,
			    err_r) < 0) {
		buf_free(&headers);
		return -1;
	}
	bool eight = request_has_8bit(req, &headers);
	choose_boundary(&boundary, bounce_id, req->hostname, &headers);
	put_top_headers(out, req, bounce_id, boundary.data, eight);
	put_human_part(out, req, boundary.data, eight);
	put_dsn_part(out, req, boundary.data);
	put_headers_part(out, boundary.data, &headers);
	buf_free(&headers);
	buf_free(&boundary);
	return 0;
}

int bounce_send(const struct bounce_request *req, char *bounce_id_r,
		char **err_r)
{
	const struct qf_msg *m = req->msg;
	buf_t content = BUF_INIT;
	strlist_t rcpts = { NULL, 0 };

	if (m->sender[0] == '\0') {
		*err_r = qf_errf("refusing to bounce a message from <>");
		return -1;
	}
	queue_id_new(bounce_id_r);
	if (bounce_build(&content, req, bounce_id_r, err_r) < 0)
		return -1;
	strlist_add(&rcpts, m->sender);
	struct queue_envelope env = {
		.arrival_us = req->now_us,
		.client_addr = "local",
		.client_helo = req->hostname,
		.protocol = "LOCAL",
		.sender = "",
		.recipients = &rcpts,
		.smtputf8 = has_8bit(m->sender, strlen(m->sender)),
		.body_8bitmime = has_8bit(content.data, content.len),
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
