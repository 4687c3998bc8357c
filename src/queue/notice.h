/*
 * notice.h - the administrator's notices: a short message, from a
 * template, saying that a message was quarantined, or refused or
 * discarded for a virus; queued like a bounce (from <>, protocol LOCAL,
 * Auto-Submitted: auto-generated), so it is delivered, retried and never
 * answered like any other message and cannot start a loop.
 *
 * The template (notify_template; "" = the built-in text) is a header
 * section (fields such as Subject:), an empty line, then the body; each
 * {name} of the placeholders below is replaced. Unknown placeholders,
 * a field postern sets itself (From:, To:, Date:, ...), and a first line
 * that is neither a field nor empty are errors, reported as FILE:LINE.
 *
 * RFCs: 5322 (the notice), 3834 (Auto-Submitted), 2045 (a text/plain
 * body in UTF-8), 6532 (UTF-8 in header values when the original had
 * it). Untrusted input: the template file (bounded, validated), the
 * values (envelope, the message's Subject:, verdict texts: control
 * characters replaced and lengths capped, so that none can add a header
 * field). Privilege: the template is read by the supervisor (root) or
 * check-config; notices are built in the smtp workers' commit threads
 * and by tests.
 */
#ifndef POSTERN_NOTICE_H
#define POSTERN_NOTICE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/buf.h"
#include "../lib/strutil.h"

/* Largest template file. */
#define NOTICE_TEMPLATE_MAX (64 * 1024)
/* Longest value put in for one placeholder, and the longest header line
 * of a notice (both cut at a character boundary). */
#define NOTICE_VALUE_MAX 400
#define NOTICE_HEADER_LINE_MAX 900
/* Recipients named in {recipients}; more are counted. */
#define NOTICE_RCPTS_SHOWN 10

/* What happened to the message a notice is about. */
enum notice_event {
	NOTICE_QUARANTINED, /* in quarantine/ */
	NOTICE_REFUSED,     /* refused during SMTP (a virus) */
	NOTICE_DISCARDED,   /* accepted and dropped (a virus) */
};

/* Everything a notice may say; strings may be NULL (unknown). */
struct notice_info {
	enum notice_event event;
	const char *queue_id;
	const char *sender;          /* "" for <> */
	const strlist_t *rcpts;
	const char *client_addr;
	const char *helo;
	const char *check;           /* the check that decided */
	const char *reason;          /* its key ("virus") */
	const char *text;            /* what it said ("virus found: NAME") */
	const strlist_t *hits;       /* "virus:NAME", "rule:NAME", "attachment:NAME" */
	const char *subject;         /* the message's Subject:, raw, unfolded */
	const char *hostname;        /* ours */
	uint64_t when_us;            /* of the verdict */
};

struct notice_template;

/* The built-in text (never fails). */
struct notice_template *notice_template_builtin(void);
/*
 * Read and check path ("" = the built-in text). NULL after printing each
 * problem to errors as "FILE:LINE: message" (or "FILE: message").
 */
struct notice_template *notice_template_load(const char *path, FILE *errors);
/* The same from memory; name is the FILE of the messages. */
struct notice_template *notice_template_parse(const char *name, const char *text, size_t len,
					      FILE *errors);
void notice_template_free(struct notice_template **t);

/* Is the message one a virus was found in (a "virus:" hit, or the
 * reason "virus")? */
bool notice_is_virus(const struct notice_info *info);

/*
 * The whole notice (LF line ends) with id notice_id, to the addresses
 * in to, made at now_us: our header fields (Received, From, To, Date,
 * Message-ID, Auto-Submitted, MIME), the template's fields with their
 * placeholders filled, an empty line, the body. *eight_bit_r: whether it
 * holds bytes above 0x7f (a UTF-8 Subject:, say).
 */
void notice_build(buf_t *out, const struct notice_template *t, const struct notice_info *info,
		  const strlist_t *to, const char *notice_id, uint64_t now_us, bool *eight_bit_r);

/*
 * Build the notice and commit it into spool_dir's queue/ as a new
 * message from <> to the addresses in to (blocks on the disk). Fills
 * notice_id_r (QUEUE_ID_LEN + 1). 0 once it is durable, -1 with a
 * malloc'ed *err_r. content: a notice already built (a summary), or NULL
 * to build it from t and info.
 */
int notice_queue(const char *spool_dir, const char *hostname, const buf_t *content,
		 const struct notice_template *t, const struct notice_info *info,
		 const strlist_t *to, uint64_t now_us, char *notice_id_r, char **err_r);

#endif
