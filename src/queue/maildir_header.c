/*
 * maildir_header.c - a byte-at-a-time editor of the header section (see
 * maildir_header.h).
 *
 * States: at the start of a line; holding the first bytes of a line until
 * its field name (and colon) is known; copying the rest of a kept line;
 * skipping the rest of a dropped one. A line that starts with space or
 * tab continues the previous field and shares its fate. The first empty
 * line ends the filter's work.
 *
 * With changes, a first pass (learning) records the name of each field;
 * the plan then applies the changes in file order to a list of the
 * fields (removed ones stay in it as tombstones, so that "below the
 * content's first field" and "the content's n-th field" keep their
 * meaning) and says, for each of the content's fields, whether it stays
 * and which added fields go above it. The second pass only follows that.
 *
 * RFCs: RFC 5321 section 4.4, RFC 5322 sections 2.2 (fields, folding) and
 * 4.5 (obsolete white space before the colon). Untrusted input: the
 * message content. Privilege: the local delivery agent (mail_owner), the
 * relay agent, the queue manager, the queue commands.
 */
#include "maildir_header.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"

enum { MH_LINE_START = 0, MH_NAME, MH_KEEP, MH_DROP };

#define MHDR_READ_CHUNK (64 * 1024)

void mhdr_filter_init(struct mhdr_filter *f, const struct qf_header_edit *edits, size_t n)
{
	memset(f, 0, sizeof(*f));
	f->edits = edits;
	f->edit_count = n;
}

void mhdr_filter_free(struct mhdr_filter *f)
{
	for (size_t i = 0; i < f->name_count; i++)
		free(f->names[i]);
	free(f->names);
	free(f->keep);
	free(f->texts);
	f->names = NULL;
	f->keep = NULL;
	f->texts = NULL;
	f->name_count = f->text_count = 0;
}

/* Output helpers: the learning pass writes nothing (out NULL). */
static void put(buf_t *out, const char *p, size_t n)
{
	if (out != NULL)
		buf_append(out, p, n);
}

static void put_char(buf_t *out, char c)
{
	if (out != NULL)
		buf_putc(out, c);
}

static bool is_return_path(const char *name, size_t len)
{
	return len == 11 && strncasecmp(name, "return-path", 11) == 0;
}

/* The added fields planned above field idx (MHDR_END: all the rest). */
static void put_texts(struct mhdr_filter *f, size_t idx, buf_t *out)
{
	while (f->next_text < f->text_count &&
	       (idx == MHDR_END || f->texts[f->next_text].before == idx)) {
		put(out, f->texts[f->next_text].text, strlen(f->texts[f->next_text].text));
		put_char(out, '\n');
		f->next_text++;
	}
}

/* The held bytes start a field that stays (or no field at all). */
static void keep_held(struct mhdr_filter *f, buf_t *out)
{
	char last = f->held[f->held_len - 1];

	put(out, f->held, f->held_len);
	f->held_len = 0;
	f->state = last == '\n' ? MH_LINE_START : MH_KEEP;
}

/* The name of the field being learnt is held[0 .. len). */
static void learn_name(struct mhdr_filter *f, size_t len)
{
	size_t idx = f->fields - 1;

	if (idx < f->name_count)
		f->names[idx] = xstrndup(f->held, len);
}

/* One more byte of an undecided line start (already in held). */
static void decide(struct mhdr_filter *f, buf_t *out)
{
	size_t k = f->held_len;
	char c = f->held[k - 1];

	if (c == ':' && k > 1) {
		size_t name_len = k - 1;
		while (name_len > 0 && (f->held[name_len - 1] == ' ' || f->held[name_len - 1] == '\t'))
			name_len--;
		if (f->learning) {
			learn_name(f, name_len);
			f->held_len = 0;
			f->state = MH_KEEP; /* (nothing is written while learning) */
		} else if (name_len > 0 && is_return_path(f->held, name_len)) {
			f->dropping = true;
			f->held_len = 0;
			f->state = MH_DROP;
		} else {
			keep_held(f, out);
		}
	} else if (c == ' ' || c == '\t') {
		f->held_space = true;
		if (k == MHDR_HOLD_MAX)
			keep_held(f, out);
	} else if (c <= ' ' || c >= 127 || c == ':' || f->held_space || k == MHDR_HOLD_MAX) {
		keep_held(f, out); /* not a field name (or too long to be one we edit) */
	}
}

/* A line starts with c, which begins a field (not white space, not LF). */
static void field_start(struct mhdr_filter *f, char c, buf_t *out)
{
	size_t idx = f->fields++;

	f->dropping = false;
	f->held_space = false;
	if (f->learning) {
		if (idx >= MHDR_FIELDS_MAX) {
			f->in_body = true; /* seen enough: the rest stays as it is */
			return;
		}
		if ((f->name_count & (f->name_count - 1)) == 0)
			f->names = xreallocarray(f->names, f->name_count < 2 ? 4 : f->name_count * 2,
						 sizeof(*f->names));
		f->names[f->name_count++] = NULL;
	} else if (f->planned && idx < f->plan_fields) {
		if (!f->keep[idx]) {
			f->dropping = true;
			f->state = MH_DROP;
			return;
		}
		put_texts(f, idx, out);
		put_char(out, c);
		f->state = MH_KEEP;
		return;
	}
	/* learning, or no plan for it: decide by its name */
	f->held[0] = c;
	f->held_len = 1;
	f->state = MH_NAME;
	decide(f, out);
}

static void line_start(struct mhdr_filter *f, char c, buf_t *out)
{
	if (c == '\n') {
		if (f->planned)
			put_texts(f, MHDR_END, out);
		put_char(out, c);
		f->in_body = true;
	} else if (c == ' ' || c == '\t') {
		if (f->dropping) {
			f->state = MH_DROP;
		} else {
			put_char(out, c);
			f->state = MH_KEEP;
		}
	} else {
		field_start(f, c, out);
	}
}

static size_t run(struct mhdr_filter *f, const char *in, size_t n, buf_t *out)
{
	size_t i = 0;

	for (; i < n && !f->in_body; i++) {
		char c = in[i];
		switch (f->state) {
		case MH_LINE_START:
			line_start(f, c, out);
			break;
		case MH_NAME:
			f->held[f->held_len++] = c;
			decide(f, out);
			break;
		case MH_KEEP:
			put_char(out, c);
			/* fall through */
		default: /* MH_DROP */
			if (c == '\n')
				f->state = MH_LINE_START;
			break;
		}
	}
	return i;
}

size_t mhdr_filter_feed(struct mhdr_filter *f, const char *in, size_t n, buf_t *out)
{
	if (f->edit_count > 0 && !f->planned)
		log_panic("mhdr_filter_feed: changes without a plan (mhdr_filter_learn_end)");
	return run(f, in, n, out);
}

void mhdr_filter_end(struct mhdr_filter *f, buf_t *out)
{
	if (f->in_body)
		return;
	if (f->state == MH_NAME && f->held_len > 0)
		keep_held(f, out);
	bool pending = f->planned && f->next_text < f->text_count;
	if (pending && f->state == MH_KEEP)
		buf_putc(out, '\n'); /* a last field without its line end */
	if (f->planned)
		put_texts(f, MHDR_END, out);
}

/* ---- learning and the plan ---------------------------------------------- */

size_t mhdr_filter_learn(struct mhdr_filter *f, const char *in, size_t n)
{
	if (f->edit_count == 0)
		return n;
	f->learning = true;
	return run(f, in, n, NULL);
}

/* One entry of the list the changes work on. */
struct mh_item {
	size_t orig;      /* the content's field number, or MHDR_END: added */
	const char *text; /* added: the field */
	bool live;        /* false: removed (kept as a tombstone) */
	bool top;         /* added by an h top record */
};

struct mh_list {
	struct mh_item *items;
	size_t count, cap;
};

static void list_insert(struct mh_list *l, size_t pos, struct mh_item item)
{
	if (l->count == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->items = xreallocarray(l->items, l->cap, sizeof(*l->items));
	}
	memmove(l->items + pos + 1, l->items + pos, (l->count - pos) * sizeof(*l->items));
	l->items[pos] = item;
	l->count++;
}

/* Does the item carry the field called name? */
static bool item_named(const struct mhdr_filter *f, const struct mh_item *it, const char *name)
{
	size_t want = strlen(name);

	if (it->orig != MHDR_END) {
		const char *have = f->names[it->orig];
		return have != NULL && strlen(have) == want && strncasecmp(have, name, want) == 0;
	}
	const char *colon = strchr(it->text, ':');
	size_t len = colon != NULL ? (size_t)(colon - it->text) : 0;
	while (len > 0 && (it->text[len - 1] == ' ' || it->text[len - 1] == '\t'))
		len--;
	return len == want && strncasecmp(it->text, name, want) == 0;
}

static struct mh_item added(const char *text, bool top)
{
	return (struct mh_item){ MHDR_END, text, true, top };
}

static void apply_edit(const struct mhdr_filter *f, struct mh_list *l,
		       const struct qf_header_edit *e)
{
	size_t pos = 0, count = 0;

	switch (e->type) {
	case QF_REC_ADD_HEADER:
		if (e->where != QF_HEADER_TOP) {
			list_insert(l, l->count, added(e->text, false));
			break;
		}
		while (pos < l->count && l->items[pos].orig != 0)
			pos++;
		pos = pos < l->count ? pos + 1 : 0; /* below the first field */
		while (pos < l->count && l->items[pos].top)
			pos++;
		list_insert(l, pos, added(e->text, true));
		break;
	case QF_REC_DEL_HEADER: /* the content's own fields, removed or not */
		for (; pos < l->count; pos++) {
			struct mh_item *it = &l->items[pos];
			if (it->orig == MHDR_END || !item_named(f, it, e->text))
				continue;
			if (e->where == 0 || ++count == e->where)
				it->live = false;
		}
		break;
	case QF_REC_INSERT_HEADER:
		for (; pos < l->count; pos++)
			if (l->items[pos].live && count++ == e->where)
				break;
		list_insert(l, pos, added(e->text, false));
		break;
	case QF_REC_CHANGE_HEADER:
		for (; pos < l->count; pos++) {
			struct mh_item *it = &l->items[pos];
			if (!it->live || !item_named(f, it, e->text) || ++count != e->where)
				continue;
			it->live = false;
			if (e->field != NULL)
				list_insert(l, pos + 1, added(e->field, false));
			break;
		}
		/* No such occurrence: a new value is added at the end
		 * (smfi_chgheader(3), as Sendmail and Postfix do). */
		if (pos == l->count && e->field != NULL)
			list_insert(l, l->count, added(e->field, false));
		break;
	default:
		break;
	}
}

void mhdr_filter_learn_end(struct mhdr_filter *f)
{
	struct mh_list l = { NULL, 0, 0 };

	if (f->edit_count == 0)
		return;
	for (size_t k = 0; k < f->name_count; k++)
		list_insert(&l, l.count, (struct mh_item){ k, NULL, true, false });
	for (size_t i = 0; i < f->edit_count; i++)
		apply_edit(f, &l, &f->edits[i]);
	f->plan_fields = f->name_count;
	f->keep = xcalloc(f->name_count + 1, sizeof(*f->keep));
	f->texts = xcalloc(l.count + 1, sizeof(*f->texts));
	size_t anchor_from = 0; /* texts not yet given a field to go above */
	for (size_t pos = 0; pos < l.count; pos++) {
		const struct mh_item *it = &l.items[pos];
		if (!it->live)
			continue;
		if (it->orig == MHDR_END) {
			f->texts[f->text_count++] = (struct mhdr_text){ MHDR_END, it->text };
			continue;
		}
		const char *name = f->names[it->orig];
		if (name != NULL && is_return_path(name, strlen(name)))
			continue; /* counted, never delivered */
		f->keep[it->orig] = true;
		for (; anchor_from < f->text_count; anchor_from++)
			f->texts[anchor_from].before = it->orig;
	}
	free(l.items);
	f->state = MH_LINE_START;
	f->in_body = false;
	f->dropping = false;
	f->held_space = false;
	f->held_len = 0;
	f->fields = 0;
	f->learning = false;
	f->planned = true;
}

int mhdr_filter_prepare(struct mhdr_filter *f, int fd, const struct qf_msg *m, char **err_r)
{
	if (f->edit_count == 0)
		return 0;
	char *chunk = xmalloc(MHDR_READ_CHUNK);
	uint64_t pos = 0;
	int rc = 0, saved = errno;

	while (!f->in_body) {
		long n = qf_read_content(fd, m, pos, chunk, MHDR_READ_CHUNK);
		if (n < 0) {
			saved = errno;
			*err_r = qf_errf("read content: %s", strerror(saved));
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		mhdr_filter_learn(f, chunk, (size_t)n);
		pos += (uint64_t)n;
	}
	free(chunk);
	if (rc == 0)
		mhdr_filter_learn_end(f);
	errno = saved; /* the caller may report the read error by errno */
	return rc;
}

int mhdr_read_message(int fd, const struct qf_msg *m, bool headers_only, size_t max,
		      buf_t *out, char **err_r)
{
	struct mhdr_filter f;
	size_t start = out->len;
	uint64_t pos = 0;
	int rc;

	mhdr_filter_init(&f, m->edits, m->edit_count);
	rc = mhdr_filter_prepare(&f, fd, m, err_r);
	char *chunk = xmalloc(MHDR_READ_CHUNK);
	while (rc == 0 && out->len - start <= max && !(headers_only && f.in_body)) {
		long n = qf_read_content(fd, m, pos, chunk, MHDR_READ_CHUNK);
		if (n < 0) {
			*err_r = qf_errf("read content: %s", strerror(errno));
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		size_t used = f.in_body ? 0 : mhdr_filter_feed(&f, chunk, (size_t)n, out);
		if (f.in_body && !headers_only)
			buf_append(out, chunk + used, (size_t)n - used);
		pos += (uint64_t)n;
	}
	if (rc == 0 && !f.in_body && out->len - start <= max)
		mhdr_filter_end(&f, out);
	free(chunk);
	mhdr_filter_free(&f);
	if (out->len - start > max) {
		out->len = start + max;
		while (headers_only && out->len > start && out->data[out->len - 1] != '\n')
			out->len--;
	}
	if (out->data != NULL)
		out->data[out->len] = '\0';
	return rc;
}
