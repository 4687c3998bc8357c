/*
 * map.c - what every map type shares (see map.h): the TYPE:PATH name,
 * reading the file with its bounds, logical lines (comments, blank lines,
 * continuations), FILE:LINE reports, and the reload when the file
 * changes. The types themselves are map_file.c, map_cidr.c and
 * map_regexp.c.
 *
 * Input: an administrator's file, bounded (MAP_FILE_MAX bytes,
 * MAP_LINE_MAX per logical line, no NUL bytes); lookup keys from SMTP
 * clients, passed on untouched. Runs in the supervisor (root) and
 * check-config at start, in the smtp workers (user) on reload.
 */
#include "map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/config.h"
#include "../lib/diag.h"
#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "map_internal.h"

/* How often a lookup looks at the file, and how long a changed file
 * must stay unchanged before it is read (it may be half written). */
#define MAP_CHECK_MS 1000
#define MAP_SETTLE_NS 1000000000LL

/* What tells one version of a file from another. */
struct file_version {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct map {
	char *name;               /* "file:/abs/path" */
	char *path;               /* "/abs/path" */
	enum map_type type;
	const struct map_ops *ops;
	map_value_check_fn *check;
	void *data;               /* the version in use */
	struct file_version loaded;
	struct file_version refused; /* a version with problems: not tried again */
	bool have_refused;
	uint64_t next_check_ms;
	buf_t scratch;            /* the value of the last lookup, when built */
};

static const struct {
	const char *prefix;
	enum map_type type;
	const struct map_ops *ops;
} map_types[] = {
	{ "file", MAP_TYPE_FILE, &map_file_ops },
	{ "cidr", MAP_TYPE_CIDR, &map_cidr_ops },
	{ "regexp", MAP_TYPE_REGEXP, &map_regexp_ops },
	{ "pcre", MAP_TYPE_REGEXP, &map_regexp_ops },
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void map_report(struct map_parse *p, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(p->errors, p->path, line, fmt, ap);
	va_end(ap);
	p->problems++;
}

bool map_split_entry(struct map_parse *p, unsigned line, char *text, char **key_r,
		     char **value_r)
{
	char *end = text + strcspn(text, " \t");
	char *value = end + strspn(end, " \t");
	if (*value == '\0') {
		map_report(p, line, "expected \"key value\": \"%s\" has no value", text);
		return false;
	}
	*end = '\0';
	size_t vlen = strlen(value);
	while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		value[--vlen] = '\0';
	*key_r = text;
	*value_r = value;
	return true;
}

bool map_check_value(struct map_parse *p, unsigned line, const char *value)
{
	const char *why = p->check != NULL ? p->check(value) : NULL;
	if (why == NULL)
		return true;
	map_report(p, line, "%s: \"%s\"", why, value);
	return false;
}

/* ---- reading a version -------------------------------------------------------- */

static void version_of(const struct stat *st, struct file_version *v)
{
	v->dev = st->st_dev;
	v->ino = st->st_ino;
	v->size = st->st_size;
	v->mtime = st->st_mtim;
}

static bool same_version(const struct file_version *a, const struct file_version *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The whole file, at most MAP_FILE_MAX bytes, and its version; false
 * after reporting. */
static bool read_file(struct map_parse *p, buf_t *text, struct file_version *v)
{
	int fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		map_report(p, 0, "cannot read: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	if (!S_ISREG(st.st_mode)) {
		map_report(p, 0, "not a regular file");
		close(fd);
		return false;
	}
	version_of(&st, v);
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			map_report(p, 0, "cannot read: %s", strerror(errno));
			close(fd);
			return false;
		}
		if (n == 0)
			break;
		if (text->len + (size_t)n > MAP_FILE_MAX) {
			map_report(p, 0, "larger than %u bytes", MAP_FILE_MAX);
			close(fd);
			return false;
		}
		buf_append(text, chunk, (size_t)n);
	}
	close(fd);
	return true;
}

/* Hand the logical line in *logical (started on line first) to the type. */
static void flush_logical(const struct map_ops *ops, void *data, struct map_parse *p,
			  buf_t *logical, unsigned first)
{
	if (logical->len == 0)
		return;
	if (logical->len > MAP_LINE_MAX)
		map_report(p, first, "logical line longer than %d bytes", MAP_LINE_MAX);
	else
		ops->add(data, p, first, logical->data);
	buf_reset(logical);
}

/* Cut text into logical lines and give each to the type. */
static void parse_lines(const struct map_ops *ops, void *data, struct map_parse *p,
			buf_t *text)
{
	buf_t logical = BUF_INIT;
	unsigned lineno = 0, first = 0;
	char *s = text->data != NULL ? text->data : "";
	char *end = s + text->len;
	while (s < end) {
		char *nl = memchr(s, '\n', (size_t)(end - s));
		char *eol = nl != NULL ? nl : end;
		size_t len = (size_t)(eol - s);
		lineno++;
		if (len > 0 && s[len - 1] == '\r')
			len--;
		if (memchr(s, '\0', len) != NULL) {
			map_report(p, lineno, "line contains a NUL byte");
		} else if (len > MAP_LINE_MAX) {
			map_report(p, lineno, "line longer than %d bytes", MAP_LINE_MAX);
		} else {
			slice_t t = slice_trim(slice_make(s, len));
			bool indented = len > 0 && (s[0] == ' ' || s[0] == '\t');
			if (t.len == 0 || t.ptr[0] == '#') {
				/* blank or comment: skipped, continuations go on */
			} else if (indented) {
				if (logical.len == 0)
					map_report(p, lineno, "continuation line without a line before it");
				else if (logical.len <= MAP_LINE_MAX) {
					buf_putc(&logical, ' ');
					buf_append(&logical, t.ptr, t.len);
				}
			} else {
				flush_logical(ops, data, p, &logical, first);
				first = lineno;
				buf_append(&logical, t.ptr, t.len);
			}
		}
		s = eol + 1;
	}
	flush_logical(ops, data, p, &logical, first);
	ops->done(data, p);
	buf_free(&logical);
}

/* Read and build one version; NULL after reporting its problems. */
static void *load_version(const struct map_ops *ops, const char *path,
			  map_value_check_fn *check, FILE *errors, struct file_version *v)
{
	struct map_parse p = { path, errors, 0, check };
	buf_t text = BUF_INIT;
	void *data = NULL;
	if (read_file(&p, &text, v)) {
		data = ops->create();
		parse_lines(ops, data, &p, &text);
		if (p.problems > 0) {
			ops->destroy(data);
			data = NULL;
		}
	}
	buf_free(&text);
	return data;
}

/* ---- opening and names ------------------------------------------------------------ */

/* The index in map_types of spec's type, or ARRAY_LEN(map_types). */
static size_t type_index(const char *spec)
{
	const char *colon = strchr(spec, ':');
	size_t n = colon != NULL ? (size_t)(colon - spec) : 0;
	for (size_t i = 0; colon != NULL && i < ARRAY_LEN(map_types); i++)
		if (strlen(map_types[i].prefix) == n && strncmp(spec, map_types[i].prefix, n) == 0)
			return i;
	return ARRAY_LEN(map_types);
}

static char *canonical_path(const char *spec, const char *base_dir)
{
	const char *file = strchr(spec, ':') + 1;
	char *joined = file[0] == '/' ? xstrdup(file) : safeio_path_join(base_dir, file);
	char *path = config_normalize_path(joined);
	free(joined);
	return path;
}

char *map_canonical_name(const char *spec, const char *base_dir)
{
	size_t which = type_index(spec);
	if (which == ARRAY_LEN(map_types) || strchr(spec, ':')[1] == '\0')
		return NULL;
	char *path = canonical_path(spec, base_dir);
	buf_t name = BUF_INIT;
	buf_printf(&name, "%s:%s", map_types[which].ops->name, path);
	free(path);
	return buf_steal(&name);
}

struct map *map_open(const char *spec, const char *base_dir, map_value_check_fn *check,
		     FILE *errors)
{
	size_t which = type_index(spec);
	if (which == ARRAY_LEN(map_types)) {
		fprintf(errors, "%s: not a map: expected file:PATH, cidr:PATH or regexp:PATH "
			"(postern reads text tables itself: no postmap, no hash:)\n", spec);
		return NULL;
	}
	if (strchr(spec, ':')[1] == '\0') {
		fprintf(errors, "%s: the map names no file\n", spec);
		return NULL;
	}
	struct map *m = xcalloc(1, sizeof(*m));
	m->path = canonical_path(spec, base_dir);
	m->type = map_types[which].type;
	m->ops = map_types[which].ops;
	m->check = check;
	m->name = map_canonical_name(spec, base_dir);
	m->data = load_version(m->ops, m->path, check, errors, &m->loaded);
	if (m->data == NULL) {
		map_free(&m);
		return NULL;
	}
	m->next_check_ms = now_ms() + MAP_CHECK_MS;
	return m;
}

void map_free(struct map **mp)
{
	struct map *m = *mp;
	if (m == NULL)
		return;
	if (m->data != NULL)
		m->ops->destroy(m->data);
	free(m->name);
	free(m->path);
	buf_free(&m->scratch);
	xfree(mp);
}

const char *map_name(const struct map *m)
{
	return m->name;
}

enum map_type map_get_type(const struct map *m)
{
	return m->type;
}

size_t map_size(const struct map *m)
{
	return m->ops->size(m->data);
}

/* ---- reloading -------------------------------------------------------------------- */

/* Log what a reload found, one line each, as warnings. */
static void log_findings(char *text)
{
	for (char *line = text, *nl; line != NULL && *line != '\0'; line = nl) {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl++ = '\0';
		log_warn("%s", line);
	}
}

/* Was the file changed less than a second ago (maybe still being
 * written)? */
static bool settling(const struct stat *st)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	long long age = (long long)(now.tv_sec - st->st_mtim.tv_sec) * 1000000000LL +
			(now.tv_nsec - st->st_mtim.tv_nsec);
	return age >= 0 && age < MAP_SETTLE_NS;
}

bool map_refresh_now(struct map *m)
{
	struct stat st;
	struct file_version v;
	m->next_check_ms = now_ms() + MAP_CHECK_MS;
	if (stat(m->path, &st) < 0) {
		/* Gone or unreadable for now: the loaded version serves. */
		if (!m->have_refused || m->refused.ino != 0) {
			log_warn("map %s: %s: keeping the version loaded before", m->name,
				 strerror(errno));
			memset(&m->refused, 0, sizeof(m->refused));
			m->have_refused = true;
		}
		return false;
	}
	version_of(&st, &v);
	if (same_version(&v, &m->loaded) || (m->have_refused && same_version(&v, &m->refused)))
		return false;
	if (settling(&st))
		return false; /* the next check reads it */
	char *text = NULL;
	size_t len = 0;
	FILE *errors = open_memstream(&text, &len);
	if (errors == NULL)
		return false;
	struct file_version got;
	void *data = load_version(m->ops, m->path, m->check, errors, &got);
	fclose(errors);
	if (data == NULL) {
		log_findings(text);
		log_warn("map %s: the changed file has problems: keeping the version loaded before",
			 m->name);
		m->refused = v;
		m->have_refused = true;
	} else {
		m->ops->destroy(m->data);
		m->data = data;
		m->loaded = got;
		m->have_refused = false;
		log_info("map %s: reloaded (%zu entries)", m->name, m->ops->size(data));
	}
	free(text);
	return data != NULL;
}

const char *map_lookup(struct map *m, const char *key)
{
	if (now_ms() >= m->next_check_ms)
		(void)map_refresh_now(m);
	buf_reset(&m->scratch);
	return m->ops->lookup(m->data, key, &m->scratch);
}
