/*
 * fuzz_pop3_command.c - libFuzzer target for what a POP3 client controls:
 * the command line parser, the AUTH PLAIN decoders (base64, then the
 * PLAIN message), and the wire form of a message (the message bytes are
 * anyone's who sends mail). The first input byte picks which.
 * Invariants: the parser never reads or writes past the line and its
 * numeric arguments are what it says; PLAIN's user is non-empty, within
 * bounds and free of spaces and control bytes; the encoder writes at most 2 bytes per input byte, its
 * output has CRLF line ends only, no line starting with a single "."
 * except the last, and its length without stuffing and the end line is
 * the size the sizer counted.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "pop3/pop3_command.h"
#include "pop3/pop3_message.h"

static void fuzz_parser(const uint8_t *data, size_t size)
{
	if (size > POP3_LINE_MAX)
		size = POP3_LINE_MAX;
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	struct pop3_command c;
	const char *why = pop3_command_parse(line, size, &c);
	if (why == NULL) {
		if (c.nums > 2)
			abort();
		for (unsigned i = 0; i < c.nums; i++)
			if (c.num[i] > 9999999999ULL)
				abort();
		if (c.arg != NULL && (c.arg < line || c.arg > line + size))
			abort();
	}
	free(line);
}

static void fuzz_plain(const uint8_t *data, size_t size)
{
	struct sasl_credentials c;
	if (pop3_sasl_plain((const char *)data, size, &c) == NULL) {
		if (c.user[0] == '\0' || strlen(c.user) > POP3_USER_MAX)
			abort();
		for (const char *u = c.user; *u != '\0'; u++)
			if ((unsigned char)*u <= 0x20 || *u == 0x7f)
				abort(); /* it is logged */
	} else if (c.user[0] != '\0' || c.password[0] != '\0') {
		abort(); /* a refusal leaves nothing behind */
	}
	sasl_credentials_wipe(&c);
}

static void fuzz_encoder(const uint8_t *data, size_t size)
{
	if (size == 0)
		return;
	bool top = data[0] & 1;
	uint64_t lines = data[0] >> 1;
	size_t chunk = 1 + (data[0] % 7) * 97;
	data++;
	size--;
	char *out = malloc(2 * size + POP3_ENCODE_END_MAX + 1);
	struct pop3_encoder e;
	struct pop3_sizer s;
	pop3_encoder_init(&e, top, lines);
	pop3_sizer_init(&s);
	size_t o = 0;
	for (size_t i = 0; i < size; i += chunk) {
		size_t n = size - i < chunk ? size - i : chunk;
		size_t w = pop3_encode(&e, (const char *)data + i, n, out + o);
		if (w > 2 * n)
			abort();
		o += w;
		pop3_sizer_add(&s, (const char *)data + i, n);
	}
	o += pop3_encode_end(&e, out + o);
	size_t stuffed = 0;
	bool line_start = true;
	for (size_t i = 0; i < o; i++) {
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			abort(); /* a bare LF went out */
		if (line_start && out[i] == '.') {
			bool last = i + 3 == o;
			if (!last && (i + 1 >= o || out[i + 1] != '.'))
				abort(); /* an unstuffed dot */
			if (!last)
				stuffed++;
			if (!last)
				i++; /* the stuffed pair */
		}
		line_start = out[i] == '\n';
	}
	if (o < 3 || memcmp(out + o - 3, ".\r\n", 3) != 0)
		abort();
	/* RETR sends everything: its size is the counted one. A bare CR at
	 * the very end is the sizer's only rounding (it counts CR LF). */
	if (!top && o - 3 - stuffed != pop3_sizer_end(&s))
		abort();
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_parser(data + 1, size - 1);
		break;
	case 1:
		fuzz_plain(data + 1, size - 1);
		break;
	default:
		fuzz_encoder(data + 1, size - 1);
		break;
	}
	return 0;
}
