/*
 * queue_cli.c - "postern queue list" and "postern queue show ID": a
 * read-only view of the spool for administrators (Postfix's mailq and
 * postcat, in one command).
 *
 * RFCs: none. Untrusted input: queue files (validated by qf_read) and the
 * message headers they hold, printed with control characters escaped so
 * a message cannot drive the administrator's terminal. Privilege: run by
 * an administrator as the spool owner or root; only reads.
 */
#include "queue_cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "queue.h"
#include "queue_file.h"

#define CLI_HEADERS_MAX (16 * 1024)

static void format_time(char *out, size_t len, uint64_t seconds)
{
	time_t t = (time_t)seconds;
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "%llu", (unsigned long long)seconds);
}

/* Print text with control characters (except tab and LF) as \xNN. */
static void put_escaped(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
}

static const char *status_word(char status)
{
	switch (status) {
	case QF_RCPT_PENDING:
		return "pending";
	case QF_RCPT_DONE:
		return "done";
	case QF_RCPT_BOUNCED:
		return "bounced";
	default:
		return "?";
	}
}

/* Open and read one queue file; -1 after printing why. */
static int load(const char *path, int *fd_r, struct qf_msg *m)
{
	char *err = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -1;
	if (qf_read(fd, m, &err) != 0) {
		fprintf(stderr, "postern queue: %s: %s\n", path, err);
		free(err);
		close(fd);
		return -1;
	}
	*fd_r = fd;
	return 0;
}

/* ---- list ------------------------------------------------------------------ */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Ids of the files in one spool folder, sorted (oldest first). */
static int folder_ids(const char *dir_path, strlist_t *ids)
{
	DIR *dir = opendir(dir_path);
	struct dirent *de;

	if (dir == NULL) {
		fprintf(stderr, "postern queue: %s: %s\n", dir_path, strerror(errno));
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		if (queue_id_valid(de->d_name))
			strlist_add(ids, de->d_name);
	}
	closedir(dir);
	if (ids->count > 1)
		qsort(ids->items, ids->count, sizeof(*ids->items), cmp_names);
	return 0;
}

static void list_one(const char *path, const char *id, const char *state)
{
	struct qf_msg m;
	int fd;
	char when[40];

	if (load(path, &fd, &m) < 0) {
		printf("%s  %-8s  (unreadable)\n", id, state);
		return;
	}
	close(fd);
	printf("%s  %-8s  %8llu  <%s>  ->", id, state,
	       (unsigned long long)m.content_len, m.sender);
	for (size_t i = 0; i < m.rcpt_count; i++) {
		if (m.rcpts[i].status == QF_RCPT_PENDING)
			printf(" <%s>", m.rcpts[i].addr);
	}
	if (m.next_try > 0) {
		format_time(when, sizeof(when), m.next_try);
		printf("  next %s (attempts %lu: %s)", when, (unsigned long)m.attempts,
		       m.reason);
	} else {
		printf("  next now");
	}
	printf("\n");
	qf_msg_free(&m);
}

static int list_folder(const struct config *cfg, const char *folder,
		       size_t *count_r)
{
	char *dir = safeio_path_join(cfg->spool_dir, folder);
	strlist_t ids = { NULL, 0 };
	int rc = folder_ids(dir, &ids);

	for (size_t i = 0; rc == 0 && i < ids.count; i++) {
		char *path = safeio_path_join(dir, ids.items[i]);
		list_one(path, ids.items[i], folder);
		free(path);
	}
	*count_r = ids.count;
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
	format_time(when, sizeof(when), m->arrival_us / 1000000u);
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
		format_time(when, sizeof(when), m->next_try);
	printf("next_attempt: %s\n", m->next_try > 0 ? when : "now");
	printf("last_reason: %s\n", m->reason);
	printf("content_length: %llu\ncontent_offset: %llu\nfile_size: %llu\n",
	       (unsigned long long)m->content_len,
	       (unsigned long long)m->content_off,
	       (unsigned long long)m->file_size);
}

static int cmd_show(const struct config *cfg, const char *id)
{
	static const char *const folders[] = { "queue", "deferred", "incoming",
					       "hold", "corrupt" };

	if (!queue_id_valid(id)) {
		fprintf(stderr, "postern queue show: \"%s\" is not a queue id\n", id);
		return 2;
	}
	for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
		char *dir = safeio_path_join(cfg->spool_dir, folders[i]);
		char *path = safeio_path_join(dir, id);
		free(dir);
		if (access(path, F_OK) < 0) {
			free(path);
			continue;
		}
		struct qf_msg m;
		int fd;
		int rc = load(path, &fd, &m);
		if (rc == 0) {
			buf_t headers = BUF_INIT;
			char *err = NULL;
			printf("file: %s\nstate: %s\n", path, folders[i]);
			show_envelope(&m);
			printf("\n");
			if (qf_read_headers(fd, &m, CLI_HEADERS_MAX, &headers, &err) < 0) {
				fprintf(stderr, "postern queue show: %s\n", err);
				free(err);
				rc = -1;
			}
			put_escaped(stdout, buf_cstr(&headers), headers.len);
			buf_free(&headers);
			qf_msg_free(&m);
			close(fd);
		}
		free(path);
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
