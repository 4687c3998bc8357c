/*
 * fuzz_milter_proto.c - libFuzzer target for what a milter sends postern
 * (milter_proto.h): the input is a byte stream cut into packets by
 * milter_frame() and each packet decoded by milter_decode_reply(), as the
 * milter client reads them. Invariants checked: a packet is refused or
 * decoded with every field inside the packet and within its bounds
 * (reply codes 4xx/5xx, joined text at most MILTER_REPLY_TEXT_MAX,
 * header names printable without ':', no control characters in values
 * but folds); an input starting with '#' is instead a `milters` value for
 * milter_list_parse() (the configuration's parser of the same module).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "milter/milter_client.h"
#include "milter/milter_proto.h"

static const unsigned char *lo, *hi;

static void inside(const void *p, size_t len)
{
	const unsigned char *u = p;
	if (p == NULL)
		return;
	if (u < lo || u + len > hi)
		abort();
}

static void check_string(const char *s)
{
	if (s == NULL)
		return;
	size_t n = strnlen(s, (size_t)(hi - (const unsigned char *)s));
	inside(s, n + 1);
	if (n > MILTER_FIELD_MAX)
		abort();
}

static void check_reply(const struct milter_reply *r, const char *text)
{
	check_string(r->name);
	check_string(r->address);
	check_string(r->args);
	inside(r->body, r->body_len);
	for (size_t i = 0; i < MILTER_MACRO_STAGES; i++)
		check_string(r->macros[i]);
	if (r->kind == MILTER_REP_REPLYCODE) {
		if (r->code < 400 || r->code > 599)
			abort();
		if (strlen(text) > MILTER_REPLY_TEXT_MAX)
			abort();
		if (r->status[0] != '\0' && r->status[0] != '0' + r->code / 100)
			abort();
	} else {
		check_string(r->value);
	}
	if (r->name != NULL) {
		if (r->name[0] == '\0')
			abort();
		for (const char *p = r->name; *p != '\0'; p++)
			if (*p <= ' ' || *p >= 127 || *p == ':')
				abort();
	}
	if (r->value != NULL && r->kind != MILTER_REP_REPLYCODE)
		for (const char *p = r->value; *p != '\0'; p++)
			if ((unsigned char)*p < ' ' && *p != '\t' && *p != '\r' && *p != '\n')
				abort();
}

static void parse_list(const uint8_t *data, size_t size)
{
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.milter_connect_timeout = 30;
	cfg.milter_command_timeout = 30;
	cfg.milter_content_timeout = 300;
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	struct milter_list list;
	char *err = NULL;
	if (milter_list_parse(text, &cfg, &list, &err) == 0) {
		for (size_t i = 0; i < list.count; i++) {
			const struct milter_spec *s = &list.items[i];
			if (s->connect_timeout == 0 || s->connect_timeout > 3600 ||
			    s->addr_len == 0 || s->addr_len > sizeof(s->addr))
				abort();
		}
		milter_list_free(&list);
	} else if (err == NULL) {
		abort();
	}
	free(err);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == '#') {
		parse_list(data, size);
		return 0;
	}
	size_t pos = 0;
	while (pos < size) {
		uint32_t len = 0;
		int f = milter_frame(data + pos, size - pos, &len);
		if (f != 0)
			break;
		if (len == 0 || len > MILTER_PACKET_MAX)
			abort();
		/* A copy of just the packet, so that a read past it is caught. */
		unsigned char *packet = malloc(len);
		memcpy(packet, data + pos + 4, len);
		lo = packet;
		hi = packet + len;
		struct milter_reply r;
		char text[MILTER_REPLY_TEXT_MAX + 1];
		const char *err = NULL;
		if (milter_decode_reply(packet, len, &r, text, &err) == 0) {
			check_reply(&r, text);
			(void)milter_reply_is_final(r.kind);
			(void)milter_reply_name(r.kind);
		} else if (err == NULL) {
			abort();
		}
		free(packet);
		pos += 4 + (size_t)len;
	}
	return 0;
}
