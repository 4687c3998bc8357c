/*
 * pop3_int.h - the pop3 worker's insides shared by its files: the
 * server (listeners, the agent link, the auth client), the session, and
 * the link to the mailbox agent.
 *
 * Untrusted input: see each file. Privilege: the pop3 worker (`user`).
 */
#ifndef POSTERN_POP3_INT_H
#define POSTERN_POP3_INT_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../auth/auth_client.h"
#include "../lib/config.h"
#include "pop3_command.h"
#include "pop3_message.h"
#include "pop3_proto.h"

/* ---- the link to the mailbox agent (pop3_agent_link.c) ---- */

/* A reply for a request: ENTRIES (maybe several), then the final one.
 * fds are the messages of a MAIL reply (reply->fetch_count of them; the
 * callee owns them). */
typedef void pop3_agent_reply_fn(void *arg, const struct pop3_msg *reply, const int *fds);

struct pop3_agent_link;
struct pop3_agent_link *pop3_agent_link_new(struct event_base *base, int sock);
void pop3_agent_link_free(struct pop3_agent_link **l);
/* Send req; reply is called for its answers (CLOSE has none: NULL). */
void pop3_agent_ask(struct pop3_agent_link *l, const struct pop3_msg *req,
		    pop3_agent_reply_fn *reply, void *arg);
/* arg is going away: its outstanding replies are dropped (a MAIL's
 * descriptors closed). */
void pop3_agent_forget(struct pop3_agent_link *l, void *arg);

/* ---- the server ---- */

/* How logins are checked: the auth client, or a test's fake. */
struct pop3_auth_ops {
	struct auth_request *(*check)(void *ctx, const struct auth_query *q,
				      auth_done_fn *done, void *arg);
	void (*cancel)(struct auth_request **req);
	void *ctx;
};

struct pop3_session;

struct pop3_server {
	struct event_base *base;
	const struct config *cfg;
	SSL_CTX *tls_ctx;                /* NULL: no TLS (no STLS, no pop3s) */
	struct pop3_agent_link *agent;
	struct pop3_auth_ops auth;
	struct pop3_session *sessions;
	size_t session_count;
	uint32_t last_sid;
	bool draining, retiring;
	void (*on_drained)(struct pop3_server *srv);
	void (*on_session_freed)(struct pop3_server *srv);
};

/* ---- the session (pop3_session.c, pop3_commands.c) ---- */

enum pop3_state { POP3_ST_AUTHORIZATION, POP3_ST_TRANSACTION };
enum pop3_wait {
	POP3_WAIT_NONE,
	POP3_WAIT_LOGIN,  /* the auth process's verdict */
	POP3_WAIT_OPEN,   /* the agent opens the maildrop */
	POP3_WAIT_FETCH,  /* the agent opens one message */
	POP3_WAIT_SEND,   /* a message is being sent */
	POP3_WAIT_UPDATE, /* the agent makes QUIT's changes */
};

struct pop3_mail_view {
	uint64_t size;
	char uid[POP3_UID_MAX + 1];
};

struct pop3_session {
	struct pop3_server *srv;
	struct pop3_session *prev, *next;
	uint32_t sid;
	int fd;
	struct bufferevent *bev;
	SSL *ssl;
	struct event *timer, *step;
	struct sockaddr_storage peer;
	char peer_addr[INET6_ADDRSTRLEN];
	unsigned peer_port;
	bool implicit_tls;   /* a pop3s listener's */
	bool tls;            /* TLS started (handshake maybe not done) */
	bool tls_ready;      /* handshake done */
	bool tls_switch;     /* STLS answered: switch once the reply is out */
	bool closing, free_scheduled, peer_eof, read_paused, skipping_long_line;
	bool greeted;
	bool sasl_continuation; /* AUTH PLAIN without initial response: next line */
	enum pop3_state state;
	enum pop3_wait wait;
	char *user;          /* USER's argument */
	char *account;       /* the auth process's name of the account */
	struct auth_request *auth_req;
	unsigned errors, auth_failures, commands;
	/* the maildrop, once open */
	bool maildrop_open;  /* the agent holds it: CLOSE when done */
	struct pop3_mail_view *mails;
	size_t mail_count;
	uint8_t *marks;      /* POP3_MARK_DELETE / POP3_MARK_SEEN per message */
	/* the message asked for (RETR, TOP) while the agent opens it */
	size_t fetch_index;
	bool fetch_top;
	uint64_t fetch_lines;
	/* messages the agent opened ahead (FETCH's read ahead): prefetched[i]
	 * is message prefetch_first + i, -1 once taken */
	size_t prefetch_first;
	int prefetched[POP3_FETCH_MAX];
	size_t prefetch_count;
	/* the message being sent */
	int msg_fd;
	struct pop3_encoder enc;
	char *read_buf;
	unsigned retrieved, deleted;
};

/* Start a session on a connected socket (non-blocking); sa is the
 * client's address. */
void pop3_session_start(struct pop3_server *srv, int fd, const struct sockaddr *sa,
			socklen_t salen, bool implicit_tls);
/* SIGTERM: close every session without its update (QUIT's changes are
 * only made for a QUIT; one being made completes). */
void pop3_server_drain(struct pop3_server *srv);
/* SIGUSR2: the open sessions go on to their end. */
void pop3_server_retire(struct pop3_server *srv);

/* For pop3_commands.c: */
void pop3_reply(struct pop3_session *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
void pop3_reply_raw(struct pop3_session *s, const char *data, size_t len);
void pop3_close_after_flush(struct pop3_session *s);
/* "-ERR text", counted: the session ends at the error limit. */
void pop3_bad(struct pop3_session *s, const char *text);
void pop3_start_tls_after_reply(struct pop3_session *s);
/* The command deadline starts again and buffered input is processed. */
void pop3_resume(struct pop3_session *s);
/* Begin sending the message on fd (RETR, or TOP with top set). */
void pop3_send_message(struct pop3_session *s, int fd, bool top, uint64_t lines);
bool pop3_login_allowed(const struct pop3_session *s);

/* Handle one complete line (pop3_commands.c); line has room for len + 1. */
void pop3_handle_line(struct pop3_session *s, char *line, size_t len);
/* The session is going away: release the auth request, the agent's
 * answers and the maildrop. */
void pop3_session_release(struct pop3_session *s);

#endif
