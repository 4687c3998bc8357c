/*
 * fuzz_spam_literals.c - libFuzzer target for the literal analysis behind
 * the spam rules' prefilter (spam_regex_literals, src/scan/
 * spam_rules_regex.c), checked against PCRE2 itself. Input: a flags byte
 * (bits: i, s, m, x), then the pattern, a NUL byte, and a subject. When
 * PCRE2 compiles the pattern and it matches the subject, the subject must
 * contain one of the literals the analysis gave (in any ASCII case for a
 * caseless one): otherwise the prefilter, which looks for them in the
 * text, would keep a matching rule from running. (The matched text itself
 * usually holds one; \K and lookarounds may put it outside.)
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scan/spam_rules_impl.h"

static bool contains(const char *hay, size_t n, const struct spam_lit *l)
{
	if (l->len > n)
		return false;
	for (size_t i = 0; i + l->len <= n; i++) {
		size_t k = 0;
		for (; k < l->len; k++) {
			char a = hay[i + k], b = l->text[k];
			if (l->caseless ? tolower((unsigned char)a) != tolower((unsigned char)b) : a != b)
				break;
		}
		if (k == l->len)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint32_t opts = 0;
	if (data[0] & 1)
		opts |= PCRE2_CASELESS;
	if (data[0] & 2)
		opts |= PCRE2_DOTALL;
	if (data[0] & 4)
		opts |= PCRE2_MULTILINE;
	if (data[0] & 8)
		opts |= PCRE2_EXTENDED;
	const char *rest = (const char *)data + 1;
	size_t n = size - 1;
	const char *nul = memchr(rest, '\0', n);
	size_t plen = nul ? (size_t)(nul - rest) : n;
	char *pattern = malloc(plen + 1);
	memcpy(pattern, rest, plen);
	pattern[plen] = '\0';
	const char *subject = nul ? nul + 1 : "";
	size_t slen = nul ? n - plen - 1 : 0;

	int code;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, plen, opts, &code, &off, NULL);
	struct spam_litset lits;
	spam_regex_literals(pattern, opts, &lits);  /* must not fail on any text */
	if (re != NULL && lits.count > 0) {
		pcre2_match_context *mc = pcre2_match_context_create(NULL);
		pcre2_set_match_limit(mc, 100000);
		pcre2_set_depth_limit(mc, 1000);
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
		int rc = pcre2_match(re, (PCRE2_SPTR)subject, slen, 0, 0, md, mc);
		if (rc >= 0) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			/* \K may move the start: the text from the earliest point */
			size_t start = ov[0] < ov[1] ? ov[0] : ov[1];
			size_t end = ov[0] < ov[1] ? ov[1] : ov[0];
			bool found = false;
			for (size_t i = 0; i < lits.count && !found; i++)
				found = contains(subject + start, end - start, &lits.items[i]);
			if (!found) {
				/* lookarounds may see past the match: the whole subject */
				for (size_t i = 0; i < lits.count && !found; i++)
					found = contains(subject, slen, &lits.items[i]);
			}
			if (!found) {
				fprintf(stderr, "/%s/ matched \"%.*s\" without any of its %zu literals "
					"(first: \"%s\")\n", pattern, (int)(end - start), subject + start,
					lits.count, lits.items[0].text);
				abort();
			}
		}
		pcre2_match_data_free(md);
		pcre2_match_context_free(mc);
	}
	spam_litset_free(&lits);
	pcre2_code_free(re);
	free(pattern);
	return 0;
}
