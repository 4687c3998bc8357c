/*
 * domains.c - the local domains table (see domains.h): domains_file
 * parsed line by line, local_domains added, lookups by name.
 *
 * Untrusted input: an administrator's file, read by the supervisor (as
 * root) and by `postern domain`; each line is bounded (DOMAINS_LINE_MAX)
 * and the file too (DOMAINS_FILE_MAX); problems are "FILE:LINE: message".
 */
#include "domains.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/config.h"
#include "../lib/diag.h"
#include "../lib/hashmap.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "recipients.h"

struct domain_table {
	hashmap_t by_name; /* name -> struct domain_entry * */
};

void domains_entry_clear(struct domain_entry *e)
{
	free(e->name);
	free(e->catch_all);
	memset(e, 0, sizeof(*e));
}

/* Cut the next word (spaces or tabs between words) off *p; NULL if none. */
static char *next_word(char **p)
{
	char *s = *p + strspn(*p, " \t");
	if (*s == '\0')
		return NULL;
	char *end = s + strcspn(s, " \t");
	if (*end != '\0')
		*end++ = '\0';
	*p = end;
	return s;
}

/* One "key=value" setting into e; NULL or what is wrong. */
static const char *parse_setting(char *word, struct domain_entry *e)
{
	char *eq = strchr(word, '=');
	if (eq == NULL)
		return "expected key=value after the domain (quota=SIZE, catch_all=ADDRESS)";
	*eq = '\0';
	char *value = eq + 1;
	if (strcmp(word, "quota") == 0) {
		if (!str_parse_size(value, &e->quota))
			return "quota: expected a size such as 1G, 500M or 0 (none)";
		return NULL;
	}
	if (strcmp(word, "catch_all") == 0) {
		str_lower(value);
		if (!config_valid_address(value))
			return "catch_all: expected an address local@domain";
		free(e->catch_all);
		e->catch_all = xstrdup(value);
		return NULL;
	}
	return "unknown setting (expected quota=SIZE or catch_all=ADDRESS)";
}

const char *domains_parse_line(char *line, struct domain_entry *entry_r)
{
	memset(entry_r, 0, sizeof(*entry_r));
	char *p = line;
	char *name = next_word(&p);
	if (name == NULL)
		return "expected a domain name";
	str_lower(name);
	if (!config_valid_domain(name))
		return "not a valid domain name";
	entry_r->name = xstrdup(name);
	for (char *word = next_word(&p); word != NULL; word = next_word(&p)) {
		const char *err = parse_setting(word, entry_r);
		if (err != NULL) {
			domains_entry_clear(entry_r);
			return err;
		}
	}
	return NULL;
}

char *domains_format_line(const struct domain_entry *e)
{
	buf_t b = BUF_INIT;
	buf_puts(&b, e->name);
	if (e->quota != 0 || e->catch_all != NULL) {
		size_t pad = strlen(e->name) < 24 ? 24 - strlen(e->name) : 1;
		buf_printf(&b, "%*s", (int)pad, "");
	}
	if (e->quota != 0) {
		char size[32];
		domains_format_size(e->quota, size, sizeof(size));
		buf_printf(&b, "quota=%s", size);
	}
	if (e->catch_all != NULL)
		buf_printf(&b, "%scatch_all=%s", e->quota != 0 ? " " : "", e->catch_all);
	return buf_steal(&b);
}

static void free_entry(void *p)
{
	domains_entry_clear(p);
	free(p);
}

struct load_ctx {
	struct domain_table *t;
	const char *path;
	FILE *errors;
	int error_count;
};

static void load_error(struct load_ctx *c, unsigned line, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void load_error(struct load_ctx *c, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(c->errors, c->path, line, fmt, ap);
	va_end(ap);
	c->error_count++;
}

static void load_line(struct load_ctx *c, char *line, unsigned lineno)
{
	struct domain_entry e;
	const char *err = domains_parse_line(line, &e);
	if (err != NULL) {
		load_error(c, lineno, "%s", err);
		return;
	}
	const struct domain_entry *old = hashmap_get(&c->t->by_name, e.name, NULL);
	if (old != NULL) {
		load_error(c, lineno, "domain \"%s\" is listed twice (first on line %u)", e.name,
			   old->line);
		domains_entry_clear(&e);
		return;
	}
	struct domain_entry *stored = xmalloc(sizeof(*stored));
	*stored = e;
	stored->line = lineno;
	hashmap_put(&c->t->by_name, stored->name, stored);
}

/* Each line: CR LF or LF ends it, '#' starts a comment line, blank lines
 * are skipped, NUL bytes and overlong lines are errors. */
static void load_text(struct load_ctx *c, buf_t *text)
{
	char *p = text->data != NULL ? text->data : "", *end = p + text->len;
	unsigned lineno = 0;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl != NULL ? nl : end;
		lineno++;
		size_t len = (size_t)(eol - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (memchr(p, '\0', len) != NULL) {
			load_error(c, lineno, "line contains a NUL byte");
		} else if (len > DOMAINS_LINE_MAX) {
			load_error(c, lineno, "line longer than %d bytes", DOMAINS_LINE_MAX);
		} else {
			p[len] = '\0';
			char *first = p + strspn(p, " \t");
			if (*first != '#' && *first != '\0')
				load_line(c, first, lineno);
		}
		p = eol + 1;
	}
}

struct domain_table *domains_load(const char *path, const strlist_t *config_domains,
				  FILE *errors)
{
	struct domain_table *t = xcalloc(1, sizeof(*t));
	struct load_ctx c = { t, path, errors, 0 };
	if (path != NULL && path[0] != '\0') {
		buf_t text = BUF_INIT;
		if (safeio_read_file(path, DOMAINS_FILE_MAX, &text) < 0) {
			fprintf(errors, "domains_file %s: cannot read: %s\n", path,
				errno == EFBIG ? "larger than 64 MiB"
				: errno == ENOENT ? "no such file (postern domain add creates it)"
				: strerror(errno));
			c.error_count++;
		} else {
			load_text(&c, &text);
		}
		buf_free(&text);
	}
	for (size_t i = 0; config_domains != NULL && i < config_domains->count; i++) {
		char *name = xstrdup(config_domains->items[i]);
		str_lower(name);
		if (hashmap_contains(&t->by_name, name)) {
			free(name);
			continue;
		}
		struct domain_entry *e = xcalloc(1, sizeof(*e));
		e->name = name;
		hashmap_put(&t->by_name, name, e);
	}
	if (c.error_count > 0)
		domains_free(&t);
	return t;
}

void domains_free(struct domain_table **t)
{
	if (*t == NULL)
		return;
	hashmap_free(&(*t)->by_name, free_entry);
	xfree(t);
}

const struct domain_entry *domains_find(const struct domain_table *t, const char *domain)
{
	char key[256];
	size_t len = strlen(domain);
	if (t == NULL || len >= sizeof(key))
		return NULL;
	memcpy(key, domain, len + 1);
	str_lower(key);
	return hashmap_get(&t->by_name, key, NULL);
}

size_t domains_count(const struct domain_table *t)
{
	return t != NULL ? t->by_name.count : 0;
}

static int by_name(const void *a, const void *b)
{
	const struct domain_entry *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

const struct domain_entry **domains_sorted(const struct domain_table *t, size_t *count_r)
{
	size_t n = domains_count(t), i = 0, pos = 0;
	const struct domain_entry **out = xcalloc(n + 1, sizeof(*out));
	const char *key;
	void *value;
	while (t != NULL && hashmap_next(&t->by_name, &pos, &key, &value) && i < n)
		out[i++] = value;
	qsort(out, i, sizeof(*out), by_name);
	*count_r = i;
	return out;
}

void domains_merge_into(const struct domain_table *t, strlist_t *list)
{
	size_t n;
	const struct domain_entry **all = domains_sorted(t, &n);
	for (size_t i = 0; i < n; i++)
		if (!strlist_contains_nocase(list, all[i]->name))
			strlist_add(list, all[i]->name);
	free(all);
}

struct domain_table *domains_load_config(struct config *cfg, FILE *errors)
{
	struct domain_table *t = domains_load(cfg->domains_file, &cfg->local_domains, errors);
	if (t == NULL)
		return NULL;
	size_t n;
	int problems = 0;
	const struct domain_entry **all = domains_sorted(t, &n);
	for (size_t i = 0; i < n; i++) {
		if (all[i]->line == 0 ||
		    !strlist_contains_nocase(&cfg->relay_domains, all[i]->name))
			continue;
		fprintf(errors, "%s:%u: domain \"%s\" is also in relay_domains (%s): a domain "
			"is either delivered here or relayed\n", cfg->domains_file, all[i]->line,
			all[i]->name, cfg->path);
		problems++;
	}
	free(all);
	if (problems > 0) {
		domains_free(&t);
		return NULL;
	}
	domains_merge_into(t, &cfg->local_domains);
	return t;
}

void domains_format_size(uint64_t bytes, char *buf_r, size_t size)
{
	static const struct { char unit; uint64_t factor; } units[] = {
		{ 'G', 1024ULL * 1024 * 1024 }, { 'M', 1024ULL * 1024 }, { 'K', 1024 },
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (bytes != 0 && bytes % units[i].factor == 0) {
			snprintf(buf_r, size, "%llu%c",
				 (unsigned long long)(bytes / units[i].factor), units[i].unit);
			return;
		}
	}
	snprintf(buf_r, size, "%llu", (unsigned long long)bytes);
}

void domains_warn_catch_all(const struct recipient_tables *t, const char *path, FILE *out)
{
	size_t n;
	const struct domain_entry **all = domains_sorted(recipients_domains(t), &n);
	for (size_t i = 0; i < n; i++) {
		const char *target = all[i]->catch_all;
		if (target == NULL || !recipients_domain_is_local(t, strrchr(target, '@') + 1) ||
		    recipients_is_user(t, target) || recipients_alias(t, target) != NULL)
			continue;
		fprintf(out, "warning: %s:%u: catch_all %s of %s is neither a user nor an alias: "
			"mail to unknown addresses of %s will bounce\n", path, all[i]->line, target,
			all[i]->name, all[i]->name);
	}
	free(all);
}

/* ---- the lookups of the recipient tables (recipients.h) ---- */

bool recipients_domain_is_local(const struct recipient_tables *t, const char *domain)
{
	return domains_find(recipients_domains(t), domain) != NULL;
}

uint64_t recipients_domain_quota(const struct recipient_tables *t, const char *domain)
{
	const struct domain_entry *e = domains_find(recipients_domains(t), domain);
	return e != NULL ? e->quota : 0;
}

bool recipients_any_domain_quota(const struct recipient_tables *t)
{
	size_t n;
	bool any = false;
	const struct domain_entry **all = domains_sorted(recipients_domains(t), &n);
	for (size_t i = 0; i < n && !any; i++)
		any = all[i]->quota != 0;
	free(all);
	return any;
}

const char *recipients_catch_all(const struct recipient_tables *t, const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL || recipients_is_user(t, address) || recipients_alias(t, address) != NULL)
		return NULL;
	const struct domain_entry *e = domains_find(recipients_domains(t), at + 1);
	if (e == NULL || e->catch_all == NULL || strcmp(e->catch_all, address) == 0)
		return NULL;
	return e->catch_all;
}
