/*
 * maildir_header.h - drop the Return-Path: fields a client put into the
 * message, as the content streams into a Maildir copy.
 *
 * RFC 5321 section 4.4: the final delivery MTA adds Return-Path (postern
 * does, in maildir.c), and one already in the message must not survive.
 * Every "Return-Path:" field of the header section (name matched without
 * regard to case, white space allowed before the colon, continuation
 * lines included) is removed; everything else, the body included, passes
 * unchanged. The filter holds at most a few bytes of one line, so neither
 * the header section nor the body is ever in memory as a whole.
 *
 * Untrusted input: the message content (LF line ends, as the queue holds
 * it). Privilege: the local delivery agent (mail_owner).
 */
#ifndef POSTERN_MAILDIR_HEADER_H
#define POSTERN_MAILDIR_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/buf.h"

/* Longest line start held back while undecided: the name plus some
 * white space before the colon. A longer run of spaces keeps the line. */
#define MHDR_HOLD_MAX 32

struct mhdr_filter {
	int state;            /* internal; zero-initialize the whole struct */
	bool in_body;         /* the header section has ended */
	bool dropping;        /* the current field is a Return-Path */
	char held[MHDR_HOLD_MAX];
	size_t held_len;
};

#define MHDR_FILTER_INIT { 0, false, false, { 0 }, 0 }

/*
 * Consume header bytes from in[0..n), up to and including the empty line
 * that ends the header section, appending what survives to out. Returns
 * how many bytes were consumed; once f->in_body is true the rest of in
 * (and all later content) is body, to be copied unchanged by the caller.
 */
size_t mhdr_filter_feed(struct mhdr_filter *f, const char *in, size_t n,
			buf_t *out);
/* The content ended: append the bytes still held back (a last line
 * without LF that was not yet known to be kept). */
void mhdr_filter_end(struct mhdr_filter *f, buf_t *out);

#endif
