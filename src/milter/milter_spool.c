/*
 * milter_spool.c - the milter server's private copy of a message (see
 * milter_spool.h): header fields and body chunks from the MTA, written
 * with LF line ends in blocks to an unlinked file.
 *
 * RFCs: RFC 5322 section 2.2 (fields, folding). Untrusted input: the
 * fields and body the MTA relays. Privilege: the milter process (`user`).
 */
#include "milter_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/safeio.h"
#include "../queue/queue.h"

#define SPOOL_BLOCK 65536 /* written when this much waits */

void milter_spool_init(struct milter_spool *s, const struct milter_spool_limits *limits)
{
	_Static_assert(sizeof(s->id) == QUEUE_ID_LEN + 1, "an id fits");
	memset(s, 0, sizeof(*s));
	s->limits = *limits;
	s->fd = s->ro_fd = -1;
	buf_init(&s->out);
}

static int fail(struct milter_spool *s, const char *what, int err)
{
	snprintf(s->err, sizeof(s->err), "%s: %s", what, strerror(err));
	s->status = MILTER_SPOOL_IO_ERROR;
	return -1;
}

int milter_spool_open(struct milter_spool *s, const struct milter_spool_limits *limits,
		      const char *dir)
{
	char name[QUEUE_ID_LEN + 16];
	milter_spool_init(s, limits);
	queue_id_new(s->id);
	snprintf(name, sizeof(name), "milter-%s", s->id);
	char *path = safeio_path_join(dir, name);
	s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->fd < 0) {
		int err = errno;
		free(path);
		return fail(s, "create the spool file", err);
	}
	s->ro_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int err = errno;
	unlink(path);
	free(path);
	if (s->ro_fd < 0) {
		close(s->fd);
		s->fd = -1;
		return fail(s, "open the spool file", err);
	}
	return 0;
}

/* Keep len more bytes of content, within the message's bound. */
static enum milter_spool_status put(struct milter_spool *s, const void *data, size_t len)
{
	if (s->status != MILTER_SPOOL_OK)
		return s->status;
	uint64_t size = s->size - s->trace_size;
	if (len > s->limits.message_max - size) {
		s->status = MILTER_SPOOL_TOO_BIG;
		return s->status;
	}
	s->size += len;
	if (s->fd < 0)
		return MILTER_SPOOL_OK; /* counting only */
	buf_append(&s->out, data, len);
	if (s->out.len >= SPOOL_BLOCK && milter_spool_flush(s) < 0)
		return s->status;
	return MILTER_SPOOL_OK;
}

/* text with every CR LF made LF. */
static enum milter_spool_status put_lf(struct milter_spool *s, const char *text, size_t len)
{
	size_t start = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (text[i] == '\r' && text[i + 1] == '\n') {
			if (put(s, text + start, i - start) != MILTER_SPOOL_OK)
				return s->status;
			start = i + 1; /* the LF */
		}
	}
	return put(s, text + start, len - start);
}

void milter_spool_trace(struct milter_spool *s, const char *field)
{
	if (s->size > 0 || s->status != MILTER_SPOOL_OK || s->in_body)
		return;
	size_t len = strlen(field);
	s->size = s->trace_size = len;
	if (s->fd >= 0)
		buf_append(&s->out, field, len);
}

enum milter_spool_status milter_spool_header(struct milter_spool *s, const char *name,
					     const char *value)
{
	if (s->status != MILTER_SPOOL_OK)
		return s->status;
	if (s->in_body)
		return MILTER_SPOOL_OK; /* a field after the body: not ours to place */
	size_t nlen = strlen(name), vlen = strlen(value);
	uint64_t field = (uint64_t)nlen + 2 + vlen + 1;
	if (s->names.count >= s->limits.fields_max || field > s->limits.header_max ||
	    s->header_size > s->limits.header_max - field) {
		s->status = MILTER_SPOOL_HEADER_TOO_BIG;
		return s->status;
	}
	s->header_size += field;
	strlist_add(&s->names, name);
	bool spaced = vlen > 0 && (value[0] == ' ' || value[0] == '\t');
	if (put(s, name, nlen) != MILTER_SPOOL_OK || put(s, spaced ? ":" : ": ", spaced ? 1 : 2) !=
	    MILTER_SPOOL_OK || put_lf(s, value, vlen) != MILTER_SPOOL_OK)
		return s->status;
	return put(s, "\n", 1);
}

enum milter_spool_status milter_spool_end_of_header(struct milter_spool *s)
{
	if (s->in_body || s->status != MILTER_SPOOL_OK)
		return s->status;
	s->in_body = true;
	return put(s, "\n", 1);
}

enum milter_spool_status milter_spool_body(struct milter_spool *s, const unsigned char *data,
					   size_t len)
{
	if (milter_spool_end_of_header(s) != MILTER_SPOOL_OK || len == 0)
		return s->status;
	const char *text = (const char *)data;
	size_t start = 0;
	if (s->body_cr) {
		s->body_cr = false;
		if (text[0] == '\n') {
			start = 0; /* the CR held back ends a line: the LF stands for both */
		} else if (put(s, "\r", 1) != MILTER_SPOOL_OK) {
			return s->status;
		}
	}
	if (text[len - 1] == '\r') {
		s->body_cr = true; /* wait for the next chunk */
		len--;
	}
	if (len > start)
		put_lf(s, text + start, len - start);
	return s->status;
}

int milter_spool_flush(struct milter_spool *s)
{
	if (s->body_cr) {
		s->body_cr = false; /* a CR at the very end stays a CR */
		put(s, "\r", 1);
	}
	if (s->status == MILTER_SPOOL_IO_ERROR)
		return -1;
	if (s->fd < 0 || s->out.len == 0)
		return 0;
	if (safeio_write_all(s->fd, s->out.data, s->out.len) < 0)
		return fail(s, "write the spool file", errno);
	buf_reset(&s->out);
	return 0;
}

unsigned milter_spool_count(const struct milter_spool *s, const char *name)
{
	unsigned n = 0;
	for (size_t i = 0; i < s->names.count; i++)
		if (strcasecmp(s->names.items[i], name) == 0)
			n++;
	return n;
}

void milter_spool_close(struct milter_spool *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->ro_fd >= 0)
		close(s->ro_fd);
	s->fd = s->ro_fd = -1;
	buf_free(&s->out);
	strlist_free(&s->names);
	s->status = MILTER_SPOOL_OK;
	s->size = s->header_size = s->trace_size = 0;
	s->in_body = s->body_cr = false;
}
