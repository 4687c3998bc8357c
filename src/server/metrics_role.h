/*
 * metrics_role.h - the metrics role of "postern serve" (metrics_role.c):
 * GET /metrics on metrics_listen, in Prometheus' text format.
 */
#ifndef POSTERN_METRICS_ROLE_H
#define POSTERN_METRICS_ROLE_H

#include <sys/types.h>

#include "../lib/config.h"

struct evbuffer;

/* Serve on listen_fd (bound by the supervisor) until SIGTERM or SIGINT;
 * supervisor is the pid whose descendants are counted as postern's
 * processes. Returns the exit status. */
int metrics_role_main(const struct config *cfg, int listen_fd, pid_t supervisor);

/* The whole exposition: counters, labelled counters, histograms, the
 * spool folders of spool_dir, processes and memory per role. */
void metrics_render(struct evbuffer *out, const char *spool_dir, pid_t supervisor);

#endif
