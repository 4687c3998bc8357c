/*
 * wire.h - the bounded big-endian writer and reader that postern's own
 * socket protocols share (queue manager <-> local and relay agents, smtp
 * workers <-> scan master and anvil): unsigned integers of 1, 2, 4 and 8
 * bytes and runs of bytes. Each protocol keeps its own message layouts
 * and string rules on top.
 *
 * A writer appends to a buf_t and may not make it longer than max bytes:
 * going over is the caller's bug (log_panic naming what). A reader never
 * reads past its end: the first violation is kept in err and every later
 * read returns zeros, so a decoder reads its fields in order and checks
 * err once at the end.
 *
 * Untrusted input: the reader's bytes (a peer process's packet).
 */
#ifndef POSTERN_LIB_WIRE_H
#define POSTERN_LIB_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct wire_writer {
	buf_t *out;
	size_t max;       /* out may not grow beyond this many bytes */
	const char *what; /* "scan_msg_encode", for the panic */
};

void wire_put_bytes(struct wire_writer *w, const void *data, size_t n);
void wire_put_u8(struct wire_writer *w, uint8_t v);
void wire_put_u16(struct wire_writer *w, uint16_t v);
void wire_put_u32(struct wire_writer *w, uint32_t v);
void wire_put_u64(struct wire_writer *w, uint64_t v);

struct wire_reader {
	const unsigned char *p;
	size_t len, pos;
	const char *err; /* the first violation, NULL while fine */
};

/* A reader over data[0..len). */
struct wire_reader wire_reader_init(const void *data, size_t len);
/* The next n bytes in *data_r; false (err set, or already set) if fewer
 * are left. */
bool wire_take(struct wire_reader *r, size_t n, const unsigned char **data_r);
uint8_t wire_get_u8(struct wire_reader *r);
uint16_t wire_get_u16(struct wire_reader *r);
uint32_t wire_get_u32(struct wire_reader *r);
uint64_t wire_get_u64(struct wire_reader *r);
/* Record the violation why, unless one is recorded already. */
void wire_fail(struct wire_reader *r, const char *why);
/* Bytes not read yet. */
size_t wire_left(const struct wire_reader *r);

#endif
