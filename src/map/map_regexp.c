/*
 * map_regexp.c - regexp: (and pcre:) maps (see map.h): "/pattern/flags
 * value" lines compiled with PCRE2, tried in file order, the first match
 * wins. "!/pattern/ value" matches a key the pattern does not match. Any
 * character other than a letter, a digit, white space or a backslash may
 * delimit the pattern ("#a/b#"); a backslash before the delimiter keeps
 * it in the pattern. Patterns match without regard to case unless the
 * flag i is given (it toggles, as in Postfix's tables); the other flags
 * are m (multi-line), s (dot matches a line end), x (extended), A
 * (anchored) and U (ungreedy). In the value, $1..$9 and ${1}..${99} are
 * the pattern's captures, $$ is a dollar sign.
 *
 * Bounds: MAP_REGEXP_MAX patterns, each at most a logical line; every
 * match runs under PCRE2's match, depth and heap limits (a key that hits
 * one matches nothing, and a warning says so at most once a minute).
 *
 * Input: an administrator's file; lookup keys from SMTP clients
 * (addresses, HELO names: untrusted, any bytes). Runs in the supervisor,
 * check-config and the smtp workers.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "map_internal.h"

#define WARN_EVERY_SECONDS 60

struct regexp_entry {
	pcre2_code *re;
	bool negated;
	char *value;
	char *text;    /* "/pattern/flags", for warnings */
};

struct regexp_map {
	struct regexp_entry *items;
	size_t count, cap;
	bool full;
	uint32_t max_captures;
	pcre2_compile_context *compile_ctx;
	pcre2_match_context *match_ctx;
	pcre2_match_data *match_data;
	pcre2_jit_stack *jit_stack;
	time_t warned; /* the last match-limit warning */
};

static void *regexp_create(void)
{
	struct regexp_map *rm = xcalloc(1, sizeof(*rm));
	rm->compile_ctx = pcre2_compile_context_create(NULL);
	rm->match_ctx = pcre2_match_context_create(NULL);
	rm->jit_stack = pcre2_jit_stack_create(32 * 1024, 512 * 1024, NULL);
	if (rm->compile_ctx == NULL || rm->match_ctx == NULL || rm->jit_stack == NULL)
		log_fatal("regexp map: out of memory");
	pcre2_set_max_pattern_length(rm->compile_ctx, MAP_LINE_MAX);
	pcre2_set_match_limit(rm->match_ctx, MAP_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(rm->match_ctx, MAP_REGEX_DEPTH_LIMIT);
	pcre2_set_heap_limit(rm->match_ctx, MAP_REGEX_HEAP_KIB);
	pcre2_jit_stack_assign(rm->match_ctx, NULL, rm->jit_stack);
	return rm;
}

static bool is_delimiter(char c)
{
	return c != '\0' && c != ' ' && c != '\t' && c != '\\' &&
	       !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
}

/* PCRE2 options for the flags; false after reporting an unknown one. */
static bool flag_options(struct map_parse *p, unsigned line, const char *flags, size_t n,
			 uint32_t *opts_r)
{
	uint32_t opts = PCRE2_CASELESS;
	for (size_t i = 0; i < n; i++) {
		switch (flags[i]) {
		case 'i': opts ^= PCRE2_CASELESS; break;
		case 'm': opts |= PCRE2_MULTILINE; break;
		case 's': opts |= PCRE2_DOTALL; break;
		case 'x': opts |= PCRE2_EXTENDED; break;
		case 'A': opts |= PCRE2_ANCHORED; break;
		case 'U': opts |= PCRE2_UNGREEDY; break;
		default:
			map_report(p, line, "unknown pattern flag '%c' (known: i m s x A U)", flags[i]);
			return false;
		}
	}
	*opts_r = opts;
	return true;
}

/* The $ references of value are well formed and within the captures;
 * false after reporting. */
static bool check_references(struct map_parse *p, unsigned line, const char *value,
			     uint32_t captures, bool negated)
{
	for (const char *s = value; *s != '\0'; s++) {
		if (*s != '$')
			continue;
		unsigned n = 0;
		if (s[1] == '$') {
			s++;
			continue;
		} else if (s[1] >= '1' && s[1] <= '9') {
			n = (unsigned)(s[1] - '0');
			s++;
		} else if (s[1] == '{' && s[2] >= '1' && s[2] <= '9') {
			n = (unsigned)(s[2] - '0');
			size_t k = 3;
			if (s[k] >= '0' && s[k] <= '9')
				n = n * 10 + (unsigned)(s[k++] - '0');
			if (s[k] != '}') {
				map_report(p, line, "bad reference in the value: write ${1} to ${99}");
				return false;
			}
			s += k;
		} else {
			map_report(p, line, "a '$' in the value must be $1..$9, ${N} or $$");
			return false;
		}
		if (negated) {
			map_report(p, line, "$%u: a negated pattern has no captures", n);
			return false;
		}
		if (n > captures) {
			map_report(p, line, "$%u: the pattern has %u capture%s", n, (unsigned)captures,
				   captures == 1 ? "" : "s");
			return false;
		}
	}
	return true;
}

static bool is_word(const char *text, const char *word)
{
	size_t n = strlen(word);
	return strncmp(text, word, n) == 0 && (text[n] == '\0' || text[n] == ' ' || text[n] == '\t');
}

static bool regexp_add(void *data, struct map_parse *p, unsigned line, char *text)
{
	struct regexp_map *rm = data;
	bool negated = text[0] == '!';
	char *s = text + (negated ? 1 : 0);
	if (is_word(text, "if") || is_word(text, "endif")) {
		map_report(p, line, "if/endif blocks are not supported: write each pattern in full");
		return false;
	}
	char delim = *s;
	if (!is_delimiter(delim)) {
		map_report(p, line, "expected /pattern/ at the start of the line");
		return false;
	}
	char *pattern = ++s;
	while (*s != '\0' && *s != delim)
		s += (s[0] == '\\' && s[1] != '\0') ? 2 : 1;
	if (*s != delim) {
		map_report(p, line, "the pattern has no closing '%c'", delim);
		return false;
	}
	size_t plen = (size_t)(s - pattern);
	char *flags = ++s;
	size_t flen = strcspn(flags, " \t");
	char *value = flags + flen + strspn(flags + flen, " \t");
	uint32_t opts;
	if (plen == 0) {
		map_report(p, line, "empty pattern");
		return false;
	}
	if (*value == '\0') {
		map_report(p, line, "the pattern has no value after it");
		return false;
	}
	if (!flag_options(p, line, flags, flen, &opts))
		return false;
	if (rm->count >= MAP_REGEXP_MAX) {
		if (!rm->full)
			map_report(p, line, "more than %u patterns", MAP_REGEXP_MAX);
		rm->full = true;
		return false;
	}
	size_t vlen = strlen(value);
	while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		value[--vlen] = '\0';
	int code;
	PCRE2_SIZE offset;
	opts |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, plen, opts, &code, &offset,
				       rm->compile_ctx);
	if (re == NULL) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(code, msg, sizeof(msg));
		map_report(p, line, "bad pattern: %s (at character %zu)", (char *)msg,
			   (size_t)offset + 1);
		return false;
	}
	uint32_t captures = 0;
	pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &captures);
	if (!check_references(p, line, value, captures, negated) ||
	    !map_check_value(p, line, value)) {
		pcre2_code_free(re);
		return false;
	}
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter serves otherwise */
	if (rm->count == rm->cap) {
		rm->cap = rm->cap == 0 ? 16 : rm->cap * 2;
		rm->items = xreallocarray(rm->items, rm->cap, sizeof(*rm->items));
	}
	struct regexp_entry *e = &rm->items[rm->count++];
	e->re = re;
	e->negated = negated;
	e->value = xstrdup(value);
	e->text = xstrndup(text, (size_t)(flags + flen - text));
	if (captures > rm->max_captures)
		rm->max_captures = captures;
	return true;
}

static void regexp_done(void *data, struct map_parse *p)
{
	struct regexp_map *rm = data;
	(void)p;
	rm->match_data = pcre2_match_data_create(rm->max_captures + 1, NULL);
	if (rm->match_data == NULL)
		log_fatal("regexp map: out of memory");
}

/* The value with its $ references replaced, into out (at most
 * MAP_RESULT_MAX bytes). */
static void substitute(const char *value, const char *key, pcre2_match_data *md,
		       uint32_t pairs, buf_t *out)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
	for (const char *s = value; *s != '\0' && out->len < MAP_RESULT_MAX; s++) {
		if (*s != '$') {
			buf_putc(out, *s);
			continue;
		}
		unsigned n;
		if (s[1] == '$') {
			buf_putc(out, '$');
			s++;
			continue;
		}
		if (s[1] == '{') {
			n = (unsigned)(s[2] - '0');
			s += 3;
			if (*s != '}')
				n = n * 10 + (unsigned)(*s++ - '0');
		} else {
			n = (unsigned)(s[1] - '0');
			s++;
		}
		/* Checked when read: n is within the pattern's captures. A
		 * capture that did not take part is empty. */
		if (n < pairs && ov[2 * n] != PCRE2_UNSET) {
			size_t len = ov[2 * n + 1] - ov[2 * n];
			size_t room = MAP_RESULT_MAX - out->len;
			buf_append(out, key + ov[2 * n], len < room ? len : room);
		}
	}
}

static const char *regexp_lookup(void *data, const char *key, buf_t *scratch)
{
	struct regexp_map *rm = data;
	size_t klen = strlen(key);
	for (size_t i = 0; i < rm->count; i++) {
		const struct regexp_entry *e = &rm->items[i];
		int rc = pcre2_match(e->re, (PCRE2_SPTR)key, klen, 0, 0, rm->match_data,
				     rm->match_ctx);
		if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
			time_t now = time(NULL);
			if (now - rm->warned >= WARN_EVERY_SECONDS) {
				PCRE2_UCHAR msg[120];
				pcre2_get_error_message(rc, msg, sizeof(msg));
				log_warn("regexp map: %s: %s: taken as no match", e->text, (char *)msg);
				rm->warned = now;
			}
			continue;
		}
		bool matched = rc >= 0;
		if (matched == e->negated)
			continue;
		if (e->negated || strchr(e->value, '$') == NULL)
			return e->value;
		substitute(e->value, key, rm->match_data,
			   pcre2_get_ovector_count(rm->match_data), scratch);
		return buf_cstr(scratch);
	}
	return NULL;
}

static size_t regexp_size(const void *data)
{
	return ((const struct regexp_map *)data)->count;
}

static void regexp_destroy(void *data)
{
	struct regexp_map *rm = data;
	for (size_t i = 0; i < rm->count; i++) {
		pcre2_code_free(rm->items[i].re);
		free(rm->items[i].value);
		free(rm->items[i].text);
	}
	free(rm->items);
	pcre2_match_data_free(rm->match_data);
	pcre2_match_context_free(rm->match_ctx);
	pcre2_compile_context_free(rm->compile_ctx);
	pcre2_jit_stack_free(rm->jit_stack);
	free(rm);
}

const struct map_ops map_regexp_ops = {
	"regexp", regexp_create, regexp_add, regexp_done, regexp_lookup, regexp_size,
	regexp_destroy,
};
