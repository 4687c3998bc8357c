/*
 * scan_master.h - the scan master's state (private to scan_role.c, its
 * life: socket, signals, reloads, the loop; and scan_pool.c, its work: the
 * scanners, the queue of requests, the answers to the smtp workers). See
 * server.h and docs/scanning.md.
 *
 * Untrusted input: the requests of the smtp workers and the verdicts of
 * the scanners. Privilege: `user`.
 */
#ifndef POSTERN_SCAN_MASTER_H
#define POSTERN_SCAN_MASTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "../lib/buf.h"
#include "../lib/config.h"
#include "../scan/scan_proto.h"
#include "server.h"

#define SCAN_QUEUE_PER_SCANNER 64   /* waiting requests per scanner */
#define RESPAWN_PAUSE_MS 1000      /* after a scanner that died young */
#define CLIENT_OUT_MAX 4096        /* verdicts waiting for a stuck worker */

struct request;

struct scanner {
	pid_t pid;                 /* 0: the slot is free */
	int sock;                  /* -1 once closed */
	struct request *job;       /* being scanned, or NULL */
	uint32_t seq;
	uint64_t deadline_ms;
	uint64_t started_ms;
	unsigned generation;       /* of the pipeline it was forked with */
	bool retiring;             /* an older pipeline: exit after the job */
};

struct out_packet {
	buf_t packet;
	struct out_packet *next;
};

struct client {
	int fd;                    /* -1: gone, to be freed */
	size_t in_flight;          /* its requests queued or being scanned */
	struct out_packet *out_head, *out_tail;
	size_t out_count;
	struct client *next;
};

struct request {
	struct client *client;     /* NULL once the worker is gone */
	uint32_t client_seq;
	struct scan_msg msg;
	int fd;
	uint64_t arrived_ms, dispatched_ms;
	struct request *next;      /* the queue */
};

struct scan_master {
	const struct config *cfg;
	scan_build_fn *build;
	struct scan_master_pace pace;
	struct scan_pipeline *pipeline;
	unsigned generation;
	struct scanner *scanners;
	size_t scanner_count, scanner_cap;
	size_t want;               /* scanners of the current pipeline */
	struct client *clients;
	struct request *queue_head, *queue_tail;
	size_t queued;
	char *path;
	char *tmp_path;            /* the socket's name until it is published */
	int listener;
	dev_t sock_dev;
	ino_t sock_ino;
	int sigfd;
	int ready_fd;              /* to the supervisor until ready is told, else -1 */
	bool stopping, retiring;
	uint64_t exit_deadline_ms;
	uint64_t respawn_after_ms;
	uint64_t next_stale_ms, next_rebuild_ms, rebuild_backoff_ms;
	/* the builder thread */
	bool building;
	pthread_t builder;
	int build_pipe[2];
	struct scan_pipeline *built;
	char *build_err;
};

static inline uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- scan_pool.c ------------------------------------------------------------ */

/* A worker's connection: close it (its requests are answered to nobody
 * once scan_pool_sweep_clients has run); send what waits for it; queue a
 * message for it (sent at once if its socket takes it). */
void scan_pool_client_close(struct client *c);
void scan_pool_client_flush(struct client *c);
void scan_pool_client_send(struct client *c, const struct scan_msg *m);
/* Take what a worker sent: requests join the queue (or are answered
 * "busy" when it is full); a violation closes the connection. */
void scan_pool_client_readable(struct scan_master *m, struct client *c);
/* Free the connections that are gone. */
void scan_pool_sweep_clients(struct scan_master *m);
void scan_pool_request_free(struct request *r);
struct request *scan_pool_queue_pop(struct scan_master *m);

/* A verdict (or the end) from a scanner; relayed to its worker. */
void scan_pool_scanner_readable(struct scan_master *m, struct scanner *s);
/* The scanner will not be used again: close its socket. */
void scan_pool_scanner_drop(struct scanner *s);
/* Reap exited scanners; fork them up to m->want (not while a pipeline
 * is being built); give waiting requests to idle scanners; apply the
 * deadlines (scan_timeout in a scanner, and waiting for one). */
void scan_pool_reap(struct scan_master *m);
void scan_pool_keep_scanners(struct scan_master *m);
void scan_pool_dispatch(struct scan_master *m);
void scan_pool_expire(struct scan_master *m);
/* At the end: close every scanner's socket and wait a little for them. */
void scan_pool_end_scanners(struct scan_master *m);

#endif
