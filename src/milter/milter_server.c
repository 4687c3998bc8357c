/*
 * milter_server.c - the milter process of "postern milter" (see
 * milter_server.h): its listening socket (opened so that a reload never
 * leaves the MTA without one), libmilter on a thread of its own, and the
 * retirement the supervisor asks for with SIGUSR2 (stop listening, let
 * the conversations end). The conversations are milter_session.c's.
 *
 * RFCs: none. Untrusted input: none here (milter_session.c reads what the
 * MTA sends). Privilege: `user` (the supervisor switched to it before
 * calling in).
 */
#include "milter_server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/log.h"
#include "milter_session.h"

#define LISTEN_BACKLOG 1024
#define SOCKET_MODE 0666    /* unix: access is the folder's to control */

/* The listening socket libmilter opened (it keeps the descriptor to
 * itself), other than but: the one other listening socket of this
 * process. -1 if none is found. */
static int find_listener(int but)
{
	for (int fd = 0; fd < 1024; fd++) {
		int on = 0;
		socklen_t len = sizeof(on);
		if (fd != but && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on)
			return fd;
	}
	return -1;
}

/* Does something listen on the unix socket at path? 1 yes, 0 no (none,
 * or a socket left by a process that is gone), -1 cannot tell (errno). */
static int unix_in_use(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	int saved = errno;
	close(fd);
	errno = saved;
	return rc == 0 ? 1 : errno == ECONNREFUSED || errno == ENOENT ? 0 : -1;
}

/* Can a unix socket be bound at path? 0 (and nothing is left there), or
 * -1 with errno set. */
static int unix_bind_probe(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	if (len >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, len + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path); /* a leftover of a process with our pid, long gone */
	int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	int saved = errno;
	close(fd);
	if (rc == 0)
		unlink(path);
	errno = saved;
	return rc;
}

/* A unix socket: bound beside the path, then renamed over it (a running
 * listener of the previous generation keeps its own until it stops, and
 * the path always names a listening socket). Its inode in *st_r. first:
 * a live listener on the path is refused, not taken over. */
static int open_unix(const struct milter_listen *l, struct stat *st_r, bool first)
{
	int busy = first ? unix_in_use(l->path) : 0;
	if (busy != 0) {
		if (busy > 0)
			log_error("milter_listen unix:%s: socket in use: another postern milter (or "
				  "another program) is already running on it; not taking it over",
				  l->path);
		else
			log_error("milter_listen unix:%s: cannot tell whether the socket is in use: "
				  "%s", l->path, strerror(errno));
		return -1;
	}
	char tmp[sizeof(l->path) + 32], conn[sizeof(tmp) + 8];
	snprintf(tmp, sizeof(tmp), "%s.new-%ld", l->path, (long)getpid());
	snprintf(conn, sizeof(conn), "unix:%s", tmp);
	/* our own try first: libmilter's failure does not say why */
	if (unix_bind_probe(tmp) < 0 || smfi_setconn(conn) != MI_SUCCESS ||
	    smfi_opensocket(true) != MI_SUCCESS) {
		int why = errno;
		char folder[sizeof(l->path)];
		snprintf(folder, sizeof(folder), "%s", l->path);
		char *slash = strrchr(folder, '/');
		slash[slash == folder ? 1 : 0] = '\0';
		log_error("milter_listen unix:%s: cannot listen on %s: %s (the milter process, "
			  "as user, makes the socket in the folder %s%s)", l->path, tmp,
			  strerror(why), folder,
			  why == ENOSPC || why == EDQUOT ? ", whose file system is full"
			  : why == EROFS ? ", which is read-only"
			  : why == EACCES || why == EPERM ? ": let user write there" : "");
		unlink(tmp);
		return -1;
	}
	if (chmod(tmp, SOCKET_MODE) < 0 || rename(tmp, l->path) < 0 || stat(l->path, st_r) < 0) {
		log_error("milter_listen unix:%s: %s", l->path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* How often, a second apart, a TCP port another socket holds is tried
 * before giving up (a program that is stopping may hold it briefly). */
#define BIND_TRIES 5

/* Is the port of ai free of listeners, even ones that share it with
 * SO_REUSEPORT? 0, or -1 with errno set (EADDRINUSE: it is not). */
static int port_free(const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return -1;
	int rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (rc == 0)
		rc = bind(fd, ai->ai_addr, ai->ai_addrlen);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* One socket bound and listening on ai with SO_REUSEPORT, or -1 with
 * errno set. first: a port something else listens on is not shared. */
static int bind_once(const struct addrinfo *ai, bool first)
{
	if (first && port_free(ai) < 0)
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    /* inherited by each accepted socket: our header changes and the
	     * reply at the end of a message are separate small writes */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* Our own TCP listener on l, with SO_REUSEPORT: the previous
 * generation's listener (which has it too, and the same account) keeps
 * the port until the new one listens. A port in use is tried again
 * (BIND_TRIES). first: see bind_once. -1 after a log line. */
static int bind_inet(const struct milter_listen *l, bool first)
{
	struct addrinfo hints = { .ai_family = l->v6 ? AF_INET6 : AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(l->host, l->port, &hints, &ai);
	if (rc != 0) {
		log_error("milter_listen: %s: %s", l->conn, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (int tries = 1; (fd = bind_once(ai, first)) < 0 && errno == EADDRINUSE && tries < BIND_TRIES;
	     tries++)
		sleep(1);
	if (fd < 0)
		log_error("milter_listen: cannot listen on %s:%s: %s%s", l->host, l->port,
			  strerror(errno),
			  errno == EADDRNOTAVAIL ? " (the address is not one of this machine's)"
			  : errno == EADDRINUSE ? " (port in use: another postern milter or another program holds it)"
			  : errno == EACCES ? " (a port below 1024 needs privileges user has not)"
					    : "");
	freeaddrinfo(ai);
	return fd;
}

/* An inet socket: libmilter binds a stand-in of the same family on a port
 * of the kernel's choosing, and our own listener (bind_inet) takes the
 * stand-in's descriptor; libmilter accepts on it from then on. */
static int open_inet(const struct milter_listen *l, bool first)
{
	int fd = bind_inet(l, first);
	if (fd < 0)
		return -1;
	bool v6 = false;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		v6 = ss.ss_family == AF_INET6;
	char *stand_in = (char *)(v6 ? "inet6:0@::1" : "inet:0@127.0.0.1");
	int theirs = -1;
	if (smfi_setconn(stand_in) != MI_SUCCESS || smfi_opensocket(true) != MI_SUCCESS ||
	    (theirs = find_listener(fd)) < 0 || dup2(fd, theirs) < 0) {
		log_error("milter_listen: libmilter could not take the socket of %s", l->conn);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Stop taking new conversations without stopping libmilter (its stop
 * also stops serving the conversations in progress): the listening
 * socket is shut down (a unix socket refuses connections, a TCP port is
 * free for the next generation at once) and its descriptor replaced by a
 * pipe that never becomes readable, which libmilter's listener then
 * waits on.
 */
static void stop_listening(int listener, int quiet_pipe)
{
	int old = dup(listener);
	if (dup2(quiet_pipe, listener) < 0)
		log_warn("milter: cannot replace the listening socket: %s", strerror(errno));
	if (old >= 0) {
		shutdown(old, SHUT_RDWR);
		close(old);
	}
}

/* Wait for the conversations in progress, at most shutdown_timeout. */
static void drain(const struct config *cfg)
{
	unsigned seconds = cfg->shutdown_timeout > 86400 ? 86400 : (unsigned)cfg->shutdown_timeout;
	unsigned left = milter_session_wait(seconds);
	if (left > 0)
		log_warn("milter: %u conversation(s) still open after shutdown_timeout (%" PRIu64
			 "s): left to the MTA's milter_default_action", left, cfg->shutdown_timeout);
}

/* libmilter's loop, on a thread of its own; the main thread waits for
 * the supervisor's SIGUSR2. When libmilter stops by itself (its own
 * signal thread took SIGTERM, SIGHUP or SIGINT) the main thread is told
 * with a SIGUSR2 too. */
static _Atomic int libmilter_rc = -1;

static void *libmilter_thread(void *arg)
{
	(void)arg;
	libmilter_rc = smfi_main() == MI_SUCCESS ? 0 : 1;
	kill(getpid(), SIGUSR2);
	return NULL;
}

int milter_server_main(const struct config *cfg, bool scan, int ready_fd, bool first)
{
	struct milter_listen l;
	char err[160];
	struct stat st = { 0 };
	int quiet[2];
	if (milter_listen_parse(cfg->milter_listen, &l, err, sizeof(err)) < 0) {
		log_error("milter_listen: %s", err);
		return 1;
	}
	if (pipe2(quiet, O_CLOEXEC) < 0) {
		log_error("milter: pipe: %s", strerror(errno));
		return 1;
	}
	/* Every thread libmilter starts inherits this: its own signal thread
	 * waits for SIGHUP, SIGTERM and SIGINT, this one for SIGUSR2. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	milter_session_setup(cfg, scan);
	if (smfi_register(milter_session_desc) != MI_SUCCESS) {
		log_error("milter: libmilter refused to register the filter");
		return 1;
	}
	smfi_settimeout((int)(cfg->command_timeout > 86400 ? 86400 : cfg->command_timeout));
	smfi_setbacklog(LISTEN_BACKLOG);
	if ((l.is_unix ? open_unix(&l, &st, first) : open_inet(&l, first)) < 0)
		return 1;
	int listener = find_listener(-1);
	log_info("milter listening on %s%s (scan=%s)", l.is_unix ? "unix:" : "",
		 l.is_unix ? l.path : l.conn, scan ? "yes" : "off");
	pthread_t thread;
	if (pthread_create(&thread, NULL, libmilter_thread, NULL) != 0) {
		log_error("milter: cannot start libmilter's thread");
		return 1;
	}
	if (ready_fd >= 0) {
		char ready = MILTER_READY;
		if (write(ready_fd, &ready, 1) < 0)
			log_warn("milter: cannot tell the supervisor it is ready: %s", strerror(errno));
		close(ready_fd);
	}
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	int sig = 0;
	while (sigwait(&usr2, &sig) != 0 || sig != SIGUSR2)
		;
	int rc = 0;
	if (libmilter_rc >= 0) {
		rc = libmilter_rc; /* stopped by libmilter: its conversations are over */
		log_info("milter: libmilter stopped (status %d)", rc);
	} else if (listener < 0) {
		log_warn("milter: the listening socket is unknown: stopping at once");
	} else {
		stop_listening(listener, quiet[0]);
		drain(cfg);
	}
	/* The path still names our socket (no newer generation took it): remove it. */
	struct stat now;
	if (l.is_unix && stat(l.path, &now) == 0 && now.st_dev == st.st_dev &&
	    now.st_ino == st.st_ino)
		unlink(l.path);
	if (milter_session_count() == 0) /* else a thread may still use what it frees */
		milter_session_end();
	log_info("milter process stopped");
	return rc;
}
