/*
 * master.c - the supervisor of "postern serve" (see server.h). The only
 * code that may run as root: it binds the listeners, reads the tables and
 * the TLS key, prepares the spool, forks the roles (which drop privileges
 * at once), restarts a role that dies, and handles SIGTERM (graceful
 * drain), SIGINT (the same) and SIGHUP (reload: a new generation starts,
 * the old smtp workers get SIGUSR2 and retire once their sessions end).
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "../queue/qmgr.h"
#include "../queue/queue.h"
#include "../smtp/tls.h"

#define MAX_CHILDREN 512
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
	struct recipient_tables *rcpt;
	SSL_CTX *tls_ctx;
};

struct master {
	const char *config_path;
	int *listen_fds;
	size_t listen_count;
	int notify_pipe[2];
	struct generation *current;
	struct child children[MAX_CHILDREN];
	size_t child_count;
	bool stopping;
	sigset_t old_mask;
};

static void generation_free(struct generation **gp)
{
	struct generation *g = *gp;
	if (g == NULL)
		return;
	config_free(&g->cfg);
	recipients_free(&g->rcpt);
	if (g->tls_ctx != NULL)
		SSL_CTX_free(g->tls_ctx);
	xfree(gp);
}

/* Read config, tables and TLS key; NULL after printing the problems. */
static struct generation *generation_load(const char *path, unsigned number)
{
	struct generation *g = xcalloc(1, sizeof(*g));
	g->number = number;
	if (config_load(path, &g->cfg, stderr) < 0) {
		free(g);
		return NULL;
	}
	g->rcpt = recipients_load(g->cfg.users_file, g->cfg.aliases_file, stderr);
	if (g->rcpt == NULL) {
		generation_free(&g);
		return NULL;
	}
	if (g->cfg.tls_cert[0] != '\0') {
		char *err = NULL;
		g->tls_ctx = tls_server_context(g->cfg.tls_cert, g->cfg.tls_key, &err);
		if (g->tls_ctx == NULL) {
			fprintf(stderr, "%s: %s\n", path, err);
			free(err);
			generation_free(&g);
			return NULL;
		}
	}
	return g;
}

int privileges_drop(const struct config *cfg)
{
	if (getuid() != 0 || cfg->user[0] == '\0')
		return 0;
	struct passwd *pw = getpwnam(cfg->user);
	if (pw == NULL) {
		fprintf(stderr, "postern: user \"%s\" does not exist\n", cfg->user);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "postern: cannot become user %s: %s\n", cfg->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		fprintf(stderr, "postern: could regain root after dropping privileges\n");
		return -1;
	}
	return 0;
}

/* Create spool and mail_root, owned by the unprivileged user when root. */
static int prepare_dirs(const struct config *cfg)
{
	char *err = NULL;
	if (mkdir_p(cfg->spool_dir, 0700) < 0 || mkdir_p(cfg->mail_root, 0700) < 0) {
		log_error("cannot create %s or %s: %s", cfg->spool_dir, cfg->mail_root, strerror(errno));
		return -1;
	}
	if (getuid() == 0 && cfg->user[0] != '\0') {
		struct passwd *pw = getpwnam(cfg->user);
		if (pw == NULL) {
			log_error("user \"%s\" does not exist (create it, or set user =)", cfg->user);
			return -1;
		}
		if (chown(cfg->spool_dir, pw->pw_uid, pw->pw_gid) < 0 ||
		    chown(cfg->mail_root, pw->pw_uid, pw->pw_gid) < 0) {
			log_error("cannot chown spool or mail_root: %s", strerror(errno));
			return -1;
		}
	}
	/* The queue subdirectories are made by the unprivileged roles'
	 * owner: create them here and hand them over too. */
	if (queue_dirs_create(cfg->spool_dir, &err) < 0) {
		log_error("spool %s: %s", cfg->spool_dir, err);
		free(err);
		return -1;
	}
	if (getuid() == 0 && cfg->user[0] != '\0') {
		struct passwd *pw = getpwnam(cfg->user);
		static const char *const subdirs[] = { "incoming", "queue", "deferred", "hold",
						       "quarantine", "corrupt", NULL };
		for (const char *const *d = subdirs; *d != NULL; d++) {
			char *p = path_join(cfg->spool_dir, *d);
			if (chown(p, pw->pw_uid, pw->pw_gid) < 0 && errno != ENOENT)
				log_warn("cannot chown %s: %s", p, strerror(errno));
			free(p);
		}
	}
	return 0;
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

static int open_notify_pipe(struct master *m)
{
	if (pipe2(m->notify_pipe, O_CLOEXEC) < 0)
		return -1;
	fcntl(m->notify_pipe[1], F_SETFL, O_NONBLOCK);
	fcntl(m->notify_pipe[0], F_SETFL, O_NONBLOCK);
	/* Room for ~32k notifications; a full pipe only delays to the scan. */
	fcntl(m->notify_pipe[1], F_SETPIPE_SZ, 1024 * 1024);
	return 0;
}

/* Thousands of sessions per worker need as many descriptors: raise the
 * soft limit to the hard one and say so if that is still too low. */
static void raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < cfg->worker_connections + 64)
		log_warn("open file limit %llu is below worker_connections %llu",
			 (unsigned long long)rl.rlim_cur,
			 (unsigned long long)cfg->worker_connections);
}

static size_t worker_count(const struct config *cfg)
{
	if (cfg->workers != 0)
		return (size_t)cfg->workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (size_t)n : 1;
}

/* In the child: become the role. Never returns. */
static NORETURN void run_role(struct master *m, enum role role)
{
	struct generation *g = m->current;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigprocmask(SIG_SETMASK, &m->old_mask, NULL);
	if (privileges_drop(&g->cfg) < 0)
		_exit(1);
	int rc;
	if (role == ROLE_QMGR) {
		log_set_role("qmgr");
		for (size_t i = 0; i < m->listen_count; i++)
			close(m->listen_fds[i]);
		close(m->notify_pipe[1]);
		rc = qmgr_main(&g->cfg, g->rcpt, m->notify_pipe[0]);
	} else {
		log_set_role("smtp");
		close(m->notify_pipe[0]);
		rc = smtp_worker_main(&g->cfg, g->rcpt, g->tls_ctx, m->listen_fds,
				      m->listen_count, m->notify_pipe[1]);
	}
	_exit(rc);
}

static void spawn(struct master *m, enum role role)
{
	if (m->child_count >= MAX_CHILDREN) {
		log_error("too many child processes, not starting another");
		return;
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
	if (prepare_dirs(&g->cfg) < 0) {
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
		struct timespec tick = { 1, 0 };
		int sig = sigtimedwait(&set, NULL, &tick);
		reap_children(m);
		if (sig == SIGTERM || sig == SIGINT) {
			if (!m->stopping) {
				log_info("signal %d: stopping, draining sessions", sig);
				m->stopping = true;
				stop_deadline = time(NULL) + (time_t)m->current->cfg.shutdown_timeout + 5;
				close_listeners(m);
				signal_children(m, SIGTERM);
			}
		} else if (sig == SIGHUP && !m->stopping) {
			reload(m);
		}
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
	struct master m = { .config_path = config_path };
	sigset_t set;
	log_set_role("master");
	m.current = generation_load(config_path, 1);
	if (m.current == NULL)
		return 1;
	log_set_level(m.current->cfg.log_level);
	raise_fd_limit(&m.current->cfg);
	if (prepare_dirs(&m.current->cfg) < 0 || bind_listeners(&m) < 0 ||
	    open_notify_pipe(&m) < 0) {
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
	log_info("postern starting: hostname=%s users=%zu aliases=%zu workers=%zu tls=%s",
		 m.current->cfg.hostname, recipients_user_count(m.current->rcpt),
		 recipients_alias_count(m.current->rcpt), worker_count(&m.current->cfg),
		 m.current->tls_ctx != NULL ? "yes" : "no");
	spawn_generation(&m);
	int rc = supervise(&m);
	close_listeners(&m);
	free(m.listen_fds);
	generation_free(&m.current);
	log_info("postern stopped");
	return rc;
}
