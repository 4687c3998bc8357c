/*
 * fuzz_dnsbl_spec.c - libFuzzer target for the DNS blocklist settings
 * (src/policy/dnsbl_spec.c): list specs and reply templates, as an
 * administrator writes them in postern.conf. The input is a spec, a
 * newline, and a template. Invariants: a parsed spec has a valid domain
 * that leaves room for an IPv6 query, |weight| <= DNSBL_WEIGHT_MAX and
 * not 0, filters within their bounds, and ranges lo <= hi; a template
 * that passes the check expands into printable ASCII within the buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/dnsbl.h"

static void check_site(const struct dnsbl_site *s)
{
	if (!dns_name_valid(s->domain) || strlen(s->domain) > DNSBL_DOMAIN_MAX)
		abort();
	if (s->weight == 0 || s->weight > DNSBL_WEIGHT_MAX || s->weight < -DNSBL_WEIGHT_MAX)
		abort();
	if (s->pattern_count > DNSBL_MAX_PATTERNS)
		abort();
	for (size_t i = 0; i < s->pattern_count; i++)
		for (size_t k = 0; k < 4; k++) {
			const struct dnsbl_octet *o = &s->patterns[i].octets[k];
			if (o->count == 0 || o->count > DNSBL_MAX_RANGES)
				abort();
			for (size_t r = 0; r < o->count; r++)
				if (o->ranges[r].lo > o->ranges[r].hi)
					abort();
		}
	static const unsigned char answers[][4] = {
		{ 127, 0, 0, 2 }, { 127, 255, 255, 254 }, { 192, 0, 2, 1 }, { 0, 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
		(void)dnsbl_site_matches(s, answers[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	char *tpl = strchr(text, '\n');
	if (tpl != NULL)
		*tpl++ = '\0';
	struct dnsbl_site site;
	const char *err = NULL;
	if (dnsbl_site_parse(text, &site, &err))
		check_site(&site);
	else if (err == NULL)
		abort();
	if (tpl != NULL && dnsbl_template_check(tpl) == NULL) {
		struct dnsbl_vars v = { "192.0.2.1", "Client host", "192.0.2.1", "bl.test",
					"reason\twith\x01" "bytes\xff", "127.0.0.2" };
		char out[64];
		memset(out, 'X', sizeof(out));
		dnsbl_template_expand(tpl, &v, out, sizeof(out));
		size_t n = strnlen(out, sizeof(out));
		if (n >= sizeof(out))
			abort();
		for (size_t i = 0; i < n; i++)
			if (out[i] < 32 || out[i] > 126)
				abort();
	}
	free(text);
	return 0;
}
