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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* What a file that is not a regular one is, for messages. */
static const char *file_kind(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "a device";
	if (S_ISDIR(mode))
		return "a folder";
	return "not a regular file";
}

/* One spool folder, opened without following a link; -1 after printing
 * why (errno ENOENT: it does not exist). */
static int open_folder(const struct config *cfg, const char *folder)
{
	char *path = safeio_path_join(cfg->spool_dir, folder);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int err = errno;

	if (fd < 0 && err != ENOENT)
		fprintf(stderr, "postern queue: %s: %s\n", path,
			err == ELOOP || err == ENOTDIR ? "not a folder (a symbolic link?)"
						       : strerror(err));
	free(path);
	errno = err;
	return fd;
}

/*
 * Open the entry name of folder dirfd for reading: never following a
 * link, never blocking (a FIFO opened for reading would wait for a writer
 * for ever), and only if it is a regular file. Returns the descriptor, or
 * -1 after printing why; an entry that is gone (delivered meanwhile) is -1
 * with errno ENOENT and nothing printed.
 */
static int open_entry(int dirfd, const char *path, const char *name)
{
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);

	if (fd < 0) {
		int err = errno;
		if (err == ELOOP)
			fprintf(stderr, "postern queue: %s: is a symbolic link, not a queue file: "
				"not read\n", path);
		else if (err != ENOENT)
			fprintf(stderr, "postern queue: %s: %s\n", path, strerror(err));
		errno = err;
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "postern queue: %s: %s\n", path, strerror(errno));
		close(fd);
		errno = EIO;
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "postern queue: %s: is %s, not a queue file: not read\n", path,
			file_kind(st.st_mode));
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

/* Open and read one queue file; -1 after printing why (errno ENOENT:
 * gone, nothing printed). */
static int load(int dirfd, const char *path, const char *name, int *fd_r,
		struct qf_msg *m)
{
	char *err = NULL;
	int fd = open_entry(dirfd, path, name);

	if (fd < 0)
		return -1;
	if (qf_read(fd, m, &err) != 0) {
		fprintf(stderr, "postern queue: %s: %s\n", path, err);
		free(err);
		close(fd);
		errno = EINVAL;
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

/* Ids of the files in the folder dirfd, sorted (oldest first). */
static int folder_ids(int dirfd, const char *dir_path, strlist_t *ids)
{
	int fd = dup(dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (dir == NULL) {
		fprintf(stderr, "postern queue: %s: %s\n", dir_path, strerror(errno));
		if (fd >= 0)
			close(fd);
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
		format_time(when, sizeof(when), m.next_try);
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
	int rc = dirfd >= 0 ? folder_ids(dirfd, dir, &ids) : -1;
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
	put_escaped(stdout, buf_cstr(&headers), headers.len);
	buf_free(&headers);
	return rc;
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
