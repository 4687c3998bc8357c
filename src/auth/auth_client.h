/*
 * auth_client.h - how a network-facing worker (smtp, pop3) asks the auth
 * process to check a login, without blocking its event loop.
 *
 * The auth process is the only role that reads the password hashes of
 * users_file; the workers send it a user name and a password over a
 * unix socket and get back a verdict. Slow hashes (yescrypt, bcrypt,
 * SHA512-CRYPT) and the throttling of failed logins (a growing delay,
 * then a temporary ban, per client address and per user) happen there,
 * so a worker only waits for a callback.
 *
 * Contract:
 * - auth_client_new() never connects at once; the first request does,
 *   and a broken connection is made again at the next request.
 * - auth_client_check() always answers exactly once through done, from
 *   the event loop (never from inside auth_client_check itself), unless
 *   the request is cancelled first. If the auth process cannot be
 *   reached or does not answer within its deadline, the verdict is
 *   AUTH_TEMPFAIL.
 * - auth_client_cancel() may be called any time before done ran (the
 *   client went away); done is then never called. It sets *req to NULL.
 * - The password is copied into the request, sent, and the copy wiped;
 *   the caller wipes its own.
 * - auth_client_free() cancels every outstanding request silently.
 */
#ifndef POSTERN_AUTH_CLIENT_H
#define POSTERN_AUTH_CLIENT_H

#include <event2/event.h>
#include <stddef.h>

enum auth_verdict {
	AUTH_OK,          /* the password is right: user_r is the account */
	AUTH_FAILED,      /* wrong user or password: 535 5.7.8 / -ERR [AUTH] */
	AUTH_THROTTLED,   /* too many failures from here or for this user:
			   * 454 4.7.0 / -ERR [IN-USE]-like temporary refusal */
	AUTH_TEMPFAIL,    /* the auth process cannot answer now: 454 4.7.0 */
};

/* Which listener asks: logged, and lets the auth process apply the
 * policy of that service. The values travel on the auth socket and are
 * part of a POP3 ticket's MAC: append only, never renumber. */
enum auth_service {
	AUTH_SERVICE_SMTP,
	AUTH_SERVICE_SUBMISSION,
	AUTH_SERVICE_POP3,
	AUTH_SERVICE_SMTPS, /* implicit TLS submission (smtps_listen) */
	AUTH_SERVICE_LAST = AUTH_SERVICE_SMTPS,
};

struct auth_query {
	enum auth_service service;
	const char *client_ip;   /* textual address of the peer */
	const char *user;        /* as the client typed it */
	const char *password;    /* NUL-free; the client's bytes */
	const char *session_id;  /* for the log lines */
};

struct auth_result {
	enum auth_verdict verdict;
	const char *user;        /* AUTH_OK: the canonical account
				  * (lower-case user@domain); else NULL */
	const char *why;         /* short text for the log, never the password */
	const char *ticket;      /* AUTH_OK for AUTH_SERVICE_POP3: the login
				  * ticket (auth_ticket.h) the mailbox agent
				  * asks for; else NULL */
};

struct auth_client;
struct auth_request;

typedef void auth_done_fn(void *arg, const struct auth_result *result);

/* A client of the auth process listening at socket_path. */
struct auth_client *auth_client_new(struct event_base *evb, const char *socket_path);
void auth_client_free(struct auth_client **c);

/* Ask; done(arg, result) is called once later from the loop. Returns the
 * request handle (never NULL). */
struct auth_request *auth_client_check(struct auth_client *c, const struct auth_query *q,
				       auth_done_fn *done, void *arg);
void auth_client_cancel(struct auth_request **req);

#endif
