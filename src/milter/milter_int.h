/*
 * milter_int.h - private state of the milter client, shared by
 * milter_conv.c (one milter's connection: connect, negotiation, packets,
 * timeouts) and milter_client.c (the stages of a session, the policy
 * check, macros, the message's content). Not for use outside src/milter/.
 */
#ifndef POSTERN_MILTER_INT_H
#define POSTERN_MILTER_INT_H

#include <event2/bufferevent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "milter_client.h"
#include "milter_proto.h"

/* Output waiting for a milter beyond this: no more is queued (commands
 * that get no answer, NR_HDR and NR_BODY, are paced by the writes). */
#define MILTER_OUTPUT_PACE (256 * 1024)

enum conv_state {
	CONV_NEW,         /* not connected yet */
	CONV_CONNECTING,  /* connect() in progress (connect_timeout) */
	CONV_NEGOTIATING, /* OPTNEG sent, its answer due (connect_timeout) */
	CONV_READY,
	CONV_FAILED,      /* closed after an error: the default action applies */
};

struct milter_session;

/* One SMTP session's conversation with one milter. */
struct milter_conv {
	struct milter_session *ms;
	const struct milter_spec *spec;
	size_t index;
	enum conv_state state;
	struct bufferevent *bev;
	struct event *timer;
	/* What the negotiation settled. */
	uint32_t version, actions, protocol;
	char *macros[MILTER_MACRO_STAGES]; /* the milter's own lists, or NULL */
	bool conn_done;   /* accepted (or refused) the connection: not asked again */
	bool msg_done;    /* done with this message (accept, refusal, discard) */
	bool in_message;  /* MAIL sent, no end of message or ABORT since */
	bool waiting;     /* the answer to `sent` is due */
	char sent;        /* the command whose answer is due */
	unsigned ignored; /* answers due to commands whose answers are dropped */
};

/* Where the end-of-data stage is with the current milter. */
enum eod_step { EOD_HEADERS, EOD_EOH, EOD_BODY, EOD_EOM, EOD_DONE };

/* A header field of the message, as the milters get it. */
struct milter_header {
	char *name;
	char *value; /* what follows the colon, folds as LF + white space */
};

struct milter_client {
	struct event_base *base;
	const struct config *cfg;
	struct milter_list list;
};

struct milter_session {
	struct milter_client *client;
	struct milter_conv *convs;
	size_t count;
	/* The stage being asked; call is NULL between stages. */
	struct policy_call *call;
	const struct policy_request *req;
	bool in_run;       /* inside stage_run(): no finish from callbacks */
	size_t cur;        /* the milter being asked */
	bool started;      /* cur's commands for this stage have begun */
	bool stop;         /* a final verdict: the milters after cur are not asked */
	enum policy_verdict verdict;
	int code;          /* a refusal's reply (0: the default for the verdict) */
	char status[12];
	char text[MILTER_REPLY_TEXT_MAX + 1];
	char reason[64];
	const char *decided_by; /* the milter whose answer decided */
	bool quarantine;
	char quarantine_reason[256];
	char quarantine_by[128];
	/* END_OF_DATA: the message, and where the current milter is in it. */
	int fd;
	struct milter_header *headers;
	size_t header_count;
	uint64_t body_off, body_end;
	enum eod_step eod;
	size_t header_next;
	uint64_t body_pos;
	bool body_skip;
	policy_edits_t edits; /* the current milter's changes (kept if it accepts) */
	size_t edits_text; /* bytes of their names, values and addresses */
	struct policy_edit *replbody;
	/* The message as the milters before the current one changed it: their
	 * header changes are made to headers, a new body (LF line ends)
	 * replaces the file's. */
	bool body_replaced;
	buf_t new_body;
	/* While a refused recipient is told (RCPT_REJ): its status and text,
	 * for the macros; NULL otherwise. */
	const char *refused_status;
	const char *refused_text;
};

/* ---- milter_conv.c ---------------------------------------------------------------- */

/* Connect (state CONNECTING), or FAILED at once. */
void conv_start(struct milter_conv *c);
/* Queue bytes for the milter; expect an answer to command cmd (timeout:
 * the command or the content timeout) unless expect is false. */
void conv_send(struct milter_conv *c, buf_t *packet, char cmd, bool expect, bool content);
/* Give up on the milter: log why, close, FAILED; the stage goes on with
 * the default action if it was waiting for it. */
void conv_fail(struct milter_conv *c, const char *why);
/* Close the connection (QUIT first when it is idle and quit is true). */
void conv_close(struct milter_conv *c, bool quit);
/* Bytes queued for the milter and not written yet. */
size_t conv_backlog(const struct milter_conv *c);
/* The stage waits for the backlog to drain (commands without answers):
 * content_timeout for the milter to read some of it. */
void conv_wait_output(struct milter_conv *c);
/* The queue id (or client address) the conversation's logs are keyed by. */
const char *conv_log_key(const struct milter_conv *c);

/* ---- milter_message.c ------------------------------------------------------------- */

/* Read the message's header section from req's queue file into
 * ms->headers and find where its body starts; 0, or -1 (errno set). */
int milter_content_open(struct milter_session *ms, const struct policy_request *req);
/* Close the file and forget the headers, changes and new body. */
void milter_content_free(struct milter_session *ms);
/* The next body chunk (at most MILTER_CHUNK_MAX bytes, CRLF line ends)
 * into out; its length, 0 at the end, -1 on a read error. */
ssize_t milter_body_chunk(struct milter_session *ms, char *out);
/* Make a milter's header changes and new body to the view the next
 * milters get. */
void milter_view_apply(struct milter_session *ms, const policy_edits_t *edits);

/* ---- milter_macros.c -------------------------------------------------------------- */

/* The D packet of stage's macros before command cmd into out; nothing
 * when no macro has a value. */
void milter_put_macros(struct milter_session *ms, struct milter_conv *c,
		       enum milter_macro_stage stage, char cmd, buf_t *out);

/* ---- milter_client.c -------------------------------------------------------------- */

/* A decoded reply from c's milter (not the negotiation's). */
void milter_answer(struct milter_conv *c, const struct milter_reply *r);
/* Something changed for c (connected, answered, failed, output drained):
 * carry on with the stage if it waits for c. */
void milter_resume(struct milter_session *ms);

#endif
