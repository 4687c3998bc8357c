/*
 * pop3_command.c - the POP3 command line parser and the SASL PLAIN
 * decoder (see pop3_command.h).
 *
 * RFCs: RFC 1939 (commands and arguments), RFC 2449 (CAPA), RFC 2595
 * (STLS), RFC 5034 (AUTH, initial response "="), RFC 4616 (PLAIN),
 * RFC 4648 (base64). Untrusted input: the whole line. Privilege: the
 * pop3 worker (`user`).
 */
#include "pop3_command.h"

#include <string.h>
#include <strings.h>

struct verb_def {
	const char *name;
	enum pop3_verb verb;
	enum { ARGS_NONE, ARGS_OPT_NUM, ARGS_NUM, ARGS_TWO_NUMS, ARGS_WORD, ARGS_REST,
	       ARGS_AUTH } args;
};

static const struct verb_def verbs[] = {
	{ "CAPA", POP3_CAPA, ARGS_NONE },     { "USER", POP3_USER, ARGS_WORD },
	{ "PASS", POP3_PASS, ARGS_REST },     { "AUTH", POP3_AUTH, ARGS_AUTH },
	{ "STLS", POP3_STLS, ARGS_NONE },     { "QUIT", POP3_QUIT, ARGS_NONE },
	{ "STAT", POP3_STAT, ARGS_NONE },     { "LIST", POP3_LIST, ARGS_OPT_NUM },
	{ "UIDL", POP3_UIDL, ARGS_OPT_NUM },  { "RETR", POP3_RETR, ARGS_NUM },
	{ "TOP", POP3_TOP, ARGS_TWO_NUMS },   { "DELE", POP3_DELE, ARGS_NUM },
	{ "RSET", POP3_RSET, ARGS_NONE },     { "NOOP", POP3_NOOP, ARGS_NONE },
};

/* A decimal number of at most 10 digits (message numbers and line counts
 * fit in 32 bits; more digits are refused rather than wrapped). */
static bool parse_number(const char *s, uint64_t *n_r)
{
	uint64_t n = 0;
	size_t digits = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (++digits > 10)
			return false;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	if (digits == 0 || *s != '\0')
		return false;
	*n_r = n;
	return true;
}

/* Split the arguments at runs of spaces into at most max words (NUL-
 * terminated in place); returns the number found, max + 1 if more. */
static unsigned split_words(char *p, char **words, unsigned max)
{
	unsigned n = 0;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return n;
		if (n == max)
			return max + 1;
		words[n++] = p;
		while (*p != ' ' && *p != '\0')
			p++;
		if (*p == ' ')
			*p++ = '\0';
	}
}

static bool printable_word(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

static const char *parse_args(const struct verb_def *v, char *rest, struct pop3_command *cmd)
{
	char *w[3];
	if (v->args == ARGS_REST) {
		if (*rest == '\0')
			return "a password is needed";
		cmd->arg = rest; /* a password may hold spaces */
		return NULL;
	}
	unsigned n = split_words(rest, w, 2);
	switch (v->args) {
	case ARGS_NONE:
		return n == 0 ? NULL : "no arguments are expected";
	case ARGS_OPT_NUM:
	case ARGS_NUM:
		if (n > 1 || (n == 0 && v->args == ARGS_NUM))
			return "one message number is expected";
		if (n == 1 && !parse_number(w[0], &cmd->num[0]))
			return "not a message number";
		cmd->nums = n;
		return NULL;
	case ARGS_TWO_NUMS:
		if (n != 2 || !parse_number(w[0], &cmd->num[0]) ||
		    !parse_number(w[1], &cmd->num[1]))
			return "a message number and a number of lines are expected";
		cmd->nums = 2;
		return NULL;
	case ARGS_WORD:
		if (n != 1 || !printable_word(w[0]))
			return "one user name is expected";
		if (strlen(w[0]) > POP3_USER_MAX)
			return "user name too long";
		cmd->arg = w[0];
		return NULL;
	case ARGS_AUTH:
		if (n > 2)
			return "a mechanism and at most an initial response are expected";
		cmd->arg = n >= 1 ? w[0] : NULL;
		cmd->arg2 = n == 2 ? w[1] : NULL;
		return NULL;
	case ARGS_REST:
		break;
	}
	return "bad arguments";
}

const char *pop3_command_parse(char *line, size_t len, struct pop3_command *cmd_r)
{
	memset(cmd_r, 0, sizeof(*cmd_r));
	if (memchr(line, '\0', len) != NULL)
		return "NUL byte in the command";
	line[len] = '\0';
	size_t kw = 0;
	while (kw < len && line[kw] != ' ')
		kw++;
	if (kw < 3 || kw > 4)
		return "unknown command";
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) != kw || strncasecmp(line, verbs[i].name, kw) != 0)
			continue;
		cmd_r->verb = verbs[i].verb;
		char *rest = line + kw;
		if (*rest == ' ')
			rest++; /* exactly one space before PASS's argument */
		return parse_args(&verbs[i], rest, cmd_r);
	}
	return "unknown command";
}

const char *pop3_sasl_plain(const char *b64, size_t len, struct sasl_credentials *c)
{
	const char *why = NULL;
	switch (sasl_plain_decode(b64, len, c)) {
	case SASL_OK:
		if (strlen(c->user) > POP3_USER_MAX || !printable_word(c->user))
			why = "bad user name"; /* control bytes would reach the log */
		break;
	case SASL_BAD_BASE64:
		why = "the response is not base64";
		break;
	case SASL_PROXY:
		why = "logging in as another user is not allowed";
		break;
	case SASL_TOO_LONG:
		why = "user name or password too long";
		break;
	case SASL_BAD_MESSAGE:
		why = "malformed PLAIN message";
		break;
	}
	if (why != NULL)
		sasl_credentials_wipe(c);
	return why;
}
