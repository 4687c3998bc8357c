/*
 * notifier.c - the smtp worker's notices (see notifier.h): the decision
 * and the rate bound on the event loop, the work on the commit threads.
 *
 * A job owns copies of everything it needs, so the session may be gone
 * by the time it runs. The loop never touches a job between
 * queue_task_start and its completion callback; the thread touches only
 * its job (the template is shared, read-only).
 *
 * RFCs: see notice.c. Untrusted input: verdict texts, hits and the
 * envelope (copied; cleaned when filled in). Privilege: the unprivileged
 * smtp worker.
 */
#include "notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "bounce.h"
#include "queue_file.h"

#define NOTICE_HEADERS_MAX (16 * 1024)
#define NOTICE_SUBJECT_MAX 200
/* Suppressed notices listed in a summary by id; more are counted. */
#define NOTICE_SUMMARY_IDS 20

struct notifier {
	struct event_base *base;
	const struct config *cfg;
	const struct notice_template *tpl;
	struct queue_committer *committer;
	int notify_fd;
	struct notice_rate rate;
	struct event *summary_timer;
	strlist_t suppressed; /* "ID: reason" of the first NOTICE_SUMMARY_IDS */
};

struct notice_job {
	struct notifier *n;
	enum notice_event event;
	char *queue_id, *sender, *client_addr, *helo, *check, *reason, *text;
	strlist_t rcpts, hits, to;
	uint64_t when_us;
	struct queue_writer *writer; /* refused/discarded: read back, then removed */
	bool read_quarantine;        /* quarantined: read quarantine/ID */
	buf_t summary;               /* a summary: the whole notice, built on the loop */
	bool own;                    /* the summary is a notice_admin_text's */
	char notice_id[QUEUE_ID_LEN + 1];
};

/* ---- the rate bound ----------------------------------------------------------- */

bool notice_rate_take(struct notice_rate *r, uint64_t now_ms)
{
	if (now_ms >= r->window_start_ms + r->window_ms || now_ms < r->window_start_ms) {
		r->window_start_ms = now_ms;
		r->sent = 0;
	}
	if (r->sent < r->limit) {
		r->sent++;
		return true;
	}
	r->suppressed++;
	return false;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- jobs ------------------------------------------------------------------------ */

static char *dup_or_empty(const char *s)
{
	return xstrdup(s != NULL ? s : "");
}

static void copy_list(strlist_t *dst, const strlist_t *src)
{
	for (size_t i = 0; src != NULL && i < src->count; i++)
		strlist_add(dst, src->items[i]);
}

static void job_free(struct notice_job *j)
{
	if (j->writer != NULL)
		queue_writer_abort(&j->writer);
	free(j->queue_id);
	free(j->sender);
	free(j->client_addr);
	free(j->helo);
	free(j->check);
	free(j->reason);
	free(j->text);
	strlist_free(&j->rcpts);
	strlist_free(&j->hits);
	strlist_free(&j->to);
	buf_free(&j->summary);
	free(j);
}

/* The Subject: of quarantine/ID, opened like the commands open spool
 * entries (no link followed, no FIFO waited on). */
static void read_quarantined_headers(const struct notice_job *j, buf_t *headers)
{
	char *dir = safeio_path_join(j->n->cfg->spool_dir, "quarantine");
	char *path = safeio_path_join(dir, j->queue_id), *err = NULL;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	struct qf_msg m;

	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && qf_read(fd, &m, &err) == 0) {
		qf_read_headers(fd, &m, NOTICE_HEADERS_MAX, headers, &err);
		qf_msg_free(&m);
	}
	free(err);
	if (fd >= 0)
		close(fd);
	free(path);
	free(dir);
}

/* On a commit thread: find the Subject:, build and commit the notice. */
static int job_run(void *arg, char **err_r)
{
	struct notice_job *j = arg;
	buf_t headers = BUF_INIT, subject = BUF_INIT;
	char *err = NULL;

	if (j->summary.len > 0)
		return notice_queue(j->n->cfg->spool_dir, j->n->cfg->hostname, &j->summary, NULL,
				    NULL, &j->to, now_us(), j->notice_id, err_r);
	if (j->writer != NULL) {
		if (queue_writer_read_headers(j->writer, NOTICE_HEADERS_MAX, &headers, &err) < 0)
			free(err); /* the notice goes without a subject */
		queue_writer_abort(&j->writer); /* the message was not accepted */
	} else if (j->read_quarantine) {
		read_quarantined_headers(j, &headers);
	}
	qf_header_value(buf_cstr(&headers), headers.len, "Subject", NOTICE_SUBJECT_MAX, &subject);
	struct notice_info info = {
		.event = j->event, .queue_id = j->queue_id, .sender = j->sender,
		.rcpts = &j->rcpts, .client_addr = j->client_addr, .helo = j->helo,
		.check = j->check, .reason = j->reason, .text = j->text, .hits = &j->hits,
		.subject = buf_cstr(&subject), .hostname = j->n->cfg->hostname,
		.when_us = j->when_us,
	};
	int rc = notice_queue(j->n->cfg->spool_dir, j->n->cfg->hostname, NULL, j->n->tpl, &info,
			      &j->to, now_us(), j->notice_id, err_r);
	buf_free(&headers);
	buf_free(&subject);
	return rc;
}

/* "<a@b>, <c@d>" for the log. */
static void put_addresses(buf_t *b, const strlist_t *to)
{
	for (size_t i = 0; i < to->count; i++)
		buf_printf(b, "%s<%s>", i > 0 ? ", " : "", to->items[i]);
}

/* Back on the loop: announce the notice, log, free the job. */
static void job_done(void *arg, int rc, char *err)
{
	struct notice_job *j = arg;
	buf_t to = BUF_INIT;
	put_addresses(&to, &j->to);
	if (rc == 0) {
		queue_notify_flags(j->n->notify_fd, j->notice_id, QF_NOTIFY_NO_TOKEN);
		if (j->summary.len > 0)
			log_info("notices: %s %s queued for %s", j->own ? "notice" : "summary",
				 j->notice_id, buf_cstr(&to));
		else
			log_info("%s: notice %s queued for %s", j->queue_id, j->notice_id,
				 buf_cstr(&to));
	} else {
		log_error("%s: notice for %s not queued: %s",
			  j->summary.len > 0 ? "notices" : j->queue_id, buf_cstr(&to), err);
	}
	free(err);
	buf_free(&to);
	job_free(j);
}

/* ---- the summary ------------------------------------------------------------------- */

static void send_summary(struct notifier *n)
{
	struct notice_job *j = xcalloc(1, sizeof(*j));
	uint64_t count = n->rate.suppressed;
	const char *host = n->cfg->hostname;
	char id[QUEUE_ID_LEN + 1];

	j->n = n;
	strlist_add(&j->to, n->cfg->notify_admin);
	queue_id_new(id); /* only a name for Message-ID; notice_queue picks the file's */
	buf_printf(&j->summary, "From: Mail Gateway <MAILER-DAEMON@%s>\nTo: <%s>\nDate: ", host,
		   n->cfg->notify_admin);
	bounce_format_date(&j->summary, now_us());
	buf_printf(&j->summary, "\nMessage-ID: <%s.notices@%s>\nAuto-Submitted: auto-generated\n"
		   "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
		   "Content-Transfer-Encoding: 8bit\n"
		   "Subject: [%s] %llu more notice%s held back in the last minute\n\n"
		   "The smtp worker (pid %ld) of the mail gateway %s found %llu more\n"
		   "message%s to tell you about in the last minute than notify_rate_limit\n"
		   "(%llu a minute) lets it send: messages quarantined, or refused or\n"
		   "discarded for a virus, and rate limits passed:\n\n", id, host, host, (unsigned long long)count,
		   count == 1 ? "" : "s", (long)getpid(), host, (unsigned long long)count,
		   count == 1 ? "" : "s", (unsigned long long)n->rate.limit);
	for (size_t i = 0; i < n->suppressed.count; i++)
		buf_printf(&j->summary, "  %s\n", n->suppressed.items[i]);
	if (count > n->suppressed.count)
		buf_printf(&j->summary, "  and %llu more\n",
			   (unsigned long long)(count - n->suppressed.count));
	buf_puts(&j->summary, "\nThe log has a line for each (\"notice held back\"); \"postern "
		 "quarantine list\"\nshows the quarantined ones.\n");
	for (size_t i = 0; i < j->summary.len; i++)
		if ((unsigned char)j->summary.data[i] < 0x20 && j->summary.data[i] != '\n')
			j->summary.data[i] = ' ';
	n->rate.suppressed = 0;
	strlist_free(&n->suppressed);
	queue_task_start(n->committer, job_run, j, job_done, j);
}

/* From: To: Date: Message-ID: and the MIME fields of a notice of ours. */
static void own_header(struct notifier *n, buf_t *b, const char *tag)
{
	const char *host = n->cfg->hostname;
	char id[QUEUE_ID_LEN + 1];
	queue_id_new(id); /* only a name for Message-ID; notice_queue picks the file's */
	buf_printf(b, "From: Mail Gateway <MAILER-DAEMON@%s>\nTo: <%s>\nDate: ", host,
		   n->cfg->notify_admin);
	bounce_format_date(b, now_us());
	buf_printf(b, "\nMessage-ID: <%s.%s@%s>\nAuto-Submitted: auto-generated\n"
		   "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
		   "Content-Transfer-Encoding: 8bit\n", id, tag, host);
}

/* Control characters other than LF become spaces (no field can be added). */
static void clean_text(buf_t *b, size_t from)
{
	for (size_t i = from; i < b->len; i++)
		if ((unsigned char)b->data[i] < 0x20 && b->data[i] != '\n')
			b->data[i] = ' ';
}

bool notifier_admin_text(struct notifier *n, const char *subject, const char *body)
{
	if (n == NULL || n->cfg->notify_admin[0] == '\0')
		return false;
	if (!notice_rate_take(&n->rate, mono_ms())) {
		log_info("notices: held back: more than notify_rate_limit (%llu) this minute: %.200s",
			 (unsigned long long)n->rate.limit, subject);
		if (n->suppressed.count < NOTICE_SUMMARY_IDS) {
			buf_t line = BUF_INIT;
			buf_printf(&line, "%.300s", subject);
			clean_text(&line, 0);
			strlist_add(&n->suppressed, line.data);
			buf_free(&line);
		}
		if (!evtimer_pending(n->summary_timer, NULL)) {
			uint64_t now = mono_ms(), end = n->rate.window_start_ms + n->rate.window_ms;
			uint64_t wait = end > now ? end - now : 0;
			struct timeval tv = { (time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000 };
			evtimer_add(n->summary_timer, &tv);
		}
		return false;
	}
	struct notice_job *j = xcalloc(1, sizeof(*j));
	j->n = n;
	j->own = true;
	strlist_add(&j->to, n->cfg->notify_admin);
	own_header(n, &j->summary, "limits");
	size_t from = j->summary.len;
	buf_printf(&j->summary, "Subject: %.300s\n", subject);
	clean_text(&j->summary, from);
	from = j->summary.len;
	buf_printf(&j->summary, "\n%s%s", body, body[0] != '\0' && body[strlen(body) - 1] != '\n'
						       ? "\n" : "");
	clean_text(&j->summary, from);
	queue_task_start(n->committer, job_run, j, job_done, j);
	return true;
}

static void summary_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct notifier *n = arg;
	if (n->rate.suppressed > 0)
		send_summary(n);
}

/* ---- the decision ------------------------------------------------------------------ */

struct notifier *notifier_new(struct event_base *base, const struct config *cfg,
			      const struct notice_template *t, struct queue_committer *c,
			      int notify_fd)
{
	if (cfg->notify_admin[0] == '\0' && cfg->notify_sender == CONFIG_NO)
		return NULL;
	struct notifier *n = xcalloc(1, sizeof(*n));
	n->base = base;
	n->cfg = cfg;
	n->tpl = t;
	n->committer = c;
	n->notify_fd = notify_fd;
	n->rate.limit = cfg->notify_rate_limit;
	n->rate.window_ms = NOTICE_WINDOW_MS;
	n->rate.window_start_ms = mono_ms();
	n->summary_timer = evtimer_new(base, summary_cb, n);
	if (n->summary_timer == NULL)
		log_fatal("notices: cannot create a timer");
	return n;
}

void notifier_free(struct notifier **np)
{
	struct notifier *n = *np;
	if (n == NULL)
		return;
	if (n->rate.suppressed > 0)
		log_info("notices: %llu held back in the last minute, no summary sent (stopping)",
			 (unsigned long long)n->rate.suppressed);
	event_free(n->summary_timer);
	strlist_free(&n->suppressed);
	free(n);
	*np = NULL;
}

/* Who gets this notice: the administrator, and the sender only if asked
 * for, for a quarantine, not for a virus, and not for <>. */
static void recipients(const struct notifier *n, const struct notice_info *info, strlist_t *to)
{
	const char *admin = n->cfg->notify_admin;
	if (admin[0] != '\0')
		strlist_add(to, admin);
	bool sender = n->cfg->notify_sender == CONFIG_YES &&
		      info->event == NOTICE_QUARANTINED && !notice_is_virus(info) &&
		      info->sender != NULL && info->sender[0] != '\0' &&
		      !str_eq_nocase(info->sender, admin);
	if (sender)
		strlist_add(to, info->sender);
}

/* Over the limit: count it for the summary at the end of the window. */
static void hold_back(struct notifier *n, const struct notice_info *info)
{
	const char *why = info->text != NULL && info->text[0] != '\0' ? info->text : info->reason;
	log_info("%s: notice held back: more than notify_rate_limit (%llu) this minute; "
		 "counted in the next summary", info->queue_id,
		 (unsigned long long)n->rate.limit);
	if (n->suppressed.count < NOTICE_SUMMARY_IDS) {
		buf_t line = BUF_INIT;
		buf_printf(&line, "%s  %s  from <%s>: %.200s", info->queue_id,
			   info->event == NOTICE_QUARANTINED ? "quarantined"
			   : info->event == NOTICE_REFUSED ? "refused" : "discarded",
			   info->sender != NULL ? info->sender : "", why != NULL ? why : "");
		strlist_add(&n->suppressed, line.data);
		buf_free(&line);
	}
	if (!evtimer_pending(n->summary_timer, NULL)) {
		uint64_t now = mono_ms(), end = n->rate.window_start_ms + n->rate.window_ms;
		uint64_t wait = end > now ? end - now : 0;
		struct timeval tv = { (time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000 };
		evtimer_add(n->summary_timer, &tv);
	}
}

void notifier_set_window(struct notifier *n, uint64_t window_ms)
{
	n->rate.window_ms = window_ms;
}

bool notifier_event(struct notifier *n, const struct notice_info *info,
		    struct queue_writer **writer)
{
	if (n == NULL || (info->event != NOTICE_QUARANTINED && !notice_is_virus(info)))
		return false;
	strlist_t to = { NULL, 0 };
	recipients(n, info, &to);
	if (to.count == 0)
		return false;
	if (!notice_rate_take(&n->rate, mono_ms())) {
		hold_back(n, info);
		strlist_free(&to);
		return false;
	}
	struct notice_job *j = xcalloc(1, sizeof(*j));
	j->n = n;
	j->event = info->event;
	j->queue_id = dup_or_empty(info->queue_id);
	j->sender = dup_or_empty(info->sender);
	j->client_addr = dup_or_empty(info->client_addr);
	j->helo = dup_or_empty(info->helo);
	j->check = dup_or_empty(info->check);
	j->reason = dup_or_empty(info->reason);
	j->text = dup_or_empty(info->text);
	copy_list(&j->rcpts, info->rcpts);
	copy_list(&j->hits, info->hits);
	j->to = to;
	j->when_us = now_us();
	j->read_quarantine = info->event == NOTICE_QUARANTINED;
	if (writer != NULL && info->event != NOTICE_QUARANTINED) {
		j->writer = *writer;
		*writer = NULL;
	}
	queue_task_start(n->committer, job_run, j, job_done, j);
	return true;
}
