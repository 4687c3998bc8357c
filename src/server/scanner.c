/*
 * scanner.c - a scanner process (a child of the scan master,
 * scan_role.c): one request at a time from the master over its socket
 * pair, the message mapped read-only from the queue file descriptor that
 * came with it, the pipeline the master built before forking (shared
 * copy-on-write) run over it, the verdict sent back. It ends when the
 * master closes the socket (0) or breaks the protocol (1); a message that
 * makes it crash or overrun is the master's to handle (it kills and
 * replaces the scanner).
 *
 * Between requests, once it has waited a moment, it gives the heap pages
 * its messages left free back to the kernel (malloc_trim).
 *
 * RFCs: none here (the stages'). Untrusted input: the message (parsed by
 * the pipeline), the request (decoded by scan_proto.c). Privilege: `user`,
 * non-dumpable, no listening socket, no TLS key, no users table; it holds
 * only its socket pair, the descriptor of the message being scanned, and
 * the log.
 */
#include "server.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/metrics.h"
#include "../scan/scan_proto.h"

/* Scan the request's range of fd into *v. */
static void scan_file(struct scan_pipeline *p, const struct scan_msg *req, int fd,
		      struct scan_verdict *v)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size < 0 ||
	    req->content_off + req->content_len > (uint64_t)st.st_size ||
	    req->content_len > SIZE_MAX) {
		log_error("%s: the queue file does not hold the range the request names", req->id);
		scan_verdict_fail(v, false, "scan_failed", "%s",
				  "Message could not be checked, try again later");
		return;
	}
	long page = sysconf(_SC_PAGESIZE);
	uint64_t start = req->content_off - req->content_off % (uint64_t)(page > 0 ? page : 4096);
	size_t skip = (size_t)(req->content_off - start);
	size_t len = (size_t)req->content_len;
	void *map = NULL;
	if (len > 0) {
		map = mmap(NULL, len + skip, PROT_READ, MAP_PRIVATE, fd, (off_t)start);
		if (map == MAP_FAILED) {
			log_error("%s: cannot map the queue file: %s", req->id, strerror(errno));
			scan_verdict_fail(v, false, "scan_failed", "%s",
					  "Message could not be checked, try again later");
			return;
		}
	}
	struct scan_envelope env = {
		.queue_id = req->id, .sender = req->sender, .rcpts = &req->rcpts,
		.client_addr = req->client_addr, .helo = req->helo,
	};
	const unsigned char *data = map != NULL ? (const unsigned char *)map + skip
						: (const unsigned char *)"";
	scan_pipeline_run(p, &env, data, len, v);
	if (map != NULL)
		munmap(map, len + skip);
}

/* After this long without a request, give back the memory the last
 * messages left free (malloc keeps it for the next ones: under load a
 * scanner never waits this long). */
#define IDLE_TRIM_MS 200

/* Wait for the master's next request; once per idle spell, after
 * IDLE_TRIM_MS, return free heap pages to the kernel. */
static void wait_for_request(int sock, bool *trimmed)
{
	struct pollfd pfd = { sock, POLLIN, 0 };
	if (*trimmed)
		return;
	int rc;
	while ((rc = poll(&pfd, 1, IDLE_TRIM_MS)) < 0 && errno == EINTR)
		;
	if (rc == 0) {
		malloc_trim(0);
		*trimmed = true;
	}
}

/* The verdict and the time it took, for the metrics. */
static void count_verdict(const struct scan_verdict *v, uint64_t elapsed_us)
{
	const char *labels[] = { scan_action_name(v->action), v->reason };
	metrics_count_labels(METRIC_SCAN_VERDICTS, labels, 2);
	metrics_observe_us(METRIC_SCAN_SECONDS, elapsed_us);
}

int scan_scanner_main(struct scan_pipeline *p, int sock)
{
	bool trimmed = true;  /* nothing scanned yet */
	for (;;) {
		wait_for_request(sock, &trimmed);
		struct scan_msg req;
		const char *why = NULL;
		int fd = -1;
		int rc = scan_recv(sock, true, &req, &fd, &why);
		if (rc == 0) {
			scan_msg_free(&req);
			return 0;
		}
		if (rc < 0) {
			log_error("scanner: %s from the scan master: %s; stopping",
				  errno == EPROTO ? "protocol violation" : "receive error", why);
			scan_msg_free(&req);
			return 1;
		}
		struct scan_msg answer;
		scan_msg_init(&answer, SCAN_MSG_VERDICT);
		answer.seq = req.seq;
		trimmed = false;
		uint64_t started = metrics_now_us();
		scan_file(p, &req, fd, &answer.verdict);
		close(fd);
		scan_verdict_normalize(&answer.verdict);
		count_verdict(&answer.verdict, metrics_now_us() - started);
		rc = scan_send(sock, &answer, -1);
		scan_msg_free(&answer);
		scan_msg_free(&req);
		if (rc < 0) {
			log_error("scanner: cannot answer the scan master: %s; stopping",
				  strerror(errno));
			return 1;
		}
	}
}
