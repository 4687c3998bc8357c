/*
 * capture.h - the message capture switch: copies of incoming messages in
 * capture_dir, for writing signatures from real samples and for lawful
 * requests (postern.conf(5) CAPTURE).
 *
 * Capture is on while capture = yes or while capture_trigger_file exists;
 * it takes every message, or, when any of capture_senders,
 * capture_recipients and capture_clients is set, those whose sender, one
 * of whose recipients or whose client matches one of them. The copy is
 * taken at the end of data, before the content checks' verdict, so that
 * refused messages (a virus, spam) are captured too.
 *
 * Cost while off: with neither key set, capture_new() returns NULL and
 * the caller tests a pointer; with a trigger file named, capture_on()
 * looks at it at most once a second (a cached answer in between).
 *
 * A captured file is capture_dir/<queue id>.eml: a short header of the
 * envelope (X-Postern-Capture-* fields: queue id, in milter mode the
 * MTA's queue id (X-Postern-Capture-MTA-Queue-Id, also in the log line
 * "ID: captured file=PATH mta_queue_id=QID", so that the MTA's id finds
 * the copy), date, client and HELO, sender, one field per recipient),
 * then the content as queued (postern's
 * Received: first, LF line ends, no dot-stuffing). It is written to a
 * hidden temporary name and renamed, so readers never see half a file;
 * mode 0640, its group capture_group (capture_dir is set-group-ID, see
 * src/server/capture_dir.h). Nothing waits for the copy and nothing is
 * fsync'ed: it runs on a thread of its own, a failure is logged and never
 * changes what the client is told, and when copies pile up (a slow disk)
 * new ones are skipped and counted in the log.
 *
 * Used by the smtp workers (at the end of data) and by the milter
 * process of "postern milter" (at the end of the message the MTA sent,
 * from its unlinked spool file's descriptor).
 *
 * Untrusted input: the envelope (HELO, addresses: control characters are
 * written as '?') and the content (copied as bytes, never parsed).
 * Privilege: the unprivileged smtp worker or milter process (`user`, which
 * owns capture_dir).
 */
#ifndef POSTERN_QUEUE_CAPTURE_H
#define POSTERN_QUEUE_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../lib/config.h"
#include "../lib/strutil.h"

/* Copies waiting for the capture thread at most; more are skipped. */
#define CAPTURE_PENDING_MAX 64

struct capture;

/* What is known of a message at the end of its data. Borrowed for the
 * duration of the call only. */
struct capture_message {
	const char *queue_id;
	const char *mta_queue_id;      /* postern milter: the MTA's own ({i}),
					* untrusted; NULL otherwise */
	const struct sockaddr *client; /* for capture_clients */
	const char *client_addr;       /* "192.0.2.1" */
	const char *helo;              /* NULL: none given */
	const char *sender;            /* "local@domain", "" for <> */
	const strlist_t *rcpts;        /* "local@domain" each */
	const char *content_path;      /* the file holding the content (NULL:
					* content_fd, which is duplicated) ... */
	int content_fd;
	uint64_t content_off;          /* ... from this offset ... */
	uint64_t content_len;          /* ... this many bytes (all flushed) */
};

/* The capture of one process, with its thread; NULL when cfg can never
 * turn capture on (config_capture_possible). cfg must outlive it.
 * Panics if the thread cannot be started. The functions below may be
 * called from any thread of the process. */
struct capture *capture_new(const struct config *cfg);
/* Write the copies still waiting, stop the thread. */
void capture_free(struct capture **c);

/* Is capture on now? capture = yes, or the trigger file existed when it
 * was last looked at (at most a second ago). Logs each change. */
bool capture_on(struct capture *c);
/* Does m match the configured lists (none set: every message does)?
 * m->client may be NULL: then client_addr is parsed. */
bool capture_matches(const struct capture *c, const struct capture_message *m);
/*
 * Copy m into capture_dir in the background: the content file is opened
 * (or its descriptor duplicated) now, so that a later rename or removal
 * of it does not matter, and read on the capture thread. Never fails to
 * the caller: a problem is logged.
 */
void capture_save(struct capture *c, const struct capture_message *m);
/* capture_on, capture_matches and capture_save together; c may be NULL. */
void capture_message(struct capture *c, const struct capture_message *m);

#endif
