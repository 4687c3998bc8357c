/*
 * test_queue_flow.c - the in-flow tokens of flow.c on a real pipe and a
 * real event loop: a token in the pipe is taken at once; without one the
 * caller waits and is served when one comes; waiters are served in the
 * order they came (a newcomer does not jump the line even when a token
 * is already in the pipe); the delay runs out (the caller goes ahead
 * without a token, and the stats count it); a cancelled waiter is never
 * called and does not take a token; flow off (no pipe, or delay 0) never
 * waits; the queue manager's side stops at a full pipe without blocking.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "queue/flow.h"

#define MAX_CALLS 16

struct fixture {
	struct event_base *base;
	int pipe[2]; /* [0] the workers' end, [1] the queue manager's */
	struct queue_flow *flow;
	/* What the callbacks saw, in order. */
	int called[MAX_CALLS];
	bool got[MAX_CALLS];
	size_t calls;
};

/* One waiting message: its number and the fixture. */
struct waiter {
	struct fixture *f;
	int number;
	struct queue_flow_wait *handle;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->base = event_base_new();
	assert_non_null(f->base);
	assert_int_equal(pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	queue_flow_free(&f->flow);
	assert_null(f->flow);
	close(f->pipe[0]);
	close(f->pipe[1]);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void on_flow(void *arg, bool got_token)
{
	struct waiter *w = arg;
	struct fixture *f = w->f;

	assert_true(f->calls < MAX_CALLS);
	f->called[f->calls] = w->number;
	f->got[f->calls] = got_token;
	f->calls++;
	w->handle = NULL; /* served: the handle is gone */
}

/* Acquire for w; true if a token was there at once. */
static bool acquire(struct fixture *f, struct waiter *w, int number)
{
	w->f = f;
	w->number = number;
	w->handle = NULL;
	bool now = queue_flow_acquire(f->flow, on_flow, w, &w->handle);
	if (now)
		assert_null(w->handle);
	else
		assert_non_null(w->handle);
	return now;
}

static size_t tokens_in_pipe(const struct fixture *f)
{
	int n = -1;

	assert_int_equal(ioctl(f->pipe[0], FIONREAD, &n), 0);
	return (size_t)n;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run the loop until `calls` callbacks happened (10 s at most). */
static void run_until_calls(struct fixture *f, size_t calls)
{
	uint64_t deadline = now_ms() + 10000;

	while (f->calls < calls && now_ms() < deadline) {
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_int_equal(f->calls, calls);
}

/* Run the loop a little, for things that must not happen. */
static void run_a_while(struct fixture *f, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;

	while (now_ms() < deadline) {
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static void test_token_taken_at_once(void **state)
{
	struct fixture *f = *state;
	struct waiter a, b;
	uint64_t waited, timed_out;

	f->flow = queue_flow_new(f->base, f->pipe[0], 10000);
	queue_flow_give(f->pipe[1], 2);
	assert_true(acquire(f, &a, 1));
	assert_true(acquire(f, &b, 2));
	assert_int_equal(tokens_in_pipe(f), 0);
	queue_flow_stats(f->flow, &waited, &timed_out);
	assert_int_equal(waited, 0);
	assert_int_equal(timed_out, 0);
	assert_int_equal(f->calls, 0);
}

static void test_waiters_served_in_order_as_tokens_come(void **state)
{
	struct fixture *f = *state;
	struct waiter w[4];
	uint64_t waited, timed_out;

	f->flow = queue_flow_new(f->base, f->pipe[0], 10000);
	assert_false(acquire(f, &w[0], 1));
	assert_false(acquire(f, &w[1], 2));
	run_a_while(f, 20);
	assert_int_equal(f->calls, 0); /* no token, delay far away */
	queue_flow_give(f->pipe[1], 1);
	/* A token is in the pipe but the loop has not seen it yet: a
	 * newcomer must still queue behind the two that wait. */
	assert_false(acquire(f, &w[2], 3));
	run_until_calls(f, 1);
	assert_int_equal(f->called[0], 1);
	assert_true(f->got[0]);
	queue_flow_give(f->pipe[1], 2);
	run_until_calls(f, 3);
	assert_int_equal(f->called[1], 2);
	assert_int_equal(f->called[2], 3);
	assert_true(f->got[1] && f->got[2]);
	assert_int_equal(tokens_in_pipe(f), 0);
	/* Nobody waits now: a token is taken at once again. */
	queue_flow_give(f->pipe[1], 1);
	assert_true(acquire(f, &w[3], 4));
	queue_flow_stats(f->flow, &waited, &timed_out);
	assert_int_equal(waited, 3);
	assert_int_equal(timed_out, 0);
}

static void test_delay_runs_out(void **state)
{
	struct fixture *f = *state;
	struct waiter a, b;
	uint64_t waited, timed_out;

	f->flow = queue_flow_new(f->base, f->pipe[0], 50);
	uint64_t start = now_ms();
	assert_false(acquire(f, &a, 1));
	run_until_calls(f, 1);
	assert_true(now_ms() - start >= 50); /* it did wait the delay */
	assert_int_equal(f->called[0], 1);
	assert_false(f->got[0]); /* went ahead without a token */
	queue_flow_stats(f->flow, &waited, &timed_out);
	assert_int_equal(waited, 1);
	assert_int_equal(timed_out, 1);
	/* A token that comes later is left for the next message. */
	queue_flow_give(f->pipe[1], 1);
	run_a_while(f, 20);
	assert_int_equal(tokens_in_pipe(f), 1);
	assert_true(acquire(f, &b, 2));
}

static void test_cancelled_waiter_is_never_called(void **state)
{
	struct fixture *f = *state;
	struct waiter a, b;

	f->flow = queue_flow_new(f->base, f->pipe[0], 10000);
	assert_false(acquire(f, &a, 1));
	assert_false(acquire(f, &b, 2));
	queue_flow_cancel(f->flow, &a.handle); /* the first client went away */
	assert_null(a.handle);
	queue_flow_cancel(f->flow, &a.handle); /* twice is harmless */
	queue_flow_give(f->pipe[1], 1);
	run_until_calls(f, 1);
	assert_int_equal(f->called[0], 2);
	assert_true(f->got[0]);
	/* Cancelling the last waiter stops the watch; its token stays. */
	struct waiter c;
	assert_false(acquire(f, &c, 3));
	queue_flow_cancel(f->flow, &c.handle);
	queue_flow_give(f->pipe[1], 1);
	run_a_while(f, 20);
	assert_int_equal(f->calls, 1);
	assert_int_equal(tokens_in_pipe(f), 1);
}

static void test_free_while_waiting(void **state)
{
	struct fixture *f = *state;
	struct waiter a;

	f->flow = queue_flow_new(f->base, f->pipe[0], 10000);
	assert_false(acquire(f, &a, 1));
	queue_flow_free(&f->flow); /* no callback, nothing leaks (ASan) */
	run_a_while(f, 20);
	assert_int_equal(f->calls, 0);
}

static void test_flow_off_never_waits(void **state)
{
	struct fixture *f = *state;
	struct waiter a;
	uint64_t waited, timed_out;

	/* in_flow_delay = 0: no token is taken even when there are some. */
	f->flow = queue_flow_new(f->base, f->pipe[0], 0);
	queue_flow_give(f->pipe[1], 1);
	for (int i = 0; i < 3; i++)
		assert_true(acquire(f, &a, i));
	assert_int_equal(tokens_in_pipe(f), 1);
	queue_flow_free(&f->flow);
	/* No pipe at all. */
	f->flow = queue_flow_new(f->base, -1, 1000);
	assert_true(acquire(f, &a, 9));
	queue_flow_stats(f->flow, &waited, &timed_out);
	assert_int_equal(waited, 0);
	/* And no flow object: what a worker without a pipe sees. */
	struct queue_flow_wait *w = NULL;
	assert_true(queue_flow_acquire(NULL, on_flow, &a, &w));
	assert_null(w);
	queue_flow_stats(NULL, &waited, &timed_out);
	assert_int_equal(waited + timed_out, 0);
}

static void test_give_stops_at_a_full_pipe(void **state)
{
	struct fixture *f = *state;

	int size = fcntl(f->pipe[1], F_SETPIPE_SZ, 4096);
	assert_true(size >= 4096);
	queue_flow_give(f->pipe[1], (size_t)size + 5000); /* returns, does not block */
	assert_int_equal(tokens_in_pipe(f), (size_t)size);
	queue_flow_give(-1, 10); /* no pipe: nothing happens */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_token_taken_at_once),
		T(test_waiters_served_in_order_as_tokens_come),
		T(test_delay_runs_out),
		T(test_cancelled_waiter_is_never_called),
		T(test_free_while_waiting),
		T(test_flow_off_never_waits),
		T(test_give_stops_at_a_full_pipe),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
