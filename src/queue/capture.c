/*
 * capture.c - the message capture switch (see capture.h).
 *
 * The loop side decides (switch, lists), opens the content file and
 * builds the envelope header; one thread of its own (a one-thread
 * queue_committer, so that the completion comes back to the loop as the
 * commits' do) writes the file. The loop never waits on the disk for a
 * capture beyond one open(2), and only while capture is on.
 *
 * RFCs: none (the envelope header is written as RFC 5322 fields).
 * Untrusted input: envelope text (cleaned), content bytes (copied only).
 * Privilege: the unprivileged smtp worker.
 */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/cidr.h"
#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "../mail/address.h"
#include "commit.h"
#include "queue.h"

#define COPY_CHUNK (64 * 1024)

struct capture {
	const struct config *cfg;
	struct queue_committer *thread; /* runs the copies */
	bool on;                  /* the last answer of the trigger file */
	time_t looked_at;         /* when (a coarse monotonic second); 0 = never */
	unsigned pending;         /* copies handed to the thread, not done yet */
	unsigned long skipped;    /* copies skipped since the last log line of it */
};

/* One copy: everything the thread needs, owned by the job. */
struct capture_job {
	struct capture *owner;
	int content_fd;
	uint64_t off, len;
	char *tmp_path, *path;
	buf_t header;
	char id[QUEUE_ID_LEN + 1];
};

struct capture *capture_new(struct event_base *base, const struct config *cfg)
{
	if (!config_capture_possible(cfg))
		return NULL;
	struct capture *c = xcalloc(1, sizeof(*c));
	c->cfg = cfg;
	c->thread = queue_committer_new(base, 1);
	return c;
}

void capture_free(struct capture **cp)
{
	struct capture *c = *cp;
	if (c == NULL)
		return;
	queue_committer_free(&c->thread); /* the last copies finish, their callbacks run */
	xfree(cp);
}

static time_t coarse_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec + 1; /* never 0, which means "never looked" */
}

bool capture_on(struct capture *c)
{
	if (c->cfg->capture == CONFIG_YES)
		return true;
	time_t now = coarse_seconds();
	if (now == c->looked_at)
		return c->on;
	c->looked_at = now;
	struct stat st;
	bool on = stat(c->cfg->capture_trigger_file, &st) == 0;
	if (on != c->on)
		log_info("capture %s: trigger file %s %s", on ? "on" : "off",
			 c->cfg->capture_trigger_file, on ? "exists" : "is gone");
	c->on = on;
	return on;
}

bool capture_matches(const struct capture *c, const struct capture_message *m)
{
	const struct config *cfg = c->cfg;
	if (cfg->capture_senders.count == 0 && cfg->capture_recipients.count == 0 &&
	    cfg->capture_clients.count == 0)
		return true;
	if (cfg->capture_clients.count > 0 && m->client != NULL &&
	    cidr_list_match(&cfg->capture_clients, m->client))
		return true;
	if (cfg->capture_senders.count > 0 && address_listed(&cfg->capture_senders, m->sender))
		return true;
	for (size_t i = 0; i < m->rcpts->count && cfg->capture_recipients.count > 0; i++)
		if (address_listed(&cfg->capture_recipients, m->rcpts->items[i]))
			return true;
	return false;
}

/* A header field's value from untrusted text: control characters (CR
 * and LF among them) become '?'; bytes from 0x80 stay (UTF-8). */
static void put_clean(buf_t *b, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
		buf_putc(b, (*p < 32 || *p == 127) ? '?' : (char)*p);
}

static void envelope_header(buf_t *b, const struct capture_message *m)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	buf_printf(b, "X-Postern-Capture-Queue-Id: %s\n", m->queue_id);
	buf_printf(b, "X-Postern-Capture-Date: %s\n", date);
	buf_puts(b, "X-Postern-Capture-Client: ");
	put_clean(b, m->client_addr);
	if (m->helo != NULL) {
		buf_puts(b, " helo=");
		put_clean(b, m->helo);
	}
	buf_puts(b, "\nX-Postern-Capture-Sender: <");
	put_clean(b, m->sender);
	buf_puts(b, ">\n");
	for (size_t i = 0; i < m->rcpts->count; i++) {
		buf_puts(b, "X-Postern-Capture-Recipient: <");
		put_clean(b, m->rcpts->items[i]);
		buf_puts(b, ">\n");
	}
}

/* "cannot STEP PATH: errno text", malloc'ed. */
static char *failure(const char *step, const char *path, int err)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "cannot %s %s: %s", step, path, strerror(err));
	return buf_steal(&b);
}

/* Copy len bytes from src at off to the end of dst: in the kernel when
 * it can, else through a buffer. */
static int copy_range(int src, uint64_t off, uint64_t len, int dst)
{
	loff_t in = (loff_t)off;
	while (len > 0) {
		ssize_t n = copy_file_range(src, &in, dst, NULL, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			      errno == EOPNOTSUPP))
			break; /* the buffered way below */
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO; /* the content is shorter than it was said to be */
			return -1;
		}
		len -= (uint64_t)n;
	}
	char *chunk = len > 0 ? xmalloc(COPY_CHUNK) : NULL;
	while (len > 0) {
		size_t want = len < COPY_CHUNK ? (size_t)len : COPY_CHUNK;
		ssize_t n = pread(src, chunk, want, in);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || safeio_write_all(dst, chunk, (size_t)n) < 0) {
			if (n == 0)
				errno = EIO;
			free(chunk);
			return -1;
		}
		in += n;
		len -= (uint64_t)n;
	}
	free(chunk);
	return 0;
}

/* On the capture thread: write the file under its temporary name, then
 * rename it. No fsync: a capture is a sample, not a message we owe. */
static int capture_write(void *arg, char **err_r)
{
	struct capture_job *j = arg;
	int fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0) {
		*err_r = failure("create", j->tmp_path, errno);
		return -1;
	}
	const char *step = "write";
	int rc = fchmod(fd, 0640); /* whatever the umask */
	if (rc < 0)
		step = "chmod";
	if (rc == 0)
		rc = safeio_write_all(fd, j->header.data, j->header.len);
	if (rc == 0)
		rc = copy_range(j->content_fd, j->off, j->len, fd);
	int saved = errno;
	if (close(fd) < 0 && rc == 0) {
		rc = -1;
		saved = errno;
	}
	if (rc == 0 && rename(j->tmp_path, j->path) < 0) {
		rc = -1;
		saved = errno;
		step = "rename";
	}
	if (rc < 0) {
		unlink(j->tmp_path);
		*err_r = failure(step, j->path, saved);
	}
	return rc;
}

static void job_free(struct capture_job *j)
{
	if (j->content_fd >= 0)
		close(j->content_fd);
	free(j->tmp_path);
	free(j->path);
	buf_free(&j->header);
	free(j);
}

/* Back on the loop. */
static void capture_written(void *arg, int rc, char *err)
{
	struct capture_job *j = arg;
	j->owner->pending--;
	if (rc == 0)
		log_info("%s: captured file=%s", j->id, j->path);
	else
		log_error("%s: capture failed: %s", j->id, err != NULL ? err : "?");
	free(err);
	job_free(j);
}

void capture_save(struct capture *c, const struct capture_message *m)
{
	if (c->pending >= CAPTURE_PENDING_MAX) {
		if (c->skipped++ % 100 == 0)
			log_warn("%s: capture skipped: %u copies are still being written "
				 "(%lu skipped so far)", m->queue_id, c->pending, c->skipped);
		return;
	}
	int fd = open(m->content_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		log_error("%s: capture failed: cannot open %s: %s", m->queue_id, m->content_path,
			  strerror(errno));
		return;
	}
	struct capture_job *j = xcalloc(1, sizeof(*j));
	j->owner = c;
	j->content_fd = fd;
	j->off = m->content_off;
	j->len = m->content_len;
	snprintf(j->id, sizeof(j->id), "%s", m->queue_id);
	char name[QUEUE_ID_LEN + 8];
	snprintf(name, sizeof(name), "%s.eml", j->id);
	j->path = safeio_path_join(c->cfg->capture_dir, name);
	snprintf(name, sizeof(name), ".%s.tmp", j->id);
	j->tmp_path = safeio_path_join(c->cfg->capture_dir, name);
	envelope_header(&j->header, m);
	c->pending++;
	queue_task_start(c->thread, capture_write, j, capture_written, j);
}

void capture_message(struct capture *c, const struct capture_message *m)
{
	if (c != NULL && capture_on(c) && capture_matches(c, m))
		capture_save(c, m);
}
