/*
 * fuzz_bayes.c - libFuzzer target for what Bayes reads of hostile input:
 * the mbox splitter of `postern learn` (src/scan/learn_input.c), the
 * records of its reader pipe, and the tokenizer (src/scan/spam_token.c)
 * over each message found, with the input's lines also given as URIs.
 * Invariants checked: every message is within the size bound and is a
 * piece of the input; the tokenizer returns at most max tokens, none of
 * them zero, no two the same.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scan/learn_input.h"
#include "scan/scan_message.h"
#include "scan/spam.h"

#define MAX_MESSAGE 2048
#define MAX_TOKENS 300

static void check_tokens(const struct spam_text *t)
{
	uint64_t tokens[MAX_TOKENS];
	size_t n = spam_tokenize(t, tokens, MAX_TOKENS);
	if (n > MAX_TOKENS)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (tokens[i] == 0)
			abort();
		for (size_t j = i + 1; j < n; j++)
			if (tokens[i] == tokens[j])
				abort();
	}
}

static bool on_message(void *arg, const struct learn_message *lm)
{
	(void)arg;
	static const strlist_t none = { NULL, 0 };
	static const struct scan_envelope env = { "", "", &none, "", "" };
	if (lm->len == 0 || lm->len > MAX_MESSAGE)
		abort();
	struct mime_limits limits = { 8, 64, 2048, 64 * 1024, false };
	struct scan_message m = { .env = &env, .data = lm->data, .len = lm->len };
	scan_message_parse(&m, &limits, 0);
	struct spam_text_limits tl = { 4096, 50 };
	struct spam_text t;
	spam_text_build(&m, &tl, &t);
	check_tokens(&t);
	/* the message's lines as URI hosts, as hostile as they come */
	struct spam_uri uris[8];
	char *lines[8];
	size_t nu = 0;
	for (size_t start = 0; start < lm->len && nu < 8;) {
		const unsigned char *nl = memchr(lm->data + start, '\n', lm->len - start);
		size_t end = nl != NULL ? (size_t)(nl - lm->data) : lm->len;
		lines[nu] = strndup((const char *)lm->data + start, end - start);
		uris[nu] = (struct spam_uri){ lines[nu], lines[nu], NULL, false };
		nu++;
		start = end + 1;
	}
	struct spam_text u = t;
	u.uris = uris;
	u.uri_count = nu;
	check_tokens(&u);
	for (size_t i = 0; i < nu; i++)
		free(lines[i]);
	(void)spam_message_id(&m);
	spam_text_free(&t);
	scan_message_free(&m);
	return true;
}

static void on_problem(void *arg, const char *source, unsigned number, int err)
{
	(void)arg;
	(void)source;
	(void)number;
	if (err == 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct learn_handler h = { on_message, on_problem, NULL };
	struct learn_splitter *sp = learn_splitter_new(MAX_MESSAGE, &h);
	struct learn_sink sink = learn_splitter_sink(sp);
	/* the bytes as a file: cut in two pieces where the first byte says */
	size_t cut = size > 0 ? data[0] % (size + 1) : 0;
	sink.begin(sink.arg, "fuzz");
	sink.data(sink.arg, data, cut);
	sink.data(sink.arg, data + cut, size - cut);
	sink.end(sink.arg, 0);
	/* the bytes as pipe records (they fit in the pipe's buffer) */
	int p[2];
	if (size <= 60000 && pipe(p) == 0) {
		if (write(p[1], data, size) == (ssize_t)size) {
			close(p[1]);
			learn_pipe_read(p[0], &sink);
		} else {
			close(p[1]);
		}
		close(p[0]);
	}
	learn_splitter_free(&sp);
	return 0;
}
