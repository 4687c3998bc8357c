/*
 * qmgr_sched.c - the queue manager's bookkeeping: the set of known queue
 * ids (so nothing is scheduled twice), a FIFO of messages ready for
 * delivery and a min-heap of deferred messages ordered by next attempt.
 * Every operation is O(1) or O(log n): no directory is read per message.
 * The main thread and the delivery lanes share this state: each exported
 * function takes q->lock for its own short operation (no I/O under it
 * but the write of one eventfd counter that wakes a sleeping thread).
 *
 * The flow tokens are counted here too: a message an smtp worker took a
 * token for owes one back when it leaves the ready list for good
 * (delivered, deferred, bounced, removed, found corrupt);
 * qmgr_give_tokens() writes what is owed outside the lock.
 *
 * RFCs: none. Untrusted input: none (ids are validated by the callers).
 * Privilege: unprivileged queue manager.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "flow.h"
#include "qmgr_internal.h"

#define HEAP_NONE ((size_t)-1)

uint64_t qmgr_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- deferred heap -------------------------------------------------------- */

static void heap_set(struct qmgr *q, size_t i, struct qmgr_entry *e)
{
	q->heap[i] = e;
	e->heap_idx = i;
}

static void heap_up(struct qmgr *q, size_t i)
{
	struct qmgr_entry *e = q->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (q->heap[parent]->due_us <= e->due_us)
			break;
		heap_set(q, i, q->heap[parent]);
		i = parent;
	}
	heap_set(q, i, e);
}

static void heap_down(struct qmgr *q, size_t i)
{
	struct qmgr_entry *e = q->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= q->heap_len)
			break;
		if (child + 1 < q->heap_len &&
		    q->heap[child + 1]->due_us < q->heap[child]->due_us)
			child++;
		if (e->due_us <= q->heap[child]->due_us)
			break;
		heap_set(q, i, q->heap[child]);
		i = child;
	}
	heap_set(q, i, e);
}

static void heap_push(struct qmgr *q, struct qmgr_entry *e)
{
	if (q->heap_len == q->heap_cap) {
		q->heap_cap = q->heap_cap ? q->heap_cap * 2 : 64;
		q->heap = xreallocarray(q->heap, q->heap_cap, sizeof(*q->heap));
	}
	q->heap_len++;
	heap_set(q, q->heap_len - 1, e);
	heap_up(q, q->heap_len - 1);
}

static struct qmgr_entry *heap_pop(struct qmgr *q)
{
	struct qmgr_entry *top = q->heap[0];

	q->heap_len--;
	if (q->heap_len > 0) {
		heap_set(q, 0, q->heap[q->heap_len]);
		heap_down(q, 0);
	}
	top->heap_idx = HEAP_NONE;
	return top;
}

/* Take entry i out of the heap, wherever it is. */
static void heap_remove(struct qmgr *q, size_t i)
{
	struct qmgr_entry *e = q->heap[i];

	q->heap_len--;
	if (i < q->heap_len) {
		heap_set(q, i, q->heap[q->heap_len]);
		heap_down(q, i);
		heap_up(q, q->heap[i]->heap_idx);
	}
	e->heap_idx = HEAP_NONE;
}

/* ---- known set and ready list (callers hold q->lock) ------------------------- */

static void lock(struct qmgr *q)
{
	pthread_mutex_lock(&q->lock);
}

static void unlock(struct qmgr *q)
{
	pthread_mutex_unlock(&q->lock);
}

static void make_ready(struct qmgr *q, struct qmgr_entry *e)
{
	if (e->state == QE_READY)
		log_panic("qmgr: %s is already ready", e->id);
	e->state = QE_READY;
	e->next = NULL;
	if (q->ready_tail != NULL)
		q->ready_tail->next = e;
	else
		q->ready_head = e;
	q->ready_tail = e;
	q->ready_count++;
}

/* Into the heap; the main thread must look again if it is now first. */
static void push_deferred(struct qmgr *q, struct qmgr_entry *e, uint64_t due_us)
{
	if (e->state != QE_NEW && e->state != QE_ACTIVE)
		log_panic("qmgr: %s is already scheduled", e->id);
	e->state = QE_DEFERRED;
	e->due_us = due_us;
	heap_push(q, e);
	if (e->heap_idx == 0)
		qmgr_wake_main(q);
}

/* The message is through with the ready list: give its token back. */
static void settle_token(struct qmgr *q, struct qmgr_entry *e)
{
	if (e->holds_token)
		q->tokens_owed++;
	e->holds_token = false;
}

static void require_active(const struct qmgr_entry *e, const char *what)
{
	if (e->state != QE_ACTIVE)
		log_panic("qmgr: %s of %s, which is not being delivered", what, e->id);
}

/* ---- the exported operations --------------------------------------------------- */

bool qmgr_add(struct qmgr *q, const char *id, bool in_deferred, bool recovered,
	      uint64_t due_us, bool holds_token)
{
	lock(q);
	if (hashmap_contains(&q->known, id)) {
		unlock(q);
		return false;
	}
	struct qmgr_entry *e = xcalloc(1, sizeof(*e));
	memcpy(e->id, id, QUEUE_ID_LEN + 1);
	e->in_deferred_dir = in_deferred;
	e->recovered = recovered;
	e->holds_token = holds_token;
	e->heap_idx = HEAP_NONE;
	hashmap_put(&q->known, e->id, e);
	if (in_deferred) {
		push_deferred(q, e, due_us);
	} else {
		make_ready(q, e);
		qmgr_lanes_wake_idle(q);
	}
	unlock(q);
	return true;
}

bool qmgr_hurry(struct qmgr *q, const char *id)
{
	lock(q);
	struct qmgr_entry *e = hashmap_get(&q->known, id, NULL);
	bool hurried = e != NULL && e->state == QE_DEFERRED;
	if (e != NULL && e->state == QE_ACTIVE)
		e->look_again = true;
	if (hurried) {
		heap_remove(q, e->heap_idx);
		make_ready(q, e);
		qmgr_lanes_wake_idle(q);
	}
	unlock(q);
	return hurried;
}

bool qmgr_known(struct qmgr *q, const char *id)
{
	lock(q);
	bool known = hashmap_contains(&q->known, id);
	unlock(q);
	return known;
}

struct qmgr_entry *qmgr_take_ready(struct qmgr *q)
{
	lock(q);
	struct qmgr_entry *e = q->stopping ? NULL : q->ready_head;
	if (e != NULL) {
		q->ready_head = e->next;
		if (q->ready_head == NULL)
			q->ready_tail = NULL;
		q->ready_count--;
		e->next = NULL;
		e->state = QE_ACTIVE;
	}
	unlock(q);
	return e;
}

void qmgr_defer(struct qmgr *q, struct qmgr_entry *e, uint64_t due_us)
{
	lock(q);
	require_active(e, "deferral");
	settle_token(q, e);
	push_deferred(q, e, due_us);
	unlock(q);
}

void qmgr_try_again(struct qmgr *q, struct qmgr_entry *e, uint64_t due_us)
{
	lock(q);
	require_active(e, "retry");
	push_deferred(q, e, due_us);
	unlock(q);
}

void qmgr_set_broken(struct qmgr *q, struct qmgr_entry *e)
{
	lock(q);
	require_active(e, "giving up");
	settle_token(q, e);
	e->state = QE_BROKEN;
	unlock(q);
}

void qmgr_forget(struct qmgr *q, struct qmgr_entry *e)
{
	lock(q);
	require_active(e, "removal");
	settle_token(q, e);
	if (e->look_again) {
		/* a command put the file back while this lane was giving up on
		 * it (a release racing the lane that found it held): one more look */
		e->look_again = false;
		make_ready(q, e);
		qmgr_lanes_wake_idle(q);
		unlock(q);
		return;
	}
	hashmap_remove(&q->known, e->id);
	unlock(q);
	free(e);
}

void qmgr_promote_due(struct qmgr *q, uint64_t now_us)
{
	bool any = false;

	lock(q);
	while (q->heap_len > 0 && q->heap[0]->due_us <= now_us) {
		make_ready(q, heap_pop(q));
		any = true;
	}
	if (any)
		qmgr_lanes_wake_idle(q);
	unlock(q);
}

uint64_t qmgr_next_due(struct qmgr *q)
{
	lock(q);
	uint64_t due = q->heap_len > 0 ? q->heap[0]->due_us : UINT64_MAX;
	unlock(q);
	return due;
}

size_t qmgr_known_count(struct qmgr *q)
{
	lock(q);
	size_t n = q->known.count;
	unlock(q);
	return n;
}

void qmgr_give_tokens(struct qmgr *q)
{
	lock(q);
	size_t n = q->tokens_owed;
	q->tokens_owed = 0;
	unlock(q);
	if (n > 0)
		queue_flow_give(q->flow_fd, n);
}

void qmgr_sched_free(struct qmgr *q)
{
	hashmap_free(&q->known, free);
	xfree(&q->heap);
	q->heap_len = q->heap_cap = 0;
	q->ready_head = q->ready_tail = NULL;
	q->ready_count = 0;
}
