/*
 * mime_internal.h - what the files of src/mime share and nobody else
 * needs: charset conversion to UTF-8 (iconv, with a small cache of open
 * converters), RFC 2047 encoded words, RFC 2045/2231 parameters, the
 * streaming body decoders (base64, quoted-printable, uuencode) and the
 * libmagic sniffer.
 *
 * Untrusted input: header values and body bytes of a message. Runs in
 * the unprivileged scanner processes and in `postern scan`.
 */
#ifndef POSTERN_MIME_INTERNAL_H
#define POSTERN_MIME_INTERNAL_H

#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "mime.h"

/* ---- charsets (mime_charset.c) ---- */

#define MIME_CHARSET_NAME_MAX 40 /* longer names are not charsets we know */
#define MIME_CHARSET_CACHE 8

struct mime_charset_slot {
	char name[MIME_CHARSET_NAME_MAX + 1]; /* normalised: lower case, no *language */
	iconv_t cd;                           /* (iconv_t)-1: iconv does not know it */
	bool ascii_compatible;                /* ASCII bytes stand for themselves */
	unsigned last_use;
};

/* Converters opened so far; zero-filled is an empty cache. */
struct mime_charsets {
	struct mime_charset_slot slot[MIME_CHARSET_CACHE];
	unsigned used;
	unsigned clock;
};

void mime_charsets_free(struct mime_charsets *cs);
/* Append len bytes written in charset (name of name_len bytes, any case,
 * an RFC 2231 "*language" suffix allowed) to out as UTF-8; sequences the
 * charset does not allow become U+FFFD. false, with nothing appended,
 * when the charset is unknown. */
bool mime_charset_to_utf8(struct mime_charsets *cs, const char *name, size_t name_len,
			  const char *in, size_t len, buf_t *out);
/* Append bytes that should be UTF-8 to out, each invalid byte replaced
 * by U+FFFD. */
void mime_utf8_sanitize(const char *in, size_t len, buf_t *out);
/* Replace each NUL byte of b from index from on by U+FFFD, so that the
 * text can be used as a C string without being cut short. */
void mime_replace_nul(buf_t *b, size_t from);
/* Is every byte below 0x80? */
bool mime_is_ascii(const char *in, size_t len);

/* ---- RFC 2047 encoded words (mime_words.c) ---- */

/* mime_decode_words with the caller's converter cache. */
void mime_words_decode(struct mime_charsets *cs, const char *value, size_t len, buf_t *out);
/* Could value hold an encoded word at all ("=?" somewhere)? */
bool mime_words_maybe(const char *value, size_t len);

/* ---- structured field values (mime_params.c) ---- */

/* The value before the first ';' of a Content-Type or
 * Content-Disposition value, comments and white space removed, lower
 * case, appended to out ("text/plain", "attachment"). false if empty. */
bool mime_value_token(const char *value, size_t len, buf_t *out);
/* The parameter called name (ASCII, any case) of a structured value,
 * appended to out: RFC 2231 forms (name*, name*0, name*0*, ...) first,
 * their charset converted to UTF-8; else the plain form, unquoted, with
 * RFC 2047 words decoded when decode_words is set. false if absent. */
bool mime_param_get(struct mime_charsets *cs, const char *value, size_t len, const char *name,
		    bool decode_words, buf_t *out);

/* ---- header sections (mime_header.c) ---- */

/* Record a repair (MIME_MALFORMED) in *problems; why is printed by builds
 * made with -DMIME_TRACE, for people reading a parse. */
void mime_malformed(unsigned *problems, const char *why);

struct mime_field {
	size_t name_off, raw_off, raw_len; /* in text */
	size_t decoded_off;                /* in strings; SIZE_MAX: the same as raw */
};

/* One part's header section as it comes in, then what it says. Zero-filled
 * is empty. */
struct mime_section {
	buf_t text;    /* name NUL raw-value NUL, for each field */
	buf_t strings; /* decoded values and the part's strings */
	struct mime_field *fields;
	size_t count, cap;
	struct mime_header *view;
	size_t view_cap;
	size_t bytes;    /* of the section so far, line ends included */
	bool field_open; /* continuation lines go to the last field */
	bool skip_line;  /* the rest of this line is not a field */
	bool lines_seen;
	bool full; /* past the bound: nothing more is kept */
};

/* What a header section declares: offsets into strings (SIZE_MAX: none). */
struct mime_declared {
	size_t content_type, charset, disposition, filename;
	enum mime_encoding encoding;
};

void mime_section_reset(struct mime_section *s);
void mime_section_free(struct mime_section *s);
/* One piece of a header line (a whole line without its line end, or a
 * piece of a long one: see mime_parser.c). true when it is the empty line
 * that ends the section. may_have_from: an mbox "From " line may come
 * first. Repairs and the bound add bits to *problems. */
bool mime_section_piece(struct mime_section *s, size_t max_bytes, bool may_have_from,
			const char *line, size_t len, size_t eol_len, bool line_start,
			bool complete, unsigned *problems);
/* The section is complete: decode its values and read what it declares
 * (default_type without Content-Type), its boundary parameter into
 * boundary. scratch is working space. */
void mime_section_end(struct mime_section *s, struct mime_charsets *cs, buf_t *scratch,
		      const char *default_type, buf_t *boundary, struct mime_declared *d,
		      unsigned *problems);
bool mime_section_has(const struct mime_section *s, const char *name);
/* Keep a string among the part's strings; its offset. */
size_t mime_section_keep(struct mime_section *s, const char *str, size_t len);
/* Point the part's strings, encoding and headers into s (valid while s is
 * not changed). */
void mime_section_view(struct mime_section *s, const struct mime_declared *d,
		       struct mime_part *part);

/* ---- body decoders (mime_decode.c) ---- */

struct mime_base64 {
	uint32_t bits;  /* sextets gathered so far */
	unsigned count; /* how many (0..3) */
	bool bad;       /* something was skipped or left over */
};

/* Decode base64 text, skipping white space and invalid characters; a
 * '=' ends a group early and decoding goes on after it. out must hold
 * len * 3 / 4 + 3 bytes. Returns the bytes written. */
size_t mime_base64_decode(struct mime_base64 *st, const char *in, size_t len, unsigned char *out);
/* The end of the data: a group left over gives its whole bytes. */
size_t mime_base64_finish(struct mime_base64 *st, unsigned char *out);

#define MIME_QP_CARRY 80 /* white space kept back at the end of a piece */

struct mime_qp {
	char carry[MIME_QP_CARRY + 3]; /* an unfinished "=X" or trailing white space */
	size_t carry_len;
	bool soft_break; /* the line ended with '=': drop its line end */
	bool bad;        /* an '=' that was not an escape */
};

/* Decode a piece of a quoted-printable line; line_end says the piece
 * ends its line (its line end itself is not part of it). out must hold
 * len + MIME_QP_CARRY + 3 bytes. Returns the bytes written. */
size_t mime_qp_decode(struct mime_qp *st, const char *in, size_t len, bool line_end,
		      unsigned char *out);
/* Whatever was kept back, at the end of the data. out as above. */
size_t mime_qp_finish(struct mime_qp *st, unsigned char *out);

struct mime_uu {
	bool in_block; /* between "begin" and "end" */
	bool ended;    /* "end" seen */
	bool bad;
};

/* Is this line a uuencode "begin MODE NAME" line? *name_r, *name_len_r
 * point into line. */
bool mime_uu_begin_line(const char *line, size_t len, const char **name_r, size_t *name_len_r);
/* Is this line "end" (white space around allowed)? */
bool mime_uu_end_line(const char *line, size_t len);
/* Decode one whole line of a uuencoded block (no line end) into out (at
 * least 64 bytes). Returns the bytes written. */
size_t mime_uu_decode_line(struct mime_uu *st, const char *line, size_t len, unsigned char *out);

/* ---- sniffing (mime_sniff.c) ---- */

#define MIME_SNIFF_BYTES 4096 /* how much of a part's start libmagic sees */

/* libmagic's MIME type of data (at most MIME_SNIFF_BYTES) of a part
 * declared as type declared, copied to type_r (type_size bytes); false if
 * libmagic could not load or answer. */
bool mime_sniff(const char *declared, const unsigned char *data, size_t len, char *type_r,
		size_t type_size);

#endif
