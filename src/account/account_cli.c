/*
 * account_cli.c - what `postern user` and `postern domain` share: their
 * options and the checks of their arguments (see account_cli.h).
 *
 * Untrusted input: the command line. Privilege: the invoking user.
 */
#include "account_cli.h"
#include "account_users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/strutil.h"
#include "../lib/xalloc.h"
#include "../mail/domains.h"

/* The value of an option given as "--name VALUE" or "--name=VALUE";
 * advances *i past it. NULL if argv[*i] is not that option. */
static const char *option_value(const char *name, int argc, char **argv, int *i, bool *missing)
{
	size_t len = strlen(name);
	*missing = false;
	if (strncmp(argv[*i], name, len) != 0)
		return NULL;
	if (argv[*i][len] == '=')
		return argv[*i] + len + 1;
	if (argv[*i][len] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

int account_parse_options(const char *what, int argc, char **argv, unsigned allowed,
			  size_t min_args, size_t max_args, struct account_options *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool missing = false;
		const char *v;
		if (strcmp(a, "--stdin") == 0 && (allowed & ACCOUNT_OPT_STDIN)) {
			o->stdin_password = true;
		} else if (strcmp(a, "--json") == 0 && (allowed & ACCOUNT_OPT_JSON)) {
			o->json = true;
		} else if ((allowed & ACCOUNT_OPT_QUOTA) &&
			   ((v = option_value("--quota", argc, argv, &i, &missing)) != NULL ||
			    missing)) {
			if (missing) {
				fprintf(stderr, "postern %s: --quota needs a size (10M, 1G, ...)\n", what);
				return -1;
			}
			o->quota = v;
		} else if ((allowed & ACCOUNT_OPT_CATCH_ALL) &&
			   ((v = option_value("--catch-all", argc, argv, &i, &missing)) != NULL ||
			    missing)) {
			if (missing) {
				fprintf(stderr, "postern %s: --catch-all needs an address\n", what);
				return -1;
			}
			o->catch_all = v;
		} else if (strncmp(a, "--pass", 6) == 0 || strcmp(a, "-p") == 0) {
			fprintf(stderr, "postern %s: a password is never taken from the command line "
				"(other users can read it there): type it when asked, or give it on "
				"standard input with --stdin\n", what);
			return -1;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "postern %s: unknown option %s\n", what, a);
			return -1;
		} else if (o->arg_count < max_args) {
			o->args[o->arg_count++] = a;
		} else {
			fprintf(stderr, "postern %s: too many arguments (%s)\n", what, a);
			return -1;
		}
	}
	if (o->arg_count < min_args) {
		fprintf(stderr, "postern %s: missing argument (see postern help)\n", what);
		return -1;
	}
	return 0;
}

bool account_parse_quota(const char *what, const char *text, char *buf_r, size_t size)
{
	uint64_t bytes;
	if (!str_parse_size(text, &bytes) || bytes > (1ULL << 50)) {
		fprintf(stderr, "postern %s: quota \"%s\" is not a size such as 500K, 10M or 2G\n",
			what, text);
		return false;
	}
	domains_format_size(bytes, buf_r, size);
	return true;
}

char *account_address_arg(const char *what, const char *text)
{
	char *address = xstrdup(text);
	str_lower(address);
	if (!account_users_valid_address(address)) {
		fprintf(stderr, "postern %s: \"%s\" is not an address local@domain\n", what, text);
		free(address);
		return NULL;
	}
	return address;
}
