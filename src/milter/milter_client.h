/*
 * milter_client.h - postern as the MTA of the Sendmail milter protocol:
 * the smtp worker calls the external filters listed in `milters` at every
 * stage of the SMTP dialogue and takes their answers as policy verdicts
 * (docs/architecture.md, "Milters"; postern.conf(5) MILTERS).
 *
 * One conversation per SMTP session per milter, opened when the session
 * starts and closed (QUIT) when it ends, driven by the worker's event
 * loop: a slow milter delays its own session only. At each stage one
 * policy check, "milter", asks the milters in their order; the first one
 * that refuses (or discards) decides, and the ones after it are not asked
 * for that command. End-of-message changes (header, body, envelope) come
 * back as the verdict's edits, quarantine as POLICY_QUARANTINE.
 *
 * Contract with the session: it creates a milter_session when it starts
 * (milter_session_new; NULL when no milter is configured), puts it into
 * every policy request (req.milter: borrowed; policy runs are cancelled
 * before the session frees it), calls milter_session_abort when a
 * transaction ends without its message being taken (RSET, HELO/EHLO,
 * a refused message), and milter_session_free at the end.
 *
 * Untrusted input: the milters' replies (milter_proto.c decodes them
 * strictly). Runs in the unprivileged smtp worker, on its event loop.
 */
#ifndef POSTERN_MILTER_CLIENT_H
#define POSTERN_MILTER_CLIENT_H

#include <event2/event.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "../lib/config.h"
#include "../policy/policy.h"

/* One milter of the `milters` list, with its settings. */
struct milter_spec {
	char name[128];                /* as written: "inet:127.0.0.1:8891" */
	struct sockaddr_storage addr;  /* AF_UNIX, AF_INET or AF_INET6 */
	socklen_t addr_len;
	uint64_t connect_timeout;      /* seconds */
	uint64_t command_timeout;
	uint64_t content_timeout;
	enum milter_action default_action;
};

struct milter_list {
	struct milter_spec *items;
	size_t count;
};

/*
 * Parse the `milters` value: comma-separated entries, each "unix:PATH",
 * "inet:HOST:PORT" (HOST a numeric address, [IPv6] in brackets, or
 * localhost), or "{ ADDRESS, key=value, ... }" with connect_timeout,
 * command_timeout, content_timeout and default_action overriding the
 * global keys for that milter. Returns 0, or -1 with a malloc'ed
 * *err_r naming the bad entry.
 */
int milter_list_parse(const char *text, const struct config *cfg, struct milter_list *list_r,
		      char **err_r);
void milter_list_free(struct milter_list *list);
/* check-config and the supervisor: the `milters` key, reported as
 * FILE:LINE; returns the number of problems. */
int milter_config_check(const struct config *cfg, FILE *errors);

/* ---- the worker's client ----------------------------------------------------- */

struct milter_client;

/* The client of cfg's milters (cfg must have passed milter_config_check);
 * NULL when the list is empty. */
struct milter_client *milter_client_new(struct event_base *base, const struct config *cfg);
/* Add the "milter" check to every stage of env. */
void milter_client_register(struct milter_client *c, struct policy_env *env);
/* When no session is left. */
void milter_client_free(struct milter_client **c);

/* ---- one SMTP session's conversations ----------------------------------------- */

struct milter_session;

/* Conversations for a new SMTP session; NULL when c is NULL. Nothing is
 * sent until the first stage's check. */
struct milter_session *milter_session_new(struct milter_client *c);
/* The transaction ended without its end of message: ABORT to each
 * milter inside a message. No check may be pending. */
void milter_session_abort(struct milter_session *ms);
/* An SMTP command the session did not know, to the milters that asked
 * for them (their answers are not used: the session refuses it anyway). */
void milter_session_unknown(struct milter_session *ms, const char *line);
/* The session ends: QUIT to each milter, connections closed. No check
 * may be pending (the session cancels its run first). NULL is fine. */
void milter_session_free(struct milter_session **ms);

#endif
