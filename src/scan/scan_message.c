/*
 * scan_message.c - the pipeline's MIME pass (see scan_message.h): the
 * streaming parser's callbacks fill struct scan_message with copies of
 * what the stages need.
 *
 * Whether a leaf part may be an archive is decided from its declared type
 * and file name at its start, else from its first SCAN_ARCHIVE_SNIFF_BYTES
 * decoded bytes (magic numbers: a zip sent as text/plain is still a zip),
 * else from libmagic's type at its end; only an archive's bytes are kept
 * beyond that first look. The decoded bytes of the text parts the spam
 * tests read are kept beside (a text part's own text goes on around a
 * uuencoded block that became its child).
 *
 * RFCs: RFC 2045-2049 through the parser (mime.h). Untrusted input: the
 * message. Privilege: unprivileged scanners and `postern scan`.
 */
#include "scan_message.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"

struct pass {
	struct scan_message *m;
	size_t parts_cap, headers_cap;
	uint64_t part_header_bytes, part_header_budget;
	uint64_t archive_left;  /* archive bytes the message may still keep */
	uint64_t text_left;     /* text bytes likewise */
	long text_part;         /* the text part being kept (index into m->parts), -1: none */
	/* The leaf part being decoded. */
	long leaf;              /* index into m->parts, -1: none */
	buf_t bytes;            /* its first bytes, then an archive's */
	bool decided, archive, truncated;
};

/* ---- what an archive looks like ------------------------------------------------- */

static const char *const archive_types[] = {
	"application/zip", "application/x-zip", "application/x-zip-compressed",
	"application/gzip", "application/x-gzip", "application/x-gtar", "application/x-tar",
	"application/x-bzip2", "application/x-xz", "application/x-7z-compressed",
	"application/x-rar", "application/x-rar-compressed", "application/vnd.rar",
	"application/java-archive", "application/x-cpio", "application/x-iso9660-image",
	"application/vnd.ms-cab-compressed", "application/x-lzh-compressed",
	"application/x-lha", "application/x-arj", "application/x-ace-compressed",
	"application/zstd", "application/x-compress",
};

static const char *const archive_extensions[] = {
	"zip", "jar", "gz", "tgz", "tar", "bz2", "tbz", "tbz2", "xz", "txz", "7z", "rar",
	"cab", "iso", "img", "lzh", "lha", "arj", "ace", "cpio", "z", "zst", "zipx",
};

struct magic {
	size_t at;
	const char *bytes;
	size_t len;
};

static const struct magic archive_magics[] = {
	{ 0, "PK\x03\x04", 4 }, { 0, "PK\x05\x06", 4 }, { 0, "PK\x07\x08", 4 },
	{ 0, "\x1f\x8b", 2 }, { 0, "BZh", 3 }, { 0, "\xfd" "7zXZ\x00", 6 },
	{ 0, "7z\xbc\xaf\x27\x1c", 6 }, { 0, "Rar!\x1a\x07", 6 }, { 0, "MSCF", 4 },
	{ 257, "ustar", 5 }, { 0, "\x28\xb5\x2f\xfd", 4 }, { 0, "\x1f\x9d", 2 },
	{ 0, "070707", 6 }, { 0, "070701", 6 }, { 0, "\x60\xea", 2 },
};

static bool type_is_archive(const char *type)
{
	for (size_t i = 0; type != NULL && i < ARRAY_LEN(archive_types); i++)
		if (str_eq_nocase(type, archive_types[i]))
			return true;
	return false;
}

static bool name_is_archive(const char *filename)
{
	const char *dot = filename != NULL ? strrchr(filename, '.') : NULL;
	for (size_t i = 0; dot != NULL && i < ARRAY_LEN(archive_extensions); i++)
		if (str_eq_nocase(dot + 1, archive_extensions[i]))
			return true;
	return false;
}

bool scan_looks_like_archive(const char *type, const char *filename,
			     const unsigned char *head, size_t len)
{
	if (type_is_archive(type) || name_is_archive(filename))
		return true;
	for (size_t i = 0; head != NULL && i < ARRAY_LEN(archive_magics); i++) {
		const struct magic *mg = &archive_magics[i];
		if (len >= mg->at + mg->len && memcmp(head + mg->at, mg->bytes, mg->len) == 0)
			return true;
	}
	return false;
}

bool scan_message_wants_text(const char *type, const char *filename)
{
	const char *dot = filename != NULL ? strrchr(filename, '.') : NULL;
	if (dot != NULL && (str_eq_nocase(dot, ".htm") || str_eq_nocase(dot, ".html") ||
			    str_eq_nocase(dot, ".shtml")))
		return true;
	if (type == NULL)
		return false;
	if (str_has_prefix_nocase(type, "text/"))
		return !str_eq_nocase(type, "text/calendar");
	return str_has_prefix_nocase(type, "message/");
}

/* ---- the callbacks ------------------------------------------------------------- */

static char *copy_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static struct scan_part *find_part(struct pass *p, unsigned index)
{
	for (size_t i = p->m->part_count; i > 0; i--)
		if (p->m->parts[i - 1].index == index)
			return &p->m->parts[i - 1];
	return NULL;
}

static void keep_headers(struct pass *p, const struct mime_part *part)
{
	struct scan_message *m = p->m;
	for (size_t i = 0; i < part->header_count; i++) {
		const struct mime_header *h = &part->headers[i];
		uint64_t size = strlen(h->name) + strlen(h->raw) + strlen(h->decoded);
		if (part->index != 0) {
			if (size > p->part_header_budget - p->part_header_bytes)
				return;
			p->part_header_bytes += size;
		}
		if (m->header_count == p->headers_cap) {
			p->headers_cap = p->headers_cap != 0 ? p->headers_cap * 2 : 32;
			m->headers = xreallocarray(m->headers, p->headers_cap, sizeof(*m->headers));
		}
		struct scan_header *sh = &m->headers[m->header_count++];
		sh->part = part->index;
		sh->name = xstrdup(h->name);
		sh->raw = xstrdup(h->raw);
		sh->decoded = xstrdup(h->decoded);
	}
}

static void part_begin(void *arg, const struct mime_part *part)
{
	struct pass *p = arg;
	struct scan_message *m = p->m;
	if (m->part_count == p->parts_cap) {
		p->parts_cap = p->parts_cap != 0 ? p->parts_cap * 2 : 16;
		m->parts = xreallocarray(m->parts, p->parts_cap, sizeof(*m->parts));
	}
	struct scan_part *sp = &m->parts[m->part_count++];
	memset(sp, 0, sizeof(*sp));
	sp->index = part->index;
	sp->depth = part->depth;
	sp->parent = part->parent;
	sp->content_type = xstrdup(part->content_type != NULL ? part->content_type : "");
	sp->filename = copy_or_null(part->filename);
	sp->disposition = copy_or_null(part->disposition);
	sp->charset = copy_or_null(part->charset);
	sp->encoding = part->encoding;
	sp->multipart = part->multipart;
	sp->message = part->message;
	keep_headers(p, part);
	p->leaf = -1;
	/* A uuencoded block's part is a child of the text part around it,
	 * whose text goes on after the block: that one stays open. */
	if (p->text_part >= 0 && part->parent != (int)m->parts[p->text_part].index)
		p->text_part = -1;
	if (part->multipart || part->message)
		return;
	p->leaf = (long)(m->part_count - 1);
	if (p->text_part < 0 && scan_message_wants_text(part->content_type, part->filename))
		p->text_part = p->leaf;
	buf_reset(&p->bytes);
	p->archive = scan_looks_like_archive(part->content_type, part->filename, NULL, 0);
	p->decided = p->archive;
	p->truncated = false;
}

/* Take up to n more bytes of the leaf part, within limit in all. */
static void take_bytes(struct pass *p, const unsigned char *data, size_t n, uint64_t limit)
{
	uint64_t room = limit > p->bytes.len ? limit - p->bytes.len : 0;
	if (n > room) {
		p->truncated = true;
		n = (size_t)room;
	}
	buf_append(&p->bytes, data, n);
}

static void keep_text(struct pass *p, const unsigned char *data, size_t len)
{
	struct scan_part *sp = &p->m->parts[p->text_part];
	size_t n = len;
	if (n > p->text_left) {
		n = (size_t)p->text_left;
		sp->text_truncated = true;
	}
	buf_append(&sp->text, data, n);
	p->text_left -= n;
}

static void part_data(void *arg, const struct mime_part *part, const unsigned char *data,
		      size_t len)
{
	struct pass *p = arg;
	if (p->text_part >= 0 && p->m->parts[p->text_part].index == part->index)
		keep_text(p, data, len);
	/* Only the innermost open leaf's bytes (a text part's own text around
	 * a uuencoded block that became its child is not kept). */
	if (p->leaf < 0 || p->m->parts[p->leaf].index != part->index ||
	    (p->decided && !p->archive))
		return;
	if (!p->decided) {
		size_t n = len;
		if (n > SCAN_ARCHIVE_SNIFF_BYTES - p->bytes.len)
			n = SCAN_ARCHIVE_SNIFF_BYTES - p->bytes.len;
		buf_append(&p->bytes, data, n);
		data += n;
		len -= n;
		if (p->bytes.len < SCAN_ARCHIVE_SNIFF_BYTES)
			return;
		p->decided = true;
		p->archive = scan_looks_like_archive(NULL, NULL, (unsigned char *)p->bytes.data,
						     p->bytes.len);
		if (!p->archive) {
			buf_reset(&p->bytes);
			return;
		}
	}
	uint64_t limit = p->archive_left > SCAN_ARCHIVE_SNIFF_BYTES ? p->archive_left
								   : SCAN_ARCHIVE_SNIFF_BYTES;
	take_bytes(p, data, len, limit);
}

static void part_end(void *arg, const struct mime_part *part)
{
	struct pass *p = arg;
	struct scan_part *sp = find_part(p, part->index);
	if (sp == NULL)
		return;
	sp->decoded_size = part->decoded_size;
	if (part->sniffed_type != NULL && sp->sniffed_type == NULL)
		sp->sniffed_type = xstrdup(part->sniffed_type);
	if (p->text_part >= 0 && &p->m->parts[p->text_part] == sp)
		p->text_part = -1;
	if (p->leaf < 0 || &p->m->parts[p->leaf] != sp)
		return;
	p->leaf = -1;
	bool archive = p->archive;
	if (!p->decided)
		archive = scan_looks_like_archive(part->sniffed_type, NULL,
						  (unsigned char *)p->bytes.data, p->bytes.len);
	else if (!archive && type_is_archive(part->sniffed_type))
		archive = sp->archive_truncated = true; /* its bytes are gone already */
	if (!archive) {
		buf_reset(&p->bytes);
		return;
	}
	size_t keep = p->bytes.len;
	if (keep > p->archive_left) {
		keep = (size_t)p->archive_left;
		p->truncated = true;
	}
	if (keep > 0) {
		sp->archive = p->bytes; /* taken over */
		sp->archive.len = keep;
		sp->archive.data[keep] = '\0';
		buf_init(&p->bytes);
	} else {
		buf_reset(&p->bytes);
	}
	sp->archive_truncated = p->truncated || part->decoded_size > keep;
	p->archive_left -= keep;
}

void scan_message_parse(struct scan_message *m, const struct mime_limits *limits,
			uint64_t archive_max)
{
	scan_message_parse_keeping(m, limits, archive_max, SCAN_TEXT_MAX_DEFAULT);
}

void scan_message_parse_keeping(struct scan_message *m, const struct mime_limits *limits,
				uint64_t archive_max, uint64_t text_max)
{
	struct pass p = { .m = m, .leaf = -1, .archive_left = archive_max, .text_left = text_max,
			  .text_part = -1 };
	p.part_header_budget = SCAN_PART_HEADERS_FACTOR * (uint64_t)limits->max_header_bytes;
	buf_init(&p.bytes);
	struct mime_handler handler = { part_begin, part_data, part_end };
	struct mime_parser *parser = mime_parser_new(limits, &handler, &p);
	mime_parser_feed(parser, m->data, m->len);
	m->mime_problems = mime_parser_finish(parser);
	mime_parser_free(&parser);
	buf_free(&p.bytes);
}

void scan_message_free(struct scan_message *m)
{
	for (size_t i = 0; i < m->part_count; i++) {
		struct scan_part *sp = &m->parts[i];
		free(sp->content_type);
		free(sp->sniffed_type);
		free(sp->filename);
		free(sp->disposition);
		free(sp->charset);
		buf_free(&sp->archive);
		buf_free(&sp->text);
	}
	for (size_t i = 0; i < m->header_count; i++) {
		free(m->headers[i].name);
		free(m->headers[i].raw);
		free(m->headers[i].decoded);
	}
	xfree(&m->parts);
	xfree(&m->headers);
	m->part_count = m->header_count = 0;
}
