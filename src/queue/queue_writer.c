/*
 * queue_writer.c - the smtp worker's side of the queue: write a new queue
 * file in incoming/, commit it durably into queue/ (the moment after which
 * the message may be acknowledged with 250), and wake the queue manager.
 *
 * RFCs: RFC 5321 section 6.1 (the server owns the message once it says
 * 250: it must be on stable storage first). Untrusted input: the envelope
 * fields and message bytes from the SMTP client; text fields are cleaned
 * (control characters replaced, lengths capped) and addresses that the
 * reader would refuse are refused here, so that a committed file always
 * reads back. Privilege: unprivileged smtp worker (also the queue manager,
 * which writes bounces through this writer).
 *
 * The writer holds flock(LOCK_EX) on its file from creation to the end of
 * the commit, so the queue manager can tell a file whose commit is still
 * in progress (it retries shortly) from a committed one, and the clean-up
 * of incoming/ never removes the file of a receiver that is alive, however
 * slow. A commit that fails after the rename (the fsync of queue/) removes
 * queue/ID before it lets the lock go.
 */
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "queue_file.h"

#define QUEUE_WRITER_BUF (64 * 1024)

struct queue_writer {
	char id[QUEUE_ID_LEN + 1];
	char *spool_dir;
	char *incoming_path;
	char *published_path;     /* after queue_writer_publish() */
	int fd;
	int error;                /* first write errno, sticky; 0 = fine */
	uint64_t file_off;        /* bytes handed over, buffered ones included */
	uint64_t content_len_off; /* file offset of the M payload */
	uint64_t content_len;
	strlist_t rcpts;          /* the R records' addresses ... */
	uint64_t *rcpt_status_off; /* ... and the file offsets of their status bytes */
	buf_t trailer;            /* version 2 records written after the content */
	size_t trailer_edits;
	bool has_note;            /* a q record is in trailer */
	bool sealed;              /* a b record follows the content: no more content */
	size_t buf_len;
	unsigned char buf[QUEUE_WRITER_BUF];
};

/* ---- buffered output ---------------------------------------------------- */

static int writer_flush(struct queue_writer *w)
{
	if (w->error == 0 && w->buf_len > 0 &&
	    safeio_write_all(w->fd, w->buf, w->buf_len) < 0)
		w->error = errno != 0 ? errno : EIO;
	w->buf_len = 0;
	return w->error == 0 ? 0 : -1;
}

static int writer_put(struct queue_writer *w, const void *data, size_t len)
{
	if (w->error != 0)
		return -1;
	if (w->buf_len + len > sizeof(w->buf)) {
		if (writer_flush(w) < 0)
			return -1;
		if (len >= sizeof(w->buf)) {
			if (safeio_write_all(w->fd, data, len) < 0) {
				w->error = errno != 0 ? errno : EIO;
				return -1;
			}
			w->file_off += len;
			return 0;
		}
	}
	memcpy(w->buf + w->buf_len, data, len);
	w->buf_len += len;
	w->file_off += len;
	return 0;
}

/* ---- envelope ----------------------------------------------------------- */

/* Append text with control characters replaced by '?', at most max bytes. */
static void put_clean_text(buf_t *b, enum qf_type type, const char *s,
			   size_t max)
{
	size_t n = strnlen(s != NULL ? s : "", max);
	char *copy = xstrndup(s != NULL ? s : "", n);

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)copy[i];
		if (c < 0x20 || c == 0x7f)
			copy[i] = '?';
	}
	qf_put_record(b, type, copy, (uint32_t)n);
	free(copy);
}

static int check_envelope(const struct queue_envelope *env, char **err_r)
{
	const strlist_t *r = env->recipients;

	if (env->sender == NULL || !qf_text_ok(env->sender, QF_ADDR_MAX)) {
		*err_r = qf_errf("sender address unusable in the queue");
		return -1;
	}
	if (r == NULL || r->count == 0 || r->count > QF_RCPT_MAX) {
		*err_r = qf_errf("bad recipient count %zu", r != NULL ? r->count : 0);
		return -1;
	}
	for (size_t i = 0; i < r->count; i++) {
		if (r->items[i][0] == '\0' || !qf_text_ok(r->items[i], QF_ADDR_MAX)) {
			*err_r = qf_errf("recipient address unusable in the queue");
			return -1;
		}
		const struct queue_rcpt_dsn *d = env->rcpt_dsn != NULL ? &env->rcpt_dsn[i] : NULL;
		if (d != NULL && (!dsn_notify_valid(d->notify) ||
				  (d->orcpt != NULL && d->orcpt[0] != '\0' &&
				   !dsn_orcpt_valid(d->orcpt)))) {
			*err_r = qf_errf("recipient DSN request unusable in the queue");
			return -1;
		}
	}
	bool ret_ok = env->dsn_ret == DSN_RET_UNSPECIFIED || env->dsn_ret == DSN_RET_FULL ||
		      env->dsn_ret == DSN_RET_HDRS;
	bool origin_ok = env->origin == QUEUE_ORIGIN_MAIL || env->origin == QUEUE_ORIGIN_NOTICE ||
			 env->origin == QUEUE_ORIGIN_DOUBLE_BOUNCE;
	if (!ret_ok || !origin_ok ||
	    (env->dsn_envid != NULL && env->dsn_envid[0] != '\0' &&
	     !dsn_envid_valid(env->dsn_envid))) {
		*err_r = qf_errf("DSN envelope unusable in the queue");
		return -1;
	}
	return 0;
}

/* The N record: origin, RET, ENVID (checked by check_envelope). */
static void put_dsn(buf_t *b, const struct queue_envelope *env)
{
	const char *envid = env->dsn_envid != NULL ? env->dsn_envid : "";
	size_t n = strlen(envid);
	unsigned char rec[QF_DSN_MAX];

	rec[0] = (unsigned char)env->origin;
	rec[1] = (unsigned char)env->dsn_ret;
	memcpy(rec + 2, envid, n);
	qf_put_record(b, QF_REC_DSN, rec, (uint32_t)(2 + n));
}

/* The O record after a recipient's R, if the client asked anything. */
static void put_rcpt_dsn(buf_t *b, const struct queue_rcpt_dsn *d)
{
	const char *orcpt = d->orcpt != NULL ? d->orcpt : "";
	size_t n = strlen(orcpt);
	unsigned char rec[QF_RCPT_DSN_MAX];

	if (d->notify == 0 && n == 0)
		return;
	rec[0] = (unsigned char)d->notify;
	memcpy(rec + 1, orcpt, n);
	qf_put_record(b, QF_REC_RCPT_DSN, rec, (uint32_t)(1 + n));
}

/* Encode every record from the header up to and including the M record. */
static void encode_envelope(buf_t *b, const char *id,
			    const struct queue_envelope *env,
			    uint64_t *content_len_off_r, uint64_t *rcpt_status_off)
{
	unsigned char u64[8], attempts[QF_ATTEMPTS_LEN];
	unsigned char flags = (unsigned char)((env->smtputf8 ? QF_FLAG_SMTPUTF8 : 0) |
					      (env->body_8bitmime ? QF_FLAG_8BITMIME : 0));

	qf_put_header(b);
	qf_put_u64(u64, env->arrival_us);
	qf_put_record(b, QF_REC_ARRIVAL, u64, 8);
	qf_put_record(b, QF_REC_ID, id, QUEUE_ID_LEN);
	put_clean_text(b, QF_REC_CLIENT, env->client_addr, QF_TEXT_MAX);
	put_clean_text(b, QF_REC_HELO, env->client_helo, QF_TEXT_MAX);
	put_clean_text(b, QF_REC_PROTO, env->protocol, QF_TEXT_MAX);
	qf_put_record(b, QF_REC_FLAGS, &flags, 1);
	qf_put_record(b, QF_REC_SENDER, env->sender, (uint32_t)strlen(env->sender));
	put_dsn(b, env);
	for (size_t i = 0; i < env->recipients->count; i++) {
		const char *a = env->recipients->items[i];
		size_t n = strlen(a);
		char *rec = xmalloc(n + 1);
		rec[0] = QF_RCPT_PENDING;
		memcpy(rec + 1, a, n);
		rcpt_status_off[i] = b->len + QF_REC_HDR_LEN;
		qf_put_record(b, QF_REC_RCPT, rec, (uint32_t)(n + 1));
		free(rec);
		if (env->rcpt_dsn != NULL)
			put_rcpt_dsn(b, &env->rcpt_dsn[i]);
	}
	qf_encode_attempts(attempts, 0, 0, "");
	qf_put_record(b, QF_REC_ATTEMPTS, attempts, sizeof(attempts));
	memset(u64, 0, sizeof(u64));
	qf_put_record(b, QF_REC_WARNED, u64, QF_WARNED_LEN);
	qf_put_record(b, QF_REC_CONTENT, u64, 8);
	*content_len_off_r = b->len - 8;
}

static void writer_free(struct queue_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->spool_dir);
	free(w->incoming_path);
	free(w->published_path);
	strlist_free(&w->rcpts);
	free(w->rcpt_status_off);
	buf_free(&w->trailer);
	free(w);
}

struct queue_writer *queue_writer_open(const char *spool_dir, const char *id,
				       const struct queue_envelope *env,
				       char **err_r)
{
	if (!queue_id_valid(id)) {
		*err_r = qf_errf("invalid queue id");
		return NULL;
	}
	if (check_envelope(env, err_r) < 0)
		return NULL;
	struct queue_writer *w = xcalloc(1, sizeof(*w));
	memcpy(w->id, id, QUEUE_ID_LEN + 1);
	char *dir = safeio_path_join(spool_dir, "incoming");
	w->spool_dir = xstrdup(spool_dir);
	w->incoming_path = safeio_path_join(dir, id);
	free(dir);
	for (size_t i = 0; i < env->recipients->count; i++)
		strlist_add(&w->rcpts, env->recipients->items[i]);
	w->rcpt_status_off = xcalloc(env->recipients->count, sizeof(*w->rcpt_status_off));
	/* Read-write: a notice reads the header section back (read_headers). */
	w->fd = open(w->incoming_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		*err_r = qf_errf("create %s: %s", w->incoming_path, strerror(errno));
		writer_free(w);
		return NULL;
	}
	/* Only the clean-up of incoming/ may hold it, for an instant. */
	int locked;
	do {
		locked = flock(w->fd, LOCK_EX);
	} while (locked < 0 && errno == EINTR);
	if (locked < 0) {
		*err_r = qf_errf("lock %s: %s", w->incoming_path, strerror(errno));
		queue_writer_abort(&w);
		return NULL;
	}
	buf_t env_buf = BUF_INIT;
	encode_envelope(&env_buf, id, env, &w->content_len_off, w->rcpt_status_off);
	int rc = writer_put(w, env_buf.data, env_buf.len);
	buf_free(&env_buf);
	if (rc < 0) {
		*err_r = qf_errf("write %s: %s", w->incoming_path, strerror(w->error));
		queue_writer_abort(&w);
		return NULL;
	}
	return w;
}

const char *queue_writer_id(const struct queue_writer *w)
{
	return w->id;
}

int queue_writer_write(struct queue_writer *w, const void *data, size_t len,
		       char **err_r)
{
	if (w->sealed) {
		*err_r = qf_errf("content written after the body was replaced");
		return -1;
	}
	if (writer_put(w, data, len) < 0) {
		*err_r = qf_errf("write %s: %s", w->incoming_path, strerror(w->error));
		return -1;
	}
	w->content_len += len;
	return 0;
}

uint64_t queue_writer_size(const struct queue_writer *w)
{
	return w->content_len;
}

int queue_writer_flush(struct queue_writer *w, char **err_r)
{
	if (writer_flush(w) < 0) {
		*err_r = qf_errf("write %s: %s", w->incoming_path, strerror(w->error));
		return -1;
	}
	return 0;
}

const char *queue_writer_path(const struct queue_writer *w)
{
	return w->incoming_path;
}

uint64_t queue_writer_content_offset(const struct queue_writer *w)
{
	return w->content_len_off + 8; /* the M record's payload is the length */
}

/* Overwrite bytes already handed over at file offset off, whether they
 * still sit in the buffer or are on disk (never across the boundary:
 * callers patch fields that were written in one piece). */
static int patch_bytes(struct queue_writer *w, uint64_t off, const void *data, size_t len)
{
	uint64_t flushed = w->file_off - w->buf_len;

	if (off >= flushed) {
		memcpy(w->buf + (off - flushed), data, len);
		return 0;
	}
	if (safeio_pwrite_all(w->fd, data, len, (off_t)off) < 0) {
		w->error = errno != 0 ? errno : EIO;
		return -1;
	}
	return 0;
}

int queue_writer_read_headers(struct queue_writer *w, size_t max, buf_t *out, char **err_r)
{
	if (writer_flush(w) < 0) {
		*err_r = qf_errf("write %s: %s", w->incoming_path, strerror(w->error));
		return -1;
	}
	/* Just what qf_read_content needs: where the content is. */
	struct qf_msg m = { .content_off = w->content_len_off + 8, .content_len = w->content_len };
	return qf_read_headers(w->fd, &m, max, out, err_r);
}

/* Store the final content length into the M record (buffered or on disk). */
static int patch_content_len(struct queue_writer *w)
{
	unsigned char u64[8];

	qf_put_u64(u64, w->content_len);
	return patch_bytes(w, w->content_len_off, u64, 8);
}

/* ---- changes at the end of the message (version 2 trailer) ------------- */

static int trailer_room(struct queue_writer *w, char **err_r)
{
	if (w->trailer_edits >= QF_EDITS_MAX) {
		*err_r = qf_errf("more than %d changes at the end of the message", QF_EDITS_MAX);
		return -1;
	}
	w->trailer_edits++;
	return 0;
}

/* The same rules as the reader's: a name of printable ASCII without
 * space or colon. */
static bool field_name_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] >= 127 || s[i] == ':')
			return false;
	return len > 0 && len <= QF_FIELD_NAME_MAX;
}

/* "Name: value" with folds as LF followed by white space, bounded. */
bool queue_header_field_valid(const char *field)
{
	size_t len = strlen(field);
	const char *colon = strchr(field, ':');
	bool ok = len <= QF_HEADER_TEXT_MAX && colon != NULL &&
		  field_name_valid(field, (size_t)(colon - field));
	for (size_t i = 0; ok && i < len; i++) {
		unsigned char c = (unsigned char)field[i];
		if (c == '\n')
			ok = field[i + 1] == ' ' || field[i + 1] == '\t';
		else
			ok = (c >= 0x20 || c == '\t') && c != 0x7f;
	}
	return ok;
}

int queue_writer_add_header(struct queue_writer *w, bool at_end, const char *field,
			    char **err_r)
{
	size_t len = strlen(field);
	if (!queue_header_field_valid(field)) {
		*err_r = qf_errf("header field to add is malformed");
		return -1;
	}
	if (trailer_room(w, err_r) < 0)
		return -1;
	char *rec = xmalloc(len + 1);
	rec[0] = (char)(at_end ? QF_HEADER_END : QF_HEADER_TOP);
	memcpy(rec + 1, field, len);
	qf_put_record(&w->trailer, QF_REC_ADD_HEADER, rec, (uint32_t)(len + 1));
	free(rec);
	return 0;
}

int queue_writer_insert_header(struct queue_writer *w, uint32_t index, const char *field,
			       char **err_r)
{
	size_t len = strlen(field);
	if (!queue_header_field_valid(field)) {
		*err_r = qf_errf("header field to insert is malformed");
		return -1;
	}
	if (trailer_room(w, err_r) < 0)
		return -1;
	unsigned char *rec = xmalloc(4 + len);
	qf_put_u32(rec, index);
	memcpy(rec + 4, field, len);
	qf_put_record(&w->trailer, QF_REC_INSERT_HEADER, rec, (uint32_t)(4 + len));
	free(rec);
	return 0;
}

int queue_writer_change_header(struct queue_writer *w, const char *name,
			       uint32_t occurrence, const char *field, char **err_r)
{
	size_t name_len = strlen(name), field_len = field != NULL ? strlen(field) : 0;
	if (!field_name_valid(name, name_len) || occurrence == 0) {
		*err_r = qf_errf("header name or occurrence to change is malformed");
		return -1;
	}
	if (field != NULL && !queue_header_field_valid(field)) {
		*err_r = qf_errf("new header field is malformed");
		return -1;
	}
	if (trailer_room(w, err_r) < 0)
		return -1;
	unsigned char *rec = xmalloc(5 + name_len + field_len);
	qf_put_u32(rec, occurrence);
	rec[4] = (unsigned char)name_len;
	memcpy(rec + 5, name, name_len);
	if (field_len > 0)
		memcpy(rec + 5 + name_len, field, field_len);
	qf_put_record(&w->trailer, QF_REC_CHANGE_HEADER, rec,
		      (uint32_t)(5 + name_len + field_len));
	free(rec);
	return 0;
}

/* The new body goes straight into the file after the content (never held
 * in memory): the trailer records recorded so far go first, so that the
 * file keeps the order in which the changes were made. */
int queue_writer_replace_body(struct queue_writer *w, const void *data, size_t len,
			      char **err_r)
{
	unsigned char rec[QF_REC_HDR_LEN + 8];

	if (trailer_room(w, err_r) < 0)
		return -1;
	w->sealed = true;
	if (w->trailer.len > 0)
		writer_put(w, w->trailer.data, w->trailer.len);
	buf_reset(&w->trailer);
	rec[0] = QF_REC_NEW_BODY;
	qf_put_u32(rec + 1, 8);
	qf_put_u64(rec + QF_REC_HDR_LEN, (uint64_t)len);
	writer_put(w, rec, sizeof(rec));
	if (len > 0)
		writer_put(w, data, len);
	if (w->error != 0) {
		*err_r = qf_errf("write %s: %s", w->incoming_path, strerror(w->error));
		return -1;
	}
	return 0;
}

int queue_writer_remove_header(struct queue_writer *w, const char *name,
			       unsigned occurrence, char **err_r)
{
	size_t len = strlen(name);
	if (!field_name_valid(name, len)) {
		*err_r = qf_errf("header name to remove is malformed");
		return -1;
	}
	if (trailer_room(w, err_r) < 0)
		return -1;
	unsigned char *rec = xmalloc(4 + len);
	qf_put_u32(rec, occurrence);
	memcpy(rec + 4, name, len);
	qf_put_record(&w->trailer, QF_REC_DEL_HEADER, rec, (uint32_t)(4 + len));
	free(rec);
	return 0;
}

int queue_writer_add_rcpt(struct queue_writer *w, const char *address, char **err_r)
{
	size_t len = strlen(address);
	if (len == 0 || !qf_text_ok(address, QF_ADDR_MAX)) {
		*err_r = qf_errf("recipient to add is unusable in the queue");
		return -1;
	}
	if (trailer_room(w, err_r) < 0)
		return -1;
	char *rec = xmalloc(len + 1);
	rec[0] = QF_RCPT_PENDING;
	memcpy(rec + 1, address, len);
	qf_put_record(&w->trailer, QF_REC_ADD_RCPT, rec, (uint32_t)(len + 1));
	free(rec);
	return 0;
}

int queue_writer_remove_rcpt(struct queue_writer *w, const char *address, char **err_r)
{
	const unsigned char removed = QF_RCPT_REMOVED;
	for (size_t i = 0; i < w->rcpts.count; i++) {
		if (!str_eq_nocase(w->rcpts.items[i], address))
			continue;
		if (patch_bytes(w, w->rcpt_status_off[i], &removed, 1) < 0) {
			*err_r = qf_errf("write %s: %s", w->incoming_path, strerror(w->error));
			return -1;
		}
		return 0;
	}
	*err_r = qf_errf("recipient to remove is not in the message");
	return -1;
}

int queue_writer_set_sender(struct queue_writer *w, const char *address, char **err_r)
{
	if (!qf_text_ok(address, QF_ADDR_MAX)) {
		*err_r = qf_errf("new sender is unusable in the queue");
		return -1;
	}
	if (trailer_room(w, err_r) < 0)
		return -1;
	qf_put_record(&w->trailer, QF_REC_NEW_SENDER, address, (uint32_t)strlen(address));
	return 0;
}

/* Append a u16 length and at most max bytes of s, control characters
 * replaced by '?', cut before a UTF-8 continuation byte so that a cut
 * never splits a character. */
static void put_note_string(buf_t *b, const char *s, size_t max)
{
	size_t n = strnlen(s != NULL ? s : "", max + 1);

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		if (n == 0)
			n = max; /* no character starts there: not UTF-8 anyway */
	}
	unsigned char len[2] = { (unsigned char)(n >> 8), (unsigned char)n };
	buf_append(b, len, 2);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		buf_putc(b, c < 0x20 || c == 0x7f ? '?' : (char)c);
	}
}

int queue_writer_set_note(struct queue_writer *w, const struct queue_note *note,
			  char **err_r)
{
	if (w->has_note) {
		*err_r = qf_errf("the message already has a quarantine note");
		return -1;
	}
	buf_t rec = BUF_INIT;
	buf_putc(&rec, (char)(note->hold ? QF_NOTE_HOLD : QF_NOTE_QUARANTINE));
	put_note_string(&rec, note->check, QF_NOTE_NAME_MAX);
	put_note_string(&rec, note->reason, QF_NOTE_NAME_MAX);
	put_note_string(&rec, note->text, QF_NOTE_TEXT_MAX);
	size_t count_at = rec.len, count = 0;
	buf_append(&rec, "\0\0", 2);
	for (size_t i = 0; note->hits != NULL && i < note->hits->count; i++) {
		const char *hit = note->hits->items[i];
		if (hit[0] == '\0' || count == QF_NOTE_HITS_MAX)
			continue;
		put_note_string(&rec, hit, QF_NOTE_HIT_MAX);
		count++;
	}
	rec.data[count_at] = (char)(count >> 8);
	rec.data[count_at + 1] = (char)count;
	qf_put_record(&w->trailer, QF_REC_NOTE, rec.data, (uint32_t)rec.len);
	buf_free(&rec);
	w->has_note = true;
	return 0;
}

/* Everything up to the rename: the file is complete and on disk. */
static int writer_finish_file(struct queue_writer *w, char **err_r)
{
	unsigned char end[QF_REC_HDR_LEN] = { QF_REC_END, 0, 0, 0, 0 };

	if (w->error == 0)
		patch_content_len(w);
	if (w->trailer.len > 0)
		writer_put(w, w->trailer.data, w->trailer.len);
	writer_put(w, end, sizeof(end));
	if (writer_flush(w) < 0) {
		*err_r = qf_errf("write %s: %s", w->incoming_path, strerror(w->error));
		return -1;
	}
	if (fdatasync(w->fd) < 0) {
		*err_r = qf_errf("fdatasync %s: %s", w->incoming_path, strerror(errno));
		return -1;
	}
	return 0;
}

char *queue_writer_folder(const struct queue_writer *w, const char *folder)
{
	return safeio_path_join(w->spool_dir, folder);
}

int queue_writer_publish(struct queue_writer **wp, const char *folder, char **err_r)
{
	struct queue_writer *w = *wp;

	if (writer_finish_file(w, err_r) < 0) {
		queue_writer_abort(wp);
		return -1;
	}
	char *dir = safeio_path_join(w->spool_dir, folder);
	w->published_path = safeio_path_join(dir, w->id);
	free(dir);
	if (rename(w->incoming_path, w->published_path) < 0) {
		*err_r = qf_errf("rename %s into %s/: %s", w->incoming_path, folder,
				 strerror(errno));
		xfree(&w->published_path);
		queue_writer_abort(wp);
		return -1;
	}
	return 0;
}

void queue_writer_published(struct queue_writer **wp)
{
	writer_free(*wp);
	*wp = NULL;
}

void queue_writer_unpublish(struct queue_writer **wp)
{
	struct queue_writer *w = *wp;
	/* Not durable: take it back rather than acknowledge it. The lock is
	 * still held, so the queue manager has not started on it and will
	 * find it gone. */
	unlink(w->published_path);
	writer_free(w);
	*wp = NULL;
}

int queue_writer_commit_to(struct queue_writer **wp, const char *folder, char **err_r)
{
	if (queue_writer_publish(wp, folder, err_r) < 0)
		return -1;
	char *dir = queue_writer_folder(*wp, folder);
	int rc = safeio_fsync_dir(dir);
	if (rc < 0) {
		*err_r = qf_errf("fsync %s: %s", dir, strerror(errno));
		queue_writer_unpublish(wp);
	} else {
		queue_writer_published(wp);
	}
	free(dir);
	return rc;
}

int queue_writer_commit(struct queue_writer **wp, char **err_r)
{
	return queue_writer_commit_to(wp, "queue", err_r);
}

void queue_writer_abort(struct queue_writer **wp)
{
	struct queue_writer *w = *wp;

	if (w == NULL)
		return;
	unlink(w->incoming_path);
	writer_free(w);
	*wp = NULL;
}

/* ---- notify pipe -------------------------------------------------------- */

void qf_notify_encode(unsigned char *rec, const char *id, unsigned flags)
{
	memset(rec, 0, QF_NOTIFY_LEN);
	memcpy(rec, "QN1", 3);
	memcpy(rec + 4, id, QUEUE_ID_LEN);
	rec[4 + QUEUE_ID_LEN] = (unsigned char)flags;
}

bool qf_notify_decode(const unsigned char *rec, char *id_r, unsigned *flags_r)
{
	if (memcmp(rec, "QN1", 4) != 0)
		return false;
	unsigned flags = rec[4 + QUEUE_ID_LEN];
	if ((flags & ~(unsigned)QF_NOTIFY_NO_TOKEN) != 0)
		return false;
	for (size_t i = 5 + QUEUE_ID_LEN; i < QF_NOTIFY_LEN; i++) {
		if (rec[i] != 0)
			return false;
	}
	memcpy(id_r, rec + 4, QUEUE_ID_LEN);
	id_r[QUEUE_ID_LEN] = '\0';
	*flags_r = flags;
	return queue_id_valid(id_r);
}

void queue_notify_flags(int fd, const char *id, unsigned flags)
{
	unsigned char rec[QF_NOTIFY_LEN];

	if (fd < 0 || !queue_id_valid(id))
		return;
	/* The write must never block an smtp worker: make the pipe end
	 * non-blocking (a property of the shared open file description). */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK) == 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	qf_notify_encode(rec, id, flags);
	ssize_t n;
	do {
		n = write(fd, rec, sizeof(rec));
	} while (n < 0 && errno == EINTR);
	/* EAGAIN (pipe full) or EPIPE: the periodic scan finds the message. */
}

void queue_notify(int fd, const char *id)
{
	queue_notify_flags(fd, id, 0);
}

int queue_wake(const char *spool_dir, const char *id)
{
	unsigned char rec[QF_NOTIFY_LEN];
	struct stat st;

	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	char *path = safeio_path_join(spool_dir, QUEUE_WAKE_FIFO);
	/* A FIFO without a reader fails with ENXIO rather than waiting; a
	 * link is not followed; a regular file or device is not written. */
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	qf_notify_encode(rec, id, QF_NOTIFY_NO_TOKEN);
	ssize_t n;
	do {
		n = write(fd, rec, sizeof(rec));
	} while (n < 0 && errno == EINTR);
	int err = errno;
	close(fd);
	if (n == (ssize_t)sizeof(rec))
		return 0;
	errno = n < 0 ? err : EIO;
	return -1;
}
