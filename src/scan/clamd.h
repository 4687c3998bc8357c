/*
 * clamd.h - a client of clamd's INSTREAM command (the antivirus stage's
 * alternative to libclamav in process): connect to clamd over a unix
 * socket or TCP, send "zINSTREAM\0", the message as chunks (a u32
 * big-endian length, then that many bytes), a zero-length chunk, and
 * read one NUL-terminated answer: "stream: OK", "stream: NAME FOUND" or
 * "... ERROR".
 *
 * Every step is bounded: one deadline covers the connect, every write
 * and the wait for the answer; the answer is read up to
 * CLAMD_REPLY_MAX bytes. A clamd that is not there, stops reading,
 * closes the connection or answers nonsense is an error with a text
 * that says which, never a hang.
 *
 * Untrusted input: clamd's answer (bounded, parsed by
 * clamd_reply_parse, fuzzed by tests/fuzz/fuzz_clamd.c), and
 * clamd_socket from the configuration. Runs in the unprivileged scanner
 * processes and in `postern scan`.
 */
#ifndef POSTERN_CLAMD_H
#define POSTERN_CLAMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CLAMD_REPLY_MAX 1024     /* longest answer read */
#define CLAMD_NAME_MAX 256       /* longest virus name kept */
#define CLAMD_ADDRS_MAX 4        /* addresses tried for host:port */
#define CLAMD_CHUNK_MAX 65536    /* bytes per INSTREAM chunk */

/* Where clamd listens: a unix socket path, or the addresses host:port
 * resolved to when the stage was built. */
struct clamd_target {
	struct sockaddr_storage addrs[CLAMD_ADDRS_MAX];
	socklen_t addr_lens[CLAMD_ADDRS_MAX];
	size_t addr_count;
	char text[256]; /* as configured, for messages */
};

/*
 * Parse clamd_socket: an absolute path ("/run/clamav/clamd.ctl") or
 * host:port ("127.0.0.1:3310", "[::1]:3310", "localhost:3310"; a name is
 * resolved now, once). 0, or -1 with a malloc'ed *err_r.
 */
int clamd_target_parse(const char *spec, struct clamd_target *target_r, char **err_r);

/* The syntax part of it: "host:port" or "[v6]:port" into host_r and port_r
 * (NUL-terminated copies); 0, or -1 if spec is not that (no port, a port
 * out of 1..65535, an IPv6 address without brackets, too long). */
int clamd_split_host_port(const char *spec, char *host_r, size_t host_size, char *port_r,
			  size_t port_size);

enum clamd_verdict {
	CLAMD_CLEAN,  /* "stream: OK" */
	CLAMD_FOUND,  /* "stream: NAME FOUND": name_r holds NAME */
	CLAMD_ERROR,  /* clamd's own "... ERROR", or not an answer at all */
};

/*
 * Read one answer: reply[0..len), with or without its NUL or newline.
 * CLAMD_FOUND copies the name into name_r (at most name_size - 1 bytes,
 * bytes outside printable ASCII made '_'); CLAMD_ERROR copies clamd's
 * message (made printable the same way) into name_r for the error text.
 */
enum clamd_verdict clamd_reply_parse(const char *reply, size_t len, char *name_r,
				     size_t name_size);

/* The bytes to scan, in pieces sent one after the other as one stream. */
struct clamd_piece {
	const void *data;
	size_t len;
};

/*
 * Scan the concatenation of pieces[0..count) with INSTREAM, all within
 * timeout_ms. 0 with *verdict_r CLAMD_CLEAN or CLAMD_FOUND (name_r
 * filled); -1 when the scan did not happen or clamd answered an error,
 * with err_r (err_size bytes) saying what went wrong ("clamd
 * /run/clamav/clamd.ctl: connect: No such file or directory").
 */
int clamd_instream(const struct clamd_target *target, const struct clamd_piece *pieces,
		   size_t count, uint64_t timeout_ms, enum clamd_verdict *verdict_r,
		   char *name_r, size_t name_size, char *err_r, size_t err_size);

#endif
