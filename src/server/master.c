/*
 * master.c - the supervisor of "postern serve" (see server.h). The only
 * code that may run as root: it binds the listeners, reads the tables,
 * checks the TLS key in a child that exits, creates spool_dir and
 * mail_root, checks as each role's account that the role can work
 * (preflight.c), forks the roles (which switch accounts at once,
 * privsep.c), restarts a role that dies, and
 * handles SIGTERM (graceful drain), SIGINT (the same) and SIGHUP (reload:
 * a new generation starts, the old smtp workers get SIGUSR2 and retire
 * once their sessions end). A change of users_file, aliases_file or
 * domains_file (table_watch.c, looked at every second) reloads too.
 *
 * Content scanning: a generation whose configuration may scan starts with
 * its scan master alone, which builds the pipeline (rules compiled,
 * signatures loaded) and says on a pipe whether there is anything to scan;
 * only then do its queue manager and smtp workers start (told whether to
 * ask the scan master) and, on a reload, the old generation retire. A scan
 * master that cannot build its pipeline exits SCAN_EXIT_CONFIG: at start
 * postern does not start, on a reload the running generation stays, as for
 * a configuration with errors.
 *
 * The anvil (anvil.c), which counts sessions, rates and greylisting for
 * all smtp workers, is one process for the supervisor's whole life: it
 * starts before the first generation, is started again if it dies, and
 * is not retired by reloads.
 *
 * The key holder (keyholder.c) of a generation with TLS starts before its
 * workers and is started again if it dies while current; it is not sent
 * the reload's SIGUSR2 but stopped (stop_idle_keyholders) once its
 * generation is no longer current and its last worker has exited, and on
 * a stop only after the draining workers.
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
#include "../dns/dns.h"
#include "../mail/domains.h"
#include "../milter/milter_client.h"
#include "../policy/dnsbl.h"
#include "../queue/local.h"
#include "../policy/restrictions.h"
#include "../queue/qmgr.h"
#include "../pop3/pop3.h"
#include "../auth/auth_ticket.h"
#include "../queue/quota_reader.h"
#include "../relay/relay.h"
#include "../relay/relay_route.h"
#include "../smtp/keyholder_proto.h"
#include "../smtp/tls.h"
#include "../smtp/keyholder_key.h"
#include "../lib/metrics.h"
#include "auth_role.h"
#include "log_writer.h"
#include "metrics_role.h"
#include "capture_dir.h"
#include "preflight.h"
#include "privsep.h"
#include "table_watch.h"
#include "../milter/milter_server.h"
#include <poll.h>

/* The table of children starts this big and doubles when full: retiring
 * generations live as long as their sessions, so after many reloads it
 * can hold any number of them. */
#define CHILDREN_INITIAL 16
#define BIND_RETRY_SECONDS 10

/* The anvil has no generation: it is started once and kept over reloads
 * (its counts must outlive them); its children-table entry says
 * ANVIL_GENERATION. */
enum role { ROLE_SMTP, ROLE_QMGR, ROLE_SCAN, ROLE_ANVIL, ROLE_AUTH, ROLE_KEYHOLDER,
	    ROLE_POP3, ROLE_METRICS, ROLE_MILTER };
#define ANVIL_GENERATION 0u /* also the auth and metrics processes': kept over reloads too */

/* The roles of no generation: started once, kept over reloads. */
static bool role_kept(enum role role)
{
	return role == ROLE_ANVIL || role == ROLE_AUTH || role == ROLE_METRICS;
}

/* A current scan master that exited for good is started again after this
 * long (one that cannot load its files would otherwise spin). */
#define SCAN_RESPAWN_SECONDS 10

struct child {
	pid_t pid;
	enum role role;
	unsigned generation;
	time_t started;
	bool stop_sent; /* a key holder: told to stop, its workers are gone */
};

/* Everything one generation of roles is started with. */
struct generation {
	unsigned number;
	struct config cfg;
	struct privsep ps;
	struct recipient_tables *rcpt;
	bool tls;           /* tls_cert and tls_key checked: its key holder loads the key */
	struct notice_template *notice_template; /* notify_template, checked */
	struct restrictions *restrictions; /* the restriction lists and their maps */
	struct relay_router *router; /* transport_file, relayhost, TLS policy */
	bool scanning;      /* its smtp workers ask the scan master */
	int scan_ready_fd;  /* while its scan master builds: the pipe's read end */
	struct table_watch watch; /* its table files as they were before being read */
};

struct master {
	const char *config_path;
	pid_t pid; /* the supervisor's own, for the children's death signal */
	/* Every listener: the SMTP ones first (smtp_listen_count), then
	 * pop3_listen and pop3s_listen (implicit_tls says which). */
	int *listen_fds;
	enum smtp_listener *listen_kinds; /* what each listening socket is for */
	bool *implicit_tls;
	size_t listen_count;
	size_t smtp_listen_count;
	int notify_pipe[2];
	int flow_pipe[2];   /* in-flow tokens: queue manager -> smtp workers */
	int auth_ctl;       /* to the auth process: the users file and settings, or -1 */
	int metrics_fd;     /* metrics_listen's socket, or -1 */
	struct log_writer log; /* log_to = file */
	struct generation *current;  /* NULL until the first one starts */
	struct generation *pending;  /* waiting for its scan master, or NULL */
	unsigned last_number;        /* of the newest generation read */
	time_t scan_respawn_at;      /* start the current scan master again then; 0: no */
	struct table_watch watch;    /* the newest generation's table files: a change reloads */
	struct child *children; /* child_cap entries, child_count used */
	size_t child_count, child_cap;
	bool stopping;
	bool start_failed;  /* the first generation could not start */
	bool milter;        /* "postern milter": a milter process instead of the mail roles */
	bool milter_listened; /* a milter process has listened: later ones may take over */
	sigset_t old_mask;
};

/* The key of the login tickets (src/auth/auth_ticket.h), drawn at the
 * start and kept until the supervisor stops: a reload keeps it. Every
 * child inherits it by fork; all but the auth process and the pop3
 * role's mailbox agents wipe it at once. A static of its own (not in
 * struct master): test_pop3.py finds it in the supervisor's memory by
 * its symbol, to check that no other process holds it. */
static unsigned char ticket_key[AUTH_TICKET_KEY_LEN];

static void generation_free(struct generation **gp)
{
	struct generation *g = *gp;
	if (g == NULL)
		return;
	if (g->scan_ready_fd >= 0)
		close(g->scan_ready_fd);
	config_free(&g->cfg);
	privsep_free(&g->ps);
	recipients_free(&g->rcpt);
	notice_template_free(&g->notice_template);
	restrictions_free(&g->restrictions);
	relay_router_free(&g->router);
	table_watch_free(&g->watch);
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
	g->scan_ready_fd = -1;
	if (config_load(path, &g->cfg, errors) < 0) {
		free(g);
		return NULL;
	}
	g->scan_ready_fd = -1;
	if (config_check_server_files(&g->cfg, errors) > 0 ||
	    dnsbl_config_check(&g->cfg, errors) > 0 || milter_config_check(&g->cfg, errors) > 0) {
		generation_free(&g);
		return NULL;
	}
	if (privsep_resolve(&g->cfg, &g->ps, errors) > 0) {
		generation_free(&g);
		return NULL;
	}
	table_watch_take(&g->watch, &g->cfg);
	/* domains_file's domains join local_domains before anything reads it */
	struct domain_table *domains = domains_load_config(&g->cfg, errors);
	if (domains == NULL) {
		generation_free(&g);
		return NULL;
	}
	g->rcpt = recipients_load(g->cfg.users_file, g->cfg.aliases_file,
				  privsep_mailbox_owner(&g->ps, &owner), errors);
	if (g->rcpt == NULL) {
		domains_free(&domains);
		generation_free(&g);
		return NULL;
	}
	recipients_set_domains(g->rcpt, domains);
	domains_warn_catch_all(g->rcpt, g->cfg.domains_file, errors);
	g->notice_template = notice_template_load(g->cfg.notify_template, errors);
	if (g->notice_template == NULL) {
		generation_free(&g);
		return NULL;
	}
	g->router = relay_router_load(&g->cfg, errors);
	if (g->router == NULL) {
		generation_free(&g);
		return NULL;
	}
	g->restrictions = restrictions_load(&g->cfg, errors);
	if (g->restrictions == NULL ||
	    (restrictions_need_dns(g->restrictions) && !dnsbl_configured(&g->cfg) &&
	     dns_config_check(&g->cfg, errors) > 0)) {
		generation_free(&g);
		return NULL;
	}
	if (g->cfg.tls_cert[0] != '\0') {
		char *err = NULL;
		if (tls_check_in_child(g->cfg.tls_cert, g->cfg.tls_key, &err) < 0) {
			fprintf(errors, "%s: %s\n", path, err);
			free(err);
			generation_free(&g);
			return NULL;
		}
		g->tls = true;
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
 * (for serve) mail_root, and every folder each role needs, checked as its
 * account; the findings are logged. postern milter never delivers: it
 * neither makes nor checks mail_root. */
static int generation_check(const struct master *m, const struct generation *g)
{
	struct findings f;
	findings_open(&f);
	enum preflight_mode mode = m->milter ? PREFLIGHT_MILTER : PREFLIGHT_SERVE;
	int problems = preflight_fd_limit(&g->cfg, true, f.out) < 0;

	problems += preflight_make_roots(&g->cfg, &g->ps, mode, f.out);
	/* Before the probes, which check as user that it can write there. */
	problems += capture_dir_prepare(&g->cfg, &g->ps, true, f.out);
	if (problems == 0)
		problems += preflight_check_folders(&g->cfg, &g->ps, mode, true, f.out);
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

static int bind_list(struct master *m, const struct listen_addr *addrs, size_t count,
		     enum smtp_listener kind, bool implicit_tls, const char *what)
{
	for (size_t i = 0; i < count; i++) {
		int fd = bind_one(&addrs[i]);
		if (fd < 0)
			return -1;
		m->listen_fds[m->listen_count] = fd;
		m->listen_kinds[m->listen_count] = kind;
		m->implicit_tls[m->listen_count] = implicit_tls;
		m->listen_count++;
		log_info("listening on %s%s", addrs[i].text, what);
	}
	return 0;
}

/* Bind listen, submission_listen and smtps_listen (the smtp workers serve
 * each as its kind), then pop3_listen and pop3s_listen; every other role
 * closes them all (listen_fds). */
static int bind_listeners(struct master *m, const struct config *cfg)
{
	size_t all = cfg->listen_count + cfg->submission_listen_count + cfg->smtps_listen_count +
		     cfg->pop3_listen_count + cfg->pop3s_listen_count;
	m->listen_fds = xcalloc(all, sizeof(int));
	m->listen_kinds = xcalloc(all, sizeof(*m->listen_kinds));
	m->implicit_tls = xcalloc(all, sizeof(bool));
	if (bind_list(m, cfg->listen, cfg->listen_count, SMTP_LISTENER_MX, false, "") < 0 ||
	    bind_list(m, cfg->submission_listen, cfg->submission_listen_count,
		      SMTP_LISTENER_SUBMISSION, false, " (submission)") < 0 ||
	    bind_list(m, cfg->smtps_listen, cfg->smtps_listen_count, SMTP_LISTENER_SMTPS, true,
		      " (smtps)") < 0)
		return -1;
	m->smtp_listen_count = m->listen_count;
	if (bind_list(m, cfg->pop3_listen, cfg->pop3_listen_count, SMTP_LISTENER_MX, false,
		      " (pop3)") < 0 ||
	    bind_list(m, cfg->pop3s_listen, cfg->pop3s_listen_count, SMTP_LISTENER_MX, true,
		      " (pop3s)") < 0)
		return -1;
	return 0;
}

/* Where the lines go from now on (log_to): before any fork, so that
 * every process inherits it. */
static int log_start(struct master *m, const struct generation *g)
{
	const struct config *cfg = &g->cfg;
	if (cfg->log_to == LOG_TO_SYSLOG && log_use_syslog(cfg->syslog_socket,
							   cfg->syslog_facility) < 0) {
		log_error("syslog_socket %s: path too long", cfg->syslog_socket);
		return -1;
	}
	if (cfg->log_to == LOG_TO_FILE)
		return log_writer_start(&m->log, cfg->log_file, &g->ps, &g->ps.user);
	return 0;
}

/* The one place the shared metrics segment is mapped: before any fork,
 * so every process inherits it (src/lib/metrics.h); with metrics_listen,
 * its socket is bound here (as root: any port). */
static int metrics_start(struct master *m, const struct generation *g)
{
	if (metrics_init() < 0)
		log_warn("metrics: cannot map the shared counters: %s", strerror(errno));
	metrics_process_role("master");
	if (g->cfg.metrics_listen_count == 0)
		return 0;
	m->metrics_fd = bind_one(&g->cfg.metrics_listen[0]);
	if (m->metrics_fd < 0)
		return -1;
	log_info("metrics on http://%s/metrics", g->cfg.metrics_listen[0].text);
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

/* In the new relay agent: only its own end of its socket pair; it
 * becomes user (no mailbox, and it never opens the spool). */
static NORETURN void run_relay_agent(struct master *m, const struct qmgr_agent *locals,
				     size_t local_count, int sock, pid_t qmgr_pid)
{
	struct generation *g = m->current;

	log_set_role("relay");
	for (size_t i = 0; i < local_count; i++)
		close(locals[i].fd);
	close(m->notify_pipe[0]);
	close(m->flow_pipe[1]);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	recipients_free(&g->rcpt);
	relay_router_free(&g->router);
	if (privsep_become(&g->ps, &g->ps.user, SIGKILL, qmgr_pid) < 0)
		_exit(1);
	_exit(relay_main(&g->cfg, sock));
}

/* Fork the relay agent; its pid, with *fd_r the queue manager's end. */
static pid_t fork_relay_agent(struct master *m, const struct qmgr_agent *locals,
			      size_t local_count, pid_t qmgr_pid, int *fd_r)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("relay delivery agent: socketpair: %s", strerror(errno));
		return -1;
	}
	/* Results can come in bursts: room for many in the socket. */
	int size = 4 * 1024 * 1024;
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		run_relay_agent(m, locals, local_count, sv[1], qmgr_pid);
	}
	close(sv[1]);
	if (pid < 0) {
		log_error("relay delivery agent: fork: %s", strerror(errno));
		close(sv[0]);
		return -1;
	}
	*fd_r = sv[0];
	return pid;
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
	int relay_fd = -1;
	pid_t relay_pid = fork_relay_agent(m, agents, lanes, qmgr_pid, &relay_fd);
	if (relay_pid < 0)
		kill_agents_and_exit(agents, lanes);
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0) {
		kill(relay_pid, SIGKILL);
		kill_agents_and_exit(agents, lanes);
	}
	struct qmgr_links links = { .notify_fd = m->notify_pipe[0], .flow_fd = m->flow_pipe[1],
				    .agents = agents, .agent_count = lanes,
				    .relay = { relay_fd, relay_pid }, .router = g->router };
	_exit(qmgr_run(&g->cfg, g->rcpt, &links));
}

/* The scan master of generation g (root until privsep_become): nothing of
 * the other roles' (listeners, pipes), no TLS key, no tables, of any
 * generation; it tells the supervisor on ready_fd (-1: nobody asks,
 * a restart) whether there is anything to scan. */
static NORETURN void run_scan_master(struct master *m, struct generation *g, int ready_fd)
{
	log_set_role("scan");
	for (size_t i = 0; i < m->listen_count; i++)
		close(m->listen_fds[i]);
	close(m->notify_pipe[0]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	close(m->flow_pipe[1]);
	if (m->current != NULL && m->current != g)
		generation_free(&m->current);
	recipients_free(&g->rcpt);
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	_exit(scan_master_main(&g->cfg, ready_fd));
}

/* The anvil (root until privsep_become): nothing of the other roles'
 * descriptors, no TLS key, no tables. */
static NORETURN void run_anvil(struct master *m, struct generation *g)
{
	log_set_role("anvil");
	for (size_t i = 0; i < m->listen_count; i++)
		close(m->listen_fds[i]);
	close(m->notify_pipe[0]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	close(m->flow_pipe[1]);
	recipients_free(&g->rcpt);
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	_exit(anvil_main(&g->cfg));
}

/* The key holder of generation g: load the key as root, then become
 * user; nothing of the other roles' descriptors, no tables. */
static NORETURN void run_keyholder(struct master *m, struct generation *g)
{
	log_set_role("keyholder");
	for (size_t i = 0; i < m->listen_count; i++)
		close(m->listen_fds[i]);
	close(m->notify_pipe[0]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	close(m->flow_pipe[1]);
	recipients_free(&g->rcpt);
	char *err = NULL;
	struct keyholder_key *key = keyholder_key_load(g->cfg.tls_cert, g->cfg.tls_key, &err);
	if (key == NULL) {
		log_error("%s", err);
		_exit(1);
	}
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	int rc = keyholder_main(&g->cfg, key);
	keyholder_key_free(&key);
	_exit(rc);
}

/* The auth process (root until privsep_become): its control socket, no
 * listener, no pipe of the other roles, no TLS key, no tables (it reads
 * the users file from the descriptor the supervisor sends). */
static NORETURN void run_auth(struct master *m, struct generation *g, int ctl_fd)
{
	log_set_role("auth");
	for (size_t i = 0; i < m->listen_count; i++)
		close(m->listen_fds[i]);
	close(m->notify_pipe[0]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	close(m->flow_pipe[1]);
	recipients_free(&g->rcpt);
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	_exit(auth_main(&g->cfg, ctl_fd, ticket_key));
}

/* The pop3 role (still root here): fork its mailbox agent, which
 * becomes mail_owner and keeps only its end of the socket pair, then
 * build the TLS context (the certificate, read after the fork: the agent
 * holds nothing of TLS; the private key stays in the key holder) and
 * become user with the POP3 listeners. */
static NORETURN void run_pop3(struct master *m, struct generation *g)
{
	log_set_role("pop3");
	for (size_t i = 0; i < m->smtp_listen_count; i++)
		close(m->listen_fds[i]);
	close(m->notify_pipe[0]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	close(m->flow_pipe[1]);
	recipients_free(&g->rcpt);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("pop3 mailbox agent: socketpair: %s", strerror(errno));
		_exit(1);
	}
	int size = 1024 * 1024; /* an UPDATE of many messages is one packet */
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
	pid_t worker_pid = getpid();
	pid_t agent = fork();
	if (agent < 0) {
		log_error("pop3 mailbox agent: fork: %s", strerror(errno));
		_exit(1);
	}
	if (agent == 0) {
		log_set_role("maildrop");
		for (size_t i = m->smtp_listen_count; i < m->listen_count; i++)
			close(m->listen_fds[i]);
		close(sv[0]);
		if (privsep_become(&g->ps, &g->ps.mail_owner, SIGKILL, worker_pid) < 0)
			_exit(1);
		_exit(pop3_agent_main(&g->cfg, sv[1], ticket_key));
	}
	/* the worker never holds the ticket key: it could forge tickets */
	explicit_bzero(ticket_key, sizeof(ticket_key));
	close(sv[1]);
	SSL_CTX *tls_ctx = NULL;
	if (g->tls) {
		char *err = NULL;
		tls_ctx = tls_server_context(g->cfg.tls_cert, g->cfg.tls_key, &err);
		if (tls_ctx == NULL) {
			log_error("pop3 worker: %s", err);
			kill(agent, SIGKILL);
			_exit(1);
		}
	}
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0) {
		kill(agent, SIGKILL);
		_exit(1);
	}
	struct pop3_links links = { .listen_fds = m->listen_fds + m->smtp_listen_count,
				    .implicit_tls = m->implicit_tls + m->smtp_listen_count,
				    .listen_count = m->listen_count - m->smtp_listen_count,
				    .agent_fd = sv[0] };
	_exit(pop3_worker_main(&g->cfg, tls_ctx, &links));
}

/* In a new smtp worker, still root: fork its quota reader (it becomes
 * mail_owner and answers the worker's RCPT checks over a socket pair,
 * src/queue/quota_reader.h) before the worker reads the TLS certificate.
 * The worker's end, or -1 when no quota applies (or the reader cannot be
 * made: RCPT then lets mail through and the delivery agent still
 * enforces the quotas). */
static int fork_quota_reader(struct master *m, struct generation *g, pid_t *pid_r)
{
	int sv[2];

	if (!quota_reader_wanted(&g->cfg, g->rcpt))
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("quota reader: socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t worker = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		log_set_role("quota");
		close(sv[0]);
		for (size_t i = 0; i < m->listen_count; i++)
			close(m->listen_fds[i]);
		close(m->notify_pipe[1]);
		close(m->flow_pipe[0]);
		restrictions_free(&g->restrictions);
		/* Driven by its worker: it stops when the worker closes the
		 * socket, or is killed with it. */
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGUSR2, SIG_IGN);
		if (privsep_become(&g->ps, &g->ps.mail_owner, SIGKILL, worker) < 0)
			_exit(1);
		_exit(quota_reader_main(&g->cfg, g->rcpt, sv[1]));
	}
	close(sv[1]);
	if (pid < 0) {
		log_error("quota reader: fork: %s", strerror(errno));
		close(sv[0]);
		return -1;
	}
	*pid_r = pid;
	return sv[0];
}

/* The metrics role (root until privsep_become): its listening socket,
 * nothing of the other roles', no TLS key, no tables; the shared
 * counters it reads were mapped before any fork. */
static NORETURN void run_metrics(struct master *m, struct generation *g)
{
	log_set_role("metrics");
	for (size_t i = 0; i < m->listen_count; i++)
		close(m->listen_fds[i]);
	close(m->notify_pipe[0]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	close(m->flow_pipe[1]);
	recipients_free(&g->rcpt);
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	_exit(metrics_role_main(&g->cfg, m->metrics_fd, m->pid));
}

/* The milter process of generation g (root until privsep_become): no
 * listener, no pipe of the other roles, no TLS key, no tables; it binds
 * milter_listen itself (as user: a unix socket's folder, or a port above
 * 1023, must allow that) and says on ready_fd when it listens. */
static NORETURN void run_milter(struct master *m, struct generation *g, int ready_fd)
{
	log_set_role("milter");
	close(m->notify_pipe[0]);
	close(m->notify_pipe[1]);
	close(m->flow_pipe[0]);
	close(m->flow_pipe[1]);
	recipients_free(&g->rcpt);
	restrictions_free(&g->restrictions);
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	_exit(milter_server_main(&g->cfg, g->scanning, ready_fd, !m->milter_listened));
}

/* In the child: become the role. Never returns. The stop signals
 * (SIGTERM, SIGINT, and the smtp workers' SIGUSR2) stay blocked until the
 * role has its handlers: one sent in between waits instead of killing it,
 * which the supervisor would log as a crash. */
static NORETURN void run_role(struct master *m, enum role role, struct generation *g,
			      int ready_fd)
{
	sigset_t mask = m->old_mask;
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_SETMASK, &mask, NULL);
	if (role != ROLE_AUTH && role != ROLE_POP3)
		explicit_bzero(ticket_key, sizeof(ticket_key));
	if (m->pending != NULL && m->pending->scan_ready_fd >= 0)
		close(m->pending->scan_ready_fd); /* the supervisor's end */
	if (m->auth_ctl >= 0)
		close(m->auth_ctl); /* the supervisor's end */
	log_writer_close_in_child(&m->log);
	signal(SIGUSR1, SIG_IGN); /* the supervisor's: a "kill -USR1" to all of postern is harmless */
	if (role == ROLE_METRICS)
		run_metrics(m, g);
	if (m->metrics_fd >= 0)
		close(m->metrics_fd);
	if (role == ROLE_AUTH)
		run_auth(m, g, ready_fd);
	/* Every TLS server context a role builds takes its private key from
	 * this generation's key holder (smtp/tls.h). */
	char *keyholder_dir = keyholder_socket_dir(g->cfg.spool_dir);
	tls_server_configure(keyholder_dir, tls_min_version_of(g->cfg.tls_min_version));
	free(keyholder_dir);
	if (role == ROLE_KEYHOLDER)
		run_keyholder(m, g);
	if (role == ROLE_SCAN)
		run_scan_master(m, g, ready_fd);
	if (role == ROLE_MILTER)
		run_milter(m, g, ready_fd);
	if (role == ROLE_ANVIL)
		run_anvil(m, g);
	if (role == ROLE_QMGR)
		run_qmgr_and_agents(m);
	if (role == ROLE_POP3)
		run_pop3(m, g);
	log_set_role("smtp");
	for (size_t i = m->smtp_listen_count; i < m->listen_count; i++)
		close(m->listen_fds[i]); /* the POP3 listeners */
	m->listen_count = m->smtp_listen_count; /* this process's copy: they are gone */
	close(m->notify_pipe[0]);
	close(m->flow_pipe[1]);
	pid_t quota_pid = -1;
	int quota_fd = fork_quota_reader(m, g, &quota_pid);
	/* the certificate, read as root before the worker drops privileges;
	 * the key stays in the key holder */
	SSL_CTX *tls_ctx = NULL;
	if (g->tls) {
		char *err = NULL;
		tls_ctx = tls_server_context(g->cfg.tls_cert, g->cfg.tls_key, &err);
		if (tls_ctx == NULL) {
			log_error("smtp worker: %s", err);
			_exit(1);
		}
	}
	if (privsep_become(&g->ps, &g->ps.user, SIGTERM, m->pid) < 0)
		_exit(1);
	struct smtp_worker_links links = { .listen_fds = m->listen_fds,
					   .listen_kinds = m->listen_kinds,
					   .listen_count = m->smtp_listen_count,
					   .notify_fd = m->notify_pipe[1],
					   .flow_fd = m->flow_pipe[0],
					   .notice_template = g->notice_template,
					   .restrictions = g->restrictions,
					   .scan = g->scanning,
					   .quota_fd = quota_fd,
					   .quota_pid = quota_pid };
	_exit(smtp_worker_main(&g->cfg, g->rcpt, tls_ctx, &links));
}

/* Fork role for generation g (the scan master: with the write end of its
 * readiness pipe, or -1). */
static pid_t spawn_for(struct master *m, enum role role, struct generation *g, int ready_fd)
{
	if (m->child_count == m->child_cap) {
		m->child_cap = m->child_cap != 0 ? m->child_cap * 2 : CHILDREN_INITIAL;
		m->children = xreallocarray(m->children, m->child_cap, sizeof(*m->children));
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0)
		run_role(m, role, g, ready_fd);
	struct child *c = &m->children[m->child_count++];
	c->pid = pid;
	c->role = role;
	c->generation = role_kept(role) ? ANVIL_GENERATION : g->number;
	c->started = time(NULL);
	c->stop_sent = false;
	return pid;
}

/* Send the auth process g's settings and a new descriptor of its users
 * file (opened here as root; the supervisor never reads it). */
static void auth_send_config(struct master *m, const struct generation *g)
{
	struct auth_ctl_msg msg;
	int fd = -1;
	if (m->auth_ctl < 0)
		return;
	auth_ctl_from_config(&g->cfg, &msg);
	if (g->cfg.users_file[0] != '\0') {
		fd = open(g->cfg.users_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			log_error("auth: users_file %s: %s", g->cfg.users_file, strerror(errno));
	}
	if (auth_ctl_send(m->auth_ctl, &msg, fd) < 0)
		log_warn("auth: cannot send it the users: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Start the auth process with a new control socket pair. */
static void spawn_auth(struct master *m, struct generation *g)
{
	int sv[2];
	if (m->auth_ctl >= 0)
		close(m->auth_ctl);
	m->auth_ctl = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("auth: socketpair: %s", strerror(errno));
		return;
	}
	pid_t pid = spawn_for(m, ROLE_AUTH, g, sv[1]);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return;
	}
	m->auth_ctl = sv[0];
	auth_send_config(m, g);
}

static void spawn(struct master *m, enum role role)
{
	if (role == ROLE_AUTH)
		spawn_auth(m, m->current);
	else
		spawn_for(m, role, m->current, -1);
}

/* Start g's scan master with a readiness pipe; -1 if it cannot be. */
static int spawn_scan_master(struct master *m, struct generation *g)
{
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) < 0) {
		log_error("pipe: %s", strerror(errno));
		return -1;
	}
	fcntl(ready[0], F_SETFL, O_NONBLOCK);
	g->scan_ready_fd = ready[0];
	pid_t pid = spawn_for(m, ROLE_SCAN, g, ready[1]);
	close(ready[1]);
	if (pid < 0) {
		close(ready[0]);
		g->scan_ready_fd = -1;
		return -1;
	}
	return 0;
}

/* How long a start or a reload waits for the new milter process to listen on a
 * unix socket before the old one is told to stop. */
#define MILTER_READY_WAIT_MS 10000

/* The milter process of the current generation. On a reload the old
 * generation's milter process keeps listening until the new one listens
 * too (wait_ready: a bounded wait): a unix socket renamed over the path,
 * a TCP port shared through SO_REUSEPORT (milter_server.c). */
static bool spawn_milter(struct master *m, bool wait_ready)
{
	int ready[2];
	bool listening = false;
	if (pipe2(ready, O_CLOEXEC) < 0) {
		log_error("pipe: %s", strerror(errno));
		return false;
	}
	pid_t pid = spawn_for(m, ROLE_MILTER, m->current, ready[1]);
	close(ready[1]);
	if (pid > 0 && wait_ready) {
		struct pollfd p = { .fd = ready[0], .events = POLLIN };
		char c = 0;
		listening = poll(&p, 1, MILTER_READY_WAIT_MS) > 0 && read(ready[0], &c, 1) == 1 &&
			    c == MILTER_READY;
	}
	close(ready[0]);
	return listening;
}

static void spawn_generation(struct master *m)
{
	if (m->milter) {
		/* At start a milter process that cannot listen stops postern
		 * milter (exit 1), instead of being started again every second. */
		if (!spawn_milter(m, true)) {
			log_error("the milter process does not listen on %s (see above): not starting",
				  m->current->cfg.milter_listen);
			m->stopping = m->start_failed = true;
		}
		m->milter_listened = true;
		return;
	}
	if (m->current->tls)
		spawn(m, ROLE_KEYHOLDER); /* before the workers that ask it */
	spawn(m, ROLE_QMGR);
	size_t n = worker_count(&m->current->cfg);
	for (size_t i = 0; i < n; i++)
		spawn(m, ROLE_SMTP);
	if (m->listen_count > m->smtp_listen_count)
		spawn(m, ROLE_POP3);
}


static void signal_children(struct master *m, int sig)
{
	for (size_t i = 0; i < m->child_count; i++)
		kill(m->children[i].pid, sig);
}

/* A stop: every role but the key holders, which the workers may still
 * need while they drain (stop_idle_keyholders stops them after), and in
 * milter mode the scan masters, which the milter process's conversations
 * still ask (stop_idle_scan_masters). */
static void stop_children(struct master *m)
{
	for (size_t i = 0; i < m->child_count; i++)
		if (m->children[i].role != ROLE_KEYHOLDER &&
		    !(m->milter && m->children[i].role == ROLE_SCAN))
			kill(m->children[i].pid,
			     m->children[i].role == ROLE_MILTER ? SIGUSR2 : SIGTERM);
}

/* Milter mode: milter_listen must say where to listen. */
static int milter_listen_check(const char *path, const struct config *cfg)
{
	struct milter_listen l;
	char err[160];
	if (cfg->milter_listen[0] == '\0') {
		log_error("%s: milter_listen is not set: postern milter needs unix:/PATH or "
			  "inet:HOST:PORT", path);
		return -1;
	}
	if (milter_listen_parse(cfg->milter_listen, &l, err, sizeof(err)) < 0) {
		log_error("%s:%u: milter_listen: %s", path, config_key_line(cfg, "milter_listen"),
			  err);
		return -1;
	}
	return 0;
}

/* Milter mode, stopping: once no milter process is left, the scan
 * masters go too. */
static void stop_idle_scan_masters(struct master *m)
{
	if (!m->milter || !m->stopping)
		return;
	for (size_t i = 0; i < m->child_count; i++)
		if (m->children[i].role == ROLE_MILTER)
			return;
	for (size_t i = 0; i < m->child_count; i++) {
		struct child *c = &m->children[i];
		if (c->role == ROLE_SCAN && !c->stop_sent) {
			kill(c->pid, SIGTERM);
			c->stop_sent = true;
		}
	}
}

/* Does a role of generation other than the key holder, the queue manager
 * and the scan master (that is, a TLS worker) still run? */
static bool generation_has_workers(const struct master *m, unsigned generation)
{
	for (size_t i = 0; i < m->child_count; i++) {
		const struct child *c = &m->children[i];
		if (c->generation == generation && c->role != ROLE_KEYHOLDER &&
		    c->role != ROLE_QMGR && c->role != ROLE_SCAN && c->role != ROLE_ANVIL &&
		    c->role != ROLE_AUTH)
			return true;
	}
	return false;
}

/* A key holder serves its generation's workers: once the generation is
 * no longer the current one (or postern stops) and its last worker has
 * exited, it is stopped. */
static void stop_idle_keyholders(struct master *m)
{
	for (size_t i = 0; i < m->child_count; i++) {
		struct child *c = &m->children[i];
		if (c->role != ROLE_KEYHOLDER || c->stop_sent)
			continue;
		bool current = m->current != NULL && c->generation == m->current->number;
		if ((current && !m->stopping) || generation_has_workers(m, c->generation))
			continue;
		kill(c->pid, SIGTERM);
		c->stop_sent = true;
	}
}

static const char *role_name(enum role role)
{
	return role == ROLE_QMGR ? "queue manager" : role == ROLE_SCAN ? "scan master"
		: role == ROLE_ANVIL ? "anvil" : role == ROLE_AUTH ? "auth process"
		: role == ROLE_KEYHOLDER ? "key holder" : role == ROLE_POP3 ? "pop3 worker"
		: role == ROLE_METRICS ? "metrics" : role == ROLE_MILTER ? "milter process"
		: "smtp worker";
}

/* Warn, naming each listener key whose addresses changed, that the
 * bound sockets stay as they are until a restart. */
static void warn_changed_listeners(const struct config *a, const struct config *b)
{
	static const char *const keys[] = { "listen", "submission_listen", "smtps_listen",
					     "pop3_listen", "pop3s_listen" };
	char names[128] = "";
	size_t len = 0;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (config_key_differs(a, b, keys[i]))
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
						len > 0 ? ", " : "", keys[i]);
	if (len > 0)
		log_warn("reload: %s changed; keeping the bound sockets until a restart", names);
}

/* Generation g becomes the current one: its queue manager and smtp
 * workers start (asking the scan master if scanning), and the previous
 * generation's roles retire. */
static void activate(struct master *m, struct generation *g, bool scanning)
{
	struct generation *old = m->current;
	bool reloaded = old != NULL;
	if (m->pending == g)
		m->pending = NULL;
	if (g->scan_ready_fd >= 0)
		close(g->scan_ready_fd);
	g->scan_ready_fd = -1;
	g->scanning = scanning;
	if (old != NULL) {
		if (config_key_differs(&old->cfg, &g->cfg, "metrics_listen") ||
		    config_key_differs(&old->cfg, &g->cfg, "log_to") ||
		    config_key_differs(&old->cfg, &g->cfg, "log_file") ||
		    config_key_differs(&old->cfg, &g->cfg, "syslog_facility") ||
		    config_key_differs(&old->cfg, &g->cfg, "syslog_socket"))
			log_warn("reload: metrics_listen and the log settings apply at the next restart");
		warn_changed_listeners(&old->cfg, &g->cfg);
		log_info("reload: %zu users, %zu aliases; starting generation %u",
			 recipients_user_count(g->rcpt), recipients_alias_count(g->rcpt), g->number);
		generation_free(&old);
	}
	m->current = g;
	m->scan_respawn_at = 0;
	log_set_level(g->cfg.log_level);
	if (reloaded)
		auth_send_config(m, g); /* the new users and settings */
	/* A new milter process that does not listen (its socket cannot be
	 * bound) leaves the old one serving, with the new scan master. */
	bool retire_milters = true;
	if (m->milter && reloaded) {
		retire_milters = spawn_milter(m, true);
		if (!retire_milters)
			log_error("reload: the new milter process does not listen on %s (see above): "
				  "the running one goes on serving", g->cfg.milter_listen);
	} else {
		spawn_generation(m);
	}
	/* The old smtp workers retire (their sessions go on), and so does the
	 * old scan master (its workers move to the new one); the old queue
	 * manager stops after its delivery, the new one takes the lock. */
	for (size_t i = 0; i < m->child_count; i++)
		if (m->children[i].generation != g->number && !role_kept(m->children[i].role) &&
		    m->children[i].role != ROLE_KEYHOLDER &&
		    (retire_milters || m->children[i].role != ROLE_MILTER))
			kill(m->children[i].pid,
			     m->children[i].role == ROLE_QMGR ? SIGTERM : SIGUSR2);
}

/* Start generation g: at once, or once its scan master has built the
 * pipeline (poll_pending). */
static void start_generation(struct master *m, struct generation *g)
{
	if (g->cfg.scan == SCAN_MODE_NO) {
		activate(m, g, false);
		return;
	}
	m->pending = g;
	if (spawn_scan_master(m, g) < 0) {
		m->pending = NULL;
		log_error("%s: cannot start the scan master", m->current != NULL ? "reload" : "start");
		if (m->current == NULL)
			m->stopping = m->start_failed = true;
		generation_free(&g);
		return;
	}
	log_info("generation %u: the scan master is loading the content pipeline", g->number);
}

/* Has the pending generation's scan master said it is ready? */
static void poll_pending(struct master *m)
{
	struct generation *g = m->pending;
	char what;
	if (g == NULL || g->scan_ready_fd < 0)
		return;
	ssize_t n = read(g->scan_ready_fd, &what, 1);
	if (n == 1 && (what == SCAN_READY_ON || what == SCAN_READY_OFF)) {
		activate(m, g, what == SCAN_READY_ON);
	} else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || n == 1) {
		close(g->scan_ready_fd); /* it is exiting: its reaping says more */
		g->scan_ready_fd = -1;
	}
}

/* The pending generation's scan master exited without being ready. */
static void pending_failed(struct master *m, int status)
{
	struct generation *g = m->pending;
	m->pending = NULL;
	if (m->current == NULL) {
		log_error("postern cannot work with this configuration: not starting");
		m->stopping = true;
		m->start_failed = true;
	} else {
		log_error("reload: content scanning cannot start with the new configuration "
			  "(scan master status %d, see above): keeping the running generation %u",
			  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
			  m->current->number);
	}
	generation_free(&g);
}

/* A current role died: start it again (a scan master after a pause if it
 * cannot load its pipeline or died young). */
static void respawn(struct master *m, const struct child *c, int status)
{
	if (c->role == ROLE_SCAN) {
		if (!m->current->scanning)
			return; /* it said there was nothing to scan and left */
		bool config = WIFEXITED(status) && WEXITSTATUS(status) == SCAN_EXIT_CONFIG;
		int pause = config ? SCAN_RESPAWN_SECONDS : time(NULL) - c->started < 2 ? 1 : 0;
		m->scan_respawn_at = time(NULL) + pause;
		log_warn("the scan master is started again in %ds%s; until it is ready messages "
			 "get %s", pause, config ? " (its files do not load)" : "",
			 m->current->cfg.scan_fail_open == CONFIG_YES
				 ? "accepted unscanned (scan_fail_open)" : "451 4.7.0");
		return;
	}
	if (time(NULL) - c->started < 2)
		sleep(1); /* do not spin on a role that cannot start */
	if (c->role == ROLE_MILTER)
		spawn_milter(m, false);
	else
		spawn(m, c->role);
}

static void reap_children(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		const struct generation *g = m->current != NULL ? m->current : m->pending;
		if (g != NULL && log_writer_reaped(&m->log, pid, &g->ps, &g->ps.user))
			continue;
		for (size_t i = 0; i < m->child_count; i++) {
			struct child c = m->children[i];
			if (c.pid != pid)
				continue;
			m->children[i] = m->children[--m->child_count];
			if (m->pending != NULL && c.generation == m->pending->number) {
				if (m->stopping) { /* it was stopped while loading */
					generation_free(&m->pending);
					break;
				}
				poll_pending(m); /* it may have said "ready" just before */
				if (m->pending != NULL && c.generation == m->pending->number) {
					pending_failed(m, status);
					break;
				}
			}
			bool current = m->current != NULL && (c.generation == m->current->number ||
							      role_kept(c.role));
			bool quiet = c.role == ROLE_SCAN && current && !m->current->scanning &&
				     WIFEXITED(status) && WEXITSTATUS(status) == 0;
			const char *name = role_name(c.role);
			if (WIFSIGNALED(status))
				log_warn("%s pid %d killed by signal %d", name, (int)pid, WTERMSIG(status));
			else if (!quiet && (WEXITSTATUS(status) != 0 || (current && !m->stopping)))
				log_warn("%s pid %d exited with status %d", name, (int)pid,
					 WEXITSTATUS(status));
			if (current && !m->stopping)
				respawn(m, &c, status);
			break;
		}
	}
}

static void reload(struct master *m)
{
	struct generation *g = generation_load(m->config_path, m->last_number + 1);
	if (g == NULL) {
		log_error("reload: configuration has errors, keeping the running one");
		return;
	}
	if (m->milter && milter_listen_check(m->config_path, &g->cfg) < 0) {
		log_error("reload: configuration has errors, keeping the running one");
		generation_free(&g);
		return;
	}
	m->last_number = g->number;
	table_watch_move(&m->watch, &g->watch);
	if (generation_check(m, g) < 0) {
		log_error("reload: the new configuration cannot work, keeping the running one");
		generation_free(&g);
		return;
	}
	if (m->pending != NULL) {
		/* A newer configuration replaces the one still loading. */
		for (size_t i = 0; i < m->child_count; i++)
			if (m->children[i].generation == m->pending->number)
				kill(m->children[i].pid, SIGKILL);
		log_info("reload: generation %u was still loading its scan pipeline: dropped",
			 m->pending->number);
		generation_free(&m->pending);
	}
	start_generation(m, g);
}

/* The current scan master's pause is over. */
static void scan_respawn_due(struct master *m)
{
	if (m->scan_respawn_at == 0 || time(NULL) < m->scan_respawn_at || m->stopping ||
	    m->current == NULL)
		return;
	m->scan_respawn_at = 0;
	spawn(m, ROLE_SCAN);
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
	bool reopen; /* SIGUSR1: the log file */
};

/* Wait up to a second (a tenth while a scan master is loading, to start
 * its generation soon after) for a signal, then take every other one
 * pending. */
static struct taken_signals take_signals(const sigset_t *set, bool pending)
{
	struct taken_signals t = { 0, false, false };
	struct timespec tick = { pending ? 0 : 1, pending ? 100000000 : 0 }, now = { 0, 0 };
	for (int sig = sigtimedwait(set, NULL, &tick); sig > 0;
	     sig = sigtimedwait(set, NULL, &now)) {
		if ((sig == SIGTERM || sig == SIGINT) && t.stop == 0)
			t.stop = sig;
		else if (sig == SIGHUP)
			t.reload = true;
		else if (sig == SIGUSR1)
			t.reopen = true;
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
	sigaddset(&set, SIGUSR1);
	time_t stop_deadline = 0;
	for (;;) {
		struct taken_signals t = take_signals(&set, m->pending != NULL);
		if (t.stop != 0 && !m->stopping) {
			log_info("signal %d: stopping, draining sessions", t.stop);
			m->stopping = true;
			const struct generation *g = m->current != NULL ? m->current : m->pending;
			stop_deadline = time(NULL) + (time_t)g->cfg.shutdown_timeout + 5;
			close_listeners(m);
			stop_children(m);
		}
		if (!m->stopping)
			poll_pending(m);
		reap_children(m);
		stop_idle_keyholders(m);
		stop_idle_scan_masters(m);
		if (m->stopping && stop_deadline == 0) {
			/* The first generation never started (its scan master
			 * could not build its pipeline). */
			stop_children(m);
			stop_deadline = time(NULL) + 5;
		}
		/* A table change seen in the same turn as a SIGHUP is one reload. */
		const char *changed = NULL;
		if (!m->stopping && table_watch_changed(&m->watch, &changed) && !t.reload) {
			log_info("%s changed: reloading the tables", changed);
			t.reload = true;
		}
		if (t.reopen)
			log_writer_reopen(&m->log);
		if (t.reload && !m->stopping)
			reload(m);
		scan_respawn_due(m);
		if (m->stopping && m->child_count == 0)
			return m->start_failed ? 1 : 0;
		if (m->stopping && time(NULL) > stop_deadline) {
			log_warn("children did not stop in time, killing them");
			signal_children(m, SIGKILL);
			stop_deadline = time(NULL) + 5;
		}
	}
}

static int supervisor_main(const char *config_path, bool milter)
{
	struct master m = { .config_path = config_path, .pid = getpid(), .last_number = 1,
			    .auth_ctl = -1, .metrics_fd = -1, .log = LOG_WRITER_NONE,
			    .milter = milter };
	sigset_t set;
	log_set_role("master");
	struct generation *g = generation_load(config_path, 1);
	if (g == NULL)
		return 1;
	if (milter && milter_listen_check(config_path, &g->cfg) < 0) {
		generation_free(&g);
		return 1;
	}
	log_set_level(g->cfg.log_level);
	if (generation_check(&m, g) < 0) {
		log_error("postern cannot work with this configuration: not starting");
		generation_free(&g);
		return 1;
	}
	if (log_start(&m, g) < 0) {
		generation_free(&g);
		return 1;
	}
	if (milter)
		log_info("postern milter starting: milter_listen=%s user=%s scan=%s",
			 g->cfg.milter_listen, g->ps.user.name,
			 g->cfg.scan == SCAN_MODE_NO ? "no" : g->cfg.scan == SCAN_MODE_YES ? "yes"
											 : "auto");
	else
		log_info("postern starting: hostname=%s users=%zu aliases=%zu workers=%zu tls=%s "
		 "user=%s mail_owner=%s scan=%s", g->cfg.hostname,
		 recipients_user_count(g->rcpt), recipients_alias_count(g->rcpt),
		 worker_count(&g->cfg), g->tls ? "yes" : "no",
		 g->ps.user.name, g->ps.mail_owner.name,
		 g->cfg.scan == SCAN_MODE_NO ? "no" : g->cfg.scan == SCAN_MODE_YES ? "yes" : "auto");
	if ((!milter && bind_listeners(&m, &g->cfg) < 0) || open_pipes(&m) < 0 ||
	    metrics_start(&m, g) < 0) {
		generation_free(&g);
		return 1;
	}
	if (auth_ticket_key_new(ticket_key) < 0) {
		log_error("cannot draw the key of the login tickets: getrandom: %s",
			  strerror(errno));
		close_listeners(&m);
		generation_free(&g);
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &m.old_mask);
	signal(SIGPIPE, SIG_IGN);
	table_watch_move(&m.watch, &g->watch);
	if (!milter) {
		spawn_for(&m, ROLE_ANVIL, g, -1); /* before the workers that ask it */
		spawn_auth(&m, g);
	}
	if (m.metrics_fd >= 0)
		spawn_for(&m, ROLE_METRICS, g, -1);
	start_generation(&m, g);
	int rc = supervise(&m);
	close_listeners(&m);
	if (m.auth_ctl >= 0)
		close(m.auth_ctl);
	if (m.metrics_fd >= 0)
		close(m.metrics_fd);
	free(m.listen_fds);
	free(m.listen_kinds);
	free(m.implicit_tls);
	free(m.children);
	generation_free(&m.pending);
	generation_free(&m.current);
	table_watch_free(&m.watch);
	explicit_bzero(ticket_key, sizeof(ticket_key));
	log_info("postern stopped");
	return rc;
}

int master_main(const char *config_path)
{
	return supervisor_main(config_path, false);
}

int master_milter_main(const char *config_path)
{
	return supervisor_main(config_path, true);
}
