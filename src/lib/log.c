/*
 * log.c - timestamped single-line logging to stderr (see log.h).
 *
 * Each line is formatted in full and written with one write(2), so lines of
 * concurrent processes sharing stderr do not interleave. Control characters
 * from untrusted text are escaped as \xNN so a client cannot forge lines.
 */
#include "log.h"
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_role = "postern";
static enum log_level log_min = LOG_INFO;

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
	for (const char *p = text; *p != '\0' && len < sizeof(line) - 6; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "\\x%02x", c);
		else
			line[len++] = (char)c;
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
