/*
 * fuzz_command.c - libFuzzer target for the SMTP command line parser
 * (network input of the smtp worker). Besides memory safety it checks
 * the parser's promises, so that a wrong answer is a crash too:
 *  - a MAIL path holding UTF-8 was accepted only with its own SMTPUTF8
 *    parameter (no value), a RCPT path only when UTF-8 was allowed;
 *  - parameters lie inside the line, after the path, within the limit;
 *  - what parses without UTF-8 parses the same with it;
 *  - a parsed address formats within ADDR_PATH_MAX without controls;
 *  - the DSN parameters (RET, ENVID, NOTIFY, ORCPT): a refused one is a
 *    501, an accepted one decodes to what the queue file reader accepts;
 *  - AUTH (RFC 4954): a mechanism of 1 to 20 characters and at most one
 *    word of initial response, both inside the line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/command.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void check_path_rules(const struct smtp_command *cmd, const char *line, size_t len,
			     bool utf8, bool lenient)
{
	if (cmd->verb != SMTP_MAIL && cmd->verb != SMTP_RCPT)
		return;
	if (cmd->path.utf8) {
		const struct smtp_param *p = smtp_command_param(cmd, "SMTPUTF8");
		check(cmd->verb == SMTP_MAIL ? p != NULL && !p->has_value : utf8);
	}
	check(cmd->param_count <= SMTP_MAX_PARAMS);
	for (size_t i = 0; i < cmd->param_count; i++) {
		const slice_t k = cmd->params[i].keyword;
		check(k.len > 0 && k.ptr >= line && k.ptr + k.len <= line + len);
		/* after the path: the path's '>' precedes every parameter
		 * (a lenient path may come without its brackets) */
		check(lenient || memchr(line, '>', (size_t)(k.ptr - line)) != NULL);
	}
	char text[ADDR_PATH_MAX + 1];
	address_format(&cmd->path, text, sizeof(text));
	for (const char *t = text; *t != '\0'; t++)
		check((unsigned char)*t >= 0x20 && *t != 0x7f);
}

static void check_dsn_params(const struct smtp_command *cmd, bool utf8)
{
	struct smtp_mail_dsn md;
	struct smtp_rcpt_dsn rd;
	struct smtp_parse_error err;

	memset(&md, 0, sizeof(md));
	memset(&rd, 0, sizeof(rd));
	for (size_t i = 0; i < cmd->param_count; i++) {
		int rc = cmd->verb == SMTP_MAIL ? smtp_mail_dsn_param(&cmd->params[i], &md, &err)
						: smtp_rcpt_dsn_param(&cmd->params[i], utf8, &rd, &err);
		if (rc < 0) {
			check(err.code == 501 && err.status != NULL && err.text != NULL);
			break;
		}
	}
	check(md.ret == DSN_RET_UNSPECIFIED || md.ret == DSN_RET_FULL || md.ret == DSN_RET_HDRS);
	check(md.envid[0] == '\0' || dsn_envid_valid(md.envid));
	check(dsn_notify_valid(rd.notify));
	check(rd.orcpt[0] == '\0' || dsn_orcpt_valid(rd.orcpt));
	if (rd.orcpt[0] != '\0') { /* it can be passed on as xtext */
		buf_t b = BUF_INIT;
		dsn_xtext_encode(rd.orcpt, &b);
		for (size_t i = 0; i < b.len; i++)
			check(b.data[i] > 0x20 && b.data[i] < 0x7f && b.data[i] != '=');
		buf_free(&b);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_command cmd, wide;
	struct smtp_parse_error err;
	const char *line = (const char *)data;
	if (size > 4096)
		return 0;
	bool narrow_ok = false;
	for (int utf8 = 0; utf8 < 2; utf8++) {
		bool ok = smtp_command_parse(line, size, utf8, &cmd, &err);
		if (!ok) {
			check(err.code >= 500 && err.code < 600 && err.status != NULL);
			check(!(utf8 && narrow_ok)); /* more freedom never refuses */
			continue;
		}
		smtp_verb_name(cmd.verb);
		check_path_rules(&cmd, line, size, utf8, false);
		if (cmd.verb == SMTP_AUTH) { /* a mechanism name, at most one word after it */
			slice_t m = cmd.auth_mechanism, r = cmd.auth_initial;
			check(m.len >= 1 && m.len <= 20 && m.ptr >= line && m.ptr + m.len <= line + size);
			check(!cmd.auth_has_initial ||
			      (r.len > 0 && r.ptr > m.ptr && r.ptr + r.len <= line + size &&
			       memchr(r.ptr, ' ', r.len) == NULL));
		}
		if (cmd.verb == SMTP_MAIL || cmd.verb == SMTP_RCPT)
			check_dsn_params(&cmd, utf8);
		if (!utf8) {
			narrow_ok = true;
			wide = cmd;
		} else if (narrow_ok) {
			check(wide.verb == cmd.verb && wide.param_count == cmd.param_count);
			check(strcmp(wide.path.local, cmd.path.local) == 0 &&
			      strcmp(wide.path.domain, cmd.path.domain) == 0);
		}
	}
	/* strict_rfc821_envelopes = no: angle brackets become optional; what
	 * parses strictly parses the same way leniently. */
	for (int utf8 = 0; utf8 < 2; utf8++) {
		unsigned flags = SMTP_PARSE_LENIENT_PATHS | (utf8 ? SMTP_PARSE_RCPT_UTF8 : 0);
		struct smtp_command lenient;
		bool strict_ok = smtp_command_parse(line, size, (unsigned)utf8, &cmd, &err);
		bool ok = smtp_command_parse(line, size, flags, &lenient, &err);
		if (!ok) {
			check(err.code >= 500 && err.code < 600 && err.status != NULL);
			check(!strict_ok);
			continue;
		}
		check_path_rules(&lenient, line, size, utf8, true);
		if (strict_ok)
			check(strcmp(cmd.path.local, lenient.path.local) == 0 &&
			      strcmp(cmd.path.domain, lenient.path.domain) == 0 &&
			      cmd.param_count == lenient.param_count);
	}
	return 0;
}
