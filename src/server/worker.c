/*
 * worker.c - the smtp worker role: one libevent loop serving many SMTP
 * sessions on the listening sockets inherited from the supervisor. Runs
 * unprivileged. SIGTERM (or SIGINT) starts a graceful drain: stop accepting, let open
 * transactions finish, close idle sessions with 421, exit when the last
 * session is gone or shutdown_timeout has passed. SIGUSR2 (after a reload)
 * retires the worker: stop accepting, serve the open sessions to their
 * end, then exit.
 *
 * With content scanning on, the end of data asks the scan master
 * (scan/scan_client.h) before the commit.
 *
 * Limits across workers (policy/limits.h): the worker keeps one connection
 * to the anvil (spool_dir/private/anvil.sock), which counts sessions,
 * rates and greylisting for every worker; its notices (a warn level
 * passed, a block, a panic) go to notify_admin through the notifier.
 *
 * In-flow back-pressure (queue/flow.h): before committing a message a
 * session takes a token from the pipe the queue manager refills as it
 * delivers, waiting at most in_flow_delay when there is none; the worker
 * logs at most every FLOW_LOG_SECONDS how many messages had to wait.
 */
#include "server.h"

#include <errno.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../auth/auth_client.h"
#include "../auth/auth_proto.h"
#include "../dns/dns.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../milter/milter_client.h"
#include "../policy/dnsbl.h"
#include "../policy/limits.h"
#include "../policy/quota_check.h"
#include "../policy/restrictions.h"
#include "../queue/capture.h"
#include "../scan/scan_client.h"
#include "../scan/scan_proto.h"
#include "../smtp/session.h"

/* While out of descriptors, try accepting again this often (or as soon
 * as a session ends), and say so in the log at most this often. */
#define ACCEPT_RETRY_MS 1000
#define ACCEPT_WARN_SECONDS 10
/* Say how many messages waited for a flow token at most this often. */
#define FLOW_LOG_SECONDS 5

struct worker;
/* What the accept callback of one listening socket needs. */
struct listener_ctx {
	struct worker *w;
	enum smtp_listener kind;
};

struct worker {
	struct smtp_server srv;
	struct evconnlistener **listeners;
	struct listener_ctx *listener_ctx;
	size_t listener_count;
	struct event *sig_term, *sig_int, *sig_retire, *shutdown_timer;
	struct event *accept_retry;
	struct event *flow_log_timer;
	uint64_t flow_waited_logged, flow_timed_out_logged;
	bool accept_paused;
	time_t accept_warned;
	unsigned long accept_failures; /* since the last warning */
};

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	(void)l;
	struct listener_ctx *ctx = arg;
	evutil_make_socket_nonblocking(fd);
	smtp_session_start_on(&ctx->w->srv, fd, sa, (socklen_t)salen, ctx->kind);
}

static void set_accepting(struct worker *w, bool on)
{
	for (size_t i = 0; i < w->listener_count; i++) {
		if (on)
			evconnlistener_enable(w->listeners[i]);
		else
			evconnlistener_disable(w->listeners[i]);
	}
}

static void resume_accepting(struct worker *w)
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

/* A session ended: its descriptors are free again. */
static void on_session_freed(struct smtp_server *srv)
{
	resume_accepting((struct worker *)srv); /* srv is the first member */
}

/*
 * accept() failed. Out of descriptors or memory, the listener would stay
 * readable and the loop would spin on it: stop accepting until a session
 * ends or ACCEPT_RETRY_MS pass (the connections wait in the kernel's
 * backlog meanwhile), and log once per ACCEPT_WARN_SECONDS.
 */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct worker *w = ((struct listener_ctx *)arg)->w;
	int err = EVUTIL_SOCKET_ERROR();
	(void)l;
	bool exhausted = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
	time_t now = time(NULL);
	w->accept_failures++;
	if (now - w->accept_warned >= ACCEPT_WARN_SECONDS) {
		log_warn("accept failed: %s (%lu time%s; %zu sessions open)%s",
			 evutil_socket_error_to_string(err), w->accept_failures,
			 w->accept_failures == 1 ? "" : "s", w->srv.session_count,
			 exhausted ? "; pausing new connections" : "");
		w->accept_warned = now;
		w->accept_failures = 0;
	}
	if (!exhausted || w->accept_paused || w->srv.draining || w->srv.retiring)
		return;
	w->accept_paused = true;
	set_accepting(w, false);
	struct timeval tv = { ACCEPT_RETRY_MS / 1000, (ACCEPT_RETRY_MS % 1000) * 1000 };
	evtimer_add(w->accept_retry, &tv);
}

/* A notice of the limits to the administrator. */
static void limits_notice(void *arg, const char *subject, const char *body)
{
	struct smtp_server *srv = arg;
	notifier_admin_text(srv->notifier, subject, body);
}

static void on_drained(struct smtp_server *srv)
{
	event_base_loopexit(srv->base, NULL);
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	log_warn("shutdown timeout: closing %zu sessions", w->srv.session_count);
	smtp_server_close_all(&w->srv); /* on_drained ends the loop */
}

/* Close our copies of the listening sockets: the connections waiting
 * in the kernel stay for the other workers or the next generation. */
static void stop_accepting(struct worker *w)
{
	for (size_t i = 0; i < w->listener_count; i++)
		evconnlistener_free(w->listeners[i]);
	w->listener_count = 0;
	w->accept_paused = false;
	evtimer_del(w->accept_retry);
}

/* SIGUSR2 from the supervisor after a reload: stop accepting, let every
 * session run to its natural end, then exit. */
static void retire_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct worker *w = arg;
	if (w->srv.draining || w->srv.retiring)
		return;
	log_info("reload: retiring, %zu sessions continue", w->srv.session_count);
	stop_accepting(w);
	smtp_server_retire(&w->srv);
}

static void term_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct worker *w = arg;
	if (w->srv.draining)
		return;
	log_info("signal %d: draining %zu sessions", (int)sig, w->srv.session_count);
	stop_accepting(w);
	struct timeval tv = { (time_t)w->srv.cfg->shutdown_timeout, 0 };
	w->shutdown_timer = evtimer_new(w->srv.base, shutdown_timeout_cb, w);
	evtimer_add(w->shutdown_timer, &tv);
	smtp_server_drain(&w->srv);
}

/* Messages waited for a flow token (or gave up waiting) since the last
 * line: say so. */
static void flow_log_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	uint64_t waited, timed_out;
	queue_flow_stats(w->srv.flow, &waited, &timed_out);
	if (waited == w->flow_waited_logged && timed_out == w->flow_timed_out_logged)
		return;
	uint64_t started = waited - w->flow_waited_logged;
	log_info("in-flow: delivery is behind: since the last report %" PRIu64 " message%s "
		 "started waiting for a flow token and %" PRIu64 " went ahead without one after "
		 "in_flow_delay (since start: waited=%" PRIu64 " timed_out=%" PRIu64 ")",
		 started, started == 1 ? "" : "s", timed_out - w->flow_timed_out_logged, waited,
		 timed_out);
	w->flow_waited_logged = waited;
	w->flow_timed_out_logged = timed_out;
}

static int open_listeners(struct worker *w, const int *fds, const enum smtp_listener *kinds,
			  size_t count)
{
	w->listeners = xcalloc(count, sizeof(*w->listeners));
	w->listener_ctx = xcalloc(count, sizeof(*w->listener_ctx));
	for (size_t i = 0; i < count; i++) {
		w->listener_ctx[i].w = w;
		w->listener_ctx[i].kind = kinds != NULL ? kinds[i] : SMTP_LISTENER_MX;
		w->listeners[i] = evconnlistener_new(w->srv.base, accept_cb, &w->listener_ctx[i],
						     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
						     -1, fds[i]);
		if (w->listeners[i] == NULL) {
			log_error("cannot listen on inherited socket %d", fds[i]);
			return -1;
		}
		evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
		w->listener_count++;
	}
	return 0;
}

/* The signals the worker acts on. The supervisor starts it with them
 * blocked; they are opened once libevent handles them and blocked again
 * when the loop has ended, so that one arriving then (the supervisor's
 * SIGTERM after a SIGINT to the whole process group) neither kills the
 * worker nor is taken by the default action libevent restores. */
static void set_stop_signals_blocked(bool blocked)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR2);
	sigprocmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* Wait for the quota reader to leave after its socket closed: at most
 * a second (a recount of a huge Maildir may be running), then SIGKILL. */
static void reap_quota_reader(pid_t pid)
{
	if (pid <= 0)
		return;
	for (int i = 0; i < 100; i++) {
		pid_t r = waitpid(pid, NULL, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int smtp_worker_main(const struct config *cfg, const struct recipient_tables *rcpt,
		     SSL_CTX *tls_ctx, const struct smtp_worker_links *links)
{
	struct worker w = { 0 };
	signal(SIGPIPE, SIG_IGN);
	set_stop_signals_blocked(true); /* the commit threads never take them */
	w.srv.base = event_base_new();
	if (w.srv.base == NULL)
		log_fatal("cannot create event base");
	w.srv.cfg = cfg;
	policy_env_init(&w.srv.policy, cfg, rcpt, w.srv.base);
	w.srv.policy.restrictions = links->restrictions;
	struct dnsbl_checks *dnsbl = NULL;
	if (dnsbl_configured(cfg) || restrictions_need_dns(links->restrictions)) {
		struct dns_options dns_opt;
		char *err = NULL;
		dns_options_from_config(cfg, &dns_opt);
		w.srv.policy.dns = dns_resolver_new(w.srv.base, &dns_opt, &err);
		if (w.srv.policy.dns == NULL)
			log_fatal("cannot set up the DNS resolver: %s", err);
		if (dnsbl_configured(cfg)) {
			dnsbl = dnsbl_checks_new(cfg, w.srv.policy.dns);
			dnsbl_checks_register(dnsbl, &w.srv.policy);
		}
	}
	struct scan_client *scan = NULL;
	if (links->scan) {
		char *path = scan_socket_path(cfg->spool_dir);
		scan = scan_client_new(w.srv.base, cfg, path);
		scan_client_register(scan, &w.srv.policy);
		free(path);
	}
	struct quota_check *quota = NULL;
	if (links->quota_fd >= 0) {
		/* before the limits: greylisting stays the last RCPT check */
		quota = quota_check_new(w.srv.base, links->quota_fd);
		quota_check_register(quota, &w.srv.policy);
	}
	bool auth = cfg->smtp_auth == CONFIG_YES;
	for (size_t i = 0; i < links->listen_count && links->listen_kinds != NULL; i++)
		auth = auth || links->listen_kinds[i] != SMTP_LISTENER_MX;
	if (auth) {
		char *path = auth_socket_path(cfg->spool_dir);
		w.srv.auth = auth_client_new(w.srv.base, path);
		free(path);
	}
	w.srv.committer = queue_committer_new(w.srv.base, (unsigned)cfg->commit_threads);
	w.srv.tls_ctx = tls_ctx;
	w.srv.notify_fd = links->notify_fd;
	w.srv.notifier = notifier_new(w.srv.base, cfg, links->notice_template, w.srv.committer,
				      links->notify_fd);
	w.srv.flow = queue_flow_new(w.srv.base, links->flow_fd, cfg->in_flow_delay * 1000u);
	w.srv.capture = capture_new(w.srv.base, cfg);
	if (limits_wanted(cfg)) {
		char *path = anvil_socket_path(cfg->spool_dir);
		w.srv.limits = limits_new(cfg, anvil_client_new(w.srv.base, path), limits_notice,
					  &w.srv);
		free(path);
		/* After the built-in lists: greylisting comes last at RCPT, the
		 * rate checks put themselves first. */
		limits_register(w.srv.limits, &w.srv.policy);
	}
	/* The milters come last at every stage: postern's own checks first. */
	w.srv.milters = milter_client_new(w.srv.base, cfg);
	if (w.srv.milters != NULL)
		milter_client_register(w.srv.milters, &w.srv.policy);
	w.flow_log_timer = event_new(w.srv.base, -1, EV_PERSIST, flow_log_cb, &w);
	struct timeval flow_log_every = { FLOW_LOG_SECONDS, 0 };
	if (w.flow_log_timer == NULL || evtimer_add(w.flow_log_timer, &flow_log_every) < 0)
		log_fatal("cannot create the flow log timer");
	w.srv.on_drained = on_drained;
	w.srv.on_session_freed = on_session_freed;
	w.accept_retry = evtimer_new(w.srv.base, accept_retry_cb, &w);
	if (open_listeners(&w, links->listen_fds, links->listen_kinds, links->listen_count) < 0)
		return 1;
	w.sig_term = evsignal_new(w.srv.base, SIGTERM, term_cb, &w);
	w.sig_int = evsignal_new(w.srv.base, SIGINT, term_cb, &w);
	w.sig_retire = evsignal_new(w.srv.base, SIGUSR2, retire_cb, &w);
	evsignal_add(w.sig_term, NULL);
	evsignal_add(w.sig_int, NULL);
	evsignal_add(w.sig_retire, NULL);
	set_stop_signals_blocked(false);
	log_info("smtp worker ready%s", scan != NULL ? " (content scanning on)" : "");
	event_base_dispatch(w.srv.base);
	set_stop_signals_blocked(true);
	for (size_t i = 0; i < w.listener_count; i++)
		evconnlistener_free(w.listeners[i]);
	free(w.listeners);
	free(w.listener_ctx);
	if (w.shutdown_timer != NULL)
		event_free(w.shutdown_timer);
	event_free(w.sig_term);
	event_free(w.sig_int);
	event_free(w.sig_retire);
	event_free(w.accept_retry);
	flow_log_cb(-1, 0, &w); /* what the last interval saw */
	event_free(w.flow_log_timer);
	queue_flow_free(&w.srv.flow);
	capture_free(&w.srv.capture);
	queue_committer_free(&w.srv.committer); /* its last callbacks use the notifier */
	notifier_free(&w.srv.notifier);
	limits_free(&w.srv.limits);
	milter_client_free(&w.srv.milters); /* the sessions that used it are gone */
	auth_client_free(&w.srv.auth); /* the sessions that waited are gone */
	scan_client_free(&scan);
	quota_check_free(&quota); /* the reader sees the socket close and exits */
	reap_quota_reader(links->quota_pid);
	dnsbl_checks_free(&dnsbl);
	dns_resolver_free(&w.srv.policy.dns);
	event_base_free(w.srv.base);
	log_info("smtp worker exiting");
	return 0;
}
