/*
 * scanmarker.c - a test-only LD_PRELOAD library that makes a scanner
 * misbehave on demand: when POSTERN_TEST_SCAN_MARKERS is set and a
 * process maps (mmap) a file under a folder named "incoming" (a scanner
 * mapping the message it is given), the mapped bytes are searched for
 *   POSTERN-TEST-SCANNER-CRASH   the process dies at once (abort: SIGABRT,
 *                                which the sanitizers do not report),
 *   POSTERN-TEST-SCANNER-HANG    it sleeps (at most ten minutes, so that a
 *                                failed test cannot leave it for ever),
 *   POSTERN-TEST-SCANNER-PAUSE   it sleeps 3 seconds, then scans on.
 * And while the file named by POSTERN_TEST_SCAN_BIND_FAIL exists, binding
 * a unix socket whose path holds "scan.sock" fails with EACCES: a scan
 * master that cannot start; while the one named by
 * POSTERN_TEST_SCAN_BIND_GATE exists, that bind waits (at most two
 * minutes): a scan master that takes long to get ready.
 * The integration tests use it to crash or stall a scanner in the middle
 * of a message, or to make a new scan master fail, without a real
 * antivirus engine. Never linked into postern.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

typedef void *mmap_fn(void *, size_t, int, int, int, off_t);

static int in_incoming(int fd)
{
	char link[64], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return strstr(path, "/incoming/") != NULL;
}

static int holds(const void *map, size_t len, const char *marker)
{
	return memmem(map, len, marker, strlen(marker)) != NULL;
}

static void act_on(const void *map, size_t len)
{
	if (holds(map, len, "POSTERN-TEST-SCANNER-CRASH"))
		abort();
	if (holds(map, len, "POSTERN-TEST-SCANNER-HANG"))
		sleep(600);
	if (holds(map, len, "POSTERN-TEST-SCANNER-PAUSE"))
		sleep(3);
}

static void *hooked(mmap_fn *real, void *addr, size_t len, int prot, int flags, int fd,
		    off_t off)
{
	void *map = real(addr, len, prot, flags, fd, off);
	if (map != MAP_FAILED && fd >= 0 && (prot & PROT_READ) &&
	    getenv("POSTERN_TEST_SCAN_MARKERS") != NULL && in_incoming(fd))
		act_on(map, len);
	return map;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn *real;
	if (real == NULL)
		real = (mmap_fn *)dlsym(RTLD_NEXT, "mmap");
	return hooked(real, addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn *real;
	if (real == NULL)
		real = (mmap_fn *)dlsym(RTLD_NEXT, "mmap64");
	return hooked(real, addr, len, prot, flags, fd, off);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	if (real == NULL)
		real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	const char *fail = getenv("POSTERN_TEST_SCAN_BIND_FAIL");
	const char *gate = getenv("POSTERN_TEST_SCAN_BIND_GATE");
	if (addr->sa_family != AF_UNIX ||
	    strstr(((const struct sockaddr_un *)addr)->sun_path, "scan.sock") == NULL)
		return real(fd, addr, len);
	if (fail != NULL && access(fail, F_OK) == 0) {
		errno = EACCES;
		return -1;
	}
	for (int i = 0; gate != NULL && access(gate, F_OK) == 0 && i < 12000; i++)
		usleep(10000);
	return real(fd, addr, len);
}
