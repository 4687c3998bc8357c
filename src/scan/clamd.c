/*
 * clamd.c - the INSTREAM client of clamd (see clamd.h and clamd(8)):
 * one connection per message, a deadline over the whole exchange, a
 * bounded answer. Untrusted input: clamd's answer. Runs in the
 * unprivileged scanner processes and in `postern scan`.
 */
#include "clamd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/compat.h"

static char *errorf(const char *fmt, ...) PRINTF_LIKE(1, 2);
static char *errorf(const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return buf_steal(&b);
}

static int parse_unix(const char *spec, struct clamd_target *t, char **err_r)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&t->addrs[0];
	size_t len = strlen(spec);
	if (len >= sizeof(sun->sun_path)) {
		*err_r = errorf("clamd_socket: a unix socket path has at most %zu bytes: \"%s\"",
				sizeof(sun->sun_path) - 1, spec);
		return -1;
	}
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, spec, len + 1);
	t->addr_lens[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	t->addr_count = 1;
	return 0;
}

int clamd_split_host_port(const char *spec, char *host_r, size_t host_size, char *port_r,
			  size_t port_size)
{
	const char *host = spec, *host_end, *port;
	if (spec[0] == '[') {
		host = spec + 1;
		host_end = strchr(host, ']');
		if (host_end == NULL || host_end[1] != ':')
			return -1;
		port = host_end + 2;
	} else {
		host_end = strrchr(spec, ':');
		if (host_end == NULL || memchr(spec, ':', (size_t)(host_end - spec)) != NULL)
			return -1; /* no port, or an IPv6 address without brackets */
		port = host_end + 1;
	}
	size_t host_len = (size_t)(host_end - host), port_len = strlen(port);
	if (host_len == 0 || host_len >= host_size || port_len == 0 || port_len > 5 ||
	    port_len >= port_size || strspn(port, "0123456789") != port_len)
		return -1;
	long n = strtol(port, NULL, 10);
	if (n < 1 || n > 65535)
		return -1;
	memcpy(host_r, host, host_len);
	host_r[host_len] = '\0';
	memcpy(port_r, port, port_len + 1);
	return 0;
}

static int parse_inet(const char *spec, struct clamd_target *t, char **err_r)
{
	char host[256], port[8];
	if (clamd_split_host_port(spec, host, sizeof(host), port, sizeof(port)) != 0) {
		*err_r = errorf("clamd_socket: expected an absolute socket path or host:port "
				"(an IPv6 address in brackets, a port from 1 to 65535): \"%s\"",
				spec);
		return -1;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		*err_r = errorf("clamd_socket: cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai != NULL && t->addr_count < CLAMD_ADDRS_MAX;
	     ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(t->addrs[0]))
			continue;
		memcpy(&t->addrs[t->addr_count], ai->ai_addr, ai->ai_addrlen);
		t->addr_lens[t->addr_count++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (t->addr_count == 0) {
		*err_r = errorf("clamd_socket: %s has no usable address", host);
		return -1;
	}
	return 0;
}

int clamd_target_parse(const char *spec, struct clamd_target *target_r, char **err_r)
{
	memset(target_r, 0, sizeof(*target_r));
	*err_r = NULL;
	if (strlen(spec) >= sizeof(target_r->text)) {
		*err_r = errorf("clamd_socket: longer than %zu bytes", sizeof(target_r->text) - 1);
		return -1;
	}
	strcpy(target_r->text, spec); /* length checked above */
	return spec[0] == '/' ? parse_unix(spec, target_r, err_r)
			      : parse_inet(spec, target_r, err_r);
}

/* Copy src[0..len) to dst as printable ASCII, at most size - 1 bytes. */
static void copy_printable(char *dst, size_t size, const char *src, size_t len)
{
	if (size == 0)
		return;
	if (len > size - 1)
		len = size - 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '_';
	}
	dst[len] = '\0';
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);
	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Length of the prefix of s[0..len) made of bytes in accept. */
static size_t strspn_len(const char *s, size_t len, const char *accept)
{
	size_t i = 0;
	while (i < len && s[i] != '\0' && strchr(accept, s[i]) != NULL)
		i++;
	return i;
}

enum clamd_verdict clamd_reply_parse(const char *reply, size_t len, char *name_r,
				     size_t name_size)
{
	/* One answer: up to the first NUL or newline. */
	for (size_t i = 0; i < len; i++) {
		if (reply[i] == '\0' || reply[i] == '\n') {
			len = i;
			break;
		}
	}
	while (len > 0 && (reply[len - 1] == '\r' || reply[len - 1] == ' '))
		len--;
	/* "stream: ..." (or "N: stream: ..." in a session). */
	const char *body = reply;
	size_t body_len = len, digits = strspn_len(reply, len, "0123456789");
	if (digits > 0 && digits + 2 <= body_len && memcmp(body + digits, ": ", 2) == 0) {
		body += digits + 2;
		body_len -= digits + 2;
	}
	bool stream = body_len >= 8 && memcmp(body, "stream: ", 8) == 0;
	if (stream) {
		body += 8;
		body_len -= 8;
	}
	if (stream && body_len == 2 && memcmp(body, "OK", 2) == 0) {
		copy_printable(name_r, name_size, "", 0);
		return CLAMD_CLEAN;
	}
	if (stream && ends_with(body, body_len, " FOUND") && body_len > 6) {
		copy_printable(name_r, name_size, body, body_len - 6);
		return CLAMD_FOUND;
	}
	if (ends_with(reply, len, " ERROR")) {
		copy_printable(name_r, name_size, reply, len - 6);
		return CLAMD_ERROR;
	}
	buf_t b = BUF_INIT;
	buf_puts(&b, "unexpected answer \"");
	buf_append(&b, reply, len > 120 ? 120 : len);
	buf_puts(&b, "\"");
	copy_printable(name_r, name_size, b.data, b.len);
	buf_free(&b);
	return CLAMD_ERROR;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until the deadline: the revents, 0 on timeout. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return p.revents;
		if (n < 0 && errno != EINTR)
			return POLLERR;
	}
}

struct exchange {
	const struct clamd_target *target;
	int64_t deadline;
	uint64_t timeout_ms;
	char *err;
	size_t err_size;
};

static int fail(struct exchange *x, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int fail(struct exchange *x, const char *fmt, ...)
{
	int n = snprintf(x->err, x->err_size, "clamd %s: ", x->target->text);
	if (n < 0 || (size_t)n >= x->err_size)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->err + n, x->err_size - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static int connect_one(struct exchange *x, size_t i, int *fd_r)
{
	const struct sockaddr *sa = (const struct sockaddr *)&x->target->addrs[i];
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(x, "socket: %s", strerror(errno));
	if (connect(fd, sa, x->target->addr_lens[i]) == 0) {
		*fd_r = fd;
		return 0;
	}
	if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
		close(fd);
		return fail(x, "connect: clamd is not accepting connections (its queue is full)");
	}
	if (errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return fail(x, "connect: %s", strerror(e));
	}
	int ev = wait_fd(fd, POLLOUT, x->deadline);
	int soerr = 0;
	socklen_t slen = sizeof(soerr);
	if (ev == 0) {
		close(fd);
		return fail(x, "connect: no answer within %llu ms",
			    (unsigned long long)x->timeout_ms);
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0 || soerr != 0) {
		close(fd);
		return fail(x, "connect: %s", strerror(soerr ? soerr : errno));
	}
	*fd_r = fd;
	return 0;
}

static int connect_any(struct exchange *x, int *fd_r)
{
	int rc = -1;
	for (size_t i = 0; i < x->target->addr_count && rc != 0; i++)
		rc = connect_one(x, i, fd_r);
	return rc;
}

enum send_result { SENT, PEER_SPOKE, SEND_FAILED };

/* Send iov[0..cnt) whole. PEER_SPOKE: clamd answered or closed the
 * connection before taking everything (it only does so to refuse). */
static enum send_result send_iov(struct exchange *x, int fd, struct iovec *iov, size_t cnt)
{
	while (cnt > 0) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = cnt };
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return PEER_SPOKE;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				fail(x, "send: %s", strerror(errno));
				return SEND_FAILED;
			}
			int ev = wait_fd(fd, POLLOUT | POLLIN, x->deadline);
			if (ev == 0) {
				fail(x, "clamd took no data for %llu ms",
				     (unsigned long long)x->timeout_ms);
				return SEND_FAILED;
			}
			if (ev & (POLLIN | POLLHUP | POLLERR))
				return PEER_SPOKE;
			continue;
		}
		size_t done = (size_t)n;
		while (cnt > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return SENT;
}

static enum send_result send_stream(struct exchange *x, int fd,
				    const struct clamd_piece *pieces, size_t count)
{
	static const char command[] = "zINSTREAM"; /* sent with its NUL */
	struct iovec iov[2] = { { .iov_base = (void *)command, .iov_len = sizeof(command) } };
	enum send_result r = send_iov(x, fd, iov, 1);
	for (size_t i = 0; i < count && r == SENT; i++) {
		const unsigned char *p = pieces[i].data;
		size_t left = pieces[i].len;
		while (left > 0 && r == SENT) {
			size_t n = left < CLAMD_CHUNK_MAX ? left : CLAMD_CHUNK_MAX;
			uint32_t be = htonl((uint32_t)n);
			iov[0] = (struct iovec){ .iov_base = &be, .iov_len = 4 };
			iov[1] = (struct iovec){ .iov_base = (void *)p, .iov_len = n };
			r = send_iov(x, fd, iov, 2);
			p += n;
			left -= n;
		}
	}
	if (r == SENT) {
		uint32_t end = 0;
		iov[0] = (struct iovec){ .iov_base = &end, .iov_len = 4 };
		r = send_iov(x, fd, iov, 1);
	}
	return r;
}

/* Read the answer up to its NUL (or EOF, or CLAMD_REPLY_MAX bytes). The
 * number of bytes read, or -1 on timeout or error (x->err says which). */
static ssize_t read_reply(struct exchange *x, int fd, char *buf, size_t size)
{
	size_t len = 0;
	while (len < size) {
		ssize_t n = read(fd, buf + len, size - len);
		if (n > 0) {
			bool ended = memchr(buf + len, '\0', (size_t)n) != NULL;
			len += (size_t)n;
			if (ended)
				break;
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			break;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			fail(x, "read: %s", strerror(errno));
			return -1;
		}
		if (wait_fd(fd, POLLIN, x->deadline) == 0) {
			fail(x, "no answer within %llu ms", (unsigned long long)x->timeout_ms);
			return -1;
		}
	}
	return (ssize_t)len;
}

int clamd_instream(const struct clamd_target *target, const struct clamd_piece *pieces,
		   size_t count, uint64_t timeout_ms, enum clamd_verdict *verdict_r,
		   char *name_r, size_t name_size, char *err_r, size_t err_size)
{
	struct exchange x = { .target = target, .deadline = now_ms() + (int64_t)timeout_ms,
			      .timeout_ms = timeout_ms, .err = err_r, .err_size = err_size };
	int fd = -1;
	if (err_size > 0)
		err_r[0] = '\0';
	if (connect_any(&x, &fd) != 0)
		return -1;
	enum send_result sent = send_stream(&x, fd, pieces, count);
	if (sent == SEND_FAILED) {
		close(fd);
		return -1;
	}
	char reply[CLAMD_REPLY_MAX];
	ssize_t len = read_reply(&x, fd, reply, sizeof(reply));
	close(fd);
	if (len < 0)
		return -1;
	if (len == 0)
		return fail(&x, "%s", sent == PEER_SPOKE
				? "closed the connection while receiving the message"
				: "closed the connection without an answer");
	char text[CLAMD_NAME_MAX];
	enum clamd_verdict v = clamd_reply_parse(reply, (size_t)len, text, sizeof(text));
	if (v == CLAMD_ERROR)
		return fail(&x, "%s", text);
	if (sent == PEER_SPOKE)
		return fail(&x, "answered before the end of the message: \"%s\"", text);
	*verdict_r = v;
	copy_printable(name_r, name_size, text, strlen(text));
	return 0;
}
