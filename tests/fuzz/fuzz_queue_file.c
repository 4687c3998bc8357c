/*
 * fuzz_queue_file.c - libFuzzer target for the queue file reader: a queue
 * file is input to the queue manager and must never crash it, whatever a
 * disk error or a bug left in it (its trailer records, the q note of a
 * quarantined message included), nor the commands and notices that read
 * its Subject: (qf_header_value).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "queue/queue_file.h"

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
			for (uint64_t pos = 0; pos < 65536;) {
				long n = qf_read_content(fd, &m, pos, chunk, sizeof(chunk));
				if (n <= 0)
					break;
				pos += (uint64_t)n;
			}
			buf_free(&headers);
			qf_msg_free(&m);
		}
		free(err);
	}
	close(fd);
	return 0;
}
