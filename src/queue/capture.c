/*
 * capture.c - the message capture switch (see capture.h).
 *
 * The caller's thread decides (switch, lists), opens (or duplicates) the
 * content file's descriptor and builds the envelope header; one thread
 * of the capture's own writes the files, in order, from a list guarded
 * by a mutex, and logs each. The caller never waits on the disk for a
 * capture beyond one open(2), and only while capture is on. Callers may
 * be one event loop (the smtp worker) or many threads (the milter
 * server's libmilter threads): the trigger file's cached answer is kept
 * in atomics, so at most one of them looks at the file each second.
 *
 * RFCs: none (the envelope header is written as RFC 5322 fields).
 * Untrusted input: envelope text (cleaned), content bytes (copied only).
 * Privilege: the unprivileged smtp worker or milter process (`user`).
 */
#include "capture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
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
#include "queue.h"

#define COPY_CHUNK (64 * 1024)

/* One copy: everything the thread needs, owned by the job. */
/* The longest MTA queue id kept (Postfix's long ids are under 30). */
#define MTA_ID_MAX 64

struct capture_job {
	struct capture_job *next;
	int content_fd;
	uint64_t off, len;
	char *tmp_path, *path;
	buf_t header;
	char id[QUEUE_ID_LEN + 1];
	char mta_id[MTA_ID_MAX + 1]; /* the MTA's queue id, cleaned; "" if none */
};

struct capture {
	const struct config *cfg;
	_Atomic bool on;          /* the last answer of the trigger file */
	_Atomic long looked_at;   /* when (a coarse monotonic second); 0 = never */
	_Atomic int look_error;   /* errno of the last look other than ENOENT, or 0 */
	pthread_t thread;         /* writes the copies */
	pthread_mutex_t lock;     /* guards what follows */
	pthread_cond_t work;
	struct capture_job *head, *tail; /* waiting for the thread, oldest first */
	unsigned pending;         /* copies handed to the thread, not done yet */
	unsigned long skipped;    /* copies skipped for want of room */
	bool stopping;
};

static void *capture_thread(void *arg);

struct capture *capture_new(const struct config *cfg)
{
	if (!config_capture_possible(cfg))
		return NULL;
	struct capture *c = xcalloc(1, sizeof(*c));
	c->cfg = cfg;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->work, NULL);
	int rc = pthread_create(&c->thread, NULL, capture_thread, c);
	if (rc != 0)
		log_panic("capture: cannot start its thread: %s", strerror(rc));
	return c;
}

void capture_free(struct capture **cp)
{
	struct capture *c = *cp;
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true; /* the thread writes what is waiting, then ends */
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->work);
	pthread_mutex_destroy(&c->lock);
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
	long now = (long)coarse_seconds();
	/* The first caller of each second looks; the others take the last
	 * answer. */
	if (atomic_load_explicit(&c->looked_at, memory_order_relaxed) == now ||
	    atomic_exchange(&c->looked_at, now) == now)
		return atomic_load(&c->on);
	struct stat st;
	bool on = stat(c->cfg->capture_trigger_file, &st) == 0;
	/* Not allowed to look (a folder above it closed to user): off, and
	 * said once, since touching the file would change nothing. */
	int err = on || errno == ENOENT ? 0 : errno;
	if (atomic_exchange(&c->look_error, err) != err && err != 0)
		log_error("capture stays off: cannot look at trigger file %s: %s",
			  c->cfg->capture_trigger_file, strerror(err));
	if (atomic_exchange(&c->on, on) != on)
		log_info("capture %s: trigger file %s %s", on ? "on" : "off",
			 c->cfg->capture_trigger_file, on ? "exists" : "is gone");
	return on;
}

/* A numeric address as a socket address; false if text is none. */
static bool client_from_text(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (text == NULL)
		return false;
	if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

bool capture_matches(const struct capture *c, const struct capture_message *m)
{
	const struct config *cfg = c->cfg;
	if (cfg->capture_senders.count == 0 && cfg->capture_recipients.count == 0 &&
	    cfg->capture_clients.count == 0)
		return true;
	if (cfg->capture_clients.count > 0) {
		struct sockaddr_storage parsed;
		const struct sockaddr *client = m->client;
		if (client == NULL && client_from_text(m->client_addr, &parsed))
			client = (const struct sockaddr *)&parsed;
		if (client != NULL && cidr_list_match(&cfg->capture_clients, client))
			return true;
	}
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
	if (m->mta_queue_id != NULL) {
		buf_puts(b, "X-Postern-Capture-MTA-Queue-Id: ");
		put_clean(b, m->mta_queue_id);
		buf_putc(b, '\n');
	}
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
static int capture_write(struct capture_job *j, char **err_r)
{
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

/* The capture's thread: the waiting copies in order, until stopped and
 * none is left. */
static void *capture_thread(void *arg)
{
	struct capture *c = arg;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (c->head == NULL && !c->stopping)
			pthread_cond_wait(&c->work, &c->lock);
		struct capture_job *j = c->head;
		if (j == NULL)
			break;
		c->head = j->next;
		if (c->head == NULL)
			c->tail = NULL;
		pthread_mutex_unlock(&c->lock);
		char *err = NULL;
		if (capture_write(j, &err) == 0)
			log_info("%s: captured file=%s%s%s", j->id, j->path,
				 j->mta_id[0] != '\0' ? " mta_queue_id=" : "", j->mta_id);
		else
			log_error("%s: capture failed: %s", j->id, err != NULL ? err : "?");
		free(err);
		job_free(j);
		pthread_mutex_lock(&c->lock);
		c->pending--;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Hand j to the thread, unless CAPTURE_PENDING_MAX are waiting. */
static bool enqueue(struct capture *c, struct capture_job *j)
{
	pthread_mutex_lock(&c->lock);
	bool room = c->pending < CAPTURE_PENDING_MAX;
	unsigned long skipped = 0;
	if (room) {
		c->pending++;
		if (c->tail != NULL)
			c->tail->next = j;
		else
			c->head = j;
		c->tail = j;
		pthread_cond_signal(&c->work);
	} else {
		skipped = ++c->skipped;
	}
	pthread_mutex_unlock(&c->lock);
	if (!room && skipped % 100 == 1)
		log_warn("%s: capture skipped: %u copies are still being written (%lu skipped "
			 "so far)", j->id, CAPTURE_PENDING_MAX, skipped);
	return room;
}

void capture_save(struct capture *c, const struct capture_message *m)
{
	int fd = m->content_path != NULL
			 ? open(m->content_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
			 : fcntl(m->content_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		log_error("%s: capture failed: cannot open %s: %s", m->queue_id,
			  m->content_path != NULL ? m->content_path : "the message", strerror(errno));
		return;
	}
	struct capture_job *j = xcalloc(1, sizeof(*j));
	j->content_fd = fd;
	j->off = m->content_off;
	j->len = m->content_len;
	snprintf(j->id, sizeof(j->id), "%s", m->queue_id);
	if (m->mta_queue_id != NULL) { /* the MTA's: printable, no spaces */
		size_t i = 0;
		for (const unsigned char *p = (const unsigned char *)m->mta_queue_id;
		     *p != '\0' && i < MTA_ID_MAX; p++)
			j->mta_id[i++] = *p > 32 && *p < 127 ? (char)*p : '?';
		j->mta_id[i] = '\0';
	}
	char name[QUEUE_ID_LEN + 8];
	snprintf(name, sizeof(name), "%s.eml", j->id);
	j->path = safeio_path_join(c->cfg->capture_dir, name);
	snprintf(name, sizeof(name), ".%s.tmp", j->id);
	j->tmp_path = safeio_path_join(c->cfg->capture_dir, name);
	envelope_header(&j->header, m);
	if (!enqueue(c, j))
		job_free(j);
}

void capture_message(struct capture *c, const struct capture_message *m)
{
	if (c != NULL && capture_on(c) && capture_matches(c, m))
		capture_save(c, m);
}
