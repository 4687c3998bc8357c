/*
 * pop3_worker.c - the pop3 worker: one libevent loop serving every POP3
 * session on the pop3_listen (STLS) and pop3s_listen (implicit TLS)
 * sockets inherited from the supervisor. Logins go to the auth process
 * (auth/auth_client.h), mailbox work to the mailbox agent
 * (pop3_agent_link.c). SIGTERM or SIGINT: stop accepting and close the
 * sessions (without their update: RFC 1939 deletes nothing without QUIT;
 * an update in progress completes); SIGUSR2 (a reload): stop accepting
 * and let the open sessions run to their end.
 *
 * RFCs: see pop3_session.c and pop3_commands.c. Untrusted input: the
 * network. Privilege: `user`; the TLS context was built by the supervisor's
 * child before it dropped root.
 */
#include "pop3_int.h"

#include <errno.h>
#include <event2/listener.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../auth/auth_proto.h"
#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "pop3.h"

#define ACCEPT_RETRY_MS 1000

struct listener {
	struct pop3_worker *w;
	struct evconnlistener *l;
	bool implicit_tls;
};

struct pop3_worker {
	struct pop3_server srv; /* first: the callbacks get it */
	struct listener *listeners;
	size_t listener_count;
	struct event *sig_term, *sig_int, *sig_retire, *accept_retry;
	struct auth_client *auth;
	bool accept_paused;
	time_t accept_warned;
};

static struct auth_request *auth_check(void *ctx, const struct auth_query *q,
				       auth_done_fn *done, void *arg)
{
	return auth_client_check(ctx, q, done, arg);
}

static void set_accepting(struct pop3_worker *w, bool on)
{
	for (size_t i = 0; i < w->listener_count; i++) {
		if (on)
			evconnlistener_enable(w->listeners[i].l);
		else
			evconnlistener_disable(w->listeners[i].l);
	}
}

static void resume_accepting(struct pop3_worker *w)
{
	if (!w->accept_paused)
		return;
	w->accept_paused = false;
	evtimer_del(w->accept_retry);
	set_accepting(w, true);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	resume_accepting(arg);
}

static void on_session_freed(struct pop3_server *srv)
{
	resume_accepting((struct pop3_worker *)srv);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct listener *li = arg;
	(void)l;
	evutil_make_socket_nonblocking(fd);
	/* Replies go out as they are ready: a pipelining client waiting
	 * for the last reply of a batch must not wait for its own delayed
	 * ACK of the one before (Nagle). */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pop3_session_start(&li->w->srv, fd, sa, (socklen_t)salen, li->implicit_tls);
}

/* Out of descriptors: stop accepting until a session ends or a second
 * passes (the loop would spin on the readable listener). */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct listener *li = arg;
	struct pop3_worker *w = li->w;
	int err = EVUTIL_SOCKET_ERROR();
	(void)l;
	time_t now = time(NULL);
	if (now - w->accept_warned >= 10) {
		log_warn("accept failed: %s (%zu sessions open)", evutil_socket_error_to_string(err),
			 w->srv.session_count);
		w->accept_warned = now;
	}
	if (w->accept_paused || w->srv.draining || w->srv.retiring)
		return;
	w->accept_paused = true;
	set_accepting(w, false);
	struct timeval tv = { ACCEPT_RETRY_MS / 1000, (ACCEPT_RETRY_MS % 1000) * 1000 };
	evtimer_add(w->accept_retry, &tv);
}

static void stop_accepting(struct pop3_worker *w)
{
	for (size_t i = 0; i < w->listener_count; i++)
		evconnlistener_free(w->listeners[i].l);
	w->listener_count = 0;
	w->accept_paused = false;
	evtimer_del(w->accept_retry);
}

static void on_drained(struct pop3_server *srv)
{
	event_base_loopexit(srv->base, NULL);
}

static void term_cb(evutil_socket_t sig, short what, void *arg)
{
	struct pop3_worker *w = arg;
	(void)what;
	if (w->srv.draining)
		return;
	log_info("signal %d: closing %zu sessions", (int)sig, w->srv.session_count);
	stop_accepting(w);
	pop3_server_drain(&w->srv);
}

static void retire_cb(evutil_socket_t sig, short what, void *arg)
{
	struct pop3_worker *w = arg;
	(void)sig;
	(void)what;
	if (w->srv.draining || w->srv.retiring)
		return;
	log_info("reload: retiring, %zu sessions continue", w->srv.session_count);
	stop_accepting(w);
	pop3_server_retire(&w->srv);
}

/* Each session may hold its socket, the message being sent and the
 * messages opened ahead; receiving descriptors beyond the limit would
 * truncate the agent's reply (and end the worker). Raise the soft limit
 * to the hard one if needed; say so if even that is too low. */
static void check_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)cfg->pop3_connection_limit * (2 + POP3_FETCH_MAX) + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need)
		log_warn("pop3_connection_limit %llu needs %llu descriptors, the limit is %llu: "
			 "lower pop3_connection_limit or raise the limit (ulimit -n)",
			 (unsigned long long)cfg->pop3_connection_limit, (unsigned long long)need,
			 (unsigned long long)rl.rlim_cur);
}

static void set_stop_signals_blocked(bool blocked)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR2);
	sigprocmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

int pop3_worker_main(const struct config *cfg, SSL_CTX *tls_ctx, const struct pop3_links *links)
{
	struct pop3_worker w = { 0 };
	signal(SIGPIPE, SIG_IGN);
	set_stop_signals_blocked(true);
	w.srv.base = event_base_new();
	if (w.srv.base == NULL)
		log_fatal("cannot create event base");
	w.srv.cfg = cfg;
	w.srv.tls_ctx = tls_ctx;
	check_fd_limit(cfg);
	w.srv.agent = pop3_agent_link_new(w.srv.base, links->agent_fd);
	char *path = auth_socket_path(cfg->spool_dir);
	w.auth = auth_client_new(w.srv.base, path);
	free(path);
	w.srv.auth = (struct pop3_auth_ops){ auth_check, auth_client_cancel, w.auth };
	w.srv.on_drained = on_drained;
	w.srv.on_session_freed = on_session_freed;
	w.accept_retry = evtimer_new(w.srv.base, accept_retry_cb, &w);
	w.listeners = xcalloc(links->listen_count, sizeof(*w.listeners));
	for (size_t i = 0; i < links->listen_count; i++) {
		struct listener *li = &w.listeners[i];
		li->w = &w;
		li->implicit_tls = links->implicit_tls[i];
		li->l = evconnlistener_new(w.srv.base, accept_cb, li,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
					   links->listen_fds[i]);
		if (li->l == NULL)
			log_fatal("cannot listen on inherited socket %d", links->listen_fds[i]);
		evconnlistener_set_error_cb(li->l, accept_error_cb);
		w.listener_count++;
	}
	w.sig_term = evsignal_new(w.srv.base, SIGTERM, term_cb, &w);
	w.sig_int = evsignal_new(w.srv.base, SIGINT, term_cb, &w);
	w.sig_retire = evsignal_new(w.srv.base, SIGUSR2, retire_cb, &w);
	evsignal_add(w.sig_term, NULL);
	evsignal_add(w.sig_int, NULL);
	evsignal_add(w.sig_retire, NULL);
	set_stop_signals_blocked(false);
	log_info("pop3 worker ready: %zu listeners%s", w.listener_count,
		 tls_ctx != NULL ? ", TLS" : ", no TLS");
	event_base_dispatch(w.srv.base);
	set_stop_signals_blocked(true);
	stop_accepting(&w);
	free(w.listeners);
	event_free(w.sig_term);
	event_free(w.sig_int);
	event_free(w.sig_retire);
	event_free(w.accept_retry);
	auth_client_free(&w.auth);
	pop3_agent_link_free(&w.srv.agent); /* the agent sees the end and exits */
	event_base_free(w.srv.base);
	log_info("pop3 worker exiting");
	return 0;
}
