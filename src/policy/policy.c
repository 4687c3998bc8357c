/*
 * policy.c - runs of a stage's check list, synchronous or waiting (see
 * policy.h). A run copies the request, walks the checks in order, merges
 * their answers (TAG accumulates headers; the first other verdict that is
 * not DUNNO decides) and, if a check is pending, continues from where it
 * stopped when that check finishes.
 *
 * Runs in the unprivileged smtp worker. The request holds untrusted
 * client data; nothing here parses it.
 */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "restrictions.h"

struct policy_call {
	struct policy_run *run;
	const struct policy_check *check;
	struct policy_reply reply; /* this check's answer */
	void *state;
};

struct policy_run {
	const struct policy_env *env;
	struct policy_request req;
	struct policy_reply merged;
	size_t next;               /* index of the next check to ask */
	struct policy_call call;   /* the check being asked */
	bool in_check;             /* inside a check function (finish is a bug) */
	policy_done_fn *done;
	void *done_arg;
};

static const char *const stage_names[POLICY_STAGE_COUNT] = {
	"connect", "helo", "mail", "rcpt", "data", "end-of-data",
};

const char *policy_stage_name(enum policy_stage stage)
{
	return stage < POLICY_STAGE_COUNT ? stage_names[stage] : "?";
}

const char *policy_verdict_name(enum policy_verdict v)
{
	static const char *const names[] = {
		"dunno", "accept", "reject", "tempfail", "discard",
		"quarantine", "hold", "tag", "pending",
	};
	return (size_t)v < ARRAY_LEN(names) ? names[v] : "?";
}

bool policy_refuses(enum policy_verdict v)
{
	return v == POLICY_REJECT || v == POLICY_TEMPFAIL;
}

void policy_env_init(struct policy_env *env, const struct config *cfg,
		     const struct recipient_tables *tables, struct event_base *base)
{
	static const struct policy_check rcpt = { "restrictions", restrictions_check_rcpt,
						  restrictions_cancel, NULL };
	static const struct policy_check data = { "data_restrictions", restrictions_check_data,
						  restrictions_cancel, NULL };
	memset(env, 0, sizeof(*env));
	env->cfg = cfg;
	env->rcpt_tables = tables;
	env->base = base;
	policy_env_add(env, POLICY_RCPT, &rcpt);
	policy_env_add(env, POLICY_DATA, &data);
}

void policy_env_add(struct policy_env *env, enum policy_stage stage,
		    const struct policy_check *check)
{
	if (stage >= POLICY_STAGE_COUNT || env->check_count[stage] >= POLICY_MAX_CHECKS)
		log_panic("policy: no room for check %s", check->name);
	env->checks[stage][env->check_count[stage]++] = *check;
}

void policy_env_add_first(struct policy_env *env, enum policy_stage stage,
			  const struct policy_check *check)
{
	if (stage >= POLICY_STAGE_COUNT || env->check_count[stage] >= POLICY_MAX_CHECKS)
		log_panic("policy: no room for check %s", check->name);
	memmove(&env->checks[stage][1], &env->checks[stage][0],
		env->check_count[stage] * sizeof(env->checks[stage][0]));
	env->checks[stage][0] = *check;
	env->check_count[stage]++;
}

/* ---- requests and replies -------------------------------------------------- */

static void request_copy(struct policy_request *dst, const struct policy_request *src)
{
	*dst = *src;
	dst->helo = src->helo != NULL ? xstrdup(src->helo) : NULL;
	dst->client_name = src->client_name != NULL ? xstrdup(src->client_name) : NULL;
	dst->auth_user = src->auth_user != NULL ? xstrdup(src->auth_user) : NULL;
	memset(&dst->rcpts, 0, sizeof(dst->rcpts));
	for (size_t i = 0; i < src->rcpts.count; i++)
		strlist_add(&dst->rcpts, src->rcpts.items[i]);
	dst->content_path = src->content_path != NULL ? xstrdup(src->content_path) : NULL;
}

void policy_request_free(struct policy_request *req)
{
	xfree(&req->helo);
	xfree(&req->client_name);
	xfree(&req->auth_user);
	strlist_free(&req->rcpts);
	xfree(&req->content_path);
}

void policy_reply_free(struct policy_reply *reply)
{
	strlist_free(&reply->headers);
	strlist_free(&reply->remove_headers);
	strlist_free(&reply->hits);
	policy_edits_free(&reply->edits);
}

struct policy_edit *policy_edits_add(policy_edits_t *edits, enum policy_edit_type type,
				     uint32_t index, const char *name, const char *value)
{
	if (edits->count == edits->cap) {
		edits->cap = edits->cap ? edits->cap * 2 : 8;
		edits->items = xreallocarray(edits->items, edits->cap, sizeof(*edits->items));
	}
	struct policy_edit *e = &edits->items[edits->count++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->index = index;
	e->name = name ? xstrdup(name) : NULL;
	e->value = value ? xstrdup(value) : NULL;
	buf_init(&e->body);
	return e;
}

void policy_edits_move(policy_edits_t *to, policy_edits_t *from)
{
	for (size_t i = 0; i < from->count; i++) {
		if (to->count == to->cap) {
			to->cap = to->cap ? to->cap * 2 : 8;
			to->items = xreallocarray(to->items, to->cap, sizeof(*to->items));
		}
		to->items[to->count++] = from->items[i];
	}
	free(from->items);
	memset(from, 0, sizeof(*from));
}

void policy_edits_free(policy_edits_t *edits)
{
	for (size_t i = 0; i < edits->count; i++) {
		free(edits->items[i].name);
		free(edits->items[i].value);
		buf_free(&edits->items[i].body);
	}
	free(edits->items);
	memset(edits, 0, sizeof(*edits));
}

static void reply_reset(struct policy_reply *r)
{
	policy_reply_free(r);
	memset(r, 0, sizeof(*r));
}

/* Take one check's answer into the run's verdict; true if it is final. */
static bool merge(struct policy_run *run, enum policy_verdict v)
{
	struct policy_reply *one = &run->call.reply;
	for (size_t i = 0; i < one->headers.count; i++)
		strlist_add(&run->merged.headers, one->headers.items[i]);
	for (size_t i = 0; i < one->remove_headers.count; i++)
		strlist_add(&run->merged.remove_headers, one->remove_headers.items[i]);
	policy_edits_move(&run->merged.edits, &one->edits);
	if (v == POLICY_DUNNO || v == POLICY_TAG) {
		if (v == POLICY_TAG)
			run->merged.verdict = POLICY_TAG;
		reply_reset(one);
		return false;
	}
	if (v == POLICY_PENDING)
		log_panic("policy: check %s finished with PENDING", run->call.check->name);
	run->merged.verdict = v;
	run->merged.code = one->code;
	memcpy(run->merged.status, one->status, sizeof(one->status));
	memcpy(run->merged.text, one->text, sizeof(one->text));
	memcpy(run->merged.reason, one->reason, sizeof(one->reason));
	memcpy(run->merged.detail, one->detail, sizeof(one->detail));
	run->merged.at_rcpt = one->at_rcpt;
	for (size_t i = 0; i < one->hits.count; i++)
		strlist_add(&run->merged.hits, one->hits.items[i]);
	snprintf(run->merged.check, sizeof(run->merged.check), "%s", run->call.check->name);
	reply_reset(one);
	return true;
}

/* Ask the checks from run->next on; true when the verdict is known,
 * false when a check is pending. */
static bool run_checks(struct policy_run *run)
{
	const struct policy_env *env = run->env;
	enum policy_stage stage = run->req.stage;
	while (run->next < env->check_count[stage]) {
		const struct policy_check *check = &env->checks[stage][run->next++];
		run->call.check = check;
		run->call.state = NULL;
		run->in_check = true;
		enum policy_verdict v = check->run(&run->call, check->arg);
		run->in_check = false;
		if (v == POLICY_PENDING)
			return false;
		if (merge(run, v))
			return true;
	}
	return true;
}

static void run_free(struct policy_run *run)
{
	policy_request_free(&run->req);
	policy_reply_free(&run->merged);
	policy_reply_free(&run->call.reply);
	free(run);
}

struct policy_run *policy_run_start(const struct policy_env *env,
				    const struct policy_request *req,
				    policy_done_fn *done, void *arg,
				    struct policy_reply *reply_r)
{
	struct policy_run *run = xcalloc(1, sizeof(*run));
	run->env = env;
	request_copy(&run->req, req);
	run->call.run = run;
	run->done = done;
	run->done_arg = arg;
	if (!run_checks(run))
		return run;
	*reply_r = run->merged;
	memset(&run->merged, 0, sizeof(run->merged));
	run_free(run);
	return NULL;
}

void policy_run_cancel(struct policy_run **runp)
{
	struct policy_run *run = *runp;
	if (run == NULL)
		return;
	*runp = NULL;
	if (run->call.check != NULL && run->call.check->cancel != NULL)
		run->call.check->cancel(&run->call, run->call.check->arg);
	run_free(run);
}

/* ---- for checks ------------------------------------------------------------ */

const struct policy_request *policy_call_request(const struct policy_call *call)
{
	return &call->run->req;
}

const struct policy_env *policy_call_env(const struct policy_call *call)
{
	return call->run->env;
}

struct policy_reply *policy_call_reply(struct policy_call *call)
{
	return &call->reply;
}

void policy_reply_vset(struct policy_reply *r, int code, const char *status,
		       const char *reason, const char *fmt, va_list ap)
{
	r->code = code;
	snprintf(r->status, sizeof(r->status), "%s", status);
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
}

void policy_reply_set(struct policy_reply *r, int code, const char *status,
		      const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	policy_reply_vset(r, code, status, reason, fmt, ap);
	va_end(ap);
}

void policy_call_set(struct policy_call *call, int code, const char *status,
		     const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	policy_reply_vset(&call->reply, code, status, reason, fmt, ap);
	va_end(ap);
}

void policy_call_set_state(struct policy_call *call, void *state)
{
	call->state = state;
}

void *policy_call_state(const struct policy_call *call)
{
	return call->state;
}

void policy_call_finish(struct policy_call *call, enum policy_verdict verdict)
{
	struct policy_run *run = call->run;
	if (run->in_check)
		log_panic("policy: check %s finished from inside its own call",
			  call->check->name);
	call->state = NULL;
	if (!merge(run, verdict) && !run_checks(run))
		return; /* the next check is pending now */
	run->done(run->done_arg, &run->merged);
	run_free(run);
}
