/*
 * scan.h - the content pipeline: one verdict per message, from one MIME
 * pass over its bytes and an ordered list of stages: antivirus (first, so
 * that a virus is refused and reported as one), content rules
 * (attachments, headers, envelope), and later spam scoring. The same pipeline serves the scanner processes (for the
 * smtp workers), `postern scan` and, later, the milter server.
 *
 * A stage reads the message and the MIME pass's summary, and answers a
 * scan_verdict. The first REJECT, TEMPFAIL, DISCARD or QUARANTINE decides;
 * ACCEPT and TAG let the next stage run; header fields to add and the
 * names of what matched add up over all stages. A stage that cannot work
 * (a dead clamd, a broken engine) returns -1: the other stages still run,
 * and if none of them decides, the pipeline answers TEMPFAIL (fail
 * closed), or ACCEPT with a log line when scan_fail_open is set. Every
 * verdict leaves the pipeline in the normal form (scan_verdict_normalize).
 *
 * Untrusted input: the message (every stage bounds what it reads, in
 * size and time). Runs in the unprivileged scanner processes, which hold
 * no TLS key, no users file and no listening socket, and in `postern
 * scan`.
 */
#ifndef POSTERN_SCAN_H
#define POSTERN_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"
#include "../lib/config.h"
#include "../lib/strutil.h"
#include "../mime/mime.h"

enum scan_action {
	SCAN_ACCEPT,     /* no objection */
	SCAN_TAG,        /* accept, adding verdict.headers */
	SCAN_REJECT,     /* 5xx: code/status/text */
	SCAN_TEMPFAIL,   /* 4xx: code/status/text */
	SCAN_DISCARD,    /* accept for the client, never deliver (logged) */
	SCAN_QUARANTINE, /* accept into spool/quarantine/ */
};

#define SCAN_HEADERS_MAX 16   /* header fields one verdict may add, and names it may remove */
#define SCAN_FIELD_NAME_MAX 255
#define SCAN_HITS_MAX 32      /* names of what matched, kept per verdict */
#define SCAN_TIMINGS_MAX 8

struct scan_timing {
	const char *stage;  /* "mime", "rules", "antivirus" (static strings) */
	uint32_t us;
};

struct scan_verdict {
	enum scan_action action;
	int code;            /* REJECT/TEMPFAIL: 0 = the default (550 5.7.1 / 451 4.7.0) */
	char status[12];     /* enhanced status code */
	char text[512];      /* reply text, without code */
	char reason[64];     /* for logs: "virus", "content_rule", "mime_limit", "scan_failed" */
	strlist_t headers;   /* "Name: value" fields to add (TAG; kept on ACCEPT and QUARANTINE) */
	/* Field names whose every occurrence in the message's own header
	 * section goes (the forged X-Spam-* of an incoming message), kept
	 * with headers: removal counts the fields as received, so a field of
	 * the same name added above stays. */
	strlist_t remove_headers;
	strlist_t hits;      /* "virus:NAME", "rule:NAME", "mime:too_deep", ...; and
			      * "attachment:FILENAME" for the part a verdict is about
			      * (the notices' {attachment}) */
	struct scan_timing timings[SCAN_TIMINGS_MAX];
	size_t timing_count;
};

void scan_verdict_init(struct scan_verdict *v);
void scan_verdict_free(struct scan_verdict *v);
/* "accept", "tag", "reject", "tempfail", "discard", "quarantine". */
const char *scan_action_name(enum scan_action a);

/*
 * Helpers for stages (and the pipeline). scan_verdict_set: the action,
 * code (0 = the default), enhanced status ("" = the default), reason and
 * printf text. Header fields: "Name: value" as the queue file takes them
 * (a name of printable ASCII without space or colon, a value without
 * control characters but TAB, folded as LF + white space, at most
 * SCAN_HEADER_TEXT_MAX bytes): scan_verdict_add_header is false (and adds
 * nothing) for a malformed field or when SCAN_HEADERS_MAX are there.
 * scan_verdict_add_hit keeps at most SCAN_HITS_MAX names, each cut at
 * SCAN_HIT_MAX bytes with control characters, spaces and commas made '_'
 * (hits go into log lines as one comma-separated field; bytes of UTF-8
 * stay).
 */
#define SCAN_HEADER_TEXT_MAX 2000
#define SCAN_HIT_MAX 255
void scan_verdict_set(struct scan_verdict *v, enum scan_action a, int code, const char *status,
		      const char *reason, const char *fmt, ...) PRINTF_LIKE(6, 7);
bool scan_verdict_add_header(struct scan_verdict *v, const char *field);
/* Remove every field of this name (1..SCAN_FIELD_NAME_MAX printable ASCII
 * without space or colon) from the message's header section; false (and
 * nothing recorded) for a bad name or when SCAN_HEADERS_MAX are there. A
 * name already listed (case-insensitively) is true and listed once. */
bool scan_verdict_remove_header(struct scan_verdict *v, const char *name);
bool scan_field_name_ok(const char *name);
void scan_verdict_add_hit(struct scan_verdict *v, const char *hit);
/* Record a stage's time (ignored beyond SCAN_TIMINGS_MAX); stage: a static string. */
void scan_verdict_add_timing(struct scan_verdict *v, const char *stage, uint32_t us);
bool scan_header_field_ok(const char *field);

/*
 * The verdict for a message that could not be scanned (a stage failed, a
 * scanner crashed or overran, no scanner could be reached): TEMPFAIL 451
 * 4.7.0 with text, or, when fail_open, ACCEPT. Either way reason is the
 * failure's, which starts with "scan_" ("scan_failed", "scan_timeout",
 * "scan_crashed", "scan_busy", "scan_unavailable") and nothing else's
 * does, so scan_verdict_failed() tells a failure from a judgement.
 */
void scan_verdict_fail(struct scan_verdict *v, bool fail_open, const char *reason,
		       const char *fmt, ...) PRINTF_LIKE(4, 5);
bool scan_verdict_failed(const struct scan_verdict *v);

/*
 * What every verdict the pipeline answers looks like (scan_pipeline_run
 * ends with it; the scan master applies it to the verdicts it makes
 * itself; the protocol refuses anything else): for REJECT a code 500..599
 * and for TEMPFAIL 400..499 with an enhanced status code of the same
 * class (the defaults 550 5.7.1 / 451 4.7.0 replace a code or status
 * that does not fit, and a default text an empty one), code 0 and no
 * status for the other actions; text of printable ASCII (other bytes
 * become '?'); the reason of [A-Za-z0-9_.:-] (others become '_'); header
 * fields that scan_header_field_ok accepts (others dropped); timings whose
 * stage name is 1..SCAN_STAGE_NAME_MAX of [a-z0-9_] (others dropped).
 */
#define SCAN_STAGE_NAME_MAX 31
void scan_verdict_normalize(struct scan_verdict *v);
/* The checks behind it, for the protocol's decoder. */
bool scan_status_ok(const char *status, char cls);
bool scan_reason_ok(const char *reason);
bool scan_hit_ok(const char *hit);
bool scan_stage_name_ok(const char *name);

/* The envelope, for rules on sender, recipients and client. */
struct scan_envelope {
	const char *queue_id;    /* "" offline */
	const char *sender;      /* "" for <> */
	const strlist_t *rcpts;  /* may be empty offline */
	const char *client_addr; /* "" offline */
	const char *helo;        /* "" offline */
};

/* What the MIME pass keeps of each part for the stages (copies). */
struct scan_part {
	unsigned index;
	unsigned depth;
	int parent;
	char *content_type;   /* declared, lower case */
	char *sniffed_type;   /* libmagic's, or NULL */
	char *filename;       /* UTF-8, or NULL */
	char *disposition;    /* or NULL */
	char *charset;        /* declared, lower case, or NULL */
	enum mime_encoding encoding; /* its Content-Transfer-Encoding */
	uint64_t decoded_size;
	bool multipart, message;
	/* The decoded bytes of parts that may be archives (by sniffed type or
	 * filename), up to scan_archive_max_bytes; empty for the others. */
	buf_t archive;
	bool archive_truncated;
	/* The decoded bytes (transfer encoding undone, charset not) of the
	 * leaf parts the spam tests read (scan_message_wants_text), up to
	 * spam_max_text for the whole message; empty for the others. */
	buf_t text;
	bool text_truncated;
};

/* One header field of the message or of a part. */
struct scan_header {
	unsigned part;   /* 0 = the message's own header section */
	char *name;
	char *raw;       /* unfolded, not decoded */
	char *decoded;   /* RFC 2047 decoded, UTF-8 */
};

struct scan_message {
	const struct scan_envelope *env;
	const unsigned char *data;   /* the message bytes, LF or CRLF line ends */
	size_t len;
	/* The MIME pass, done once before the stages run. */
	struct scan_part *parts;
	size_t part_count;
	struct scan_header *headers;
	size_t header_count;
	unsigned mime_problems;      /* enum mime_problem bits */
};

struct scan_stage {
	const char *name;
	/* Judge m, filling v (left ACCEPT = no objection). 0, or -1 when the
	 * stage could not work (v->text says why). */
	int (*run)(void *ctx, const struct scan_message *m, struct scan_verdict *v);
	/* Has anything the stage loaded changed on disk since (signature
	 * files)? May be NULL. The scan master polls it to rebuild. */
	bool (*stale)(void *ctx);
	/* Free ctx (the stage is going away). */
	void (*free)(void *ctx);
	void *ctx;
	/* The stage never reads the parts' sniffed types (sniffed_type) nor
	 * archive bytes: when no stage does, the MIME pass skips libmagic and
	 * keeps no archive bytes. */
	bool ignores_types;
};

/*
 * The built-in stages' constructors (rules.c, antivirus.c): 1 = not
 * configured (no stage), 0 = *stage_r filled, -1 = a malloc'ed *err_r
 * names the file (and line) that is wrong. Called by scan_pipeline_build,
 * in the scan master before it forks, and by `postern scan`.
 */
int scan_rules_stage_new(const struct config *cfg, struct scan_stage *stage_r, char **err_r);
int scan_antivirus_stage_new(const struct config *cfg, struct scan_stage *stage_r,
			     char **err_r);

struct scan_pipeline;

/*
 * Build the pipeline the configuration asks for: the MIME pass, then the
 * content rules (content_rules_file), then the antivirus (clamav_db_dir or
 * clamd_socket). Loads and compiles everything (rules, signatures) now,
 * so that forked scanner processes share it. NULL with a malloc'ed
 * *err_r naming the file (and line) that is wrong.
 */
struct scan_pipeline *scan_pipeline_build(const struct config *cfg, char **err_r);
/* The pipelines built from now on serve this process alone (postern scan,
 * check-config): what the scan master prepares before forking so that its
 * scanners share it (the spam rules' JIT code), a stage may then prepare
 * when it is first used. Off by default. */
void scan_pipeline_set_one_process(bool one);
bool scan_pipeline_one_process(void);
/* Append a stage (tests, later issues). */
void scan_pipeline_add(struct scan_pipeline *p, const struct scan_stage *stage);
/* How many stages run after the MIME pass (0: only the MIME limits). */
size_t scan_pipeline_stage_count(const struct scan_pipeline *p);
/* Has any stage's material changed on disk (a stage's stale())? */
bool scan_pipeline_stale(const struct scan_pipeline *p);
void scan_pipeline_free(struct scan_pipeline **p);

/*
 * Run the MIME pass and every stage over data[0..len) and fill *v (init
 * it first; free it after). Past a MIME bound the verdict is
 * scan_mime_limit_action (reject or tempfail) with reason "mime_limit".
 */
void scan_pipeline_run(struct scan_pipeline *p, const struct scan_envelope *env,
		       const unsigned char *data, size_t len, struct scan_verdict *v);

#endif
