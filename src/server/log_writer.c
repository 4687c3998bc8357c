/*
 * log_writer.c - the log writer (see log_writer.h): copies the pipe that
 * is every postern process's stderr into log_file, and takes a new
 * descriptor of the file from the supervisor after SIGUSR1.
 *
 * RFCs: none. Untrusted input: the bytes of the pipe are written as they
 * are (each process escapes what it logs, log.c); the control socket
 * carries descriptors from the supervisor only (a socket pair). Privilege:
 * `user`, holding the pipe's read end and one descriptor of the file; it
 * opens nothing.
 */
#include "log_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"

#define LOG_PIPE_SIZE (1024 * 1024)

static int open_log_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0640);
}

/* A descriptor from the supervisor: the new file; -1 on EOF or error. */
static int receive_fd(int ctl)
{
	char byte;
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.space,
			      .msg_controllen = sizeof(cbuf.space) };
	ssize_t n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	return fd;
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* a full disk: the lines are dropped, the writers go on */
		p += w;
		len -= (size_t)w;
	}
}

/* Copy the pipe into out until every writer has closed it. */
static NORETURN void writer_loop(int pipe_read, int ctl, int out)
{
	static char buf[65536];
	struct pollfd fds[2] = { { pipe_read, POLLIN, 0 }, { ctl, POLLIN, 0 } };
	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (fds[1].revents != 0) {
			int fd = receive_fd(ctl);
			if (fd >= 0) {
				close(out);
				out = fd;
				dup2(out, STDERR_FILENO); /* our own lines too */
			} else {
				fds[1].fd = -1; /* the supervisor is gone: copy to the end */
			}
		}
		if (fds[0].revents != 0) {
			ssize_t n = read(pipe_read, buf, sizeof(buf));
			if (n == 0)
				_exit(0); /* every process of postern has exited */
			if (n > 0)
				write_all(out, buf, (size_t)n);
			else if (errno != EINTR && errno != EAGAIN)
				_exit(1);
		}
	}
}

/* Close every descriptor above stderr but a, b and c (a writer started
 * again inherits the supervisor's listeners and pipes). */
static void keep_only(int a, int b, int c)
{
	int keep[3] = { a, b, c };
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++)
			if (keep[j] < keep[i]) {
				int t = keep[i];
				keep[i] = keep[j];
				keep[j] = t;
			}
	unsigned from = 3;
	for (int i = 0; i < 3; i++) {
		if (keep[i] >= (int)from)
			close_range(from, (unsigned)keep[i] - 1, 0);
		if (keep[i] >= (int)from)
			from = (unsigned)keep[i] + 1;
	}
	close_range(from, ~0U, 0);
}

/* Fork the writer on lw's pipe with out as the file. */
static pid_t fork_writer(struct log_writer *lw, int pipe_write, int ctl_child, int out,
			 const struct privsep *ps, const struct privsep_account *acct)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	log_set_role("log");
	if (pipe_write >= 0)
		close(pipe_write);
	close(lw->ctl);
	/* It outlives the supervisor to copy the last lines; it stops when
	 * the pipe has no writer left, whatever the signals say. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	dup2(out, STDERR_FILENO);
	keep_only(lw->pipe_read, ctl_child, out);
	if (privsep_become(ps, acct, 0, 0) < 0)
		_exit(1);
	writer_loop(lw->pipe_read, ctl_child, out);
}

/* A new control socket pair and writer on the existing pipe. */
static int spawn(struct log_writer *lw, int pipe_write, const struct privsep *ps,
		 const struct privsep_account *acct)
{
	int sv[2];
	int out = open_log_file(lw->path);
	if (out < 0) {
		log_error("log_file %s: %s", lw->path, strerror(errno));
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("log writer: socketpair: %s", strerror(errno));
		close(out);
		return -1;
	}
	if (lw->ctl >= 0)
		close(lw->ctl);
	lw->ctl = sv[0];
	pid_t pid = fork_writer(lw, pipe_write, sv[1], out, ps, acct);
	close(sv[1]);
	close(out);
	if (pid < 0) {
		log_error("log writer: fork: %s", strerror(errno));
		return -1;
	}
	lw->pid = pid;
	return 0;
}

int log_writer_start(struct log_writer *lw, const char *path, const struct privsep *ps,
		     const struct privsep_account *acct)
{
	int p[2];
	if (strlen(path) >= sizeof(lw->path)) {
		log_error("log_file %s: path too long", path);
		return -1;
	}
	snprintf(lw->path, sizeof(lw->path), "%s", path);
	if (pipe2(p, O_CLOEXEC) < 0) {
		log_error("log writer: pipe: %s", strerror(errno));
		return -1;
	}
	fcntl(p[1], F_SETPIPE_SZ, LOG_PIPE_SIZE);
	lw->pipe_read = p[0];
	if (spawn(lw, p[1], ps, acct) < 0) {
		close(p[0]);
		close(p[1]);
		lw->pipe_read = -1;
		return -1;
	}
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	return 0;
}

void log_writer_reopen(struct log_writer *lw)
{
	if (lw->pid <= 0 || lw->ctl < 0) {
		log_info("signal USR1: no log file to reopen (log_to is not file)");
		return;
	}
	int fd = open_log_file(lw->path);
	if (fd < 0) {
		log_error("signal USR1: cannot reopen log_file %s: %s; logging goes on to the old one",
			  lw->path, strerror(errno));
		return;
	}
	char byte = 'F';
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} cbuf;
	memset(&cbuf, 0, sizeof(cbuf));
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.space,
			      .msg_controllen = sizeof(cbuf.space) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	if (sendmsg(lw->ctl, &msg, MSG_NOSIGNAL) < 0)
		log_error("signal USR1: cannot hand the log writer its new file: %s", strerror(errno));
	close(fd);
	log_info("signal USR1: log file %s reopened", lw->path);
}

bool log_writer_reaped(struct log_writer *lw, pid_t pid, const struct privsep *ps,
		       const struct privsep_account *acct)
{
	if (lw->pid <= 0 || pid != lw->pid)
		return false;
	lw->pid = 0;
	/* another writer first: a line logged into a full pipe with no
	 * reader would block the supervisor */
	if (spawn(lw, -1, ps, acct) == 0)
		log_warn("the log writer exited; another one started (lines waited in the pipe)");
	return true;
}

void log_writer_close_in_child(const struct log_writer *lw)
{
	if (lw->pipe_read >= 0)
		close(lw->pipe_read);
	if (lw->ctl >= 0)
		close(lw->ctl);
}
