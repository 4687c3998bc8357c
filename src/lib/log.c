/*
 * log.c - timestamped single-line logging to stderr or to the local
 * syslog socket (see log.h).
 *
 * Each line is formatted in full and written with one write(2) (stderr)
 * or sent as one datagram (syslog), so lines of concurrent processes do
 * not interleave. Control characters from untrusted text are escaped as
 * \xNN so a client cannot forge lines.
 *
 * Syslog: RFC 3164 lines ("<PRI>Mmm dd hh:mm:ss postern/ROLE[PID]: ...")
 * on an AF_UNIX datagram socket (syslog_socket, /dev/log by default), as
 * syslog(3) writes them, but to a path of our choosing and with the role
 * in the tag. The socket is opened on the first line and shared by the
 * processes forked after that (a datagram socket can be); a process that
 * finds it closed or replaced opens its own. A line that cannot be sent
 * (no syslog daemon) goes to stderr instead of being lost.
 */
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *log_role = "postern";
static enum log_level log_min = LOG_INFO;

/* Syslog output (log_use_syslog); path "" = stderr. The lock guards the
 * socket's (re)opening: the queue manager logs from several threads. */
static struct {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int facility; /* already shifted: LOG_MAIL is 2 << 3 */
	int fd;
	ino_t ino;   /* of fd, to know it is still ours after a fork */
	pid_t owner; /* the process that checked fd last */
	pthread_mutex_t lock;
} sys = { "", 0, -1, 0, 0, PTHREAD_MUTEX_INITIALIZER };

/* syslog.h's facility codes (shifted), in the order of enum syslog_facility. */
static const int facility_codes[] = { 2 << 3, 3 << 3, 1 << 3, 16 << 3, 17 << 3, 18 << 3,
				      19 << 3, 20 << 3, 21 << 3, 22 << 3, 23 << 3 };

/* In a child of fork(): a lock another thread held at the fork would
 * stay held for ever; the child has only the forking thread. */
static void unlock_in_child(void)
{
	pthread_mutex_init(&sys.lock, NULL);
}

int log_use_syslog(const char *socket_path, enum syslog_facility facility)
{
	static bool atfork_set;
	if (!atfork_set && pthread_atfork(NULL, NULL, unlock_in_child) == 0)
		atfork_set = true;
	if (strlen(socket_path) >= sizeof(sys.path) ||
	    (size_t)facility >= ARRAY_LEN(facility_codes)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	pthread_mutex_lock(&sys.lock);
	snprintf(sys.path, sizeof(sys.path), "%s", socket_path);
	sys.facility = facility_codes[facility];
	pthread_mutex_unlock(&sys.lock);
	return 0;
}
void log_set_role(const char *role)
{
	log_role = role;
	metrics_process_role(role); /* the metrics' processes per role */
}

void log_set_level(enum log_level level)
{
	log_min = level;
}

static const char *const level_names[] = { "debug", "info", "warn", "error" };

const char *log_level_name(enum log_level level)
{
	return (size_t)level < ARRAY_LEN(level_names) ? level_names[level] : "?";
}

bool log_level_parse(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return true;
		}
	}
	return false;
}

/* syslog severities: emerg 0 .. debug 7. */
static int severity(enum log_level level, bool fatal, bool panic)
{
	if (panic)
		return 1; /* alert */
	if (fatal)
		return 2; /* crit */
	return level == LOG_DEBUG ? 7 : level == LOG_INFO ? 6 : level == LOG_WARN ? 4 : 3;
}

/* Under sys.lock: a connected socket of this process, or -1. */
static int syslog_socket(void)
{
	pid_t me = getpid();
	if (sys.fd >= 0 && sys.owner != me) {
		/* inherited: still the same socket, or closed (and its number
		 * maybe reused) by the role? */
		struct stat st;
		if (fstat(sys.fd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_ino != sys.ino)
			sys.fd = -1;
		sys.owner = me;
	}
	if (sys.fd >= 0)
		return sys.fd;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sys.path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct stat st;
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	sys.fd = fd;
	sys.ino = st.st_ino;
	sys.owner = me;
	return fd;
}

/* Send one line (tag onwards) to syslog; false if it could not go. */
static bool syslog_send(int sev, const struct tm *local, const char *line, size_t len)
{
	static const char months[][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char msg[4200];
	int n = snprintf(msg, sizeof(msg), "<%d>%s %2d %02d:%02d:%02d %.*s", sys.facility | sev,
			 months[local->tm_mon % 12], local->tm_mday, local->tm_hour, local->tm_min,
			 local->tm_sec, (int)len, line);
	size_t mlen = n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
	bool sent = false;
	pthread_mutex_lock(&sys.lock);
	for (int attempt = 0; attempt < 2 && !sent; attempt++) {
		int fd = syslog_socket();
		if (fd < 0)
			break;
		ssize_t w;
		do
			w = send(fd, msg, mlen, MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		sent = w == (ssize_t)mlen;
		if (!sent) { /* the daemon restarted: a new socket, once */
			close(fd);
			sys.fd = -1;
		}
	}
	pthread_mutex_unlock(&sys.lock);
	return sent;
}

static const char *level_name(enum log_level level, bool fatal, bool panic)
{
	if (panic)
		return "panic";
	if (fatal)
		return "fatal";
	switch (level) {
	case LOG_DEBUG:
		return "debug";
	case LOG_INFO:
		return "info";
	case LOG_WARN:
		return "warning";
	case LOG_ERROR:
		return "error";
	}
	return "?";
}

static void log_emit(enum log_level level, bool fatal, bool panic,
		     const char *fmt, va_list ap) PRINTF_LIKE(4, 0);

static void log_emit(enum log_level level, bool fatal, bool panic,
		     const char *fmt, va_list ap)
{
	char text[2048], line[4096];
	struct timeval tv;
	struct tm tm;

	vsnprintf(text, sizeof(text), fmt, ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ postern/%s[%ld]: %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), log_role,
			 (long)getpid(), level_name(level, fatal, panic));
	size_t len = n > 0 ? (size_t)n : 0;
	size_t tag = len; /* where "postern/ROLE[PID]: " starts */
	for (const char *t = line; t < line + len; t++)
		if (*t == ' ') {
			tag = (size_t)(t - line) + 1;
			break;
		}
	for (const char *p = text; *p != '\0' && len < sizeof(line) - 6; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "\\x%02x", c);
		else
			line[len++] = (char)c;
	}
	if (sys.path[0] != '\0' && tag < len) {
		struct tm local;
		localtime_r(&tv.tv_sec, &local);
		int saved = errno;
		bool sent = syslog_send(severity(level, fatal, panic), &local, line + tag, len - tag);
		errno = saved;
		if (sent)
			return;
	}
	line[len++] = '\n';
	ssize_t ignored = write(STDERR_FILENO, line, len);
	(void)ignored;
}

#define LOG_BODY(level, fatal, panic)                                      \
	do {                                                                \
		va_list ap;                                                 \
		va_start(ap, fmt);                                          \
		log_emit(level, fatal, panic, fmt, ap);                     \
		va_end(ap);                                                 \
	} while (0)

void log_debug(const char *fmt, ...)
{
	if (log_min <= LOG_DEBUG)
		LOG_BODY(LOG_DEBUG, false, false);
}

void log_info(const char *fmt, ...)
{
	if (log_min <= LOG_INFO)
		LOG_BODY(LOG_INFO, false, false);
}

void log_warn(const char *fmt, ...)
{
	if (log_min <= LOG_WARN)
		LOG_BODY(LOG_WARN, false, false);
}

void log_error(const char *fmt, ...)
{
	LOG_BODY(LOG_ERROR, false, false);
}

void log_fatal(const char *fmt, ...)
{
	LOG_BODY(LOG_ERROR, true, false);
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	LOG_BODY(LOG_ERROR, false, true);
	abort();
}
