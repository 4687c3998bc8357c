/*
 * quota_check.c - the RCPT quota check (see quota_check.h) and its
 * client of the quota reader: many requests outstanding on one socket
 * pair, answered in order, matched to their checks by a FIFO.
 *
 * RFCs: RFC 5321 (552 at RCPT), RFC 3463 (5.2.2 mailbox full), RFC 1870
 * (the SIZE announced at MAIL). Untrusted input: the client's envelope,
 * the reader's packets. Privilege: smtp worker (user).
 */
#include "quota_check.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/cidr.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../mail/quota_rule.h"
#include "../queue/quota_proto.h"

struct quota_ask;

/* One RCPT being checked. */
struct quota_state {
	struct quota_check *q;
	struct policy_call *call;
	struct event *deadline;
	unsigned outstanding;    /* asks not answered yet */
	uint64_t need;           /* bytes that must be free: SIZE=, at least 1 */
	bool exempt;             /* the sender may use the grace past the quota */
	struct config_grace grace;
	char full[QF_ADDR_MAX + 1]; /* the first full mailbox; "" none */
	uint64_t full_used, full_limit;
	bool full_count;         /* the message count is what is full */
};

/* One request in flight, in the order sent. */
struct quota_ask {
	struct quota_ask *next;
	uint32_t seq;
	struct quota_state *state; /* NULL: its check is gone (cancelled, timed out) */
	char address[QF_ADDR_MAX + 1];
};

struct quota_check {
	struct event_base *base;
	int sock;
	struct event *readable;
	bool broken;
	uint32_t next_seq;
	struct quota_ask *head, *tail;
};

/* ---- the socket ----------------------------------------------------------- */

static void state_finish(struct quota_state *st);

/* Forget the state's asks (their answers will be dropped). */
static void orphan_asks(struct quota_check *q, const struct quota_state *st)
{
	for (struct quota_ask *a = q->head; a != NULL; a = a->next)
		if (a->state == st)
			a->state = NULL;
}

/* The reader is gone or broke the protocol: every check waiting on it
 * lets its recipient through. From the loop only. */
static void mark_broken(struct quota_check *q, const char *why)
{
	if (q->broken)
		return;
	q->broken = true;
	log_error("quota reader: %s; RCPT quota checks are off in this worker (delivery still "
		  "enforces quotas)", why);
	event_del(q->readable);
	while (q->head != NULL) {
		struct quota_ask *a = q->head;
		q->head = a->next;
		struct quota_state *st = a->state;
		free(a);
		if (st != NULL && --st->outstanding == 0)
			state_finish(st);
	}
	q->tail = NULL;
}

static void usage_arrived(struct quota_check *q, const struct quota_msg *m)
{
	struct quota_ask *a = q->head;
	if (a == NULL || a->seq != m->seq) {
		mark_broken(q, "an answer to no request");
		return;
	}
	q->head = a->next;
	if (q->head == NULL)
		q->tail = NULL;
	struct quota_state *st = a->state;
	if (st != NULL) {
		uint64_t limit = m->limit, count_limit = m->count_limit;
		if (st->exempt) {
			limit = quota_grace_limit(limit, st->grace.amount, st->grace.percent, true);
			count_limit = quota_grace_limit(count_limit, st->grace.amount,
							st->grace.percent, false);
		}
		bool bytes_full = !quota_fits(m->used, st->need, limit);
		bool count_full = !quota_fits(m->count_used, 1, count_limit);
		if (m->status == QUOTA_KNOWN && st->full[0] == '\0' && (bytes_full || count_full)) {
			snprintf(st->full, sizeof(st->full), "%s", a->address);
			st->full_count = !bytes_full;
			st->full_used = bytes_full ? m->used : m->count_used;
			st->full_limit = bytes_full ? limit : count_limit;
		}
		if (--st->outstanding == 0)
			state_finish(st);
	}
	free(a);
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct quota_check *q = arg;
	unsigned char packet[QUOTA_MSG_MAX + 1];
	(void)what;
	for (;;) {
		ssize_t n = recv(fd, packet, sizeof(packet), MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			mark_broken(q, n == 0 ? "gone" : strerror(errno));
			return;
		}
		struct quota_msg m;
		const char *why = NULL;
		if ((size_t)n > QUOTA_MSG_MAX || quota_msg_decode(packet, (size_t)n, &m, &why) < 0 ||
		    m.type != QUOTA_USAGE) {
			mark_broken(q, why != NULL ? why : "protocol violation");
			return;
		}
		usage_arrived(q, &m);
		if (q->broken)
			return;
	}
}

/* Send one ASK for st; false when it cannot be sent now (the mailbox is
 * then not checked). */
static bool ask(struct quota_check *q, struct quota_state *st, const char *address)
{
	struct quota_msg m = { .type = QUOTA_ASK, .seq = q->next_seq, .need = st->need };
	unsigned char packet[QUOTA_MSG_MAX];
	size_t len = strlen(address);
	if (q->broken || len == 0 || len > QF_ADDR_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)address[i] <= 0x20 || address[i] == 0x7f)
			return false;
	memcpy(m.address, address, len + 1);
	size_t n = quota_msg_encode(&m, packet);
	if (send(q->sock, packet, n, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)n) {
		log_warn("quota reader: cannot ask about <%s>: %s; not checked", address,
			 strerror(errno));
		return false;
	}
	struct quota_ask *a = xcalloc(1, sizeof(*a));
	a->seq = q->next_seq++;
	a->state = st;
	memcpy(a->address, address, len + 1);
	if (q->tail != NULL)
		q->tail->next = a;
	else
		q->head = a;
	q->tail = a;
	st->outstanding++;
	return true;
}

/* ---- the check ---------------------------------------------------------------- */

static void state_free(struct quota_state *st)
{
	if (st->deadline != NULL)
		event_free(st->deadline);
	free(st);
}

/* Every answer is in: refuse if a mailbox is full, else no opinion. */
static void state_finish(struct quota_state *st)
{
	struct policy_call *call = st->call;
	enum policy_verdict v = POLICY_DUNNO;
	if (st->full[0] != '\0') {
		const struct policy_request *req = policy_call_request(call);
		char shown[ADDR_PATH_MAX + 1];
		address_format(&req->rcpt, shown, sizeof(shown));
		policy_call_set(call, 552, "5.2.2", "mailbox_full", "mailbox full: <%s>", shown);
		/* the mailbox name is cut first if the log field is short */
		snprintf(policy_call_reply(call)->detail, sizeof(policy_call_reply(call)->detail),
			 "used=%" PRIu64 " quota=%" PRIu64 "%s%s need=%" PRIu64 " mailbox=<%.200s>",
			 st->full_used, st->full_limit, st->full_count ? "messages" : "",
			 st->exempt ? " (with grace)" : "", st->need, st->full);
		v = POLICY_REJECT;
	}
	orphan_asks(st->q, st);
	state_free(st);
	policy_call_finish(call, v);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct quota_state *st = arg;
	(void)fd;
	(void)what;
	log_warn("%s: quota reader did not answer within %d ms; recipient not checked",
		 policy_call_request(st->call)->queue_id, QUOTA_CHECK_TIMEOUT_MS);
	st->full[0] = '\0'; /* fail open, whatever came in */
	state_finish(st);
}

/*
 * May this sender's mail use the grace past the quota? The senders
 * quota_sender_exempt names, except a postmaster of a local domain
 * claimed by a client that neither authenticated nor is in mynetworks:
 * mail from our own postmaster comes from inside, so that claim from
 * outside is a forgery and gets no more than anyone.
 */
static bool sender_exempt(const struct config *cfg, const struct policy_request *req,
			  const char *sender)
{
	if (!quota_sender_exempt(sender, &cfg->local_domains))
		return false;
	if (sender[0] == '\0' || strncasecmp(sender, "postmaster@", 11) != 0)
		return true; /* <> or MAILER-DAEMON: bounces come from anywhere */
	return req->auth_user != NULL ||
	       cidr_list_match(&cfg->mynetworks, (const struct sockaddr *)&req->client);
}

/* Is the recipient local (a local domain, no address literal)? */
static bool local_recipient(const struct config *cfg, const struct mail_address *a)
{
	return a->domain[0] == '\0' ||
	       (!a->domain_literal && strlist_contains_nocase(&cfg->local_domains, a->domain));
}

static enum policy_verdict quota_run(struct policy_call *call, void *arg)
{
	struct quota_check *q = arg;
	const struct policy_request *req = policy_call_request(call);
	const struct policy_env *env = policy_call_env(call);
	const struct config *cfg = env->cfg;
	char key[ADDR_PATH_MAX + 1], sender[ADDR_PATH_MAX + 1];

	if (q->broken || !req->has_rcpt || !local_recipient(cfg, &req->rcpt) ||
	    !policy_local_key(cfg, &req->rcpt, key, sizeof(key)))
		return POLICY_DUNNO;
	address_format(&req->sender, sender, sizeof(sender));
	strlist_t finals = { 0 };
	if (recipients_expand(env->rcpt_tables, key, &finals) != EXPAND_OK) {
		strlist_free(&finals);
		return POLICY_DUNNO; /* the queue manager reports the loop */
	}
	struct quota_state *st = xcalloc(1, sizeof(*st));
	st->q = q;
	st->call = call;
	st->exempt = sender_exempt(cfg, req, sender);
	st->grace = cfg->quota_grace;
	/* the margin keeps ordinary mail well inside the quota; the grace is
	 * all the margin an exempt sender gets */
	st->need = st->exempt ? 0 : cfg->quota_reject_margin;
	if (req->declared_size > st->need)
		st->need = req->declared_size;
	if (st->need == 0)
		st->need = 1; /* a full mailbox has no room for any message */
	for (size_t i = 0; i < finals.count; i++) {
		const char *box = finals.items[i];
		if (recipients_is_user(env->rcpt_tables, box) &&
		    (recipients_quota(env->rcpt_tables, box, cfg->mailbox_quota) != 0 ||
		     recipients_quota_messages(env->rcpt_tables, box) != 0))
			ask(q, st, box);
	}
	strlist_free(&finals);
	if (st->outstanding == 0) {
		state_free(st);
		return POLICY_DUNNO;
	}
	struct timeval tv = { QUOTA_CHECK_TIMEOUT_MS / 1000, (QUOTA_CHECK_TIMEOUT_MS % 1000) * 1000 };
	st->deadline = evtimer_new(q->base, deadline_cb, st);
	if (st->deadline == NULL || evtimer_add(st->deadline, &tv) < 0)
		log_fatal("cannot arm the quota check's timer");
	policy_call_set_state(call, st);
	return POLICY_PENDING;
}

static void quota_cancel(struct policy_call *call, void *arg)
{
	struct quota_state *st = policy_call_state(call);
	(void)arg;
	if (st == NULL)
		return;
	orphan_asks(st->q, st);
	state_free(st);
}

struct quota_check *quota_check_new(struct event_base *base, int sock)
{
	struct quota_check *q = xcalloc(1, sizeof(*q));
	q->base = base;
	q->sock = sock;
	q->readable = event_new(base, sock, EV_READ | EV_PERSIST, readable_cb, q);
	if (q->readable == NULL || event_add(q->readable, NULL) < 0)
		log_fatal("cannot watch the quota reader's socket");
	return q;
}

void quota_check_register(struct quota_check *q, struct policy_env *env)
{
	struct policy_check check = { "quota", quota_run, quota_cancel, q };
	policy_env_add(env, POLICY_RCPT, &check);
}

void quota_check_free(struct quota_check **qp)
{
	struct quota_check *q = *qp;
	if (q == NULL)
		return;
	while (q->head != NULL) {
		struct quota_ask *a = q->head;
		q->head = a->next;
		free(a);
	}
	event_free(q->readable);
	close(q->sock);
	free(q);
	*qp = NULL;
}
