/*
 * pop3_agent.c - the mailbox agent of the pop3 role: opens, lists, reads
 * and updates Maildirs for the pop3 worker (pop3_proto.h, pop3_maildrop.h),
 * one request at a time, in order.
 *
 * The agent does not take the worker's word for an account: OPEN must
 * carry a login ticket (src/auth/auth_ticket.h) that the auth process
 * made for that account when it accepted the password, checked with the
 * key the supervisor gave this agent (the worker wiped its copy before
 * reading the network), unexpired, and not taken before (the nonces of
 * the tickets taken are kept until they expire). Otherwise OPENED says
 * failed: a compromised worker can open only the accounts whose logins
 * it has just seen succeed.
 *
 * The agent builds every path from its own mail_root and the account the
 * worker names (checked as a safe path component by maildir_path), holds
 * each open maildrop (and its lock) until the worker's CLOSE, and stops
 * when the worker closes the socket. Stop signals are ignored: the agent
 * ends with its worker, after the update it may be making.
 *
 * RFCs: none here (pop3_maildrop.c). Untrusted input: the worker's
 * messages (decoded as hostile), the Maildirs. Privilege: mail_owner.
 */
#include "pop3.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../auth/auth_ticket.h"
#include "../queue/maildir.h"
#include "pop3_maildrop.h"
#include "pop3_proto.h"

struct held {
	struct held *next;
	uint32_t sid;
	struct pop3_maildrop md;
};

/* Nonces of the tickets taken, until their expiry: a ticket opens once.
 * When every slot holds a live one, the soonest to expire is forgotten
 * (it could then be taken again within its last seconds). */
#define TAKEN_TICKETS_MAX 1024

struct taken_ticket {
	uint64_t expiry; /* 0: a free slot */
	unsigned char nonce[AUTH_TICKET_NONCE_LEN];
};

struct agent {
	const struct config *cfg;
	int sock;
	unsigned char key[AUTH_TICKET_KEY_LEN];
	struct taken_ticket taken[TAKEN_TICKETS_MAX];
	struct held *held;
	size_t held_count;
	struct pop3_msg *out; /* big (the entries): one, reused */
};

static struct held **find(struct agent *a, uint32_t sid)
{
	struct held **h = &a->held;
	while (*h != NULL && (*h)->sid != sid)
		h = &(*h)->next;
	return h;
}

static void send_or_die(struct agent *a, const struct pop3_msg *m, const int *fds, size_t nfds)
{
	if (pop3_msg_send(a->sock, m, fds, nfds) < 0) {
		log_error("mailbox agent: cannot answer the worker: %s", strerror(errno));
		exit(1);
	}
}

static void reply_opened(struct agent *a, uint32_t sid, uint8_t status, uint32_t count,
			 const char *reason)
{
	memset(a->out, 0, sizeof(*a->out));
	a->out->type = POP3_MSG_OPENED;
	a->out->sid = sid;
	a->out->status = status;
	a->out->count = count;
	pop3_msg_set_reason(a->out->reason, reason);
	send_or_die(a, a->out, NULL, 0);
}

/* Was the ticket of nonce taken before? If not, it is now. */
static bool ticket_taken_before(struct agent *a, const unsigned char *nonce, uint64_t now)
{
	struct taken_ticket *slot = &a->taken[0];
	for (size_t i = 0; i < TAKEN_TICKETS_MAX; i++) {
		struct taken_ticket *t = &a->taken[i];
		if (t->expiry != 0 && t->expiry >= now &&
		    memcmp(t->nonce, nonce, AUTH_TICKET_NONCE_LEN) == 0)
			return true;
		if (t->expiry < slot->expiry)
			slot = t; /* free, or expired, or the soonest to */
	}
	slot->expiry = now + AUTH_TICKET_LIFETIME;
	memcpy(slot->nonce, nonce, AUTH_TICKET_NONCE_LEN);
	return false;
}

/* Has the auth process vouched for m's account (just now, once)? */
static bool ticket_valid(struct agent *a, const struct pop3_msg *m)
{
	unsigned char nonce[AUTH_TICKET_NONCE_LEN];
	uint64_t now = auth_ticket_now();
	enum auth_ticket_status st =
		auth_ticket_check(a->key, AUTH_SERVICE_POP3, m->user, m->ticket, now, nonce);
	const char *why = auth_ticket_status_text(st);
	if (st == AUTH_TICKET_OK && ticket_taken_before(a, nonce, now)) {
		st = AUTH_TICKET_FORGED;
		why = "a login ticket used before";
	}
	if (st == AUTH_TICKET_OK)
		return true;
	log_error("mailbox agent: user=%s: refused: the worker sent %s", m->user, why);
	return false;
}

static void do_open(struct agent *a, const struct pop3_msg *m)
{
	if (*find(a, m->sid) != NULL) {
		log_error("mailbox agent: the worker opened session %u twice", m->sid);
		exit(1);
	}
	if (!ticket_valid(a, m)) {
		reply_opened(a, m->sid, POP3_STATUS_FAILED, 0, "no valid login ticket");
		return;
	}
	buf_t path = BUF_INIT;
	if (!maildir_path(&path, a->cfg->mail_root, m->user)) {
		log_warn("mailbox agent: user=%s: not a mailbox name", m->user);
		reply_opened(a, m->sid, POP3_STATUS_FAILED, 0, "not a mailbox name");
		buf_free(&path);
		return;
	}
	if (a->held_count >= a->cfg->pop3_connection_limit + 16) {
		reply_opened(a, m->sid, POP3_STATUS_FAILED, 0, "too many open maildrops");
		buf_free(&path);
		return;
	}
	struct held *h = xcalloc(1, sizeof(*h));
	char *err = NULL;
	enum pop3_open_result r = pop3_maildrop_open(buf_cstr(&path), &h->md, &err);
	buf_free(&path);
	if (r != POP3_OPEN_OK) {
		if (err != NULL)
			log_error("mailbox agent: user=%s: %s", m->user, err);
		reply_opened(a, m->sid, r == POP3_OPEN_IN_USE ? POP3_STATUS_IN_USE
							      : POP3_STATUS_FAILED, 0,
			     err != NULL ? err : "");
		free(err);
		free(h);
		return;
	}
	h->sid = m->sid;
	h->next = a->held;
	a->held = h;
	a->held_count++;
	for (size_t i = 0; i < h->md.count;) {
		memset(a->out, 0, sizeof(*a->out));
		a->out->type = POP3_MSG_ENTRIES;
		a->out->sid = m->sid;
		while (i < h->md.count && a->out->entry_count < POP3_ENTRIES_PER_PACKET) {
			struct pop3_entry *e = &a->out->entries[a->out->entry_count++];
			e->size = h->md.mails[i].size;
			memcpy(e->uid, h->md.mails[i].uid, sizeof(e->uid));
			i++;
		}
		send_or_die(a, a->out, NULL, 0);
	}
	reply_opened(a, m->sid, POP3_STATUS_OK, (uint32_t)h->md.count, "");
}

static struct held *held_or_die(struct agent *a, uint32_t sid)
{
	struct held *h = *find(a, sid);
	if (h == NULL) {
		log_error("mailbox agent: the worker asked for session %u, which is not open", sid);
		exit(1);
	}
	return h;
}

static void do_fetch(struct agent *a, const struct pop3_msg *m)
{
	struct held *h = held_or_die(a, m->sid);
	if (m->index >= h->md.count) {
		log_error("mailbox agent: message %u of %zu asked for", m->index, h->md.count);
		exit(1);
	}
	/* The message asked for, and the next ones while they open (read
	 * ahead: the worker keeps them for the RETRs that usually follow). */
	int fds[POP3_FETCH_MAX];
	size_t n = 0;
	struct pop3_msg r = { .type = POP3_MSG_MAIL, .sid = m->sid };
	for (size_t i = m->index; n < m->fetch_count && i < h->md.count; i++) {
		int fd = pop3_maildrop_open_mail(&h->md, i);
		if (fd < 0) {
			if (n == 0) {
				r.status = errno == ENOENT ? POP3_STATUS_GONE : POP3_STATUS_FAILED;
				if (errno != ENOENT)
					log_error("mailbox agent: cannot open %s/cur/%s: %s",
						  h->md.path, h->md.mails[i].name, strerror(errno));
			}
			break;
		}
		fds[n++] = fd;
	}
	r.fetch_count = (uint8_t)n;
	send_or_die(a, &r, fds, n);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

static void do_update(struct agent *a, const struct pop3_msg *m)
{
	struct held *h = held_or_die(a, m->sid);
	if (m->count != h->md.count) {
		log_error("mailbox agent: %u marks for %zu messages", m->count, h->md.count);
		exit(1);
	}
	struct pop3_update_result res;
	char *err = NULL;
	int rc = pop3_maildrop_update(&h->md, m->marks, &res, &err);
	if (err != NULL)
		log_error("mailbox agent: %s", err);
	struct pop3_msg r = { .type = POP3_MSG_UPDATED, .sid = m->sid,
			      .status = rc < 0 ? POP3_STATUS_FAILED : POP3_STATUS_OK,
			      .deleted = res.deleted, .gone = res.gone, .failed = res.failed };
	pop3_msg_set_reason(r.reason, err != NULL ? err : "");
	free(err);
	send_or_die(a, &r, NULL, 0);
}

static void do_close(struct agent *a, const struct pop3_msg *m)
{
	struct held **hp = find(a, m->sid);
	struct held *h = *hp;
	if (h == NULL)
		return;
	*hp = h->next;
	pop3_maildrop_close(&h->md);
	free(h);
	a->held_count--;
}

int pop3_agent_main(const struct config *cfg, int sock, unsigned char *ticket_key)
{
	struct agent *a = xcalloc(1, sizeof(*a)); /* big (the taken tickets) */
	a->cfg = cfg;
	a->sock = sock;
	memcpy(a->key, ticket_key, AUTH_TICKET_KEY_LEN);
	explicit_bzero(ticket_key, AUTH_TICKET_KEY_LEN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	a->out = xcalloc(1, sizeof(*a->out));
	struct pop3_msg *in = xcalloc(1, sizeof(*in));
	unsigned char *buf = xmalloc(POP3_PROTO_MAX + 1);
	int status = 0;
	log_info("mailbox agent ready");
	for (;;) {
		int fds[POP3_FETCH_MAX];
		const char *err;
		int rc = pop3_msg_recv(sock, true, in, buf, fds, &err);
		if (rc == 0)
			break;
		if (rc < 0) {
			log_error("mailbox agent: from the worker: %s (%s)", err, strerror(errno));
			status = 1;
			break;
		}
		switch (in->type) {
		case POP3_MSG_OPEN:
			do_open(a, in);
			break;
		case POP3_MSG_FETCH:
			do_fetch(a, in);
			break;
		case POP3_MSG_UPDATE:
			do_update(a, in);
			break;
		case POP3_MSG_CLOSE:
			do_close(a, in);
			break;
		default:
			break; /* replies are refused by pop3_msg_recv */
		}
	}
	while (a->held != NULL) {
		struct pop3_msg m = { .type = POP3_MSG_CLOSE, .sid = a->held->sid };
		do_close(a, &m);
	}
	free(buf);
	free(in);
	free(a->out);
	explicit_bzero(a, sizeof(*a));
	free(a);
	return status;
}
