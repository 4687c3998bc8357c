/*
 * slowsync.c - a test-only LD_PRELOAD library that makes the disk look
 * slow: fdatasync(2) of a file under a folder named "incoming" (a queue
 * file being committed) sleeps POSTERN_TEST_SLOW_SYNC_MS milliseconds
 * first. The integration tests use it to show that a slow commit does not
 * hold up the other sessions of the same smtp worker. Never linked into
 * postern itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fdatasync(int fd)
{
	static int (*real_fdatasync)(int);
	if (real_fdatasync == NULL)
		real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	const char *ms = getenv("POSTERN_TEST_SLOW_SYNC_MS");
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (ms != NULL && n > 0) {
		path[n] = '\0';
		if (strstr(path, "/incoming/") != NULL) {
			long v = atol(ms);
			struct timespec ts = { v / 1000, (v % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	return real_fdatasync(fd);
}
