/*
 * notice.c - the administrator's notices (see notice.h): the template
 * (read, checked, filled in) and the queuing of a notice as a new
 * message from <>.
 *
 * RFCs: 5322 (header syntax, dates), 3834 (Auto-Submitted:), 2045/2046
 * (text/plain; charset=utf-8), 6532 (UTF-8 header values). Untrusted
 * input: the template (bounded to NOTICE_TEMPLATE_MAX, every line
 * checked) and the values (cleaned: no control character, capped
 * length, so that a Subject: of the original cannot add header fields to
 * the notice). Privilege: the supervisor reads the template as root; the
 * smtp workers (user) fill it in their commit threads.
 */
#include "notice.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/diag.h"
#include "../lib/json.h"
#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "bounce.h"
#include "queue.h"

/* The placeholders, in the order of the values array. */
enum placeholder {
	PH_SENDER, PH_RECIPIENTS, PH_SUBJECT, PH_ATTACHMENT, PH_VIRUS, PH_RULE, PH_REASON,
	PH_QUEUE_ID, PH_CLIENT, PH_HELO, PH_CHECK, PH_ACTION, PH_HOSTNAME, PH_DATE,
	PH_NEXT_STEPS, PH_COUNT
};

static const char *const placeholder_names[PH_COUNT] = {
	"sender", "recipients", "subject", "attachment", "virus", "rule", "reason",
	"queue_id", "client", "helo", "check", "action", "hostname", "date", "next_steps",
};

/* Header fields a notice always has from postern: a template may not set them. */
static const char *const own_fields[] = {
	"Received", "Return-Path", "From", "Sender", "To", "Cc", "Bcc", "Date", "Message-ID",
	"Auto-Submitted", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
};

static const char builtin_text[] =
	"Subject: [{hostname}] {action}: {reason}\n"
	"\n"
	"The mail gateway {hostname} {action} a message.\n"
	"\n"
	"  Queue id:    {queue_id}\n"
	"  Reason:      {reason}\n"
	"  Virus:       {virus}\n"
	"  Rule:        {rule}\n"
	"  Attachment:  {attachment}\n"
	"  Sender:      {sender}\n"
	"  Recipients:  {recipients}\n"
	"  Subject:     {subject}\n"
	"  Client:      {client} (HELO {helo})\n"
	"  Date:        {date}\n"
	"\n"
	"{next_steps}\n";

struct notice_template {
	strlist_t fields;  /* header lines, continuation lines on their own */
	char *body;        /* LF line ends, ends with LF (or empty) */
	bool has_subject;
};

/* ---- placeholders ------------------------------------------------------------ */

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || c == '_';
}

/*
 * At text[i] == '{': the length of a "{name}" there (0 if the bytes are
 * not of that form, so the brace is literal) and which placeholder it is
 * (PH_COUNT for a name that is not one).
 */
static size_t placeholder_at(const char *text, size_t len, size_t i, enum placeholder *ph_r)
{
	size_t j = i + 1;
	while (j < len && is_name_char(text[j]))
		j++;
	if (j == i + 1 || j >= len || text[j] != '}')
		return 0;
	size_t n = j - i - 1;
	*ph_r = PH_COUNT;
	for (int p = 0; p < PH_COUNT; p++)
		if (strlen(placeholder_names[p]) == n && memcmp(placeholder_names[p], text + i + 1, n) == 0)
			*ph_r = (enum placeholder)p;
	return n + 2;
}

/* ---- reading the template ---------------------------------------------------- */

struct tparse {
	const char *name;
	FILE *errors;
	int problems;
};

static void problem(struct tparse *tp, unsigned line, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void problem(struct tparse *tp, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(tp->errors, tp->name, line, fmt, ap);
	va_end(ap);
	tp->problems++;
}

/* Bytes of one line: UTF-8, no control character but tab; every {name}
 * a known placeholder. */
static void check_line(struct tparse *tp, unsigned lineno, const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		enum placeholder ph;
		size_t n;
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			problem(tp, lineno, "control character 0x%02x", c);
			return;
		}
		if (c == '{' && (n = placeholder_at(s, len, i, &ph)) > 0) {
			if (ph == PH_COUNT)
				problem(tp, lineno, "unknown placeholder %.*s (known: {sender}, "
					"{recipients}, {subject}, {attachment}, {virus}, {rule}, "
					"{reason}, {queue_id}, {client}, {helo}, {check}, {action}, "
					"{hostname}, {date}, {next_steps})", (int)n, s + i);
			i += n;
			continue;
		}
		n = json_utf8_char_len((const unsigned char *)s + i, len - i);
		if (n == 0) {
			problem(tp, lineno, "not UTF-8 text");
			return;
		}
		i += n;
	}
}

/* One header line of the template (the first of its field, or a
 * continuation). */
static void take_field(struct tparse *tp, struct notice_template *t, unsigned lineno,
		       const char *s, size_t len)
{
	if (s[0] == ' ' || s[0] == '\t') {
		if (t->fields.count == 0)
			problem(tp, lineno, "a continuation line without a field before it");
	} else {
		const char *colon = memchr(s, ':', len);
		size_t n = colon != NULL ? (size_t)(colon - s) : 0;
		bool ok = n > 0;
		for (size_t i = 0; ok && i < n; i++)
			ok = s[i] > ' ' && s[i] < 127 && s[i] != '{';
		if (!ok) {
			problem(tp, lineno, "expected a header field such as \"Subject: ...\" "
				"(the header section ends at the first empty line)");
			return;
		}
		for (size_t i = 0; i < ARRAY_LEN(own_fields); i++)
			if (strlen(own_fields[i]) == n && strncasecmp(s, own_fields[i], n) == 0)
				problem(tp, lineno, "%.*s: is set by postern, not by the template",
					(int)n, s);
		if (n == 7 && strncasecmp(s, "Subject", 7) == 0)
			t->has_subject = true;
	}
	char *line = xstrndup(s, len);
	strlist_add(&t->fields, line);
	free(line);
}

struct notice_template *notice_template_parse(const char *name, const char *text, size_t len,
					      FILE *errors)
{
	struct tparse tp = { name, errors, 0 };
	struct notice_template *t = xcalloc(1, sizeof(*t));
	buf_t body = BUF_INIT;
	bool in_body = false;
	unsigned lineno = 0;

	for (size_t pos = 0; pos < len;) {
		const char *s = text + pos;
		const char *nl = memchr(s, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - s) : len - pos;
		pos += n + (nl != NULL);
		lineno++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (memchr(s, '\0', n) != NULL) {
			problem(&tp, lineno, "NUL byte");
			continue;
		}
		check_line(&tp, lineno, s, n);
		if (in_body) {
			buf_append(&body, s, n);
			buf_putc(&body, '\n');
		} else if (n == 0) {
			in_body = true;
		} else {
			take_field(&tp, t, lineno, s, n);
		}
	}
	if (len == 0)
		problem(&tp, 0, "the file is empty (a header section, an empty line, then the "
			"body were expected)");
	else if (!in_body)
		problem(&tp, 0, "no empty line: the header section must be followed by an empty "
			"line and the body");
	t->body = buf_steal(&body);
	if (tp.problems > 0)
		notice_template_free(&t);
	return t;
}

struct notice_template *notice_template_builtin(void)
{
	struct notice_template *t = notice_template_parse("(built-in notice template)",
							  builtin_text, sizeof(builtin_text) - 1,
							  stderr);
	if (t == NULL)
		abort(); /* our own text: a bug, caught by the unit tests */
	return t;
}

struct notice_template *notice_template_load(const char *path, FILE *errors)
{
	buf_t text = BUF_INIT;

	if (path == NULL || path[0] == '\0')
		return notice_template_builtin();
	if (safeio_read_file(path, NOTICE_TEMPLATE_MAX, &text) < 0) {
		int err = errno;
		if (err == EFBIG)
			fprintf(errors, "%s: notify_template: larger than %d bytes\n", path,
				NOTICE_TEMPLATE_MAX);
		else
			fprintf(errors, "%s: notify_template: cannot read: %s\n", path,
				strerror(err));
		buf_free(&text);
		return NULL;
	}
	struct notice_template *t = notice_template_parse(path, buf_cstr(&text), text.len, errors);
	buf_free(&text);
	return t;
}

void notice_template_free(struct notice_template **tp)
{
	struct notice_template *t = *tp;
	if (t == NULL)
		return;
	strlist_free(&t->fields);
	free(t->body);
	free(t);
	*tp = NULL;
}

/* ---- values ---------------------------------------------------------------------- */

bool notice_is_virus(const struct notice_info *info)
{
	if (info->reason != NULL && strcmp(info->reason, "virus") == 0)
		return true;
	for (size_t i = 0; info->hits != NULL && i < info->hits->count; i++)
		if (strncmp(info->hits->items[i], "virus:", 6) == 0)
			return true;
	return false;
}

/* Append s cleaned for a notice: control characters as spaces, at most
 * NOTICE_VALUE_MAX bytes (cut at a character boundary). */
static void put_clean(buf_t *out, const char *s)
{
	size_t start = out->len;
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		buf_putc(out, c < 0x20 || c == 0x7f ? ' ' : (char)c);
	}
	if (out->len - start > NOTICE_VALUE_MAX) {
		size_t cut = start + NOTICE_VALUE_MAX;
		while (cut > start && ((unsigned char)out->data[cut] & 0xc0) == 0x80)
			cut--;
		out->len = cut;
		out->data[cut] = '\0';
		buf_puts(out, "...");
	}
}

/* The names of the hits with this prefix ("virus:"), comma separated. */
static void put_hits(buf_t *out, const strlist_t *hits, const char *prefix)
{
	size_t n = strlen(prefix), start = out->len;
	for (size_t i = 0; hits != NULL && i < hits->count; i++) {
		if (strncmp(hits->items[i], prefix, n) != 0 || hits->items[i][n] == '\0')
			continue;
		if (out->len > start)
			buf_puts(out, ", ");
		buf_puts(out, hits->items[i] + n);
	}
}

static const char *action_word(enum notice_event e)
{
	return e == NOTICE_QUARANTINED ? "quarantined" : e == NOTICE_REFUSED ? "refused" : "discarded";
}

static void put_next_steps(buf_t *out, const struct notice_info *info)
{
	const char *host = info->hostname != NULL ? info->hostname : "the gateway";
	const char *id = info->queue_id != NULL ? info->queue_id : "ID";
	switch (info->event) {
	case NOTICE_QUARANTINED:
		buf_printf(out, "The message is kept in the quarantine of %s. There, as root or\n"
			   "the spool's owner:\n"
			   "  postern quarantine show %s      its envelope and headers\n"
			   "  postern quarantine release %s   deliver it after all\n"
			   "  postern quarantine delete %s    remove it\n"
			   "Otherwise it is removed when quarantine_retention has passed.",
			   host, id, id, id);
		break;
	case NOTICE_REFUSED:
		buf_puts(out, "The message was refused during the SMTP dialogue: the sending\n"
			 "server was told why and keeps it; nothing of it was kept here.");
		break;
	case NOTICE_DISCARDED:
		buf_puts(out, "The message was accepted and then dropped (the sender was told it\n"
			 "was accepted); nothing of it was kept here.");
		break;
	}
}

/* Every placeholder's value, cleaned; free with free_values. */
static void make_values(buf_t *v, const struct notice_info *info)
{
	for (int p = 0; p < PH_COUNT; p++)
		buf_init(&v[p]);
	put_clean(&v[PH_SENDER], info->sender != NULL && info->sender[0] != '\0' ? info->sender
										  : "<>");
	size_t shown = 0, count = info->rcpts != NULL ? info->rcpts->count : 0;
	for (; shown < count && shown < NOTICE_RCPTS_SHOWN; shown++) {
		if (shown > 0)
			buf_puts(&v[PH_RECIPIENTS], ", ");
		put_clean(&v[PH_RECIPIENTS], info->rcpts->items[shown]);
	}
	if (count > shown)
		buf_printf(&v[PH_RECIPIENTS], " and %zu more", count - shown);
	put_clean(&v[PH_SUBJECT], info->subject);
	buf_t raw = BUF_INIT;
	const char *prefixes[] = { "attachment:", "virus:", "rule:" };
	enum placeholder where[] = { PH_ATTACHMENT, PH_VIRUS, PH_RULE };
	for (size_t i = 0; i < ARRAY_LEN(prefixes); i++) {
		buf_reset(&raw);
		put_hits(&raw, info->hits, prefixes[i]);
		put_clean(&v[where[i]], buf_cstr(&raw));
	}
	buf_free(&raw);
	put_clean(&v[PH_REASON], info->text != NULL && info->text[0] != '\0' ? info->text
									  : info->reason);
	put_clean(&v[PH_QUEUE_ID], info->queue_id);
	put_clean(&v[PH_CLIENT], info->client_addr);
	put_clean(&v[PH_HELO], info->helo);
	put_clean(&v[PH_CHECK], info->check);
	buf_puts(&v[PH_ACTION], action_word(info->event));
	put_clean(&v[PH_HOSTNAME], info->hostname);
	bounce_format_date(&v[PH_DATE], info->when_us);
	put_next_steps(&v[PH_NEXT_STEPS], info);
	for (int p = 0; p < PH_COUNT; p++)
		if (v[p].len == 0)
			buf_puts(&v[p], "(none)");
}

static void free_values(buf_t *v)
{
	for (int p = 0; p < PH_COUNT; p++)
		buf_free(&v[p]);
}

/* Append text with its placeholders filled. In a header line the values
 * lose their line ends and the line is cut at NOTICE_HEADER_LINE_MAX. */
static void fill(buf_t *out, const char *text, const buf_t *values, bool header)
{
	size_t len = strlen(text), start = out->len;
	for (size_t i = 0; i < len;) {
		enum placeholder ph;
		size_t n = text[i] == '{' ? placeholder_at(text, len, i, &ph) : 0;
		if (n == 0 || ph == PH_COUNT) {
			buf_putc(out, text[i++]);
			continue;
		}
		for (size_t k = 0; k < values[ph].len; k++) {
			char c = values[ph].data[k];
			buf_putc(out, header && c == '\n' ? ' ' : c);
		}
		i += n;
	}
	if (header && out->len - start > NOTICE_HEADER_LINE_MAX) {
		size_t cut = start + NOTICE_HEADER_LINE_MAX;
		while (cut > start && ((unsigned char)out->data[cut] & 0xc0) == 0x80)
			cut--;
		out->len = cut;
		out->data[cut] = '\0';
	}
}

static bool has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

void notice_build(buf_t *out, const struct notice_template *t, const struct notice_info *info,
		  const strlist_t *to, const char *notice_id, uint64_t now_us, bool *eight_bit_r)
{
	buf_t values[PH_COUNT], rest = BUF_INIT;
	const char *host = info->hostname != NULL ? info->hostname : "localhost";

	make_values(values, info);
	for (size_t i = 0; i < t->fields.count; i++) {
		fill(&rest, t->fields.items[i], values, true);
		buf_putc(&rest, '\n');
	}
	if (!t->has_subject) {
		fill(&rest, "Subject: [{hostname}] {action}: {reason}", values, true);
		buf_putc(&rest, '\n');
	}
	buf_putc(&rest, '\n');
	fill(&rest, t->body, values, false);
	bool eight = has_8bit(rest.data, rest.len);
	buf_printf(out, "Received: by %s (postern) id %s;\n\t", host, notice_id);
	bounce_format_date(out, now_us);
	buf_printf(out, "\nFrom: Mail Gateway <MAILER-DAEMON@%s>\nTo: ", host);
	for (size_t i = 0; i < to->count; i++)
		buf_printf(out, "%s<%s>", i > 0 ? ",\n\t" : "", to->items[i]);
	buf_puts(out, "\nDate: ");
	bounce_format_date(out, now_us);
	buf_printf(out, "\nMessage-ID: <%s.notice@%s>\n", notice_id, host);
	buf_puts(out, "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n"
		      "Content-Type: text/plain; charset=utf-8\n");
	buf_printf(out, "Content-Transfer-Encoding: %s\n", eight ? "8bit" : "7bit");
	buf_append(out, rest.data, rest.len);
	*eight_bit_r = eight;
	buf_free(&rest);
	free_values(values);
}

int notice_queue(const char *spool_dir, const char *hostname, const buf_t *content,
		 const struct notice_template *t, const struct notice_info *info,
		 const strlist_t *to, uint64_t now_us, char *notice_id_r, char **err_r)
{
	buf_t built = BUF_INIT;
	bool eight = false, utf8_rcpt = false;

	queue_id_new(notice_id_r);
	if (content == NULL) {
		notice_build(&built, t, info, to, notice_id_r, now_us, &eight);
		content = &built;
	} else {
		eight = has_8bit(content->data != NULL ? content->data : "", content->len);
	}
	for (size_t i = 0; i < to->count; i++)
		utf8_rcpt = utf8_rcpt || has_8bit(to->items[i], strlen(to->items[i]));
	struct queue_envelope env = {
		.arrival_us = now_us, .client_addr = "local", .client_helo = hostname,
		.protocol = "LOCAL", .sender = "", .recipients = to,
		.smtputf8 = utf8_rcpt, .body_8bitmime = eight,
		.origin = QUEUE_ORIGIN_NOTICE, /* made by postern: shown so by queue show */
	};
	int rc = -1;
	struct queue_writer *w = queue_writer_open(spool_dir, notice_id_r, &env, err_r);
	if (w != NULL) {
		if (queue_writer_write(w, content->data != NULL ? content->data : "", content->len,
				       err_r) < 0)
			queue_writer_abort(&w);
		else
			rc = queue_writer_commit(&w, err_r);
	}
	buf_free(&built);
	return rc;
}
