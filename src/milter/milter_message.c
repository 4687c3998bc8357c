/*
 * milter_message.c - the message as the milters get it at the end of
 * data: its header section read back from the queue file (LF line ends,
 * folded fields joined) and its body in chunks with CRLF line ends; and,
 * for each next milter, the message as the milters before it changed it
 * (their header changes and new body made to that view the way the
 * queue file applies them on delivery, src/queue/maildir_header.c).
 *
 * Untrusted input: the message (the client's), bounded by
 * header_size_limit for what is held in memory, and the milters' changes
 * (decoded by milter_proto.c, bounded by the client). Unprivileged smtp
 * worker; the reads are of the message's own queue file, just written.
 */
#include "milter_int.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/xalloc.h"

/* Raw bytes per body chunk: LF becomes CRLF, so at most twice this,
 * which stays within MILTER_CHUNK_MAX. */
#define BODY_READ_MAX (MILTER_CHUNK_MAX / 2)

void milter_content_free(struct milter_session *ms)
{
	if (ms->fd >= 0)
		close(ms->fd);
	ms->fd = -1;
	for (size_t i = 0; i < ms->header_count; i++) {
		free(ms->headers[i].name);
		free(ms->headers[i].value);
	}
	xfree(&ms->headers);
	ms->header_count = 0;
	policy_edits_free(&ms->edits);
	ms->edits_text = 0;
	ms->replbody = NULL;
	ms->body_replaced = false;
	buf_free(&ms->new_body);
}

static void add_header(struct milter_session *ms, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	ms->headers = xreallocarray(ms->headers, ms->header_count + 1, sizeof(*ms->headers));
	struct milter_header *h = &ms->headers[ms->header_count++];
	size_t nlen = (size_t)(colon - line);
	while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
		nlen--;
	h->name = xstrndup(line, nlen);
	h->value = xstrndup(colon + 1, len - (size_t)(colon + 1 - line));
}

/* Does this line start a header field ("Name:")? */
static bool field_start(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && line[i] > ' ' && line[i] < 127 && line[i] != ':')
		i++;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i > 0 && i < len && line[i] == ':' && (line[0] != ' ' && line[0] != '\t');
}

/* Read the header section (LF line ends in the queue file) into
 * ms->headers and find where the body starts. 0, or -1 on a read error. */
int milter_content_open(struct milter_session *ms, const struct policy_request *req)
{
	if (req->content_path == NULL)
		return -1;
	ms->fd = open(req->content_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (ms->fd < 0)
		return -1;
	uint64_t limit = ms->client->cfg->header_size_limit + 64 * 1024; /* and our Received: */
	uint64_t want = req->content_len < limit ? req->content_len : limit;
	char *text = xmalloc((size_t)want + 1);
	ssize_t got = want > 0 ? pread(ms->fd, text, (size_t)want, (off_t)req->content_off) : 0;
	if (got < 0 || (uint64_t)got != want) {
		free(text);
		return -1;
	}
	ms->body_end = req->content_off + req->content_len;
	ms->body_off = ms->body_end;
	size_t pos = 0, n = (size_t)got;
	buf_t field = BUF_INIT;
	bool have_field = false;
	while (pos < n) {
		char *nl = memchr(text + pos, '\n', n - pos);
		if (nl == NULL && (uint64_t)n < req->content_len)
			break; /* cut by the limit: the rest counts as body */
		size_t end = nl != NULL ? (size_t)(nl - text) : n;
		const char *line = text + pos;
		size_t len = end - pos;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len > 0 && (line[0] == ' ' || line[0] == '\t') && have_field) {
			buf_putc(&field, '\n');
			buf_append(&field, line, len);
		} else {
			if (have_field)
				add_header(ms, field.data, field.len);
			buf_reset(&field);
			have_field = false;
			if (len == 0 || !field_start(line, len)) {
				/* the empty line (skipped), or a line that is no field:
				 * the body starts there */
				ms->body_off = req->content_off + (len == 0 ? end + 1 : pos);
				pos = n;
				break;
			}
			buf_append(&field, line, len);
			have_field = true;
		}
		pos = end + 1;
	}
	if (have_field)
		add_header(ms, field.data, field.len);
	if (ms->body_off > ms->body_end)
		ms->body_off = ms->body_end;
	buf_free(&field);
	free(text);
	return 0;
}

/* The next body chunk from ms->body_pos (in the file, or in the new body
 * an earlier milter gave) with CRLF line ends; its length, 0 at the end,
 * -1 on a read error. */
ssize_t milter_body_chunk(struct milter_session *ms, char *out)
{
	char raw[BODY_READ_MAX];
	uint64_t end = ms->body_replaced ? ms->new_body.len : ms->body_end;
	uint64_t left = end - ms->body_pos;
	size_t want = left < sizeof(raw) ? (size_t)left : sizeof(raw);
	if (want == 0)
		return 0;
	ssize_t got;
	if (ms->body_replaced) {
		memcpy(raw, ms->new_body.data + ms->body_pos, want);
		got = (ssize_t)want;
	} else {
		got = pread(ms->fd, raw, want, (off_t)ms->body_pos);
	}
	if (got <= 0)
		return -1;
	ms->body_pos += (uint64_t)got;
	size_t o = 0;
	for (ssize_t i = 0; i < got; i++) {
		if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = raw[i];
	}
	return (ssize_t)o;
}

/* text with CRLF made LF (a milter's folds and body; the queue file's
 * own form), malloc'ed. */
static char *lf_only(const char *text, size_t len, size_t *len_r)
{
	char *out = xmalloc(len + 1);
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (!(text[i] == '\r' && i + 1 < len && text[i + 1] == '\n'))
			out[n++] = text[i];
	out[n] = '\0';
	if (len_r != NULL)
		*len_r = n;
	return out;
}

/* Make c's header changes and new body to the message the next milters
 * get, the way the queue file applies them on delivery (docs/queue.md):
 * an insert index and a change's occurrence count the header section as
 * the changes before them left it; a change of an occurrence that is not
 * there adds the field at the end (removes nothing when its value is
 * empty). */
void milter_view_apply(struct milter_session *ms, const policy_edits_t *edits)
{
	for (size_t i = 0; i < edits->count; i++) {
		const struct policy_edit *e = &edits->items[i];
		if (e->type == POLICY_EDIT_REPLACE_BODY) {
			size_t len;
			char *body = lf_only(e->body.data != NULL ? e->body.data : "", e->body.len,
					     &len);
			buf_reset(&ms->new_body);
			buf_append(&ms->new_body, body, len);
			free(body);
			ms->body_replaced = true;
			continue;
		}
		if (e->type != POLICY_EDIT_ADD_HEADER && e->type != POLICY_EDIT_INSERT_HEADER &&
		    e->type != POLICY_EDIT_CHANGE_HEADER)
			continue;
		size_t at = ms->header_count;
		if (e->type == POLICY_EDIT_INSERT_HEADER && e->index < at)
			at = e->index;
		if (e->type == POLICY_EDIT_CHANGE_HEADER) {
			uint32_t seen = 0;
			for (at = 0; at < ms->header_count; at++)
				if (strcasecmp(ms->headers[at].name, e->name) == 0 && ++seen == e->index)
					break;
			if (at == ms->header_count && e->value == NULL)
				continue; /* no such field to remove */
			if (at == ms->header_count) {
				/* no such occurrence: the new value is added at
				 * the end (smfi_chgheader(3)) */
				ms->headers = xreallocarray(ms->headers, ms->header_count + 1,
							    sizeof(*ms->headers));
				ms->headers[at].name = xstrdup(e->name);
				ms->headers[at].value = lf_only(e->value, strlen(e->value), NULL);
				ms->header_count++;
				continue;
			}
			free(ms->headers[at].value);
			if (e->value != NULL) {
				ms->headers[at].value = lf_only(e->value, strlen(e->value), NULL);
				continue;
			}
			free(ms->headers[at].name);
			memmove(&ms->headers[at], &ms->headers[at + 1],
				(ms->header_count - at - 1) * sizeof(*ms->headers));
			ms->header_count--;
			continue;
		}
		ms->headers = xreallocarray(ms->headers, ms->header_count + 1,
					    sizeof(*ms->headers));
		memmove(&ms->headers[at + 1], &ms->headers[at],
			(ms->header_count - at) * sizeof(*ms->headers));
		ms->headers[at].name = xstrdup(e->name);
		ms->headers[at].value = lf_only(e->value != NULL ? e->value : "",
						e->value != NULL ? strlen(e->value) : 0, NULL);
		ms->header_count++;
	}
}

/* The end of the message is answered: keep c's changes if it let the
 * message through. */
