/*
 * fuzz_relay_qp.c - libFuzzer target for the relay agent's reading of a
 * message's header section when deciding whether an 8-bit message can
 * be converted for a peer without 8BITMIME (relay_qp_plan), and for the
 * quoted-printable encoder of its body. Invariants: the decision never
 * reads past the content; a conversion's output is 7-bit with lines of
 * at most 76 characters and decodes back to the input.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "relay/relay_qp.h"

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void check_roundtrip(const uint8_t *in, size_t n)
{
	struct relay_qp q;
	buf_t out = BUF_INIT;
	size_t col = 0;

	relay_qp_init(&q);
	relay_qp_feed(&q, (const char *)in, n / 2, &out);
	relay_qp_feed(&q, (const char *)in + n / 2, n - n / 2, &out);
	relay_qp_end(&q, &out);
	/* decode */
	buf_t dec = BUF_INIT;
	for (size_t i = 0; i < out.len; i++) {
		unsigned char c = (unsigned char)out.data[i];
		if (c >= 0x80)
			abort();
		if (c == '\n') {
			col = 0;
			buf_putc(&dec, '\n');
			continue;
		}
		if (++col > RELAY_QP_LINE)
			abort();
		if (c == '=') {
			if (i + 1 < out.len && out.data[i + 1] == '\n') {
				i++;
				col = 0;
				continue;
			}
			if (i + 2 >= out.len + 0 || hexval(out.data[i + 1]) < 0 ||
			    hexval(out.data[i + 2]) < 0)
				abort();
			buf_putc(&dec, (char)(hexval(out.data[i + 1]) * 16 + hexval(out.data[i + 2])));
			i += 2;
			col += 2;
			continue;
		}
		buf_putc(&dec, (char)c);
	}
	if (dec.len != n || (n > 0 && memcmp(dec.data, in, n) != 0))
		abort();
	buf_free(&out);
	buf_free(&dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("content", 0);
	struct qf_msg msg;
	struct qf_header_edit *edits = NULL;
	size_t count = 0;
	const char *why = NULL;

	if (fd < 0)
		return 0;
	if (size > 0 && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	memset(&msg, 0, sizeof(msg));
	msg.content_off = 0;
	msg.content_len = size;
	enum relay_qp_verdict v = relay_qp_plan(fd, &msg, &why, &edits, &count);
	if (v == RELAY_QP_CANNOT && why == NULL)
		abort();
	if (v == RELAY_QP_CONVERT)
		relay_qp_edits_free(edits, count, 0);
	close(fd);
	check_roundtrip(data, size);
	return 0;
}
