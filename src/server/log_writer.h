/*
 * log_writer.h - the log writer of "postern serve" with log_to = file
 * (log_writer.c): the only process that holds log_file.
 *
 * Every process of postern writes its lines to stderr, as always; with
 * log_to = file the supervisor makes its stderr, and so every role's, the
 * write end of a pipe, and the log writer (running as `user`) copies the
 * pipe into the file. Lines are at most PIPE_BUF bytes and written with
 * one write(2), so they never interleave. The file is opened by the
 * supervisor (root: the file may sit in /var/log) and handed over as a
 * descriptor; on SIGUSR1 the supervisor opens it again and hands the new
 * descriptor over, so after a rotation (rename, then SIGUSR1) every
 * process's next line goes to the new file without any of them reopening
 * anything.
 */
#ifndef POSTERN_LOG_WRITER_H
#define POSTERN_LOG_WRITER_H

#include <stdbool.h>
#include <sys/types.h>

#include "privsep.h"

struct log_writer {
	char path[4096];  /* log_file, for the reopenings */
	pid_t pid;        /* the writer; 0 = none (log_to is not file) */
	int pipe_read;    /* kept by the supervisor, for a new writer after a crash */
	int ctl;          /* to the writer: new descriptors of the file */
};

/* No writer: every field says so. */
#define LOG_WRITER_NONE { "", 0, -1, -1 }

/* Open path (as the caller: root), fork the writer (it becomes acct) and
 * make the caller's stderr the pipe. -1 after a message on stderr. */
int log_writer_start(struct log_writer *lw, const char *path, const struct privsep *ps,
		     const struct privsep_account *acct);
/* SIGUSR1: open path again and give the writer the new descriptor. */
void log_writer_reopen(struct log_writer *lw);
/* pid has exited: if it was the writer, start another on the same pipe
 * (lines wait in the pipe meanwhile) and say true. */
bool log_writer_reaped(struct log_writer *lw, pid_t pid, const struct privsep *ps,
		       const struct privsep_account *acct);
/* In a forked role: close the supervisor's descriptors of the writer. */
void log_writer_close_in_child(const struct log_writer *lw);

#endif
