/*
 * fuzz_config.c - libFuzzer target for the postern.conf parser (file input).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = memfd_create("postern.conf", 0);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	FILE *devnull = fopen("/dev/null", "w");
	struct config cfg;
	if (config_load(path, &cfg, devnull) == 0) {
		config_print_nondefault(&cfg, devnull);
		config_free(&cfg);
	}
	fclose(devnull);
	close(fd);
	return 0;
}
