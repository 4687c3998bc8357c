/*
 * quarantine_cli.c - "postern quarantine|hold list|show|release|delete"
 * (see quarantine_cli.h).
 *
 * Release is a rename of quarantine/ID (or hold/ID) into queue/ID, made
 * durable (fsync of queue/, then of the folder it left) while the file's
 * lock is held, so that neither a commit still in progress nor the queue
 * manager's retention nor a second command can act on it meanwhile; then
 * a record on the queue manager's wake-up FIFO (queue_wake) starts its
 * delivery at once. Without a queue manager the message waits for the
 * next one's start-up scan. A released message is delivered like any
 * other: the checks that held it ran during the SMTP dialogue, and
 * delivery runs none, so it needs no exemption. Delete takes the same
 * lock and removes the file.
 *
 * RFCs: none. Untrusted input: spool entries and queue files (see
 * spool_cli.h), message headers (printed escaped). Privilege: root or
 * the spool owner; nothing is created, owners never change.
 */
#include "quarantine_cli.h"

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
#include "maildir_header.h"
#include "queue_file.h"
#include "spool_cli.h"

#define SHOW_HEADERS_MAX (64 * 1024)
#define LIST_HEADERS_MAX (16 * 1024)
#define SUBJECT_MAX 200

struct qcli {
	const struct config *cfg;
	const char *folder;   /* "quarantine" or "hold": also the command */
	bool json;
	buf_t doc;            /* the JSON document being built */
	int status;           /* exit status so far */
};

/* A problem: on stderr now, and in the JSON document's errors. */
static void problem(struct qcli *c, buf_t *errors, const char *id, char *err)
{
	fprintf(stderr, "postern %s: %s\n", c->folder, err);
	if (c->json && errors != NULL) {
		buf_puts(errors, errors->len > 0 ? ",{\"id\":" : "{\"id\":");
		json_put_cstr(errors, id);
		buf_puts(errors, ",\"error\":");
		json_put_cstr(errors, err);
		buf_putc(errors, '}');
	}
	free(err);
	c->status = 1;
}

/* When the entry arrived (its id) plus quarantine_retention; 0 = never. */
static uint64_t expires_at(const struct qcli *c, const char *id)
{
	uint64_t keep = c->cfg->quarantine_retention;
	if (strcmp(c->folder, "quarantine") != 0 || keep == 0)
		return 0;
	return queue_id_time_us(id) / 1000000u + keep;
}

/* The reason to show: the note's text, else its reason key. */
static const char *note_reason(const struct qf_msg *m)
{
	if (m->note.verdict == 0)
		return "(no reason recorded)";
	return m->note.text[0] != '\0' ? m->note.text : m->note.reason;
}

/* The Subject: field of the open file (raw, unfolded), into subject. */
static void read_subject(int fd, const struct qf_msg *m, size_t max, buf_t *headers,
			 buf_t *subject)
{
	char *err = NULL;
	/* as they will be delivered: the end of the message's changes applied */
	if (mhdr_read_message(fd, m, true, max, headers, &err) < 0) {
		free(err);
		return;
	}
	qf_header_value(headers->data != NULL ? headers->data : "", headers->len, "Subject",
			SUBJECT_MAX, subject);
}

/* ---- JSON of one message ------------------------------------------------------ */

static void json_key(buf_t *j, const char *key)
{
	json_put_cstr(j, key);
	buf_putc(j, ':');
}

static void json_time(buf_t *j, const char *key, uint64_t seconds)
{
	char when[40];
	json_key(j, key);
	if (seconds == 0) {
		buf_puts(j, "null");
		return;
	}
	spool_cli_format_time(when, sizeof(when), seconds);
	json_put_cstr(j, when);
}

static void json_message(const struct qcli *c, buf_t *j, const struct qf_msg *m,
			 const buf_t *subject, const buf_t *headers)
{
	buf_puts(j, "{");
	json_key(j, "id");
	json_put_cstr(j, m->id);
	buf_putc(j, ',');
	json_time(j, "arrival", m->arrival_us / 1000000u);
	buf_printf(j, ",\"arrival_us\":%llu,\"size\":%llu,", (unsigned long long)m->arrival_us,
		   (unsigned long long)qf_message_size(m));
	json_key(j, "sender");
	json_put_cstr(j, m->sender);
	buf_puts(j, ",\"recipients\":[");
	bool first = true;
	for (size_t i = 0; i < m->rcpt_count; i++) {
		if (m->rcpts[i].status == QF_RCPT_REMOVED)
			continue;
		if (!first)
			buf_putc(j, ',');
		json_put_cstr(j, m->rcpts[i].addr);
		first = false;
	}
	buf_puts(j, "],\"client\":");
	json_put_cstr(j, m->client_addr);
	buf_puts(j, ",\"helo\":");
	json_put_cstr(j, m->helo);
	buf_puts(j, ",\"subject\":");
	if (subject->len > 0 || headers != NULL)
		json_put_string(j, subject->data != NULL ? subject->data : "", subject->len);
	else
		buf_puts(j, "null");
	buf_puts(j, ",\"verdict\":");
	json_put_cstr(j, m->note.verdict == 0 ? NULL
			 : m->note.verdict == QF_NOTE_HOLD ? "hold" : "quarantine");
	buf_puts(j, ",\"check\":");
	json_put_cstr(j, m->note.check);
	buf_puts(j, ",\"reason\":");
	json_put_cstr(j, m->note.reason);
	buf_puts(j, ",\"text\":");
	json_put_cstr(j, m->note.text);
	buf_puts(j, ",\"hits\":[");
	for (size_t i = 0; i < m->note.hits.count; i++) {
		if (i > 0)
			buf_putc(j, ',');
		json_put_cstr(j, m->note.hits.items[i]);
	}
	buf_puts(j, "],");
	json_time(j, "expires", expires_at(c, m->id));
	if (headers != NULL) {
		buf_puts(j, ",\"headers\":");
		json_put_string(j, headers->data != NULL ? headers->data : "", headers->len);
	}
	buf_putc(j, '}');
}

/* ---- list ------------------------------------------------------------------------ */

/* Print what b holds through the terminal-safe escaping, then empty it. */
static void put_text(buf_t *b)
{
	spool_cli_put_escaped(stdout, buf_cstr(b), b->len);
	buf_reset(b);
}

static void text_line(const struct qf_msg *m)
{
	char when[40];
	buf_t b = BUF_INIT;
	spool_cli_format_time(when, sizeof(when), m->arrival_us / 1000000u);
	buf_printf(&b, "%s  %-20s  %8llu  <%s> ->", m->id, when,
		   (unsigned long long)qf_message_size(m), m->sender);
	for (size_t i = 0; i < m->rcpt_count; i++)
		if (m->rcpts[i].status != QF_RCPT_REMOVED)
			buf_printf(&b, " <%s>", m->rcpts[i].addr);
	buf_printf(&b, "  %s", note_reason(m));
	if (m->note.verdict != 0 && m->note.check[0] != '\0')
		buf_printf(&b, " (%s)", m->note.check);
	buf_putc(&b, '\n');
	put_text(&b);
	buf_free(&b);
}

/* One entry of the list; false if it is gone (released meanwhile). */
static bool list_one(struct qcli *c, int dirfd, const char *dir, const char *id,
		     buf_t *items, buf_t *errors)
{
	char *path = safeio_path_join(dir, id), *err = NULL;
	struct qf_msg m;
	int fd;
	bool listed = true;

	if (spool_cli_load(dirfd, path, id, &fd, &m, &err) < 0) {
		listed = err != NULL;
		if (listed) {
			problem(c, errors, id, err);
			if (!c->json)
				printf("%s  (unreadable)\n", id);
		}
		free(path);
		return listed;
	}
	buf_t headers = BUF_INIT, subject = BUF_INIT;
	if (c->json) {
		read_subject(fd, &m, LIST_HEADERS_MAX, &headers, &subject);
		if (items->len > 0)
			buf_putc(items, ',');
		json_message(c, items, &m, &subject, NULL);
	} else {
		text_line(&m);
	}
	close(fd);
	qf_msg_free(&m);
	buf_free(&headers);
	buf_free(&subject);
	free(path);
	return true;
}

/* Open the command's folder; -1 after a problem was reported. */
static int open_own_folder(struct qcli *c, buf_t *errors)
{
	char *err = NULL;
	int dirfd = spool_cli_open_folder(c->cfg, c->folder, &err);
	if (dirfd < 0) {
		if (err == NULL)
			err = qf_errf("%s/%s: no such folder (has postern serve run with this "
				      "spool_dir?)", c->cfg->spool_dir, c->folder);
		problem(c, errors, NULL, err);
	}
	return dirfd;
}

static void cmd_list(struct qcli *c)
{
	char *dir = safeio_path_join(c->cfg->spool_dir, c->folder), *err = NULL;
	buf_t items = BUF_INIT, errors = BUF_INIT;
	strlist_t ids = { NULL, 0 };
	size_t count = 0;
	int dirfd = open_own_folder(c, &errors);

	if (dirfd >= 0 && spool_cli_folder_ids(dirfd, dir, &ids, &err) < 0)
		problem(c, &errors, NULL, err);
	if (!c->json)
		printf("%-19s  %-20s  %8s  %s\n", "ID", "ARRIVAL", "SIZE",
		       "SENDER -> RECIPIENTS  REASON (CHECK)");
	for (size_t i = 0; dirfd >= 0 && i < ids.count; i++)
		count += list_one(c, dirfd, dir, ids.items[i], &items, &errors);
	if (c->json) {
		buf_puts(&c->doc, "{\"folder\":");
		json_put_cstr(&c->doc, c->folder);
		buf_printf(&c->doc, ",\"count\":%zu,\"messages\":[%s],\"errors\":[%s]}\n", count,
			   buf_cstr(&items), buf_cstr(&errors));
	} else {
		printf("%zu message%s in %s\n", count, count == 1 ? "" : "s", c->folder);
	}
	if (dirfd >= 0)
		close(dirfd);
	strlist_free(&ids);
	buf_free(&items);
	buf_free(&errors);
	free(dir);
}

/* ---- show ------------------------------------------------------------------------ */

static void text_show(const struct qcli *c, const char *path, const struct qf_msg *m,
		      const buf_t *subject, const buf_t *headers)
{
	char when[40];
	buf_t b = BUF_INIT;
	buf_printf(&b, "file: %s\nfolder: %s\nqueue_id: %s\n", path, c->folder, m->id);
	spool_cli_format_time(when, sizeof(when), m->arrival_us / 1000000u);
	buf_printf(&b, "arrival: %s\nclient_addr: %s\nhelo: %s\nprotocol: %s\nsender: <%s>\n",
		   when, m->client_addr, m->helo, m->protocol, m->sender);
	for (size_t i = 0; i < m->rcpt_count; i++)
		if (m->rcpts[i].status != QF_RCPT_REMOVED)
			buf_printf(&b, "recipient: <%s>\n", m->rcpts[i].addr);
	buf_printf(&b, "size: %llu\nsubject: %s\n", (unsigned long long)qf_message_size(m),
		   buf_cstr(subject));
	if (m->note.verdict != 0) {
		buf_printf(&b, "verdict: %s\ncheck: %s\nreason: %s\ntext: %s\n",
			   m->note.verdict == QF_NOTE_HOLD ? "hold" : "quarantine", m->note.check,
			   m->note.reason, m->note.text);
		for (size_t i = 0; i < m->note.hits.count; i++)
			buf_printf(&b, "hit: %s\n", m->note.hits.items[i]);
	} else {
		buf_printf(&b, "reason: %s\n", note_reason(m));
	}
	uint64_t expires = expires_at(c, m->id);
	if (expires > 0)
		spool_cli_format_time(when, sizeof(when), expires);
	buf_printf(&b, "expires: %s\n\n", expires > 0 ? when : "never");
	put_text(&b);
	buf_free(&b);
	spool_cli_put_escaped(stdout, buf_cstr(headers), headers->len);
}

static void cmd_show(struct qcli *c, const char *id)
{
	buf_t errors = BUF_INIT;
	int dirfd = open_own_folder(c, &errors);
	char *dir = safeio_path_join(c->cfg->spool_dir, c->folder);
	char *path = safeio_path_join(dir, id), *err = NULL;
	struct qf_msg m;
	int fd = -1;

	if (dirfd >= 0 && spool_cli_load(dirfd, path, id, &fd, &m, &err) == 0) {
		buf_t headers = BUF_INIT, subject = BUF_INIT;
		read_subject(fd, &m, SHOW_HEADERS_MAX, &headers, &subject);
		if (c->json) {
			json_message(c, &c->doc, &m, &subject, &headers);
			buf_putc(&c->doc, '\n');
		} else {
			text_show(c, path, &m, &subject, &headers);
		}
		buf_free(&headers);
		buf_free(&subject);
		qf_msg_free(&m);
		close(fd);
	} else if (dirfd >= 0) {
		if (err == NULL)
			err = qf_errf("no message %s in %s", id, dir);
		problem(c, &errors, id, err);
	}
	if (c->json && c->status != 0)
		buf_printf(&c->doc, "{\"errors\":[%s]}\n", buf_cstr(&errors));
	if (dirfd >= 0)
		close(dirfd);
	buf_free(&errors);
	free(path);
	free(dir);
}

/* ---- release and delete ------------------------------------------------------------ */

/* Move id into queue/; 0, or -1 with a malloc'ed *err_r. *moved_r says
 * whether the file is in queue/ (even if a later fsync failed). */
static int release_one(struct qcli *c, const char *dir, int dirfd, int queue_fd,
		       const char *id, bool *moved_r, char **err_r)
{
	struct qf_msg m;
	char *err = NULL;
	int fd = spool_cli_take_entry(dir, dirfd, id, err_r);

	*moved_r = false;
	if (fd < 0)
		return -1;
	int rc = qf_read(fd, &m, &err);
	if (rc == 0 && strcmp(m.id, id) != 0) {
		*err_r = qf_errf("%s/%s: its id record says %s: not released", dir, id, m.id);
		qf_msg_free(&m);
		close(fd);
		return -1;
	}
	if (rc != 0) {
		*err_r = qf_errf("%s/%s: not a valid queue file (%s): not released "
				 "(\"postern %s delete %s\" removes it)", dir, id, err, c->folder, id);
		free(err);
		close(fd);
		return -1;
	}
	qf_msg_free(&m);
	if (spool_cli_rename_noreplace(dirfd, queue_fd, id) < 0) {
		*err_r = qf_errf("rename %s/%s into queue/: %s", dir, id,
				 errno == EEXIST ? "queue/ already has a message of that id"
						 : strerror(errno));
		close(fd);
		return -1;
	}
	*moved_r = true;
	/* Durable in queue/ first, then gone from where it was. */
	rc = 0;
	if (fsync(queue_fd) < 0 || fsync(dirfd) < 0) {
		*err_r = qf_errf("%s: moved into queue/, but not made durable (fsync: %s): a "
				 "crash now may put it back in %s/", id, strerror(errno), c->folder);
		rc = -1;
	}
	close(fd); /* the lock goes: the queue manager may start on it */
	return rc;
}

static int delete_one(const char *dir, int dirfd, const char *id, char **err_r)
{
	int fd = spool_cli_take_entry(dir, dirfd, id, err_r);
	if (fd < 0)
		return -1;
	int rc = unlinkat(dirfd, id, 0);
	if (rc < 0)
		*err_r = qf_errf("remove %s/%s: %s", dir, id, strerror(errno));
	else if (fsync(dirfd) < 0)
		*err_r = qf_errf("%s: removed, but not made durable (fsync %s: %s)", id, dir,
				 strerror(errno));
	close(fd);
	return rc < 0 || *err_r != NULL ? -1 : 0;
}

/* told: whether the queue manager was told of a release; -1 for a
 * delete or a release that did not happen. */
static void json_result(buf_t *results, const char *id, bool done, int told,
			const char *err)
{
	if (results->len > 0)
		buf_putc(results, ',');
	buf_puts(results, "{\"id\":");
	json_put_cstr(results, id);
	buf_printf(results, ",\"done\":%s", done ? "true" : "false");
	if (told >= 0)
		buf_printf(results, ",\"queue_manager_told\":%s", told > 0 ? "true" : "false");
	buf_puts(results, ",\"error\":");
	json_put_cstr(results, err);
	buf_putc(results, '}');
}

static void cmd_change(struct qcli *c, bool release, int count, char **ids)
{
	char *dir = safeio_path_join(c->cfg->spool_dir, c->folder), *err = NULL;
	buf_t results = BUF_INIT, errors = BUF_INIT;
	int dirfd = open_own_folder(c, &errors);
	int queue_fd = -1;

	if (dirfd >= 0 && release) {
		queue_fd = spool_cli_open_folder(c->cfg, "queue", &err);
		if (queue_fd < 0)
			problem(c, &errors, NULL, err != NULL ? err
					: qf_errf("%s/queue: no such folder", c->cfg->spool_dir));
	}
	for (int i = 0; dirfd >= 0 && (!release || queue_fd >= 0) && i < count; i++) {
		const char *id = ids[i];
		bool moved = false, told = false;
		err = NULL;
		int rc = release ? release_one(c, dir, dirfd, queue_fd, id, &moved, &err)
				 : delete_one(dir, dirfd, id, &err);
		bool done = rc == 0 || moved;
		if (moved)
			told = queue_wake(c->cfg->spool_dir, id) == 0;
		if (c->json)
			json_result(&results, id, done, release && moved ? told : -1, err);
		else if (done && release)
			printf("%s: released into the queue (%s)\n", id,
			       told ? "the queue manager starts its delivery now"
				    : "no queue manager answered: it is delivered after the next "
				      "queue scan or start");
		else if (done)
			printf("%s: deleted\n", id);
		if (err != NULL) {
			fprintf(stderr, "postern %s %s: %s\n", c->folder,
				release ? "release" : "delete", err);
			c->status = 1;
		}
		free(err);
	}
	if (c->json) {
		buf_printf(&c->doc, "{\"command\":\"%s\",\"folder\":", release ? "release" : "delete");
		json_put_cstr(&c->doc, c->folder);
		buf_printf(&c->doc, ",\"results\":[%s],\"errors\":[%s]}\n", buf_cstr(&results),
			   buf_cstr(&errors));
	}
	if (queue_fd >= 0)
		close(queue_fd);
	if (dirfd >= 0)
		close(dirfd);
	buf_free(&results);
	buf_free(&errors);
	free(dir);
}

/* ---- dispatch ----------------------------------------------------------------------- */

static int usage(const char *folder)
{
	fprintf(stderr, "usage: postern %s list [--json]\n"
			"       postern %s show QUEUE-ID [--json]\n"
			"       postern %s release QUEUE-ID... [--json]\n"
			"       postern %s delete QUEUE-ID... [--json]\n",
		folder, folder, folder, folder);
	return 2;
}

int quarantine_cli_main(const char *folder, int argc, char **argv, const struct config *cfg)
{
	struct qcli c = { cfg, folder, false, BUF_INIT, 0 };
	char **words = xcalloc(argc > 0 ? (size_t)argc : 1, sizeof(*words));
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			c.json = true;
		else if (argv[i][0] == '-' || (n > 0 && !queue_id_valid(argv[i]))) {
			if (n > 0 && argv[i][0] != '-')
				fprintf(stderr, "postern %s: \"%s\" is not a queue id\n", folder,
					argv[i]);
			free(words);
			return usage(folder);
		} else {
			words[n++] = argv[i];
		}
	}
	const char *sub = n > 0 ? words[0] : "";
	if (strcmp(sub, "list") == 0 && n == 1)
		cmd_list(&c);
	else if (strcmp(sub, "show") == 0 && n == 2)
		cmd_show(&c, words[1]);
	else if ((strcmp(sub, "release") == 0 || strcmp(sub, "delete") == 0) && n >= 2)
		cmd_change(&c, sub[0] == 'r', n - 1, words + 1);
	else
		c.status = usage(folder);
	if (c.json && c.doc.len > 0)
		fwrite(c.doc.data, 1, c.doc.len, stdout);
	buf_free(&c.doc);
	free(words);
	return c.status;
}
