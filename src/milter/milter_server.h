/*
 * milter_server.h - "postern milter": postern as the content filter of a
 * Postfix or Sendmail, over the milter protocol (libmilter).
 *
 * The supervisor (src/server/master.c in its milter mode) starts, as for
 * `serve`, the scan master of the generation (the content pipeline:
 * content rules, antivirus, spam scoring) and then one milter process,
 * unprivileged (`user`), which listens on milter_listen. Each MTA
 * conversation runs on a libmilter thread (milter_session.h): the message
 * (a trace field standing for the MTA's own Received:, the header fields
 * as the MTA sends them, then the body) is spooled with LF line ends to a
 * private, unlinked file (milter_spool.h); at its end it goes to the scan
 * master as an smtp worker's message does (milter_scan.h), and the
 * verdict becomes the milter's reply: REJECT and TEMPFAIL with the
 * verdict's code, enhanced status and text (smfi_setreply), DISCARD,
 * QUARANTINE (smfi_quarantine with the verdict's text: the MTA holds the
 * message), and the header changes of TAG, ACCEPT and QUARANTINE: the
 * fields the verdict removes (every occurrence counted while receiving,
 * smfi_chgheader with NULL) and the fields it adds, below the MTA's own
 * Received: as postern's own delivery puts them below its own
 * (smfi_insheader at index 1). The capture switch copies the message as
 * the MTA sent it (src/queue/capture.h), before the verdict.
 *
 * Bounds: message_size_limit (552 5.3.4, also from the SIZE= of MAIL),
 * header_size_limit and MILTER_SPOOL_FIELDS_MAX fields (552 5.3.4), the
 * scan's deadline (2 x scan_timeout + 5 s, then the failure verdict as
 * the smtp worker gives it: 451 4.7.0 or scan_fail_open), and
 * command_timeout for each read from the MTA (libmilter's timeout).
 *
 * Signals: libmilter's own stop (its signal thread takes SIGTERM, SIGHUP
 * and SIGINT) also abandons the conversations in progress, so the
 * supervisor never sends those: SIGUSR2 retires the process (a reload)
 * or stops it (a stop) alike. The listening socket is shut down at once
 * and the process exits once the conversations in progress have ended,
 * within shutdown_timeout. A new generation's process listens before the
 * old one is retired (a unix socket renamed over the path, a TCP port
 * shared with SO_REUSEPORT), so no MTA connection is refused (see
 * docs/architecture.md, "The milter server").
 *
 * Logs: one line per message keyed by the MTA's queue id ({i}); metrics:
 * postern_milter_conversations_total, postern_milter_messages_total
 * {action, reason}.
 *
 * Untrusted input: everything the MTA relays (envelope, header fields,
 * body, macros) and the verdicts. Privilege: `user`, no listening socket
 * but milter_listen, no key, no tables.
 */
#ifndef POSTERN_MILTER_SERVER_H
#define POSTERN_MILTER_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/config.h"

#define MILTER_READY '1'

/* milter_listen, understood. */
struct milter_listen {
	bool is_unix;
	char path[96];      /* unix: the socket's path (absolute) */
	char conn[160];     /* inet: libmilter's "inet:PORT@HOST" / "inet6:PORT@HOST" */
	char host[104];     /* inet: the host (an IPv6 address without brackets) */
	char port[6];       /* inet: the port */
	bool v6;            /* inet: the host was in brackets */
};

/*
 * Parse spec ("unix:/PATH" or "inet:HOST:PORT", HOST an address or a
 * name, an IPv6 address in brackets, a port the milter process may bind
 * as user: from net.ipv4.ip_unprivileged_port_start, usually 1024, up).
 * 0, or -1 with err filled (without the key's name).
 */
int milter_listen_parse(const char *spec, struct milter_listen *out, char *err, size_t size);

/*
 * The milter process: listen on cfg's milter_listen (a unix socket is
 * bound beside its path and renamed into place, so that a reload never
 * leaves the path without a listener), write MILTER_READY on ready_fd
 * (-1: nobody waits) and serve until SIGTERM, then drain. scan: ask the
 * scan master (false: scanning is off, every message is accepted as it
 * is). first: postern milter is starting, so a socket something else
 * listens on (another postern milter with the same configuration, another
 * program) is refused instead of taken over, as a reload's process does.
 * Returns the exit status.
 */
int milter_server_main(const struct config *cfg, bool scan, int ready_fd, bool first);

#endif
