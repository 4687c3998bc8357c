/*
 * fuzz_milter_spool.c - libFuzzer target for the milter server's spool
 * (src/milter/milter_spool.h), which writes what an MTA relays (header
 * fields one by one, body chunks cut anywhere) into the form postern's
 * queue stores. The input is a script: each step a kind byte, a length
 * byte and that many bytes (a header field "name\0value", or a body
 * chunk). Invariants checked: the spool never holds more than its bounds
 * allow; while it reports no problem the file holds exactly the fields
 * with CR LF made LF, an empty line, then the body with every CR LF made
 * LF however the chunks were cut; the names it counts are the fields'.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/buf.h"
#include "milter/milter_spool.h"

/* text with every CR LF made LF, appended to out */
static void put_lf(buf_t *out, const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
			continue;
		buf_putc(out, text[i]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct milter_spool_limits limits = { .message_max = 2000, .header_max = 600,
					      .fields_max = 8 };
	struct milter_spool s;
	if (milter_spool_open(&s, &limits, "/tmp") < 0)
		abort();
	buf_t expect = BUF_INIT, body = BUF_INIT;
	size_t fields = 0;
	bool in_body = false;
	while (size >= 2) {
		uint8_t kind = data[0] % 3;
		size_t len = data[1];
		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		char *chunk = malloc(len + 1);
		memcpy(chunk, data, len);
		chunk[len] = '\0';
		if (kind == 0 && !in_body) {
			/* "name\0value": the value stops at the next NUL (the
			 * MTA's strings are C strings) */
			const char *name = chunk;
			const char *value = strlen(chunk) < len ? chunk + strlen(chunk) + 1 : "";
			if (milter_spool_header(&s, name, value) == MILTER_SPOOL_OK) {
				fields++;
				buf_puts(&expect, name);
				buf_puts(&expect, value[0] == ' ' || value[0] == '\t' ? ":" : ": ");
				put_lf(&expect, value, strlen(value));
				buf_putc(&expect, '\n');
			}
		} else if (kind == 1) {
			milter_spool_end_of_header(&s);
			in_body = true;
		} else if (kind == 2) {
			milter_spool_body(&s, data, len);
			buf_append(&body, data, len);
			in_body = true;
		}
		free(chunk);
		data += len;
		size -= len;
	}
	if (in_body)
		buf_putc(&expect, '\n');
	put_lf(&expect, body.data, body.len);
	int rc = milter_spool_flush(&s);
	if (s.size > limits.message_max || s.header_size > limits.header_max ||
	    s.names.count > limits.fields_max)
		abort();
	if (rc == 0 && s.status == MILTER_SPOOL_OK) {
		if (s.names.count != fields || s.size != expect.len)
			abort();
		buf_t got = BUF_INIT;
		buf_reserve(&got, expect.len + 1);
		ssize_t n = pread(s.ro_fd, got.data, expect.len + 1, 0);
		if (n != (ssize_t)expect.len ||
		    (expect.len > 0 && memcmp(got.data, expect.data, expect.len) != 0))
			abort();
		buf_free(&got);
		for (size_t i = 0; i < s.names.count; i++)
			if (milter_spool_count(&s, s.names.items[i]) == 0)
				abort();
	}
	milter_spool_close(&s);
	buf_free(&expect);
	buf_free(&body);
	return 0;
}
