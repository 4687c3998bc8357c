/*
 * queue_cli_change.c - "postern queue flush|requeue|hold|release|delete":
 * the administrator's changes to queued messages, safe while the server
 * runs (see queue_cli_change.h and docs/queue.md).
 *
 * Every change works on a locked file: spool_cli_take_entry() takes the
 * flock the queue manager holds for a whole delivery attempt, so a
 * message is changed either before an attempt starts (the queue manager
 * then finds it gone, moved, or due now) or after one ended, never in
 * the middle. Moves are renames that never replace a file, made durable
 * (fsync of the folder it went to, then of the one it left) before the
 * lock is released; in-place changes touch only the fixed-size A record.
 *
 * RFCs: none. Untrusted input: spool entries and queue files (checked by
 * spool_cli and qf_read). Privilege: root or the spool owner.
 */
#include "queue_cli_change.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/json.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "quarantine_cli.h"
#include "queue.h"
#include "queue_file.h"
#include "spool_cli.h"

enum folder { F_QUEUE, F_DEFERRED, F_HOLD, F_COUNT };
static const char *const folder_names[F_COUNT] = { "queue", "deferred", "hold" };
#define IN(f) (1u << (f))

struct change {
	const struct config *cfg;
	const char *command;
	bool json;
	buf_t done;   /* JSON: the ids changed */
	buf_t errors; /* JSON: {"id","error"} objects */
	int status;
	int dirfd[F_COUNT];
	char *dir[F_COUNT];
};

static void problem(struct change *c, const char *id, char *err)
{
	fprintf(stderr, "postern queue %s: %s\n", c->command, err);
	if (c->json) {
		buf_puts(&c->errors, c->errors.len > 0 ? ",{\"id\":" : "{\"id\":");
		json_put_cstr(&c->errors, id);
		buf_puts(&c->errors, ",\"error\":");
		json_put_cstr(&c->errors, err);
		buf_putc(&c->errors, '}');
	}
	free(err);
	c->status = 1;
}

static void done(struct change *c, const char *id, const char *what)
{
	if (c->json) {
		if (c->done.len > 0)
			buf_putc(&c->done, ',');
		json_put_cstr(&c->done, id);
	} else {
		printf("%s: %s\n", id, what);
	}
}

/* Tell the queue manager; a note for the administrator if it cannot be. */
static void wake(struct change *c, const char *id)
{
	if (queue_wake(c->cfg->spool_dir, id) == 0 || c->json)
		return;
	if (errno == ENXIO)
		printf("%s: no queue manager is running: it is delivered when one starts\n", id);
	else
		printf("%s: the queue manager could not be told (%s): its next queue scan "
		       "finds it\n", id, strerror(errno));
}

/* The folder of allowed that holds id, or F_COUNT after a problem. */
static enum folder find(struct change *c, const char *id, unsigned allowed)
{
	struct stat st;

	if (!queue_id_valid(id)) {
		problem(c, id, qf_errf("\"%s\" is not a queue id", id));
		return F_COUNT;
	}
	for (enum folder f = 0; f < F_COUNT; f++) {
		if (c->dirfd[f] >= 0 && fstatat(c->dirfd[f], id, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if ((allowed & IN(f)) != 0)
				return f;
			problem(c, id, qf_errf("%s is in %s/: not for \"queue %s\"%s", id,
					       folder_names[f], c->command,
					       f == F_HOLD ? " (release it first)" : ""));
			return F_COUNT;
		}
	}
	problem(c, id, qf_errf("no message %s in %s", id, c->cfg->spool_dir));
	return F_COUNT;
}

/* Lock id in folder f and check it is a queue file of that id; the
 * locked descriptor (and *m), or -1 after a problem. */
static int take(struct change *c, enum folder f, const char *id, struct qf_msg *m)
{
	char *err = NULL;
	int fd = spool_cli_take_entry(c->dir[f], c->dirfd[f], id, &err);

	if (fd < 0) {
		problem(c, id, err);
		return -1;
	}
	if (qf_read(fd, m, &err) != 0) {
		problem(c, id, qf_errf("%s/%s: not a valid queue file (%s): left alone", c->dir[f],
				       id, err));
		free(err);
		close(fd);
		return -1;
	}
	if (strcmp(m->id, id) != 0) {
		problem(c, id, qf_errf("%s/%s: its id record says %s: left alone", c->dir[f], id,
				       m->id));
		qf_msg_free(m);
		close(fd);
		return -1;
	}
	return fd;
}

/* Due now: the A record and the file time (the queue manager's start-up
 * scan schedules deferred/ files by their time). */
static bool make_due(struct change *c, int fd, struct qf_msg *m, uint32_t attempts)
{
	char *err = NULL;
	uint64_t now = (uint64_t)time(NULL);

	if (qf_set_attempts(fd, m, attempts, now, m->reason, &err) < 0) {
		problem(c, m->id, err);
		return false;
	}
	if (futimens(fd, NULL) < 0) {
		problem(c, m->id, qf_errf("set the time of %s: %s", m->id, strerror(errno)));
		return false;
	}
	return true;
}

/* Rename id from one folder into another, durably (destination first). */
static bool move(struct change *c, enum folder from, enum folder to, const char *id)
{
	if (spool_cli_rename_noreplace(c->dirfd[from], c->dirfd[to], id) < 0) {
		problem(c, id, qf_errf("rename %s/%s into %s/: %s", c->dir[from], id,
				       folder_names[to],
				       errno == EEXIST ? "a message of that id is there already"
						       : strerror(errno)));
		return false;
	}
	if (fsync(c->dirfd[to]) < 0 || fsync(c->dirfd[from]) < 0) {
		problem(c, id, qf_errf("%s: moved into %s/, but not made durable (fsync: %s): a "
				       "crash now may put it back", id, folder_names[to],
				       strerror(errno)));
		return false;
	}
	return true;
}

static void flush_one(struct change *c, const char *id)
{
	enum folder f = find(c, id, IN(F_QUEUE) | IN(F_DEFERRED));
	struct qf_msg m;

	if (f == F_QUEUE) {
		done(c, id, "waiting for delivery already; queue manager told");
		wake(c, id);
		return;
	}
	int fd = f == F_DEFERRED ? take(c, f, id, &m) : -1;
	if (fd < 0)
		return;
	bool ok = make_due(c, fd, &m, m.attempts);
	qf_msg_free(&m);
	close(fd);
	if (ok) {
		done(c, id, "due now");
		wake(c, id);
	}
}

static void requeue_one(struct change *c, const char *id)
{
	enum folder f = find(c, id, IN(F_QUEUE) | IN(F_DEFERRED));
	struct qf_msg m;

	if (f == F_QUEUE) {
		done(c, id, "in queue/ already; queue manager told");
		wake(c, id);
		return;
	}
	int fd = f == F_DEFERRED ? take(c, f, id, &m) : -1;
	if (fd < 0)
		return;
	bool ok = make_due(c, fd, &m, 0) && move(c, F_DEFERRED, F_QUEUE, id);
	qf_msg_free(&m);
	close(fd);
	if (ok) {
		done(c, id, "requeued, retry schedule started again");
		wake(c, id);
	}
}

static void hold_one(struct change *c, const char *id)
{
	enum folder f = find(c, id, IN(F_QUEUE) | IN(F_DEFERRED) | IN(F_HOLD));
	struct qf_msg m;

	if (f == F_HOLD) {
		done(c, id, "held already");
		return;
	}
	int fd = f < F_HOLD ? take(c, f, id, &m) : -1;
	if (fd < 0)
		return;
	if (move(c, f, F_HOLD, id))
		done(c, id, "held (\"postern queue release\" delivers it)");
	qf_msg_free(&m);
	close(fd);
}

static void delete_one(struct change *c, const char *id)
{
	enum folder f = find(c, id, IN(F_QUEUE) | IN(F_DEFERRED) | IN(F_HOLD));
	struct qf_msg m;
	int fd = f < F_COUNT ? take(c, f, id, &m) : -1;

	if (fd < 0)
		return;
	if (unlinkat(c->dirfd[f], id, 0) < 0)
		problem(c, id, qf_errf("remove %s/%s: %s", c->dir[f], id, strerror(errno)));
	else if (fsync(c->dirfd[f]) < 0)
		problem(c, id, qf_errf("%s: removed, but not made durable (fsync %s: %s)", id,
				       c->dir[f], strerror(errno)));
	else
		done(c, id, "deleted");
	qf_msg_free(&m);
	close(fd);
}

/* Every id of folder f into ids. */
static void all_of(struct change *c, enum folder f, strlist_t *ids)
{
	char *err = NULL;

	if (c->dirfd[f] >= 0 && spool_cli_folder_ids(c->dirfd[f], c->dir[f], ids, &err) < 0)
		problem(c, NULL, err);
}

static int usage(const char *command)
{
	fprintf(stderr, "usage: postern queue %s %s [--json]\n", command,
		strcmp(command, "delete") == 0			    ? "QUEUE-ID...|--all"
		: strcmp(command, "flush") == 0 || strcmp(command, "requeue") == 0 ? "[QUEUE-ID...]"
										: "QUEUE-ID...");
	return 2;
}

bool queue_cli_change_known(const char *word)
{
	static const char *const words[] = { "flush", "requeue", "hold", "release", "delete" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(word, words[i]) == 0)
			return true;
	return false;
}

/* "release": the hold tool's own release (hold/ into queue/, told). */
static int release(const struct config *cfg, int argc, char **argv, bool json)
{
	char **args = xcalloc((size_t)argc + 3, sizeof(*args));

	args[0] = "release";
	for (int i = 0; i < argc; i++)
		args[i + 1] = argv[i];
	if (json)
		args[argc + 1] = "--json";
	int rc = quarantine_cli_main("hold", argc + 1 + json, args, cfg);
	free(args);
	return rc;
}

int queue_cli_change(const struct config *cfg, const char *word, int argc, char **argv,
		     bool json)
{
	bool all = argc == 1 && strcmp(argv[0], "--all") == 0;
	bool ids_optional = strcmp(word, "flush") == 0 || strcmp(word, "requeue") == 0;

	if ((argc == 0 && !ids_optional) || (all && strcmp(word, "delete") != 0))
		return usage(word);
	for (int i = 0; i < argc && !all; i++)
		if (argv[i][0] == '-')
			return usage(word);
	if (strcmp(word, "release") == 0)
		return release(cfg, argc, argv, json);

	struct change c = { cfg, word, json, BUF_INIT, BUF_INIT, 0, { -1, -1, -1 }, { NULL } };
	for (enum folder f = 0; f < F_COUNT; f++) {
		char *err = NULL;
		c.dir[f] = safeio_path_join(cfg->spool_dir, folder_names[f]);
		c.dirfd[f] = spool_cli_open_folder(cfg, folder_names[f], &err);
		if (c.dirfd[f] < 0)
			problem(&c, NULL, err != NULL ? err
					    : qf_errf("%s: no such folder (has postern serve run "
						      "with this spool_dir?)", c.dir[f]));
	}
	strlist_t ids = { NULL, 0 };
	if (all) {
		all_of(&c, F_QUEUE, &ids);
		all_of(&c, F_DEFERRED, &ids);
	} else if (argc == 0) {
		all_of(&c, F_DEFERRED, &ids);
	} else {
		for (int i = 0; i < argc; i++)
			strlist_add(&ids, argv[i]);
	}
	for (size_t i = 0; i < ids.count; i++) {
		const char *id = ids.items[i];
		if (strcmp(word, "flush") == 0)
			flush_one(&c, id);
		else if (strcmp(word, "requeue") == 0)
			requeue_one(&c, id);
		else if (strcmp(word, "hold") == 0)
			hold_one(&c, id);
		else
			delete_one(&c, id);
	}
	if (json) {
		printf("{\"command\":");
		buf_t cmd = BUF_INIT;
		json_put_cstr(&cmd, word);
		printf("%s,\"done\":[%s],\"errors\":[%s]}\n", buf_cstr(&cmd), buf_cstr(&c.done),
		       buf_cstr(&c.errors));
		buf_free(&cmd);
	} else if (ids.count == 0 && c.status == 0) {
		printf("nothing to %s\n", word);
	}
	strlist_free(&ids);
	for (enum folder f = 0; f < F_COUNT; f++) {
		if (c.dirfd[f] >= 0)
			close(c.dirfd[f]);
		free(c.dir[f]);
	}
	buf_free(&c.done);
	buf_free(&c.errors);
	return c.status;
}
