/*
 * gatesync.c - a test-only LD_PRELOAD library that stalls local delivery
 * on demand: fdatasync(2) of a file whose path contains
 * POSTERN_TEST_GATE_MATCH (for instance "/slow/Maildir/tmp/": a copy
 * being written into one user's Maildir) waits until the file named by
 * POSTERN_TEST_GATE_FILE exists (checked every 10 ms, for at most two
 * minutes so that a failed test cannot hang a process for ever), then
 * syncs. The integration tests use it to make one mailbox, or every
 * mailbox, as slow as they need without timing anything. Never linked
 * into postern itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GATE_POLL_MS 10
#define GATE_MAX_WAIT_MS (120 * 1000)

/* Does fd's path contain match? */
static int path_matches(int fd, const char *match)
{
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return strstr(path, match) != NULL;
}

int fdatasync(int fd)
{
	static int (*real_fdatasync)(int);
	if (real_fdatasync == NULL)
		real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	const char *match = getenv("POSTERN_TEST_GATE_MATCH");
	const char *gate = getenv("POSTERN_TEST_GATE_FILE");
	if (match != NULL && gate != NULL && path_matches(fd, match)) {
		struct timespec pause = { 0, GATE_POLL_MS * 1000000L };
		for (int waited = 0; access(gate, F_OK) != 0 && waited < GATE_MAX_WAIT_MS;
		     waited += GATE_POLL_MS)
			nanosleep(&pause, NULL);
	}
	return real_fdatasync(fd);
}
