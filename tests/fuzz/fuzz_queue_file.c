/*
 * fuzz_queue_file.c - libFuzzer target for the queue file reader: a queue
 * file is input to the queue manager and must never crash it, whatever a
 * disk error or a bug left in it (its trailer records, the q note of a
 * quarantined message included), nor the commands and notices that read
 * its Subject: (qf_header_value), nor the delivery reports built from it
 * (bounce_build, each kind; RET=FULL reads the whole content), nor the
 * edited view of the message the commands show and the deliveries write
 * (version 4's inserted and changed header fields, replaced body:
 * mhdr_read_message), which stays within its bound. What reads back as
 * valid keeps the DSN promises: NOTIFY well formed, ENVID and ORCPT as
 * the SMTP server would have stored them; and the message as delivered
 * has exactly qf_message_size bytes before its header changes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "queue/bounce.h"
#include "queue/maildir_header.h"
#include "queue/queue_file.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* Every kind of report about every recipient must build, bounded. */
static void build_reports(int fd, const struct qf_msg *m)
{
	size_t n = m->rcpt_count < 8 ? m->rcpt_count : 8;
	struct bounce_item items[8];

	for (size_t i = 0; i < n; i++) {
		const struct qf_rcpt *r = &m->rcpts[i];
		check(dsn_notify_valid(r->dsn_notify));
		check(r->dsn_orcpt == NULL || dsn_orcpt_valid(r->dsn_orcpt));
		items[i] = (struct bounce_item){ r->addr, NULL, r->dsn_orcpt, "5.1.1 unknown user" };
	}
	check(m->dsn_envid == NULL || dsn_envid_valid(m->dsn_envid));
	for (int kind = BOUNCE_FAILED; kind <= BOUNCE_DOUBLE && n > 0; kind++) {
		struct bounce_request req = {
			.spool_dir = "/nonexistent", .hostname = "mx.example.test", .msg = m,
			.queue_fd = fd, .items = items, .count = n, .now_us = 1700000000000000ull,
			.kind = (enum bounce_kind)kind,
			.recipient = kind == BOUNCE_DOUBLE ? "postmaster@example.test" : NULL,
			.retry_until = 1700400000,
		};
		buf_t out = BUF_INIT;
		char *err = NULL;
		if (bounce_build(&out, &req, "0123456789ABCDEF012", &err) == 0)
			check(out.len < BOUNCE_FULL_MAX + BOUNCE_HEADERS_MAX + 65536 * (n + 1));
		free(err);
		buf_free(&out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("queue", 0);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		struct qf_msg m;
		char *err = NULL;
		if (qf_read(fd, &m, &err) == 0) {
			buf_t headers = BUF_INIT;
			char chunk[512];
			qf_read_headers(fd, &m, 4096, &headers, &err);
			buf_t subject = BUF_INIT;
			qf_header_value(buf_cstr(&headers), headers.len, "Subject", 200, &subject);
			buf_free(&subject);
			uint64_t pos = 0;
			for (; pos < 65536;) {
				long n = qf_read_content(fd, &m, pos, chunk, sizeof(chunk));
				if (n <= 0) {
					check(n == 0);
					break;
				}
				pos += (uint64_t)n;
			}
			check(pos >= 65536 || pos == qf_message_size(&m));
			buf_free(&headers);
			for (int whole = 0; whole <= 1; whole++) {
				buf_t view = BUF_INIT;
				size_t max = whole ? 65536 : 4096;
				if (mhdr_read_message(fd, &m, !whole, max, &view, &err) == 0)
					check(view.len <= max);
				free(err);
				err = NULL;
				buf_free(&view);
			}
			build_reports(fd, &m);
			qf_msg_free(&m);
		}
		free(err);
	}
	close(fd);
	return 0;
}
