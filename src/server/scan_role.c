/*
 * scan_role.c - the scan master (see server.h and docs/scanning.md): it
 * builds the content pipeline once, forks scan_workers scanner processes
 * that share it (scanner.c), listens on spool/private/scan.sock for the
 * smtp workers, hands each request to an idle scanner (the others wait in
 * a bounded queue), and relays the verdicts.
 *
 * Time and failure: a message may wait scan_timeout for a scanner and
 * take scan_timeout in one; a scanner past its time is killed (SIGKILL)
 * and replaced, as is one that crashes, and only that message gets the
 * failure verdict (451 4.7.0, or accepted under scan_fail_open); so does a
 * message that finds the queue full (SCAN_QUEUE_PER_SCANNER per scanner).
 *
 * Reloads: every few seconds the master asks the pipeline whether the
 * files it loaded changed (scan_pipeline_stale). If so a thread builds a
 * new pipeline beside the running one (the scanners keep working, no
 * scanner is forked meanwhile); if that fails the error is logged and the
 * running pipeline stays (tried again after a back-off); if it works, new
 * scanners are forked from it and the old ones exit after their current
 * message. A SIGHUP to the supervisor starts a new scan master instead
 * (master.c); when it is ready it takes over the socket path and the
 * supervisor sends this one SIGUSR2: it stops listening, tells each
 * connected worker to move on (DRAIN), serves what they still send, and
 * exits when they have all closed. SIGTERM: the same without the DRAIN
 * (the workers are stopping too).
 *
 * One thread (plus the builder while it runs), poll() over the signal
 * descriptor, the listening socket, the workers and the scanners. This
 * file is the master's life (start, socket, signals, reloads, the loop);
 * scan_pool.c its work (the scanners, the queue, the answers).
 *
 * RFCs: none. Untrusted input: the requests of the smtp workers and the
 * verdicts of the scanners (scan_proto.c decodes both; a violation ends
 * that connection, or kills that scanner). Privilege: `user`, non-dumpable;
 * started by the supervisor, it dropped the TLS key, the tables and every
 * descriptor of the other roles.
 */
#include "scan_master.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../scan/scan_client.h"
#include "../scan/scan_proto.h"

#define STALE_POLL_MS 5000
#define REBUILD_BACKOFF_MIN_MS 60000
#define REBUILD_BACKOFF_MAX_MS (15 * 60000)

static size_t scanner_target(const struct config *cfg)
{
	if (cfg->scan_workers != 0)
		return (size_t)cfg->scan_workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (size_t)n : 1;
}

static void accept_clients(struct scan_master *m)
{
	for (;;) {
		int fd = accept4(m->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("scan socket: accept: %s", strerror(errno));
			return;
		}
		struct client *c = xcalloc(1, sizeof(*c));
		c->fd = fd;
		c->next = m->clients;
		m->clients = c;
	}
}

/* ---- the socket --------------------------------------------------------------------- */

/* Listen on a fresh socket beside the path (scan.sock.PID); publish_socket
 * moves it there once the scanners run. */
static int open_socket(struct scan_master *m)
{
	buf_t tmp = BUF_INIT;
	struct stat st;
	m->path = scan_socket_path(m->cfg->spool_dir);
	buf_printf(&tmp, "%s.%ld", m->path, (long)getpid());
	m->tmp_path = buf_steal(&tmp);
	unlink(m->tmp_path);
	m->listener = scan_socket_listen(m->tmp_path);
	if (m->listener < 0 || stat(m->tmp_path, &st) < 0) {
		log_error("scan socket %s: %s", m->path, strerror(errno));
		unlink(m->tmp_path);
		return -1;
	}
	m->sock_dev = st.st_dev;
	m->sock_ino = st.st_ino;
	return 0;
}

/* Take the path over atomically: workers connecting from now on reach
 * this master (a predecessor's connections stay with it until DRAIN). */
static int publish_socket(struct scan_master *m)
{
	if (rename(m->tmp_path, m->path) == 0) {
		xfree(&m->tmp_path);
		return 0;
	}
	log_error("scan socket %s: %s", m->path, strerror(errno));
	return -1;
}

/* Is the socket path still ours (no newer master took it over)? */
static bool socket_is_ours(const struct scan_master *m)
{
	struct stat st;
	return stat(m->path, &st) == 0 && st.st_dev == m->sock_dev && st.st_ino == m->sock_ino;
}

static void stop_listening(struct scan_master *m, bool unlink_if_ours)
{
	if (m->listener < 0)
		return;
	if (unlink_if_ours && socket_is_ours(m))
		unlink(m->path);
	close(m->listener);
	m->listener = -1;
}

/* ---- reloading the pipeline ------------------------------------------------------- */

static void *build_thread(void *arg)
{
	struct scan_master *m = arg;
	char *err = NULL;
	m->built = m->build(m->cfg, &err);
	m->build_err = err;
	char done = 1;
	while (write(m->build_pipe[1], &done, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static void maybe_rebuild(struct scan_master *m)
{
	uint64_t now = now_ms();
	if (m->building || m->stopping || m->retiring || now < m->next_stale_ms)
		return;
	m->next_stale_ms = now + m->pace.stale_poll_ms;
	if (now < m->next_rebuild_ms || !scan_pipeline_stale(m->pipeline))
		return;
	log_info("scan: files of the pipeline changed: loading them beside the running one");
	m->built = NULL;
	m->build_err = NULL;
	int rc = pthread_create(&m->builder, NULL, build_thread, m);
	if (rc != 0) {
		log_error("scan: cannot start the loader thread: %s", strerror(rc));
		m->next_rebuild_ms = now + m->pace.rebuild_backoff_ms;
		return;
	}
	m->building = true;
}

/* The builder is done: switch to its pipeline, or keep the running one. */
static void build_done(struct scan_master *m)
{
	char b;
	while (read(m->build_pipe[0], &b, 1) < 0 && errno == EINTR)
		;
	pthread_join(m->builder, NULL);
	m->building = false;
	if (m->built == NULL) {
		m->rebuild_backoff_ms = m->rebuild_backoff_ms == 0 ? m->pace.rebuild_backoff_ms
			: m->rebuild_backoff_ms * 2 > REBUILD_BACKOFF_MAX_MS ? REBUILD_BACKOFF_MAX_MS
			: m->rebuild_backoff_ms * 2;
		m->next_rebuild_ms = now_ms() + m->rebuild_backoff_ms;
		log_error("scan: the changed files do not load: %s; the running pipeline stays "
			  "(trying again in %.1fs)",
			  m->build_err != NULL ? m->build_err : "(no reason given)",
			  (double)m->rebuild_backoff_ms / 1000);
		xfree(&m->build_err);
		return;
	}
	m->rebuild_backoff_ms = 0;
	m->next_rebuild_ms = 0;
	scan_pipeline_free(&m->pipeline);
	m->pipeline = m->built;
	m->built = NULL;
	m->generation++;
	size_t retired = 0;
	for (size_t i = 0; i < m->scanner_count; i++) {
		struct scanner *s = &m->scanners[i];
		if (s->pid == 0 || s->retiring)
			continue;
		s->retiring = true;
		retired++;
		if (s->job == NULL)
			scan_pool_scanner_drop(s);
	}
	size_t stages = scan_pipeline_stage_count(m->pipeline);
	log_info("scan: new pipeline loaded (%zu stage%s); %zu scanner%s replaced, the busy "
		 "ones after their message", stages, stages == 1 ? "" : "s", retired,
		 retired == 1 ? "" : "s");
}

/* ---- signals and the loop ------------------------------------------------------------ */

static void begin_exit(struct scan_master *m, bool retire)
{
	uint64_t now = now_ms();
	const struct config *cfg = m->cfg;
	/* Workers that connected a moment ago wait in the backlog: take them
	 * in (and serve them) rather than reset them with the listener. */
	if (m->listener >= 0)
		accept_clients(m);
	if (retire) {
		bool successor = !socket_is_ours(m);
		m->retiring = true;
		stop_listening(m, true);
		/* With a successor the workers move over at once; without one
		 * (scanning turned off) the old workers' sessions may last. */
		m->exit_deadline_ms = now + (successor ? (2 * cfg->scan_timeout + 10) * 1000
						       : (cfg->session_timeout + 60) * 1000);
		size_t open = 0;
		for (struct client *c = m->clients; c != NULL; c = c->next)
			open += c->fd >= 0;
		log_info("scan: reload: %s; %zu worker connection%s until %s closed",
			 successor ? "a new scan master has taken over" : "scanning is off now",
			 open, open == 1 ? " goes on" : "s go on", open == 1 ? "it is" : "they are");
		struct scan_msg drain;
		scan_msg_init(&drain, SCAN_MSG_DRAIN);
		for (struct client *c = successor ? m->clients : NULL; c != NULL; c = c->next)
			scan_pool_client_send(c, &drain);
	} else {
		m->stopping = true;
		stop_listening(m, true);
		m->exit_deadline_ms = now + (cfg->shutdown_timeout + 5) * 1000;
	}
}

static void take_signals(struct scan_master *m)
{
	struct signalfd_siginfo si;
	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			scan_pool_reap(m);
		else if (si.ssi_signo == SIGUSR2 && !m->stopping && !m->retiring)
			begin_exit(m, true);
		else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !m->stopping) {
			if (m->retiring)
				m->retiring = false;
			begin_exit(m, false);
		}
	}
}

static bool busy(const struct scan_master *m)
{
	if (m->queue_head != NULL)
		return true;
	for (size_t i = 0; i < m->scanner_count; i++)
		if (m->scanners[i].job != NULL)
			return true;
	for (const struct client *c = m->clients; c != NULL; c = c->next)
		if (c->fd >= 0)
			return true;
	return false;
}

/* How long poll may sleep: until the nearest deadline. */
static int poll_timeout(const struct scan_master *m)
{
	uint64_t now = now_ms(), next = now + m->pace.stale_poll_ms;
	for (size_t i = 0; i < m->scanner_count; i++)
		if (m->scanners[i].pid != 0 && m->scanners[i].job != NULL &&
		    m->scanners[i].deadline_ms < next)
			next = m->scanners[i].deadline_ms;
	if (m->queue_head != NULL && m->queue_head->arrived_ms + m->cfg->scan_timeout * 1000 < next)
		next = m->queue_head->arrived_ms + m->cfg->scan_timeout * 1000;
	if (m->respawn_after_ms > now && m->respawn_after_ms < next)
		next = m->respawn_after_ms;
	if ((m->stopping || m->retiring) && m->exit_deadline_ms < next)
		next = m->exit_deadline_ms;
	return next > now ? (int)(next - now) : 0;
}

enum poll_kind { P_SIGNAL, P_LISTENER, P_BUILD, P_SCANNER, P_CLIENT };

static void serve(struct scan_master *m)
{
	struct pollfd *fds = NULL;
	enum poll_kind *kinds = NULL;
	void **items = NULL;
	size_t cap = 0;
	for (;;) {
		if ((m->stopping || m->retiring) &&
		    (!busy(m) || now_ms() >= m->exit_deadline_ms))
			break;
		size_t n = 0, need = 3 + m->scanner_count;
		for (struct client *c = m->clients; c != NULL; c = c->next)
			need++;
		if (need > cap) {
			cap = need * 2;
			fds = xreallocarray(fds, cap, sizeof(*fds));
			kinds = xreallocarray(kinds, cap, sizeof(*kinds));
			items = xreallocarray(items, cap, sizeof(*items));
		}
#define WATCH(fd_, ev_, kind_, item_) \
	do { fds[n] = (struct pollfd){ (fd_), (ev_), 0 }; kinds[n] = (kind_); items[n] = (item_); n++; } while (0)
		WATCH(m->sigfd, POLLIN, P_SIGNAL, NULL);
		if (m->listener >= 0)
			WATCH(m->listener, POLLIN, P_LISTENER, NULL);
		if (m->building)
			WATCH(m->build_pipe[0], POLLIN, P_BUILD, NULL);
		for (size_t i = 0; i < m->scanner_count; i++)
			if (m->scanners[i].pid != 0 && m->scanners[i].sock >= 0)
				WATCH(m->scanners[i].sock, POLLIN, P_SCANNER, &m->scanners[i]);
		for (struct client *c = m->clients; c != NULL; c = c->next)
			if (c->fd >= 0)
				WATCH(c->fd, POLLIN | (c->out_head != NULL ? POLLOUT : 0), P_CLIENT, c);
#undef WATCH
		if (poll(fds, n, poll_timeout(m)) < 0 && errno != EINTR)
			log_fatal("scan master: poll: %s", strerror(errno));
		for (size_t i = 0; i < n; i++) {
			if (fds[i].revents == 0)
				continue;
			switch (kinds[i]) {
			case P_SIGNAL:
				take_signals(m);
				break;
			case P_LISTENER:
				if (m->listener >= 0)
					accept_clients(m);
				break;
			case P_BUILD:
				build_done(m);
				break;
			case P_SCANNER: {
				struct scanner *s = items[i];
				if (s->pid != 0 && s->sock == fds[i].fd)
					scan_pool_scanner_readable(m, s);
				break;
			}
			case P_CLIENT: {
				struct client *c = items[i];
				if (c->fd >= 0 && (fds[i].revents & POLLOUT))
					scan_pool_client_flush(c);
				if (c->fd >= 0 && (fds[i].revents & ~POLLOUT))
					scan_pool_client_readable(m, c);
				break;
			}
			}
		}
		scan_pool_expire(m);
		scan_pool_reap(m);
		scan_pool_keep_scanners(m);
		scan_pool_dispatch(m);
		scan_pool_sweep_clients(m);
		maybe_rebuild(m);
	}
	free(fds);
	free(kinds);
	free(items);
}

/* ---- start and end ------------------------------------------------------------------ */

static int signals_open(struct scan_master *m)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m->sigfd < 0) {
		log_error("scan master: signalfd: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void master_free(struct scan_master *m)
{
	while (m->queue_head != NULL)
		scan_pool_request_free(scan_pool_queue_pop(m));
	for (size_t i = 0; i < m->scanner_count; i++)
		if (m->scanners[i].job != NULL)
			scan_pool_request_free(m->scanners[i].job);
	for (struct client *c = m->clients; c != NULL; c = c->next)
		scan_pool_client_close(c);
	scan_pool_sweep_clients(m);
	free(m->scanners);
	stop_listening(m, true);
	if (m->tmp_path != NULL)
		unlink(m->tmp_path);
	free(m->tmp_path);
	free(m->path);
	close(m->sigfd);
	/* A pipeline still loading is left to the thread: the process is
	 * about to exit, and the thread still writes to its pipe. */
	if (!m->building) {
		close(m->build_pipe[0]);
		close(m->build_pipe[1]);
	}
	scan_pipeline_free(&m->pipeline);
}

static void tell_supervisor(struct scan_master *m, char what)
{
	if (m->ready_fd < 0)
		return;
	while (write(m->ready_fd, &what, 1) < 0 && errno == EINTR)
		;
	close(m->ready_fd);
	m->ready_fd = -1;
}

static void exit_at_once(int sig)
{
	(void)sig;
	_exit(0);
}

/* Until the master serves, a stop ends it at once: loading may take long
 * (a full signature set) and there is nothing to clean up yet. */
static void stops_end_at_once(bool on)
{
	sigset_t stops;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	if (!on)
		sigprocmask(SIG_BLOCK, &stops, NULL);
	signal(SIGTERM, on ? exit_at_once : SIG_DFL);
	signal(SIGINT, on ? exit_at_once : SIG_DFL);
	if (on)
		sigprocmask(SIG_UNBLOCK, &stops, NULL);
}

/* Build the pipeline and, if there is something to scan, open the socket;
 * 0 ready, 1 nothing to scan, -1 with the exit status in *status_r. */
static int start_up(struct scan_master *m, int *status_r)
{
	const struct config *cfg = m->cfg;
	char *err = NULL;
	m->pipeline = m->build(cfg, &err);
	if (m->pipeline == NULL) {
		log_error("%s", err != NULL ? err : "the content pipeline does not load");
		log_error("content scanning cannot start with this configuration");
		free(err);
		*status_r = SCAN_EXIT_CONFIG;
		return -1;
	}
	if (scan_pipeline_stage_count(m->pipeline) == 0 && cfg->scan == SCAN_MODE_AUTO) {
		log_info("no content stage is configured: nothing to scan");
		return 1;
	}
	if (open_socket(m) < 0) {
		*status_r = 1;
		return -1;
	}
	return 0;
}

int scan_master_main(const struct config *cfg, int ready_fd)
{
	static const struct scan_master_pace pace = { STALE_POLL_MS, REBUILD_BACKOFF_MIN_MS };
	log_set_role("scan");
	return scan_master_run(cfg, ready_fd, scan_pipeline_build, &pace);
}

int scan_master_run(const struct config *cfg, int ready_fd, scan_build_fn *build,
		    const struct scan_master_pace *pace)
{
	struct scan_master m = { .cfg = cfg, .build = build, .pace = *pace, .listener = -1,
				 .sigfd = -1, .ready_fd = ready_fd, .build_pipe = { -1, -1 } };
	int status = 0;
	stops_end_at_once(true);
	int started = start_up(&m, &status);
	stops_end_at_once(false);
	if (started == 0 && (signals_open(&m) < 0 || pipe2(m.build_pipe, O_CLOEXEC) < 0)) {
		started = -1;
		status = 1;
	}
	if (started != 0) {
		if (started > 0)
			tell_supervisor(&m, SCAN_READY_OFF);
		master_free(&m);
		return status;
	}
	size_t stages = scan_pipeline_stage_count(m.pipeline);
	m.want = scanner_target(cfg);
	scan_pool_keep_scanners(&m);
	uint64_t worst = 2 * cfg->scan_timeout + SCAN_CLIENT_MARGIN;
	if (cfg->policy_timeout <= worst)
		log_warn("%s: policy_timeout (%" PRIu64 "s) is not longer than a scan may take "
			 "(2 x scan_timeout + %ds = %" PRIu64 "s): a slow scan ends with "
			 "policy_default_action instead of its own verdict", cfg->path,
			 cfg->policy_timeout, SCAN_CLIENT_MARGIN, worst);
	log_info("scan master ready: %zu stage%s%s, %zu scanners, scan_timeout=%" PRIu64
		 "s, fail %s", stages, stages == 1 ? "" : "s", stages == 0 ? " (MIME limits only)" : "",
		 m.want, cfg->scan_timeout, cfg->scan_fail_open == CONFIG_YES ? "open" : "closed");
	if (publish_socket(&m) < 0) {
		scan_pool_end_scanners(&m);
		master_free(&m);
		return 1;
	}
	tell_supervisor(&m, SCAN_READY_ON);
	serve(&m);
	scan_pool_end_scanners(&m);
	master_free(&m);
	log_info("scan master exiting");
	return 0;
}
