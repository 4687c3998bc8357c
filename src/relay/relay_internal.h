/*
 * relay_internal.h - the relay delivery agent's own state, shared by its
 * files: the agent (relay_agent.c: requests, destinations, scheduling),
 * the SMTP client sessions (relay_session.c), the next hop's addresses
 * (relay_resolve.c) and TLS (relay_tls.c). Not a public interface (see
 * relay.h).
 *
 * Everything runs on one libevent loop in one thread. Untrusted input:
 * the peers' replies and DNS answers (see the .c files). Privilege: the
 * relay agent (`user`: no mailbox access; it opens no spool path).
 */
#ifndef POSTERN_RELAY_INTERNAL_H
#define POSTERN_RELAY_INTERNAL_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/queue.h>

#include "../dns/dns.h"
#include "../lib/config.h"
#include "../queue/maildir_header.h"
#include "../queue/queue_file.h"
#include "relay_body.h"
#include "relay_proto.h"
#include "relay_reply.h"

#define RELAY_ADDRS_MAX 10   /* addresses tried per delivery (all MX hosts) */
#define RELAY_MX_HOSTS_MAX 10
#define RELAY_DEST_FAILS 2   /* failed sessions in a row that back a destination off */
#define RELAY_HOPS_MAX 100   /* Received: fields a message may carry onward (RFC 5321 6.3) */
#define RELAY_HOPS_SCAN (1024 * 1024) /* header octets read to count them */

struct relay_agent;
struct relay_dest;
struct relay_session;

/* One DELIVER request: one message, some recipients, one next hop. */
struct relay_job {
	TAILQ_ENTRY(relay_job) link;
	struct relay_agent *agent;
	struct relay_dest *dest;
	struct relay_msg *req;  /* the request; results are filled into req->rcpts */
	int fd;                 /* the queue file, read-only */
	struct qf_msg msg;      /* read from fd: header edits, sender, content range */
	bool msg_read;
	bool *accepted;         /* per recipient: RCPT got 2xx in this transaction */
	bool *settled;          /* per recipient: a result is set */
	char peer[RELAY_PEER_MAX + 1];
};
TAILQ_HEAD(relay_job_list, relay_job);

/* Everything to one next hop with one TLS level. */
struct relay_dest {
	TAILQ_ENTRY(relay_dest) link;
	char key[RELAY_HOST_MAX + 32];
	struct relay_nexthop hop;
	enum relay_tls_level tls;
	struct relay_job_list jobs;  /* waiting for a session */
	size_t queued;
	size_t sessions;             /* open or opening */
	unsigned fails;              /* failed sessions in a row */
	uint64_t dead_until_ms;      /* backed off until then (monotonic), 0 = not */
	char last_error[RELAY_REASON_MAX + 1];
	struct relay_session *idle;  /* connected sessions waiting for a job */
};
TAILQ_HEAD(relay_dest_list, relay_dest);

/* An encoded RESULT waiting for room in the socket. */
struct relay_out {
	TAILQ_ENTRY(relay_out) link;
	size_t len;
	unsigned char data[];
};
TAILQ_HEAD(relay_out_list, relay_out);

struct relay_agent {
	const struct config *cfg;
	struct event_base *base;
	struct dns_resolver *dns;
	SSL_CTX *tls_ctx;       /* no verification (may, encrypt) */
	SSL_CTX *tls_ctx_verify; /* verify: tls_ca_file or the system's store; NULL if unusable */
	int sock;
	int lock_fd;
	struct event *sock_ev;
	struct event *tick;     /* wakes dead destinations up */
	struct event *out_ev;   /* the socket is writable again */
	struct relay_out_list outbox; /* RESULTs the socket had no room for */
	struct relay_dest_list dests;
	size_t sessions;        /* all sessions */
	size_t jobs;            /* requests not yet answered */
	bool stopping;
	int status;
};

/* relay_agent.c */
uint64_t relay_now_ms(void);
/* A recipient's result (first one wins). */
void relay_job_set(struct relay_job *j, size_t i, enum relay_result res, const char *reason);
/* Every recipient not yet settled gets this result. */
void relay_job_set_rest(struct relay_job *j, enum relay_result res, const char *reason);
/* Send the RESULT and free the job. */
void relay_job_done(struct relay_job *j);
/* The next job of the destination for a session that can take one; NULL if none. */
struct relay_job *relay_dest_next_job(struct relay_dest *d);
/* A session ended: connected says whether it got as far as a working
 * EHLO/HELO (success resets the destination's failure count); error is
 * the reason when it did not. Starts other sessions as limits allow. */
void relay_session_ended(struct relay_agent *a, struct relay_dest *d, bool connected,
			 bool counts_as_failure, const char *error);

/* relay_session.c: start a session for d with its first job (taken from
 * the destination's queue). */
void relay_session_start(struct relay_agent *a, struct relay_dest *d, struct relay_job *j);
/* Close one idle session of d (QUIT): its slot frees once it is gone;
 * false if none idles. */
bool relay_session_close_idle(struct relay_dest *d);
/* Give an idle session of d (d->idle) its next job; false if none idles. */
bool relay_session_reuse(struct relay_dest *d, struct relay_job *j);

/* relay_resolve.c: the addresses of a next hop, best first. */
struct relay_addr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char host[RELAY_HOST_MAX + 1];  /* the MX host (or next hop) it belongs to */
	char text[64];                  /* numeric address */
};

enum relay_resolve_status { RESOLVE_OK, RESOLVE_TEMP, RESOLVE_PERM };

typedef void relay_resolve_cb(void *arg, enum relay_resolve_status st, const char *reason,
			      const struct relay_addr *addrs, size_t count);
struct relay_resolve;
/* Look the next hop up; cb comes later from the loop, exactly once,
 * unless cancelled. */
struct relay_resolve *relay_resolve_start(struct relay_agent *a, const struct relay_nexthop *hop,
					  relay_resolve_cb *cb, void *arg);
void relay_resolve_cancel(struct relay_resolve **r);

/* relay_tls.c */
/* The client contexts; -1 (logged) if the basic one cannot be made. */
int relay_tls_init(struct relay_agent *a);
void relay_tls_free(struct relay_agent *a);

#endif
