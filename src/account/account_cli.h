/*
 * account_cli.h - `postern user` and `postern domain`: the accounts and
 * local domains of users_file and domains_file, edited in place.
 *
 *   postern user add ADDRESS [--quota SIZE] [--stdin]
 *   postern user passwd ADDRESS [--stdin]
 *   postern user quota ADDRESS SIZE|none
 *   postern user del ADDRESS
 *   postern user list [DOMAIN] [--json]
 *   postern user show ADDRESS [--json]
 *   postern domain add DOMAIN [--quota SIZE] [--catch-all ADDRESS]
 *   postern domain set DOMAIN [--quota SIZE|0] [--catch-all ADDRESS|none]
 *   postern domain del DOMAIN
 *   postern domain list [--json]
 *
 * Passwords come from the terminal (asked twice, no echo) or from
 * standard input (--stdin, or whenever standard input is not a
 * terminal), never from the command line. Files are replaced atomically
 * (account_file.h); the running server notices the change and reloads
 * (src/server/table_watch.h). Problems in the files are reported as
 * "FILE:LINE: message" and change nothing; the users file a `user`
 * command is about to write is first checked by the server's own loader
 * (recipients_load_users_text, mail_owner resolved as the supervisor
 * does), so a file the server would refuse is never written.
 *
 * Untrusted input: the command line, the password, the files (all
 * administrator input). Privilege: the invoking user, who needs to read
 * and write the files (root for a users_file of mode 0600).
 */
#ifndef POSTERN_ACCOUNT_CLI_H
#define POSTERN_ACCOUNT_CLI_H

#include "../lib/config.h"

/* Exit statuses: 0 done, 1 refused or failed (why is on stderr), 2 usage. */
#define ACCOUNT_CLI_OK 0
#define ACCOUNT_CLI_ERROR 1
#define ACCOUNT_CLI_USAGE 2

/* argv[0] is the subcommand ("add", ...). cfg's local_domains gain
 * domains_file's domains. */
int account_user_main(struct config *cfg, int argc, char **argv);
int account_domain_main(struct config *cfg, int argc, char **argv);

/* ---- shared by the two commands (account_cli.c) ---- */

enum account_option_flags {
	ACCOUNT_OPT_STDIN = 1,
	ACCOUNT_OPT_QUOTA = 2,
	ACCOUNT_OPT_CATCH_ALL = 4,
	ACCOUNT_OPT_JSON = 8,
};

struct account_options {
	const char *args[2]; /* the positional arguments after the subcommand */
	size_t arg_count;
	bool stdin_password;
	bool json;             /* --json: one JSON value on standard output */
	const char *quota;     /* NULL: not given */
	const char *catch_all; /* NULL: not given */
};

/* Parse argv[1..] of "postern WHAT SUB" with the options allowed;
 * positional arguments must number between min_args and max_args (at
 * most 2). -1 with a message on stderr. */
int account_parse_options(const char *what, int argc, char **argv, unsigned allowed,
			  size_t min_args, size_t max_args, struct account_options *o);
/* A size for a quota ("10M", "1G", "500K", "1048576", "0") normalised
 * into buf_r ("10M"); false (message printed) if it is not one. */
bool account_parse_quota(const char *what, const char *text, char *buf_r, size_t size);
/* The lower-cased copy of an address argument (malloc'ed), or NULL with
 * a message printed. */
char *account_address_arg(const char *what, const char *text);

#endif
