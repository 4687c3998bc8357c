/*
 * postern.c - command dispatch: one binary, many roles.
 *
 *   postern serve        [-c FILE]   run the gateway in the foreground
 *   postern milter       [-c FILE]   run postern's content filter for
 *                                    Postfix or Sendmail on milter_listen
 *   postern check-config [-c FILE]   validate the configuration and tables
 *   postern queue list|show ID|flush [ID...]|requeue [ID...]|hold ID...|release ID...|
 *                 delete ID...|--all [--json] [-c FILE]
 *   postern quarantine|hold list|show ID|release ID...|delete ID... [--json] [-c FILE]
 *   postern scan [-c FILE] [--json] FILE...|-   run messages through the
 *                                    content pipeline (exit 0 clean,
 *                                    1 blocked, 2 error)
 *   postern learn [-c FILE] --spam|--ham|--forget|--classify FILE|DIR|-...
 *   postern learn [-c FILE] --stats|--expire     Bayes (learn_cli.h)
 *   postern user add|passwd|quota|del|list|show ... [-c FILE]
 *   postern domain add|set|del|list ... [-c FILE]   accounts and local
 *                                    domains (src/account/account_cli.h)
 *   postern report [--json|--html] [--top N] [LOGFILE...|-]   log summary
 *                                    (src/report/report.h)
 *   postern version | --version | -V
 *   postern help | --help | -h
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "account/account_cli.h"
#include "lib/config.h"
#include "lib/log.h"
#include "mail/domains.h"
#include "mail/recipients.h"
#include "milter/milter_server.h"
#include "dns/dns.h"
#include "milter/milter_client.h"
#include "policy/dnsbl.h"
#include "policy/restrictions.h"
#include "queue/notice.h"
#include "queue/quarantine_cli.h"
#include "queue/queue_cli.h"
#include "relay/relay_route.h"
#include "scan/rules.h"
#include "lib/xalloc.h"
#include "report/report.h"
#include "scan/learn_cli.h"
#include "scan/scan_cli.h"
#include "server/capture_dir.h"
#include "server/preflight.h"
#include "server/privsep.h"
#include "server/server.h"
#include "version.h"
#include "smtp/tls.h"

/* The Makefile passes the installed configuration path:
 * $(SYSCONFDIR)/postern/postern.conf, /etc/postern/postern.conf when
 * PREFIX is /usr and $(PREFIX)/etc/postern/postern.conf otherwise. */
#ifndef POSTERN_CONFIG_FILE
#error "POSTERN_CONFIG_FILE is not defined: build with make"
#endif
#define DEFAULT_CONFIG POSTERN_CONFIG_FILE

static void usage(FILE *out)
{
	fprintf(out,
		"usage: postern COMMAND [-c FILE] [ARGS]\n"
		"commands:\n"
		"  serve           run the gateway in the foreground (logs to stderr)\n"
		"  milter          run the content filter for Postfix or Sendmail on\n"
		"                  milter_listen, in the foreground\n"
		"  check-config    validate the configuration, users, aliases and content rules\n"
		"  queue list      list queued, deferred and held messages [--json]\n"
		"  queue show ID   print one queued message's envelope and headers [--json]\n"
		"  queue flush [ID...]    retry deferred messages now\n"
		"  queue requeue [ID...]  deferred back into the queue, retry schedule restarted\n"
		"  queue hold ID... | release ID... | delete ID...|--all\n"
		"  quarantine list|show ID|release ID...|delete ID... [--json]\n"
		"                  the messages a QUARANTINE verdict kept out of delivery\n"
		"  hold list|show ID|release ID...|delete ID... [--json]\n"
		"                  the same for those a HOLD verdict kept\n"
		"  scan [--json] FILE...|-\n"
		"                  run messages through the content pipeline, one verdict\n"
		"                  line each (exit 0 clean, 1 blocked, 2 error)\n"
		"  learn --spam|--ham|--forget [--progress] FILE|DIR|-...\n"
		"                  teach Bayes messages (files, mbox files, Maildirs)\n"
		"  learn --classify FILE|DIR|-...\n"
		"                  print the Bayes spam probability of each message\n"
		"  learn --stats|--expire\n"
		"                  show the Bayes store; expire its old rare tokens now\n"
		"  user add ADDRESS [--quota SIZE] [--stdin]\n"
		"                  add a user to users_file (password asked twice, or one\n"
		"                  line on standard input; never on the command line)\n"
		"  user passwd ADDRESS [--stdin] | quota ADDRESS SIZE|none | del ADDRESS\n"
		"  user list [DOMAIN] | show ADDRESS [--json]\n"
		"  domain add|set DOMAIN [--quota SIZE] [--catch-all ADDRESS|none]\n"
		"  domain del DOMAIN | list [--json]\n"
		"                  the local domains of domains_file (and local_domains)\n"
		"  report [--json|--html] [--top N] [LOGFILE...|-]\n"
		"                  summarise postern's log (plain or .gz files, or stdin)\n"
		"  version         print the version (also --version, -V)\n"
		"  help            print this text (also --help, -h)\n"
		"options:\n"
		"  -c FILE         configuration file (default %s)\n",
		DEFAULT_CONFIG);
}

/* Is word one of the three spellings of a command? */
static bool is_one_of(const char *word, const char *a, const char *b, const char *c)
{
	return strcmp(word, a) == 0 || strcmp(word, b) == 0 || strcmp(word, c) == 0;
}

/* Take "-c FILE" out of argv; returns the remaining argument count. */
static int take_config_option(int argc, char **argv, const char **config_r)
{
	int out = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			*config_r = argv[++i];
		} else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2] != '\0') {
			*config_r = argv[i] + 2;
		} else {
			argv[out++] = argv[i];
		}
	}
	return out;
}

/* Every stage runs, so that one run shows every problem: the settings,
 * the accounts, the users and aliases files, the TLS key, the descriptor
 * limit, the folders (checked as each role's account, created never) and
 * the content pipeline (built as user). */
static int check_config(const char *path)
{
	struct config cfg;
	struct privsep ps;
	struct recipients_owner owner;
	int problems = config_load_partial(path, &cfg, stderr);
	problems += config_check_server_files(&cfg, stderr);
	problems += dnsbl_config_check(&cfg, stderr);
	problems += milter_config_check(&cfg, stderr);
	if (cfg.milter_listen[0] != '\0') {
		struct milter_listen ml;
		char err[160];
		if (milter_listen_parse(cfg.milter_listen, &ml, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s:%u: milter_listen: %s\n", path,
				config_key_line(&cfg, "milter_listen"), err);
			problems++;
		}
	}
	problems += privsep_resolve(&cfg, &ps, stderr);
	struct domain_table *domains = domains_load_config(&cfg, stderr);
	if (domains == NULL)
		problems++;
	struct recipient_tables *t = recipients_load(cfg.users_file, cfg.aliases_file,
						     privsep_mailbox_owner(&ps, &owner), stderr);
	if (t == NULL) {
		problems++;
		domains_free(&domains);
	} else {
		recipients_set_domains(t, domains);
		domains_warn_catch_all(t, cfg.domains_file, stderr);
	}
	struct notice_template *notice = notice_template_load(cfg.notify_template, stderr);
	if (notice == NULL)
		problems++;
	notice_template_free(&notice);
	struct relay_router *router = relay_router_load(&cfg, stderr);
	if (router == NULL)
		problems++;
	relay_router_free(&router);
	struct restrictions *restrictions = restrictions_load(&cfg, stderr);
	if (restrictions == NULL)
		problems++;
	else if (restrictions_need_dns(restrictions) && !dnsbl_configured(&cfg))
		problems += dns_config_check(&cfg, stderr);
	/* Unreadable files were reported with the settings already. */
	if (cfg.tls_cert[0] != '\0' && cfg.tls_key[0] != '\0' &&
	    access(cfg.tls_cert, R_OK) == 0 && access(cfg.tls_key, R_OK) == 0) {
		char *err = NULL;
		SSL_CTX *ctx = tls_server_context(cfg.tls_cert, cfg.tls_key, &err);
		if (ctx == NULL) {
			fprintf(stderr, "%s: %s\n", path, err);
			free(err);
			problems++;
		} else {
			SSL_CTX_free(ctx);
		}
	}
	int rule_problems = scan_rules_check(&cfg, stderr);
	problems += rule_problems;
	problems += preflight_fd_limit(&cfg, false, stderr) < 0;
	problems += preflight_check_folders(&cfg, &ps, PREFLIGHT_SERVE, false, stderr);
	problems += preflight_check_log_file(&cfg, stderr);
	problems += capture_dir_prepare(&cfg, &ps, false, stderr);
	/* The pipeline would stop at the first of the rules' problems, all of
	 * them listed above: build it (as user) once the rules are right. */
	if (rule_problems == 0)
		problems += preflight_check_scan(&cfg, &ps, stderr);
	else
		fprintf(stderr, "%s: the content pipeline is checked once the rules file loads\n",
			path);
	if (problems == 0) {
		config_print_nondefault(&cfg, stdout);
		size_t maps = restrictions_map_count(restrictions);
		printf("%s: ok (%zu users, %zu aliases", path, recipients_user_count(t),
		       recipients_alias_count(t));
		if (maps > 0)
			printf(", %zu map%s", maps, maps == 1 ? "" : "s");
		printf(")\n");
	}
	restrictions_free(&restrictions);
	recipients_free(&t);
	privsep_free(&ps);
	config_free(&cfg);
	return problems == 0 ? 0 : 1;
}

/* "user" or "domain": users_file and domains_file (src/account/). */
static int account_command(const char *what, const char *path, int argc, char **argv)
{
	struct config cfg;
	if (config_load(path, &cfg, stderr) < 0)
		return ACCOUNT_CLI_ERROR;
	int rc = strcmp(what, "user") == 0 ? account_user_main(&cfg, argc, argv)
					   : account_domain_main(&cfg, argc, argv);
	config_free(&cfg);
	return rc;
}

static int queue_command(const char *path, int argc, char **argv)
{
	struct config cfg;
	if (config_load(path, &cfg, stderr) < 0)
		return 1;
	int rc = queue_cli_main(argc, argv, &cfg);
	config_free(&cfg);
	return rc;
}

/* "quarantine" or "hold": one tool, the folder named by the command. */
static int quarantine_command(const char *folder, const char *path, int argc, char **argv)
{
	struct config cfg;
	if (config_load(path, &cfg, stderr) < 0)
		return 1;
	int rc = quarantine_cli_main(folder, argc, argv, &cfg);
	config_free(&cfg);
	return rc;
}

/* Root: become `user` before anything is parsed. A `user` that does not
 * exist (the demo configuration on a machine where its account was never
 * made) gives way to nobody, with a note, rather than to root. own_dir,
 * when not NULL, is a folder made for that account first if missing (the
 * Bayes store's, which `postern learn` writes as `user`). */
static int drop_root(const struct config *cfg, const char *command, const char *doing,
		     const char *own_dir)
{
	struct passwd *pw = cfg->user[0] != '\0' ? getpwnam(cfg->user) : NULL;
	if (pw == NULL || pw->pw_uid == 0) {
		fprintf(stderr, "postern %s: %s: user: account \"%s\" %s: %s as nobody\n",
			command, cfg->path, cfg->user, pw == NULL ? "does not exist" : "is root",
			doing);
		pw = getpwnam("nobody");
		if (pw == NULL || pw->pw_uid == 0) {
			fprintf(stderr, "postern %s: no account to %s as (not even nobody): "
				"set user\n", command, command);
			return -1;
		}
	}
	struct privsep ps = { .as_root = true };
	ps.user.name = xstrdup(pw->pw_name);
	ps.user.uid = pw->pw_uid;
	ps.user.gid = pw->pw_gid;
	ps.user.known = true;
	int rc = 0;
	if (own_dir != NULL && own_dir[0] != '\0' && mkdir(own_dir, 0700) == 0) {
		int fd = open(own_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fchown(fd, ps.user.uid, ps.user.gid) != 0) {
			fprintf(stderr, "postern %s: cannot give %s to %s: %s\n", command, own_dir,
				ps.user.name, strerror(errno));
			rc = -1;
		}
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0)
		rc = privsep_become(&ps, &ps.user, 0, 0);
	if (rc < 0)
		fprintf(stderr, "postern %s: cannot become user %s to %s\n", command, ps.user.name,
			command);
	privsep_free(&ps);
	return rc;
}

static int scan_drop_root(const struct config *cfg)
{
	return drop_root(cfg, "scan", "scanning", NULL);
}

static int learn_become_user(const struct config *cfg, const char *own_dir)
{
	return drop_root(cfg, "learn", "learning", own_dir);
}

static int learn_command(const char *path, int argc, char **argv)
{
	struct config cfg;
	if (config_load(path, &cfg, stderr) < 0)
		return LEARN_CLI_ERROR;
	int rc = learn_cli_main(&cfg, argc, argv, learn_become_user);
	config_free(&cfg);
	return rc;
}

/* Open the inputs (as the invoking user), become `user` when root, so
 * that nothing is parsed as root, then scan them. */
static int scan_command(const char *path, int argc, char **argv)
{
	struct config cfg;
	bool json = false, stdin_taken = false;
	int rc = SCAN_CLI_ERROR;
	if (config_load(path, &cfg, stderr) < 0)
		return SCAN_CLI_ERROR;
	struct scan_cli_input *in = xcalloc((size_t)argc + 1, sizeof(*in));
	size_t n = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "postern scan: unknown option %s\n", argv[i]);
			goto out;
		}
		in[n].name = argv[i];
		if (strcmp(argv[i], "-") == 0) {
			if (stdin_taken) {
				fprintf(stderr, "postern scan: - (standard input) given twice\n");
				goto out;
			}
			stdin_taken = true;
			in[n].fd = STDIN_FILENO;
		} else {
			in[n].fd = open(argv[i], O_RDONLY | O_CLOEXEC | O_NOCTTY);
			in[n].errno_open = errno;
		}
		n++;
	}
	if (n == 0) {
		fprintf(stderr, "postern scan: name at least one message FILE, or - for standard "
			"input\n");
		goto out;
	}
	if (geteuid() == 0 && scan_drop_root(&cfg) < 0)
		goto out;
	rc = scan_cli_run(&cfg, in, n, json);
	n = 0;
out:
	for (size_t i = 0; i < n; i++)
		if (in[i].fd > STDIN_FILENO)
			close(in[i].fd);
	free(in);
	config_free(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	const char *config = DEFAULT_CONFIG;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *command = argv[1];
	/* report reads log files, never the configuration: no -c. */
	if (strcmp(command, "report") == 0)
		return report_cli_main(argc - 2, argv + 2);
	int rest = take_config_option(argc - 2, argv + 2, &config);
	restrictions_dns_provide();
	if (strcmp(command, "serve") == 0 && rest == 0)
		return master_main(config);
	if (strcmp(command, "milter") == 0 && rest == 0)
		return master_milter_main(config);
	if (strcmp(command, "check-config") == 0 && rest == 0)
		return check_config(config);
	if (strcmp(command, "queue") == 0)
		return queue_command(config, rest, argv + 2);
	if (strcmp(command, "quarantine") == 0 || strcmp(command, "hold") == 0)
		return quarantine_command(command, config, rest, argv + 2);
	if (strcmp(command, "scan") == 0)
		return scan_command(config, rest, argv + 2);
	if (strcmp(command, "user") == 0 || strcmp(command, "domain") == 0)
		return account_command(command, config, rest, argv + 2);
	if (strcmp(command, "learn") == 0)
		return learn_command(config, rest, argv + 2);
	if (is_one_of(command, "version", "--version", "-V") && rest == 0) {
		printf("postern %s\n", POSTERN_VERSION);
		return 0;
	}
	if (is_one_of(command, "help", "--help", "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "postern: unknown command or arguments: %s\n", command);
	usage(stderr);
	return 2;
}
