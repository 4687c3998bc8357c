/*
 * pop3_auth_pending.c - TEMPORARY stand-in for the auth client
 * (auth/auth_client.h) until the auth process lands on main: every login
 * is answered AUTH_TEMPFAIL ("-ERR [SYS/TEMP]") from the event loop, as
 * the contract says a client that cannot reach the auth process answers.
 * It checks no password. Delete this file when merging the branch that
 * implements auth_client.c.
 *
 * RFCs: none. Untrusted input: none kept (the password is not read).
 * Privilege: the pop3 worker (`user`).
 */
#include "../auth/auth_client.h"

#include <stdlib.h>

#include "../lib/xalloc.h"

struct auth_client {
	struct event_base *base;
};

struct auth_request {
	struct event *ev;
	auth_done_fn *done;
	void *arg;
};

struct auth_client *auth_client_new(struct event_base *evb, const char *socket_path)
{
	(void)socket_path;
	struct auth_client *c = xcalloc(1, sizeof(*c));
	c->base = evb;
	return c;
}

void auth_client_free(struct auth_client **c)
{
	xfree(c);
}

static void answer(evutil_socket_t fd, short what, void *arg)
{
	struct auth_request *req = arg;
	struct auth_result r = { AUTH_TEMPFAIL, NULL, "no auth process in this build" };
	(void)fd;
	(void)what;
	auth_done_fn *done = req->done;
	void *done_arg = req->arg;
	event_free(req->ev);
	free(req);
	done(done_arg, &r);
}

struct auth_request *auth_client_check(struct auth_client *c, const struct auth_query *q,
				       auth_done_fn *done, void *arg)
{
	(void)q;
	struct auth_request *req = xcalloc(1, sizeof(*req));
	req->done = done;
	req->arg = arg;
	req->ev = event_new(c->base, -1, 0, answer, req);
	event_active(req->ev, EV_TIMEOUT, 0);
	return req;
}

void auth_client_cancel(struct auth_request **req)
{
	if (*req == NULL)
		return;
	event_free((*req)->ev);
	xfree(req);
}
