/*
 * keyholder.c - the key holder role: the only process of "postern serve"
 * that has the TLS private key. The supervisor forks one per generation
 * with TLS (as root: it loads tls_key and checks it against tls_cert,
 * keyholder_key.h, then switches to `user` and becomes non-dumpable);
 * it listens on spool_dir/private/keyholder-ID.sock (ID: its key's) and answers the SIGN
 * requests of the TLS workers (smtp, pop3: smtp/keyholder_proto.h) one
 * at a time, in the order they come, from a libevent loop.
 *
 * It never touches the network: no listener, no descriptor of the other
 * roles, no tables. A connection must come from a process of its own
 * account (SO_PEERCRED), and is ended at the first protocol violation.
 *
 * The socket is named after the key, so the workers of each generation
 * reach a key holder of their own key: after a reload with a new key the
 * old key holder serves the old generation's workers until the supervisor
 * stops it, once they have all exited. A key holder of the same key
 * (after a restart, or a reload that kept the key) takes the name over by
 * rename; one that exits removes the name if it is still its own. A key
 * holder that dies is started again by the supervisor; meanwhile the
 * workers' handshakes fail (tls_remote_key.h), no session or message is
 * lost on that account.
 *
 * RFCs: none. Untrusted input: the workers' requests (a compromised worker
 * may send anything: keyholder_proto.c decodes strictly, keyholder_key.c
 * signs only what a TLS handshake needs signed). Privilege: root only in
 * keyholder_key_load, then `user`, non-dumpable.
 */
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/unixsock.h"
#include "../lib/xalloc.h"
#include "../smtp/keyholder_proto.h"
#include "../smtp/keyholder_key.h"

/* Connections at most (a few per worker process in practice). */
#define KEYHOLDER_CONNS_MAX 4096

struct holder_conn {
	struct keyholder *h;
	struct holder_conn *prev, *next;
	int fd;
	struct event *readable;
};

struct keyholder {
	struct event_base *base;
	const struct keyholder_key *key;
	int listener;
	char *path;
	ino_t path_ino; /* of the socket file, to remove it only if still ours */
	struct event *accepting, *sig_term, *sig_int;
	struct holder_conn *conns;
	size_t conn_count;
	unsigned long signed_count, refused_count;
};

static void conn_free(struct holder_conn *c, const char *why)
{
	struct keyholder *h = c->h;
	if (why != NULL)
		log_warn("a worker's connection ended: %s", why);
	event_free(c->readable);
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	h->conn_count--;
	free(c);
}

/* One request from c: answered, or the connection ended. */
static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct holder_conn *c = arg;
	struct keyholder *h = c->h;
	(void)what;
	unsigned char packet[KEYHOLDER_MSG_MAX + 1];
	ssize_t n = recv(fd, packet, sizeof(packet), MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(c, n < 0 ? strerror(errno) : NULL);
		return;
	}
	struct keyholder_msg *req = xmalloc(sizeof(*req)), *ans = xmalloc(sizeof(*ans));
	const char *err = NULL;
	if ((size_t)n > KEYHOLDER_MSG_MAX)
		err = "message too long";
	else if (keyholder_msg_decode(packet, (size_t)n, req, &err) == 0 &&
		 req->type != KEYHOLDER_SIGN)
		err = "an answer instead of a request";
	if (err == NULL) {
		keyholder_key_answer(h->key, req, ans);
		if (ans->status == KEYHOLDER_OK) {
			h->signed_count++;
		} else {
			h->refused_count++;
			log_warn("request refused: %s", ans->status == KEYHOLDER_UNKNOWN_KEY
				 ? "for another key (a worker of another configuration)"
				 : "the operation does not fit the key or the TLS handshake");
		}
		buf_t out = BUF_INIT;
		keyholder_msg_encode(ans, &out);
		/* The worker waits for this answer and nothing else: a socket
		 * with no room for it belongs to a worker that does not read. */
		if (send(fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)out.len)
			err = "it does not take its answers";
		buf_free(&out);
	}
	free(req);
	free(ans);
	if (err != NULL)
		conn_free(c, err);
}

/* A connection from a process that is not of this account is refused. */
static bool peer_is_ours(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == getuid();
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keyholder *h = arg;
	(void)what;
	int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (s < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			log_warn("accept: %s", strerror(errno));
		return;
	}
	if (!peer_is_ours(s) || h->conn_count >= KEYHOLDER_CONNS_MAX) {
		log_warn("connection refused: %s", h->conn_count >= KEYHOLDER_CONNS_MAX
			 ? "too many connections" : "not from a process of this account");
		close(s);
		return;
	}
	struct holder_conn *c = xcalloc(1, sizeof(*c));
	c->h = h;
	c->fd = s;
	c->readable = event_new(h->base, s, EV_READ | EV_PERSIST, readable_cb, c);
	if (c->readable == NULL || event_add(c->readable, NULL) < 0)
		log_fatal("cannot watch a connection");
	c->next = h->conns;
	if (h->conns != NULL)
		h->conns->prev = c;
	h->conns = c;
	h->conn_count++;
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct keyholder *h = arg;
	(void)what;
	log_debug("signal %d: stopping", (int)sig);
	event_base_loopexit(h->base, NULL);
}

/* Listen beside the path and take it over by rename: a socket left by a
 * dead predecessor is replaced, never connected to. */
static int open_listener(struct keyholder *h, const char *spool_dir)
{
	char *dir = keyholder_socket_dir(spool_dir);
	h->path = keyholder_socket_path(dir, keyholder_key_id_of(h->key));
	free(dir);
	buf_t tmp = BUF_INIT;
	buf_printf(&tmp, "%s.%ld", h->path, (long)getpid());
	unlink(buf_cstr(&tmp));
	h->listener = unixsock_listen(buf_cstr(&tmp), 128);
	if (h->listener < 0 || rename(buf_cstr(&tmp), h->path) < 0) {
		log_error("key holder socket %s: %s", h->path, strerror(errno));
		unlink(buf_cstr(&tmp));
		buf_free(&tmp);
		return -1;
	}
	buf_free(&tmp);
	struct stat st;
	h->path_ino = stat(h->path, &st) == 0 ? st.st_ino : 0;
	return 0;
}

/* Remove the socket's name unless a successor has taken it over. */
static void remove_listener_name(const struct keyholder *h)
{
	struct stat st;
	if (h->path_ino != 0 && stat(h->path, &st) == 0 && st.st_ino == h->path_ino)
		unlink(h->path);
}

int keyholder_main(const struct config *cfg, struct keyholder_key *key)
{
	struct keyholder h = { .listener = -1, .key = key };
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR2, SIG_IGN); /* a reload does not retire it: the supervisor stops it */
	h.base = event_base_new();
	if (h.base == NULL)
		log_fatal("cannot create event base");
	if (open_listener(&h, cfg->spool_dir) < 0)
		return 1;
	h.accepting = event_new(h.base, h.listener, EV_READ | EV_PERSIST, accept_cb, &h);
	h.sig_term = evsignal_new(h.base, SIGTERM, stop_cb, &h);
	h.sig_int = evsignal_new(h.base, SIGINT, stop_cb, &h);
	if (h.accepting == NULL || h.sig_term == NULL || h.sig_int == NULL ||
	    event_add(h.accepting, NULL) < 0 || evsignal_add(h.sig_term, NULL) < 0 ||
	    evsignal_add(h.sig_int, NULL) < 0)
		log_fatal("cannot set up the key holder's events");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	log_info("key holder ready: %s (key %.16s)", h.path, keyholder_key_id_text(key));
	event_base_dispatch(h.base);
	sigprocmask(SIG_BLOCK, &set, NULL);
	while (h.conns != NULL)
		conn_free(h.conns, NULL);
	event_free(h.accepting);
	event_free(h.sig_term);
	event_free(h.sig_int);
	remove_listener_name(&h);
	close(h.listener);
	event_base_free(h.base);
	free(h.path);
	log_info("key holder exiting: %lu signatures, %lu requests refused", h.signed_count,
		 h.refused_count);
	return 0;
}
