/*
 * session.h - the SMTP server side of one smtp worker process: a server
 * context shared by all sessions of the worker and the per-connection
 * session state machine (RFC 5321, 1869, 1870, 2920, 3030, 3207, 3463,
 * 6152, 6531).
 *
 * Runs unprivileged, inside a libevent loop, many sessions per process.
 * Every byte a session reads comes from an untrusted client.
 */
#ifndef POSTERN_SMTP_SESSION_H
#define POSTERN_SMTP_SESSION_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "../lib/config.h"
#include "../policy/limits.h"
#include "../policy/policy.h"
#include "../queue/commit.h"
#include "../queue/flow.h"
#include "../queue/notifier.h"

struct smtp_session;
struct auth_client;
struct capture;

/* What a listening socket is for (postern.conf: listen, submission_listen,
 * smtps_listen). */
enum smtp_listener {
	SMTP_LISTENER_MX,         /* port 25: AUTH only with smtp_auth = yes */
	SMTP_LISTENER_SUBMISSION, /* RFC 6409, port 587: AUTH before MAIL */
	SMTP_LISTENER_SMTPS,      /* RFC 8314, port 465: TLS from the first byte, AUTH before MAIL */
};

struct smtp_server {
	struct event_base *base;
	const struct config *cfg;
	struct policy_env policy;
	struct queue_committer *committer; /* commits off the event loop */
	struct queue_flow *flow;           /* in-flow back-pressure; NULL = off */
	struct notifier *notifier;         /* the administrator's notices; NULL = off */
	struct capture *capture;           /* the capture switch; NULL = never on */
	struct limits *limits;             /* counts across workers; NULL = off */
	struct auth_client *auth;          /* the auth process; NULL = no AUTH */
	struct milter_client *milters;     /* the milters called; NULL = none */
	uint64_t sessions_started;         /* the next session's id */
	SSL_CTX *tls_ctx;       /* NULL: STARTTLS not offered */
	int notify_fd;          /* queue manager wake-up pipe, or -1 */
	bool draining;          /* SIGTERM: finish transactions, then close */
	bool retiring;          /* reload: no new connections, sessions go on */
	size_t session_count;   /* every session, lingering ones included */
	size_t lingering_count; /* closed, waiting for the client's FIN */
	struct smtp_session *sessions; /* doubly linked list of live sessions */
	/* Called after each session is freed (a descriptor came free). */
	void (*on_session_freed)(struct smtp_server *srv);
	/* Called when draining and the last session is gone. */
	void (*on_drained)(struct smtp_server *srv);
};

/* Take over an accepted connection: greet (or refuse with 421 when the
 * worker is full) and run the dialogue. fd is closed on every path. */
void smtp_session_start(struct smtp_server *srv, int fd, const struct sockaddr *sa,
			socklen_t salen);
/* The same for a connection of the given listener (SMTP_LISTENER_SMTPS:
 * the TLS handshake comes first; needs srv->tls_ctx). */
void smtp_session_start_on(struct smtp_server *srv, int fd, const struct sockaddr *sa,
			   socklen_t salen, enum smtp_listener listener);

/* Begin a graceful drain: idle sessions get 421 4.3.2 and are closed;
 * sessions inside a transaction finish it first. */
void smtp_server_drain(struct smtp_server *srv);

/* Reload: a newer generation accepts from now on; the sessions of this
 * one carry on until their clients quit (or time out), then on_drained
 * is called. */
void smtp_server_retire(struct smtp_server *srv);

/* Close every session at once (end of the shutdown timeout). */
void smtp_server_close_all(struct smtp_server *srv);

#endif
