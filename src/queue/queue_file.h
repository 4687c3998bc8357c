/*
 * queue_file.h - the on-disk queue file: a versioned sequence of typed,
 * length-prefixed records (see docs/queue.md for the full layout).
 *
 *   header   "PSTNQF" 0x00 VERSION                        (8 bytes)
 *   record   type(1) | len(u32 big-endian) | payload(len)
 *
 * Records appear in this order, each exactly once except R (one or more):
 *   T arrival (u64 us)   I queue id   C client addr   H helo   P protocol
 *   F flags (u8)         S sender     N DSN envelope (version 3)
 *   R recipient*, each optionally followed by its O (DSN request, v3)
 *   A attempts           W delay warning (version 3)
 *   M content (u64 length; the content bytes follow the record directly)
 *   then, from version 2, in any order, what was decided at the end of the
 *   message (a verdict, a milter): h header to add, x header to remove,
 *   r recipient added, s sender replaced, q why the message was
 *   quarantined or held (at most one); from version 4 also i header
 *   inserted at an index, c header changed or removed, b body replaced
 *   (u64 length; the new body's bytes follow the record directly)
 *   E end (empty; the last bytes of the file)
 * A recipient removed at the end of the message keeps its R record with
 * the status byte X. Version 1 files (no trailer records), version 2
 * files (no N, O, W) and version 3 files (no i, c, b) still read.
 *
 * Three fields are rewritten in place with pwrite(2) once the file is in
 * the queue: the status byte that starts each R payload, the A payload
 * (attempt count, next attempt time, last reason) and the W payload (when
 * the delay warning was sent). Each has a fixed size and position, so an
 * update never moves another byte.
 *
 * Untrusted input: the reader treats the file as hostile (a disk error or a
 * bug elsewhere may have damaged it): every length is bounded, every field
 * is checked, and any problem is an error string, never a crash.
 * Privilege: runs in the smtp worker (writer) and queue manager (reader),
 * both unprivileged.
 */
#ifndef POSTERN_QUEUE_FILE_H
#define POSTERN_QUEUE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../lib/compat.h"
#include "../mail/dsn.h"
#include "queue.h"

#define QF_MAGIC "PSTNQF"
#define QF_MAGIC_LEN 6
#define QF_VERSION 4         /* what the writer writes */
#define QF_VERSION_MIN 1     /* the oldest the reader reads */
#define QF_HEADER_LEN 8
#define QF_REC_HDR_LEN 5

enum qf_type {
	QF_REC_ARRIVAL = 'T',
	QF_REC_ID = 'I',
	QF_REC_CLIENT = 'C',
	QF_REC_HELO = 'H',
	QF_REC_PROTO = 'P',
	QF_REC_FLAGS = 'F',
	QF_REC_SENDER = 'S',
	QF_REC_DSN = 'N',        /* v3: u8 origin, u8 RET, ENVID text */
	QF_REC_RCPT = 'R',
	QF_REC_RCPT_DSN = 'O',   /* v3, right after its R: u8 NOTIFY, ORCPT text */
	QF_REC_ATTEMPTS = 'A',
	QF_REC_WARNED = 'W',     /* v3: u64 delay warning sent (epoch s), 0 = not */
	QF_REC_CONTENT = 'M',
	QF_REC_ADD_HEADER = 'h', /* u8 where (enum qf_header_where), "Name: value" */
	QF_REC_DEL_HEADER = 'x', /* u32 occurrence (1 = first, 0 = all), field name */
	QF_REC_ADD_RCPT = 'r',   /* like R */
	QF_REC_NEW_SENDER = 's', /* address; the last one counts */
	QF_REC_NOTE = 'q',       /* why quarantined or held: see struct qf_note */
	QF_REC_INSERT_HEADER = 'i', /* v4: u32 index, "Name: value" */
	QF_REC_CHANGE_HEADER = 'c', /* v4: u32 occurrence (>= 1), u8 name length,
				     * name, "Name: value" or nothing (= remove) */
	QF_REC_NEW_BODY = 'b',   /* v4: u64 length; the body bytes follow directly */
	QF_REC_END = 'E',
};

enum qf_header_where {
	QF_HEADER_TOP = 0, /* above every header line (our Received: included) */
	QF_HEADER_END = 1, /* at the end of the header section */
};

enum qf_rcpt_status {
	QF_RCPT_PENDING = 'P',
	QF_RCPT_DONE = 'D',    /* delivered (or handed on) */
	QF_RCPT_BOUNCED = 'B', /* failed and reported (or dropped for <>) */
	QF_RCPT_REMOVED = 'X', /* taken out at the end of the message (v2) */
};

#define QF_FLAG_SMTPUTF8 0x01
#define QF_FLAG_8BITMIME 0x02

/* Bounds the reader enforces (and the writer respects). */
#define QF_TEXT_MAX 1024     /* client addr, helo, protocol */
#define QF_ADDR_MAX 512      /* sender, each recipient */
#define QF_RCPT_MAX 100000   /* recipients per message */
#define QF_REASON_MAX 115    /* last deferral reason, NUL-padded */
#define QF_ATTEMPTS_LEN (4 + 8 + QF_REASON_MAX + 1)
#define QF_DSN_MIN 2                            /* N: origin, RET */
#define QF_DSN_MAX (2 + DSN_ENVID_MAX)          /* ... and ENVID */
#define QF_RCPT_DSN_MAX (1 + DSN_ORCPT_MAX)     /* O: NOTIFY, ORCPT */
#define QF_WARNED_LEN 8
#define QF_HEADER_TEXT_MAX 8192 /* one added header field, folded lines included */
#define QF_FIELD_NAME_MAX 255   /* a removed header's name */
#define QF_EDITS_MAX 1000       /* header changes per message */
/* The q record: u8 verdict, then str check, str reason, str text, u16
 * hit count, str hit each; a str is a u16 length then text bytes. */
#define QF_NOTE_NAME_MAX 64     /* check name, reason key */
#define QF_NOTE_TEXT_MAX 512    /* the verdict's text */
#define QF_NOTE_HIT_MAX 255     /* one hit ("virus:NAME") */
#define QF_NOTE_HITS_MAX 32     /* hits kept */
#define QF_NOTE_MIN (1 + 2 + 2 + 2 + 2)
#define QF_NOTE_MAX (1 + 3 * 2 + 2 * QF_NOTE_NAME_MAX + QF_NOTE_TEXT_MAX + 2 + \
		     QF_NOTE_HITS_MAX * (2 + QF_NOTE_HIT_MAX))

/* The verdict byte of a q record: which folder the smtp worker chose. */
enum qf_note_verdict {
	QF_NOTE_QUARANTINE = 'Q',
	QF_NOTE_HOLD = 'H',
};

/* Return codes of qf_read(). */
#define QF_ERR_CORRUPT (-1) /* malformed: move the file aside */
#define QF_ERR_IO (-2)      /* the disk failed us: try again later */

struct qf_rcpt {
	char *addr;
	char status;         /* enum qf_rcpt_status */
	uint64_t status_off; /* file offset of the status byte */
	/* What the client asked for this recipient in RCPT (RFC 3461), from
	 * its O record; to be honoured in reports and passed on by a relay. */
	unsigned dsn_notify; /* NOTIFY=: DSN_NOTIFY_* bits; 0 = not given */
	char *dsn_orcpt;     /* ORCPT=: "addr-type;address" decoded (UTF-8 for
			      * type utf-8); NULL = not given */
};

/*
 * A change to the header section, applied in file order on delivery
 * (maildir_header.h says exactly how):
 *   h (QF_REC_ADD_HEADER)    where: enum qf_header_where; text: the field
 *   x (QF_REC_DEL_HEADER)    where: occurrence among the content's own
 *                            fields, 0 = all; text: the name
 *   i (QF_REC_INSERT_HEADER) where: index in the header section as the
 *                            edits before left it, 0 = the top; text: field
 *   c (QF_REC_CHANGE_HEADER) where: occurrence (1 = first) in the header
 *                            section as the edits before left it; text: the
 *                            name; field: the new field, NULL = remove it
 * A field is "Name: value", folded lines as LF followed by white space.
 */
struct qf_header_edit {
	char type;
	uint32_t where;
	char *text;
	char *field;    /* c only; NULL otherwise */
};

/* Why a message was quarantined or held (the q record). */
struct qf_note {
	char verdict;     /* enum qf_note_verdict; 0 = no q record */
	char *check;      /* the check that decided ("scan"), or "" */
	char *reason;     /* its short key ("virus", "content_rule"), or "" */
	char *text;       /* what it said ("virus found: NAME"), or "" */
	strlist_t hits;   /* "virus:NAME", "rule:NAME", "attachment:NAME"... */
};

struct qf_msg {
	uint32_t version;
	char id[QUEUE_ID_LEN + 1];
	uint64_t arrival_us;
	char *client_addr;
	char *helo;
	char *protocol;
	char *sender; /* "" for <> */
	/* From the N record (version 3; zero/NULL for older files): */
	char origin;      /* enum queue_origin */
	char dsn_ret;     /* MAIL RET=: enum dsn_ret, 0 = not given */
	char *dsn_envid;  /* MAIL ENVID= decoded; NULL = not given */
	bool smtputf8;
	bool body_8bitmime;
	struct qf_rcpt *rcpts;
	size_t rcpt_count;
	uint32_t attempts;
	uint64_t next_try;            /* seconds since the epoch, 0 = now */
	char reason[QF_REASON_MAX + 1]; /* last deferral reason or "" */
	uint64_t attempts_off;        /* file offset of the A payload */
	uint64_t delay_warned;        /* W: delay warning sent at (epoch s), 0 = not */
	uint64_t delay_warned_off;    /* file offset of the W payload; 0 = the
				       * file has none (version 1, 2) */
	uint64_t content_len_off;     /* file offset of the M payload */
	uint64_t content_off;         /* file offset of the first content byte */
	uint64_t content_len;
	uint64_t file_size;
	/* Version 4: the body that replaces the content's (the last b
	 * record). The message as delivered is then the content's header
	 * section up to and including its empty line (head_len bytes; the
	 * whole content if it has none, followed by head_sep_len bytes: a
	 * line end if the content lacks its last one, and the empty line),
	 * then body_len bytes from file offset body_off. */
	bool body_replaced;
	uint64_t body_off, body_len;
	uint64_t head_len;
	unsigned head_sep_len;        /* 0, 1 or 2 */
	struct qf_header_edit *edits; /* version 2 trailer (and 4's i, c) */
	size_t edit_count;
	struct qf_note note;          /* version 2 trailer; note.verdict 0 = none */
};

/* A malloc'ed error string (printf-style). */
char *qf_errf(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Encoding (used by the writer and by tests that build files by hand). */
void qf_put_header(buf_t *b);
void qf_put_record(buf_t *b, enum qf_type type, const void *payload,
		   uint32_t len);
void qf_put_u32(unsigned char *p, uint32_t v);
void qf_put_u64(unsigned char *p, uint64_t v);
uint32_t qf_get_u32(const unsigned char *p);
uint64_t qf_get_u64(const unsigned char *p);
/* Fill out[QF_ATTEMPTS_LEN] with the A payload. */
void qf_encode_attempts(unsigned char *out, uint32_t attempts,
			uint64_t next_try, const char *reason);
/* Is s acceptable as a text field (bounded, no control characters)? */
bool qf_text_ok(const char *s, size_t max);

/*
 * Read and validate the whole envelope of the queue file open on fd, and
 * check that the content and end record fill the rest of the file exactly.
 * The content itself is not read. Returns 0 and fills *m (free with
 * qf_msg_free), or QF_ERR_CORRUPT / QF_ERR_IO with a malloc'ed *err_r.
 */
int qf_read(int fd, struct qf_msg *m, char **err_r);
void qf_msg_free(struct qf_msg *m);

/* Rewrite recipient i's status byte in place (no fsync). */
int qf_set_rcpt_status(int fd, struct qf_msg *m, size_t i,
		       enum qf_rcpt_status status, char **err_r);
/* Record that the delay warning was sent at when (epoch seconds) in the
 * W record, in place (no fsync); -1 with *err_r if the file has no W
 * record (an older version) or the write failed. */
int qf_set_delay_warned(int fd, struct qf_msg *m, uint64_t when, char **err_r);
/* Rewrite the attempts record in place (no fsync). */
int qf_set_attempts(int fd, struct qf_msg *m, uint32_t attempts,
		    uint64_t next_try, const char *reason, char **err_r);

/*
 * Read up to len bytes of the message starting at position pos into data:
 * the content, or with a replaced body (version 4) the content's header
 * section followed by the new body (see struct qf_msg; qf_message_size
 * bytes in all). Header changes are not applied here (maildir_header.h
 * does).
 * Returns the number of bytes read (0 at the end; fewer than asked where
 * the header section meets the new body), -1 with errno on a read error
 * (a file that shrank under us is EIO).
 */
long qf_read_content(int fd, const struct qf_msg *m, uint64_t pos,
		     void *data, size_t len);
/*
 * Append the header section of the content (everything up to and
 * including the first empty line, or the end) to out, at most max bytes
 * (cut at a line end). Returns 0, or -1 with a malloc'ed *err_r.
 */
int qf_read_headers(int fd, const struct qf_msg *m, size_t max, buf_t *out,
		    char **err_r);

/*
 * Find the first field called name (ASCII case-insensitive; white space
 * before the colon allowed) in the header section hdr[0 .. len) (as
 * qf_read_headers gives it, LF line ends) and append its value to out:
 * continuation lines unfolded into one space each, leading and trailing
 * white space removed, control characters replaced by '?', at most max
 * bytes (cut before a UTF-8 continuation byte). Returns true if the
 * field was found. Nothing is decoded (RFC 2047 words stay as they are).
 */
bool qf_header_value(const char *hdr, size_t len, const char *name, size_t max,
		     buf_t *out);

/*
 * The notify record written to the queue manager's pipe (and to its
 * wake-up FIFO): "QN1" NUL, the 19-character id, a flags byte, then 8
 * NUL bytes (32 bytes, below PIPE_BUF).
 */
#define QF_NOTIFY_LEN 32
/* The message took no flow token (a notice, a released message). */
#define QF_NOTIFY_NO_TOKEN 0x01
void qf_notify_encode(unsigned char *rec, const char *id, unsigned flags);
/* Extract and validate the id and flags; false if the record is
 * malformed (unknown flags included). */
bool qf_notify_decode(const unsigned char *rec, char *id_r, unsigned *flags_r);

/* Bytes of the message as delivered before its header changes (what
 * qf_read_content reads; the size listings show): content_len, or with a
 * replaced body its header section, separator and new body. */
static inline uint64_t qf_message_size(const struct qf_msg *m)
{
	return m->body_replaced ? m->head_len + m->head_sep_len + m->body_len : m->content_len;
}

/* Number of pending recipients. */
size_t qf_pending_count(const struct qf_msg *m);

#endif
