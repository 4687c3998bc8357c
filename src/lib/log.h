/*
 * log.h - one line per event, to stderr (for systemd and supervisors) or
 * to the local syslog daemon (log_use_syslog).
 *
 * Format: "2026-11-22T22:03:01.123Z postern/ROLE[PID]: LEVEL: text".
 * Lines about a message start with its queue id and carry key=value fields,
 * e.g. "0123ABC: to=<a@b> relay=maildir delay=0.02 status=sent (delivered)".
 *
 * Three levels of trouble: log_panic = our bug (abort), log_fatal = broken
 * environment (exit 1), recoverable errors are returned to the caller as -1
 * with an error string and logged with log_warn/log_error where handled.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdbool.h>

#include "compat.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
/* Where log lines go (log_to), and the syslog facility, in the
 * order of the configuration's words. */
enum log_to { LOG_TO_STDERR, LOG_TO_SYSLOG, LOG_TO_FILE };
enum syslog_facility { FACILITY_MAIL, FACILITY_DAEMON, FACILITY_USER, FACILITY_LOCAL0,
		       FACILITY_LOCAL1, FACILITY_LOCAL2, FACILITY_LOCAL3, FACILITY_LOCAL4,
		       FACILITY_LOCAL5, FACILITY_LOCAL6, FACILITY_LOCAL7 };


/* From now on send lines to the syslog daemon listening on socket_path
 * (an AF_UNIX datagram socket, e.g. /dev/log) with facility, as
 * "postern/ROLE[PID]: LEVEL: text" (the level also as the syslog
 * severity); a line it does not take goes to stderr. Processes forked
 * afterwards inherit the choice. -1 if the path is too long. */
int log_use_syslog(const char *socket_path, enum syslog_facility facility);

/* Set the role name shown in every line ("master", "smtp", "qmgr", ...);
 * the process is also listed under it in the metrics (metrics.h). */
void log_set_role(const char *role);
void log_set_level(enum log_level level);
/* "debug", "info", "warn" or "error": the configuration's spelling. */
const char *log_level_name(enum log_level level);
/* Parse "debug", "info", "warn", "error"; false if unknown. */
bool log_level_parse(const char *name, enum log_level *level_r);

void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_info(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_warn(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_error(const char *fmt, ...) PRINTF_LIKE(1, 2);
NORETURN void log_fatal(const char *fmt, ...) PRINTF_LIKE(1, 2);
NORETURN void log_panic(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
