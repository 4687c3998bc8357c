/*
 * fuzz_spam_rules.c - libFuzzer target for the SpamAssassin-syntax rule
 * reader (src/scan/spam_rules_parse.c and what it compiles: regexes and
 * their literals, meta and if expressions, ReplaceTags), and for running
 * what it accepts over a fixed message. The first byte picks the mode
 * (bit 0 set, e.g. "1": lenient as SpamAssassin's files; clear, e.g. "0":
 * strict); the rest is the rule file. Invariants: a failure names the
 * file; the result's scores are finite and its hits are named, listed by
 * name, no meta sub-rule among them, and no more than the rules.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "scan/spam.h"
#include "scan/spam_rules_impl.h"

#define FUZZ_NAME "/nonexistent-postern-fuzz/rules.cf"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_ERROR);
	if (size == 0)
		return 0;
	bool lenient = data[0] & 1;
	FILE *devnull = fopen("/dev/null", "w");
	char *err = NULL;
	struct spam_rules *rules = spam_rules_parse_text(FUZZ_NAME, (const char *)data + 1, size - 1,
							 lenient, devnull, &err);
	fclose(devnull);
	if (rules == NULL) {
		check(err != NULL && strncmp(err, FUZZ_NAME, strlen(FUZZ_NAME)) == 0,
		      "an error names the file");
		free(err);
		return 0;
	}
	check(err == NULL, "no error when loaded");

	strlist_t rcpts = { 0 };
	strlist_add(&rcpts, "alice@example.test");
	struct scan_envelope env = { "QID", "bob@remote.test", &rcpts, "192.0.2.7", "helo.test" };
	static const char raw[] =
		"Received: from a.remote.test by mx.example.test; Mon, 2 Jun 2025 10:00:00 +0000\r\n"
		"From: \"Bob (bob@bank.test)\" <bob@remote.test>\r\n"
		"To: alice@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= FREE\r\n"
		"Date: Mon, 2 Jun 2025 10:01:00 +0000\r\nMessage-ID: <x@remote.test>\r\n"
		"Content-Type: text/html\r\n\r\n<p>Hello <a href=\"http://192.0.2.1/\">bank.test</a></p>\r\n";
	struct scan_header headers[] = {
		{ 0, (char *)"Received", (char *)"from a.remote.test by mx.example.test; Mon, 2 Jun 2025 10:00:00 +0000",
		  (char *)"from a.remote.test by mx.example.test; Mon, 2 Jun 2025 10:00:00 +0000" },
		{ 0, (char *)"From", (char *)"\"Bob (bob@bank.test)\" <bob@remote.test>",
		  (char *)"\"Bob (bob@bank.test)\" <bob@remote.test>" },
		{ 0, (char *)"To", (char *)"alice@example.test", (char *)"alice@example.test" },
		{ 0, (char *)"Subject", (char *)"=?utf-8?q?Gr=C3=BC=C3=9Fe?= FREE",
		  (char *)"Gr\xc3\xbc\xc3\x9f" "e FREE" },
		{ 0, (char *)"Date", (char *)"Mon, 2 Jun 2025 10:01:00 +0000",
		  (char *)"Mon, 2 Jun 2025 10:01:00 +0000" },
		{ 1, (char *)"Content-Type", (char *)"text/html", (char *)"text/html" },
	};
	struct scan_part parts[1];
	memset(parts, 0, sizeof(parts));
	parts[0].content_type = (char *)"text/html";
	parts[0].parent = -1;
	struct scan_message m = { &env, (const unsigned char *)raw, sizeof(raw) - 1, parts, 1,
				  headers, sizeof(headers) / sizeof(headers[0]), 0 };
	struct spam_uri uri = { (char *)"http://192.0.2.1/", (char *)"192.0.2.1", (char *)"bank.test", true };
	struct spam_text t;
	memset(&t, 0, sizeof(t));
	t.msg = &m;
	buf_puts(&t.body, "Gr\xc3\xbc\xc3\x9f" "e FREE\nHello bank.test\n");
	buf_puts(&t.rawbody, "<p>Hello <a href=\"http://192.0.2.1/\">bank.test</a></p>\n");
	t.uris = &uri;
	t.uri_count = 1;
	t.html.html_parts = 1;
	t.html.html_text_bytes = 16;

	for (int set = 0; set <= 2; set += 2) {
		struct spam_rules_context ctx = { &env, set ? 0.97 : -1, (enum spam_score_set)set,
						  200000 };
		struct spam_result res;
		spam_result_init(&res);
		spam_rules_run(rules, &t, &ctx, &res);
		check(isfinite(res.score) && isfinite(res.learn_score), "finite scores");
		check(res.hit_count <= spam_rules_count(rules), "hits within the rules");
		for (size_t i = 0; i < res.hit_count; i++) {
			check(res.hits[i].name != NULL && res.hits[i].name[0] != '\0', "a hit has a name");
			check(strncmp(res.hits[i].name, "__", 2) != 0, "sub-rules are not listed");
			if (i > 0)
				check(strcmp(res.hits[i - 1].name, res.hits[i].name) <= 0, "hits by name");
		}
		spam_result_free(&res);
	}
	buf_free(&t.body);
	buf_free(&t.rawbody);
	strlist_free(&rcpts);
	spam_rules_free(&rules);
	return 0;
}
