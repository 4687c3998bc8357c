/*
 * fuzz_command.c - libFuzzer target for the SMTP command line parser
 * (network input of the smtp worker).
 */
#include <stddef.h>
#include <stdint.h>

#include "smtp/command.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_command cmd;
	struct smtp_parse_error err;
	if (size > 4096)
		return 0;
	for (int utf8 = 0; utf8 < 2; utf8++) {
		if (smtp_command_parse((const char *)data, size, utf8, &cmd, &err)) {
			smtp_verb_name(cmd.verb);
			smtp_command_param(&cmd, "SIZE");
		}
	}
	return 0;
}
