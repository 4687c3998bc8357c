/*
 * policy.h - the per-stage decision of the SMTP session, synchronous or
 * not.
 *
 * At every stage of the dialogue (connect, HELO, MAIL, RCPT, DATA, end of
 * data) the session starts a *run* of that stage's ordered list of checks,
 * cheapest first. A check answers at once (a table lookup) or says
 * POLICY_PENDING and finishes later from the event loop (DNS, a scanner
 * process, a milter, a password hash), through policy_call_finish(). The
 * first final verdict decides; POLICY_TAG adds header lines and lets the
 * next checks run. The run carries its own copy of the request, so a late
 * check never reads memory the session has moved on from.
 *
 * Contract for checks: never block for longer than a local table lookup;
 * return POLICY_PENDING only after arranging to call policy_call_finish()
 * later from the event loop (never from inside the check function itself);
 * provide a cancel function if a pending check holds resources; fill the
 * call's reply for every verdict other than DUNNO.
 *
 * Runs in the unprivileged smtp worker; requests hold untrusted client
 * data (HELO, addresses).
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <event2/event.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "../lib/buf.h"
#include "../lib/config.h"
#include "../lib/strutil.h"
#include "../mail/address.h"
#include "../mail/recipients.h"

enum policy_stage {
	POLICY_CONNECT,
	POLICY_HELO,
	POLICY_MAIL,
	POLICY_RCPT,
	POLICY_DATA,
	POLICY_END_OF_DATA,
	POLICY_STAGE_COUNT
};

enum policy_verdict {
	POLICY_DUNNO,      /* no opinion: ask the next check */
	POLICY_ACCEPT,     /* accept now, skip the remaining checks of the stage */
	POLICY_REJECT,     /* 5xx */
	POLICY_TEMPFAIL,   /* 4xx */
	POLICY_DISCARD,    /* accept, then drop the message (logged, never delivered) */
	POLICY_QUARANTINE, /* accept into spool/quarantine/ */
	POLICY_HOLD,       /* accept into spool/hold/ */
	POLICY_TAG,        /* add the reply's header lines; the next checks still run */
	POLICY_PENDING,    /* a check's answer only: it finishes later */
};

/*
 * A change to the message that an end-of-data check asks for (a milter's
 * modification requests), applied in order to the queue file's trailer
 * (queue_writer_insert_header() and the others of queue.h) when the
 * message is accepted, and dropped when it is refused. Each header index
 * counts the header section as the edits before it left it (postern's own
 * Received: is its first field). Names and values are as the check got
 * them (a milter's value may hold CRLF or LF folds): whoever applies an
 * edit checks and normalises it, and an edit that the queue file refuses
 * is logged and skipped, never a reason to lose the message.
 */
enum policy_edit_type {
	POLICY_EDIT_ADD_HEADER,    /* name, value: at the end of the header section */
	POLICY_EDIT_INSERT_HEADER, /* index (0 = above the first field), name, value */
	POLICY_EDIT_CHANGE_HEADER, /* the index-th (1 = first) field called name gets
				    * value; value NULL: that field is removed */
	POLICY_EDIT_ADD_RCPT,      /* value: the address, without <> */
	POLICY_EDIT_DEL_RCPT,      /* value: the address, without <> */
	POLICY_EDIT_CHANGE_SENDER, /* value: the address, without <>; "" = <> */
	POLICY_EDIT_REPLACE_BODY,  /* body: everything after the header section's
				    * empty line (CRLF or LF line ends) */
};

struct policy_edit {
	enum policy_edit_type type;
	uint32_t index;
	char *name;  /* or NULL */
	char *value; /* or NULL */
	buf_t body;  /* REPLACE_BODY only */
};

typedef struct {
	struct policy_edit *items;
	size_t count, cap;
} policy_edits_t;

/* Append an edit (name and value copied, either may be NULL); the new
 * edit, for a body to be appended to. */
struct policy_edit *policy_edits_add(policy_edits_t *edits, enum policy_edit_type type,
				     uint32_t index, const char *name, const char *value);
/* Move every edit of from to the end of to; from is left empty. */
void policy_edits_move(policy_edits_t *to, policy_edits_t *from);
void policy_edits_free(policy_edits_t *edits);

/* A verdict with what the client is told and what the log says. */
struct policy_reply {
	enum policy_verdict verdict;
	int code;           /* 250, 451, 550, 554 ...; 0 = the stage's default */
	char status[12];    /* enhanced status code "5.7.1" */
	char text[512];     /* human text, without code */
	char reason[64];    /* short key for the log: "relay_denied" */
	strlist_t headers;  /* "Name: value" lines to add (TAG, and kept on accept) */
	strlist_t remove_headers; /* field names to remove from the message as received */
	/* What matched, for the quarantine note and the administrator's
	 * notices: "virus:NAME", "rule:NAME", "attachment:FILENAME" (the
	 * scan verdict's hits, moved here by the scan check). */
	strlist_t hits;
	/* END_OF_DATA: changes to the message (a milter's), kept on accept,
	 * quarantine and hold; they add up over the checks of the run. */
	policy_edits_t edits;
	char check[32];     /* the check that gave the final verdict (policy.c fills it) */
	/* More for the log line of a refusal, "key=value" words: which
	 * restriction of which list, which map and key. */
	char detail[320];
	/* A refusal at POLICY_CONNECT that the session gives at every RCPT
	 * instead, after a normal banner: clients handle a refused
	 * recipient well (a bounce, a log of sender and recipient), a
	 * refused banner badly (many retry, or try the next MX). */
	bool at_rcpt;
};

struct milter_session;

/* What a check may look at: copies, owned by whoever holds the request. */
struct policy_request {
	enum policy_stage stage;
	struct sockaddr_storage client;
	char client_addr[64];
	char *client_name;          /* verified host name; NULL when not known (no DNS yet) */
	char *helo;                 /* NULL before HELO/EHLO */
	bool tls;
	char *auth_user;            /* the account after a successful AUTH, else NULL */
	bool has_sender;
	struct mail_address sender; /* MAIL and later */
	bool has_rcpt;
	struct mail_address rcpt;   /* RCPT only */
	unsigned rcpt_count;        /* recipients accepted so far */
	uint64_t declared_size;     /* MAIL's SIZE= (RFC 1870), 0 when not given */
	char queue_id[24];          /* MAIL and later, "" before */
	/* END_OF_DATA, for content checks: the recipients as queued, and the
	 * message in its queue file (flushed: every byte is in the file),
	 * content_len bytes from content_off. */
	strlist_t rcpts;
	char *content_path;         /* spool_dir/incoming/ID; NULL before */
	uint64_t content_off;
	uint64_t content_len;
	/* For the milters' macros (src/milter/milter_client.h). */
	struct milter_session *milter; /* the session's conversations, borrowed
					* (runs are cancelled before it is freed); NULL = none */
	unsigned client_port;
	char daemon_name[16];       /* the listener: "mx", "submission" or "smtps" */
	char tls_version[16];       /* "TLSv1.3"; "" without TLS */
	char tls_cipher[64];
	int tls_cipher_bits;
	char auth_mech[24];         /* the SASL mechanism of the login; "" without */
};

struct policy_call; /* one check's part in a run */

typedef enum policy_verdict policy_check_fn(struct policy_call *call, void *arg);
typedef void policy_cancel_fn(struct policy_call *call, void *arg);

struct policy_check {
	const char *name;         /* for logs */
	policy_check_fn *run;
	policy_cancel_fn *cancel; /* may be NULL for checks that never pend */
	void *arg;
};

#define POLICY_MAX_CHECKS 32

struct restrictions;
struct dns_resolver;

struct policy_env {
	const struct config *cfg;
	const struct recipient_tables *rcpt_tables;
	/* The restriction lists (restrictions.h); NULL: the built-in
	 * defaults (relay control only). */
	struct restrictions *restrictions;
	struct event_base *base;  /* for checks that wait */
	struct dns_resolver *dns; /* the worker's resolver (src/dns/dns.h); NULL = no DNS */
	struct policy_check checks[POLICY_STAGE_COUNT][POLICY_MAX_CHECKS];
	size_t check_count[POLICY_STAGE_COUNT];
};

/* The built-in check lists: the restriction lists (restrictions.h) at
 * RCPT and at DATA; env->restrictions is NULL (the defaults) until the
 * caller sets it. */
void policy_env_init(struct policy_env *env, const struct config *cfg,
		     const struct recipient_tables *tables, struct event_base *base);
/* Append a check to a stage's list (panics beyond POLICY_MAX_CHECKS). */
void policy_env_add(struct policy_env *env, enum policy_stage stage,
		    const struct policy_check *check);
/* Put a check before the others of the stage: one no permit_* may skip
 * (the rate limits). */
void policy_env_add_first(struct policy_env *env, enum policy_stage stage,
			  const struct policy_check *check);

/* ---- for the session ------------------------------------------------------ */

struct policy_run;
/* Called once, from the event loop, when a pending run has its verdict.
 * reply is valid during the call only (headers may be taken with
 * strlist moves: the run frees what is left). The run is gone after. */
typedef void policy_done_fn(void *arg, struct policy_reply *reply);

/*
 * Run req->stage's checks. If every check answered at once, returns NULL
 * and fills *reply_r (free it with policy_reply_free). Otherwise returns a
 * handle: done(arg, reply) follows later, unless policy_run_cancel() is
 * called first. req is copied.
 */
struct policy_run *policy_run_start(const struct policy_env *env,
				    const struct policy_request *req,
				    policy_done_fn *done, void *arg,
				    struct policy_reply *reply_r);
/* Drop a pending run: the pending check is cancelled, done is never
 * called. *run becomes NULL; NULL is fine. */
void policy_run_cancel(struct policy_run **run);

/* Fill r's code, status, reason and printf text (each cut to its field). */
void policy_reply_set(struct policy_reply *r, int code, const char *status,
		      const char *reason, const char *fmt, ...) PRINTF_LIKE(5, 6);
void policy_reply_vset(struct policy_reply *r, int code, const char *status,
		       const char *reason, const char *fmt, va_list ap) PRINTF_LIKE(5, 0);

void policy_request_free(struct policy_request *req);
void policy_reply_free(struct policy_reply *reply);
/* Is this verdict a refusal (REJECT or TEMPFAIL)? */
bool policy_refuses(enum policy_verdict v);
const char *policy_verdict_name(enum policy_verdict v);
const char *policy_stage_name(enum policy_stage stage);

/* ---- for checks ------------------------------------------------------------ */

const struct policy_request *policy_call_request(const struct policy_call *call);
const struct policy_env *policy_call_env(const struct policy_call *call);
/* The reply this check fills for its verdict. */
struct policy_reply *policy_call_reply(struct policy_call *call);
/* Fill the call's reply: code, status, reason and printf text. */
void policy_call_set(struct policy_call *call, int code, const char *status,
		     const char *reason, const char *fmt, ...) PRINTF_LIKE(5, 6);
/* A check's own state while it is pending. */
void policy_call_set_state(struct policy_call *call, void *state);
void *policy_call_state(const struct policy_call *call);
/* A pending check is done: continue the run (from the event loop only).
 * The call must not be touched afterwards. */
void policy_call_finish(struct policy_call *call, enum policy_verdict verdict);

/* ---- built-in checks --------------------------------------------------------- */

/* Relay control (relay.c). Each fills r (code, status, reason, text)
 * and returns true when it refuses the recipient a. */
/* reject_unauth_destination: a's domain is neither local nor in
 * relay_domains (tempfail: defer_unauth_destination's 450). */
bool policy_unauth_destination(const struct config *cfg, const struct mail_address *a,
			       bool tempfail, struct policy_reply *r);
/* The unlisted-recipient check, after the recipient list: a recipient in
 * a local domain must be a user or an alias (550 5.1.1), and one whose
 * local part routes elsewhere ('%', '!', '@', quoting) is refused (554
 * 5.7.1) in the local and relay domains, whoever the client is. */
bool policy_recipient_unlisted(const struct policy_env *env, const struct mail_address *a,
			       struct policy_reply *r);

/* "local@domain" lookup key for a local recipient: local part unquoted
 * and lower-cased; false if the local part does not unquote to a plain
 * mailbox name. "<Postmaster>" maps to postmaster@<first local domain>. */
bool policy_local_key(const struct config *cfg, const struct mail_address *a,
		      char *key, size_t keylen);

#endif
