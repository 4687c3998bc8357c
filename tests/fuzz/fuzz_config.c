/*
 * fuzz_config.c - libFuzzer target for the postern.conf parser (file input).
 * Invariant: every path a loaded configuration holds is empty or absolute
 * and already normalised (normalising it again changes nothing).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/config.h"

static void check_path(const char *path)
{
	if (path[0] == '\0')
		return;
	char *again = config_normalize_path(path);
	if (path[0] != '/' || strcmp(again, path) != 0) {
		fprintf(stderr, "path not absolute and normalised: \"%s\" -> \"%s\"\n",
			path, again);
		abort();
	}
	free(again);
}

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
		const char *paths[] = { cfg.spool_dir, cfg.mail_root, cfg.users_file,
					cfg.aliases_file, cfg.tls_cert, cfg.tls_key };
		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
			check_path(paths[i]);
		config_print_nondefault(&cfg, devnull);
		config_free(&cfg);
	}
	fclose(devnull);
	close(fd);
	return 0;
}
