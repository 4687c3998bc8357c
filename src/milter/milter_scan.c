/*
 * milter_scan.c - one message to the scan master and its verdict back,
 * blocking the calling thread within a deadline (see milter_scan.h; the
 * protocol is src/scan/scan_proto.h).
 *
 * RFCs: RFC 3463 (the enhanced status codes of the failure verdict).
 * Untrusted input: the verdict, from a scan master whose scanners parse
 * hostile mail. Privilege: the milter process (`user`).
 */
#include "milter_scan.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../scan/scan_client.h"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The verdict of a message that could not be scanned, as the smtp
 * worker's scan client gives it. */
static void failure(const struct config *cfg, const char *reason, struct scan_msg *reply)
{
	scan_msg_free(reply);
	scan_msg_init(reply, SCAN_MSG_VERDICT);
	scan_verdict_fail(&reply->verdict, cfg->scan_fail_open == CONFIG_YES, reason, "%s",
			  strcmp(reason, "scan_timeout") == 0
				  ? "Message could not be checked in time, try again later"
				  : "Message could not be checked, try again later");
	scan_verdict_normalize(&reply->verdict);
}

/* Wait for events on fd until deadline; 1 ready, 0 deadline passed. */
static int wait_for(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = now_ms();
		if (now >= deadline)
			return 0;
		struct pollfd p = { .fd = fd, .events = events };
		uint64_t left = deadline - now;
		int rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return 1; /* let the call that follows say what is wrong */
	}
}

/* Send the request; 0, or -1 with detail filled. */
static int send_request(int sock, const struct scan_msg *m, int fd, uint64_t deadline,
			char *detail, size_t size, bool *late_r)
{
	while (scan_send(sock, m, fd) < 0) {
		if (errno != EAGAIN) {
			snprintf(detail, size, "cannot send to the scan master: %s", strerror(errno));
			return -1;
		}
		if (!wait_for(sock, POLLOUT, deadline)) {
			*late_r = true;
			snprintf(detail, size, "the scan master took no request in time");
			return -1;
		}
	}
	return 0;
}

/* Read until the verdict of seq comes; 0, or -1 with detail filled. */
static int read_verdict(int sock, uint32_t seq, uint64_t deadline, struct scan_msg *reply,
			char *detail, size_t size, bool *late_r)
{
	for (;;) {
		if (!wait_for(sock, POLLIN, deadline)) {
			*late_r = true;
			snprintf(detail, size, "no verdict from the scan master in time");
			return -1;
		}
		const char *why = NULL;
		int mfd = -1;
		scan_msg_free(reply);
		int rc = scan_recv(sock, false, reply, &mfd, &why);
		if (mfd >= 0)
			close(mfd);
		if (rc < 0 && errno == EAGAIN)
			continue;
		if (rc == 0) {
			snprintf(detail, size, "the scan master closed the connection");
			return -1;
		}
		if (rc < 0) {
			snprintf(detail, size, "from the scan master: %s: %s", why,
				 errno == EPROTO ? "protocol violation" : strerror(errno));
			return -1;
		}
		if (reply->type == SCAN_MSG_DRAIN)
			continue; /* the verdict still comes here */
		if (reply->seq != seq) {
			snprintf(detail, size, "protocol violation from the scan master: a verdict "
				 "for a request never sent");
			return -1;
		}
		return 0;
	}
}

void milter_scan_ask(const struct config *cfg, const struct milter_scan_request *req,
		     struct scan_msg *reply_r, char *detail_r, size_t detail_size)
{
	uint64_t deadline = now_ms() + (2 * cfg->scan_timeout + SCAN_CLIENT_MARGIN) * 1000;
	bool late = false;
	scan_msg_init(reply_r, SCAN_MSG_VERDICT);
	detail_r[0] = '\0';
	int sock = scan_socket_connect(req->socket_path);
	if (sock < 0) {
		snprintf(detail_r, detail_size, "cannot reach the scan master at %s: %s",
			 req->socket_path, strerror(errno));
		failure(cfg, "scan_unavailable", reply_r);
		return;
	}
	struct scan_msg m;
	scan_msg_init(&m, SCAN_MSG_REQUEST);
	m.seq = 1;
	memcpy(m.id, req->id, sizeof(m.id) - 1);
	m.id[sizeof(m.id) - 1] = '\0';
	m.content_off = 0;
	m.content_len = req->len;
	scan_msg_set_envelope(&m, req->sender, req->client_addr, req->helo, req->rcpts);
	int rc = send_request(sock, &m, req->fd, deadline, detail_r, detail_size, &late);
	scan_msg_free(&m);
	if (rc == 0)
		rc = read_verdict(sock, 1, deadline, reply_r, detail_r, detail_size, &late);
	close(sock);
	if (rc < 0)
		failure(cfg, late ? "scan_timeout" : "scan_unavailable", reply_r);
}
