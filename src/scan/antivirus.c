/*
 * antivirus.c - the antivirus stage of the content pipeline (scan.h):
 * libclamav in process, or clamd over a socket (clamd.c).
 *
 * In process, scan_antivirus_stage_new loads the signature folder
 * (clamav_db_dir) into one libclamav engine and compiles it; it runs in
 * the scan master before the scanners are forked, so that they share
 * the compiled engine copy-on-write and never build it again. Each
 * message is scanned from memory with mail parsing, archives (zip, gzip,
 * tar, ...), documents and executables on, within libclamav's limits
 * (clamav_max_*). Heuristics that flag ordinary mail (phishing URL
 * checks, macros, encrypted documents, personal data) are off. Those
 * that say "not scanned to the end" (Heuristics.Limits.Exceeded.*) are
 * on when clamav_alert_exceeds_max is: such a message gets virus_action
 * with "virus scan incomplete: NAME", except a scan past its time limit,
 * which is a failure of the stage (451, or scan_fail_open).
 *
 * A virus gets virus_action: reject (550 5.7.0 virus found: NAME),
 * quarantine or discard. Nobody is notified here, and never the sender.
 * A stage that cannot scan (clamd gone, a scan past its time) returns
 * -1, and the pipeline applies scan_fail_open.
 *
 * stale() compares the signature folder with the snapshot taken when
 * the engine was built, so that the scan master rebuilds it when
 * freshclam (or an administrator) changes a signature file.
 *
 * Untrusted input: the message (to libclamav or clamd) and the names
 * they report. Builds in the scan master, scans in the unprivileged
 * scanner processes and in `postern scan`. libclamav writes the parts it
 * extracts to temporary files in $TMPDIR (or /tmp) during a scan.
 */
#include "antivirus.h"

#include <clamav.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/compat.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "clamd.h"

#define AV_LIMIT_PREFIX "Heuristics.Limits.Exceeded."
#define AV_NAME_SIZE CLAMD_NAME_MAX

struct av_stage {
	struct cl_engine *engine; /* NULL: clamd */
	struct cl_scan_options options;
	char *db_dir;
	struct av_dbstat dbstat;
	struct clamd_target clamd;
	uint64_t max_file_size;
	uint64_t timeout_ms;
	bool alert_exceeds_max;
	enum virus_action action;
};

static char *errorf(const char *fmt, ...) PRINTF_LIKE(1, 2);
static char *errorf(const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return buf_steal(&b);
}

/* ---- names and verdicts ---- */

const char *av_mail_view_prefix(const unsigned char *data, size_t len)
{
	if ((len >= 10 && memcmp(data, "Received: ", 10) == 0) ||
	    (len >= 5 && memcmp(data, "From ", 5) == 0))
		return NULL;
	const unsigned char *nl = memchr(data, '\n', len);
	bool crlf = nl != NULL && nl > data && nl[-1] == '\r';
	return crlf ? "Received: by postern (antivirus view)\r\n"
		    : "Received: by postern (antivirus view)\n";
}

enum av_name_kind av_name_kind(const char *name)
{
	if (strncmp(name, AV_LIMIT_PREFIX, strlen(AV_LIMIT_PREFIX)) != 0)
		return AV_NAME_VIRUS;
	if (strcmp(name + strlen(AV_LIMIT_PREFIX), "MaxScanTime") == 0)
		return AV_NAME_TIME_LIMIT;
	return AV_NAME_LIMIT;
}

void av_name_clean(char *dst, size_t size, const char *name)
{
	if (size == 0)
		return;
	if (name == NULL || name[0] == '\0')
		name = "Unnamed";
	size_t i = 0;
	for (; name[i] != '\0' && i + 1 < size; i++) {
		unsigned char c = (unsigned char)name[i];
		dst[i] = c > 0x20 && c < 0x7f ? (char)c : '_';
	}
	dst[i] = '\0';
}

void av_verdict_virus(enum virus_action action, const char *name, struct scan_verdict *v)
{
	switch (action) {
	case VIRUS_ACTION_REJECT:
		v->action = SCAN_REJECT;
		v->code = 550;
		snprintf(v->status, sizeof(v->status), "5.7.0");
		break;
	case VIRUS_ACTION_QUARANTINE:
		v->action = SCAN_QUARANTINE;
		break;
	case VIRUS_ACTION_DISCARD:
		v->action = SCAN_DISCARD;
		break;
	}
	bool limit = av_name_kind(name) != AV_NAME_VIRUS;
	snprintf(v->text, sizeof(v->text), "%s: %s",
		 limit ? "virus scan incomplete" : "virus found", name);
	snprintf(v->reason, sizeof(v->reason), "%s", limit ? "virus_limit" : "virus");
	buf_t b = BUF_INIT;
	buf_printf(&b, "virus:%s", name);
	strlist_add(&v->hits, buf_cstr(&b));
	if (action == VIRUS_ACTION_QUARANTINE) {
		buf_reset(&b);
		buf_printf(&b, "X-Postern-Virus: %s", name);
		strlist_add(&v->headers, buf_cstr(&b));
	}
	buf_free(&b);
}

/* ---- the signature folder ---- */

bool av_is_signature_file(const char *name)
{
	/* The endings libclamav loads from a folder (clamav 1.4). */
	static const char *const endings[] = {
		".cvd", ".cld", ".cud", ".db", ".hdb", ".hdu", ".hsb", ".hsu", ".mdb",
		".mdu", ".msb", ".msu", ".ndb", ".ndu", ".ldb", ".ldu", ".sdb", ".zmd",
		".rmd", ".pdb", ".gdb", ".wdb", ".cbc", ".ftm", ".cfg", ".cdb", ".cat",
		".crb", ".idb", ".ioc", ".yar", ".yara", ".pwdb", ".ign", ".ign2",
		".imp", ".fp", ".sfp",
	};
	if (name[0] == '.')
		return false;
	size_t len = strlen(name);
	for (size_t i = 0; i < ARRAY_LEN(endings); i++) {
		size_t n = strlen(endings[i]);
		if (len > n && strcasecmp(name + len - n, endings[i]) == 0)
			return true;
	}
	return false;
}

static int dbfile_cmp(const void *a, const void *b)
{
	return strcmp(((const struct av_dbfile *)a)->name, ((const struct av_dbfile *)b)->name);
}

int av_dbstat_take(const char *dir, struct av_dbstat *stat_r, char **err_r)
{
	memset(stat_r, 0, sizeof(*stat_r));
	DIR *d = opendir(dir);
	if (d == NULL) {
		*err_r = errorf("%s: cannot read the signature folder: %s", dir, strerror(errno));
		return -1;
	}
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!av_is_signature_file(e->d_name))
			continue;
		struct stat sb;
		if (fstatat(dirfd(d), e->d_name, &sb, 0) != 0 || !S_ISREG(sb.st_mode))
			continue; /* vanished, or not a file: libclamav skips it too */
		if (stat_r->count == cap) {
			cap = cap ? cap * 2 : 16;
			stat_r->files = xreallocarray(stat_r->files, cap, sizeof(*stat_r->files));
		}
		stat_r->files[stat_r->count++] = (struct av_dbfile){
			.name = xstrdup(e->d_name), .dev = sb.st_dev, .ino = sb.st_ino,
			.size = sb.st_size, .mtime = sb.st_mtim, .ctime = sb.st_ctim,
		};
	}
	closedir(d);
	if (stat_r->count > 1)
		qsort(stat_r->files, stat_r->count, sizeof(*stat_r->files), dbfile_cmp);
	return 0;
}

static bool same_time(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

bool av_dbstat_equal(const struct av_dbstat *a, const struct av_dbstat *b)
{
	if (a->count != b->count)
		return false;
	for (size_t i = 0; i < a->count; i++) {
		const struct av_dbfile *x = &a->files[i], *y = &b->files[i];
		if (strcmp(x->name, y->name) != 0 || x->dev != y->dev || x->ino != y->ino ||
		    x->size != y->size || !same_time(x->mtime, y->mtime) ||
		    !same_time(x->ctime, y->ctime))
			return false;
	}
	return true;
}

void av_dbstat_free(struct av_dbstat *st)
{
	for (size_t i = 0; i < st->count; i++)
		free(st->files[i].name);
	free(st->files);
	st->files = NULL;
	st->count = 0;
}

/* ---- libclamav ---- */

/* libclamav's error messages while a folder loads, for the error text. */
static bool av_loading;
static char av_load_errors[512];

/* The callbacks' context during one scan. */
struct av_scan_ctx {
	char name[AV_NAME_SIZE];
};

static void av_clamav_message(enum cl_msg severity, const char *fullmsg, const char *msg,
			      void *context)
{
	(void)fullmsg;
	(void)context;
	char text[400];
	size_t n = strcspn(msg, "\n");
	snprintf(text, sizeof(text), "%.*s", (int)(n < sizeof(text) ? n : sizeof(text) - 1), msg);
	if (av_loading && severity >= CL_MSG_ERROR) {
		size_t used = strlen(av_load_errors);
		if (used == 0)
			snprintf(av_load_errors, sizeof(av_load_errors), "%s", text);
		else if (used < sizeof(av_load_errors) - 3)
			snprintf(av_load_errors + used, sizeof(av_load_errors) - used, "; %s", text);
		return;
	}
	if (severity >= CL_MSG_ERROR)
		log_warn("libclamav: %s", text);
	else
		log_debug("libclamav: %s", text);
}

static void av_virus_found(int fd, const char *virname, void *context)
{
	(void)fd;
	struct av_scan_ctx *sc = context;
	if (sc != NULL && virname != NULL)
		snprintf(sc->name, sizeof(sc->name), "%s", virname);
}

static int av_clamav_init(char **err_r)
{
	static bool done;
	static cl_error_t rc;
	if (!done) {
		cl_set_clcb_msg(av_clamav_message);
		rc = cl_init(CL_INIT_DEFAULT);
		done = true;
	}
	if (rc != CL_SUCCESS) {
		*err_r = errorf("libclamav: cannot initialise: %s", cl_strerror(rc));
		return -1;
	}
	return 0;
}

static int set_limits(struct cl_engine *e, const struct config *cfg, char **err_r)
{
	const struct {
		enum cl_engine_field field;
		uint64_t value;
		const char *key;
	} limits[] = {
		{ CL_ENGINE_MAX_SCANSIZE, cfg->clamav_max_scan_size, "clamav_max_scan_size" },
		{ CL_ENGINE_MAX_FILESIZE, cfg->clamav_max_file_size, "clamav_max_file_size" },
		{ CL_ENGINE_MAX_RECURSION, cfg->clamav_max_recursion, "clamav_max_recursion" },
		{ CL_ENGINE_MAX_FILES, cfg->clamav_max_files, "clamav_max_files" },
		{ CL_ENGINE_MAX_SCANTIME, cfg->clamav_max_scan_time * 1000, "clamav_max_scan_time" },
	};
	for (size_t i = 0; i < ARRAY_LEN(limits); i++) {
		cl_error_t rc = cl_engine_set_num(e, limits[i].field, (long long)limits[i].value);
		if (rc != CL_SUCCESS) {
			*err_r = errorf("%s: libclamav refuses %llu: %s", limits[i].key,
					(unsigned long long)limits[i].value, cl_strerror(rc));
			return -1;
		}
	}
	return 0;
}

/* Where libclamav writes the parts it unpacks while it scans (a folder
 * and a file per part, for every message): clamav_temp_dir, else a tmpfs
 * (/dev/shm) when there is one we may write, else $TMPDIR or /tmp. On a
 * disk those files cost a third of a scanner's time (bench/README.md). */
static const char *temp_dir(const struct config *cfg)
{
	if (cfg->clamav_temp_dir[0] != '\0')
		return cfg->clamav_temp_dir;
	if (access("/dev/shm", W_OK | X_OK) == 0)
		return "/dev/shm";
	const char *env = getenv("TMPDIR");
	return env != NULL && env[0] == '/' ? env : "/tmp";
}

/* Load and compile st->db_dir into st->engine. */
static int build_engine(struct av_stage *st, const struct config *cfg, char **err_r)
{
	if (av_clamav_init(err_r) != 0)
		return -1;
	/* The snapshot comes first: a change during the load is a change. */
	if (av_dbstat_take(st->db_dir, &st->dbstat, err_r) != 0)
		return -1;
	st->engine = cl_engine_new();
	if (st->engine == NULL) {
		*err_r = errorf("libclamav: cannot create an engine");
		return -1;
	}
	if (set_limits(st->engine, cfg, err_r) != 0)
		return -1;
	const char *tmp = temp_dir(cfg);
	if (access(tmp, W_OK | X_OK) != 0) {
		*err_r = errorf("%s: libclamav's temporary folder is not writable: %s", tmp,
				strerror(errno));
		return -1;
	}
	if (cl_engine_set_str(st->engine, CL_ENGINE_TMPDIR, tmp) != CL_SUCCESS) {
		*err_r = errorf("%s: libclamav refuses this temporary folder", tmp);
		return -1;
	}
	cl_engine_set_clcb_virus_found(st->engine, av_virus_found);
	unsigned sigs = 0;
	av_loading = true;
	av_load_errors[0] = '\0';
	/* Signed bytecode as in freshclam's databases; no phishing URL checks
	 * (they flag ordinary newsletters); no PUA. */
	cl_error_t rc = cl_load(st->db_dir, st->engine, &sigs, CL_DB_BYTECODE);
	av_loading = false;
	if (rc != CL_SUCCESS) {
		*err_r = errorf("%s: cannot load the ClamAV signatures: %s%s%s%s", st->db_dir,
				cl_strerror(rc), av_load_errors[0] ? " (" : "", av_load_errors,
				av_load_errors[0] ? ")" : "");
		return -1;
	}
	if (sigs == 0) {
		*err_r = errorf("%s: no ClamAV signatures in this folder", st->db_dir);
		return -1;
	}
	rc = cl_engine_compile(st->engine);
	if (rc != CL_SUCCESS) {
		*err_r = errorf("%s: cannot compile the ClamAV signatures: %s", st->db_dir,
				cl_strerror(rc));
		return -1;
	}
	st->options = (struct cl_scan_options){
		.general = CL_SCAN_GENERAL_HEURISTICS,
		.parse = ~0u,
		/* A scan cut short by a limit is not taken for clean. Off, the
		 * rest is left unscanned, as ClamAV does by default; on, a
		 * mail whose header section exceeds libclamav's parser limits
		 * is not decoded further, which is why it must then count. */
		.heuristic = cfg->clamav_alert_exceeds_max ? CL_SCAN_HEURISTIC_EXCEEDS_MAX : 0,
	};
	log_info("antivirus: libclamav %s, %u signatures from %s, unpacking in %s", cl_retver(), sigs,
		 st->db_dir, temp_dir(cfg));
	return 0;
}

/* The message behind its mail view prefix, read by libclamav. */
struct av_view {
	const unsigned char *prefix;
	size_t prefix_len;
	const unsigned char *data;
	size_t len;
};

static off_t av_view_pread(void *handle, void *buf, size_t count, off_t offset)
{
	const struct av_view *v = handle;
	size_t total = v->prefix_len + v->len;
	if (offset < 0 || (uint64_t)offset >= total)
		return 0;
	size_t off = (size_t)offset;
	if (count > total - off)
		count = total - off;
	size_t done = 0;
	if (off < v->prefix_len) {
		done = v->prefix_len - off < count ? v->prefix_len - off : count;
		memcpy(buf, v->prefix + off, done);
		off += done;
	}
	if (done < count)
		memcpy((char *)buf + done, v->data + (off - v->prefix_len), count - done);
	return (off_t)count;
}

/*
 * libclamav names its temporary files and folders from rand(), whose
 * state fork(2) copies: scanners forked from one master would pick the
 * same names, remove each other's files and miss what was in them. Each
 * process reseeds once, before its first scan.
 */
static void av_reseed_rand(void)
{
	static pid_t seeded_for;
	pid_t pid = getpid();
	if (seeded_for == pid)
		return;
	unsigned seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = (unsigned)pid ^ (unsigned)time(NULL) ^ (unsigned)clock();
	srand(seed);
	seeded_for = pid;
}

/* 0 clean, 1 found (name_r), -1 failed (err_r). */
static int scan_libclamav(struct av_stage *st, const unsigned char *data, size_t len,
			  char *name_r, char *err_r, size_t err_size)
{
	av_reseed_rand();
	const char *prefix = av_mail_view_prefix(data, len);
	struct av_view view = { .prefix = (const unsigned char *)prefix,
				.prefix_len = prefix ? strlen(prefix) : 0, .data = data, .len = len };
	cl_fmap_t *map = prefix != NULL
		? cl_fmap_open_handle(&view, 0, view.prefix_len + len, av_view_pread, 0)
		: cl_fmap_open_memory(data, len);
	if (map == NULL) {
		snprintf(err_r, err_size, "antivirus: libclamav cannot map the message");
		return -1;
	}
	struct av_scan_ctx sc = { .name = "" };
	const char *virname = NULL;
	unsigned long scanned = 0;
	cl_error_t rc = cl_scanmap_callback(map, NULL, &virname, &scanned, st->engine,
					    &st->options, &sc);
	cl_fmap_close(map);
	if (rc == CL_CLEAN)
		return 0;
	if (rc == CL_VIRUS) {
		/* The callback's copy: libclamav's virname may point into
		 * memory the scan has already freed. */
		av_name_clean(name_r, AV_NAME_SIZE, sc.name);
		return 1;
	}
	snprintf(err_r, err_size, "antivirus: libclamav: %s", cl_strerror(rc));
	return -1;
}

static int scan_clamd(struct av_stage *st, const unsigned char *data, size_t len,
		      char *name_r, char *err_r, size_t err_size)
{
	const char *prefix = av_mail_view_prefix(data, len);
	size_t prefix_len = prefix ? strlen(prefix) : 0;
	if (prefix_len + len > st->max_file_size) {
		/* What libclamav does with a message over the limit. */
		snprintf(name_r, AV_NAME_SIZE, AV_LIMIT_PREFIX "MaxFileSize");
		return 1;
	}
	struct clamd_piece pieces[2] = { { prefix, prefix_len }, { data, len } };
	enum clamd_verdict verdict;
	char name[AV_NAME_SIZE];
	if (clamd_instream(&st->clamd, pieces + (prefix ? 0 : 1), prefix ? 2 : 1,
			   st->timeout_ms, &verdict, name, sizeof(name), err_r, err_size) != 0)
		return -1;
	if (verdict == CLAMD_CLEAN)
		return 0;
	av_name_clean(name_r, AV_NAME_SIZE, name);
	return 1;
}

/* ---- the stage ---- */

static int av_run(void *ctx, const struct scan_message *m, struct scan_verdict *v)
{
	struct av_stage *st = ctx;
	char name[AV_NAME_SIZE];
	int rc = st->engine != NULL
		? scan_libclamav(st, m->data, m->len, name, v->text, sizeof(v->text))
		: scan_clamd(st, m->data, m->len, name, v->text, sizeof(v->text));
	if (rc <= 0)
		return rc;
	const char *id = m->env != NULL && m->env->queue_id != NULL ? m->env->queue_id : "";
	switch (av_name_kind(name)) {
	case AV_NAME_TIME_LIMIT:
		snprintf(v->text, sizeof(v->text),
			 "antivirus: the scan took longer than clamav_max_scan_time (%s)", name);
		return -1;
	case AV_NAME_LIMIT:
		if (!st->alert_exceeds_max) {
			log_info("%s: antivirus: not scanned to the end (%s), accepted as "
				 "clamav_alert_exceeds_max = no says", id[0] ? id : "-", name);
			return 0;
		}
		break;
	case AV_NAME_VIRUS:
		break;
	}
	av_verdict_virus(st->action, name, v);
	return 0;
}

static bool av_stale(void *ctx)
{
	struct av_stage *st = ctx;
	if (st->engine == NULL)
		return false;
	struct av_dbstat now;
	char *err = NULL;
	if (av_dbstat_take(st->db_dir, &now, &err) != 0) {
		/* A folder that cannot be read is a change: the rebuild will
		 * say what is wrong, and the old engine stays. */
		free(err);
		av_dbstat_free(&st->dbstat);
		return true;
	}
	bool same = av_dbstat_equal(&st->dbstat, &now);
	/* Each change is reported once: after a rebuild that failed, the
	 * next attempt waits for the next change. */
	av_dbstat_free(&st->dbstat);
	st->dbstat = now;
	return !same;
}

static void av_free(void *ctx)
{
	struct av_stage *st = ctx;
	if (st == NULL)
		return;
	if (st->engine != NULL)
		cl_engine_free(st->engine);
	av_dbstat_free(&st->dbstat);
	free(st->db_dir);
	free(st);
}

int scan_antivirus_stage_new(const struct config *cfg, struct scan_stage *stage_r,
			     char **err_r)
{
	*err_r = NULL;
	bool in_process = cfg->clamav_db_dir[0] != '\0';
	bool daemon = cfg->clamd_socket[0] != '\0';
	if (!in_process && !daemon)
		return 1;
	if (in_process && daemon) {
		*err_r = errorf("%s: clamav_db_dir and clamd_socket are both set: choose one",
				cfg->path);
		return -1;
	}
	struct av_stage *st = xcalloc(1, sizeof(*st));
	st->max_file_size = cfg->clamav_max_file_size;
	st->timeout_ms = cfg->clamav_max_scan_time * 1000;
	st->alert_exceeds_max = cfg->clamav_alert_exceeds_max != 0;
	st->action = cfg->virus_action;
	int rc;
	if (in_process) {
		st->db_dir = xstrdup(cfg->clamav_db_dir);
		rc = build_engine(st, cfg, err_r);
	} else {
		char *why = NULL;
		rc = clamd_target_parse(cfg->clamd_socket, &st->clamd, &why);
		if (rc != 0) {
			*err_r = errorf("%s: %s", cfg->path, why);
			free(why);
		}
	}
	if (rc != 0) {
		av_free(st);
		return -1;
	}
	*stage_r = (struct scan_stage){ .name = "antivirus", .run = av_run, .stale = av_stale,
					.free = av_free, .ctx = st };
	return 0;
}
