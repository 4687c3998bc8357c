/*
 * spool_put.c - test tool of the integration tests: write a message into
 * a spool folder with the queue writer, as the smtp worker commits it
 * (quarantine/ and hold/ with a q note), so that the commands and the
 * queue manager can be tested before the scanners that produce those
 * verdicts exist.
 *
 *   spool_put SPOOL FOLDER [options] < MESSAGE     prints the queue id
 *     --id ID            this queue id (default: a new one)
 *     --age SECONDS      a new id that says it arrived SECONDS ago
 *     --sender ADDR      default sender@remote.test ("" for <>)
 *     --rcpt ADDR        a recipient (repeatable; default alice@example.test)
 *     --client ADDR      default 192.0.2.1
 *     --check NAME --reason KEY --text TEXT --hit HIT...   the q note
 *     --no-note          write no q note
 *
 * Never installed; runs as whoever runs the tests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/strutil.h"
#include "queue/queue.h"

static void die(const char *what, const char *err)
{
	fprintf(stderr, "spool_put: %s: %s\n", what, err);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		die("usage", "spool_put SPOOL FOLDER [options] < MESSAGE");
	const char *spool = argv[1], *folder = argv[2];
	const char *sender = "sender@remote.test", *client = "192.0.2.1";
	const char *check = "test", *reason = "test", *text = "put there by spool_put";
	char id[QUEUE_ID_LEN + 1] = "";
	strlist_t rcpts = { NULL, 0 }, hits = { NULL, 0 };
	bool note = true;
	long long age = -1;

	for (int i = 3; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(opt, "--no-note") == 0) {
			note = false;
			continue;
		}
		if (val == NULL)
			die(opt, "needs a value");
		i++;
		if (strcmp(opt, "--id") == 0)
			snprintf(id, sizeof(id), "%s", val);
		else if (strcmp(opt, "--age") == 0)
			age = atoll(val);
		else if (strcmp(opt, "--sender") == 0)
			sender = val;
		else if (strcmp(opt, "--rcpt") == 0)
			strlist_add(&rcpts, val);
		else if (strcmp(opt, "--client") == 0)
			client = val;
		else if (strcmp(opt, "--check") == 0)
			check = val;
		else if (strcmp(opt, "--reason") == 0)
			reason = val;
		else if (strcmp(opt, "--text") == 0)
			text = val;
		else if (strcmp(opt, "--hit") == 0)
			strlist_add(&hits, val);
		else
			die(opt, "unknown option");
	}
	if (rcpts.count == 0)
		strlist_add(&rcpts, "alice@example.test");
	if (id[0] == '\0')
		queue_id_new(id);
	if (age >= 0) {
		/* the same pid part, an earlier time part */
		uint64_t us = queue_id_time_us(id) - (uint64_t)age * 1000000u;
		char pid[7];
		memcpy(pid, id + 13, 7);
		snprintf(id, sizeof(id), "%013llX%s", (unsigned long long)us, pid);
	}
	buf_t content = BUF_INIT;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		buf_append(&content, chunk, n);
	struct queue_envelope env = {
		.arrival_us = queue_id_time_us(id), .client_addr = client,
		.client_helo = "client.test", .protocol = "ESMTP", .sender = sender,
		.recipients = &rcpts,
	};
	char *err = NULL;
	struct queue_writer *w = queue_writer_open(spool, id, &env, &err);
	if (w == NULL)
		die("open", err);
	if (queue_writer_write(w, content.data != NULL ? content.data : "", content.len,
			       &err) < 0)
		die("write", err);
	struct queue_note qn = { strcmp(folder, "hold") == 0, check, reason, text, &hits };
	if (note && queue_writer_set_note(w, &qn, &err) < 0)
		die("note", err);
	if (queue_writer_commit_to(&w, folder, &err) < 0)
		die("commit", err);
	printf("%s\n", id);
	buf_free(&content);
	strlist_free(&rcpts);
	strlist_free(&hits);
	return 0;
}
