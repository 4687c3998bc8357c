/*
 * dsn_param.c - the DSN parameters of MAIL and RCPT (RFC 3461 sections
 * 4.1 to 4.4): which keywords they are, that each comes once and with a
 * value, and their decoding (src/mail/dsn.c). The replies are RFC 3461's:
 * 501 for a malformed DSN parameter (555 for keywords nobody knows is
 * the caller's).
 *
 * Input: parameters of an untrusted client's command line, already split
 * and bounded by command.c. Privilege: unprivileged smtp worker.
 */
#include "command.h"

static int bad(struct smtp_parse_error *e, const char *text)
{
	e->code = 501;
	e->status = "5.5.4";
	e->text = text;
	return -1;
}

int smtp_mail_dsn_param(const struct smtp_param *p, struct smtp_mail_dsn *d,
			struct smtp_parse_error *err_r)
{
	if (slice_eq_nocase(p->keyword, "RET")) {
		if (d->ret != DSN_RET_UNSPECIFIED)
			return bad(err_r, "Error: RET given twice");
		if (!p->has_value || !dsn_parse_ret(p->value.ptr, p->value.len, &d->ret))
			return bad(err_r, "Error: RET must be FULL or HDRS");
		return 1;
	}
	if (slice_eq_nocase(p->keyword, "ENVID")) {
		if (d->envid[0] != '\0')
			return bad(err_r, "Error: ENVID given twice");
		if (!p->has_value || !dsn_parse_envid(p->value.ptr, p->value.len, d->envid)) {
			d->envid[0] = '\0';
			return bad(err_r, "Error: ENVID must be xtext of at most 100 printable characters");
		}
		return 1;
	}
	return 0;
}

int smtp_rcpt_dsn_param(const struct smtp_param *p, bool utf8_allowed,
			struct smtp_rcpt_dsn *d, struct smtp_parse_error *err_r)
{
	if (slice_eq_nocase(p->keyword, "NOTIFY")) {
		if (d->notify != 0)
			return bad(err_r, "Error: NOTIFY given twice");
		if (!p->has_value || !dsn_parse_notify(p->value.ptr, p->value.len, &d->notify)) {
			d->notify = 0;
			return bad(err_r, "Error: NOTIFY must be NEVER or a list of "
					  "SUCCESS, FAILURE, DELAY");
		}
		return 1;
	}
	if (slice_eq_nocase(p->keyword, "ORCPT")) {
		if (d->orcpt[0] != '\0')
			return bad(err_r, "Error: ORCPT given twice");
		if (!p->has_value ||
		    !dsn_parse_orcpt(p->value.ptr, p->value.len, utf8_allowed, d->orcpt)) {
			d->orcpt[0] = '\0';
			return bad(err_r, "Error: ORCPT must be addr-type;xtext "
					  "(at most 500 characters)");
		}
		return 1;
	}
	return 0;
}
