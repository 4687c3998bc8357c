/*
 * mime.h - a streaming MIME parser: RFC 5322 header fields (folding),
 * RFC 2045-2049 (multipart at any nesting up to a bound, message/rfc822
 * inside messages, base64, quoted-printable, 7bit/8bit/binary), uuencoded
 * blocks in text parts, RFC 2047 encoded words and RFC 2231 parameters
 * (continuations, charsets) decoded to UTF-8 with iconv, and the type
 * sniffed from each leaf part's first bytes with libmagic.
 *
 * One pass over the bytes, fed in pieces of any size, in bounded memory:
 * the parser keeps the header fields of the parts on the path from the
 * top to the current one and a small line buffer, never a whole part.
 * Decoded bytes of each leaf part are handed to the caller as they come.
 *
 * Broken mail is read the way mail clients read it: a missing MIME-Version,
 * a boundary that never comes (the part ends with the message), bad base64
 * (invalid characters skipped), a lying Content-Type (the sniffed type is
 * reported beside it), a missing final boundary, boundaries with white
 * space after them, an inner multipart that reuses its parent's boundary
 * (the inner one gets the lines first), a header line without a colon
 * (skipped), a message that is only a header section. Such repairs set
 * MIME_MALFORMED; they never stop the parse. Lines longer than 4 KiB are
 * read in pieces and are never boundaries.
 *
 * A uuencoded block ("begin MODE NAME" ... "end") in a text/plain part
 * that has no transfer encoding becomes a part of its own, a child of the
 * text part (which stays a leaf and keeps the text around the block):
 * no header fields, application/octet-stream, disposition "attachment",
 * filename NAME, encoding MIME_ENC_UUENCODE.
 *
 * Bounds (struct mime_limits, from the configuration): nesting depth,
 * number of parts, bytes of one part's header section, decoded bytes of
 * the whole message. Past a bound the parser stops producing (it still
 * consumes the input) and reports the problem bit: the caller turns it
 * into a verdict. Never a crash, never unbounded memory. In detail:
 * a multipart or message part at max_depth is reported but its body is
 * skipped; after max_parts parts nothing more is parsed (the open parts
 * end at mime_parser_finish); past max_header_bytes (or 4096 fields) a
 * header section keeps what it had; past max_decoded_bytes no byte is
 * decoded (part_data gets exactly the bytes up to the bound) but the
 * structure is still parsed.
 *
 * Untrusted input: the whole message. Runs in the unprivileged scanner
 * processes and in `postern scan`.
 */
#ifndef POSTERN_MIME_H
#define POSTERN_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

enum mime_encoding {
	MIME_ENC_7BIT,
	MIME_ENC_8BIT,
	MIME_ENC_BINARY,
	MIME_ENC_BASE64,
	MIME_ENC_QP,
	MIME_ENC_UUENCODE, /* x-uuencode, or a begin/end block found in a text part */
	MIME_ENC_UNKNOWN,  /* an encoding we do not know: passed through as is */
};

enum mime_problem {
	MIME_OK = 0,
	MIME_TOO_DEEP = 1 << 0,        /* max_depth passed: deeper parts not parsed */
	MIME_TOO_MANY_PARTS = 1 << 1,  /* max_parts passed */
	MIME_HEADER_TOO_BIG = 1 << 2,  /* a part's header section past max_header_bytes */
	MIME_DECODED_TOO_BIG = 1 << 3, /* max_decoded_bytes passed: decoding stopped */
	MIME_MALFORMED = 1 << 4,       /* repaired as mail clients do; informational */
};

struct mime_limits {
	unsigned max_depth;          /* multipart/message nesting, e.g. 20 */
	unsigned max_parts;          /* parts of all kinds, e.g. 1000 */
	size_t max_header_bytes;     /* one part's header section, e.g. 256 KiB */
	uint64_t max_decoded_bytes;  /* all leaf parts together, e.g. 100 MiB */
	/* Leave sniffed_type NULL: the caller never reads it, so libmagic is
	 * neither loaded nor run (its database costs megabytes per process). */
	bool no_sniff;
};

/* One header field as it was and as a reader sees it. */
struct mime_header {
	const char *name;     /* as written, e.g. "Content-Type" */
	const char *raw;      /* the value unfolded (CRLF/LF + WSP -> WSP), not decoded */
	const char *decoded;  /* RFC 2047 words decoded to UTF-8 (other bytes as in raw) */
};

/*
 * A part. index 0 is the message itself; parts are numbered in the order
 * their headers end. Strings are valid until the part's part_end callback
 * returns (copy what you keep). Header values hold no NUL byte: one in the
 * message is read as a space, one an encoded word decodes to as U+FFFD.
 */
struct mime_part {
	unsigned index;
	unsigned depth;            /* 0 = the message */
	int parent;                /* index of the enclosing part, -1 for the message */
	const char *content_type;  /* "text/plain", lower case; the RFC 2045 default if absent */
	const char *charset;       /* lower case, or NULL */
	const char *disposition;   /* "attachment", "inline" (lower case), or NULL */
	const char *filename;      /* Content-Disposition filename or Content-Type name
				    * (the RFC 2231 form first), RFC 2231/2047 decoded to
				    * UTF-8 (bytes that are not UTF-8 become U+FFFD);
				    * NULL if none */
	enum mime_encoding encoding;
	bool multipart;            /* its children follow (so may a text part's: see above) */
	bool message;              /* message/rfc822 (global, news): one child follows */
	const struct mime_header *headers;
	size_t header_count;
	uint64_t decoded_size;     /* leaf parts: decoded bytes handed to part_data so far
				    * (final at part_end) */
	const char *sniffed_type;  /* at part_end of a leaf part: libmagic's MIME type of
				    * its first 4 KiB ("application/zip"), or NULL if
				    * it has none or no bytes. A part declared text/...
				    * whose start is plain text (no NUL, no PDF, RTF,
				    * script or undeclared markup) gets libmagic's text
				    * tests only: "text/plain" for HTML declared as
				    * text/html (the whole database costs 1-3 ms on text) */
};

/* What the caller wants to hear; every callback may be NULL. */
struct mime_handler {
	/* A part's header section is complete. */
	void (*part_begin)(void *arg, const struct mime_part *part);
	/* Decoded bytes of a leaf part (never of a multipart or message part). */
	void (*part_data)(void *arg, const struct mime_part *part, const unsigned char *data,
			  size_t len);
	/* A part has ended (for multiparts: after their last child). */
	void (*part_end)(void *arg, const struct mime_part *part);
};

struct mime_parser;

/* limits and handler are copied. */
struct mime_parser *mime_parser_new(const struct mime_limits *limits,
				    const struct mime_handler *handler, void *arg);
/* Message bytes, LF or CRLF line ends, any piece size: the parse is the
 * same however the message is cut. A leading UTF-8 byte order mark and an
 * mbox "From " line are skipped. */
void mime_parser_feed(struct mime_parser *p, const void *data, size_t len);
/* The end of the message: open parts are closed. Returns the problem bits
 * (enum mime_problem) of the whole parse. */
unsigned mime_parser_finish(struct mime_parser *p);
void mime_parser_free(struct mime_parser **p);

/* Decode RFC 2047 encoded words of a header value into UTF-8 (appended to
 * out); unknown charsets and broken words are kept as written; a NUL, CR
 * or LF a word decodes to becomes U+FFFD or a space. The output is at most
 * 3 * len bytes. */
void mime_decode_words(const char *value, size_t len, buf_t *out);

/*
 * The decoded text of a part (in, len bytes, declared charset or NULL)
 * appended to out as UTF-8, read the way mail clients and SpamAssassin
 * read it: bytes that are all ASCII, or all valid UTF-8, are taken as
 * they are (a legacy label on UTF-8 text is a common mistake), unless the
 * charset is one where ASCII bytes do not stand for themselves (UTF-16,
 * UTF-7, ISO-2022-*); otherwise the declared charset is converted (with
 * the labels of mime_charset.c read as browsers read them), and a missing
 * or unknown charset is read as Windows-1252. Sequences the charset does
 * not allow become U+FFFD; a NUL byte stays. Returns the charset the text
 * was read as ("us-ascii", "utf-8", the label, "windows-1252").
 */
const char *mime_text_to_utf8(const char *charset, const void *in, size_t len, buf_t *out);

/* A short name for one problem bit, for logs and verdicts:
 * "too_deep", "too_many_parts", "header_too_big", "decoded_too_big",
 * "malformed". */
const char *mime_problem_name(unsigned problem_bit);

#endif
