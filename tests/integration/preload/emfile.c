/*
 * emfile.c - a test-only LD_PRELOAD library that makes the process look
 * out of file descriptors: while the file named by POSTERN_TEST_EMFILE
 * exists, accept(2) and accept4(2) fail with EMFILE (the connection stays
 * in the kernel's backlog). The integration tests use it to show that a
 * worker out of descriptors pauses instead of spinning on its listener.
 * Never linked into postern itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int exhausted(void)
{
	const char *marker = getenv("POSTERN_TEST_EMFILE");
	return marker != NULL && access(marker, F_OK) == 0;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	if (real == NULL)
		real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
	if (exhausted()) {
		errno = EMFILE;
		return -1;
	}
	return real(fd, addr, len, flags);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accept4(fd, addr, len, 0);
}
