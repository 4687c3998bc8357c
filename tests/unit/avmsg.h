/*
 * avmsg.h - test messages for the antivirus tests (test_antivirus.c,
 * test_clamd.c), all made here from their source: the EICAR test string
 * (put together from two halves, so that no file of the tree is itself
 * a test virus), MIME messages with an attachment in any encoding, zip
 * files (zlib's deflate) and gzip files. No binary fixtures.
 */
#ifndef POSTERN_AVMSG_H
#define POSTERN_AVMSG_H

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lib/buf.h"

/* The 68-byte EICAR anti-virus test file. */
static inline const char *avmsg_eicar(void)
{
	static char s[69];
	if (s[0] == '\0') {
		strcpy(s, "X5O!P%@AP[4\\PZX54(P^)7CC)7}$");
		strcat(s, "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
	}
	return s;
}

/* The file etc/clamav-test/samples/hash-sample.txt (Postern.Test.HashSample). */
#define AVMSG_HASH_SAMPLE \
	"postern antivirus test sample: this exact file matches the MD5 signature " \
	"Postern.Test.HashSample\n"
/* A line with the second test pattern (Postern.Test.Pattern). */
#define AVMSG_PATTERN_SAMPLE "see POSTERN-AV-TEST-2:\x01\xfe\x00!:END here\n"
#define AVMSG_PATTERN_SAMPLE_LEN (sizeof(AVMSG_PATTERN_SAMPLE) - 1)

/* ---- encodings ---- */

static inline void avmsg_base64(buf_t *out, const void *data, size_t len)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	size_t col = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t n = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			n |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			n |= p[i + 2];
		buf_putc(out, abc[(n >> 18) & 63]);
		buf_putc(out, abc[(n >> 12) & 63]);
		buf_putc(out, i + 1 < len ? abc[(n >> 6) & 63] : '=');
		buf_putc(out, i + 2 < len ? abc[n & 63] : '=');
		if ((col += 4) >= 76) {
			buf_putc(out, '\n');
			col = 0;
		}
	}
	if (col)
		buf_putc(out, '\n');
}

/* Quoted-printable: every byte but letters, digits and space as =XX
 * (RFC 2045 allows any octet so), soft line breaks before column 76. */
static inline void avmsg_qp(buf_t *out, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t col = 0;
	for (size_t i = 0; i < len; i++) {
		if (col >= 72) {
			buf_puts(out, "=\n");
			col = 0;
		}
		if (p[i] == '\n') {
			buf_putc(out, '\n');
			col = 0;
		} else if (!(isalnum(p[i]) || p[i] == ' ')) {
			buf_printf(out, "=%02X", p[i]);
			col += 3;
		} else {
			buf_putc(out, (char)p[i]);
			col++;
		}
	}
	buf_putc(out, '\n');
}

/* uuencode: "begin 644 NAME", lines of up to 45 bytes, "`", "end". */
static inline void avmsg_uuencode(buf_t *out, const char *name, const void *data, size_t len)
{
	const unsigned char *p = data;
	buf_printf(out, "begin 644 %s\n", name);
	for (size_t i = 0; i < len; i += 45) {
		size_t n = len - i < 45 ? len - i : 45;
		buf_putc(out, (char)(n ? 32 + n : '`'));
		for (size_t j = 0; j < n; j += 3) {
			uint32_t v = (uint32_t)p[i + j] << 16;
			if (j + 1 < n)
				v |= (uint32_t)p[i + j + 1] << 8;
			if (j + 2 < n)
				v |= p[i + j + 2];
			for (int k = 18; k >= 0; k -= 6) {
				unsigned c = (v >> k) & 63;
				buf_putc(out, (char)(c ? 32 + c : '`'));
			}
		}
		buf_putc(out, '\n');
	}
	buf_puts(out, "`\nend\n");
}

/* ---- archives ---- */

static inline void avmsg_le16(buf_t *b, unsigned v)
{
	buf_putc(b, (char)(v & 0xff));
	buf_putc(b, (char)((v >> 8) & 0xff));
}

static inline void avmsg_le32(buf_t *b, uint32_t v)
{
	avmsg_le16(b, v & 0xffff);
	avmsg_le16(b, v >> 16);
}

/* Deflate data (raw with window_bits -15, gzip with 31) into out. */
static inline void avmsg_deflate(buf_t *out, const void *data, size_t len, int window_bits)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	size_t bound = deflateBound(&zs, (uLong)len);
	buf_reserve(out, bound);
	zs.next_in = (Bytef *)data;
	zs.avail_in = (uInt)len;
	zs.next_out = (Bytef *)out->data + out->len;
	zs.avail_out = (uInt)bound;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
		abort();
	out->len += zs.total_out;
	out->data[out->len] = '\0';
	deflateEnd(&zs);
}

static inline void avmsg_gzip(buf_t *out, const void *data, size_t len)
{
	avmsg_deflate(out, data, len, 31);
}

struct avmsg_file {
	const char *name;
	const void *data;
	size_t len;
};

/* A zip file (deflated entries) holding files[0..n). */
static inline void avmsg_zip(buf_t *out, const struct avmsg_file *files, size_t n)
{
	buf_t central = BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		buf_t packed = BUF_INIT;
		avmsg_deflate(&packed, files[i].data, files[i].len, -15);
		uint32_t crc = (uint32_t)crc32(0, files[i].data, (uInt)files[i].len);
		uint32_t offset = (uint32_t)out->len;
		unsigned name_len = (unsigned)strlen(files[i].name);
		avmsg_le32(out, 0x04034b50);
		avmsg_le16(out, 20);
		avmsg_le16(out, 0);      /* flags */
		avmsg_le16(out, 8);      /* deflate */
		avmsg_le16(out, 0);      /* time */
		avmsg_le16(out, 0x21);   /* 1980-01-01 */
		avmsg_le32(out, crc);
		avmsg_le32(out, (uint32_t)packed.len);
		avmsg_le32(out, (uint32_t)files[i].len);
		avmsg_le16(out, name_len);
		avmsg_le16(out, 0);
		buf_append(out, files[i].name, name_len);
		buf_append(out, packed.data, packed.len);

		avmsg_le32(&central, 0x02014b50);
		avmsg_le16(&central, 20);
		avmsg_le16(&central, 20);
		avmsg_le16(&central, 0);
		avmsg_le16(&central, 8);
		avmsg_le16(&central, 0);
		avmsg_le16(&central, 0x21);
		avmsg_le32(&central, crc);
		avmsg_le32(&central, (uint32_t)packed.len);
		avmsg_le32(&central, (uint32_t)files[i].len);
		avmsg_le16(&central, name_len);
		avmsg_le16(&central, 0); /* extra */
		avmsg_le16(&central, 0); /* comment */
		avmsg_le16(&central, 0); /* disk */
		avmsg_le16(&central, 0); /* internal attributes */
		avmsg_le32(&central, 0); /* external attributes */
		avmsg_le32(&central, offset);
		buf_append(&central, files[i].name, name_len);
		buf_free(&packed);
	}
	uint32_t cd_offset = (uint32_t)out->len;
	buf_append(out, central.data, central.len);
	avmsg_le32(out, 0x06054b50);
	avmsg_le16(out, 0);
	avmsg_le16(out, 0);
	avmsg_le16(out, (unsigned)n);
	avmsg_le16(out, (unsigned)n);
	avmsg_le32(out, (uint32_t)central.len);
	avmsg_le32(out, cd_offset);
	avmsg_le16(out, 0);
	buf_free(&central);
}

/* A zip holding one file. */
static inline void avmsg_zip1(buf_t *out, const char *name, const void *data, size_t len)
{
	struct avmsg_file f = { name, data, len };
	avmsg_zip(out, &f, 1);
}

/* ---- messages ---- */

/*
 * A multipart/mixed message: `first` (header fields ending in "\n", or
 * ""), then From/To/Subject/MIME-Version, a text part, and one
 * attachment of type ctype named name, encoded with cte ("base64",
 * "quoted-printable", "7bit" (as is), "x-uuencode" (uuencoded, declared
 * 7bit)).
 */
static inline void avmsg_with_attachment(buf_t *out, const char *first, const char *ctype,
					 const char *name, const char *cte, const void *data,
					 size_t len)
{
	buf_puts(out, first);
	buf_puts(out, "From: <sender@remote.test>\nTo: <alice@example.test>\n"
		      "Subject: a file for you\nMIME-Version: 1.0\n"
		      "Content-Type: multipart/mixed; boundary=\"=-=b1=-=\"\n\n"
		      "This is a MIME message.\n\n--=-=b1=-=\n"
		      "Content-Type: text/plain; charset=us-ascii\n\nThe file is attached.\n\n"
		      "--=-=b1=-=\n");
	bool uu = strcmp(cte, "x-uuencode") == 0;
	buf_printf(out, "Content-Type: %s; name=\"%s\"\n"
			"Content-Disposition: attachment; filename=\"%s\"\n"
			"Content-Transfer-Encoding: %s\n\n",
		   ctype, name, name, uu ? "7bit" : cte);
	if (strcmp(cte, "base64") == 0)
		avmsg_base64(out, data, len);
	else if (strcmp(cte, "quoted-printable") == 0)
		avmsg_qp(out, data, len);
	else if (uu)
		avmsg_uuencode(out, name, data, len);
	else
		buf_append(out, data, len);
	buf_puts(out, "\n--=-=b1=-=--\n");
}

/* A message whose attachment is the message `inner` (message/rfc822). */
static inline void avmsg_with_message(buf_t *out, const buf_t *inner)
{
	buf_puts(out, "From: <forwarder@remote.test>\nTo: <alice@example.test>\n"
		      "Subject: Fwd: a file for you\nMIME-Version: 1.0\n"
		      "Content-Type: multipart/mixed; boundary=\"outer\"\n\n"
		      "--outer\nContent-Type: text/plain\n\nForwarded.\n\n--outer\n"
		      "Content-Type: message/rfc822\nContent-Disposition: attachment\n\n");
	buf_append(out, inner->data, inner->len);
	buf_puts(out, "\n--outer--\n");
}

/* Replace every "\n" of in by "\r\n". */
static inline void avmsg_crlf(buf_t *out, const buf_t *in)
{
	for (size_t i = 0; i < in->len; i++) {
		if (in->data[i] == '\n')
			buf_putc(out, '\r');
		buf_putc(out, in->data[i]);
	}
}

#endif
