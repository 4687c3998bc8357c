/*
 * queue.h - the durable queue: ids, the queue file, and the hand-over
 * from the smtp worker (writer) to the queue manager (reader).
 *
 * Spool layout under spool_dir:
 *   incoming/  files being received (not yet acknowledged)
 *   queue/     accepted, fsync'ed, waiting for delivery
 *   deferred/  temporarily failed; mtime = next attempt time
 *   hold/, quarantine/  kept for later features
 * A message is accepted (and may be answered 250) only after
 * queue_writer_commit() returned 0: the file is fsync'ed, renamed from
 * incoming/ into queue/, and queue/ is fsync'ed. See docs/queue.md.
 *
 * Queue ids are 19 upper-case hex digits: 13 of microseconds since the
 * epoch, 6 of the process id. They sort by arrival time and are unique
 * across processes (a process never hands out the same microsecond twice).
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../lib/buf.h"
#include "../lib/strutil.h"

#define QUEUE_ID_LEN 19

/* Fill id (QUEUE_ID_LEN + 1 bytes) with a new unique id. */
void queue_id_new(char *id);
/* Is text a well-formed queue id? */
bool queue_id_valid(const char *text);
/* Arrival time encoded in the id, in microseconds since the epoch. */
uint64_t queue_id_time_us(const char *id);

/* The spool's subfolders: incoming, queue, deferred, hold, quarantine,
 * corrupt (unreadable queue files are moved there). */
#define QUEUE_SUBDIR_COUNT 6
extern const char *const queue_subdirs[QUEUE_SUBDIR_COUNT];

/* Create spool_dir and each of queue_subdirs if missing, 0700, as the
 * calling process. Returns 0, or -1 with a malloc'ed *err_r. */
int queue_dirs_create(const char *spool_dir, char **err_r);

/* The DSN request of one recipient (RFC 3461 NOTIFY and ORCPT). */
struct queue_rcpt_dsn {
	unsigned notify;   /* DSN_NOTIFY_* bits (mail/dsn.h); 0 = not given */
	const char *orcpt; /* "addr-type;address" decoded; NULL or "" = not given */
};

/* What kind of message a queue file holds (its N record): bounces and
 * notices are told apart so that a failed one is reported to the
 * postmaster once and never again (no loop). */
enum queue_origin {
	QUEUE_ORIGIN_MAIL = 0,          /* from a client */
	QUEUE_ORIGIN_NOTICE = 'N',      /* a DSN or notice we made, from <> */
	QUEUE_ORIGIN_DOUBLE_BOUNCE = '2', /* a failed notice, to the postmaster */
};

/* What the smtp worker knows when DATA/BDAT starts. */
struct queue_envelope {
	uint64_t arrival_us;      /* time of MAIL, microseconds since epoch */
	const char *client_addr;  /* "192.0.2.1" */
	const char *client_helo;  /* as given, or "" */
	const char *protocol;     /* "SMTP", "ESMTP", "ESMTPS", "UTF8SMTPS"... */
	const char *sender;       /* "local@domain", "" for <> */
	const strlist_t *recipients; /* "local@domain" each, as accepted */
	bool smtputf8;
	bool body_8bitmime;
	/* DSN (RFC 3461): RET (enum dsn_ret, 0 = not given), ENVID (NULL or
	 * "" = not given), and per recipient NOTIFY/ORCPT, parallel to
	 * recipients (NULL = none given for any). */
	char dsn_ret;
	const char *dsn_envid;
	const struct queue_rcpt_dsn *rcpt_dsn;
	char origin;              /* enum queue_origin */
};

struct queue_writer;

/*
 * Start a new message under id (from queue_id_new(), allocated when the
 * transaction started at MAIL so that every log line of the transaction
 * carries it): create incoming/<id> with O_EXCL, lock it (flock LOCK_EX,
 * held until the commit or abort is over) and write the envelope records.
 * Returns NULL with a malloc'ed *err_r on failure (the caller answers
 * 451 4.3.0).
 */
struct queue_writer *queue_writer_open(const char *spool_dir, const char *id,
				       const struct queue_envelope *env,
				       char **err_r);
const char *queue_writer_id(const struct queue_writer *w);
/* Append message bytes (headers and body, LF line ends, no dot-stuffing).
 * Buffered; returns -1 with a malloc'ed *err_r on a write error. */
int queue_writer_write(struct queue_writer *w, const void *data, size_t len,
		       char **err_r);
/* Bytes of message content written so far. */
uint64_t queue_writer_size(const struct queue_writer *w);
/*
 * For content checks that read the message from the file while it is
 * still in incoming/ (a scanner): write out what is buffered, so that
 * every content byte so far is in the file (no fsync: readers share the
 * page cache); 0, or -1 with a malloc'ed *err_r. The file's path and the
 * offset of the first content byte in it.
 */
int queue_writer_flush(struct queue_writer *w, char **err_r);
const char *queue_writer_path(const struct queue_writer *w);
uint64_t queue_writer_content_offset(const struct queue_writer *w);
/*
 * What the end of the message may change (a verdict, a milter), recorded
 * after the content and applied on delivery. Each returns 0, or -1 with a
 * malloc'ed *err_r (a malformed field, too many changes, a recipient that
 * is not in the message, a write error). field: "Name: value", folded
 * lines as LF followed by white space; at_end: at the end of the header
 * section rather than above it. occurrence: 1 = the first field of that
 * name, 0 = every one.
 */
int queue_writer_add_header(struct queue_writer *w, bool at_end, const char *field,
			    char **err_r);
int queue_writer_remove_header(struct queue_writer *w, const char *name,
			       unsigned occurrence, char **err_r);
/*
 * A milter's finer changes (implemented with the queue file's version 4
 * records; see docs/queue.md). field is "Name: value" as above. insert:
 * at the index-th place of the header section as the changes recorded
 * before it left it (0 = above the first field, postern's own Received:).
 * change: the occurrence-th (1 = first) field called name, counted the
 * same way, becomes field; field NULL removes it; no such occurrence:
 * field is added at the end (smfi_chgheader(3)), a removal does nothing. replace_body: everything after the header
 * section's empty line becomes data[0..len), LF line ends, no
 * dot-stuffing (the content's own form); the last one counts.
 */
int queue_writer_insert_header(struct queue_writer *w, uint32_t index, const char *field,
			       char **err_r);
/* Would the writer take field ("Name: value", folds as LF followed by
 * white space, no other control character, at most QF_HEADER_TEXT_MAX)
 * as a header field to add, insert or change to? */
bool queue_header_field_valid(const char *field);
int queue_writer_change_header(struct queue_writer *w, const char *name,
			       uint32_t occurrence, const char *field, char **err_r);
int queue_writer_replace_body(struct queue_writer *w, const void *data, size_t len,
			      char **err_r);
int queue_writer_add_rcpt(struct queue_writer *w, const char *address, char **err_r);
int queue_writer_remove_rcpt(struct queue_writer *w, const char *address, char **err_r);
int queue_writer_set_sender(struct queue_writer *w, const char *address, char **err_r);

/* Why a message goes into quarantine/ or hold/ (the q record). */
struct queue_note {
	bool hold;             /* hold/ rather than quarantine/ */
	const char *check;     /* the check that decided ("scan"), NULL or "" if unknown */
	const char *reason;    /* its short key for logs ("virus", "content_rule") */
	const char *text;      /* what it said ("virus found: Eicar-Test-Signature") */
	const strlist_t *hits; /* "virus:NAME", "rule:NAME", ...; may be NULL */
};
/*
 * Record note in the trailer, at most once per message. Text is cleaned
 * like the envelope's (control characters become '?') and cut to the
 * bounds of queue_file.h; hits past QF_NOTE_HITS_MAX and empty ones are
 * left out: a note never makes a message fail. Returns 0, or -1 with a
 * malloc'ed *err_r if a note was already recorded.
 */
int queue_writer_set_note(struct queue_writer *w, const struct queue_note *note,
			  char **err_r);

/*
 * Flush, then read back the header section of the content written so
 * far (up to and including its empty line, at most max bytes, cut at a
 * line end) into out. Blocks on the disk (commit threads only).
 * Returns 0, or -1 with a malloc'ed *err_r.
 */
int queue_writer_read_headers(struct queue_writer *w, size_t max, buf_t *out, char **err_r);

/*
 * Finish: flush, write the end record, fsync the file, rename it into
 * folder ("queue", or "hold"/"quarantine" for those verdicts) and fsync
 * the folder. Frees w (and so releases the lock). Returns 0 once the
 * message is durable; -1 with a malloc'ed *err_r otherwise (the file is
 * removed, before the lock is released). Blocks on the disk: the smtp
 * workers call it from commit.c's threads.
 */
int queue_writer_commit_to(struct queue_writer **w, const char *folder, char **err_r);
/*
 * The same commit in steps, for a group commit (commit.c): publish (the
 * file complete, fdatasync'ed and renamed into folder; -1 frees w and
 * removes the file), then the caller fsyncs the folder (its path from
 * queue_writer_folder, malloc'ed) once for several files, then either
 * published (durable: frees w) or unpublish (the folder's fsync failed:
 * the file is removed, frees w).
 */
int queue_writer_publish(struct queue_writer **w, const char *folder, char **err_r);
char *queue_writer_folder(const struct queue_writer *w, const char *folder);
void queue_writer_published(struct queue_writer **w);
void queue_writer_unpublish(struct queue_writer **w);
/* queue_writer_commit_to(w, "queue", err_r). */
int queue_writer_commit(struct queue_writer **w, char **err_r);
/* Drop an unfinished message: unlink incoming/<id> and free *w. */
void queue_writer_abort(struct queue_writer **w);

/*
 * Tell the queue manager about a committed message through the notify pipe
 * (a fixed 32-byte record holding the id; atomic because < PIPE_BUF).
 * Non-blocking: if the pipe is full the message is found by the periodic
 * queue scan instead. fd < 0 is a no-op. Sets O_NONBLOCK on fd if it is
 * not set yet. Record layout: queue_file.h (QF_NOTIFY_LEN).
 */
void queue_notify(int fd, const char *id);
/* The same with flags (QF_NOTIFY_NO_TOKEN: no flow token was taken for
 * the message, so the queue manager owes none back for it). */
void queue_notify_flags(int fd, const char *id, unsigned flags);

/* The queue manager's wake-up FIFO in spool_dir: a command that moved a
 * message into queue/ (postern quarantine release) writes a notify record
 * there, since it has no notify pipe. */
#define QUEUE_WAKE_FIFO "qmgr.wake"
/*
 * Write the notify record of id to spool_dir's wake-up FIFO: opened
 * without following a link and without blocking, written only if it is
 * a FIFO. Returns 0 if the record was written, -1 with errno otherwise
 * (ENXIO: no queue manager has it open; EAGAIN: it is full; EINVAL: not
 * a FIFO): the periodic queue scan finds the message then.
 */
int queue_wake(const char *spool_dir, const char *id);

#endif
