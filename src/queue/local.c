/*
 * local.c - the local delivery agent (see local.h): a blocking loop that
 * reads one request from the queue manager, carries it out with the
 * Maildir writer (maildir.c) and answers.
 *
 * DELIVER writes one copy (tmp/, fdatasync, link into new/) and remembers
 * the new/ folder in a table numbered from 1, replying with the number;
 * A copy that does not fit in the mailbox's quota is a permanent failure
 * (5.2.2), which the queue manager bounces at once; one that fits is
 * added to the mailbox's maildirsize (maildir.c, maildir_quota.c).
 * SYNC fsyncs every folder of the table once, reports the failures by
 * number and empties the table. So the queue manager's batching (one
 * fsync per folder per batch, recipients marked done only after it) works
 * as before, while the queue manager can neither write a mailbox nor name
 * a path for the agent to touch.
 *
 * RFCs: RFC 5321 section 4.4 and RFC 5322 through maildir.c. Untrusted
 * input: every request (local_proto.c decodes it), the descriptor it
 * carries, and the message content it points to. Privilege: mail_owner,
 * non-dumpable; it holds the users table (addresses only) and the queue
 * manager's spool lock, which it never uses but keeps open so that a new
 * queue manager cannot start while this agent still runs.
 */
#include "local.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/hashmap.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../mail/quota_rule.h"
#include "local_proto.h"
#include "maildir.h"

struct local_agent {
	const struct config *cfg;
	const struct recipient_tables *tables;
	int sock;
	int lock_fd;         /* the spool lock, from HELLO; -1 before */
	hashmap_t folder_ix; /* new/ path -> number (1-based) */
	char **folders;      /* number - 1 -> path */
	size_t folder_count, folder_cap;
};

/* Number of a new/ folder in this batch's table (taken over). */
static uint32_t folder_number(struct local_agent *a, char *newdir)
{
	uintptr_t n = (uintptr_t)hashmap_get(&a->folder_ix, newdir, NULL);

	if (n != 0) {
		free(newdir);
		return (uint32_t)n;
	}
	if (a->folder_count == a->folder_cap) {
		a->folder_cap = a->folder_cap ? a->folder_cap * 2 : 16;
		a->folders = xreallocarray(a->folders, a->folder_cap, sizeof(*a->folders));
	}
	a->folders[a->folder_count++] = newdir;
	hashmap_put(&a->folder_ix, newdir, (void *)(uintptr_t)a->folder_count);
	return (uint32_t)a->folder_count;
}

static void folders_clear(struct local_agent *a)
{
	for (size_t i = 0; i < a->folder_count; i++)
		free(a->folders[i]);
	a->folder_count = 0;
	hashmap_free(&a->folder_ix, NULL);
}

/* Read the queue file the request points to: it must be valid and hold
 * the message the queue manager named, with the same content range. The
 * agent takes the sender and the header changes from the file itself. */
static bool read_request_file(int fd, const struct local_msg *m, struct qf_msg *msg)
{
	char *err = NULL;
	if (qf_read(fd, msg, &err) != 0) {
		log_error("%s: the queue file does not read: %s", m->id, err);
		free(err);
		return false;
	}
	if (memcmp(msg->id, m->id, QUEUE_ID_LEN) != 0 || msg->content_off != m->content_off ||
	    msg->content_len != m->content_len) {
		qf_msg_free(msg);
		return false;
	}
	return true;
}

static enum local_result from_maildir(enum maildir_result res)
{
	switch (res) {
	case MAILDIR_DELIVERED:
		return LOCAL_DELIVERED;
	case MAILDIR_ALREADY:
		return LOCAL_ALREADY;
	case MAILDIR_TEMPFAIL:
		return LOCAL_TEMPFAIL;
	case MAILDIR_PERMFAIL:
		break;
	}
	return LOCAL_PERMFAIL;
}

/* Write one copy of msg (read from the request's file); fills the
 * RESULT reply. */
static void deliver(struct local_agent *a, const struct local_msg *m, int fd,
		    const struct qf_msg *msg, struct local_msg *reply)
{
	char *err = NULL, *newdir = NULL;

	if (!recipients_is_user(a->tables, m->address)) {
		reply->result = LOCAL_PERMFAIL;
		local_set_reason(reply->reason, "5.1.1 unknown user");
		return;
	}
	if (a->folder_count >= LOCAL_FOLDERS_MAX) {
		reply->result = LOCAL_TEMPFAIL;
		local_set_reason(reply->reason, "4.3.0 too many mailboxes in one batch");
		return;
	}
	struct maildir_delivery d = {
		.mail_root = a->cfg->mail_root,
		.hostname = a->cfg->hostname,
		.address = m->address,
		.queue_fd = fd,
		.msg = msg,
		.check_cur = m->check_cur,
		/* each recipient on its own: its quota, its mailbox */
		.quota_bytes = recipients_quota(a->tables, m->address, a->cfg->mailbox_quota),
		.quota_messages = recipients_quota_messages(a->tables, m->address),
		.quota_exempt = quota_sender_exempt(msg->sender, &a->cfg->local_domains),
		.quota_grace = a->cfg->quota_grace.amount,
		.quota_grace_percent = a->cfg->quota_grace.percent,
	};
	reply->result = from_maildir(maildir_deliver_unsynced(&d, &newdir, &err));
	if (newdir != NULL)
		reply->folder = folder_number(a, newdir);
	local_set_reason(reply->reason, err != NULL ? err : "");
	free(err);
}

static int send_reply(struct local_agent *a, const struct local_msg *reply)
{
	if (local_send(a->sock, reply, -1) == 0)
		return 0;
	log_error("cannot answer the queue manager: %s; stopping", strerror(errno));
	return -1;
}

/* fsync each folder of the batch once; report failures; start afresh. */
static int sync_folders(struct local_agent *a, uint32_t seq)
{
	struct local_msg reply = { .type = LOCAL_SYNC_FAIL, .seq = seq };
	uint32_t failed = 0;

	for (size_t i = 0; i < a->folder_count; i++) {
		char *err = NULL;
		if (maildir_sync_dir(a->folders[i], &err) == 0)
			continue;
		log_error("fsync %s failed: %s", a->folders[i], err);
		reply.folder = (uint32_t)(i + 1);
		local_set_reason(reply.reason, err);
		free(err);
		failed++;
		if (send_reply(a, &reply) < 0)
			return -1;
	}
	struct local_msg done = { .type = LOCAL_SYNC_DONE, .seq = seq,
				  .folders = (uint32_t)a->folder_count, .failed = failed };
	folders_clear(a);
	return send_reply(a, &done);
}

/* One request; -1 ends the agent. fd is the descriptor it carried. */
static int serve(struct local_agent *a, const struct local_msg *m, int fd)
{
	if (m->type == LOCAL_HELLO) {
		if (a->lock_fd >= 0) {
			log_error("protocol violation from the queue manager: second HELLO");
			return -1;
		}
		a->lock_fd = fd;
		return 0;
	}
	if (a->lock_fd < 0) {
		log_error("protocol violation from the queue manager: request before HELLO");
		return -1;
	}
	if (m->type == LOCAL_SYNC)
		return sync_folders(a, m->seq);
	struct qf_msg msg;
	if (!read_request_file(fd, m, &msg)) {
		log_error("%s: protocol violation from the queue manager: the queue file "
			  "does not hold the message it names", m->id);
		return -1;
	}
	struct local_msg reply = { .type = LOCAL_RESULT, .seq = m->seq };
	deliver(a, m, fd, &msg, &reply);
	qf_msg_free(&msg);
	log_debug("%s: <%s> result=%d folder=%lu %s", m->id, m->address, (int)reply.result,
		  (unsigned long)reply.folder, reply.reason);
	return send_reply(a, &reply);
}

int local_main(const struct config *cfg, const struct recipient_tables *tables,
	       int sock)
{
	struct local_agent a = { .cfg = cfg, .tables = tables, .sock = sock, .lock_fd = -1 };
	int status = 0;

	log_set_role("local");
	log_info("local delivery agent started: mail_root=%s uid=%lu gid=%lu", cfg->mail_root,
		 (unsigned long)getuid(), (unsigned long)getgid());
	for (;;) {
		struct local_msg m;
		const char *why = NULL;
		int fd = -1;
		int rc = local_recv(sock, true, &m, &fd, &why);
		if (rc == 0)
			break;
		if (rc < 0) {
			if (errno == EPROTO)
				log_error("protocol violation from the queue manager: %s; stopping",
					  why);
			else
				log_error("queue manager socket: %s: %s; stopping", why,
					  strerror(errno));
			status = 1;
			break;
		}
		rc = serve(&a, &m, fd);
		if (fd >= 0 && fd != a.lock_fd)
			close(fd);
		if (rc < 0) {
			status = 1;
			break;
		}
	}
	folders_clear(&a);
	free(a.folders);
	if (a.lock_fd >= 0)
		close(a.lock_fd);
	return status;
}
