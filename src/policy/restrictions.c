/*
 * restrictions.c - compiling the restriction lists of postern.conf and
 * evaluating them (see restrictions.h). The built-in restrictions are in
 * restrictions_builtin.c.
 *
 * Evaluation: one policy check per stage walks the lists of that stage
 * in order (client, helo, sender, recipient at RCPT; data at DATA). A
 * restriction answering DUNNO passes the word on; ACCEPT (permit) skips
 * the rest of its list; REJECT or TEMPFAIL decides, unless the
 * restriction follows warn_if_reject, which turns it into a logged
 * "reject_warning"; HOLD is remembered and the walk goes on; DISCARD
 * decides (the rest would not change the fate of a message nobody gets).
 * A restriction that answers PENDING leaves the walk where it is; it goes
 * on from there when restriction_finish() brings the answer, and the
 * policy run (policy.c) is told once the walk is over.
 *
 * Input: the configuration's lists (compiled at start and reload); at
 * evaluation, requests with untrusted client data, which restrictions
 * read and never keep. Runs in the smtp worker, the supervisor and
 * check-config.
 */
#include "restrictions_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/diag.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "access.h"

static const char *const list_names[RLIST_COUNT] = {
	"client_restrictions", "helo_restrictions", "sender_restrictions",
	"recipient_restrictions", "data_restrictions",
};

const char *restriction_list_name(enum restriction_list_id id)
{
	return id < RLIST_COUNT ? list_names[id] : "?";
}

static const struct config_words *config_list(const struct config *cfg,
					      enum restriction_list_id id)
{
	switch (id) {
	case RLIST_CLIENT: return &cfg->client_restrictions;
	case RLIST_HELO: return &cfg->helo_restrictions;
	case RLIST_SENDER: return &cfg->sender_restrictions;
	case RLIST_RECIPIENT: return &cfg->recipient_restrictions;
	default: return &cfg->data_restrictions;
	}
}

/* ---- the vocabulary ---------------------------------------------------------- */

#define PROVIDED_MAX 32
static const struct restriction_type *provided[PROVIDED_MAX];
static size_t provided_count;

static const struct restriction_type *builtin_named(const char *name)
{
	for (size_t i = 0; restriction_builtins[i] != NULL; i++)
		if (str_eq_nocase(restriction_builtins[i]->name, name))
			return restriction_builtins[i];
	return NULL;
}

bool restrictions_provide(const struct restriction_type *type)
{
	const struct restriction_type *b = builtin_named(type->name);
	if (b != NULL && (b->run != NULL || b == &restriction_warn_if_reject))
		return false;
	for (size_t i = 0; i < provided_count; i++) {
		if (str_eq_nocase(provided[i]->name, type->name)) {
			provided[i] = type;
			return true;
		}
	}
	if (provided_count == PROVIDED_MAX)
		log_panic("restrictions: more than %d provided restrictions", PROVIDED_MAX);
	provided[provided_count++] = type;
	return true;
}

static const struct restriction_type *find_type(const char *name)
{
	for (size_t i = 0; i < provided_count; i++)
		if (str_eq_nocase(provided[i]->name, name))
			return provided[i];
	return builtin_named(name);
}

/* ---- compiling ------------------------------------------------------------------- */

struct compile {
	const struct config *cfg;
	char *base_dir;
	FILE *errors;
	unsigned problems;
	struct restrictions *set;
};

static void report(struct compile *c, unsigned line, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void report(struct compile *c, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(c->errors, c->cfg->path, line, fmt, ap);
	va_end(ap);
	c->problems++;
}

/* The set's map of that name, opened once; NULL after reporting. */
static struct map *shared_map(struct compile *c, const char *spec)
{
	char *name = map_canonical_name(spec, c->base_dir);
	if (name != NULL) {
		for (size_t i = 0; i < c->set->map_count; i++) {
			if (strcmp(map_name(c->set->maps[i]), name) == 0) {
				free(name);
				return c->set->maps[i];
			}
		}
		free(name);
	}
	struct map *m = map_open(spec, c->base_dir, access_check_value, c->errors);
	if (m == NULL)
		return NULL;
	c->set->maps = xreallocarray(c->set->maps, c->set->map_count + 1, sizeof(*c->set->maps));
	c->set->maps[c->set->map_count++] = m;
	return m;
}

/* Add words[*i] (and its argument) to the list; false after reporting. */
static bool compile_one(struct compile *c, enum restriction_list_id id,
			const struct config_words *w, size_t *i, struct restriction_list *l)
{
	const char *key = list_names[id], *word = w->words.items[*i];
	const struct restriction_type *type = find_type(word);
	if (type == NULL) {
		if (strchr(word, ':') != NULL)
			report(c, w->line, "%s: \"%s\" looks like a map: put check_client_access, "
			       "check_helo_access, check_sender_access or check_recipient_access "
			       "before it", key, word);
		else
			report(c, w->line, "%s: unknown restriction \"%s\"", key, word);
		return false;
	}
	struct restriction item = { type, NULL, NULL };
	bool needs_rcpt = (type->needs & RESTRICTION_NEEDS_RCPT) && id == RLIST_DATA;
	if (needs_rcpt) {
		report(c, w->line, "%s: %s needs a recipient: at DATA there is none to look at "
		       "(use it in recipient_restrictions)", key, type->name);
		if (type->arg != RESTRICTION_NO_ARG && *i + 1 < w->words.count)
			++*i; /* its argument is not a restriction of its own */
		return false;
	}
	if (type->arg != RESTRICTION_NO_ARG) {
		if (*i + 1 >= w->words.count) {
			report(c, w->line, "%s: %s needs %s after it", key, type->name,
			       type->arg == RESTRICTION_MAP_ARG ? "a map (file:PATH, cidr:PATH or "
								  "regexp:PATH)" : "an argument");
			return false;
		}
		const char *arg = w->words.items[++*i];
		if (type->arg == RESTRICTION_WORD_ARG && type->check_arg != NULL) {
			const char *why = type->check_arg(arg);
			if (why != NULL) {
				report(c, w->line, "%s: %s %s: %s", key, type->name, arg, why);
				return false;
			}
		}
		if (type->run == NULL) {
			report(c, w->line, "%s: %s %s: %s", key, type->name, arg, type->unavailable);
			return false;
		}
		if (type->arg == RESTRICTION_MAP_ARG) {
			item.map = shared_map(c, arg);
			if (item.map == NULL) {
				report(c, w->line, "%s: %s %s: the map cannot be used (see above)", key,
				       type->name, arg);
				return false;
			}
		}
		item.arg = xstrdup(arg);
	} else if (type->run == NULL && type != &restriction_warn_if_reject) {
		report(c, w->line, "%s: %s: %s", key, type->name, type->unavailable);
		return false;
	}
	if (l->count >= RESTRICTIONS_MAX_ITEMS) {
		report(c, w->line, "%s: more than %d restrictions", key, RESTRICTIONS_MAX_ITEMS);
		free(item.arg);
		return false;
	}
	l->items = xreallocarray(l->items, l->count + 1, sizeof(*l->items));
	l->items[l->count++] = item;
	return true;
}

static void compile_list(struct compile *c, enum restriction_list_id id)
{
	const struct config_words *w = config_list(c->cfg, id);
	struct restriction_list *l = &c->set->lists[id];
	unsigned before = c->problems;
	for (size_t i = 0; i < w->words.count; i++)
		(void)compile_one(c, id, w, &i, l);
	if (c->problems == before && l->count > 0 &&
	    l->items[l->count - 1].type == &restriction_warn_if_reject)
		report(c, w->line, "%s: warn_if_reject must be followed by the restriction it "
		       "changes", list_names[id]);
}

/* As Postfix insists: the recipient list must be able to refuse a
 * foreign destination, or postern is an open relay. */
static void check_relay_control(struct compile *c)
{
	const struct restriction_list *l = &c->set->lists[RLIST_RECIPIENT];
	for (size_t i = 0; i < l->count; i++) {
		const struct restriction_type *t = l->items[i].type;
		if (t == &restriction_reject_unauth_destination ||
		    t == &restriction_defer_unauth_destination || t == &restriction_reject ||
		    t == &restriction_defer)
			return;
	}
	report(c, c->cfg->recipient_restrictions.line,
	       "recipient_restrictions: name reject_unauth_destination (or reject or defer): "
	       "without it postern relays mail for anyone to anywhere");
}

struct restrictions *restrictions_load(const struct config *cfg, FILE *errors)
{
	struct compile c = { cfg, config_base_dir(cfg), errors, 0, xcalloc(1, sizeof(*c.set)) };
	for (int id = 0; id < RLIST_COUNT; id++)
		compile_list(&c, (enum restriction_list_id)id);
	check_relay_control(&c);
	free(c.base_dir);
	if (c.problems > 0)
		restrictions_free(&c.set);
	return c.set;
}

void restrictions_free(struct restrictions **rp)
{
	struct restrictions *r = *rp;
	if (r == NULL)
		return;
	for (int id = 0; id < RLIST_COUNT; id++) {
		for (size_t i = 0; i < r->lists[id].count; i++)
			free(r->lists[id].items[i].arg);
		free(r->lists[id].items);
	}
	for (size_t i = 0; i < r->map_count; i++)
		map_free(&r->maps[i]);
	free(r->maps);
	xfree(rp);
}

size_t restrictions_map_count(const struct restrictions *r)
{
	return r->map_count;
}

const struct restrictions *restrictions_default(void)
{
	/* The default of recipient_restrictions in config.c, compiled. */
	static struct restriction rcpt[] = {
		{ &restriction_permit_mynetworks, NULL, NULL },
		{ &restriction_permit_auth, NULL, NULL },
		{ &restriction_reject_unauth_destination, NULL, NULL },
	};
	static const struct restrictions defaults = {
		.lists[RLIST_RECIPIENT] = { rcpt, ARRAY_LEN(rcpt) },
	};
	return &defaults;
}

/* ---- evaluating ---------------------------------------------------------------- */

struct restriction_ctx {
	struct eval *ev;
	const struct restriction *item;
	enum restriction_list_id list;
	bool warn_only;            /* it follows warn_if_reject */
	bool in_run;               /* inside its run function */
	void *state;
	struct policy_reply reply; /* code, status, reason, text, detail */
};

struct eval {
	struct policy_call *call;
	const struct policy_env *env;
	const struct restrictions *set;
	enum restriction_list_id lists[RLIST_COUNT];
	size_t list_count, at;     /* lists[at] is being walked */
	size_t next;               /* its next item */
	bool warn_next;            /* warn_if_reject was the last item */
	bool pending;
	enum policy_verdict final; /* DUNNO until a restriction decides */
	struct policy_reply decided; /* the deciding reply (or the first HOLD's) */
	bool hold;
	struct restriction_ctx ctx;
};

static const char *stage_word(const struct eval *ev)
{
	return policy_call_request(ev->call)->stage == POLICY_DATA ? "DATA" : "RCPT";
}

/* "client=... helo=<...> from=<...> to=<...>" for a log line. */
static void describe(const struct eval *ev, buf_t *b)
{
	const struct policy_request *req = policy_call_request(ev->call);
	char addr[ADDR_PATH_MAX + 1];
	buf_printf(b, "client=%s", req->client_addr);
	if (req->client_name != NULL)
		buf_printf(b, " name=%s", req->client_name);
	buf_printf(b, " helo=<%s>", req->helo != NULL ? req->helo : "");
	if (req->has_sender) {
		address_format(&req->sender, addr, sizeof(addr));
		buf_printf(b, " from=<%s>", addr);
	}
	if (req->has_rcpt) {
		address_format(&req->rcpt, addr, sizeof(addr));
		buf_printf(b, " to=<%s>", addr);
	}
}

/* One log line about the restriction just evaluated: what, where, why. */
static void log_event(const struct restriction_ctx *ctx, bool warning, const char *what,
		      const char *text)
{
	const struct policy_request *req = policy_call_request(ctx->ev->call);
	buf_t b = BUF_INIT;
	if (req->queue_id[0] != '\0')
		buf_printf(&b, "%s: ", req->queue_id);
	buf_printf(&b, "%s: %s ", what, stage_word(ctx->ev));
	describe(ctx->ev, &b);
	if (ctx->reply.code != 0 && strcmp(what, "reject_warning") == 0)
		buf_printf(&b, " code=%d %s", ctx->reply.code, ctx->reply.status);
	buf_printf(&b, " restriction=%s list=%s", ctx->item->type->name, list_names[ctx->list]);
	if (ctx->reply.detail[0] != '\0')
		buf_printf(&b, " %s", ctx->reply.detail);
	buf_printf(&b, ": %s", text);
	if (warning)
		log_warn("%s", buf_cstr(&b));
	else
		log_info("%s", buf_cstr(&b));
	buf_free(&b);
}

void restriction_log_warn(const struct restriction_ctx *ctx, const char *text)
{
	log_event(ctx, true, "warn", text);
}

/* Keep the reply of the restriction that decided, with where it stood. */
static void keep_reply(struct eval *ev)
{
	struct restriction_ctx *ctx = &ev->ctx;
	struct policy_reply *d = &ev->decided;
	d->code = ctx->reply.code;
	memcpy(d->status, ctx->reply.status, sizeof(d->status));
	memcpy(d->text, ctx->reply.text, sizeof(d->text));
	snprintf(d->reason, sizeof(d->reason), "%s",
		 ctx->reply.reason[0] != '\0' ? ctx->reply.reason : ctx->item->type->name);
	buf_t detail = BUF_INIT;
	buf_printf(&detail, "restriction=%s list=%s", ctx->item->type->name, list_names[ctx->list]);
	if (ctx->reply.detail[0] != '\0')
		buf_printf(&detail, " %s", ctx->reply.detail);
	snprintf(d->detail, sizeof(d->detail), "%s", buf_cstr(&detail)); /* cut if it must be */
	buf_free(&detail);
}

/* Take the answer of the restriction in ev->ctx. */
static void take(struct eval *ev, enum policy_verdict v)
{
	struct restriction_ctx *ctx = &ev->ctx;
	const struct restriction_list *l = &ev->set->lists[ev->lists[ev->at]];
	switch (v) {
	case POLICY_DUNNO:
		break;
	case POLICY_ACCEPT:
		ev->next = l->count; /* permit: the rest of this list is skipped */
		break;
	case POLICY_REJECT:
	case POLICY_TEMPFAIL:
		if (ctx->warn_only) {
			log_event(ctx, false, "reject_warning", ctx->reply.text);
			break;
		}
		ev->final = v;
		keep_reply(ev);
		break;
	case POLICY_HOLD:
	case POLICY_DISCARD: {
		const char *what = v == POLICY_HOLD ? "hold" : "discard";
		if (ctx->warn_only) {
			log_event(ctx, false, v == POLICY_HOLD ? "hold_warning" : "discard_warning",
				  ctx->reply.text);
			break;
		}
		log_event(ctx, false, what, ctx->reply.text);
		if (v == POLICY_DISCARD) {
			ev->final = v;
			keep_reply(ev);
		} else if (!ev->hold) {
			ev->hold = true;
			keep_reply(ev);
		}
		break;
	}
	default:
		log_panic("restriction %s answered %s", ctx->item->type->name,
			  policy_verdict_name(v));
	}
	policy_reply_free(&ctx->reply);
	memset(&ctx->reply, 0, sizeof(ctx->reply));
}

/* Walk on from where ev is; true when the walk is over (a verdict, or
 * the end of the lists), false when a restriction is pending. */
static bool walk(struct eval *ev)
{
	while (ev->final == POLICY_DUNNO && ev->at < ev->list_count) {
		const struct restriction_list *l = &ev->set->lists[ev->lists[ev->at]];
		if (ev->next >= l->count) {
			ev->at++;
			ev->next = 0;
			ev->warn_next = false;
			continue;
		}
		const struct restriction *item = &l->items[ev->next++];
		if (item->type == &restriction_warn_if_reject) {
			ev->warn_next = true;
			continue;
		}
		struct restriction_ctx *ctx = &ev->ctx;
		ctx->item = item;
		ctx->list = ev->lists[ev->at];
		ctx->warn_only = ev->warn_next;
		ctx->state = NULL;
		ev->warn_next = false;
		ctx->in_run = true;
		enum policy_verdict v = item->type->run(ctx);
		ctx->in_run = false;
		if (v == POLICY_PENDING) {
			ev->pending = true;
			return false;
		}
		take(ev, v);
	}
	return true;
}

static void copy_decided(const struct policy_reply *from, struct policy_reply *to)
{
	to->code = from->code;
	memcpy(to->status, from->status, sizeof(to->status));
	memcpy(to->text, from->text, sizeof(to->text));
	memcpy(to->reason, from->reason, sizeof(to->reason));
	memcpy(to->detail, from->detail, sizeof(to->detail));
}

/* The walk is over: the stage's verdict into the call's reply. */
static enum policy_verdict conclude(struct eval *ev)
{
	const struct policy_request *req = policy_call_request(ev->call);
	struct policy_reply *out = policy_call_reply(ev->call);
	if (policy_refuses(ev->final)) {
		copy_decided(&ev->decided, out);
		return ev->final;
	}
	if (req->stage == POLICY_RCPT && req->has_rcpt &&
	    policy_recipient_unlisted(ev->env, &req->rcpt, out)) {
		snprintf(out->detail, sizeof(out->detail), "restriction=reject_unlisted_recipient");
		return POLICY_REJECT;
	}
	if (ev->final == POLICY_DISCARD || ev->hold) {
		copy_decided(&ev->decided, out);
		return ev->final == POLICY_DISCARD ? POLICY_DISCARD : POLICY_HOLD;
	}
	return POLICY_DUNNO;
}

static void eval_free(struct eval *ev)
{
	policy_reply_free(&ev->ctx.reply);
	policy_reply_free(&ev->decided);
	free(ev);
}

static enum policy_verdict evaluate(struct policy_call *call, enum policy_stage stage)
{
	const struct policy_env *env = policy_call_env(call);
	if (stage == POLICY_RCPT && !policy_call_request(call)->has_rcpt)
		return POLICY_DUNNO;
	struct eval *ev = xcalloc(1, sizeof(*ev));
	ev->call = call;
	ev->env = env;
	ev->set = env->restrictions != NULL ? env->restrictions : restrictions_default();
	ev->ctx.ev = ev;
	if (stage == POLICY_RCPT) {
		ev->lists[ev->list_count++] = RLIST_CLIENT;
		ev->lists[ev->list_count++] = RLIST_HELO;
		ev->lists[ev->list_count++] = RLIST_SENDER;
		ev->lists[ev->list_count++] = RLIST_RECIPIENT;
	} else {
		ev->lists[ev->list_count++] = RLIST_DATA;
	}
	if (!walk(ev)) {
		policy_call_set_state(call, ev);
		return POLICY_PENDING;
	}
	enum policy_verdict v = conclude(ev);
	eval_free(ev);
	return v;
}

enum policy_verdict restrictions_check_rcpt(struct policy_call *call, void *arg)
{
	(void)arg;
	return evaluate(call, POLICY_RCPT);
}

enum policy_verdict restrictions_check_data(struct policy_call *call, void *arg)
{
	(void)arg;
	return evaluate(call, POLICY_DATA);
}

void restrictions_cancel(struct policy_call *call, void *arg)
{
	struct eval *ev = policy_call_state(call);
	(void)arg;
	if (ev == NULL)
		return;
	if (ev->pending && ev->ctx.item->type->cancel != NULL)
		ev->ctx.item->type->cancel(&ev->ctx);
	eval_free(ev);
}

/* ---- for restrictions ---------------------------------------------------------- */

const struct policy_request *restriction_request(const struct restriction_ctx *ctx)
{
	return policy_call_request(ctx->ev->call);
}

const struct policy_env *restriction_env(const struct restriction_ctx *ctx)
{
	return ctx->ev->env;
}

const char *restriction_arg(const struct restriction_ctx *ctx)
{
	return ctx->item->arg;
}

struct map *restriction_map(const struct restriction_ctx *ctx)
{
	return ctx->item->map;
}

enum restriction_list_id restriction_list(const struct restriction_ctx *ctx)
{
	return ctx->list;
}

void restriction_reply(struct restriction_ctx *ctx, int code, const char *status,
		       const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	policy_reply_vset(&ctx->reply, code, status, reason, fmt, ap);
	va_end(ap);
}

void restriction_detail(struct restriction_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx->reply.detail, sizeof(ctx->reply.detail), fmt, ap);
	va_end(ap);
}

void restriction_set_state(struct restriction_ctx *ctx, void *state)
{
	ctx->state = state;
}

void *restriction_state(const struct restriction_ctx *ctx)
{
	return ctx->state;
}

void restriction_finish(struct restriction_ctx *ctx, enum policy_verdict verdict)
{
	struct eval *ev = ctx->ev;
	if (ctx->in_run)
		log_panic("restriction %s finished from inside its own call", ctx->item->type->name);
	if (!ev->pending)
		log_panic("restriction %s finished but was not pending", ctx->item->type->name);
	ev->pending = false;
	ctx->state = NULL;
	if (verdict == POLICY_PENDING)
		log_panic("restriction %s finished with PENDING", ctx->item->type->name);
	take(ev, verdict);
	if (!walk(ev))
		return; /* the next one is pending now */
	struct policy_call *call = ev->call;
	enum policy_verdict v = conclude(ev);
	eval_free(ev);
	policy_call_finish(call, v);
}

void restriction_subject(const struct restriction_ctx *ctx, enum restriction_list_id about,
			 char *out, size_t outlen)
{
	const struct policy_request *req = restriction_request(ctx);
	char addr[ADDR_PATH_MAX + 1] = "";
	switch (about) {
	case RLIST_CLIENT:
		if (req->client_name != NULL)
			snprintf(out, outlen, "<%s[%s]>: Client refused", req->client_name,
				 req->client_addr);
		else
			snprintf(out, outlen, "<%s>: Client address refused", req->client_addr);
		return;
	case RLIST_HELO:
		snprintf(out, outlen, "<%s>: HELO name refused", req->helo != NULL ? req->helo : "");
		return;
	case RLIST_SENDER:
		if (req->has_sender)
			address_format(&req->sender, addr, sizeof(addr));
		snprintf(out, outlen, "<%s>: Sender address refused", addr);
		return;
	case RLIST_RECIPIENT:
		if (req->has_rcpt)
			address_format(&req->rcpt, addr, sizeof(addr));
		snprintf(out, outlen, "<%s>: Recipient address refused", addr);
		return;
	default:
		snprintf(out, outlen, "<DATA>: DATA command refused");
		return;
	}
}

bool restrictions_need_dns(const struct restrictions *r)
{
	if (r == NULL)
		return false;
	for (size_t l = 0; l < RLIST_COUNT; l++)
		for (size_t i = 0; i < r->lists[l].count; i++)
			if (r->lists[l].items[i].type->needs & RESTRICTION_NEEDS_DNS)
				return true;
	return false;
}
