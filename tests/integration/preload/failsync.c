/*
 * failsync.c - a test-only LD_PRELOAD library that makes the commit of a
 * queue file fail late: while the file named by POSTERN_TEST_FAIL_SYNC
 * exists, fsync(2) of a folder named "queue" (the last step of a commit,
 * after the file was renamed into it) waits POSTERN_TEST_FAIL_SYNC_MS
 * milliseconds (default 2500, so that the queue manager's scan sees the
 * file meanwhile) and then fails with EIO. The integration tests use it
 * to show that such a message is answered 451 and never delivered.
 * Never linked into postern itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_WAIT_MS 2500

/* Is fd a folder whose path ends in "/queue"? */
static int is_queue_folder(int fd)
{
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 6)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 6, "/queue") == 0;
}

int fsync(int fd)
{
	static int (*real_fsync)(int);
	if (real_fsync == NULL)
		real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	const char *marker = getenv("POSTERN_TEST_FAIL_SYNC");
	if (marker == NULL || !is_queue_folder(fd) || access(marker, F_OK) != 0)
		return real_fsync(fd);
	const char *ms_text = getenv("POSTERN_TEST_FAIL_SYNC_MS");
	long ms = ms_text != NULL ? atol(ms_text) : DEFAULT_WAIT_MS;
	if (ms < 0 || ms > 60000)
		ms = DEFAULT_WAIT_MS;
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	errno = EIO;
	return -1;
}
