/*
 * unixsock.c - AF_UNIX SOCK_SEQPACKET sockets at a path of any length
 * (see unixsock.h).
 *
 * Untrusted input: none. Privilege: the calling role.
 */
#include "unixsock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "xalloc.h"

/*
 * The address of path. A path longer than sun_path is reached through
 * its folder: *dirfd_r is an O_PATH descriptor of the folder (close it
 * after use) and the address names /proc/self/fd/N/NAME. -1 with errno.
 */
static int socket_address(const char *path, struct sockaddr_un *sa, int *dirfd_r)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	*dirfd_r = -1;
	if (strlen(path) < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, strlen(path) + 1);
		return 0;
	}
	const char *slash = strrchr(path, '/');
	if (slash == NULL || strlen(slash + 1) > 64) {
		errno = ENAMETOOLONG;
		return -1;
	}
	char *dir = xstrndup(path, (size_t)(slash - path));
	*dirfd_r = open(dir[0] != '\0' ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (*dirfd_r < 0)
		return -1;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", *dirfd_r, slash + 1);
	return 0;
}

/* Make a socket and connect or bind+listen it; -1 with errno. */
static int open_socket(const char *path, int backlog, bool listening)
{
	struct sockaddr_un sa;
	int dirfd;
	if (socket_address(path, &sa, &dirfd) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc = fd < 0 ? -1
		 : listening ? bind(fd, (struct sockaddr *)&sa, sizeof(sa))
			     : connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc == 0 && listening)
		rc = listen(fd, backlog);
	int err = errno;
	if (dirfd >= 0)
		close(dirfd);
	if (rc < 0 && fd >= 0) {
		close(fd);
		fd = -1;
	}
	errno = err;
	return fd;
}

int unixsock_connect(const char *path)
{
	return open_socket(path, 0, false);
}

int unixsock_listen(const char *path, int backlog)
{
	return open_socket(path, backlog, true);
}
