/*
 * master.c - the supervisor of "postern serve" (see server.h). The only
 * code that may run as root: it binds the listeners, reads the tables and
 * the TLS key, creates spool_dir and mail_root, checks as each role's
 * account that the role can work (preflight.c), forks the roles (which
 * switch accounts at once, privsep.c), restarts a role that dies, and
 * handles SIGTERM (graceful drain), SIGINT (the same) and SIGHUP (reload:
 * a new generation starts, the old smtp workers get SIGUSR2 and retire
 * once their sessions end).
 *
 * RFCs: none. Untrusted input: none is parsed here; the spool and
 * mail_root belong to the roles, so root only creates those two folders
 * and never follows or changes anything inside them. Privilege: root (or
 * the invoking user).
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../queue/local.h"
#include "../queue/qmgr.h"
#include "../smtp/tls.h"
#include "preflight.h"
#include "privsep.h"

/* The table of children starts this big and doubles when full: retiring
 * generations live as long as their sessions, so after many reloads it
 * can hold any number of them. */
#define CHILDREN_INITIAL 16
#define BIND_RETRY_SECONDS 10

enum role { ROLE_SMTP, ROLE_QMGR };

struct child {
	pid_t pid;
	enum role role;
	unsigned generation;
	time_t started;
};

/* Everything one generation of roles is started with. */
struct generation {
	unsigned number;
	struct config cfg;
	struct privsep ps;
	struct recipient_tables *rcpt;
	SSL_CTX *tls_ctx;
	struct notice_template *notice_template; /* notify_template, checked */
};

struct master {
	const char *config_path;
	pid_t pid; /* the supervisor's own, for the children's death signal */
	int *listen_fds;
	size_t listen_count;
	int notify_pipe[2];
	int flow_pipe[2];   /* in-flow tokens: queue manager -> smtp workers */
	struct generation *current;
	struct child *children; /* child_cap entries, child_count used */
	size_t child_count, child_cap;
	bool stopping;
	sigset_t old_mask;
};

static void generation_free(struct generation **gp)
{
	struct generation *g = *gp;
	if (g == NULL)
		return;
	config_free(&g->cfg);
	privsep_free(&g->ps);
	recipients_free(&g->rcpt);
	notice_template_free(&g->notice_template);
	if (g->tls_ctx != NULL)
		SSL_CTX_free(g->tls_ctx);
	xfree(gp);
}

/*
 * The checks of the configuration, the accounts, the tables and the
 * folders write what they find to a FILE, one line each, which
 * check-config prints as it is. Serving, the lines are collected and then
 * logged like everything else (time, role, level): "warning: " lines as
 * warnings, the others as errors.
 */
struct findings {
	FILE *out; /* where the checks write */
	char *text;
	size_t len;
};

static void findings_open(struct findings *f)
{
	f->text = NULL;
	f->len = 0;
	f->out = open_memstream(&f->text, &f->len);
	if (f->out == NULL)
		f->out = stderr; /* no memory for a buffer: print them as they come */
}

static void findings_log(struct findings *f)
{
	static const char warning[] = "warning: ";

	if (f->out == stderr)
		return;
	fclose(f->out);
	for (char *line = f->text, *nl; line != NULL && *line != '\0'; line = nl) {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl++ = '\0';
		if (strncmp(line, warning, sizeof(warning) - 1) == 0)
			log_warn("%s", line + sizeof(warning) - 1);
		else if (*line != '\0')
			log_error("%s", line);
	}
	free(f->text);
	f->out = NULL;
}

/* Read config, accounts, tables and TLS key, reporting to errors; NULL
 * if there was a problem. */
static struct generation *generation_read(const char *path, unsigned number, FILE *errors)
{
	struct generation *g = xcalloc(1, sizeof(*g));
	struct recipients_owner owner;
	g->number = number;
	if (config_load(path, &g->cfg, errors) < 0) {
		free(g);
		return NULL;
	}
	if (config_check_server_files(&g->cfg, errors) > 0) {
		generation_free(&g);
		return NULL;
	}
	if (privsep_resolve(&g->cfg, &g->ps, errors) > 0) {
		generation_free(&g);
		return NULL;
	}
	g->rcpt = recipients_load(g->cfg.users_file, g->cfg.aliases_file,
				  privsep_mailbox_owner(&g->ps, &owner), errors);
	if (g->rcpt == NULL) {
		generation_free(&g);
		return NULL;
	}
	g->notice_template = notice_template_load(g->cfg.notify_template, errors);
	if (g->notice_template == NULL) {
		generation_free(&g);
		return NULL;
	}
	if (g->cfg.tls_cert[0] != '\0') {
		char *err = NULL;
		g->tls_ctx = tls_server_context(g->cfg.tls_cert, g->cfg.tls_key, &err);
		if (g->tls_ctx == NULL) {
			fprintf(errors, "%s: %s\n", path, err);
			free(err);
			generation_free(&g);
			return NULL;
		}
	}
	return g;
}

/* generation_read, its findings logged; NULL if there was a problem. */
static struct generation *generation_load(const char *path, unsigned number)
{
	struct findings f;
	findings_open(&f);
	struct generation *g = generation_read(path, number, f.out);
	findings_log(&f);
	return g;
}

/* Before a generation starts: the descriptor limit, spool_dir and
 * mail_root, and every folder each role needs, checked as its account;
 * the findings are logged. */
static int generation_check(const struct generation *g)
{
	struct findings f;
	findings_open(&f);
	int problems = preflight_fd_limit(&g->cfg, true, f.out) < 0;

	problems += preflight_make_roots(&g->cfg, &g->ps, f.out);
	if (problems == 0)
		problems += preflight_check_folders(&g->cfg, &g->ps, true, f.out);
	findings_log(&f);
	return problems == 0 ? 0 : -1;
}

static int bind_one(const struct listen_addr *la)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	int rc = getaddrinfo(la->host, la->port, &hints, &ai);
	if (rc != 0) {
		log_error("listen %s: %s", la->text, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		for (int tries = 0; bind(fd, ai->ai_addr, ai->ai_addrlen) < 0; tries++) {
			/* A drained generation may still hold the port briefly
			 * (for instance after the supervisor was killed). */
			if (errno != EADDRINUSE || tries >= BIND_RETRY_SECONDS * 10) {
				log_error("bind %s: %s", la->text, strerror(errno));
				close(fd);
				fd = -1;
				break;
			}
			usleep(100000);
		}
	}
	if (fd >= 0 && listen(fd, 1024) < 0) {
		log_error("listen %s: %s", la->text, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static int bind_listeners(struct master *m)
{
	const struct config *cfg = &m->current->cfg;
	m->listen_fds = xcalloc(cfg->listen_count, sizeof(int));
	for (size_t i = 0; i < cfg->listen_count; i++) {
		m->listen_fds[i] = bind_one(&cfg->listen[i]);
		if (m->listen_fds[i] < 0)
			return -1;
		m->listen_count++;
		log_info("listening on %s", cfg->listen[i].text);
	}
	return 0;
}

static int open_pipes(struct master *m)
{
	if (pipe2(m->notify_pipe, O_CLOEXEC) < 0 || pipe2(m->flow_pipe, O_CLOEXEC) < 0) {
		log_error("pipe: %s", strerror(errno));
		return -1;
	}
	fcntl(m->notify_pipe[1], F_SETFL, O_NONBLOCK);
	fcntl(m->notify_pipe[0], F_SETFL, O_NONBLOCK);
	/* Room for ~32k notifications; a full pipe only delays to the scan. */
	fcntl(m->notify_pipe[1], F_SETPIPE_SZ, 1024 * 1024);
	/* The flow tokens: the workers read without blocking, the queue
	 * manager writes without blocking (a full pipe holds tokens enough).
	 * The supervisor keeps both ends, so the pipe outlives every role
	 * and its tokens survive a restart of the queue manager, which tops
	 * it up to in_flow_tokens (at most 100000, one byte each). */
	fcntl(m->flow_pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(m->flow_pipe[1], F_SETFL, O_NONBLOCK);
	if (fcntl(m->flow_pipe[1], F_SETPIPE_SZ, 1024 * 1024) < 0)
		log_warn("flow pipe: cannot enlarge it: %s", strerror(errno));
	return 0;
}

static size_t worker_count(const struct config *cfg)
{
	if (cfg->workers != 0)
		return (size_t)cfg->workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (size_t)n : 1;
}

/* In a new agent: keep only its own end of its socket pair. */
static NORETURN void run_agent(struct master *m, const struct qmgr_agent *earlier,
			       size_t earlier_count, int sock, pid_t qmgr_pid)
{
	struct generation *g = m->current;

	log_set_role("local");
	for (size_t i = 0; i < earlier_count; i++)
		close(earlier[i].fd); /* the other lanes' queue manager ends */
	close(m->notify_pipe[0]);
	close(m->flow_pipe[1]);
	/* Driven by its queue manager: it stops when that one does. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (privsep_become(&g->ps, &g->ps.mail_owner, SIGKILL, qmgr_pid) < 0)
		_exit(1);
	_exit(local_main(&g->cfg, g->rcpt, sock));
}

static NORETURN void kill_agents_and_exit(const struct qmgr_agent *agents, size_t count)
{
	for (size_t i = 0; i < count; i++)
		kill(agents[i].pid, SIGKILL);
	_exit(1);
}

/* The queue manager and its delivery_lanes local delivery agents. Still
 * root here: for each lane make a socket pair and fork the agent (it
 * becomes mail_owner), then become user and run the queue manager with
 * the other ends. */
static NORETURN void run_qmgr_and_agents(struct master *m)
{
	struct generation *g = m->current;
	size_t lanes = g->cfg.delivery_lanes > 0 ? (size_t)g->cfg.delivery_lanes : 1;
	struct qmgr_agent *agents = xcalloc(lanes, sizeof(*agents));

	log_set_role("qmgr");
	for (size_t i = 0; i < m->listen_count; i++)
		close(m->listen_fds[i]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	if (g->tls_ctx != NULL)
		SSL_CTX_free(g->tls_ctx); /* neither process needs the key */
	g->tls_ctx = NULL;
	pid_t qmgr_pid = getpid();
	for (size_t i = 0; i < lanes; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			log_error("local delivery agent: socketpair: %s", strerror(errno));
			kill_agents_and_exit(agents, i);
		}
		pid_t agent = fork();
		if (agent == 0) {
			close(sv[0]);
			run_agent(m, agents, i, sv[1], qmgr_pid);
		}
		close(sv[1]);
		if (agent < 0) {
			log_error("local delivery agent: fork: %s", strerror(errno));
			close(sv[0]);
			kill_agents_and_exit(agents, i);
		}
		agents[i].fd = sv[0];
		agents[i].pid = agent;
	}
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		kill_agents_and_exit(agents, lanes);
	struct qmgr_links links = { .notify_fd = m->notify_pipe[0], .flow_fd = m->flow_pipe[1],
				    .agents = agents, .agent_count = lanes };
	_exit(qmgr_run(&g->cfg, g->rcpt, &links));
}

/* In the child: become the role. Never returns. The stop signals
 * (SIGTERM, SIGINT, and the smtp workers' SIGUSR2) stay blocked until the
 * role has its handlers: one sent in between waits instead of killing it,
 * which the supervisor would log as a crash. */
static NORETURN void run_role(struct master *m, enum role role)
{
	struct generation *g = m->current;
	sigset_t mask = m->old_mask;
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_SETMASK, &mask, NULL);
	if (role == ROLE_QMGR)
		run_qmgr_and_agents(m);
	log_set_role("smtp");
	close(m->notify_pipe[0]);
	close(m->flow_pipe[1]);
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	struct smtp_worker_links links = { .listen_fds = m->listen_fds,
					   .listen_count = m->listen_count,
					   .notify_fd = m->notify_pipe[1],
					   .flow_fd = m->flow_pipe[0],
					   .notice_template = g->notice_template };
	_exit(smtp_worker_main(&g->cfg, g->rcpt, g->tls_ctx, &links));
}

static void spawn(struct master *m, enum role role)
{
	if (m->child_count == m->child_cap) {
		m->child_cap = m->child_cap != 0 ? m->child_cap * 2 : CHILDREN_INITIAL;
		m->children = xreallocarray(m->children, m->child_cap, sizeof(*m->children));
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0)
		run_role(m, role);
	struct child *c = &m->children[m->child_count++];
	c->pid = pid;
	c->role = role;
	c->generation = m->current->number;
	c->started = time(NULL);
}

static void spawn_generation(struct master *m)
{
	spawn(m, ROLE_QMGR);
	size_t n = worker_count(&m->current->cfg);
	for (size_t i = 0; i < n; i++)
		spawn(m, ROLE_SMTP);
}

static void signal_children(struct master *m, int sig)
{
	for (size_t i = 0; i < m->child_count; i++)
		kill(m->children[i].pid, sig);
}

static void reap_children(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < m->child_count; i++) {
			struct child c = m->children[i];
			if (c.pid != pid)
				continue;
			m->children[i] = m->children[--m->child_count];
			bool current = c.generation == m->current->number;
			const char *name = c.role == ROLE_QMGR ? "queue manager" : "smtp worker";
			if (WIFSIGNALED(status))
				log_warn("%s pid %d killed by signal %d", name, (int)pid, WTERMSIG(status));
			else if (WEXITSTATUS(status) != 0 || (current && !m->stopping))
				log_warn("%s pid %d exited with status %d", name, (int)pid,
					 WEXITSTATUS(status));
			if (current && !m->stopping) {
				if (time(NULL) - c.started < 2)
					sleep(1); /* do not spin on a role that cannot start */
				spawn(m, c.role);
			}
			break;
		}
	}
}

static bool same_listeners(const struct config *a, const struct config *b)
{
	if (a->listen_count != b->listen_count)
		return false;
	for (size_t i = 0; i < a->listen_count; i++)
		if (strcmp(a->listen[i].text, b->listen[i].text) != 0)
			return false;
	return true;
}

static void reload(struct master *m)
{
	struct generation *g = generation_load(m->config_path, m->current->number + 1);
	if (g == NULL) {
		log_error("reload: configuration has errors, keeping the running one");
		return;
	}
	if (generation_check(g) < 0) {
		log_error("reload: the new configuration cannot work, keeping the running one");
		generation_free(&g);
		return;
	}
	if (!same_listeners(&m->current->cfg, &g->cfg))
		log_warn("reload: listen changed; keeping the bound sockets until a restart");
	log_info("reload: %zu users, %zu aliases; starting generation %u",
		 recipients_user_count(g->rcpt), recipients_alias_count(g->rcpt), g->number);
	generation_free(&m->current);
	m->current = g;
	log_set_level(g->cfg.log_level);
	spawn_generation(m);
	/* The old smtp workers retire (their sessions go on); the old queue
	 * manager stops after its delivery, the new one takes the lock. */
	for (size_t i = 0; i < m->child_count; i++)
		if (m->children[i].generation != m->current->number)
			kill(m->children[i].pid,
			     m->children[i].role == ROLE_SMTP ? SIGUSR2 : SIGTERM);
}

/* Stopping: no role will be started again, so the supervisor's copies
 * of the listening sockets go now. Once the workers close theirs too the
 * kernel refuses new connections instead of completing handshakes that
 * nobody will ever greet. */
static void close_listeners(struct master *m)
{
	for (size_t i = 0; i < m->listen_count; i++)
		close(m->listen_fds[i]);
	m->listen_count = 0;
}

/* Signals taken in one turn of the supervisor's loop. */
struct taken_signals {
	int stop; /* SIGTERM or SIGINT, 0 if none */
	bool reload;
};

/* Wait up to a second for a signal, then take every other one pending. */
static struct taken_signals take_signals(const sigset_t *set)
{
	struct taken_signals t = { 0, false };
	struct timespec tick = { 1, 0 }, now = { 0, 0 };
	for (int sig = sigtimedwait(set, NULL, &tick); sig > 0;
	     sig = sigtimedwait(set, NULL, &now)) {
		if ((sig == SIGTERM || sig == SIGINT) && t.stop == 0)
			t.stop = sig;
		else if (sig == SIGHUP)
			t.reload = true;
	}
	return t;
}

/*
 * The loop: a stop is acted on before the children are reaped. A SIGINT
 * to the whole process group (Ctrl-C) reaches the roles too, and a role
 * that has already exited because of it raises SIGCHLD; reaped before the
 * stop is known, that exit would look like a crash, be logged and the role
 * started again in the middle of the stop.
 */
static int supervise(struct master *m)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	time_t stop_deadline = 0;
	for (;;) {
		struct taken_signals t = take_signals(&set);
		if (t.stop != 0 && !m->stopping) {
			log_info("signal %d: stopping, draining sessions", t.stop);
			m->stopping = true;
			stop_deadline = time(NULL) + (time_t)m->current->cfg.shutdown_timeout + 5;
			close_listeners(m);
			signal_children(m, SIGTERM);
		}
		reap_children(m);
		if (t.reload && !m->stopping)
			reload(m);
		if (m->stopping && m->child_count == 0)
			return 0;
		if (m->stopping && time(NULL) > stop_deadline) {
			log_warn("children did not stop in time, killing them");
			signal_children(m, SIGKILL);
			stop_deadline = time(NULL) + 5;
		}
	}
}

int master_main(const char *config_path)
{
	struct master m = { .config_path = config_path, .pid = getpid() };
	sigset_t set;
	log_set_role("master");
	m.current = generation_load(config_path, 1);
	if (m.current == NULL)
		return 1;
	log_set_level(m.current->cfg.log_level);
	if (generation_check(m.current) < 0) {
		log_error("postern cannot work with this configuration: not starting");
		generation_free(&m.current);
		return 1;
	}
	log_info("postern starting: hostname=%s users=%zu aliases=%zu workers=%zu tls=%s "
		 "user=%s mail_owner=%s", m.current->cfg.hostname,
		 recipients_user_count(m.current->rcpt), recipients_alias_count(m.current->rcpt),
		 worker_count(&m.current->cfg), m.current->tls_ctx != NULL ? "yes" : "no",
		 m.current->ps.user.name, m.current->ps.mail_owner.name);
	if (bind_listeners(&m) < 0 || open_pipes(&m) < 0) {
		generation_free(&m.current);
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, &m.old_mask);
	signal(SIGPIPE, SIG_IGN);
	spawn_generation(&m);
	int rc = supervise(&m);
	close_listeners(&m);
	free(m.listen_fds);
	free(m.children);
	generation_free(&m.current);
	log_info("postern stopped");
	return rc;
}
