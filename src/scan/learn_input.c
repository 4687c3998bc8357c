/*
 * learn_input.c - the messages `postern learn` reads (see learn_input.h):
 * walking files and folders, cutting mbox files into messages, and the
 * pipe between a root reader and the unprivileged learner.
 *
 * Pipe records: a type byte ('B' a source begins, 'D' its bytes, 'E' it
 * ends), a 4-byte big-endian length, the payload (B: the name, at most
 * PATH_MAX bytes; D: at most 64 KiB; E: the errno, 4 bytes).
 *
 * Untrusted input: file names and contents (the splitter bounds a
 * message to max_message bytes and a separator line to 1000 bytes), the
 * pipe's records. Privilege: learn_walk as the invoking user (root: it
 * only reads, never parses), the rest as `user`.
 */
#include "learn_input.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"

#define CHUNK 65536
#define FOLDER_DEPTH_MAX 16
#define SEPARATOR_MAX 1000

/* ---- walking ------------------------------------------------------------------------- */

static bool read_source(int fd, const char *name, const struct learn_sink *sink)
{
	char *chunk = xmalloc(CHUNK);
	int err = 0;
	bool go = sink->begin(sink->arg, name);
	while (go) {
		ssize_t n = read(fd, chunk, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = errno;
		if (n <= 0)
			break;
		go = sink->data(sink->arg, chunk, (size_t)n);
	}
	free(chunk);
	return go && sink->end(sink->arg, err);
}

static bool report(const struct learn_sink *sink, const char *name, int err)
{
	return sink->begin(sink->arg, name) && sink->end(sink->arg, err);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in folder fd but "." ones, sorted (fd is consumed). */
static bool list_folder(int fd, strlist_t *names)
{
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return false;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			strlist_add(names, e->d_name);
	closedir(d);
	if (names->count > 0)
		qsort(names->items, names->count, sizeof(char *), by_name);
	return true;
}

static bool is_folder_at(int dirfd, const char *name)
{
	struct stat st;
	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static bool walk_fd(int fd, const char *name, int depth, const struct learn_sink *sink);

/* Every entry of folder fd (consumed); a Maildir's cur/ and new/ only. */
static bool walk_folder(int fd, const char *name, int depth, const struct learn_sink *sink)
{
	if (depth > FOLDER_DEPTH_MAX) {
		close(fd);
		return report(sink, name, ELOOP);
	}
	bool maildir = is_folder_at(fd, "cur") && is_folder_at(fd, "new");
	strlist_t names = { NULL, 0 };
	if (maildir) {
		strlist_add(&names, "cur");
		strlist_add(&names, "new");
	} else if (!list_folder(dup(fd), &names)) {
		int err = errno;
		close(fd);
		return report(sink, name, err);
	}
	bool go = true;
	for (size_t i = 0; go && i < names.count; i++) {
		buf_t path = BUF_INIT;
		buf_printf(&path, "%s/%s", name, names.items[i]);
		int child = openat(fd, names.items[i],
				   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (child >= 0)
			go = walk_fd(child, buf_cstr(&path), depth + 1, sink);
		else if (errno != ELOOP)  /* a symbolic link: not followed */
			go = report(sink, buf_cstr(&path), errno);
		buf_free(&path);
	}
	close(fd);
	strlist_free(&names);
	return go;
}

/* fd (consumed): a folder is walked, a regular file read, the rest skipped. */
static bool walk_fd(int fd, const char *name, int depth, const struct learn_sink *sink)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int err = errno;
		close(fd);
		return report(sink, name, err);
	}
	if (S_ISDIR(st.st_mode))
		return walk_folder(fd, name, depth, sink);
	bool go = true;
	if (S_ISREG(st.st_mode) || depth == 0) {
		int flags = fcntl(fd, F_GETFL);
		if (flags >= 0)
			fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
		go = read_source(fd, name, sink);
	}
	close(fd);
	return go;
}

bool learn_walk(const char *const *paths, size_t count, const struct learn_sink *sink)
{
	for (size_t i = 0; i < count; i++) {
		bool go;
		if (strcmp(paths[i], "-") == 0) {
			go = read_source(STDIN_FILENO, "-", sink);
		} else {
			int fd = open(paths[i], O_RDONLY | O_CLOEXEC | O_NOCTTY);
			go = fd >= 0 ? walk_fd(fd, paths[i], 0, sink) : report(sink, paths[i], errno);
		}
		if (!go)
			return false;
	}
	return true;
}

/* ---- cutting files into messages ------------------------------------------------------ */

struct learn_splitter {
	uint64_t max;
	struct learn_handler h;
	char *source;
	buf_t msg;            /* the message so far */
	buf_t line;           /* the line so far, while it may be a separator */
	bool long_line;       /* the line is too long for one: it went into msg */
	bool first_line, mbox, prev_blank;
	bool oversize;
	unsigned number;
	bool several;         /* the mbox holds more than one message */
	bool stopped;
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

bool learn_is_from_line(const char *line, size_t len)
{
	if (len < 5 || memcmp(line, "From ", 5) != 0)
		return false;
	size_t i = 5;
	if (i >= len || line[i] == ' ' || line[i] == '\t')
		return false;
	while (i < len && line[i] != ' ' && line[i] != '\t')
		i++;
	/* then a date: a time (9:99) and a year (four digits) */
	bool time = false, year = false;
	for (size_t j = i; j < len; j++) {
		if (j + 3 < len && is_digit(line[j]) && line[j + 1] == ':' &&
		    is_digit(line[j + 2]) && is_digit(line[j + 3]))
			time = true;
		if (j + 3 < len && is_digit(line[j]) && is_digit(line[j + 1]) &&
		    is_digit(line[j + 2]) && is_digit(line[j + 3]))
			year = true;
	}
	return time && year;
}

static void append(struct learn_splitter *sp, const void *p, size_t n)
{
	if (sp->oversize)
		return;
	if (n > sp->max - sp->msg.len) {
		sp->oversize = true;
		buf_free(&sp->msg);
		return;
	}
	buf_append(&sp->msg, p, n);
}

/* The message so far is complete. */
static void emit(struct learn_splitter *sp)
{
	if (sp->stopped)
		return;
	buf_t *m = &sp->msg;
	/* In an mbox, the empty line before the next "From " is the format's. */
	if (sp->mbox && m->len >= 2 && m->data[m->len - 1] == '\n') {
		size_t cut = m->data[m->len - 2] == '\n' ? 1
			   : m->len >= 3 && m->data[m->len - 2] == '\r' && m->data[m->len - 3] == '\n'
			   ? 2 : 0;
		m->len -= cut;
	}
	/* numbers only in an mbox of several messages */
	unsigned number = sp->several ? sp->number : 0;
	if (sp->oversize) {
		sp->h.problem(sp->h.arg, sp->source, number, EFBIG);
	} else if (m->len == 0) {
		sp->h.problem(sp->h.arg, sp->source, number, ENODATA);
	} else {
		struct learn_message lm = { sp->source, number,
					    (const unsigned char *)m->data, m->len };
		sp->stopped = !sp->h.message(sp->h.arg, &lm);
	}
	buf_reset(m);
	sp->oversize = false;
}

/* A whole line (with its '\n') of at most SEPARATOR_MAX bytes. */
static void take_line(struct learn_splitter *sp, const char *l, size_t n)
{
	bool separator = learn_is_from_line(l, n);
	if (sp->first_line) {
		sp->first_line = false;
		sp->mbox = separator;
		if (separator) {
			sp->number = 1;
			sp->prev_blank = false;
			return;
		}
	} else if (sp->mbox && sp->prev_blank && separator) {
		sp->several = true;
		emit(sp);
		sp->number++;
		sp->prev_blank = false;
		return;
	}
	append(sp, l, n);
	sp->prev_blank = (n == 1 && l[0] == '\n') || (n == 2 && l[0] == '\r' && l[1] == '\n');
}

static bool split_begin(void *arg, const char *source)
{
	struct learn_splitter *sp = arg;
	free(sp->source);
	sp->source = xstrdup(source);
	buf_reset(&sp->msg);
	buf_reset(&sp->line);
	sp->long_line = sp->mbox = sp->prev_blank = sp->oversize = sp->several = false;
	sp->first_line = true;
	sp->number = 0;
	return !sp->stopped;
}

static bool split_data(void *arg, const void *bytes, size_t len)
{
	struct learn_splitter *sp = arg;
	const char *p = bytes, *end = p + len;
	while (p < end && !sp->stopped) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl + 1 : end) - p);
		if (sp->long_line) {
			append(sp, p, n);
		} else if (sp->line.len + n > SEPARATOR_MAX) {
			/* too long to be a separator: it goes straight into the message */
			if (sp->first_line)
				sp->first_line = false;
			append(sp, sp->line.data, sp->line.len);
			append(sp, p, n);
			buf_reset(&sp->line);
			sp->long_line = true;
			sp->prev_blank = false;
		} else {
			buf_append(&sp->line, p, n);
			if (nl != NULL) {
				take_line(sp, sp->line.data, sp->line.len);
				buf_reset(&sp->line);
			}
		}
		if (nl != NULL)
			sp->long_line = false;
		p += n;
	}
	return !sp->stopped;
}

static bool split_end(void *arg, int err)
{
	struct learn_splitter *sp = arg;
	if (err != 0) {
		/* a file read only in part: none of it is learned */
		sp->h.problem(sp->h.arg, sp->source, 0, err);
		buf_reset(&sp->msg);
		buf_reset(&sp->line);
		return !sp->stopped;
	}
	if (sp->line.len > 0) {
		if (sp->first_line) {
			sp->first_line = false;
			append(sp, sp->line.data, sp->line.len);
		} else {
			take_line(sp, sp->line.data, sp->line.len);
		}
		buf_reset(&sp->line);
	}
	if (sp->msg.len > 0 || sp->oversize || !sp->mbox || sp->number > 0)
		emit(sp);
	return !sp->stopped;
}

struct learn_splitter *learn_splitter_new(uint64_t max_message, const struct learn_handler *h)
{
	struct learn_splitter *sp = xcalloc(1, sizeof(*sp));
	sp->max = max_message;
	sp->h = *h;
	return sp;
}

struct learn_sink learn_splitter_sink(struct learn_splitter *sp)
{
	struct learn_sink s = { split_begin, split_data, split_end, sp };
	return s;
}

void learn_splitter_free(struct learn_splitter **spp)
{
	struct learn_splitter *sp = *spp;
	if (sp == NULL)
		return;
	free(sp->source);
	buf_free(&sp->msg);
	buf_free(&sp->line);
	free(sp);
	*spp = NULL;
}

/* ---- the pipe ------------------------------------------------------------------------- */

static bool write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		c += w;
		n -= (size_t)w;
	}
	return true;
}

static bool put_record(int fd, char type, const void *p, size_t n)
{
	unsigned char head[5] = { (unsigned char)type, (unsigned char)(n >> 24),
				  (unsigned char)(n >> 16), (unsigned char)(n >> 8),
				  (unsigned char)n };
	return write_all(fd, head, sizeof(head)) && write_all(fd, p, n);
}

static bool pipe_begin(void *arg, const char *source)
{
	size_t n = strlen(source);
	return put_record(*(int *)arg, 'B', source, n > PATH_MAX ? PATH_MAX : n);
}

static bool pipe_data(void *arg, const void *bytes, size_t len)
{
	const char *p = bytes;
	while (len > 0) {
		size_t n = len > CHUNK ? CHUNK : len;
		if (!put_record(*(int *)arg, 'D', p, n))
			return false;
		p += n;
		len -= n;
	}
	return true;
}

static bool pipe_end(void *arg, int err)
{
	unsigned char e[4] = { (unsigned char)(err >> 24), (unsigned char)(err >> 16),
			       (unsigned char)(err >> 8), (unsigned char)err };
	return put_record(*(int *)arg, 'E', e, sizeof(e));
}

struct learn_sink learn_pipe_sink(int *fd)
{
	struct learn_sink s = { pipe_begin, pipe_data, pipe_end, fd };
	return s;
}

/* Exactly n bytes: 1, 0 at the end before any byte, -1 otherwise. */
static int read_exact(int fd, void *p, size_t n)
{
	char *c = p;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, c + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return got == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

int learn_pipe_read(int fd, const struct learn_sink *sink)
{
	char *payload = xmalloc(CHUNK + 1);
	bool open = false;
	int rc = -1;
	for (;;) {
		unsigned char head[5];
		int r = read_exact(fd, head, sizeof(head));
		if (r <= 0) {
			rc = r == 0 && !open ? 0 : -1;
			break;
		}
		size_t n = (size_t)head[1] << 24 | (size_t)head[2] << 16 | (size_t)head[3] << 8 | head[4];
		char type = (char)head[0];
		bool fits = type == 'B' ? n > 0 && n <= PATH_MAX && !open
			  : type == 'D' ? n <= CHUNK && open
			  : type == 'E' ? n == 4 && open : false;
		if (!fits || (n > 0 && read_exact(fd, payload, n) != 1))
			break;
		bool go;
		if (type == 'B') {
			payload[n] = '\0';
			if (memchr(payload, '\0', n) != NULL)
				break;
			go = sink->begin(sink->arg, payload);
			open = true;
		} else if (type == 'D') {
			go = sink->data(sink->arg, payload, n);
		} else {
			const unsigned char *e = (const unsigned char *)payload;
			int err = (int)((uint32_t)e[0] << 24 | (uint32_t)e[1] << 16 |
					(uint32_t)e[2] << 8 | e[3]);
			go = sink->end(sink->arg, err);
			open = false;
		}
		if (!go) {
			rc = 1;
			break;
		}
	}
	free(payload);
	return rc;
}
