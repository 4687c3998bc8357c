/*
 * queue_cli.c - "postern queue list" and "postern queue show ID" (a view
 * of the spool for administrators, text or --json for scripts), and the
 * dispatch of the commands that change it (queue_cli_change.c).
 *
 * RFCs: none. Untrusted input: queue files (validated by qf_read) and the
 * message headers they hold, printed with control characters escaped so
 * a message cannot drive the administrator's terminal; and the spool's
 * folders themselves, which belong to the unprivileged user: an entry may
 * be a symbolic link, a FIFO or a device planted there, so every file is
 * opened without following links and without blocking, and anything but
 * a regular file is refused before it is read. Privilege: run by an
 * administrator as the spool owner or root; only reads.
 */
#include "queue_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/json.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "queue.h"
#include "queue_cli_change.h"
#include "maildir_header.h"
#include "queue_file.h"
#include "spool_cli.h"

#define CLI_HEADERS_MAX (16 * 1024)

static const char *status_word(char status)
{
	switch (status) {
	case QF_RCPT_PENDING:
		return "pending";
	case QF_RCPT_DONE:
		return "done";
	case QF_RCPT_BOUNCED:
		return "bounced";
	case QF_RCPT_REMOVED:
		return "removed";
	default:
		return "?";
	}
}

/* Print a helper's error (if any) as "postern queue: ...", free it. */
static void say(char *err)
{
	if (err != NULL)
		fprintf(stderr, "postern queue: %s\n", err);
	free(err);
}

static int open_folder(const struct config *cfg, const char *folder)
{
	char *err = NULL;
	int fd = spool_cli_open_folder(cfg, folder, &err);
	int saved = errno;

	say(err);
	errno = saved;
	return fd;
}

/* Open and read one queue file; -1 after printing why (errno ENOENT:
 * gone, nothing printed). */
static int load(int dirfd, const char *path, const char *name, int *fd_r,
		struct qf_msg *m)
{
	char *err = NULL;
	int rc = spool_cli_load(dirfd, path, name, fd_r, m, &err);
	int saved = errno;

	say(err);
	errno = saved;
	return rc;
}

/* ---- list ------------------------------------------------------------------ */

/* The folders listed, and the state each stands for. */
static const struct { const char *folder, *state; } listed_folders[] = {
	{ "queue", "queued" }, { "deferred", "deferred" }, { "hold", "held" },
};

/* A message the queue manager is delivering holds its file's lock (as
 * does a commit or another command): "active" then. */
static const char *live_state(int fd, const char *state)
{
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? "active" : state;
	flock(fd, LOCK_UN);
	return state;
}

static void json_time(buf_t *j, const char *key, uint64_t seconds)
{
	char when[40];

	json_put_cstr(j, key);
	buf_putc(j, ':');
	if (seconds == 0) {
		buf_puts(j, "null");
		return;
	}
	spool_cli_format_time(when, sizeof(when), seconds);
	json_put_cstr(j, when);
}

/* One message's JSON fields, without the closing brace (the caller may
 * add its own); with_all: every recipient with its status and DSN
 * request, and the DSN envelope (show). */
static void json_message_fields(buf_t *j, const struct qf_msg *m, const char *state,
				bool with_all)
{
	buf_puts(j, "{\"id\":");
	json_put_cstr(j, m->id);
	buf_puts(j, ",\"state\":");
	json_put_cstr(j, state);
	buf_printf(j, ",\"size\":%llu,", (unsigned long long)qf_message_size(m));
	json_time(j, "arrival", m->arrival_us / 1000000u);
	buf_puts(j, ",\"sender\":");
	json_put_cstr(j, m->sender);
	buf_puts(j, ",\"recipients\":[");
	bool first = true;
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const struct qf_rcpt *r = &m->rcpts[i];
		if (!with_all && r->status != QF_RCPT_PENDING)
			continue;
		buf_puts(j, first ? "" : ",");
		first = false;
		if (!with_all) {
			json_put_cstr(j, r->addr);
			continue;
		}
		buf_puts(j, "{\"address\":");
		json_put_cstr(j, r->addr);
		buf_puts(j, ",\"status\":");
		json_put_cstr(j, status_word(r->status));
		buf_t notify = BUF_INIT;
		dsn_notify_format(r->dsn_notify, &notify);
		buf_puts(j, ",\"notify\":");
		json_put_cstr(j, r->dsn_notify != 0 ? buf_cstr(&notify) : NULL);
		buf_free(&notify);
		buf_puts(j, ",\"orcpt\":");
		json_put_cstr(j, r->dsn_orcpt);
		buf_putc(j, '}');
	}
	buf_printf(j, "],\"attempts\":%lu,", (unsigned long)m->attempts);
	json_time(j, "next_attempt", m->next_try);
	buf_puts(j, ",\"last_error\":");
	json_put_cstr(j, m->reason[0] != '\0' ? m->reason : NULL);
	if (with_all) {
		buf_puts(j, ",\"client\":");
		json_put_cstr(j, m->client_addr);
		buf_puts(j, ",\"helo\":");
		json_put_cstr(j, m->helo);
		buf_puts(j, ",\"protocol\":");
		json_put_cstr(j, m->protocol);
		buf_puts(j, ",\"ret\":");
		json_put_cstr(j, m->dsn_ret == DSN_RET_FULL ? "FULL"
				 : m->dsn_ret == DSN_RET_HDRS ? "HDRS" : NULL);
		buf_puts(j, ",\"envid\":");
		json_put_cstr(j, m->dsn_envid);
		buf_puts(j, ",");
		json_time(j, "delay_warning_sent", m->delay_warned);
	}
}

/* One line for one message, escaped for the terminal. */
static void text_line(const struct qf_msg *m, const char *state)
{
	char when[40];
	buf_t b = BUF_INIT;

	spool_cli_format_time(when, sizeof(when), m->arrival_us / 1000000u);
	buf_printf(&b, "%s  %-8s  %8llu  %s  <%s>  ->", m->id, state,
		   (unsigned long long)qf_message_size(m), when, m->sender);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		if (m->rcpts[i].status == QF_RCPT_PENDING)
			buf_printf(&b, " <%s>", m->rcpts[i].addr);
	}
	if (m->next_try > 0) {
		spool_cli_format_time(when, sizeof(when), m->next_try);
		buf_printf(&b, "  next %s (attempts %lu: %s)", when, (unsigned long)m->attempts,
			   m->reason);
	} else {
		buf_puts(&b, "  next now");
		if (m->attempts > 0)
			buf_printf(&b, " (attempts %lu: %s)", (unsigned long)m->attempts, m->reason);
	}
	buf_putc(&b, '\n');
	spool_cli_put_escaped(stdout, buf_cstr(&b), b.len);
	buf_free(&b);
}

/* One entry: 0, -1 if it could not be read (why is on stderr), 1 (no
 * line) for a message that left the folder since it was read. */
static int list_one(int dirfd, const char *path, const char *id, const char *state,
		    buf_t *json)
{
	struct qf_msg m;
	int fd;

	if (load(dirfd, path, id, &fd, &m) < 0) {
		if (errno == ENOENT)
			return 1;
		if (json == NULL)
			printf("%s  %-8s  (unreadable)\n", id, state);
		return -1;
	}
	state = live_state(fd, state);
	close(fd);
	if (json != NULL) {
		if (json->len > 0)
			buf_putc(json, ',');
		json_message_fields(json, &m, state, false);
		buf_putc(json, '}');
	} else {
		text_line(&m, state);
	}
	qf_msg_free(&m);
	return 0;
}

/* List one folder; -1 if it or one of its entries could not be read. */
static int list_folder(const struct config *cfg, const char *folder, const char *state,
		       size_t *count_r, buf_t *json)
{
	char *dir = safeio_path_join(cfg->spool_dir, folder);
	strlist_t ids = { NULL, 0 };
	int dirfd = open_folder(cfg, folder);
	char *err = NULL;
	int rc = dirfd >= 0 ? spool_cli_folder_ids(dirfd, dir, &ids, &err) : -1;
	size_t listed = 0;

	if (dirfd < 0 && errno == ENOENT)
		rc = 0; /* never created: nothing there */
	say(err);
	for (size_t i = 0; dirfd >= 0 && i < ids.count; i++) {
		char *path = safeio_path_join(dir, ids.items[i]);
		int one = list_one(dirfd, path, ids.items[i], state, json);
		if (one < 0)
			rc = -1;
		if (one <= 0)
			listed++;
		free(path);
	}
	if (dirfd >= 0)
		close(dirfd);
	*count_r = listed;
	strlist_free(&ids);
	free(dir);
	return rc;
}

static int cmd_list(const struct config *cfg, bool json)
{
	size_t counts[3] = { 0, 0, 0 }, total = 0;
	buf_t items = BUF_INIT;
	int rc = 0;

	if (!json)
		printf("%-19s  %-8s  %8s  %-20s  %s\n", "ID", "STATE", "SIZE", "ARRIVAL",
		       "SENDER -> PENDING RECIPIENTS, NEXT ATTEMPT (ATTEMPTS: LAST ERROR)");
	for (size_t i = 0; i < 3; i++) {
		if (list_folder(cfg, listed_folders[i].folder, listed_folders[i].state, &counts[i],
				json ? &items : NULL) < 0)
			rc = -1;
		total += counts[i];
	}
	if (json)
		printf("{\"count\":%zu,\"messages\":[%s]}\n", total, buf_cstr(&items));
	else
		printf("%zu message%s (%zu in queue, %zu deferred, %zu held)\n", total,
		       total == 1 ? "" : "s", counts[0], counts[1], counts[2]);
	buf_free(&items);
	return rc == 0 ? 0 : 1;
}

/* ---- show ------------------------------------------------------------------ */

/* The header changes of the trailer, in file order, one line each. */
static void show_changes(buf_t *b, const struct qf_msg *m)
{
	for (size_t i = 0; i < m->edit_count; i++) {
		const struct qf_header_edit *e = &m->edits[i];
		switch (e->type) {
		case QF_REC_ADD_HEADER:
			buf_printf(b, "header_add_%s: %s\n",
				   e->where == QF_HEADER_TOP ? "top" : "end", e->text);
			break;
		case QF_REC_DEL_HEADER:
			if (e->where == 0)
				buf_printf(b, "header_remove: %s (every one)\n", e->text);
			else
				buf_printf(b, "header_remove: %s (occurrence %lu)\n", e->text,
					   (unsigned long)e->where);
			break;
		case QF_REC_INSERT_HEADER:
			buf_printf(b, "header_insert: at %lu: %s\n", (unsigned long)e->where, e->text);
			break;
		case QF_REC_CHANGE_HEADER:
			if (e->field != NULL)
				buf_printf(b, "header_change: %s (occurrence %lu): %s\n", e->text,
					   (unsigned long)e->where, e->field);
			else
				buf_printf(b, "header_delete: %s (occurrence %lu)\n", e->text,
					   (unsigned long)e->where);
			break;
		default:
			break;
		}
	}
}

static void show_envelope(const struct qf_msg *m)
{
	char when[40];
	buf_t b = BUF_INIT;

	buf_printf(&b, "version: %lu\nqueue_id: %s\n", (unsigned long)m->version, m->id);
	spool_cli_format_time(when, sizeof(when), m->arrival_us / 1000000u);
	buf_printf(&b, "arrival: %s (%llu us)\n", when, (unsigned long long)m->arrival_us);
	buf_printf(&b, "client_addr: %s\nhelo: %s\nprotocol: %s\n", m->client_addr, m->helo,
		   m->protocol);
	buf_printf(&b, "smtputf8: %s\n8bitmime: %s\n", m->smtputf8 ? "yes" : "no",
		   m->body_8bitmime ? "yes" : "no");
	buf_printf(&b, "sender: <%s>\n", m->sender);
	if (m->origin != QUEUE_ORIGIN_MAIL)
		buf_printf(&b, "origin: %s\n", m->origin == QUEUE_ORIGIN_NOTICE
							? "report or notice (from postern)"
							: "double bounce (from postern)");
	if (m->dsn_ret != DSN_RET_UNSPECIFIED)
		buf_printf(&b, "dsn_ret: %s\n", m->dsn_ret == DSN_RET_FULL ? "FULL" : "HDRS");
	if (m->dsn_envid != NULL)
		buf_printf(&b, "dsn_envid: %s\n", m->dsn_envid);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const struct qf_rcpt *r = &m->rcpts[i];
		buf_printf(&b, "recipient: <%s> %s", r->addr, status_word(r->status));
		if (r->dsn_notify != 0) {
			buf_puts(&b, " notify=");
			dsn_notify_format(r->dsn_notify, &b);
		}
		if (r->dsn_orcpt != NULL)
			buf_printf(&b, " orcpt=%s", r->dsn_orcpt);
		buf_putc(&b, '\n');
	}
	buf_printf(&b, "attempts: %lu\n", (unsigned long)m->attempts);
	if (m->next_try > 0)
		spool_cli_format_time(when, sizeof(when), m->next_try);
	buf_printf(&b, "next_attempt: %s\n", m->next_try > 0 ? when : "now");
	buf_printf(&b, "last_reason: %s\n", m->reason);
	if (m->delay_warned != 0) {
		spool_cli_format_time(when, sizeof(when), m->delay_warned);
		buf_printf(&b, "delay_warning_sent: %s\n", when);
	}
	if (m->note.verdict != 0) {
		buf_printf(&b, "held_by: %s\n", m->note.verdict == QF_NOTE_HOLD ? "hold" : "quarantine");
		buf_printf(&b, "held_check: %s\nheld_reason: %s\nheld_text: %s\n", m->note.check,
			   m->note.reason, m->note.text);
		for (size_t i = 0; i < m->note.hits.count; i++)
			buf_printf(&b, "held_hit: %s\n", m->note.hits.items[i]);
	}
	show_changes(&b, m);
	buf_printf(&b, "content_length: %llu\ncontent_offset: %llu\n",
		   (unsigned long long)m->content_len, (unsigned long long)m->content_off);
	if (m->body_replaced)
		buf_printf(&b, "body_replaced: %llu bytes at offset %llu\n",
			   (unsigned long long)m->body_len, (unsigned long long)m->body_off);
	buf_printf(&b, "message_size: %llu\nfile_size: %llu\n",
		   (unsigned long long)qf_message_size(m), (unsigned long long)m->file_size);
	spool_cli_put_escaped(stdout, buf_cstr(&b), b.len);
	buf_free(&b);
}

/* The envelope and first header lines of the open queue file fd. */
static int show_file(int fd, const char *path, const char *state, struct qf_msg *m, bool json)
{
	buf_t headers = BUF_INIT;
	char *err = NULL;
	int rc = 0;

	/* as they will be delivered: the changes applied */
	if (mhdr_read_message(fd, m, true, CLI_HEADERS_MAX, &headers, &err) < 0) {
		fprintf(stderr, "postern queue show: %s\n", err);
		free(err);
		rc = -1;
	}
	if (json) {
		buf_t j = BUF_INIT;
		json_message_fields(&j, m, state, true);
		buf_puts(&j, ",\"file\":");
		json_put_cstr(&j, path);
		buf_puts(&j, ",\"headers\":");
		json_put_string(&j, headers.data != NULL ? headers.data : "", headers.len);
		buf_puts(&j, "}\n");
		fwrite(j.data, 1, j.len, stdout);
		buf_free(&j);
	} else {
		buf_t b = BUF_INIT;
		buf_printf(&b, "file: %s\nstate: %s\n", path, state);
		spool_cli_put_escaped(stdout, buf_cstr(&b), b.len);
		buf_free(&b);
		show_envelope(m);
		printf("\n");
		spool_cli_put_escaped(stdout, buf_cstr(&headers), headers.len);
	}
	buf_free(&headers);
	return rc;
}

static int cmd_show(const struct config *cfg, const char *id, bool json)
{
	static const char *const folders[] = { "queue", "deferred", "incoming",
					       "hold", "quarantine", "corrupt" };

	if (!queue_id_valid(id)) {
		fprintf(stderr, "postern queue show: \"%s\" is not a queue id\n", id);
		return 2;
	}
	for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
		int dirfd = open_folder(cfg, folders[i]);
		if (dirfd < 0)
			continue;
		char *dir = safeio_path_join(cfg->spool_dir, folders[i]);
		char *path = safeio_path_join(dir, id);
		struct qf_msg m;
		int fd = -1;
		int rc = load(dirfd, path, id, &fd, &m);
		bool gone = rc < 0 && errno == ENOENT;
		if (rc == 0) {
			const char *state = strcmp(folders[i], "queue") == 0      ? "queued"
					    : strcmp(folders[i], "hold") == 0     ? "held"
					    : strcmp(folders[i], "incoming") == 0 ? "receiving"
										  : folders[i];
			rc = show_file(fd, path, live_state(fd, state), &m, json);
			qf_msg_free(&m);
			close(fd);
		}
		close(dirfd);
		free(dir);
		free(path);
		if (!gone)
			return rc == 0 ? 0 : 1;
	}
	fprintf(stderr, "postern queue show: no message %s in %s\n", id, cfg->spool_dir);
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: postern queue list [--json]\n"
		"       postern queue show QUEUE-ID [--json]\n"
		"       postern queue flush [QUEUE-ID...] [--json]\n"
		"       postern queue requeue [QUEUE-ID...] [--json]\n"
		"       postern queue hold QUEUE-ID... [--json]\n"
		"       postern queue release QUEUE-ID... [--json]\n"
		"       postern queue delete QUEUE-ID...|--all [--json]\n");
	return 2;
}

int queue_cli_main(int argc, char **argv, const struct config *cfg)
{
	bool json = false;
	char **words = xcalloc((size_t)argc + 1, sizeof(*words));
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (!(i == 0 && strcmp(argv[i], "queue") == 0))
			words[n++] = argv[i];
	}
	int rc;
	if (n == 1 && strcmp(words[0], "list") == 0)
		rc = cmd_list(cfg, json);
	else if (n == 2 && strcmp(words[0], "show") == 0)
		rc = cmd_show(cfg, words[1], json);
	else if (n >= 1 && queue_cli_change_known(words[0]))
		rc = queue_cli_change(cfg, words[0], n - 1, words + 1, json);
	else
		rc = usage();
	free(words);
	return rc;
}
