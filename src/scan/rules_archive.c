/*
 * rules_archive.c - the names inside an attached archive, for the
 * content rules' "in-archive" and "encrypted-archive" tests: libarchive
 * reads the part's bytes from memory, and archives found inside (by name
 * or by their first bytes) are opened in turn.
 *
 * Untrusted input: the archive bytes, from the message. Every walk is
 * bounded in names, nesting depth, bytes decompressed, bytes of one inner
 * archive held in memory, and wall time; a damaged archive, a format we
 * do not read, or a bound reached ends the walk with "unreadable" and a
 * reason, never a crash. Only formats and filters libarchive decodes in
 * process are enabled (a filter that would run an external program is
 * never registered). Runs in the unprivileged scanner processes.
 */
#include "rules.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/buf.h"
#include "../lib/xalloc.h"

const struct scan_rules_archive_limits scan_rules_archive_default_limits = {
	.max_entries = 10000,
	.max_depth = 4,
	.max_bytes = 256ULL * 1024 * 1024,
	.max_inner_bytes = 16 * 1024 * 1024,
	.max_ms = 3000,
};

#define HEAD_BYTES 512      /* bytes of a member looked at for an archive's signature */
#define CHUNK_BYTES 65536

struct walk {
	const struct scan_rules_archive_limits *lim;
	struct scan_rules_archive_listing *out;
	size_t entries;
	uint64_t bytes;
	uint64_t deadline_ms;
	char *chunk;        /* CHUNK_BYTES, reused (members are read one at a time) */
	bool stop;          /* a bound of the whole walk was reached */
};

static void problem(struct walk *w, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* The first problem is kept: it is the one that explains the others. */
static void problem(struct walk *w, const char *fmt, ...)
{
	w->out->unreadable = true;
	if (w->out->problem[0] != '\0')
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->out->problem, sizeof(w->out->problem), fmt, ap);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool out_of_time(struct walk *w)
{
	if (now_ms() <= w->deadline_ms)
		return false;
	problem(w, "out of time");
	w->stop = true;
	return true;
}

/* ---- readers ------------------------------------------------------------ */

typedef int (*support_fn)(struct archive *);

static const support_fn filters[] = {
	archive_read_support_filter_gzip, archive_read_support_filter_bzip2,
	archive_read_support_filter_xz,   archive_read_support_filter_lzma,
	archive_read_support_filter_zstd, archive_read_support_filter_lz4,
	archive_read_support_filter_compress,
};

/* Which filters decode in process: ARCHIVE_WARN means libarchive would
 * run an external program instead, which a scanner must never do. */
static int filter_in_process[ARRAY_LEN(filters)]; /* 0 unknown, 1 yes, -1 no */

static void probe_filters(void)
{
	if (filter_in_process[0] != 0)
		return;
	for (size_t i = 0; i < ARRAY_LEN(filters); i++) {
		struct archive *a = archive_read_new();
		filter_in_process[i] = a != NULL && filters[i](a) == ARCHIVE_OK ? 1 : -1;
		archive_read_free(a);
	}
}

/* A reader over data[0..len); *opened_r: it recognised the format. */
static struct archive *open_reader(const void *data, size_t len, bool *opened_r)
{
	probe_filters();
	struct archive *a = archive_read_new();
	if (a == NULL)
		return NULL;
	archive_read_support_format_zip(a);
	archive_read_support_format_7zip(a);
	archive_read_support_format_rar(a);
	archive_read_support_format_rar5(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_cpio(a);
	archive_read_support_format_cab(a);
	archive_read_support_format_iso9660(a);
	archive_read_support_format_lha(a);
	archive_read_support_format_xar(a);
	archive_read_support_format_ar(a);
	/* Last: a single compressed file (its bidder takes anything). */
	archive_read_support_format_raw(a);
	for (size_t i = 0; i < ARRAY_LEN(filters); i++)
		if (filter_in_process[i] == 1)
			filters[i](a);
	*opened_r = archive_read_open_memory(a, data, len) == ARCHIVE_OK;
	return a;
}

static const char *error_of(struct archive *a)
{
	const char *e = archive_error_string(a);
	return e != NULL ? e : "damaged";
}

/* Can the data of the current entry be passed over without decoding it
 * (the reader seeks in our memory)? */
static bool skip_is_cheap(struct archive *a)
{
	if (archive_filter_count(a) > 1)
		return false;
	switch (archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) {
	case ARCHIVE_FORMAT_ZIP:
	case ARCHIVE_FORMAT_TAR:
	case ARCHIVE_FORMAT_CPIO:
	case ARCHIVE_FORMAT_ISO9660:
	case ARCHIVE_FORMAT_AR:
		return true;
	default:
		return false;
	}
}

static bool is_raw(struct archive *a)
{
	return (archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_RAW;
}

/* ---- archives inside archives ------------------------------------------- */

static bool has_suffix_nocase(const char *name, const char *suffix)
{
	size_t n = strlen(name), s = strlen(suffix);
	return n > s && name[n - s - 1] == '.' && str_eq_nocase(name + n - s, suffix);
}

static bool name_says_archive(const char *name)
{
	static const char *const exts[] = { "zip", "7z", "rar", "tar", "tgz", "tbz", "tbz2",
					    "txz", "gz", "bz2", "xz", "lzma", "zst", "lz4", "z",
					    "cab", "iso", "lzh", "lha", "cpio", "xar", "ar" };
	for (size_t i = 0; i < ARRAY_LEN(exts); i++)
		if (has_suffix_nocase(name, exts[i]))
			return true;
	return false;
}

static bool starts_with(const buf_t *b, size_t at, const void *sig, size_t n)
{
	return b->len >= at + n && memcmp(b->data + at, sig, n) == 0;
}

/* The signatures of the formats and filters we read. */
static bool head_says_archive(const buf_t *b)
{
	return starts_with(b, 0, "PK\3\4", 4) || starts_with(b, 0, "PK\5\6", 4) ||
	       starts_with(b, 0, "7z\xbc\xaf\x27\x1c", 6) || starts_with(b, 0, "Rar!\x1a\x07", 6) ||
	       starts_with(b, 0, "\x1f\x8b", 2) || starts_with(b, 0, "BZh", 3) ||
	       starts_with(b, 0, "\xfd" "7zXZ", 5) || starts_with(b, 0, "\x28\xb5\x2f\xfd", 4) ||
	       starts_with(b, 0, "\x04\x22\x4d\x18", 4) || starts_with(b, 0, "MSCF", 4) ||
	       starts_with(b, 0, "\x1f\x9d", 2) || starts_with(b, 0, "!<arch>\n", 8) ||
	       starts_with(b, 0, "xar!", 4) || starts_with(b, 0, "07070", 5) || starts_with(b, 257, "ustar", 5);
}

static void walk_archive(struct walk *w, const void *data, size_t len, unsigned depth);

/*
 * Read the current entry's data: keep it if it is an archive (by its
 * name or first bytes) and open that in turn; otherwise pass over it,
 * counting what had to be decoded.
 */
static void pass_data(struct walk *w, struct archive *a, const char *name, unsigned depth)
{
	bool raw = is_raw(a), cheap = skip_is_cheap(a);
	bool decided = false, nested = false;
	buf_t held = BUF_INIT;
	for (;;) {
		la_ssize_t k = archive_read_data(a, w->chunk, CHUNK_BYTES);
		if (k < 0) {
			problem(w, "%s: %s", name, error_of(a));
			break;
		}
		if (k == 0)
			break;
		w->bytes += (uint64_t)k;
		if (w->bytes > w->lim->max_bytes) {
			problem(w, "more than %llu bytes to decompress",
				(unsigned long long)w->lim->max_bytes);
			w->stop = true;
			break;
		}
		if (out_of_time(w))
			break;
		if (!decided || nested) {
			if (held.len + (size_t)k > w->lim->max_inner_bytes) {
				problem(w, "%s: an inner archive larger than %zu bytes", name,
					w->lim->max_inner_bytes);
				nested = false;
				decided = true;
				buf_free(&held);
				if (cheap)
					break;
				continue;
			}
			buf_append(&held, w->chunk, (size_t)k);
		}
		if (!decided && held.len >= HEAD_BYTES) {
			decided = true;
			nested = (!raw && name_says_archive(name)) || head_says_archive(&held);
			if (!nested) {
				buf_free(&held);
				if (cheap)
					break; /* the next header seeks past the rest */
			}
		}
	}
	if (!decided)
		nested = (!raw && name_says_archive(name)) || head_says_archive(&held);
	if (nested && held.len > 0 && !w->stop) {
		if (depth >= w->lim->max_depth)
			problem(w, "archives nested deeper than %u", w->lim->max_depth);
		else
			walk_archive(w, held.data, held.len, depth + 1);
	}
	buf_free(&held);
}

static void add_member(struct walk *w, const char *name, unsigned depth, bool encrypted)
{
	struct scan_rules_archive_listing *out = w->out;
	out->members = xreallocarray(out->members, out->count + 1, sizeof(*out->members));
	struct scan_rules_archive_member *m = &out->members[out->count++];
	m->name = xstrdup(name);
	m->depth = depth;
	m->encrypted = encrypted;
}

/* One archive; its entries are at depth `depth` (1 = the attached one). */
static void walk_archive(struct walk *w, const void *data, size_t len, unsigned depth)
{
	bool opened;
	struct archive *a = open_reader(data, len, &opened);
	if (a == NULL) {
		problem(w, "out of memory");
		return;
	}
	if (!opened) {
		problem(w, "%s", error_of(a));
		archive_read_free(a);
		return;
	}
	for (;;) {
		if (w->stop || out_of_time(w))
			break;
		struct archive_entry *e;
		int r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			problem(w, "%s", error_of(a));
			break;
		}
		if (is_raw(a) && archive_filter_count(a) <= 1) {
			problem(w, "not an archive");
			break;
		}
		if (++w->entries > w->lim->max_entries) {
			problem(w, "more than %zu names", w->lim->max_entries);
			w->stop = true;
			break;
		}
		const char *name = archive_entry_pathname_utf8(e);
		if (name == NULL)
			name = archive_entry_pathname(e);
		if (name == NULL)
			name = "";
		bool encrypted = archive_entry_is_encrypted(e) > 0;
		if (!is_raw(a))
			add_member(w, name, depth, encrypted);
		if (encrypted)
			w->out->encrypted = true;
		else if (archive_entry_filetype(e) == AE_IFREG)
			pass_data(w, a, name, depth);
	}
	/* (Only asked of a reader that recognised its format: libarchive
	 * 3.6 reads out of bounds otherwise.) */
	if (archive_read_has_encrypted_entries(a) > 0)
		w->out->encrypted = true;
	archive_read_free(a);
}

void scan_rules_archive_list(const void *data, size_t len,
			     const struct scan_rules_archive_limits *limits,
			     struct scan_rules_archive_listing *out)
{
	memset(out, 0, sizeof(*out));
	struct walk w = { .lim = limits, .out = out, .deadline_ms = now_ms() + limits->max_ms };
	if (len == 0) {
		problem(&w, "empty");
		return;
	}
	w.chunk = xmalloc(CHUNK_BYTES);
	walk_archive(&w, data, len, 1);
	free(w.chunk);
	out->entries_seen = w.entries;
	out->bytes_read = w.bytes;
}

void scan_rules_archive_listing_free(struct scan_rules_archive_listing *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->members[i].name);
	free(l->members);
	memset(l, 0, sizeof(*l));
}
