/*
 * preflight.c - start-up checks of "postern serve" and check-config (see
 * preflight.h): the roots of the spool and the mailboxes, the folders each
 * role needs, checked as the role's own account, and the open-file limit.
 *
 * RFCs: none. Untrusted input: the contents of spool_dir and mail_root,
 * which the roles write: the supervisor only creates the two roots (never
 * following a link, changing only what it has just made); everything
 * inside them is looked at by a child that has dropped to the role's
 * account, which reports back one line per finding over a pipe ("E text"
 * for a problem, "W text" for a warning; at most PROBE_OUTPUT_MAX bytes
 * are read). Privilege: root supervisor, or the invoking user.
 */
#include "preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "../milter/milter_client.h"
#include "../milter/milter_server.h"
#include "../queue/queue.h"
#include "../scan/scan.h"
#include "../scan/scan_client.h"
#include "../scan/scan_proto.h"

#define PROBE_OUTPUT_MAX (64 * 1024)
#define NR_OPEN_PATH "/proc/sys/fs/nr_open"
#define NR_OPEN_DEFAULT 1048576

/* ---- hints -------------------------------------------------------------- */

/* The first folder above path (from the top) that exists but is not a
 * folder, malloc'ed; NULL if there is none (as far as this process can
 * see). What ENOTDIR is about when path itself does not exist. */
static char *first_non_folder_above(const char *path)
{
	char *prefix = xstrdup(path);
	for (char *slash = strchr(prefix + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
		struct stat st;
		*slash = '\0';
		if (stat(prefix, &st) == 0 && !S_ISDIR(st.st_mode))
			return prefix;
		*slash = '/';
	}
	free(prefix);
	return NULL;
}

/* Why path cannot be reached (err, from stat or mkdir): the errno text
 * and a hint that fits it, " (...)" or "". account: who could not reach
 * it, NULL for root. */
static void unreachable_hint(int err, const char *path, const char *account, buf_t *out)
{
	char *above;

	buf_puts(out, strerror(err));
	switch (err) {
	case EACCES:
		if (account != NULL)
			buf_printf(out, " (every folder above it must be searchable by %s)", account);
		break;
	case ENOTDIR:
		above = first_non_folder_above(path);
		if (above != NULL)
			buf_printf(out, " (%s is a file, not a folder)", above);
		else
			buf_puts(out, " (a part of the path above it is not a folder)");
		free(above);
		break;
	case ENOENT:
		buf_puts(out, " (a folder above it does not exist)");
		break;
	default:
		break;
	}
}

/* ---- the roots ------------------------------------------------------------ */

static int make_root(const char *key, const char *path, const struct privsep *ps,
		     const struct privsep_account *owner, FILE *errors)
{
	bool created = false;
	struct stat st;
	buf_t why = BUF_INIT;

	if (safeio_mkdir_owned(path, 0700, ps->as_root, owner->uid, owner->gid, &created) == 0)
		return 0;
	int err = errno;
	if (err == ENOTDIR && lstat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
		fprintf(errors, "%s %s: exists but is not a folder\n", key, path);
		return 1;
	}
	unreachable_hint(err, path, NULL, &why);
	fprintf(errors, "%s %s: cannot create it for %s: %s\n", key, path, owner->name,
		buf_cstr(&why));
	buf_free(&why);
	return 1;
}

int preflight_make_roots(const struct config *cfg, const struct privsep *ps,
			 enum preflight_mode mode, FILE *errors)
{
	int problems = make_root("spool_dir", cfg->spool_dir, ps, &ps->user, errors);
	if (mode == PREFLIGHT_SERVE)
		problems += make_root("mail_root", cfg->mail_root, ps, &ps->mail_owner, errors);
	return problems;
}

/* ---- checks run as a role's account ------------------------------------- */

struct probe {
	const struct config *cfg;
	const struct privsep *ps;
	const char *account; /* whose view this is; NULL: the account is unknown,
				only what does not depend on it is checked */
	bool create;
	FILE *out;
};

/* Is path a folder this account can enter and write? Missing is fine
 * (reported false) when it is not created. */
static bool check_dir(struct probe *p, const char *key, const char *path,
		      bool no_link)
{
	struct stat st;
	int rc = no_link ? lstat(path, &st) : stat(path, &st);

	if (rc < 0 && errno == ENOENT && !p->create)
		return false;
	if (rc < 0) {
		buf_t why = BUF_INIT;
		unreachable_hint(errno, path, p->account, &why);
		if (p->account != NULL)
			fprintf(p->out, "E %s %s: not reachable as user %s: %s\n", key, path,
				p->account, buf_cstr(&why));
		else
			fprintf(p->out, "E %s %s: not reachable: %s\n", key, path, buf_cstr(&why));
		buf_free(&why);
		return false;
	}
	if (S_ISLNK(st.st_mode)) {
		fprintf(p->out, "E %s %s: is a symbolic link; postern needs a real folder "
			"there and never follows links inside the spool\n", key, path);
		return false;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(p->out, "E %s %s: exists but is not a folder\n", key, path);
		return false;
	}
	if (p->account == NULL)
		return true; /* whether the role could write it is unknown */
	if (faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) < 0) {
		fprintf(p->out, "E %s %s: not writable by user %s (owner uid %lu, mode %04o): "
			"%s\n", key, path, p->account, (unsigned long)st.st_uid,
			(unsigned)(st.st_mode & 07777), strerror(errno));
		return false;
	}
	return true;
}

/* The users file holds password hashes: the smtp workers' account
 * should not be able to read it. */
static void probe_users_file(struct probe *p)
{
	const struct config *cfg = p->cfg;
	int fd = cfg->users_file[0] != '\0' && p->ps->as_root && p->account != NULL
			 ? open(cfg->users_file, O_RDONLY | O_CLOEXEC) : -1;
	if (fd >= 0) {
		fprintf(p->out, "W users_file %s: readable by user %s, which runs the smtp "
			"workers, but it holds password hashes: make it mode 0600 owned by root "
			"(or 0640 root:dovecot when Dovecot reads the same file)\n",
			cfg->users_file, p->account);
		close(fd);
	}
}

/* spool_dir/private: the scan master's socket, reachable by user only. */
static void probe_private(struct probe *p)
{
	char *path = safeio_path_join(p->cfg->spool_dir, SCAN_SOCKET_FOLDER);
	struct stat st;
	if (p->create && mkdir(path, 0700) < 0 && errno != EEXIST)
		fprintf(p->out, "E spool_dir %s: cannot create it as user %s: %s\n", path,
			p->account, strerror(errno));
	else if (check_dir(p, "spool_dir", path, true) && p->account != NULL &&
		 lstat(path, &st) == 0) {
		if (st.st_uid != geteuid())
			fprintf(p->out, "E spool_dir %s: owned by uid %lu, not by user %s (the "
				"scan master's socket lives there)\n", path,
				(unsigned long)st.st_uid, p->account);
		else if ((st.st_mode & 077) != 0)
			fprintf(p->out, "E spool_dir %s: mode %04o lets other accounts reach the "
				"scan master's socket: make it 0700\n", path,
				(unsigned)(st.st_mode & 07777));
	}
	free(path);
}

/* capture_dir, when capture can be on: the workers write the copies
 * there (its owner, group and mode are capture_dir.c's to check; the
 * supervisor makes it before these probes run); and the trigger file,
 * which they must be able to look for. */
static void probe_capture_dir(struct probe *p)
{
	const struct config *cfg = p->cfg;
	if (!config_capture_possible(cfg) || cfg->capture_dir[0] == '\0')
		return;
	bool create = p->create;
	p->create = false; /* missing: capture_dir.c has said what it needed to */
	check_dir(p, "capture_dir", cfg->capture_dir, false);
	p->create = create;
	/* The workers look for the trigger file as user: a folder above it
	 * they cannot search would keep capture off whatever is touched. */
	struct stat st;
	if (cfg->capture_trigger_file[0] != '\0' && p->account != NULL &&
	    stat(cfg->capture_trigger_file, &st) < 0 && errno != ENOENT) {
		buf_t why = BUF_INIT;
		unreachable_hint(errno, cfg->capture_trigger_file, p->account, &why);
		fprintf(p->out, "E capture_trigger_file %s: user %s cannot look for it: %s\n",
			cfg->capture_trigger_file, p->account, buf_cstr(&why));
		buf_free(&why);
	}
}

/* milter_listen's folder, for a unix socket: the milter process makes
 * the socket there as user, never the folder. A folder it cannot write
 * would otherwise be found only by a milter process that fails to listen
 * and is started again every second. */
static void probe_milter_socket_dir(struct probe *p)
{
	struct milter_listen ml;
	char err[160];
	if (p->cfg->milter_listen[0] == '\0' || p->account == NULL ||
	    milter_listen_parse(p->cfg->milter_listen, &ml, err, sizeof(err)) < 0 || !ml.is_unix)
		return; /* a malformed value is the configuration's error, said elsewhere */
	char *folder = xstrdup(ml.path);
	char *slash = strrchr(folder, '/');
	if (slash == folder)
		slash[1] = '\0';
	else
		*slash = '\0';
	struct stat st;
	if (stat(folder, &st) < 0 && errno == ENOENT) {
		fprintf(p->out, "E milter_listen %s: the socket's folder %s does not exist "
			"(postern milter makes the socket, not its folder: make it, writable "
			"by %s)\n", p->cfg->milter_listen, folder, p->account);
	} else if (stat(folder, &st) < 0) {
		buf_t why = BUF_INIT;
		unreachable_hint(errno, folder, p->account, &why);
		fprintf(p->out, "E milter_listen %s: the socket's folder %s cannot be reached "
			"by user %s: %s (postern milter makes the socket, not its folder)\n",
			p->cfg->milter_listen, folder, p->account, buf_cstr(&why));
		buf_free(&why);
	} else if (!S_ISDIR(st.st_mode)) {
		fprintf(p->out, "E milter_listen %s: %s is not a folder\n",
			p->cfg->milter_listen, folder);
	} else if (faccessat(AT_FDCWD, folder, W_OK | X_OK, AT_EACCESS) < 0) {
		fprintf(p->out, "E milter_listen %s: user %s cannot create the socket in %s: "
			"%s (give the folder to %s, or let its group write)\n",
			p->cfg->milter_listen, p->account, folder, strerror(errno), p->account);
	}
	free(folder);
}

/* The smtp workers' and queue manager's view: the spool. */
static void probe_user(struct probe *p)
{
	const struct config *cfg = p->cfg;
	char *err = NULL;

	probe_users_file(p); /* whether the spool exists yet or not */
	probe_capture_dir(p);
	probe_milter_socket_dir(p);
	if (!check_dir(p, "spool_dir", cfg->spool_dir, false))
		return;
	if (p->create && queue_dirs_create(cfg->spool_dir, &err) < 0) {
		fprintf(p->out, "E spool_dir: as user %s: %s\n", p->account, err);
		free(err);
		return;
	}
	for (size_t i = 0; i < QUEUE_SUBDIR_COUNT; i++) {
		char *path = safeio_path_join(cfg->spool_dir, queue_subdirs[i]);
		check_dir(p, "spool_dir", path, true);
		free(path);
	}
	probe_private(p);
}

/* The local delivery agent's view: mail_root. */
static void probe_mail_owner(struct probe *p)
{
	check_dir(p, "mail_root", p->cfg->mail_root, false);
}

/* Print what a probe child reported; count its problems. */
static int relay_findings(const char *text, FILE *errors)
{
	int problems = 0;
	const char *line = text;

	while (*line != '\0') {
		const char *nl = strchr(line, '\n');
		int len = (int)(nl != NULL ? nl - line : (ptrdiff_t)strlen(line));
		if (len >= 2 && line[0] == 'E' && line[1] == ' ') {
			fprintf(errors, "%.*s\n", len - 2, line + 2);
			problems++;
		} else if (len >= 2 && line[0] == 'W' && line[1] == ' ') {
			fprintf(errors, "warning: %.*s\n", len - 2, line + 2);
		}
		line += len + (nl != NULL);
	}
	return problems;
}

/* Read the child's report, at most PROBE_OUTPUT_MAX bytes. */
static void read_report(int fd, buf_t *out)
{
	char chunk[4096];

	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		if (out->len + (size_t)n <= PROBE_OUTPUT_MAX)
			buf_append(out, chunk, (size_t)n);
	}
}

/* Fork, become acct, run fn, report back; returns the problem count. */
static int probe_as(struct probe *p, const struct privsep_account *acct,
		    void (*fn)(struct probe *), FILE *errors)
{
	int pipefd[2], status = 0;
	buf_t report = BUF_INIT;

	fflush(NULL);
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		fprintf(errors, "cannot check folders: pipe: %s\n", strerror(errno));
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		p->out = fdopen(pipefd[1], "w");
		if (p->out == NULL || (acct->known && privsep_become(p->ps, acct, 0, 0) < 0))
			_exit(1);
		fn(p);
		_exit(fclose(p->out) == 0 ? 0 : 1);
	}
	close(pipefd[1]);
	if (pid > 0)
		read_report(pipefd[0], &report);
	close(pipefd[0]);
	int problems = relay_findings(buf_cstr(&report), errors);
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(errors, "cannot check folders as user %s (the check process failed)\n",
			acct->name != NULL ? acct->name : "?");
		problems++;
	}
	buf_free(&report);
	return problems;
}

int preflight_check_folders(const struct config *cfg, const struct privsep *ps,
			    enum preflight_mode mode, bool create, FILE *errors)
{
	struct probe p = { cfg, ps, NULL, create, NULL };
	int problems = 0;

	/* An account that could not be resolved (already reported): still
	 * report what does not depend on it, as the current user, creating
	 * nothing: a spool_dir that is a file, a link in the spool. */
	p.account = ps->user.known ? ps->user.name : NULL;
	p.create = create && ps->user.known;
	problems += probe_as(&p, &ps->user, probe_user, errors);
	if (mode != PREFLIGHT_SERVE)
		return problems;
	p.account = ps->mail_owner.known ? ps->mail_owner.name : NULL;
	p.create = create && ps->mail_owner.known;
	problems += probe_as(&p, &ps->mail_owner, probe_mail_owner, errors);
	return problems;
}

/* ---- log_file --------------------------------------------------------------- */

static void log_file_problem(const struct config *cfg, FILE *errors, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

/* "FILE:LINE: log_file PATH: " and the message. */
static void log_file_problem(const struct config *cfg, FILE *errors, const char *fmt, ...)
{
	va_list ap;
	fprintf(errors, "%s:%u: log_file %s: ", cfg->path != NULL ? cfg->path : "-",
		config_key_line(cfg, "log_file"), cfg->log_file);
	va_start(ap, fmt);
	vfprintf(errors, fmt, ap);
	va_end(ap);
	fputc('\n', errors);
}

int preflight_check_log_file(const struct config *cfg, FILE *errors)
{
	if (cfg->log_to != LOG_TO_FILE || cfg->log_file[0] == '\0')
		return 0;
	struct stat st;
	if (lstat(cfg->log_file, &st) == 0) {
		if (S_ISLNK(st.st_mode)) {
			log_file_problem(cfg, errors, "is a symbolic link; postern opens log_file "
					 "without following links");
			return 1;
		}
		if (!S_ISREG(st.st_mode)) {
			log_file_problem(cfg, errors, "exists but is not a regular file");
			return 1;
		}
		return 0;
	}
	if (errno != ENOENT && errno != ENOTDIR)
		return 0; /* e.g. EACCES for this account; serve may run as another */
	char *copy = xstrdup(cfg->log_file);
	const char *dir = dirname(copy);
	int problems = 0;
	if (stat(dir, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			log_file_problem(cfg, errors, "its folder %s does not exist: postern "
					 "creates the file, not its folder", dir);
			problems++;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		log_file_problem(cfg, errors, "%s is not a folder", dir);
		problems++;
	}
	free(copy);
	return problems;
}

/* ---- the content pipeline ------------------------------------------------- */

/* Build the pipeline as the scan master would, and say what came of it. */
static void probe_scan(struct probe *p)
{
	const struct config *cfg = p->cfg;
	char *err = NULL;
	scan_pipeline_set_one_process(true);  /* built to be checked, then freed */
	struct scan_pipeline *pipeline = scan_pipeline_build(cfg, &err);
	if (pipeline == NULL) {
		for (char *c = err; c != NULL && *c != '\0'; c++)
			if (*c == '\n')
				*c = ' ';
		fprintf(p->out, "E %s\n", err != NULL ? err : "the content pipeline does not load");
		free(err);
		return;
	}
	size_t stages = scan_pipeline_stage_count(pipeline);
	scan_pipeline_free(&pipeline);
	bool scanning = cfg->scan == SCAN_MODE_YES || (cfg->scan == SCAN_MODE_AUTO && stages > 0);
	if (cfg->scan == SCAN_MODE_NO && stages > 0)
		fprintf(p->out, "W %s: scan = no: the %zu content stage%s configured check no "
			"message\n", cfg->path, stages, stages == 1 ? "" : "s");
	uint64_t worst = 2 * cfg->scan_timeout + SCAN_CLIENT_MARGIN;
	if (scanning && cfg->policy_timeout <= worst)
		fprintf(p->out, "W %s: policy_timeout (%llus) is not longer than a scan may take "
			"(2 x scan_timeout + %ds = %llus): a slow scan would end with "
			"policy_default_action\n", cfg->path,
			(unsigned long long)cfg->policy_timeout, SCAN_CLIENT_MARGIN,
			(unsigned long long)worst);
}

int preflight_check_scan(const struct config *cfg, const struct privsep *ps, FILE *errors)
{
	struct probe p = { cfg, ps, ps->user.known ? ps->user.name : NULL, false, NULL };
	return probe_as(&p, &ps->user, probe_scan, errors);
}

/* ---- descriptors ---------------------------------------------------------- */

/* The kernel's ceiling for RLIMIT_NOFILE. */
static rlim_t nr_open(void)
{
	buf_t text = BUF_INIT;
	uint64_t v = NR_OPEN_DEFAULT;

	if (safeio_read_file(NR_OPEN_PATH, 64, &text) == 0) {
		while (text.len > 0 && (text.data[text.len - 1] == '\n'))
			text.data[--text.len] = '\0';
		if (!str_parse_uint(buf_cstr(&text), &v))
			v = NR_OPEN_DEFAULT;
	}
	buf_free(&text);
	return (rlim_t)v;
}

/* Descriptors one SMTP session may hold: its socket and its queue file,
 * and with milters one connection to each and the message they read. */
static uint64_t fds_per_session(const struct config *cfg, char *why, size_t whylen)
{
	struct milter_list milters;
	char *err = NULL;
	size_t n = 0;
	if (milter_list_parse(cfg->milters, cfg, &milters, &err) == 0) {
		n = milters.count;
		milter_list_free(&milters);
	}
	free(err);
	if (n == 0) {
		snprintf(why, whylen, "two per session");
		return 2;
	}
	snprintf(why, whylen, "%zu per session: socket, queue file, %zu milter%s and the "
		 "message they read", n + 3, n, n == 1 ? "" : "s");
	return n + 3;
}

int preflight_fd_limit(const struct config *cfg, bool apply, FILE *errors)
{
	struct rlimit rl;
	char per_text[120];
	uint64_t per = fds_per_session(cfg, per_text, sizeof(per_text));
	uint64_t need = cfg->worker_connections * per + PREFLIGHT_FD_MARGIN;
	bool root = geteuid() == 0;
	rlim_t ceiling = nr_open();
	const char *why = "";

	if (need > ceiling) {
		/* No limit can be raised that far: the kernel caps every
		 * process's open files at fs.nr_open. */
		fprintf(errors, "%s: worker_connections: %llu sessions per smtp worker need %llu "
			"open files (%s plus %d), more than the kernel lets any "
			"process open (fs.nr_open = %llu): set worker_connections to at most %llu "
			"(and run more workers), or raise fs.nr_open (sysctl)\n",
			cfg->path, (unsigned long long)cfg->worker_connections,
			(unsigned long long)need, per_text, PREFLIGHT_FD_MARGIN,
			(unsigned long long)ceiling,
			(unsigned long long)(ceiling > PREFLIGHT_FD_MARGIN
						     ? (ceiling - PREFLIGHT_FD_MARGIN) / per : 0));
		return -1;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		fprintf(errors, "getrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
		return -1;
	}
	if (root && rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		rl.rlim_max = (rlim_t)need;
	rl.rlim_cur = rl.rlim_max;
	if (apply && setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		why = strerror(errno);
		if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = 0;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return 0;
	fprintf(errors, "%s: worker_connections: %llu sessions per smtp worker need %llu open "
		"files (%s plus %d), but the limit is %llu%s%s: lower "
		"worker_connections or raise the limit (ulimit -n, systemd LimitNOFILE=)\n",
		cfg->path, (unsigned long long)cfg->worker_connections,
		(unsigned long long)need, per_text, PREFLIGHT_FD_MARGIN,
		(unsigned long long)rl.rlim_cur,
		why[0] != '\0' ? " and raising it failed: " : "", why);
	return -1;
}
