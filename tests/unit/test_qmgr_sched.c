/*
 * test_qmgr_sched.c - the queue manager's schedule as the queue commands
 * see it: a wake-up for a deferred message makes it due at once wherever
 * it sits in the heap (postern queue flush), the other deferred ones keep
 * their order; a wake-up for a message a lane is working on makes the lane
 * look once more instead of forgetting it (a release racing the lane that
 * found the file gone into hold/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "queue/qmgr_internal.h"

static void ids(char out[][QUEUE_ID_LEN + 1], size_t n)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out[i], QUEUE_ID_LEN + 1, "00000000000000000%02u", (unsigned)(i % 100));
}

static void setup_qmgr(struct qmgr *q)
{
	memset(q, 0, sizeof(*q));
	pthread_mutex_init(&q->lock, NULL);
	q->wake_fd = -1;
	q->notify_fd = -1;
	q->flow_fd = -1;
	q->wake_fifo_fd = -1;
}

static void test_hurry_deferred(void **state)
{
	struct qmgr q;
	char id[8][QUEUE_ID_LEN + 1];

	(void)state;
	setup_qmgr(&q);
	ids(id, 8);
	for (size_t i = 0; i < 8; i++) /* due in 100..800 s */
		assert_true(qmgr_add(&q, id[i], true, false, (i + 1) * 100000000ull, false));
	assert_null(qmgr_take_ready(&q));
	/* one from the middle of the heap is due now; unknown ids change nothing */
	assert_true(qmgr_hurry(&q, id[5]));
	assert_false(qmgr_hurry(&q, "0000000000000000099"));
	struct qmgr_entry *e = qmgr_take_ready(&q);
	assert_non_null(e);
	assert_string_equal(e->id, id[5]);
	assert_null(qmgr_take_ready(&q));
	/* the others come due in their order */
	uint64_t last = 0;
	for (size_t n = 0; n < 7; n++) {
		uint64_t due = qmgr_next_due(&q);
		assert_true(due > last);
		last = due;
		qmgr_promote_due(&q, due);
		struct qmgr_entry *next = qmgr_take_ready(&q);
		assert_non_null(next);
		assert_int_equal(next->due_us, due);
		qmgr_forget(&q, next);
	}
	assert_int_equal(qmgr_next_due(&q), UINT64_MAX);
	qmgr_forget(&q, e);
	assert_int_equal(qmgr_known_count(&q), 0);
	qmgr_sched_free(&q);
}

static void test_look_again_while_active(void **state)
{
	struct qmgr q;
	char id[1][QUEUE_ID_LEN + 1];

	(void)state;
	setup_qmgr(&q);
	ids(id, 1);
	assert_true(qmgr_add(&q, id[0], false, false, 0, false));
	struct qmgr_entry *e = qmgr_take_ready(&q);
	assert_non_null(e);
	/* a release's wake-up while the lane works on it: not deferred ... */
	assert_false(qmgr_hurry(&q, id[0]));
	/* ... so the lane's giving up puts it back once */
	qmgr_forget(&q, e);
	assert_int_equal(qmgr_known_count(&q), 1);
	e = qmgr_take_ready(&q);
	assert_non_null(e);
	assert_string_equal(e->id, id[0]);
	qmgr_forget(&q, e); /* no second wake-up: gone for good */
	assert_int_equal(qmgr_known_count(&q), 0);
	assert_null(qmgr_take_ready(&q));
	qmgr_sched_free(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hurry_deferred),
		cmocka_unit_test(test_look_again_while_active),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
