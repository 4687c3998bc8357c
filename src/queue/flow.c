/*
 * flow.c - in-flow back-pressure tokens (see flow.h).
 *
 * Every smtp worker reads the same pipe: whichever is first gets a token,
 * the others find it empty and keep waiting. A worker only watches the
 * pipe while some of its sessions wait, so idle workers never take
 * tokens they do not need.
 */
#include "flow.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"

#define FLOW_WRITE_CHUNK 4096

struct queue_flow_wait {
	struct queue_flow_wait *next;
	struct queue_flow_wait *prev;
	queue_flow_fn *fn;
	void *arg;
	uint64_t deadline_ms;
};

struct queue_flow {
	int fd;
	uint64_t delay_ms;
	struct event *readable;
	struct event *timer;
	struct queue_flow_wait *head, *tail;
	uint64_t waited, timed_out;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void queue_flow_give(int fd, size_t n)
{
	unsigned char tokens[FLOW_WRITE_CHUNK] = { 0 };
	while (fd >= 0 && n > 0) {
		size_t chunk = n < sizeof(tokens) ? n : sizeof(tokens);
		ssize_t w = write(fd, tokens, chunk);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* full: there are tokens enough */
		n -= (size_t)w;
	}
}

static bool take_token(struct queue_flow *f)
{
	unsigned char b;
	ssize_t n;
	do {
		n = read(f->fd, &b, 1);
	} while (n < 0 && errno == EINTR);
	return n == 1;
}

static void unlink_wait(struct queue_flow *f, struct queue_flow_wait *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		f->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		f->tail = w->prev;
}

/* Watch the pipe and the head's deadline only while somebody waits. */
static void rearm(struct queue_flow *f)
{
	if (f->head == NULL) {
		event_del(f->readable);
		evtimer_del(f->timer);
		return;
	}
	event_add(f->readable, NULL);
	uint64_t now = now_ms();
	uint64_t ms = f->head->deadline_ms > now ? f->head->deadline_ms - now : 0;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(f->timer, &tv);
}

/* Pop the head and tell it. */
static void serve_head(struct queue_flow *f, bool got)
{
	struct queue_flow_wait *w = f->head;
	unlink_wait(f, w);
	if (!got)
		f->timed_out++;
	queue_flow_fn *fn = w->fn;
	void *arg = w->arg;
	free(w);
	fn(arg, got);
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue_flow *f = arg;
	(void)fd;
	(void)what;
	while (f->head != NULL && take_token(f))
		serve_head(f, true);
	rearm(f);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue_flow *f = arg;
	(void)fd;
	(void)what;
	uint64_t now = now_ms();
	while (f->head != NULL && f->head->deadline_ms <= now)
		serve_head(f, false);
	rearm(f);
}

struct queue_flow *queue_flow_new(struct event_base *base, int fd, uint64_t delay_ms)
{
	struct queue_flow *f = xcalloc(1, sizeof(*f));
	f->fd = fd;
	f->delay_ms = delay_ms;
	if (fd >= 0 && delay_ms > 0) {
		f->readable = event_new(base, fd, EV_READ | EV_PERSIST, readable_cb, f);
		f->timer = evtimer_new(base, timer_cb, f);
		if (f->readable == NULL || f->timer == NULL)
			log_fatal("flow: cannot create events");
	}
	return f;
}

void queue_flow_free(struct queue_flow **fp)
{
	struct queue_flow *f = *fp;
	if (f == NULL)
		return;
	while (f->head != NULL) {
		struct queue_flow_wait *w = f->head;
		unlink_wait(f, w);
		free(w);
	}
	if (f->readable != NULL)
		event_free(f->readable);
	if (f->timer != NULL)
		event_free(f->timer);
	xfree(fp);
}

bool queue_flow_acquire(struct queue_flow *f, queue_flow_fn *fn, void *arg,
			struct queue_flow_wait **wait_r)
{
	*wait_r = NULL;
	if (f == NULL || f->readable == NULL)
		return true;
	if (f->head == NULL && take_token(f))
		return true;
	struct queue_flow_wait *w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->deadline_ms = now_ms() + f->delay_ms;
	w->prev = f->tail;
	if (f->tail != NULL)
		f->tail->next = w;
	else
		f->head = w;
	f->tail = w;
	f->waited++;
	rearm(f);
	*wait_r = w;
	return false;
}

void queue_flow_cancel(struct queue_flow *f, struct queue_flow_wait **wp)
{
	if (*wp == NULL)
		return;
	unlink_wait(f, *wp);
	xfree(wp);
	rearm(f);
}

void queue_flow_stats(const struct queue_flow *f, uint64_t *waited_r, uint64_t *timed_out_r)
{
	*waited_r = f != NULL ? f->waited : 0;
	*timed_out_r = f != NULL ? f->timed_out : 0;
}
