/*
 * qmgr_sched.c - the queue manager's bookkeeping: the set of known queue
 * ids (so nothing is scheduled twice), a FIFO of messages ready for
 * delivery and a min-heap of deferred messages ordered by next attempt.
 * Every operation is O(1) or O(log n): no directory is read per message.
 *
 * RFCs: none. Untrusted input: none (ids are validated by the callers).
 * Privilege: unprivileged queue manager.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
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

/* ---- known set and ready list ---------------------------------------------- */

struct qmgr_entry *qmgr_add(struct qmgr *q, const char *id, bool in_deferred,
			    bool recovered, uint64_t due_us)
{
	if (hashmap_contains(&q->known, id))
		return NULL;
	struct qmgr_entry *e = xcalloc(1, sizeof(*e));
	memcpy(e->id, id, QUEUE_ID_LEN + 1);
	e->in_deferred_dir = in_deferred;
	e->recovered = recovered;
	e->heap_idx = HEAP_NONE;
	hashmap_put(&q->known, id, e);
	if (in_deferred)
		qmgr_defer(q, e, due_us);
	else
		qmgr_make_ready(q, e);
	return e;
}

void qmgr_make_ready(struct qmgr *q, struct qmgr_entry *e)
{
	if (e->state == QE_READY)
		log_panic("qmgr_make_ready: %s is already ready", e->id);
	e->state = QE_READY;
	e->next = NULL;
	if (q->ready_tail != NULL)
		q->ready_tail->next = e;
	else
		q->ready_head = e;
	q->ready_tail = e;
}

struct qmgr_entry *qmgr_pop_ready(struct qmgr *q)
{
	struct qmgr_entry *e = q->ready_head;

	if (e == NULL)
		return NULL;
	q->ready_head = e->next;
	if (q->ready_head == NULL)
		q->ready_tail = NULL;
	e->next = NULL;
	e->state = QE_ACTIVE;
	return e;
}

void qmgr_defer(struct qmgr *q, struct qmgr_entry *e, uint64_t due_us)
{
	if (e->state != QE_NEW && e->state != QE_ACTIVE)
		log_panic("qmgr_defer: %s is already scheduled", e->id);
	e->state = QE_DEFERRED;
	e->due_us = due_us;
	heap_push(q, e);
}

void qmgr_promote_due(struct qmgr *q, uint64_t now_us)
{
	while (q->heap_len > 0 && q->heap[0]->due_us <= now_us)
		qmgr_make_ready(q, heap_pop(q));
}

uint64_t qmgr_next_due(const struct qmgr *q)
{
	return q->heap_len > 0 ? q->heap[0]->due_us : UINT64_MAX;
}

void qmgr_forget(struct qmgr *q, struct qmgr_entry *e)
{
	if (e->state == QE_READY || e->state == QE_DEFERRED)
		log_panic("qmgr_forget: %s is still scheduled", e->id);
	hashmap_remove(&q->known, e->id);
	free(e);
}

void qmgr_sched_free(struct qmgr *q)
{
	hashmap_free(&q->known, free);
	xfree(&q->heap);
	q->heap_len = q->heap_cap = 0;
	q->ready_head = q->ready_tail = NULL;
}
