/*
 * metrics_role.c - the metrics role: an HTTP listener (metrics_listen)
 * that answers GET /metrics with every process's counters in
 * Prometheus' text exposition format (version 0.0.4), read from the
 * shared segment (src/lib/metrics.h), and with gauges read at each
 * scrape: messages in each spool folder, processes and resident memory
 * per role.
 *
 * HTTP is libevent's evhttp: its parser, with our limits: 8 KiB of
 * request header, no request body, 10 s per request, one request per
 * connection ("Connection: close"), at most METRICS_MAX_FDS descriptors
 * (RLIMIT_NOFILE: accept pauses for a second when they are used up).
 * Only GET and HEAD of /metrics are served: any other path is 404, any
 * other method 405.
 *
 * RFCs: RFC 9110/9112 (through evhttp). Untrusted input: HTTP requests
 * on metrics_listen (meant for loopback). Privilege: `user`; it holds
 * the listening socket the supervisor bound, the spool's folder names
 * (it counts entries, opens no file in them) and /proc.
 */
#include "metrics_role.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/metrics.h"

#define METRICS_MAX_FDS 64
#define METRICS_HEADERS_MAX 8192
#define METRICS_REQUEST_SECONDS 10
#define ROLES_MAX 32 /* distinct roles shown; more are summed as "other" */

struct metrics_server {
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *listener;
	struct event *accept_retry;
	const struct config *cfg;
	pid_t supervisor;
};

/* The one server of this process, for the listener's error callback
 * (whose argument is evhttp's). */
static struct metrics_server *the_server;

static const char *const spool_states[] = { "incoming", "queue", "deferred", "hold",
					     "quarantine", "corrupt" };

/* Entries of spool_dir/name (not starting with '.'); -1 if unreadable. */
static long count_folder(const char *spool_dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", spool_dir, name);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	long n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* The parent pid and resident bytes of pid; false if it is gone. */
static bool proc_info(int pid, int *ppid_r, uint64_t *rss_r)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold anything, so after the last ')' */
	char *p = strrchr(buf, ')');
	char state;
	if (p == NULL || sscanf(p + 1, " %c %d", &state, ppid_r) != 2)
		return false;
	*rss_r = 0;
	snprintf(path, sizeof(path), "/proc/%d/statm", pid);
	f = fopen(path, "re");
	if (f != NULL) {
		unsigned long long size, resident;
		if (fscanf(f, "%llu %llu", &size, &resident) == 2)
			*rss_r = resident * (uint64_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
	return true;
}

/* Is pid the supervisor or one of its descendants (roles are at most
 * three forks down)? A pid reused by another program is not. */
static bool ours(int pid, pid_t supervisor, uint64_t *rss_r)
{
	int ppid;
	if (!proc_info(pid, &ppid, rss_r))
		return false;
	for (int depth = 0; depth < 4; depth++) {
		if (pid == supervisor || ppid == supervisor)
			return true;
		uint64_t ignored;
		pid = ppid;
		if (pid <= 1 || !proc_info(pid, &ppid, &ignored))
			return false;
	}
	return false;
}

struct role_total {
	char role[METRICS_ROLE_MAX];
	uint64_t processes, rss;
};

/* The total of role, added if new; past ROLES_MAX roles, "other". */
static struct role_total *role_slot(struct role_total *roles, size_t *count, const char *role)
{
	for (size_t r = 0; r < *count; r++)
		if (strcmp(roles[r].role, role) == 0)
			return &roles[r];
	if (*count >= ROLES_MAX)
		role = "other";
	for (size_t r = ROLES_MAX; r < *count; r++)
		if (strcmp(roles[r].role, role) == 0)
			return &roles[r];
	struct role_total *t = &roles[(*count)++];
	snprintf(t->role, sizeof(t->role), "%s", role);
	t->processes = t->rss = 0;
	return t;
}

static void render_processes(struct evbuffer *out, pid_t supervisor)
{
	struct role_total roles[ROLES_MAX + 1];
	size_t role_count = 0;
	for (size_t i = 0; i < METRICS_PROCESSES_MAX; i++) {
		int pid;
		char role[METRICS_ROLE_MAX];
		uint64_t rss;
		if (!metrics_process(i, &pid, role) || !ours(pid, supervisor, &rss))
			continue;
		struct role_total *t = role_slot(roles, &role_count, role);
		t->processes++;
		t->rss += rss;
	}
	evbuffer_add_printf(out, "# HELP postern_processes Processes of postern serve by role\n"
				 "# TYPE postern_processes gauge\n");
	for (size_t r = 0; r < role_count; r++)
		evbuffer_add_printf(out, "postern_processes{role=\"%s\"} %" PRIu64 "\n",
				    roles[r].role, roles[r].processes);
	evbuffer_add_printf(out, "# HELP postern_resident_memory_bytes Resident memory of the "
				 "processes of each role, summed\n"
				 "# TYPE postern_resident_memory_bytes gauge\n");
	for (size_t r = 0; r < role_count; r++)
		evbuffer_add_printf(out, "postern_resident_memory_bytes{role=\"%s\"} %" PRIu64 "\n",
				    roles[r].role, roles[r].rss);
}

static void render_queue(struct evbuffer *out, const char *spool_dir)
{
	evbuffer_add_printf(out, "# HELP postern_queue_messages Files in each spool folder "
				 "(docs/queue.md)\n# TYPE postern_queue_messages gauge\n");
	for (size_t i = 0; i < sizeof(spool_states) / sizeof(spool_states[0]); i++) {
		long n = count_folder(spool_dir, spool_states[i]);
		if (n >= 0)
			evbuffer_add_printf(out, "postern_queue_messages{state=\"%s\"} %ld\n",
					    spool_states[i], n);
	}
}

static void render_counters(struct evbuffer *out)
{
	for (size_t i = 0; i < METRIC_COUNTER_COUNT; i++) {
		const struct metrics_def *d = &metrics_counter_defs[i];
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n",
				    d->name, d->help, d->name, d->name,
				    metrics_counter_value((enum metric_counter)i));
	}
}

/* Label values are stored reduced to [A-Za-z0-9_.:@-]: nothing to escape. */
static void render_families(struct evbuffer *out)
{
	for (size_t f = 0; f < METRIC_FAMILY_COUNT; f++) {
		const struct metrics_def *d = &metrics_family_defs[f];
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n", d->name, d->help,
				    d->name);
		for (size_t i = 0; i < METRICS_SERIES_MAX; i++) {
			enum metric_family family;
			char key[METRICS_SERIES_KEY_MAX];
			size_t nvalues;
			uint64_t value;
			if (!metrics_series(i, &family, key, &nvalues, &value) || family != f)
				continue;
			evbuffer_add_printf(out, "%s{", d->name);
			const char *v = key;
			for (size_t l = 0; l < nvalues && l < METRICS_LABELS_MAX && d->labels[l]; l++) {
				evbuffer_add_printf(out, "%s%s=\"%s\"", l > 0 ? "," : "", d->labels[l], v);
				v += strlen(v) + 1;
			}
			evbuffer_add_printf(out, "} %" PRIu64 "\n", value);
		}
	}
	evbuffer_add_printf(out, "# HELP postern_metrics_series_dropped_total Additions to "
				 "labelled counters lost because the series table was full\n"
				 "# TYPE postern_metrics_series_dropped_total counter\n"
				 "postern_metrics_series_dropped_total %" PRIu64 "\n",
			    metrics_series_dropped());
}

static void render_histograms(struct evbuffer *out)
{
	for (size_t h = 0; h < METRIC_HISTOGRAM_COUNT; h++) {
		const struct metrics_def *d = &metrics_histogram_defs[h];
		uint64_t buckets[METRICS_BUCKET_COUNT + 1], count, sum_us, cumulative = 0;
		metrics_histogram((enum metric_histogram)h, buckets, &count, &sum_us);
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", d->name, d->help,
				    d->name);
		for (size_t b = 0; b < METRICS_BUCKET_COUNT; b++) {
			cumulative += buckets[b];
			evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", d->name,
					    (double)metrics_bucket_us[b] / 1e6, cumulative);
		}
		/* The count is the buckets' sum, so that +Inf and _count agree
		 * even while other processes add. */
		cumulative += buckets[METRICS_BUCKET_COUNT];
		evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n"
					 "%s_count %" PRIu64 "\n",
				    d->name, cumulative, d->name, (double)sum_us / 1e6, d->name,
				    cumulative);
	}
}

void metrics_render(struct evbuffer *out, const char *spool_dir, pid_t supervisor)
{
	render_counters(out);
	render_families(out);
	render_histograms(out);
	render_queue(out, spool_dir);
	render_processes(out, supervisor);
}

static void reply_error(struct evhttp_request *req, int code, const char *reason)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(headers, "Connection", "close");
	if (code == 405)
		evhttp_add_header(headers, "Allow", "GET, HEAD");
	struct evbuffer *body = evbuffer_new();
	if (body != NULL)
		evbuffer_add_printf(body, "%d %s: only GET /metrics is served here\n", code, reason);
	evhttp_send_reply(req, code, reason, body);
	if (body != NULL)
		evbuffer_free(body);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics_server *ms = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		reply_error(req, 404, "Not Found");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		reply_error(req, 405, "Method Not Allowed");
		return;
	}
	struct evbuffer *body = evbuffer_new();
	if (body == NULL) {
		reply_error(req, 503, "Service Unavailable");
		return;
	}
	metrics_render(body, ms->cfg->spool_dir, ms->supervisor);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(headers, "Connection", "close");
	evhttp_send_reply(req, 200, "OK", body);
	evbuffer_free(body);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct metrics_server *ms = arg;
	evconnlistener_enable(ms->listener);
}

/* Out of descriptors: pause accepting for a second instead of spinning. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)arg; /* evhttp's, not ours */
	struct metrics_server *ms = the_server;
	int err = EVUTIL_SOCKET_ERROR();
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return;
	evconnlistener_disable(l);
	struct timeval second = { 1, 0 };
	evtimer_add(ms->accept_retry, &second);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(((struct metrics_server *)arg)->base, NULL);
}

int metrics_role_main(const struct config *cfg, int listen_fd, pid_t supervisor)
{
	struct metrics_server ms = { .cfg = cfg, .supervisor = supervisor };
	struct rlimit nofile = { METRICS_MAX_FDS, METRICS_MAX_FDS };
	signal(SIGPIPE, SIG_IGN);
	if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
		log_warn("metrics: cannot lower the descriptor limit: %s", strerror(errno));
	ms.base = event_base_new();
	ms.http = ms.base != NULL ? evhttp_new(ms.base) : NULL;
	if (ms.http == NULL)
		log_fatal("metrics: cannot create the HTTP server");
	evhttp_set_max_headers_size(ms.http, METRICS_HEADERS_MAX);
	evhttp_set_max_body_size(ms.http, 0);
	evhttp_set_timeout(ms.http, METRICS_REQUEST_SECONDS);
	/* Every method evhttp knows reaches request_cb, which answers 405
	 * (evhttp's own refusal of a method would be 501). */
	evhttp_set_allowed_methods(ms.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
						    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(ms.http, request_cb, &ms);
	struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(ms.http, listen_fd);
	if (bound == NULL)
		log_fatal("metrics: cannot listen on the inherited socket");
	ms.listener = evhttp_bound_socket_get_listener(bound);
	the_server = &ms;
	ms.accept_retry = evtimer_new(ms.base, accept_retry_cb, &ms);
	evconnlistener_set_error_cb(ms.listener, accept_error_cb);
	struct event *term = evsignal_new(ms.base, SIGTERM, stop_cb, &ms);
	struct event *intr = evsignal_new(ms.base, SIGINT, stop_cb, &ms);
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	log_info("metrics: serving GET /metrics");
	event_base_dispatch(ms.base);
	sigprocmask(SIG_BLOCK, &set, NULL);
	event_free(term);
	event_free(intr);
	event_free(ms.accept_retry);
	evhttp_free(ms.http);
	event_base_free(ms.base);
	return 0;
}
