/*
 * queue_cli.c - "postern queue list" and "postern queue show ID": a
 * read-only view of the spool for administrators (Postfix's mailq and
 * postcat, in one command).
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
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "queue.h"
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

/* One line for one entry: 0, or -1 if it could not be read (why is on
 * stderr); 1 (no line) for a message delivered since the folder was read. */
static int list_one(int dirfd, const char *path, const char *id, const char *state)
{
	struct qf_msg m;
	int fd;
	char when[40];

	if (load(dirfd, path, id, &fd, &m) < 0) {
		if (errno == ENOENT)
			return 1;
		printf("%s  %-8s  (unreadable)\n", id, state);
		return -1;
	}
	close(fd);
	printf("%s  %-8s  %8llu  <%s>  ->", id, state,
	       (unsigned long long)m.content_len, m.sender);
	for (size_t i = 0; i < m.rcpt_count; i++) {
		if (m.rcpts[i].status == QF_RCPT_PENDING)
			printf(" <%s>", m.rcpts[i].addr);
	}
	if (m.next_try > 0) {
		spool_cli_format_time(when, sizeof(when), m.next_try);
		printf("  next %s (attempts %lu: %s)", when, (unsigned long)m.attempts,
		       m.reason);
	} else {
		printf("  next now");
	}
	printf("\n");
	qf_msg_free(&m);
	return 0;
}

/* List one folder; -1 if it or one of its entries could not be read. */
static int list_folder(const struct config *cfg, const char *folder,
		       size_t *count_r)
{
	char *dir = safeio_path_join(cfg->spool_dir, folder);
	strlist_t ids = { NULL, 0 };
	int dirfd = open_folder(cfg, folder);
	char *err = NULL;
	int rc = dirfd >= 0 ? spool_cli_folder_ids(dirfd, dir, &ids, &err) : -1;
	say(err);
	size_t listed = 0;

	for (size_t i = 0; dirfd >= 0 && i < ids.count; i++) {
		char *path = safeio_path_join(dir, ids.items[i]);
		int one = list_one(dirfd, path, ids.items[i], folder);
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

static int cmd_list(const struct config *cfg)
{
	size_t nq = 0, nd = 0;

	printf("%-19s  %-8s  %8s  %s\n", "ID", "STATE", "SIZE",
	       "SENDER -> PENDING RECIPIENTS, NEXT ATTEMPT");
	int rc = list_folder(cfg, "queue", &nq);
	if (list_folder(cfg, "deferred", &nd) < 0)
		rc = -1;
	printf("%zu message%s (%zu in queue, %zu deferred)\n", nq + nd,
	       nq + nd == 1 ? "" : "s", nq, nd);
	return rc == 0 ? 0 : 1;
}

/* ---- show ------------------------------------------------------------------ */

static void show_envelope(const struct qf_msg *m)
{
	char when[40];

	printf("version: %lu\nqueue_id: %s\n", (unsigned long)m->version, m->id);
	spool_cli_format_time(when, sizeof(when), m->arrival_us / 1000000u);
	printf("arrival: %s (%llu us)\n", when, (unsigned long long)m->arrival_us);
	printf("client_addr: %s\nhelo: %s\nprotocol: %s\n", m->client_addr,
	       m->helo, m->protocol);
	printf("smtputf8: %s\n8bitmime: %s\n", m->smtputf8 ? "yes" : "no",
	       m->body_8bitmime ? "yes" : "no");
	printf("sender: <%s>\n", m->sender);
	for (size_t i = 0; i < m->rcpt_count; i++)
		printf("recipient: <%s> %s\n", m->rcpts[i].addr,
		       status_word(m->rcpts[i].status));
	printf("attempts: %lu\n", (unsigned long)m->attempts);
	if (m->next_try > 0)
		spool_cli_format_time(when, sizeof(when), m->next_try);
	printf("next_attempt: %s\n", m->next_try > 0 ? when : "now");
	printf("last_reason: %s\n", m->reason);
	if (m->note.verdict != 0) {
		printf("held_by: %s\n", m->note.verdict == QF_NOTE_HOLD ? "hold" : "quarantine");
		printf("held_check: %s\nheld_reason: %s\nheld_text: %s\n", m->note.check,
		       m->note.reason, m->note.text);
		for (size_t i = 0; i < m->note.hits.count; i++)
			printf("held_hit: %s\n", m->note.hits.items[i]);
	}
	printf("content_length: %llu\ncontent_offset: %llu\nfile_size: %llu\n",
	       (unsigned long long)m->content_len,
	       (unsigned long long)m->content_off,
	       (unsigned long long)m->file_size);
}

/* The envelope and first header lines of the open queue file fd. */
static int show_file(int fd, const char *path, const char *state, struct qf_msg *m)
{
	buf_t headers = BUF_INIT;
	char *err = NULL;
	int rc = 0;

	printf("file: %s\nstate: %s\n", path, state);
	show_envelope(m);
	printf("\n");
	if (qf_read_headers(fd, m, CLI_HEADERS_MAX, &headers, &err) < 0) {
		fprintf(stderr, "postern queue show: %s\n", err);
		free(err);
		rc = -1;
	}
	spool_cli_put_escaped(stdout, buf_cstr(&headers), headers.len);
	buf_free(&headers);
	return rc;
}

static int cmd_show(const struct config *cfg, const char *id)
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
			rc = show_file(fd, path, folders[i], &m);
			qf_msg_free(&m);
			close(fd);
		}
		close(dirfd);
		free(dir);
		free(path);
		if (!gone)
			return rc == 0 ? 0 : 1;
	}
	fprintf(stderr, "postern queue show: no message %s in %s\n", id,
		cfg->spool_dir);
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: postern queue list\n"
			"       postern queue show QUEUE-ID\n");
	return 2;
}

int queue_cli_main(int argc, char **argv, const struct config *cfg)
{
	if (argc > 0 && strcmp(argv[0], "queue") == 0) {
		argc--;
		argv++;
	}
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return cmd_list(cfg);
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return cmd_show(cfg, argv[1]);
	return usage();
}
