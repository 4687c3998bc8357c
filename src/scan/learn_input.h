/*
 * learn_input.h - the messages `postern learn` reads (private to
 * src/scan/): files, folders (a Maildir's cur/ and new/, or every file
 * of a plain folder and its subfolders, in name order), mbox files split
 * on their "From " lines, standard input.
 *
 * Three pieces joined by one interface (struct learn_sink: a file
 * begins, its bytes, it ends):
 *   learn_walk       reads the inputs (no parsing: it may run as root);
 *   learn_splitter   cuts each file into messages (mbox or one message),
 *                    each at most max_message bytes, and hands them on;
 *   learn_pipe_*     carries the sink's calls over a pipe, so that a root
 *                    process can read what only root may read while an
 *                    unprivileged one parses it.
 *
 * Untrusted input: the files' names and bytes (the splitter's), the
 * pipe's records (from our own reader process; still bounded). Privilege:
 * learn_walk as the invoking user (root included), the rest as `user`.
 */
#ifndef POSTERN_SCAN_LEARN_INPUT_H
#define POSTERN_SCAN_LEARN_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct learn_sink {
	bool (*begin)(void *arg, const char *source);
	bool (*data)(void *arg, const void *bytes, size_t len);
	/* err: 0, or the errno reading the source failed with */
	bool (*end)(void *arg, int err);
	void *arg;
};

/* Every input's bytes to sink: "-" is standard input; a folder's files
 * in name order (Maildir: cur/ and new/ only; names starting with '.'
 * and symbolic links inside folders are skipped). false when the sink
 * asked to stop. */
bool learn_walk(const char *const *paths, size_t count, const struct learn_sink *sink);

/* One message found. */
struct learn_message {
	const char *source;   /* the file as named or found; "-" = standard input */
	unsigned number;      /* its place in an mbox of several (1, 2, ...); else 0 */
	const unsigned char *data;
	size_t len;
};

struct learn_handler {
	/* A message; false stops everything. */
	bool (*message)(void *arg, const struct learn_message *m);
	/* A source that could not be read (err = its errno), or a message
	 * left out: EFBIG = larger than max_message, ENODATA = empty. */
	void (*problem)(void *arg, const char *source, unsigned number, int err);
	void *arg;
};

/* A file is an mbox when its first line is an mbox "From " line; it is
 * then cut before each such line that follows an empty line (the "From "
 * lines are not part of the messages). Otherwise it is one message. */
struct learn_splitter;
struct learn_splitter *learn_splitter_new(uint64_t max_message, const struct learn_handler *h);
struct learn_sink learn_splitter_sink(struct learn_splitter *sp);
void learn_splitter_free(struct learn_splitter **sp);
/* Does line[0..len) look like an mbox separator ("From sender date")? */
bool learn_is_from_line(const char *line, size_t len);

/* A sink that writes the calls to *fd as records. */
struct learn_sink learn_pipe_sink(int *fd);
/* Read records from fd into sink until the end: 0, or -1 for a broken
 * record (or the sink asked to stop: 1). */
int learn_pipe_read(int fd, const struct learn_sink *sink);

#endif
