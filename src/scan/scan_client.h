/*
 * scan_client.h - the smtp worker's side of content scanning: a check at
 * POLICY_END_OF_DATA that hands the message (its queue file, read-only,
 * and content range) to the scan master and waits for the verdict without
 * blocking the worker's event loop (docs/scanning.md).
 *
 * One connection to the scan master per worker, opened at the first
 * message and again after the master went away or asked the worker to
 * (DRAIN, after a reload); many requests outstanding on it. Each request
 * has its own deadline, 2 x scan_timeout + SCAN_CLIENT_MARGIN seconds
 * (a message waits at most scan_timeout for a free scanner and at most
 * scan_timeout in one: the master answers within that unless it is
 * stuck). A message whose scan cannot be had (no master, a broken
 * connection, the deadline) gets the failure verdict: 451 4.7.0, or
 * accepted with a log line when scan_fail_open is set. A session that
 * goes away cancels its check: the verdict, when it comes, is dropped.
 *
 * The verdict maps onto the policy's: ACCEPT -> DUNNO (TAG when it adds
 * header fields), TAG, REJECT and TEMPFAIL (code, status, text), DISCARD,
 * QUARANTINE (header fields kept). One log line per scanned message,
 * keyed by queue id: action, reason, hits, total delay and each stage's
 * time.
 *
 * Untrusted input: the verdicts (decoded by scan_proto.c). Privilege:
 * unprivileged smtp worker, on its event loop.
 */
#ifndef POSTERN_SCAN_CLIENT_H
#define POSTERN_SCAN_CLIENT_H

#include <event2/event.h>

#include "../lib/config.h"
#include "../policy/policy.h"

#define SCAN_CLIENT_MARGIN 5

struct scan_client;

/* A client of the scan master listening at socket_path (copied). */
struct scan_client *scan_client_new(struct event_base *base, const struct config *cfg,
				    const char *socket_path);
/* Add the end-of-data check to env (it uses c until c is freed). */
void scan_client_register(struct scan_client *c, struct policy_env *env);
/* Close the connections. Requests still waiting are dropped without an
 * answer: call it when no session is left (the worker is exiting). */
void scan_client_free(struct scan_client **c);

#endif
