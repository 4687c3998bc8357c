/*
 * milter_server.c - the milter process of "postern milter" (see
 * milter_server.h): libmilter's callbacks, one conversation per thread,
 * each message spooled, judged by the scan master and answered.
 *
 * RFCs: RFC 5321 (the replies the MTA gives for us), RFC 3463 (their
 * enhanced status codes), RFC 5322 (header fields). Untrusted input: the
 * envelope, header fields, body and macros the MTA relays; the verdicts.
 * Privilege: `user` (the supervisor switched to it before calling in).
 */
#include "milter_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <inttypes.h>
#include <libmilter/mfapi.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "../queue/queue_file.h"
#include "../scan/scan_proto.h"
#include "milter_scan.h"
#include "milter_spool.h"

#define LISTEN_BACKLOG 1024
#define SOCKET_MODE 0666    /* unix: access is the folder's to control */

/* What every conversation shares: set before smfi_main, read-only after
 * (but the session count). */
static struct {
	const struct config *cfg;
	bool scan;
	char *scan_path;
	char *spool_folder;
	struct milter_spool_limits limits;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned sessions;
} G = { .lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

/* One MTA conversation (a connection; several messages may follow). */
struct msession {
	char client_addr[SCAN_CLIENT_ADDR_MAX + 1];
	char helo[SCAN_HELO_MAX + 1];
	bool in_tx;            /* MAIL seen, spool open */
	bool own_received;     /* the first field is the MTA's own Received: (Postfix sends it) */
	char sender[QF_ADDR_MAX + 1];
	strlist_t rcpts;
	struct milter_spool spool;
	uint64_t started_us;
};

static uint64_t now_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

static struct msession *session_of(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* The MTA's queue id ({i}), for the log lines; "NOQUEUE" before it has one. */
static const char *mta_id(SMFICTX *ctx)
{
	const char *id = smfi_getsymval(ctx, (char *)"i");
	if (id == NULL)
		id = smfi_getsymval(ctx, (char *)"{i}");
	return id != NULL && id[0] != '\0' ? id : "NOQUEUE";
}

static void tx_end(struct msession *s)
{
	milter_spool_close(&s->spool);
	strlist_free(&s->rcpts);
	s->sender[0] = '\0';
	s->in_tx = false;
	s->own_received = false;
}

/* "<addr>" -> "addr", cut to size; "<>" -> "". */
static void strip_brackets(const char *arg, char *out, size_t size)
{
	size_t len = strlen(arg);
	if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
		arg++;
		len -= 2;
	}
	snprintf(out, size, "%.*s", (int)(len < size ? len : size - 1), arg);
}

/* Our reply for the MTA to give. smfi_setreply reads text as a format:
 * a '%' is doubled. */
static void set_reply(SMFICTX *ctx, int code, const char *status, const char *text)
{
	char rcode[8], xcode[16], msg[1100];
	size_t o = 0;
	snprintf(rcode, sizeof(rcode), "%d", code);
	snprintf(xcode, sizeof(xcode), "%s", status);
	for (const char *p = text; *p != '\0' && o + 3 < sizeof(msg); p++) {
		if (*p == '%')
			msg[o++] = '%';
		msg[o++] = (*p == '\r' || *p == '\n') ? ' ' : *p;
	}
	msg[o] = '\0';
	if (smfi_setreply(ctx, rcode, xcode[0] != '\0' ? xcode : NULL, msg) != MI_SUCCESS)
		log_warn("%s: milter: the MTA would not take the reply %d %s", mta_id(ctx), code,
			 status);
}

/* Refuse the message for a spool problem (size, header, disk). */
static sfsistat refuse_spool(SMFICTX *ctx, struct msession *s)
{
	const char *id = mta_id(ctx);
	sfsistat rc;
	switch (s->spool.status) {
	case MILTER_SPOOL_TOO_BIG:
		set_reply(ctx, 552, "5.3.4", "Message size exceeds fixed limit");
		log_info("%s: milter action=reject reason=size status=5.3.4 from=<%s> limit=%" PRIu64,
			 id, s->sender, G.cfg->message_size_limit);
		rc = SMFIS_REJECT;
		break;
	case MILTER_SPOOL_HEADER_TOO_BIG:
		set_reply(ctx, 552, "5.3.4", "Message header size exceeds limit");
		log_info("%s: milter action=reject reason=header_size status=5.3.4 from=<%s>", id,
			 s->sender);
		rc = SMFIS_REJECT;
		break;
	default:
		set_reply(ctx, 451, "4.3.0", "Error: cannot keep the message, try again later");
		log_error("%s: milter action=tempfail reason=spool_error status=4.3.0 (%s)", id,
			  s->spool.err);
		rc = SMFIS_TEMPFAIL;
		break;
	}
	tx_end(s);
	return rc;
}

/* ---- libmilter's callbacks ------------------------------------------------------- */

static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *addr)
{
	(void)hostname;
	struct msession *s = xcalloc(1, sizeof(*s));
	s->spool.fd = s->spool.ro_fd = -1;
	if (addr != NULL && addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)addr)->sin_addr, s->client_addr,
			  sizeof(s->client_addr));
	else if (addr != NULL && addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)addr)->sin6_addr,
			  s->client_addr, sizeof(s->client_addr));
	else {
		const char *a = smfi_getsymval(ctx, (char *)"{client_addr}");
		snprintf(s->client_addr, sizeof(s->client_addr), "%s", a != NULL ? a : "");
	}
	smfi_setpriv(ctx, s);
	pthread_mutex_lock(&G.lock);
	G.sessions++;
	pthread_mutex_unlock(&G.lock);
	return SMFIS_CONTINUE;
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	struct msession *s = session_of(ctx);
	if (s != NULL)
		snprintf(s->helo, sizeof(s->helo), "%s", helo != NULL ? helo : "");
	return SMFIS_CONTINUE;
}

/* The SIZE= of MAIL, or 0. */
static uint64_t declared_size(char **argv)
{
	for (size_t i = 1; argv[i] != NULL; i++) {
		uint64_t n;
		if (strncasecmp(argv[i], "SIZE=", 5) == 0 && str_parse_uint(argv[i] + 5, &n))
			return n;
	}
	return 0;
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || argv == NULL || argv[0] == NULL)
		return SMFIS_CONTINUE;
	tx_end(s);
	strip_brackets(argv[0], s->sender, sizeof(s->sender));
	if (declared_size(argv) > G.cfg->message_size_limit) {
		s->spool.status = MILTER_SPOOL_TOO_BIG;
		return refuse_spool(ctx, s);
	}
	if (milter_spool_open(&s->spool, &G.limits, G.spool_folder) < 0)
		return refuse_spool(ctx, s);
	s->in_tx = true;
	s->started_us = now_us();
	return SMFIS_CONTINUE;
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
	struct msession *s = session_of(ctx);
	char rcpt[QF_ADDR_MAX + 1];
	if (s == NULL || !s->in_tx || argv == NULL || argv[0] == NULL)
		return SMFIS_CONTINUE;
	strip_brackets(argv[0], rcpt, sizeof(rcpt));
	if (rcpt[0] != '\0' && s->rcpts.count < G.cfg->recipient_limit)
		strlist_add(&s->rcpts, rcpt);
	return SMFIS_CONTINUE;
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return SMFIS_CONTINUE;
	/* The MTA's own Received: names its queue id; postern's fields go
	 * below it, as postern's own delivery puts them below its Received:. */
	if (s->spool.names.count == 0 && name != NULL && value != NULL &&
	    strcasecmp(name, "Received") == 0) {
		const char *id = mta_id(ctx);
		s->own_received = strcmp(id, "NOQUEUE") != 0 && strstr(value, id) != NULL;
	}
	if (milter_spool_header(&s->spool, name != NULL ? name : "",
				value != NULL ? value : "") != MILTER_SPOOL_OK)
		return refuse_spool(ctx, s);
	return SMFIS_CONTINUE;
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return SMFIS_CONTINUE;
	if (milter_spool_end_of_header(&s->spool) != MILTER_SPOOL_OK)
		return refuse_spool(ctx, s);
	return SMFIS_CONTINUE;
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return SMFIS_CONTINUE;
	if (milter_spool_body(&s->spool, data, len) != MILTER_SPOOL_OK)
		return refuse_spool(ctx, s);
	return SMFIS_CONTINUE;
}

/* "Name: value" -> smfi_insheader at index (the value without the one
 * space after the colon). */
static bool insert_field(SMFICTX *ctx, int index, const char *field)
{
	const char *colon = strchr(field, ':');
	if (colon == NULL)
		return false;
	char *name = xstrndup(field, (size_t)(colon - field));
	const char *value = colon + 1;
	if (*value == ' ')
		value++;
	int rc = smfi_insheader(ctx, index, name, (char *)value);
	free(name);
	return rc == MI_SUCCESS;
}

/* The verdict's header changes: every occurrence of each removed name
 * (counted as received; the last first, so that the indexes hold), then
 * the added fields at the top, in order: below the MTA's own Received:
 * when it sent us that (Postfix does; Sendmail hides its own), as
 * postern's own delivery puts them below its Received:. */
static void apply_header_changes(SMFICTX *ctx, struct msession *s, const struct scan_verdict *v)
{
	const char *id = mta_id(ctx);
	for (size_t i = 0; i < v->remove_headers.count; i++) {
		const char *name = v->remove_headers.items[i];
		for (unsigned n = milter_spool_count(&s->spool, name); n > 0; n--)
			if (smfi_chgheader(ctx, (char *)name, (int)n, NULL) != MI_SUCCESS)
				log_warn("%s: milter: the MTA would not remove %s #%u", id, name, n);
	}
	int top = s->own_received ? 1 : 0;
	for (size_t i = 0; i < v->headers.count; i++)
		if (!insert_field(ctx, top + (int)i, v->headers.items[i]))
			log_warn("%s: milter: the MTA would not add a header field", id);
}

static sfsistat apply_verdict(SMFICTX *ctx, struct msession *s, const struct scan_verdict *v)
{
	switch (v->action) {
	case SCAN_REJECT:
		set_reply(ctx, v->code != 0 ? v->code : 550, v->status[0] != '\0' ? v->status : "5.7.1",
			  v->text);
		return SMFIS_REJECT;
	case SCAN_TEMPFAIL:
		set_reply(ctx, v->code != 0 ? v->code : 451, v->status[0] != '\0' ? v->status : "4.7.0",
			  v->text);
		return SMFIS_TEMPFAIL;
	case SCAN_DISCARD:
		return SMFIS_DISCARD;
	case SCAN_QUARANTINE: {
		apply_header_changes(ctx, s, v);
		char reason[600];
		snprintf(reason, sizeof(reason), "postern: %s",
			 v->text[0] != '\0' ? v->text : v->reason[0] != '\0' ? v->reason : "quarantine");
		if (smfi_quarantine(ctx, reason) != MI_SUCCESS) {
			log_error("%s: milter: the MTA would not quarantine the message: refused for now",
				  mta_id(ctx));
			set_reply(ctx, 451, "4.7.0", "Message could not be checked, try again later");
			return SMFIS_TEMPFAIL;
		}
		return SMFIS_CONTINUE;
	}
	case SCAN_ACCEPT:
	case SCAN_TAG:
		apply_header_changes(ctx, s, v);
		return SMFIS_CONTINUE;
	}
	return SMFIS_CONTINUE;
}

static void log_verdict(SMFICTX *ctx, const struct msession *s, const struct scan_verdict *v,
			const char *detail)
{
	buf_t hits = BUF_INIT;
	for (size_t i = 0; i < v->hits.count; i++)
		buf_printf(&hits, "%s%s", i > 0 ? "," : "", v->hits.items[i]);
	double delay = (double)(now_us() - s->started_us) / 1e6;
	if (scan_verdict_failed(v))
		log_warn("%s: milter action=%s%s reason=%s from=<%s> nrcpt=%zu size=%" PRIu64
			 " id=%s delay=%.3f (%s)", mta_id(ctx), scan_action_name(v->action),
			 v->action != SCAN_TEMPFAIL ? " fail_open=yes" : "", v->reason, s->sender,
			 s->rcpts.count, s->spool.size, s->spool.id, delay,
			 detail[0] != '\0' ? detail : v->text);
	else
		log_info("%s: milter action=%s%s%s%s%s hits=%s headers=%zu from=<%s> nrcpt=%zu "
			 "size=%" PRIu64 " id=%s delay=%.3f", mta_id(ctx), scan_action_name(v->action),
			 v->reason[0] != '\0' ? " reason=" : "", v->reason,
			 v->code != 0 ? " status=" : "", v->code != 0 ? v->status : "",
			 hits.len > 0 ? buf_cstr(&hits) : "-", v->headers.count, s->sender,
			 s->rcpts.count, s->spool.size, s->spool.id, delay);
	buf_free(&hits);
}

static sfsistat on_eom(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s == NULL || !s->in_tx)
		return SMFIS_CONTINUE;
	if (milter_spool_end_of_header(&s->spool) != MILTER_SPOOL_OK ||
	    milter_spool_flush(&s->spool) < 0)
		return refuse_spool(ctx, s);
	if (!G.scan) {
		log_info("%s: milter action=accept scan=off from=<%s> nrcpt=%zu size=%" PRIu64,
			 mta_id(ctx), s->sender, s->rcpts.count, s->spool.size);
		tx_end(s);
		return SMFIS_CONTINUE;
	}
	struct milter_scan_request req = { .socket_path = G.scan_path, .id = s->spool.id,
					   .fd = s->spool.ro_fd, .len = s->spool.size,
					   .sender = s->sender, .client_addr = s->client_addr,
					   .helo = s->helo, .rcpts = &s->rcpts };
	struct scan_msg reply;
	char detail[256];
	milter_scan_ask(G.cfg, &req, &reply, detail, sizeof(detail));
	sfsistat rc = apply_verdict(ctx, s, &reply.verdict);
	log_verdict(ctx, s, &reply.verdict, detail);
	scan_msg_free(&reply);
	tx_end(s);
	return rc;
}

static sfsistat on_abort(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s != NULL)
		tx_end(s);
	return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
	struct msession *s = session_of(ctx);
	if (s == NULL)
		return SMFIS_CONTINUE;
	tx_end(s);
	free(s);
	smfi_setpriv(ctx, NULL);
	pthread_mutex_lock(&G.lock);
	if (--G.sessions == 0)
		pthread_cond_broadcast(&G.idle);
	pthread_mutex_unlock(&G.lock);
	return SMFIS_CONTINUE;
}

/* ---- the process -------------------------------------------------------------------- */

static struct smfiDesc milter_desc = {
	.xxfi_name = (char *)"postern",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
	.xxfi_connect = on_connect,
	.xxfi_helo = on_helo,
	.xxfi_envfrom = on_envfrom,
	.xxfi_envrcpt = on_envrcpt,
	.xxfi_header = on_header,
	.xxfi_eoh = on_eoh,
	.xxfi_body = on_body,
	.xxfi_eom = on_eom,
	.xxfi_abort = on_abort,
	.xxfi_close = on_close,
};

/* The listening socket libmilter opened (it keeps the descriptor to
 * itself), other than but: the one other listening socket of this
 * process. -1 if none is found. */
static int find_listener(int but)
{
	for (int fd = 0; fd < 1024; fd++) {
		int on = 0;
		socklen_t len = sizeof(on);
		if (fd != but && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on)
			return fd;
	}
	return -1;
}

/* A unix socket: bound beside the path, then renamed over it (a running
 * listener of the previous generation keeps its own until it stops, and
 * the path always names a listening socket). Its inode in *st_r. */
static int open_unix(const struct milter_listen *l, struct stat *st_r)
{
	char tmp[sizeof(l->path) + 32], conn[sizeof(tmp) + 8];
	snprintf(tmp, sizeof(tmp), "%s.new-%ld", l->path, (long)getpid());
	snprintf(conn, sizeof(conn), "unix:%s", tmp);
	if (smfi_setconn(conn) != MI_SUCCESS || smfi_opensocket(true) != MI_SUCCESS) {
		log_error("milter_listen unix:%s: cannot listen on %s", l->path, tmp);
		return -1;
	}
	if (chmod(tmp, SOCKET_MODE) < 0 || rename(tmp, l->path) < 0 || stat(l->path, st_r) < 0) {
		log_error("milter_listen unix:%s: %s", l->path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Our own TCP listener on l, with SO_REUSEPORT: the previous
 * generation's listener (which has it too, and the same account) keeps
 * the port until the new one listens. -1 after a log line. */
static int bind_inet(const struct milter_listen *l)
{
	struct addrinfo hints = { .ai_family = l->v6 ? AF_INET6 : AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(l->host, l->port, &hints, &ai);
	if (rc != 0) {
		log_error("milter_listen: %s: %s", l->conn, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		log_error("milter_listen: cannot listen on %s:%s: %s", l->host, l->port,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* An inet socket: libmilter binds a stand-in of the same family on a port
 * of the kernel's choosing, and our own listener (bind_inet) takes the
 * stand-in's descriptor; libmilter accepts on it from then on. */
static int open_inet(const struct milter_listen *l)
{
	int fd = bind_inet(l);
	if (fd < 0)
		return -1;
	bool v6 = false;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		v6 = ss.ss_family == AF_INET6;
	char *stand_in = (char *)(v6 ? "inet6:0@::1" : "inet:0@127.0.0.1");
	int theirs = -1;
	if (smfi_setconn(stand_in) != MI_SUCCESS || smfi_opensocket(true) != MI_SUCCESS ||
	    (theirs = find_listener(fd)) < 0 || dup2(fd, theirs) < 0) {
		log_error("milter_listen: libmilter could not take the socket of %s", l->conn);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * Stop taking new conversations without stopping libmilter (its stop
 * also stops serving the conversations in progress): the listening
 * socket is shut down (a unix socket refuses connections, a TCP port is
 * free for the next generation at once) and its descriptor replaced by a
 * pipe that never becomes readable, which libmilter's listener then
 * waits on.
 */
static void stop_listening(int listener, int quiet_pipe)
{
	int old = dup(listener);
	if (dup2(quiet_pipe, listener) < 0)
		log_warn("milter: cannot replace the listening socket: %s", strerror(errno));
	if (old >= 0) {
		shutdown(old, SHUT_RDWR);
		close(old);
	}
}

/* Wait for the conversations in progress, at most shutdown_timeout. */
static void drain(const struct config *cfg)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)cfg->shutdown_timeout;
	pthread_mutex_lock(&G.lock);
	if (G.sessions > 0)
		log_info("milter: stopped listening; %u conversation(s) to finish", G.sessions);
	while (G.sessions > 0 && pthread_cond_timedwait(&G.idle, &G.lock, &until) != ETIMEDOUT)
		;
	unsigned left = G.sessions;
	pthread_mutex_unlock(&G.lock);
	if (left > 0)
		log_warn("milter: %u conversation(s) still open after shutdown_timeout (%" PRIu64
			 "s): left to the MTA's milter_default_action", left, cfg->shutdown_timeout);
}

/* libmilter's loop, on a thread of its own; the main thread waits for
 * the supervisor's SIGUSR2. When libmilter stops by itself (its own
 * signal thread took SIGTERM, SIGHUP or SIGINT) the main thread is told
 * with a SIGUSR2 too. */
static volatile int libmilter_rc = -1;

static void *libmilter_thread(void *arg)
{
	(void)arg;
	libmilter_rc = smfi_main() == MI_SUCCESS ? 0 : 1;
	kill(getpid(), SIGUSR2);
	return NULL;
}

int milter_server_main(const struct config *cfg, bool scan, int ready_fd)
{
	struct milter_listen l;
	char err[160];
	struct stat st = { 0 };
	int quiet[2];
	if (milter_listen_parse(cfg->milter_listen, &l, err, sizeof(err)) < 0) {
		log_error("milter_listen: %s", err);
		return 1;
	}
	if (pipe2(quiet, O_CLOEXEC) < 0) {
		log_error("milter: pipe: %s", strerror(errno));
		return 1;
	}
	/* Every thread libmilter starts inherits this: its own signal thread
	 * waits for SIGHUP, SIGTERM and SIGINT, this one for SIGUSR2. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	G.cfg = cfg;
	G.scan = scan;
	G.scan_path = scan_socket_path(cfg->spool_dir);
	G.spool_folder = safeio_path_join(cfg->spool_dir, "incoming");
	G.limits = (struct milter_spool_limits){ .message_max = cfg->message_size_limit,
						 .header_max = cfg->header_size_limit,
						 .fields_max = MILTER_SPOOL_FIELDS_MAX };
	if (smfi_register(milter_desc) != MI_SUCCESS) {
		log_error("milter: libmilter refused to register the filter");
		return 1;
	}
	smfi_settimeout((int)(cfg->command_timeout > 86400 ? 86400 : cfg->command_timeout));
	smfi_setbacklog(LISTEN_BACKLOG);
	if ((l.is_unix ? open_unix(&l, &st) : open_inet(&l)) < 0)
		return 1;
	int listener = find_listener(-1);
	log_info("milter listening on %s%s (scan=%s)", l.is_unix ? "unix:" : "",
		 l.is_unix ? l.path : l.conn, scan ? "yes" : "off");
	pthread_t thread;
	if (pthread_create(&thread, NULL, libmilter_thread, NULL) != 0) {
		log_error("milter: cannot start libmilter's thread");
		return 1;
	}
	if (ready_fd >= 0) {
		char ready = MILTER_READY;
		if (write(ready_fd, &ready, 1) < 0)
			log_warn("milter: cannot tell the supervisor it is ready: %s", strerror(errno));
		close(ready_fd);
	}
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	int sig = 0;
	while (sigwait(&usr2, &sig) != 0 || sig != SIGUSR2)
		;
	int rc = 0;
	if (libmilter_rc >= 0) {
		rc = libmilter_rc; /* stopped by libmilter: its conversations are over */
		log_info("milter: libmilter stopped (status %d)", rc);
	} else if (listener < 0) {
		log_warn("milter: the listening socket is unknown: stopping at once");
	} else {
		stop_listening(listener, quiet[0]);
		drain(cfg);
	}
	/* The path still names our socket (no newer generation took it): remove it. */
	struct stat now;
	if (l.is_unix && stat(l.path, &now) == 0 && now.st_dev == st.st_dev &&
	    now.st_ino == st.st_ino)
		unlink(l.path);
	free(G.scan_path);
	free(G.spool_folder);
	log_info("milter process stopped");
	return rc;
}
