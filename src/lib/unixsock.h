/*
 * unixsock.h - AF_UNIX SOCK_SEQPACKET sockets at a path of any length:
 * the sockets between roles of "postern serve" (the scan master's
 * scan.sock, the anvil's anvil.sock), all in spool_dir/private.
 *
 * A path longer than sun_path is reached through an O_PATH descriptor of
 * its folder (/proc/self/fd/N/NAME), so a deep spool_dir still works.
 * Untrusted input: none (the paths come from the configuration).
 * Privilege: whichever role calls it.
 */
#ifndef POSTERN_UNIXSOCK_H
#define POSTERN_UNIXSOCK_H

/* Connect a non-blocking SOCK_SEQPACKET socket (close-on-exec) to path.
 * Returns the socket, or -1 with errno. */
int unixsock_connect(const char *path);
/* Bind and listen on path (which must not exist). Returns the listening
 * socket (non-blocking, close-on-exec), or -1 with errno. */
int unixsock_listen(const char *path, int backlog);

#endif
