/*
 * session_int.h - private state of an SMTP session, shared by the files
 * of src/smtp/ (session.c: connection and input loop; commands.c: the
 * command table; transaction.c: MAIL/RCPT/DATA/BDAT and the queue
 * hand-over). Not for use outside src/smtp/.
 */
#ifndef POSTERN_SMTP_SESSION_INT_H
#define POSTERN_SMTP_SESSION_INT_H

#include <event2/bufferevent.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../queue/queue.h"
#include "command.h"
#include "data.h"
#include "session.h"

enum input_mode {
	MODE_COMMAND,
	MODE_DATA,    /* after 354, until CRLF.CRLF */
	MODE_BDAT,    /* reading a chunk of bdat_remaining bytes */
};

/* One mail transaction, from MAIL to the end of data or RSET. */
struct smtp_tx {
	char id[QUEUE_ID_LEN + 1];
	uint64_t start_us;
	struct mail_address sender;
	char sender_text[ADDR_PATH_MAX + 1];
	strlist_t rcpts;            /* accepted, as "local@domain" */
	uint64_t declared_size;     /* SIZE= or 0 */
	bool smtputf8;
	bool body_8bit;
	struct queue_writer *writer; /* open from DATA/first BDAT on */
	struct data_decoder decoder;
	buf_t decoded;              /* decoded bytes not yet given to writer */
	bool bdat_used;
	char *write_error;          /* first queue write error, malloc'ed */
};

struct smtp_session {
	struct smtp_server *srv;
	struct smtp_session *prev, *next;
	struct bufferevent *bev;
	struct sockaddr_storage peer;
	char peer_addr[64];
	unsigned peer_port;
	char *helo;
	bool esmtp;
	bool tls;
	enum input_mode mode;
	uint64_t bdat_remaining;
	bool bdat_last;
	bool bdat_discard;          /* chunk refused: read it, then send bdat_error */
	struct policy_reply bdat_error;
	bool skipping_long_line;
	bool closing;        /* reply queued, close when output is flushed */
	bool read_paused;    /* output backlog: reading stopped */
	bool free_scheduled; /* session_free() will run from the loop */
	unsigned errors;
	unsigned commands;
	unsigned messages;
	struct smtp_tx *tx;
};

/* session.c */
void session_reply(struct smtp_session *s, int code, const char *status,
		   const char *fmt, ...) PRINTF_LIKE(4, 5);
/* A reply for an error the client caused: counts toward error_limit and
 * closes the session with 421 once it is reached. */
void session_error(struct smtp_session *s, int code, const char *status,
		   const char *fmt, ...) PRINTF_LIKE(4, 5);
void session_close_after_flush(struct smtp_session *s);
void session_start_tls(struct smtp_session *s);

/* commands.c */
void session_handle_line(struct smtp_session *s, const char *line, size_t len);

/* transaction.c */
void tx_free(struct smtp_tx **tx);
void tx_handle_mail(struct smtp_session *s, const struct smtp_command *cmd);
void tx_handle_rcpt(struct smtp_session *s, const struct smtp_command *cmd);
void tx_handle_data(struct smtp_session *s);
void tx_handle_bdat(struct smtp_session *s, const struct smtp_command *cmd);
/* Feed raw input of MODE_DATA / MODE_BDAT; returns bytes consumed. */
size_t tx_consume(struct smtp_session *s, const char *data, size_t len);
/* After tx_consume: finish the message or chunk if its end was reached. */
void tx_after_consume(struct smtp_session *s);
const char *session_protocol(const struct smtp_session *s);

#endif
