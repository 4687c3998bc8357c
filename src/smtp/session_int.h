/*
 * session_int.h - private state of an SMTP session, shared by the files
 * of src/smtp/ (session.c: connection and input loop; commands.c: the
 * command table; transaction.c: MAIL/RCPT/DATA/BDAT and the queue
 * hand-over). Not for use outside src/smtp/.
 */
#ifndef POSTERN_SMTP_SESSION_INT_H
#define POSTERN_SMTP_SESSION_INT_H

#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../lib/hashmap.h"
#include "../milter/milter_client.h"
#include "../queue/commit.h"
#include "../queue/flow.h"
#include "../queue/queue.h"
#include "command.h"
#include "data.h"
#include "reply.h"
#include "session.h"

/* What a handler gives back. A verdict_fn is what to do with a verdict,
 * now or when it arrives: fill out, or wait again (the end of data waits
 * for the verdict, then for the commit). */
enum step {
	STEP_REPLY, /* *out holds the reply (code 0: nothing to say yet) */
	STEP_WAIT,  /* the session waits; the reply follows when it resumes */
};

enum input_mode {
	MODE_COMMAND,
	MODE_DATA,    /* after 354, until CRLF.CRLF */
	MODE_BDAT,    /* reading a chunk of bdat_remaining bytes */
};

struct smtp_session;
struct smtp_reply;
typedef enum step verdict_fn(struct smtp_session *s, struct policy_reply *verdict,
			     struct smtp_reply *out);

/* One mail transaction, from MAIL to the end of data or RSET. */
struct smtp_tx {
	char id[QUEUE_ID_LEN + 1];
	uint64_t start_us;
	struct mail_address sender;
	char sender_text[ADDR_PATH_MAX + 1];
	strlist_t rcpts;            /* accepted, as "local@domain" */
	/* DSN (RFC 3461): RET and ENVID of MAIL; NOTIFY and ORCPT of each
	 * recipient, parallel to rcpts (orcpt "" = not given). */
	struct smtp_mail_dsn dsn;
	unsigned char *rcpt_notify;
	strlist_t rcpt_orcpt;
	hashmap_t rcpt_set;         /* the same, lower-cased: duplicates */
	uint64_t declared_size;     /* SIZE= or 0 */
	bool smtputf8;
	bool body_8bit;
	struct queue_writer *writer; /* open from DATA/first BDAT on */
	struct data_decoder decoder;
	buf_t decoded;              /* decoded bytes not yet given to writer */
	bool bdat_used;
	char *write_error;          /* first queue write error, malloc'ed */
	/* What the verdicts of the transaction decided besides accepting. */
	enum policy_verdict disposition; /* DUNNO, DISCARD, QUARANTINE or HOLD */
	char disposition_reason[64];
	char disposition_check[32];      /* and the rest of that verdict, for the */
	char disposition_text[512];      /* quarantine note and the notices */
	strlist_t disposition_hits;
	strlist_t add_headers;      /* "Name: value" lines from TAG verdicts */
	strlist_t remove_headers;   /* field names whose every occurrence goes */
	uint64_t eod_us;            /* verdict known, waiting for a flow token */
	uint64_t commit_start_us;   /* commit handed to a thread */
};

/* How far a session has got in closing. Replies queued before the close
 * must reach the client: a session is never freed while its output is
 * still in our buffers, only once it is in the kernel (or a bounded wait
 * expired), and the socket is closed only after the client's own input
 * was read to its end (or a short linger expired), so that no RST can
 * overtake the last reply. */
enum close_phase {
	CLOSE_NONE,
	CLOSE_FLUSHING,  /* last reply queued: waiting for the output to drain */
	CLOSE_LINGERING, /* write side shut down: discarding input until EOF */
};

struct smtp_session {
	struct smtp_server *srv;
	struct smtp_session *prev, *next;
	int fd;                     /* the socket, owned by the session */
	struct bufferevent *bev;    /* plain socket, then TLS on the same fd */
	SSL *ssl;                   /* owned; NULL before STARTTLS */
	struct event *timer;        /* the nearest of the deadlines below */
	struct event *step;         /* deferred work: TLS switch, close, free */
	struct event *linger;       /* read-and-discard while lingering */
	struct sockaddr_storage peer;
	char peer_addr[64];
	unsigned peer_port;
	char *helo;
	bool esmtp;
	bool tls;            /* STARTTLS accepted (220 sent or queued) */
	bool tls_switch;     /* 220 queued: start TLS once it is flushed */
	bool tls_ready;      /* handshake completed */
	enum smtp_listener listener; /* the socket it came in on */
	/* SMTP AUTH (auth.c): the account once logged in, else NULL; the
	 * step of a SASL exchange in progress (the next line is a response,
	 * not a command); the LOGIN user name between its two steps; the
	 * check the auth process is making (WAIT_AUTH). */
	char *auth_user;
	enum sasl_step { SASL_NONE, SASL_PLAIN, SASL_LOGIN_USER, SASL_LOGIN_PASSWORD } sasl_step;
	char *sasl_login_user;
	struct auth_request *auth_req;
	enum input_mode mode;
	uint64_t bdat_remaining;
	bool bdat_last;
	bool bdat_discard;          /* chunk refused: read it, then send bdat_error */
	struct smtp_reply bdat_error;
	bool skipping_long_line;
	enum close_phase close_phase;
	bool peer_eof;       /* the client shut down its side */
	bool no_linger;      /* close without waiting for the client (overload) */
	bool read_paused;    /* output backlog: reading stopped */
	bool free_scheduled; /* session_free() will run from the loop */
	/* Deadlines, monotonic milliseconds, 0 = none: the whole session,
	 * the open transaction, and the current phase (one command, one
	 * DATA phase or BDAT chunk, the TLS handshake, or closing). */
	uint64_t session_deadline;
	uint64_t tx_deadline;
	uint64_t phase_deadline;
	uint64_t data_started_ms;   /* DATA/BDAT phase: its start */
	uint64_t data_received;     /* and the bytes received since */
	size_t linger_discarded;
	unsigned errors;
	unsigned junk_commands;
	unsigned commands;
	unsigned messages;
	struct smtp_tx *tx;
	/* The conversations with the milters (milter_client.h), or NULL;
	 * every policy request borrows it. */
	struct milter_session *milter;
	/* Waiting for a verdict or a commit, the admission, the greet pause
	 * or an error delay: no command is read meanwhile. */
	enum wait_kind {
		WAIT_NONE, WAIT_VERDICT, WAIT_FLOW, WAIT_COMMIT,
		WAIT_ADMIT,  /* the limits across workers (greeting.c) */
		WAIT_GREET,  /* greet_pause (greeting.c) */
		WAIT_DELAY,  /* an error reply held back (error_delay) */
		WAIT_AUTH,   /* the auth process checks a password (auth.c) */
	} wait;
	struct policy_run *run;     /* WAIT_VERDICT */
	verdict_fn *then;           /* what to do with the verdict */
	enum policy_stage wait_stage;
	uint64_t wait_deadline;     /* WAIT_VERDICT: policy_timeout; WAIT_GREET, WAIT_DELAY: their end */
	uint64_t id;                /* unique in the worker: the limits' session */
	struct limits_admission *admission; /* WAIT_ADMIT */
	bool greeted;               /* the banner was sent (or the session refused) */
	bool early_talker;          /* talked before the greeting (logged once) */
	bool pipelined_early;       /* sent a command before PIPELINING was offered */
	buf_t delayed;              /* WAIT_DELAY: the error reply held back */
	struct queue_flow_wait *flow_wait; /* WAIT_FLOW */
	struct queue_commit *commit; /* WAIT_COMMIT */
	/* What a command that waits for its verdict carries over. */
	char *pending_helo;
	bool pending_esmtp;
	bool repeated_hello;         /* the HELO/EHLO in progress is not the first */
	unsigned mails_since_message; /* MAIL accepted since the last message */
	struct smtp_tx *pending_tx;  /* MAIL */
	/* A connect verdict that refuses at every RCPT (at_rcpt: a DNS
	 * blocklist listing), kept until the session ends; NULL = none. */
	struct policy_reply *rcpt_refusal;
	struct mail_address pending_rcpt;
	struct smtp_rcpt_dsn pending_rcpt_dsn; /* its NOTIFY and ORCPT */
	struct smtp_command pending_bdat;
};

static inline bool session_closing(const struct smtp_session *s)
{
	return s->close_phase != CLOSE_NONE;
}

/* ---- session.c ------------------------------------------------------------- */

/* Send a reply (and act on its flags: close, STARTTLS, error counting). */
void session_send(struct smtp_session *s, const struct smtp_reply *r);
/* Arm the session's timer for its nearest deadline. */
void session_arm_timer(struct smtp_session *s);

/* A request for the policy with what the session knows at this stage. */
void session_request(const struct smtp_session *s, enum policy_stage stage,
		     struct policy_request *req_r);
/* Ask the policy. STEP_REPLY: the verdict was immediate and then() has
 * filled out. STEP_WAIT: the session reads no further command until the
 * verdict arrives (or policy_timeout applies policy_default_action), then
 * then() runs and its reply is sent. req is copied. */
enum step session_ask(struct smtp_session *s, const struct policy_request *req,
		      verdict_fn *then, struct smtp_reply *out);
/* The end of data is waiting for a flow token (queue_flow_acquire), then
 * for its commit (queue_commit_start). */
void session_wait_flow(struct smtp_session *s, struct queue_flow_wait *w);
void session_wait_commit(struct smtp_session *s, struct queue_commit *commit);
/* The commit finished: send out and carry on with the input. */
void session_resume(struct smtp_session *s, const struct smtp_reply *out);
/* The transaction started (MAIL accepted): its deadline,
 * transaction_timeout, runs from now while s->tx is set. */
void session_tx_started(struct smtp_session *s);
/* A message was accepted: reset the junk-command count. */
void session_message_accepted(struct smtp_session *s);
/* A refusal for the metrics (postern_smtp_rejections_total): the stage
 * ("connect", "helo", "mail", "rcpt", "data", "end-of-data", "bdat",
 * "pipelining"), the reply code, the check that refused (the restriction
 * named in detail's "restriction=NAME" if there is one, else check) and
 * the reason key; check and detail may be NULL. */
void session_count_refusal(const char *stage, int code, const char *check, const char *reason,
			   const char *detail);
/* Bytes the client has sent that no command has consumed yet. */
size_t session_input_pending(const struct smtp_session *s);
/* Monotonic clock in milliseconds. */
uint64_t session_now_ms(void);

/* ---- greeting.c ------------------------------------------------------------ */

/* After the worker's own admission (worker_connections, draining): the
 * limits across workers, the connect checks, the greet pause, the
 * banner. */
void greeting_start(struct smtp_session *s);
/* Input arrived before the banner: an early talker. */
void greeting_input(struct smtp_session *s);
/* The greet pause is over: the banner (or the early talker's 554). */
void greeting_pause_over(struct smtp_session *s);

/* ---- commands.c ------------------------------------------------------------ */

/* One more command that moved no mail forward: past junk_command_limit
 * (counted since the last accepted message) out becomes an error reply. */
void session_count_junk(struct smtp_session *s, struct smtp_reply *out);

/* One command line, without its CRLF. */
enum step session_handle_line(struct smtp_session *s, const char *line, size_t len,
			      struct smtp_reply *out);

/* ---- auth.c (RFC 4954) ------------------------------------------------------- */

/* Is AUTH offered to this session now (in the EHLO reply)? */
bool smtp_auth_offered(const struct smtp_session *s);
/* Must the client log in before MAIL (submission and smtps listeners)? */
bool smtp_auth_required(const struct smtp_session *s);
/* The AUTH command. */
enum step smtp_auth_command(struct smtp_session *s, const struct smtp_command *cmd,
			    struct smtp_reply *out);
/* A line of the SASL exchange (s->sasl_step != SASL_NONE). */
enum step smtp_auth_response(struct smtp_session *s, const char *line, size_t len,
			     struct smtp_reply *out);
/* A response line was too long: the exchange ends (500 5.5.6 in out). */
void smtp_auth_line_too_long(struct smtp_session *s, struct smtp_reply *out);
/* MAIL: may this session use sender as its envelope sender? False after
 * filling out (530 without login where it is required, 553 when the
 * sender is not the user's). */
bool smtp_auth_mail_allowed(struct smtp_session *s, const struct mail_address *sender,
			    struct smtp_reply *out);
/* Forget the login and any exchange (STARTTLS, the end of the session);
 * a pending check is cancelled. */
void smtp_auth_reset(struct smtp_session *s);

/* ---- transaction.c ---------------------------------------------------------- */

void tx_free(struct smtp_tx **tx);
enum step tx_handle_mail(struct smtp_session *s, const struct smtp_command *cmd,
			 struct smtp_reply *out);
enum step tx_handle_rcpt(struct smtp_session *s, const struct smtp_command *cmd,
			 struct smtp_reply *out);
enum step tx_handle_data(struct smtp_session *s, struct smtp_reply *out);
enum step tx_handle_bdat(struct smtp_session *s, const struct smtp_command *cmd,
			 struct smtp_reply *out);
/* Feed raw input of MODE_DATA / MODE_BDAT; returns bytes consumed. */
size_t tx_consume(struct smtp_session *s, const char *data, size_t len);
/* After tx_consume: finish the message or chunk if its end was reached. */
enum step tx_after_consume(struct smtp_session *s, struct smtp_reply *out);
const char *session_protocol(const struct smtp_session *s);
/* The session goes away while its message is being committed: the
 * commit (and the transaction) carry on without it, and the message is
 * still announced to the queue manager and logged when it is durable. */
void tx_orphan_commit(struct smtp_session *s);

#endif
