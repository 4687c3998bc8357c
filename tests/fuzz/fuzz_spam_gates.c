/*
 * fuzz_spam_gates.c - libFuzzer target checking the spam rule engine's
 * fast paths against its plain one (src/scan/spam_rules.c,
 * spam_rules_gate.c): a regex as a body, rawbody and full rule (plain
 * and tflags multiple) run over a text with Hyperscan gates (every
 * eligible regex given one) and body line narrowing, and again with every
 * regex over its whole text (spam_rules_set_plain). The two must give
 * the same hits and scores: a gate must match wherever PCRE2 does, a
 * narrowed rule must find the matches the whole body gives.
 * Input: a flags byte (bits: i, s, m, x), the pattern, a NUL byte, the
 * text (lines of the body; also the rawbody and the message).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "scan/spam.h"
#include "scan/spam_rules_impl.h"

#define PATTERN_MAX 80

static char *run_text(struct spam_rules *r, const struct spam_text *t,
		      const struct scan_envelope *env, bool plain)
{
	spam_rules_set_plain(r, plain);
	struct spam_rules_context ctx = { env, -1, SPAM_SET_LOCAL, 0 };
	struct spam_result res;
	spam_result_init(&res);
	spam_rules_run(r, t, &ctx, &res);
	buf_t b = BUF_INIT;
	for (size_t i = 0; i < res.hit_count; i++)
		buf_printf(&b, " %s=%g", res.hits[i].name, res.hits[i].score);
	if (res.timed_out)
		buf_puts(&b, " (timed out)");
	spam_result_free(&res);
	return buf_steal(&b);
}

/* Hyperscan takes long over large bounded repeats: keep the fuzzer fast. */
static bool reasonable(const char *p, size_t n)
{
	size_t digits = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' || p[i] == '\r')
			return false;  /* a rule is one line */
		digits = p[i] >= '0' && p[i] <= '9' ? digits + 1 : 0;
		if (digits > 2)
			return false;
	}
	return n > 0 && n <= PATTERN_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_ERROR);
	spam_gates_test_all(true);
	if (size < 2)
		return 0;
	const char *rest = (const char *)data + 1;
	const char *nul = memchr(rest, '\0', size - 1);
	if (nul == NULL)
		return 0;
	size_t plen = (size_t)(nul - rest);
	if (!reasonable(rest, plen))
		return 0;
	/* a delimiter the pattern does not hold */
	static const char delims[] = "/!#%@~,;|";
	char delim = 0;
	for (const char *d = delims; *d != '\0' && delim == 0; d++)
		if (memchr(rest, *d, plen) == NULL)
			delim = *d;
	if (delim == 0)
		return 0;
	char flags[8];
	size_t nf = 0;
	if (data[0] & 1)
		flags[nf++] = 'i';
	if (data[0] & 2)
		flags[nf++] = 's';
	if (data[0] & 4)
		flags[nf++] = 'm';
	if (data[0] & 8)
		flags[nf++] = 'x';
	flags[nf] = '\0';
	buf_t rules = BUF_INIT;
	static const char *const kinds[] = { "body", "rawbody", "full" };
	for (size_t k = 0; k < 3; k++) {
		for (int multiple = 0; multiple < 2; multiple++) {
			buf_printf(&rules, "%s R%zu%s m%c", kinds[k], k, multiple ? "M" : "", delim);
			buf_append(&rules, rest, plen);
			buf_printf(&rules, "%c%s\n", delim, flags);
			if (multiple)
				buf_printf(&rules, "tflags R%zuM multiple maxhits=7\n", k);
		}
	}
	FILE *devnull = fopen("/dev/null", "w");
	char *err = NULL;
	struct spam_rules *r = spam_rules_parse_text("/nonexistent-postern-fuzz/gates.cf",
						     buf_cstr(&rules), rules.len, true, devnull,
						     &err);
	fclose(devnull);
	buf_free(&rules);
	if (r == NULL) {
		free(err);
		return 0;
	}
	/* the message: Subject "s", the text as its body */
	const char *text = nul + 1;
	size_t tlen = size - 1 - plen - 1;
	strlist_t rcpts = { 0 };
	struct scan_envelope env = { "QID", "a@example.org", &rcpts, "192.0.2.1", "h" };
	struct scan_header hdr = { 0, "Subject", "s", "s" };
	buf_t full = BUF_INIT;
	buf_puts(&full, "Subject: s\r\n\r\n");
	buf_append(&full, text, tlen);
	struct scan_message m = { .env = &env, .data = (const unsigned char *)buf_cstr(&full),
				  .len = full.len, .headers = &hdr, .header_count = 1 };
	struct spam_text t;
	memset(&t, 0, sizeof(t));
	t.msg = &m;
	buf_puts(&t.body, "s\n");
	buf_append(&t.body, text, tlen);
	buf_append(&t.rawbody, text, tlen);
	char *fast = run_text(r, &t, &env, false);
	char *plain = run_text(r, &t, &env, true);
	if (strcmp(fast, plain) != 0) {
		fprintf(stderr, "/%.*s/%s: fast:%s plain:%s\n", (int)plen, rest, flags, fast, plain);
		abort();
	}
	free(fast);
	free(plain);
	buf_free(&t.body);
	buf_free(&t.rawbody);
	buf_free(&full);
	spam_rules_free(&r);
	return 0;
}
