/*
 * test_quarantine_cli.c - "postern quarantine" in process: its --json
 * output is one well-formed JSON document whatever the messages hold
 * (checked by a small validating parser here), release moves a message
 * into queue/ durably and never over an existing one, nothing is done to
 * a message whose commit still holds its lock, planted links and FIFOs
 * are refused without blocking, and delete removes.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/quarantine_cli.h"
#include "queue/queue.h"
#include "queue/queue_file.h"

/* ---- a JSON validator (RFC 8259 grammar; strings as UTF-8) ------------------ */

struct jp {
	const char *p, *end;
};

static void ws(struct jp *j)
{
	while (j->p < j->end && strchr(" \t\r\n", *j->p) != NULL)
		j->p++;
}

static bool lit(struct jp *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool value(struct jp *j, int depth);

static bool string(struct jp *j)
{
	if (j->p >= j->end || *j->p != '"')
		return false;
	for (j->p++; j->p < j->end; j->p++) {
		unsigned char c = (unsigned char)*j->p;
		if (c == '"') {
			j->p++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			j->p++;
			if (j->p >= j->end)
				return false;
			if (*j->p == 'u') {
				for (int i = 0; i < 4; i++)
					if (++j->p >= j->end || strchr("0123456789abcdefABCDEF", *j->p) == NULL)
						return false;
			} else if (strchr("\"\\/bfnrt", *j->p) == NULL) {
				return false;
			}
		} else if (c >= 0x80) {
			/* a well-formed UTF-8 sequence */
			int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : -1;
			if (n < 0 || c > 0xf4)
				return false;
			for (int i = 0; i < n; i++)
				if (++j->p >= j->end || ((unsigned char)*j->p & 0xc0) != 0x80)
					return false;
		}
	}
	return false;
}

static bool number(struct jp *j)
{
	const char *start = j->p;
	if (j->p < j->end && *j->p == '-')
		j->p++;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > start;
}

static bool members(struct jp *j, int depth, char close, bool keyed)
{
	j->p++;
	ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return true;
	}
	for (;;) {
		ws(j);
		if (keyed) {
			if (!string(j))
				return false;
			ws(j);
			if (j->p >= j->end || *j->p++ != ':')
				return false;
		}
		if (!value(j, depth + 1))
			return false;
		ws(j);
		if (j->p >= j->end)
			return false;
		if (*j->p == close) {
			j->p++;
			return true;
		}
		if (*j->p++ != ',')
			return false;
	}
}

static bool value(struct jp *j, int depth)
{
	ws(j);
	if (j->p >= j->end || depth > 32)
		return false;
	switch (*j->p) {
	case '{':
		return members(j, depth, '}', true);
	case '[':
		return members(j, depth, ']', false);
	case '"':
		return string(j);
	case 't':
		return lit(j, "true");
	case 'f':
		return lit(j, "false");
	case 'n':
		return lit(j, "null");
	default:
		return number(j);
	}
}

/* Exactly one JSON value (then white space) in text. */
static void assert_one_json_document(const char *text)
{
	struct jp j = { text, text + strlen(text) };
	bool ok = value(&j, 0);
	ws(&j);
	if (!ok || j.p != j.end)
		fail_msg("not one JSON document (stopped at offset %zu):\n%s",
			 (size_t)(j.p - text), text);
}

/* ---- fixture ---------------------------------------------------------------------- */

static struct config cfg;
static char *dir;

static int setup(void **state)
{
	char tmpl[] = "/tmp/postern-test-qcli-XXXXXX";
	char *err = NULL;
	(void)state;
	assert_non_null(mkdtemp(tmpl));
	dir = xstrdup(tmpl);
	memset(&cfg, 0, sizeof(cfg));
	cfg.spool_dir = safeio_path_join(dir, "spool");
	cfg.quarantine_retention = 30 * 86400;
	assert_int_equal(queue_dirs_create(cfg.spool_dir, &err), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	testutil_rmtree(dir);
	free(dir);
	free(cfg.spool_dir);
	return 0;
}

/* Commit a message into folder with a note; its id into id. */
static void put(const char *folder, const char *sender, const char *content,
		const char *note_text, char *id)
{
	strlist_t rcpts = { NULL, 0 }, hits = { NULL, 0 };
	char *err = NULL;
	strlist_add(&rcpts, "alice@example.test");
	strlist_add(&rcpts, "bob@example.test");
	strlist_add(&hits, "virus:Test\"Quote");
	strlist_add(&hits, "attachment:caf\xc3\xa9\xff.exe");
	queue_id_new(id);
	struct queue_envelope env = {
		.arrival_us = queue_id_time_us(id), .client_addr = "192.0.2.9",
		.client_helo = "helo\\name", .protocol = "ESMTP", .sender = sender,
		.recipients = &rcpts,
	};
	struct queue_writer *w = queue_writer_open(cfg.spool_dir, id, &env, &err);
	assert_non_null(w);
	assert_int_equal(queue_writer_write(w, content, strlen(content), &err), 0);
	assert_int_equal(queue_writer_remove_rcpt(w, "bob@example.test", &err), 0);
	struct queue_note note = { strcmp(folder, "hold") == 0, "scan", "virus", note_text, &hits };
	assert_int_equal(queue_writer_set_note(w, &note, &err), 0);
	assert_int_equal(queue_writer_commit_to(&w, folder, &err), 0);
	strlist_free(&rcpts);
	strlist_free(&hits);
}

/* Run the command with stdout captured; its exit status. */
static int run(const char *folder, buf_t *out, int argc, ...)
{
	char *argv[16];
	va_list ap;
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	char *path = safeio_path_join(dir, "stdout");
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved >= 0);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	int rc = quarantine_cli_main(folder, argc, argv, &cfg);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	buf_reset(out);
	assert_int_equal(safeio_read_file(path, 1 << 20, out), 0);
	free(path);
	return rc;
}

static bool exists(const char *folder, const char *id)
{
	struct stat st;
	char *p = safeio_path_join(cfg.spool_dir, folder), *q = safeio_path_join(p, id);
	bool there = lstat(q, &st) == 0;
	free(p);
	free(q);
	return there;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* A message built to break naive JSON: quotes, backslashes, controls in
 * the headers, bytes that are not UTF-8, a sender <>. */
static void test_json_of_hostile_messages(void **state)
{
	char id1[QUEUE_ID_LEN + 1], id2[QUEUE_ID_LEN + 1];
	buf_t out = BUF_INIT;
	(void)state;
	put("quarantine", "", "Subject: \"quoted\" \\ back\x01slash \xff\xfe end\n"
	    "X-Other: \x1b[31mred\nX-C1: \xc2\x9b" "2J caf\xc3\xa9\n\nbody \"text\"\n",
	    "rule \"bad\"\\name \xc2\x9b" "1m", id1);
	put("quarantine", "o'brien@remote.test", "Subject: plain\n\nbody\n",
	    "virus found: Eicar", id2);

	assert_int_equal(run("quarantine", &out, 2, "list", "--json"), 0);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "\"count\":2,"));
	assert_non_null(strstr(out.data, "\"sender\":\"\","));
	assert_non_null(strstr(out.data, "\"recipients\":[\"alice@example.test\"]")); /* bob removed */
	assert_non_null(strstr(out.data, "\"text\":\"rule \\\"bad\\\"\\\\name \xc2\x9b" "1m\""));
	assert_non_null(strstr(out.data, "\"subject\":\"\\\"quoted\\\" \\\\ back?slash "
				     "\xef\xbf\xbd\xef\xbf\xbd end\""));
	assert_non_null(strstr(out.data, "\"hits\":[\"virus:Test\\\"Quote\","
				     "\"attachment:caf\xc3\xa9\xef\xbf\xbd.exe\"]"));
	assert_non_null(strstr(out.data, "\"helo\":\"helo\\\\name\""));
	assert_non_null(strstr(out.data, "\"errors\":[]"));

	assert_int_equal(run("quarantine", &out, 3, "show", id1, "--json"), 0);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "\"headers\":\"Subject: \\\"quoted\\\" \\\\ back"
				     "\\u0001slash \xef\xbf\xbd\xef\xbf\xbd end\\nX-Other: "
				     "\\u001b[31mred\\nX-C1: \xc2\x9b" "2J caf\xc3\xa9\\n\\n\""));
	assert_non_null(strstr(out.data, "\"expires\":\"")); /* 30 days on */

	/* text output escapes what would drive a terminal: C0 and C1
	 * controls (U+009B is a CSI), bytes that are not UTF-8; é stays */
	assert_int_equal(run("quarantine", &out, 2, "show", id1), 0);
	assert_null(strchr(out.data, '\x1b'));
	assert_null(strstr(out.data, "\xc2\x9b"));
	assert_null(strchr(out.data, '\xff'));
	assert_non_null(strstr(out.data, "X-Other: \\x1b[31mred"));
	assert_non_null(strstr(out.data, "X-C1: \\xc2\\x9b" "2J caf\xc3\xa9\n"));
	assert_non_null(strstr(out.data, "subject: \"quoted\" \\ back?slash \\xff\\xfe end\n"));
	assert_non_null(strstr(out.data, "text: rule \"bad\"\\name \\xc2\\x9b" "1m\n"));
	assert_int_equal(run("quarantine", &out, 1, "list"), 0);
	assert_null(strstr(out.data, "\xc2\x9b"));
	assert_non_null(strstr(out.data, "  <> -> <alice@example.test>  rule \"bad\"\\name "
				     "\\xc2\\x9b" "1m (scan)"));
	assert_non_null(strstr(out.data, "\n2 messages in quarantine\n"));

	/* an unknown id: an error document, status 1 */
	assert_int_equal(run("quarantine", &out, 3, "show", "0000000000000000000", "--json"), 1);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "\"errors\":[{\"id\":\"0000000000000000000\","));
	/* the other folder is separate: hold/ is empty */
	assert_int_equal(run("hold", &out, 2, "list", "--json"), 0);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "{\"folder\":\"hold\",\"count\":0,\"messages\":[]"));
	/* usage errors print nothing on stdout */
	assert_int_equal(run("quarantine", &out, 2, "show", "not-an-id"), 2);
	assert_int_equal(run("quarantine", &out, 2, "list", "--bogus"), 2);
	assert_int_equal(run("quarantine", &out, 1, "release"), 2);
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

/* A child holds the lock of folder/id as a commit in progress does. */
static pid_t hold_lock(const char *folder, const char *id)
{
	int ready[2];
	char c;
	char *p = safeio_path_join(cfg.spool_dir, folder), *path = safeio_path_join(p, id);
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(path, O_RDONLY);
		if (fd < 0 || flock(fd, LOCK_EX) < 0 || write(ready[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	free(p);
	free(path);
	return pid;
}

static void test_release_and_delete(void **state)
{
	char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1], h[QUEUE_ID_LEN + 1];
	buf_t out = BUF_INIT;
	(void)state;
	put("quarantine", "x@remote.test", "Subject: a\n\n", "virus found: A", a);
	put("quarantine", "x@remote.test", "Subject: b\n\n", "virus found: B", b);
	put("hold", "x@remote.test", "Subject: h\n\n", "held", h);

	/* busy: its commit still holds it */
	pid_t holder = hold_lock("quarantine", a);
	assert_int_equal(run("quarantine", &out, 3, "release", a, "--json"), 1);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "\"done\":false,\"error\":\""));
	assert_non_null(strstr(out.data, "is busy"));
	assert_true(exists("quarantine", a));
	assert_int_equal(run("quarantine", &out, 2, "delete", a), 1);
	assert_true(exists("quarantine", a));
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);

	/* released into queue/, with the note still in the file; one of two
	 * unknown: status 1, the other still done */
	assert_int_equal(run("quarantine", &out, 4, "release", a, "0000000000000000000",
			     "--json"), 1);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "\"done\":true,\"queue_manager_told\":false,\"error\":null"));
	assert_false(exists("quarantine", a));
	assert_true(exists("queue", a));
	char *qdir = safeio_path_join(cfg.spool_dir, "queue"), *qpath = safeio_path_join(qdir, a);
	int fd = open(qpath, O_RDONLY);
	struct qf_msg m;
	char *err = NULL;
	assert_int_equal(qf_read(fd, &m, &err), 0);
	assert_string_equal(m.note.text, "virus found: A");
	qf_msg_free(&m);
	close(fd);
	free(qpath);
	free(qdir);

	/* never over a message of the same id in queue/ */
	char *src = safeio_path_join(cfg.spool_dir, "quarantine"), *from = safeio_path_join(src, b);
	char *to_dir = safeio_path_join(cfg.spool_dir, "queue"), *to = safeio_path_join(to_dir, b);
	assert_int_equal(link(from, to), 0);
	assert_int_equal(run("quarantine", &out, 2, "release", b), 1);
	assert_true(exists("quarantine", b));
	unlink(to);
	free(src);
	free(from);
	free(to_dir);
	free(to);

	/* hold/ through its own command; delete */
	assert_int_equal(run("quarantine", &out, 2, "release", h), 1); /* not in quarantine/ */
	assert_true(exists("hold", h));
	assert_int_equal(run("hold", &out, 2, "release", h), 0);
	assert_non_null(strstr(out.data, ": released into the queue (no queue manager answered"));
	assert_true(exists("queue", h));
	assert_int_equal(run("quarantine", &out, 3, "delete", b, "--json"), 0);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "{\"command\":\"delete\",\"folder\":\"quarantine\","
				     "\"results\":[{\"id\":\""));
	assert_false(exists("quarantine", b));
	buf_free(&out);
}

/* What the spool's unprivileged owner may plant there is refused at once:
 * a FIFO is not waited on, a link not followed or moved. */
static void test_planted_entries(void **state)
{
	const char *fifo_id = "0000000000000000F1F", *link_id = "0000000000000000111";
	buf_t out = BUF_INIT;
	(void)state;
	char *q = safeio_path_join(cfg.spool_dir, "quarantine");
	char *fifo = safeio_path_join(q, fifo_id), *lnk = safeio_path_join(q, link_id);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(symlink("/etc/passwd", lnk), 0);
	assert_int_equal(run("quarantine", &out, 2, "list", "--json"), 1);
	assert_one_json_document(buf_cstr(&out));
	assert_non_null(strstr(out.data, "is a FIFO, not a queue file: not read"));
	assert_non_null(strstr(out.data, "is a symbolic link, not a queue file: not read"));
	assert_null(strstr(out.data, "root:"));
	assert_int_equal(run("quarantine", &out, 3, "release", fifo_id, link_id), 1);
	assert_int_equal(run("quarantine", &out, 3, "delete", fifo_id, link_id), 1);
	struct stat st;
	assert_int_equal(lstat(fifo, &st), 0);
	assert_int_equal(lstat(lnk, &st), 0);
	assert_false(exists("queue", fifo_id));
	assert_false(exists("queue", link_id));
	free(q);
	free(fifo);
	free(lnk);
	buf_free(&out);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_json_of_hostile_messages),
		T(test_release_and_delete),
		T(test_planted_entries),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
