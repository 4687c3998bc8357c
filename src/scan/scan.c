/*
 * scan.c - the content pipeline (scan.h): built once from the
 * configuration (the stages load and compile what they need), then run
 * on each message: the MIME pass, the MIME bounds, then each stage in
 * order, their answers merged into one verdict.
 *
 * Merging: header fields and hits add up over the stages (within their
 * bounds); TAG makes the verdict TAG; the first REJECT, TEMPFAIL, DISCARD
 * or QUARANTINE decides and the later stages do not run. A stage that
 * cannot work (-1) does not stop the others: if none of them condemns the
 * message, the verdict is the failure's (451 4.7.0 "scan_failed", or
 * ACCEPT with that reason under scan_fail_open), and the header fields of
 * the stages that did run are kept. Each stage's time is recorded.
 *
 * RFCs: RFC 3463 (the replies' status codes). Untrusted input: the message,
 * through the MIME pass and the stages. Privilege: unprivileged scan
 * master (build) and scanners (run), and `postern scan`.
 */
#include "scan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "scan_message.h"
#include "spam.h"

struct scan_pipeline {
	struct mime_limits limits;
	uint64_t archive_max;            /* 0 while no stage reads archive bytes */
	uint64_t archive_max_configured; /* scan_archive_max_bytes */
	uint64_t text_max;
	enum mime_limit_action limit_action;
	bool fail_open;
	struct scan_stage *stages;
	size_t stage_count;
};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint32_t since_us(uint64_t start)
{
	uint64_t d = mono_us() - start;
	return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

/* ---- building ------------------------------------------------------------------ */

static bool one_process;

void scan_pipeline_set_one_process(bool one)
{
	one_process = one;
}

bool scan_pipeline_one_process(void)
{
	return one_process;
}

/* One MIME pass over a tiny message with a binary part and a text part
 * that libmagic's whole database is run over, so that libmagic's handles
 * (opened once per process, on first use, by the parser) are opened, and
 * the tests it compiles on first use (2.4 MB of regexes) compiled, now,
 * in the scan master: the scanners forked after share them. */
static void warm_up(const struct mime_limits *limits)
{
	static const char sample[] =
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"--b\nContent-Type: application/octet-stream\n\n\x7f" "ELF\n"
		"--b\nContent-Type: application/octet-stream\n\n"
		"Plain words of a note, read through every test libmagic has.\n"
		"--b--\n";
	static const strlist_t none = { NULL, 0 };
	static const struct scan_envelope env = { "", "", &none, "", "" };
	struct scan_message m = { .env = &env, .data = (const unsigned char *)sample,
				  .len = sizeof(sample) - 1 };
	scan_message_parse(&m, limits, 0);
	scan_message_free(&m);
}

void scan_pipeline_add(struct scan_pipeline *p, const struct scan_stage *stage)
{
	p->stages = xreallocarray(p->stages, p->stage_count + 1, sizeof(*p->stages));
	p->stages[p->stage_count++] = *stage;
	if (!stage->ignores_types && p->limits.no_sniff) {
		p->limits.no_sniff = false;
		p->archive_max = p->archive_max_configured;
		warm_up(&p->limits);
	}
}

size_t scan_pipeline_stage_count(const struct scan_pipeline *p)
{
	return p->stage_count;
}

/* One built-in stage: added, skipped (not configured) or an error. */
static int add_stage(struct scan_pipeline *p, const struct config *cfg,
		     int (*make)(const struct config *, struct scan_stage *, char **),
		     char **err_r)
{
	struct scan_stage stage;
	memset(&stage, 0, sizeof(stage));
	*err_r = NULL;
	int rc = make(cfg, &stage, err_r);
	if (rc < 0) {
		if (*err_r == NULL)
			*err_r = xstrdup("a scan stage failed to load");
		return -1;
	}
	if (rc == 0)
		scan_pipeline_add(p, &stage);
	return 0;
}

struct scan_pipeline *scan_pipeline_build(const struct config *cfg, char **err_r)
{
	struct scan_pipeline *p = xcalloc(1, sizeof(*p));
	p->limits.max_depth = (unsigned)cfg->mime_max_depth;
	p->limits.max_parts = (unsigned)cfg->mime_max_parts;
	p->limits.max_header_bytes = (size_t)cfg->mime_max_header_size;
	p->limits.max_decoded_bytes = cfg->mime_max_decoded_size;
	/* No sniffing and no archive bytes until a stage that reads them
	 * joins (scan_pipeline_add). */
	p->archive_max_configured = cfg->scan_archive_max_bytes;
	p->archive_max = 0;
	p->limits.no_sniff = true;
	p->text_max = cfg->spam_max_text;
	p->limit_action = cfg->mime_limit_action;
	p->fail_open = cfg->scan_fail_open == CONFIG_YES;
	/* The antivirus first, as amavisd orders its checks: a message that
	 * carries a virus is refused and reported as one (its name in the
	 * reply, the log and the notice), not as a banned attachment. Clean
	 * mail, nearly all of it, goes through every stage either way. */
	if (add_stage(p, cfg, scan_antivirus_stage_new, err_r) < 0 ||
	    add_stage(p, cfg, scan_rules_stage_new, err_r) < 0 ||
	    add_stage(p, cfg, scan_spam_stage_new, err_r) < 0) {
		scan_pipeline_free(&p);
		return NULL;
	}
	return p;
}

bool scan_pipeline_stale(const struct scan_pipeline *p)
{
	for (size_t i = 0; i < p->stage_count; i++)
		if (p->stages[i].stale != NULL && p->stages[i].stale(p->stages[i].ctx))
			return true;
	return false;
}

void scan_pipeline_free(struct scan_pipeline **pp)
{
	struct scan_pipeline *p = *pp;
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->stage_count; i++)
		if (p->stages[i].free != NULL)
			p->stages[i].free(p->stages[i].ctx);
	free(p->stages);
	xfree(pp);
}

/* ---- running ------------------------------------------------------------------- */

static const unsigned limit_bits[] = { MIME_TOO_DEEP, MIME_TOO_MANY_PARTS,
				       MIME_HEADER_TOO_BIG, MIME_DECODED_TOO_BIG };

/* A MIME bound was passed: the verdict says which. */
static void mime_limit_verdict(const struct scan_pipeline *p, unsigned problems,
			       struct scan_verdict *v)
{
	const struct mime_limits *l = &p->limits;
	char what[160] = "";
	if (problems & MIME_TOO_DEEP)
		snprintf(what, sizeof(what), "MIME parts nested deeper than %u levels",
			 l->max_depth);
	else if (problems & MIME_TOO_MANY_PARTS)
		snprintf(what, sizeof(what), "more than %u MIME parts", l->max_parts);
	else if (problems & MIME_HEADER_TOO_BIG)
		snprintf(what, sizeof(what), "a MIME header section larger than %zu bytes",
			 l->max_header_bytes);
	else
		snprintf(what, sizeof(what), "more than %" PRIu64 " bytes once decoded",
			 l->max_decoded_bytes);
	if (p->limit_action == MIME_LIMIT_TEMPFAIL)
		scan_verdict_set(v, SCAN_TEMPFAIL, 451, "4.6.0", "mime_limit",
				 "Message structure too complex to check (%s), try again later",
				 what);
	else
		scan_verdict_set(v, SCAN_REJECT, 554, "5.6.0", "mime_limit",
				 "Message refused: its structure is too complex (%s)", what);
	for (size_t i = 0; i < ARRAY_LEN(limit_bits); i++) {
		if (problems & limit_bits[i]) {
			char hit[64];
			snprintf(hit, sizeof(hit), "mime:%s", mime_problem_name(limit_bits[i]));
			scan_verdict_add_hit(v, hit);
		}
	}
}

/* Take one stage's answer into the pipeline's; true if it decides. */
static bool merge(struct scan_verdict *v, struct scan_verdict *one)
{
	for (size_t i = 0; i < one->headers.count; i++)
		scan_verdict_add_header(v, one->headers.items[i]);
	for (size_t i = 0; i < one->remove_headers.count; i++)
		scan_verdict_remove_header(v, one->remove_headers.items[i]);
	for (size_t i = 0; i < one->hits.count; i++)
		scan_verdict_add_hit(v, one->hits.items[i]);
	switch (one->action) {
	case SCAN_ACCEPT:
		return false;
	case SCAN_TAG:
		v->action = SCAN_TAG;
		return false;
	case SCAN_REJECT:
	case SCAN_TEMPFAIL:
	case SCAN_DISCARD:
	case SCAN_QUARANTINE:
		break;
	}
	v->action = one->action;
	v->code = one->code;
	memcpy(v->status, one->status, sizeof(v->status));
	memcpy(v->text, one->text, sizeof(v->text));
	memcpy(v->reason, one->reason, sizeof(v->reason));
	return true;
}

/* Run the stages in order; false if none decided. *failed_r names the
 * first stage that could not work, or is NULL. */
static bool run_stages(struct scan_pipeline *p, const struct scan_message *m,
		       struct scan_verdict *v, const char **failed_r)
{
	*failed_r = NULL;
	for (size_t i = 0; i < p->stage_count; i++) {
		const struct scan_stage *stage = &p->stages[i];
		struct scan_verdict one;
		scan_verdict_init(&one);
		uint64_t t = mono_us();
		int rc = stage->run(stage->ctx, m, &one);
		scan_verdict_add_timing(v, stage->name, since_us(t));
		if (rc < 0) {
			log_warn("%s%sthe %s stage could not check the message: %s",
				 m->env->queue_id, m->env->queue_id[0] != '\0' ? ": " : "",
				 stage->name, one.text[0] != '\0' ? one.text : "(no reason given)");
			if (*failed_r == NULL)
				*failed_r = stage->name;
			scan_verdict_free(&one);
			continue;
		}
		bool decided = merge(v, &one);
		scan_verdict_free(&one);
		if (decided)
			return true;
	}
	return false;
}

void scan_pipeline_run(struct scan_pipeline *p, const struct scan_envelope *env,
		       const unsigned char *data, size_t len, struct scan_verdict *v)
{
	struct scan_message m = { .env = env, .data = data, .len = len };
	uint64_t t = mono_us();
	scan_message_parse_keeping(&m, &p->limits, p->archive_max, p->text_max);
	scan_verdict_add_timing(v, "mime", since_us(t));
	unsigned limits = 0;
	for (size_t i = 0; i < ARRAY_LEN(limit_bits); i++)
		limits |= m.mime_problems & limit_bits[i];
	if (limits != 0) {
		mime_limit_verdict(p, limits, v);
	} else {
		const char *failed;
		if (!run_stages(p, &m, v, &failed) && failed != NULL) {
			/* The client hears no detail; the log has it (run_stages). */
			bool tag = v->action == SCAN_TAG;
			scan_verdict_fail(v, p->fail_open, "scan_failed", "%s",
					  "Message could not be checked, try again later");
			if (p->fail_open && tag)
				v->action = SCAN_TAG; /* keep what the others added */
		}
	}
	scan_message_free(&m);
	scan_verdict_normalize(v);
}
