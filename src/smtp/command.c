/*
 * command.c - SMTP command line parser (see command.h).
 */
#include "command.h"

#include <string.h>

#include "../lib/strutil.h"

static const char *const verb_names[SMTP_VERB_COUNT] = {
	[SMTP_UNKNOWN] = "?",     [SMTP_HELO] = "HELO", [SMTP_EHLO] = "EHLO",
	[SMTP_MAIL] = "MAIL",     [SMTP_RCPT] = "RCPT", [SMTP_DATA] = "DATA",
	[SMTP_BDAT] = "BDAT",     [SMTP_RSET] = "RSET", [SMTP_NOOP] = "NOOP",
	[SMTP_QUIT] = "QUIT",     [SMTP_HELP] = "HELP", [SMTP_VRFY] = "VRFY",
	[SMTP_EXPN] = "EXPN",     [SMTP_STARTTLS] = "STARTTLS", [SMTP_AUTH] = "AUTH",
};

const char *smtp_verb_name(enum smtp_verb verb)
{
	return verb < SMTP_VERB_COUNT ? verb_names[verb] : "?";
}

static bool fail(struct smtp_parse_error *e, int code, const char *status, const char *text)
{
	e->code = code;
	e->status = status;
	e->text = text;
	return false;
}

static enum smtp_verb lookup_verb(slice_t word)
{
	for (int v = SMTP_HELO; v < SMTP_VERB_COUNT; v++)
		if (slice_eq_nocase(word, verb_names[v]))
			return (enum smtp_verb)v;
	return SMTP_UNKNOWN;
}

enum smtp_verb smtp_verb_of(const char *line, size_t len)
{
	size_t n = 0;
	while (n < len && line[n] != ' ')
		n++;
	return lookup_verb(slice_make(line, n));
}

/* Parse "KEY[=VALUE] KEY[=VALUE] ..." (RFC 5321 Mail-parameters). */
static bool parse_params(const char *p, const char *end, struct smtp_command *cmd,
			 struct smtp_parse_error *err_r)
{
	while (p < end) {
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			break;
		const char *start = p;
		while (p < end && *p != ' ')
			p++;
		if (cmd->param_count >= SMTP_MAX_PARAMS)
			return fail(err_r, 555, "5.5.4", "Too many parameters");
		struct smtp_param *prm = &cmd->params[cmd->param_count++];
		const char *eq = memchr(start, '=', (size_t)(p - start));
		const char *kend = eq ? eq : p;
		if (kend == start)
			return fail(err_r, 501, "5.5.4", "Syntax error in parameters");
		for (const char *k = start; k < kend; k++) {
			char ch = *k;
			bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
				  (ch >= '0' && ch <= '9') || (ch == '-' && k != start);
			if (!ok)
				return fail(err_r, 501, "5.5.4", "Syntax error in parameters");
		}
		prm->keyword = slice_make(start, (size_t)(kend - start));
		prm->has_value = eq != NULL;
		prm->value = eq ? slice_make(eq + 1, (size_t)(p - eq - 1)) : slice_make(p, 0);
		if (eq != NULL && prm->value.len == 0)
			return fail(err_r, 501, "5.5.4", "Syntax error in parameters");
	}
	return true;
}

const struct smtp_param *smtp_command_param(const struct smtp_command *cmd,
					    const char *keyword)
{
	for (size_t i = 0; i < cmd->param_count; i++)
		if (slice_eq_nocase(cmd->params[i].keyword, keyword))
			return &cmd->params[i];
	return NULL;
}

/* A UTF-8 address needs SMTPUTF8 on MAIL (RFC 6531 section 3.4):
 * the parameter must be present without a value. */
static bool declares_smtputf8(const struct smtp_command *cmd)
{
	const struct smtp_param *p = smtp_command_param(cmd, "SMTPUTF8");
	return p != NULL && !p->has_value;
}

/*
 * "FROM:<path> params" / "TO:<path> params". The path is parsed first,
 * with UTF-8 allowed so that its end is found correctly whatever it
 * holds (a quoted local part may contain '>' and "SMTPUTF8"); only then
 * are the parameters after it read, and a UTF-8 address without the
 * right to use one is refused with RFC 6531's 553 5.6.7.
 */
/*
 * strict_rfc821_envelopes = no: an address without angle brackets, up to
 * the next space, is parsed as if it had them. Returns the bytes taken
 * from p (the token), or -1.
 */
static long parse_bare_path(const char *p, const char *end, unsigned flags,
			    struct mail_address *addr)
{
	size_t n = 0;
	char path[ADDR_PATH_MAX + 8];
	const char *why;
	while (p + n < end && p[n] != ' ')
		n++;
	if (n == 0 || n > ADDR_PATH_MAX + 4 || memchr(p, '<', n) != NULL ||
	    memchr(p, '>', n) != NULL)
		return -1;
	path[0] = '<';
	memcpy(path + 1, p, n);
	path[n + 1] = '>';
	long used = address_parse_path(path, n + 2, flags, addr, &why);
	return used == (long)n + 2 ? (long)n : -1;
}

static bool parse_path_command(struct smtp_command *cmd, const char *prefix,
			       unsigned flags, bool utf8_allowed, bool lenient,
			       struct smtp_parse_error *err_r)
{
	const char *p = cmd->arg.ptr, *end = p + cmd->arg.len;
	size_t plen = strlen(prefix);
	bool is_mail = cmd->verb == SMTP_MAIL;
	if (cmd->arg.len < plen || !slice_eq_nocase(slice_make(p, plen), prefix))
		return fail(err_r, 501, "5.5.4",
			    is_mail ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>");
	p += plen;
	while (p < end && *p == ' ') /* tolerated: "MAIL FROM: <a@b>" */
		p++;
	const char *why;
	long n = lenient && p < end && *p != '<'
			 ? parse_bare_path(p, end, flags | ADDR_ALLOW_UTF8, &cmd->path)
			 : address_parse_path(p, (size_t)(end - p), flags | ADDR_ALLOW_UTF8,
					      &cmd->path, &why);
	if (n < 0)
		return fail(err_r, 501, is_mail ? "5.1.7" : "5.1.3",
			    is_mail ? "Bad sender address syntax" : "Bad recipient address syntax");
	p += n;
	if (p < end && *p != ' ')
		return fail(err_r, 501, "5.5.4", "Syntax error after address");
	if (!parse_params(p, end, cmd, err_r))
		return false;
	if (cmd->path.utf8 && !(is_mail ? declares_smtputf8(cmd) : utf8_allowed))
		return fail(err_r, 553, "5.6.7",
			    "UTF-8 address needs the SMTPUTF8 parameter on MAIL");
	return true;
}

static bool parse_bdat(struct smtp_command *cmd, struct smtp_parse_error *err_r)
{
	const char *p = cmd->arg.ptr, *end = p + cmd->arg.len;
	uint64_t size = 0;
	const char *digits = p;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (size > (UINT64_MAX - 9) / 10)
			return fail(err_r, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
		size = size * 10 + (uint64_t)(*p - '0');
	}
	if (p == digits)
		return fail(err_r, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
	while (p < end && *p == ' ')
		p++;
	cmd->chunk_size = size;
	if (p == end)
		return true;
	if (slice_eq_nocase(slice_make(p, (size_t)(end - p)), "LAST")) {
		cmd->chunk_last = true;
		return true;
	}
	return fail(err_r, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
}

/* "AUTH mechanism [initial-response]" (RFC 4954 section 4): a SASL
 * mechanism name (RFC 4422: 1 to 20 of A-Z 0-9 - _, any case here) and at
 * most one more word, which the SASL code decodes. */
static bool parse_auth(struct smtp_command *cmd, struct smtp_parse_error *err_r)
{
	const char *p = cmd->arg.ptr, *end = p + cmd->arg.len, *mech = p;
	while (p < end && *p != ' ')
		p++;
	size_t n = (size_t)(p - mech);
	if (n == 0 || n > 20)
		return fail(err_r, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
	for (size_t i = 0; i < n; i++) {
		char c = mech[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return fail(err_r, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
	}
	cmd->auth_mechanism = slice_make(mech, n);
	if (p == end)
		return true;
	p++;
	if (p == end || memchr(p, ' ', (size_t)(end - p)) != NULL)
		return fail(err_r, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
	cmd->auth_initial = slice_make(p, (size_t)(end - p));
	cmd->auth_has_initial = true;
	return true;
}

static bool no_argument(const struct smtp_command *cmd, struct smtp_parse_error *err_r)
{
	if (cmd->arg.len != 0)
		return fail(err_r, 501, "5.5.4", "Syntax error: no arguments allowed");
	return true;
}

bool smtp_command_parse(const char *line, size_t len, unsigned flags,
			struct smtp_command *cmd, struct smtp_parse_error *err_r)
{
	bool smtputf8_allowed = (flags & SMTP_PARSE_RCPT_UTF8) != 0;
	bool lenient = (flags & SMTP_PARSE_LENIENT_PATHS) != 0;
	memset(cmd, 0, sizeof(*cmd));
	const char *end = line + len, *p = line;
	if (memchr(line, '\0', len) != NULL)
		return fail(err_r, 500, "5.5.2", "Error: NUL character in command");
	while (p < end && *p != ' ')
		p++;
	cmd->verb = lookup_verb(slice_make(line, (size_t)(p - line)));
	if (cmd->verb == SMTP_UNKNOWN)
		return fail(err_r, 500, "5.5.2", "Error: command not recognized");
	if (p < end)
		p++;
	cmd->arg = slice_trim(slice_make(p, (size_t)(end - p)));
	switch (cmd->verb) {
	case SMTP_HELO:
	case SMTP_EHLO:
		if (cmd->arg.len == 0 || memchr(cmd->arg.ptr, ' ', cmd->arg.len) != NULL)
			return fail(err_r, 501, "5.5.4",
				    cmd->verb == SMTP_HELO ? "Syntax: HELO hostname" : "Syntax: EHLO hostname");
		return true;
	case SMTP_MAIL:
		return parse_path_command(cmd, "FROM:", ADDR_ALLOW_NULL, false, lenient, err_r);
	case SMTP_RCPT:
		return parse_path_command(cmd, "TO:", ADDR_ALLOW_BARE_POSTMASTER,
					  smtputf8_allowed, lenient, err_r);
	case SMTP_BDAT:
		return parse_bdat(cmd, err_r);
	case SMTP_AUTH:
		return parse_auth(cmd, err_r);
	case SMTP_DATA:
	case SMTP_RSET:
	case SMTP_QUIT:
	case SMTP_STARTTLS:
		return no_argument(cmd, err_r);
	case SMTP_VRFY:
	case SMTP_EXPN:
		if (cmd->arg.len == 0)
			return fail(err_r, 501, "5.5.4", "Syntax: VRFY address");
		return true;
	default:
		return true; /* NOOP and HELP take optional text */
	}
}
