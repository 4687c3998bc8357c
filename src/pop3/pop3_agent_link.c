/*
 * pop3_agent_link.c - the pop3 worker's side of the socket pair to its
 * mailbox agent: requests are sent at once, replies come back in order
 * from the event loop and go to whoever asked (pop3_int.h). A session
 * that ends forgets its outstanding requests; their replies are dropped.
 *
 * The agent is the worker's own child: if it dies or breaks the protocol
 * the worker cannot serve a single mailbox, so it logs and exits, and
 * the supervisor starts the role again.
 *
 * RFCs: none. Untrusted input: the agent's replies (decoded as hostile by
 * pop3_proto.c). Privilege: the pop3 worker (`user`).
 */
#include "pop3_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

struct waiter {
	struct waiter *next;
	uint32_t sid;
	enum pop3_msg_type request;
	pop3_agent_reply_fn *reply; /* NULL: forgotten */
	void *arg;
};

struct pop3_agent_link {
	int sock;
	struct event *ev;
	struct waiter *head, *tail;
	unsigned char *buf;
	struct pop3_msg *msg;
};

static NORETURN void agent_broken(const char *what)
{
	log_error("pop3 worker: the mailbox agent %s: exiting", what);
	exit(1);
}

/* Is reply type t an answer to request r? */
static bool answers(enum pop3_msg_type r, enum pop3_msg_type t)
{
	return (r == POP3_MSG_OPEN && (t == POP3_MSG_ENTRIES || t == POP3_MSG_OPENED)) ||
	       (r == POP3_MSG_FETCH && t == POP3_MSG_MAIL) ||
	       (r == POP3_MSG_UPDATE && t == POP3_MSG_UPDATED);
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_agent_link *l = arg;
	int fds[POP3_FETCH_MAX];
	const char *err;
	(void)fd;
	(void)what;
	int rc = pop3_msg_recv(l->sock, false, l->msg, l->buf, fds, &err);
	if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (rc == 0)
		agent_broken("closed its socket");
	if (rc < 0) {
		log_error("pop3 worker: from the mailbox agent: %s", err);
		agent_broken("broke the protocol");
	}
	size_t nfds = l->msg->type == POP3_MSG_MAIL ? l->msg->fetch_count : 0;
	struct waiter *w = l->head;
	if (w == NULL || w->sid != l->msg->sid || !answers(w->request, l->msg->type))
		agent_broken("answered a question nobody asked");
	bool last = l->msg->type != POP3_MSG_ENTRIES;
	if (last) {
		l->head = w->next;
		if (l->head == NULL)
			l->tail = NULL;
	}
	if (w->reply != NULL) {
		w->reply(w->arg, l->msg, fds);
	} else {
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
	}
	if (last)
		free(w);
}

struct pop3_agent_link *pop3_agent_link_new(struct event_base *base, int sock)
{
	struct pop3_agent_link *l = xcalloc(1, sizeof(*l));
	l->sock = sock;
	l->buf = xmalloc(POP3_PROTO_MAX + 1);
	l->msg = xcalloc(1, sizeof(*l->msg));
	/* Replies are read when they are there; requests are sent blocking
	 * (the agent reads each at once; the buffers hold many). */
	l->ev = event_new(base, sock, EV_READ | EV_PERSIST, read_cb, l);
	if (l->ev == NULL || event_add(l->ev, NULL) < 0)
		log_fatal("pop3 worker: cannot watch the mailbox agent's socket");
	return l;
}

void pop3_agent_link_free(struct pop3_agent_link **lp)
{
	struct pop3_agent_link *l = *lp;
	if (l == NULL)
		return;
	while (l->head != NULL) {
		struct waiter *w = l->head;
		l->head = w->next;
		free(w);
	}
	event_free(l->ev);
	close(l->sock);
	free(l->buf);
	free(l->msg);
	xfree(lp);
}

void pop3_agent_ask(struct pop3_agent_link *l, const struct pop3_msg *req,
		    pop3_agent_reply_fn *reply, void *arg)
{
	if (pop3_msg_send(l->sock, req, NULL, 0) < 0) {
		log_error("pop3 worker: cannot write to the mailbox agent: %s", strerror(errno));
		agent_broken("cannot be reached");
	}
	if (req->type == POP3_MSG_CLOSE)
		return;
	struct waiter *w = xcalloc(1, sizeof(*w));
	w->sid = req->sid;
	w->request = req->type;
	w->reply = reply;
	w->arg = arg;
	if (l->tail != NULL)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
}

void pop3_agent_forget(struct pop3_agent_link *l, void *arg)
{
	for (struct waiter *w = l->head; w != NULL; w = w->next)
		if (w->arg == arg)
			w->reply = NULL;
}
