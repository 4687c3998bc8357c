/*
 * notice_put.c - test tool of the integration tests: queue one
 * administrator's notice the way an smtp worker's commit thread does
 * (notice_queue, with the template of a configuration file), so that
 * its delivery and placeholders can be checked in a real Maildir before
 * the scanners that produce the verdicts exist.
 *
 *   notice_put CONFIG EVENT QUEUE-ID SENDER SUBJECT REASON-TEXT [HIT...]
 *     EVENT: quarantined, refused or discarded; prints the notice's id
 *
 * The notice goes to notify_admin of CONFIG. Never installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/config.h"
#include "queue/notice.h"
#include "queue/queue.h"

int main(int argc, char **argv)
{
	struct config cfg;
	if (argc < 7) {
		fprintf(stderr, "usage: notice_put CONFIG EVENT QUEUE-ID SENDER SUBJECT TEXT [HIT...]\n");
		return 2;
	}
	if (config_load(argv[1], &cfg, stderr) < 0)
		return 1;
	struct notice_template *t = notice_template_load(cfg.notify_template, stderr);
	if (t == NULL)
		return 1;
	strlist_t rcpts = { NULL, 0 }, hits = { NULL, 0 }, to = { NULL, 0 };
	strlist_add(&rcpts, "alice@example.test");
	for (int i = 7; i < argc; i++)
		strlist_add(&hits, argv[i]);
	strlist_add(&to, cfg.notify_admin);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	struct notice_info info = {
		.event = strcmp(argv[2], "refused") == 0 ? NOTICE_REFUSED
			 : strcmp(argv[2], "discarded") == 0 ? NOTICE_DISCARDED : NOTICE_QUARANTINED,
		.queue_id = argv[3], .sender = argv[4], .rcpts = &rcpts, .client_addr = "192.0.2.66",
		.helo = "sender.example", .check = "scan", .reason = "virus", .text = argv[6],
		.hits = &hits, .subject = argv[5], .hostname = cfg.hostname, .when_us = now,
	};
	char id[QUEUE_ID_LEN + 1], *err = NULL;
	if (notice_queue(cfg.spool_dir, cfg.hostname, NULL, t, &info, &to, now, id, &err) < 0) {
		fprintf(stderr, "notice_put: %s\n", err);
		return 1;
	}
	printf("%s\n", id);
	notice_template_free(&t);
	strlist_free(&rcpts);
	strlist_free(&hits);
	strlist_free(&to);
	config_free(&cfg);
	return 0;
}
