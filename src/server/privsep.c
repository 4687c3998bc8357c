/*
 * privsep.c - the accounts of the roles and the switch into them (see
 * privsep.h).
 *
 * RFCs: none. Untrusted input: none. Privilege: privsep_resolve runs in
 * the supervisor (root or not) and in check-config; privsep_become in
 * each freshly forked child, still root until it returns.
 */
#include "privsep.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"

/* The invoking user: every process runs as it when not started as root. */
static void resolve_self(struct privsep_account *a)
{
	struct passwd *pw = getpwuid(getuid());
	buf_t name = BUF_INIT;

	if (pw != NULL)
		buf_puts(&name, pw->pw_name);
	else
		buf_printf(&name, "uid %lu", (unsigned long)getuid());
	a->name = buf_steal(&name);
	a->uid = getuid();
	a->gid = getgid();
	a->known = true;
}

/* Not root: a key that is set should still name an account (a typo shows
 * before the configuration is used as root), but it changes nothing. */
static void check_exists(const struct config *cfg, const char *key,
			 const char *value, const char *self, FILE *errors)
{
	if (value[0] == '\0' || getpwnam(value) != NULL)
		return;
	fprintf(errors, "warning: %s: %s: account \"%s\" does not exist (ignored: postern "
		"is not started as root, so every process runs as %s)\n",
		cfg->path, key, value, self);
}

/* Root: key must name an existing account other than root. */
static int resolve_account(const struct config *cfg, const char *key,
			   const char *value, struct privsep_account *a,
			   FILE *errors)
{
	a->name = xstrdup(value);
	if (value[0] == '\0') {
		fprintf(errors, "%s: %s: empty, but postern is started as root and no role may "
			"run as root: set %s to an unprivileged account\n", cfg->path, key, key);
		return 1;
	}
	struct passwd *pw = getpwnam(value);
	if (pw == NULL) {
		fprintf(errors, "%s: %s: account \"%s\" does not exist (create it, for example "
			"useradd --system --no-create-home --shell /usr/sbin/nologin %s)\n",
			cfg->path, key, value, value);
		return 1;
	}
	if (pw->pw_uid == 0) {
		fprintf(errors, "%s: %s: account \"%s\" has uid 0: no role may run as root\n",
			cfg->path, key, value);
		return 1;
	}
	if (pw->pw_gid == 0) {
		fprintf(errors, "%s: %s: account \"%s\" has primary group 0 (root's group), which "
			"would give the role every file of group root: give it a group of its own "
			"(usermod -g)\n", cfg->path, key, value);
		return 1;
	}
	a->uid = pw->pw_uid;
	a->gid = pw->pw_gid;
	a->known = true;
	return 0;
}

int privsep_resolve(const struct config *cfg, struct privsep *ps, FILE *errors)
{
	int problems = 0;
	buf_t label = BUF_INIT;

	memset(ps, 0, sizeof(*ps));
	ps->as_root = getuid() == 0 || geteuid() == 0;
	if (!ps->as_root) {
		resolve_self(&ps->user);
		resolve_self(&ps->mail_owner);
		check_exists(cfg, "user", cfg->user, ps->user.name, errors);
		check_exists(cfg, "mail_owner", cfg->mail_owner, ps->user.name, errors);
		buf_printf(&label, "the invoking user %s (postern is not started as root)",
			   ps->mail_owner.name);
		ps->owner_label = buf_steal(&label);
		return 0;
	}
	problems += resolve_account(cfg, "user", cfg->user, &ps->user, errors);
	problems += resolve_account(cfg, "mail_owner", cfg->mail_owner, &ps->mail_owner,
				    errors);
	if (ps->user.known && ps->mail_owner.known && ps->user.uid == ps->mail_owner.uid) {
		fprintf(errors, "%s: user and mail_owner: both are uid %lu, but they must differ: "
			"the smtp workers run as user and must not be able to write mailboxes\n",
			cfg->path, (unsigned long)ps->user.uid);
		problems++;
	}
	buf_printf(&label, "mail_owner %s", ps->mail_owner.name);
	ps->owner_label = buf_steal(&label);
	return problems;
}

void privsep_free(struct privsep *ps)
{
	free(ps->user.name);
	free(ps->mail_owner.name);
	free(ps->owner_label);
	memset(ps, 0, sizeof(*ps));
}

const struct recipients_owner *privsep_mailbox_owner(const struct privsep *ps,
						     struct recipients_owner *buf)
{
	if (!ps->mail_owner.known)
		return NULL;
	buf->label = ps->owner_label;
	buf->uid = ps->mail_owner.uid;
	buf->gid = ps->mail_owner.gid;
	return buf;
}

/* Root only: switch to acct for good. */
static int switch_account(const struct privsep_account *acct)
{
	if (!acct->known) {
		log_error("no account to run as");
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(acct->gid) < 0 || setuid(acct->uid) < 0) {
		log_error("cannot become %s: %s", acct->name, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || getuid() == 0 || geteuid() == 0) {
		log_error("could regain root after becoming %s", acct->name);
		return -1;
	}
	return 0;
}

int privsep_become(const struct privsep *ps, const struct privsep_account *acct,
		   int deathsig, pid_t parent)
{
	if (ps->as_root && switch_account(acct) < 0)
		return -1;
	/* No exec (there is none today, but a bug or a library could add
	 * one) may gain privileges: set-user-id bits and file capabilities
	 * are ignored from here on, in this process and its children. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_error("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		log_error("PR_SET_DUMPABLE: %s", strerror(errno));
		return -1;
	}
	if (deathsig != 0) {
		if (prctl(PR_SET_PDEATHSIG, deathsig, 0, 0, 0) < 0) {
			log_error("PR_SET_PDEATHSIG: %s", strerror(errno));
			return -1;
		}
		if (getppid() != parent)
			return -1; /* the parent died before the request: follow it */
	}
	return 0;
}
