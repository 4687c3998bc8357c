/*
 * flow.h - in-flow back-pressure between the queue manager and the smtp
 * workers (the idea of Postfix's in_flow_delay).
 *
 * A pipe carries tokens, one byte each, from the queue manager to the
 * workers. The queue manager puts a stock of tokens in when it starts and
 * one more each time a message leaves its ready list (delivered,
 * deferred or bounced). A worker takes one token before it commits each
 * message. While delivery keeps up there are always tokens; when it falls
 * behind by more than the stock, a message waits for a token up to
 * in_flow_delay before it is committed anyway, so acceptance slows down to
 * about the delivery rate instead of the queue growing without bound.
 * Nothing is ever refused for lack of a token.
 *
 * Untrusted input: none (the pipe is ours). Privilege: unprivileged roles.
 */
#ifndef POSTERN_QUEUE_FLOW_H
#define POSTERN_QUEUE_FLOW_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The queue manager's side: put n tokens into the pipe (non-blocking; a
 * full pipe already holds more than enough). fd < 0 is a no-op. */
void queue_flow_give(int fd, size_t n);

struct queue_flow;
struct queue_flow_wait;

/* A token came, or the delay ran out (got_token false). */
typedef void queue_flow_fn(void *arg, bool got_token);

/* The worker's side, on its event loop; fd < 0 or delay_ms 0 turns the
 * back-pressure off (every acquire succeeds at once). */
struct queue_flow *queue_flow_new(struct event_base *base, int fd, uint64_t delay_ms);
void queue_flow_free(struct queue_flow **f);

/*
 * Take a token. Returns true if one was there (or flow is off); otherwise
 * returns false and *wait_r is a handle: fn(arg, got) follows from the
 * loop within delay_ms, unless queue_flow_cancel() comes first. Waiters
 * are served in order.
 */
bool queue_flow_acquire(struct queue_flow *f, queue_flow_fn *fn, void *arg,
			struct queue_flow_wait **wait_r);
/* Stop waiting (the session went away); *w becomes NULL. */
void queue_flow_cancel(struct queue_flow *f, struct queue_flow_wait **w);
/* Messages that waited for a token since start, and of those, how many
 * went ahead without one (for the log and the benchmark). */
void queue_flow_stats(const struct queue_flow *f, uint64_t *waited_r, uint64_t *timed_out_r);

#endif
