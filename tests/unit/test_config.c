/*
 * test_config.c - postern.conf parser: defaults, relative paths, units,
 * and "FILE:LINE: message" errors for every kind of mistake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "lib/config.h"

TESTUTIL_PRIVATE_DIR("config")

/* Write text to dir/postern.conf, load it; returns rc, errors in errbuf. */
static int load(const char *text, struct config *cfg, char *errbuf, size_t errlen)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	FILE *errors = fmemopen(errbuf, errlen, "w");
	int rc = config_load(path, cfg, errors);
	fclose(errors);
	return rc;
}

static void test_defaults_and_relative_paths(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\nspool_dir = var/spool\n"
			      "local_domains = Example.TEST, other.test\n", &cfg, err, sizeof(err)), 0);
	char expect[300];
	snprintf(expect, sizeof(expect), "%s/var/spool", dir);
	assert_string_equal(cfg.spool_dir, expect);
	assert_int_equal(cfg.local_domains.count, 2);
	assert_string_equal(cfg.local_domains.items[0], "example.test");
	assert_int_equal(cfg.message_size_limit, 10240000);
	assert_int_equal(cfg.command_timeout, 300);
	assert_int_equal(cfg.listen_count, 1);
	config_free(&cfg);
}

/* maximal_queue_lifetime, its former name queue_lifetime, and
 * delay_warning_time (0 = off). */
static void test_queue_lifetime_names(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.queue_lifetime, 5 * 86400);
	assert_int_equal(cfg.delay_warning_time, 4 * 3600);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\nmaximal_queue_lifetime = 3d\n"
			      "delay_warning_time = 0\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.queue_lifetime, 3 * 86400);
	assert_int_equal(cfg.delay_warning_time, 0);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\nqueue_lifetime = 1d\n", &cfg, err,
			      sizeof(err)), 0);
	assert_int_equal(cfg.queue_lifetime, 86400);
	config_free(&cfg);
	/* both names at once: the same key twice */
	assert_int_equal(load("hostname = mx.example.test\nqueue_lifetime = 1d\n"
			      "maximal_queue_lifetime = 2d\n", &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":3:"));
}

static void test_units_and_lists(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\nmessage_size_limit = 20M\n"
			      "queue_lifetime = 2d\ncommand_timeout = 90s\n"
			      "listen = 127.0.0.1:2525, [::1]:2526\n"
			      "mynetworks = 10.0.0.0/8\n   192.168.0.0/16 # continued\n",
			      &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.message_size_limit, 20 * 1024 * 1024);
	assert_int_equal(cfg.queue_lifetime, 2 * 86400);
	assert_int_equal(cfg.command_timeout, 90);
	assert_int_equal(cfg.listen_count, 2);
	assert_string_equal(cfg.listen[1].host, "::1");
	assert_string_equal(cfg.listen[1].port, "2526");
	assert_int_equal(cfg.mynetworks.count, 2);
	config_free(&cfg);
}

static void test_pop3_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.pop3_listen_count, 0); /* no POP3 unless asked */
	assert_int_equal(cfg.pop3s_listen_count, 0);
	assert_int_equal(cfg.pop3_cleartext_networks.count, 0);
	assert_int_equal(cfg.pop3_clients.count, 2); /* everyone */
	assert_int_equal(cfg.pop3_idle_timeout, 600);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\ntls_cert = c.pem\ntls_key = k.pem\n"
			      "pop3_listen = 127.0.0.1:110, [::1]:110\npop3s_listen = 0.0.0.0:995\n"
			      "pop3_clients = 192.168.0.0/16\npop3_idle_timeout = 15m\n",
			      &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.pop3_listen_count, 2);
	assert_string_equal(cfg.pop3_listen[1].host, "::1");
	assert_string_equal(cfg.pop3s_listen[0].port, "995");
	assert_int_equal(cfg.pop3_clients.count, 1);
	assert_int_equal(cfg.pop3_idle_timeout, 900);
	config_free(&cfg);
}

static void expect_error(const char *text, const char *needle)
{
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load(text, &cfg, err, sizeof(err)), -1);
	if (strstr(err, needle) == NULL)
		fail_msg("expected \"%s\" in errors, got: %s", needle, err);
}

static void test_errors_name_file_and_line(void **state)
{
	(void)state;
	expect_error("hostname = mx.example.test\nbogus_key = 1\n", "postern.conf:2: unknown key \"bogus_key\"");
	expect_error("\n\nmessage_size_limit = lots\n", "postern.conf:3: message_size_limit: expected a size");
	expect_error("listen = 127.0.0.1\n", "postern.conf:1: listen: expected address:port");
	expect_error("listen = ::1:25\n", "IPv6 addresses must be written as [address]:port");
	expect_error("listen = localhost:25\n", "numeric");
	expect_error("listen = 127.0.0.1:70000\n", "port must be");
	expect_error("mynetworks = 10.1.2.3/8\n", "postern.conf:1: mynetworks: bad network");
	expect_error("workers = 1\nworkers = 2\n", "postern.conf:2: workers: set twice (first on line 1)");
	expect_error("no equals sign\n", "postern.conf:1: expected \"key = value\"");
	expect_error("  indented = 1\n", "continuation line without a key");
	expect_error("bare_newline = maybe\n", "\"maybe\" is not one of: reject normalize");
	expect_error("recipient_limit = 0\n", "value out of range");
	expect_error("local_domains = exa mple..test\n", "not a valid domain name");
	expect_error("tls_cert = cert.pem\n", "tls_cert and tls_key must be set together");
	expect_error("hostname = -bad-\n", "not a valid host name");
	expect_error("\npop3s_listen = 127.0.0.1:995\n",
		     "postern.conf:2: pop3s_listen: implicit TLS needs tls_cert and tls_key");
	expect_error("pop3_listen = 127.0.0.1\n", "postern.conf:1: pop3_listen: expected address:port");
	expect_error("pop3_clients = 10.1.2.3/8\n", "postern.conf:1: pop3_clients: bad network");
}

/* quota_grace: a percentage (the default 10%) or a size; 0 = none. */
static void test_quota_grace(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_true(cfg.quota_grace.percent);
	assert_int_equal(cfg.quota_grace.amount, 10);
	config_free(&cfg);
	assert_int_equal(load("quota_grace = 10M\n", &cfg, err, sizeof(err)), 0);
	assert_false(cfg.quota_grace.percent);
	assert_int_equal(cfg.quota_grace.amount, 10 << 20);
	config_free(&cfg);
	assert_int_equal(load("quota_grace = 0\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.quota_grace.amount, 0);
	config_free(&cfg);
	assert_int_equal(load("quota_grace = 1000%\n", &cfg, err, sizeof(err)), 0);
	assert_true(cfg.quota_grace.percent);
	assert_int_equal(cfg.quota_grace.amount, 1000);
	config_free(&cfg);
	expect_error("quota_grace = 1001%\n", "postern.conf:1: quota_grace: value out of range");
	expect_error("quota_grace = 99999999999999999999%\n", "value out of range");
	expect_error("quota_grace = %\n", "expected a percentage such as 10% or a size");
	expect_error("quota_grace = 1.5%\n", "expected a percentage");
	expect_error("quota_grace = -5%\n", "expected a percentage");
	expect_error("quota_grace = lots\n", "expected a percentage");
	expect_error("quota_grace = 2000000000G\n", "quota_grace: value out of range");
}

static void test_delivery_lanes_and_in_flow(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.delivery_lanes, 4);
	assert_int_equal(cfg.in_flow_delay, 1);
	assert_int_equal(cfg.in_flow_tokens, 1000);
	config_free(&cfg);
	assert_int_equal(load("delivery_lanes = 64\nin_flow_delay = 0\nin_flow_tokens = 1\n",
			      &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.delivery_lanes, 64);
	assert_int_equal(cfg.in_flow_delay, 0); /* off */
	assert_int_equal(cfg.in_flow_tokens, 1);
	config_free(&cfg);
	expect_error("delivery_lanes = 0\n", "postern.conf:1: delivery_lanes: value out of range");
	expect_error("\ndelivery_lanes = 65\n", "postern.conf:2: delivery_lanes: value out of range");
	expect_error("in_flow_delay = 2m\n", "postern.conf:1: in_flow_delay: value out of range");
	expect_error("in_flow_delay = soon\n", "in_flow_delay: expected a duration");
	expect_error("in_flow_tokens = 0\n", "in_flow_tokens: value out of range");
	expect_error("in_flow_tokens = 100001\n", "in_flow_tokens: value out of range");
	/* The bounds are said, in the key's own units. */
	expect_error("milter_command_timeout = 0\n",
		     "postern.conf:1: milter_command_timeout: value out of range: \"0\" (1s to 1h)");
	expect_error("milter_content_timeout = 2h\n",
		     "milter_content_timeout: value out of range: \"2h\" (1s to 1h)");
	expect_error("delivery_lanes = 65\n", "delivery_lanes: value out of range: \"65\" (1 to 64)");
}

static void expect_normalized(const char *in, const char *want)
{
	char *got = config_normalize_path(in);
	if (strcmp(got, want) != 0)
		fail_msg("normalize(\"%s\"): expected \"%s\", got \"%s\"", in, want, got);
	free(got);
}

/* The quarantine and notice keys: defaults, spellings, bounds. */
static void test_quarantine_and_notice_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.quarantine_retention, 30 * 86400);
	assert_string_equal(cfg.notify_admin, "");
	assert_int_equal(cfg.notify_sender, CONFIG_NO);
	assert_string_equal(cfg.notify_template, "");
	assert_int_equal(cfg.notify_rate_limit, 10);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\nquarantine_retention = 0\n"
			      "notify_admin = postmaster@example.test\nnotify_sender = yes\n"
			      "notify_template = notice.txt\nnotify_rate_limit = 100\n",
			      &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.quarantine_retention, 0); /* kept for ever */
	assert_string_equal(cfg.notify_admin, "postmaster@example.test");
	assert_int_equal(cfg.notify_sender, CONFIG_YES);
	assert_true(cfg.notify_template[0] == '/'); /* relative to the file's folder */
	assert_int_equal(cfg.notify_rate_limit, 100);
	config_free(&cfg);
	expect_error("quarantine_retention = 30s\n", "postern.conf:1: quarantine_retention: value "
		     "out of range");
	expect_error("notify_sender = maybe\n", "notify_sender: unknown value: \"maybe\" is not one "
		     "of: no yes");
	expect_error("notify_rate_limit = 0\n", "notify_rate_limit: value out of range");
	expect_error("notify_admin = postmaster\n", "notify_admin: \"postmaster\" is not an address");
	expect_error("notify_admin = <postmaster@example.test>\n", "is not an address");
	expect_error("notify_admin = a b@example.test\n", "is not an address");
	expect_error("notify_admin = postmaster@bad..domain\n", "is not an address");
}

static void test_spam_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_true(cfg.spam_tag_score == 5.0);
	assert_true(cfg.spam_quarantine_score == 0);
	assert_true(cfg.spam_reject_score == 15.0);
	assert_int_equal(cfg.spam_rules_dirs.count, 0);
	assert_string_equal(cfg.spam_rules_file, "");
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\nspam_tag_score = 4.25\n"
			      "spam_reject_score = 0\nspam_rules_dirs = /usr/share/sa, local sa\n"
			      "spam_subject_prefix = ****SPAM****\n", &cfg, err, sizeof(err)), 0);
	assert_true(cfg.spam_tag_score == 4.25);
	assert_true(cfg.spam_reject_score == 0);
	assert_int_equal(cfg.spam_rules_dirs.count, 3);
	assert_string_equal(cfg.spam_rules_dirs.items[0], "/usr/share/sa");
	char expect[300];
	snprintf(expect, sizeof(expect), "%s/local", dir); /* relative to the file's folder */
	assert_string_equal(cfg.spam_rules_dirs.items[1], expect);
	assert_string_equal(cfg.spam_subject_prefix, "****SPAM****");
	config_free(&cfg);
	expect_error("spam_tag_score = high\n", "spam_tag_score: expected a score");
	expect_error("spam_tag_score = -1\n", "expected a score");
	expect_error("spam_tag_score = 1e3\n", "expected a score");
	expect_error("spam_tag_score = 5.12345\n", "expected a score");
	expect_error("spam_reject_score = 1001\n", "spam_reject_score: value out of range");
}

static void test_normalize_path(void **state)
{
	(void)state;
	expect_normalized("/work/main/etc/../var/spool", "/work/main/var/spool");
	expect_normalized("/var//spool///postern/", "/var/spool/postern");
	expect_normalized("/var/./spool/.", "/var/spool");
	expect_normalized("/a/b/../../c/./d/..", "/c");
	expect_normalized("/..", "/");
	expect_normalized("/../../x", "/x");
	expect_normalized("/", "/");
	expect_normalized("//", "/");
	expect_normalized("/.../..x/x..", "/.../..x/x..");
	expect_normalized("a/..", ".");
	expect_normalized("", ".");
	expect_normalized("./", ".");
	expect_normalized("../x", "../x");
	expect_normalized("a/../../b", "../b");
	expect_normalized("../../a/b/..", "../../a");
}

/* Every path key is absolute and normalised, whatever its spelling. */
static void test_paths_are_normalized(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n"
			      "spool_dir = ../x/..//spool/./\n"
			      "mail_root = ./mail/\n"
			      "users_file = /etc//postern/../postern/users\n"
			      "aliases_file = \n",
			      &cfg, err, sizeof(err)), 0);
	char *parent = config_normalize_path(dir);
	char *slash = strrchr(parent, '/');
	assert_non_null(slash);
	*slash = '\0';
	char expect[300];
	snprintf(expect, sizeof(expect), "%s/spool", parent);
	assert_string_equal(cfg.spool_dir, expect);
	snprintf(expect, sizeof(expect), "%s/mail", dir);
	assert_string_equal(cfg.mail_root, expect);
	assert_string_equal(cfg.users_file, "/etc/postern/users");
	assert_string_equal(cfg.aliases_file, "");
	free(parent);
	config_free(&cfg);
}

/* check-config's list of changes for text (malloc'ed). */
static char *nondefault_of(const char *text)
{
	struct config cfg;
	char err[4096] = "";
	if (load(text, &cfg, err, sizeof(err)) != 0)
		fail_msg("config did not load: %s", err);
	char *listing = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&listing, &len);
	assert_non_null(out);
	config_print_nondefault(&cfg, out);
	fclose(out);
	config_free(&cfg);
	return listing;
}

/* Defaults written another way, or left unset, are not changes. */
static void test_defaults_written_differently_are_not_changes(void **state)
{
	(void)state;
	char *none = nondefault_of("# nothing set\n");
	assert_string_equal(none, "");
	free(none);

	char host[256] = "";
	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	for (char *p = host; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	char text[2048];
	snprintf(text, sizeof(text),
		 "hostname = %s\n"
		 "listen = 127.0.0.1:025\n"
		 "user = postern\n"
		 "workers = 00\n"
		 "spool_dir = /var//spool/postern/\n"
		 "mail_root = /var/lib/postern/../postern/./mail\n"
		 "users_file =\n"
		 "mynetworks = ::1/128 127.0.0.0/8 127.0.0.0/8\n"
		 "relay_domains =\n"
		 "message_size_limit = 10240000\n"
		 "header_size_limit = 100k\n"
		 "command_timeout = 300\n"
		 "data_timeout = 180s\n"
		 "shutdown_timeout = 30\n"
		 "queue_retry_max = 60m\n"
		 "queue_lifetime = 120h\n"
		 "bare_newline = reject\n"
		 "log_level = info\n", host);
	char *listing = nondefault_of(text);
	assert_string_equal(listing, "");
	free(listing);

	/* A relative path that lands on a default is not a change either. */
	char depth[1024] = "";
	for (const char *p = dir; *p != '\0'; p++)
		if (*p == '/')
			strcat(depth, "../");
	snprintf(text, sizeof(text), "spool_dir = %svar/spool/postern\n", depth);
	listing = nondefault_of(text);
	assert_string_equal(listing, "");
	free(listing);
}

static void test_changes_are_listed(void **state)
{
	(void)state;
	char *listing = nondefault_of("hostname = mx.example.test\n"
				      "listen = 127.0.0.1:2525\n"
				      "spool_dir = /srv/spool/\n"
				      "message_size_limit = 10M\n"
				      "command_timeout = 2m\n"
				      "mynetworks = 127.0.0.0/8\n"
				      "local_domains = Example.TEST\n");
	assert_string_equal(listing,
			    "hostname = mx.example.test\n"
			    "listen = 127.0.0.1:2525\n"
			    "spool_dir = /srv/spool\n"
			    "local_domains = example.test\n"
			    "mynetworks = 127.0.0.0/8\n"
			    "message_size_limit = 10485760\n"
			    "command_timeout = 120\n");
	free(listing);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct config cfg;
	char err[1024] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	assert_int_equal(config_load("/nonexistent/postern.conf", &cfg, errors), -1);
	fclose(errors);
	assert_non_null(strstr(err, "/nonexistent/postern.conf: cannot read"));
}

/* The antivirus keys: defaults, a relative signature folder, the words
 * of virus_action, and the mistakes refused at load. */
static void test_antivirus_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.clamav_db_dir, "");
	assert_string_equal(cfg.clamd_socket, "");
	assert_int_equal(cfg.clamav_max_scan_size, 100 * 1024 * 1024);
	assert_int_equal(cfg.clamav_max_file_size, 25 * 1024 * 1024);
	assert_int_equal(cfg.clamav_max_recursion, 16);
	assert_int_equal(cfg.clamav_max_files, 10000);
	assert_int_equal(cfg.clamav_max_scan_time, 25);
	assert_int_equal(cfg.clamav_alert_exceeds_max, 1);
	assert_int_equal(cfg.virus_action, VIRUS_ACTION_REJECT);
	config_free(&cfg);

	assert_int_equal(load("hostname = mx.example.test\nclamav_db_dir = clamav-test\n"
			      "virus_action = quarantine\nclamav_alert_exceeds_max = no\n",
			      &cfg, err, sizeof(err)), 0);
	char expect[300];
	snprintf(expect, sizeof(expect), "%s/clamav-test", dir);
	assert_string_equal(cfg.clamav_db_dir, expect);
	assert_int_equal(cfg.virus_action, VIRUS_ACTION_QUARANTINE);
	assert_int_equal(cfg.clamav_alert_exceeds_max, 0);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\nclamd_socket = [::1]:3310\n"
			      "virus_action = discard\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.virus_action, VIRUS_ACTION_DISCARD);
	config_free(&cfg);

	expect_error("hostname = mx.example.test\nvirus_action = bounce\n",
		     "postern.conf:2: virus_action: unknown value: \"bounce\" is not one of: "
		     "reject quarantine discard");
	expect_error("hostname = mx.example.test\nclamav_db_dir = /a\nclamd_socket = /b\n",
		     "clamav_db_dir and clamd_socket are both set");
	expect_error("hostname = mx.example.test\nclamd_socket = clamd.sock\n",
		     "clamd_socket: expected an absolute socket path or host:port");
	expect_error("hostname = mx.example.test\nclamav_max_recursion = 0\n",
		     "postern.conf:2: clamav_max_recursion");
}

/* The text the spam tests read: 1M by default, at most 256M. */
static void test_limits_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.greet_pause, 0);
	assert_int_equal(cfg.early_talker_action, EARLY_TALKER_REJECT);
	assert_int_equal(cfg.reject_unauth_pipelining, CONFIG_YES);
	assert_int_equal(cfg.soft_error_limit, 5);
	assert_int_equal(cfg.error_delay, 1);
	assert_int_equal(cfg.client_connection_limit, 50);
	assert_int_equal(cfg.client_ipv6_prefix, 64);
	assert_int_equal(cfg.rate_window, 60);
	assert_int_equal(cfg.sender_message_rate.block, 0);
	assert_int_equal(cfg.limits_ignore_networks.count, 2);
	assert_int_equal(cfg.greylist, CONFIG_NO);
	assert_int_equal(cfg.greylist_delay, 300);
	assert_int_equal(cfg.greylist_expiry, 35 * 86400);
	assert_int_equal(cfg.greylist_ipv4_prefix, 24);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\ngreet_pause = 5s\n"
			      "early_talker_action = log\nsender_message_rate_warn = 10\n"
			      "sender_message_rate_block = 20\nsite_recipient_rate_panic = 900\n"
			      "limits_ignore_senders = VIP@Example.TEST, @lists.test, trusted.test\n"
			      "greylist = yes\ngreylist_ignore_recipients = postmaster@example.test\n",
			      &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.greet_pause, 5);
	assert_int_equal(cfg.early_talker_action, EARLY_TALKER_LOG);
	assert_int_equal(cfg.sender_message_rate.warn, 10);
	assert_int_equal(cfg.sender_message_rate.block, 20);
	assert_int_equal(cfg.site_recipient_rate_panic, 900);
	assert_int_equal(cfg.limits_ignore_senders.count, 3);
	assert_string_equal(cfg.limits_ignore_senders.items[0], "vip@example.test");
	assert_int_equal(cfg.greylist, CONFIG_YES);
	config_free(&cfg);
	/* errors name the line: a bad entry, out of range, levels in the
	 * wrong order (the later of the two lines) */
	assert_int_equal(load("hostname = mx.example.test\nlimits_ignore_senders = a@\n",
			      &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "postern.conf:2: limits_ignore_senders: bad entry: \"a@\""));
	assert_int_equal(load("hostname = mx.example.test\nclient_ipv4_prefix = 33\n",
			      &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "postern.conf:2: client_ipv4_prefix: value out of range"));
	assert_int_equal(load("hostname = mx.example.test\nclient_message_rate_block = 5\n"
			      "client_message_rate_warn = 5\ngreylist_delay = 1h\n"
			      "greylist_retry_window = 30m\n", &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "postern.conf:3: client_message_rate_warn (5) must be below "
				    "client_message_rate_block (5)"));
	assert_non_null(strstr(err, "postern.conf:5: greylist_retry_window (1800s) must be longer "
				    "than greylist_delay (3600s)"));
}

static void test_spam_max_text(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.spam_max_text, 1024 * 1024);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\nspam_max_text = 64k\n", &cfg, err,
			      sizeof(err)), 0);
	assert_int_equal(cfg.spam_max_text, 64 * 1024);
	config_free(&cfg);
	expect_error("hostname = mx.example.test\nspam_max_text = 1G\n",
		     "postern.conf:2: spam_max_text");
}

static void test_capture_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.capture, CONFIG_NO);
	assert_string_equal(cfg.capture_trigger_file, "");
	assert_string_equal(cfg.capture_group, "root");
	assert_false(config_capture_possible(&cfg));
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\ncapture_trigger_file = /run/on\n"
			      "capture_dir = /var/capture\ncapture_senders = A@B.test, c.test\n"
			      "capture_clients = 192.0.2.0/24\n", &cfg, err, sizeof(err)), 0);
	assert_true(config_capture_possible(&cfg));
	assert_int_equal(cfg.capture_senders.count, 2);
	assert_string_equal(cfg.capture_senders.items[0], "a@b.test");
	assert_int_equal(cfg.capture_clients.count, 1);
	config_free(&cfg);
	/* On (or able to come on) without a folder: named at the line that
	 * turned it on. */
	expect_error("hostname = mx.example.test\ncapture = yes\n",
		     "postern.conf:2: capture: capture_dir is not set");
	expect_error("hostname = mx.example.test\n\ncapture_trigger_file = on\n",
		     "postern.conf:3: capture_trigger_file: capture_dir is not set");
	expect_error("hostname = mx.example.test\ncapture_clients = 300.1.1.1\n",
		     "postern.conf:2: capture_clients");
}

static void test_dns_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.dns_servers.count, 0); /* resolv.conf */
	assert_int_equal(cfg.dns_timeout, 5);
	assert_int_equal(cfg.dns_tries, 2);
	assert_int_equal(cfg.dns_cache_size, 10000);
	assert_int_equal(cfg.dns_negative_ttl, 300);
	assert_int_equal(cfg.dnsbl_sites.count, 0);
	assert_int_equal(cfg.dnsbl_threshold, 1);
	assert_int_equal(cfg.dnsbl_action, DNSBL_ACTION_REJECT);
	assert_int_equal(cfg.dnsbl_timeout, 5);
	assert_int_equal(cfg.dnsbl_fail_open, CONFIG_YES);
	config_free(&cfg);
	assert_int_equal(load("hostname = mx.example.test\n"
			      "dns_servers = 127.0.0.1, 127.0.0.1:5353 ::1 [::1] [2001:db8::53]:53\n"
			      "dnsbl_sites = bl.test=127.0.0.[2..11]*3,\n  wl.test*-2\n"
			      "dnsbl_action = tempfail\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.dns_servers.count, 5);
	assert_string_equal(cfg.dns_servers.items[4], "[2001:db8::53]:53");
	assert_int_equal(cfg.dnsbl_sites.count, 2);
	assert_string_equal(cfg.dnsbl_sites.items[1], "wl.test*-2");
	assert_int_equal(cfg.dnsbl_action, DNSBL_ACTION_TEMPFAIL);
	assert_int_equal(config_key_line(&cfg, "dnsbl_sites"), 3);
	config_free(&cfg);
	static const char *const bad[] = {
		"dns.example.test", "127.0.0.1:0", "127.0.0.1:65536", "::1]:53", "[127.0.0.1]:53",
		"[::1", "[::1]x", "127.0.0.1:", "300.0.0.1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[200];
		snprintf(text, sizeof(text), "hostname = mx.example.test\ndns_servers = %s\n", bad[i]);
		expect_error(text, "postern.conf:2: dns_servers: bad server");
	}
	expect_error("hostname = mx.example.test\ndnsbl_action = drop\n",
		     "postern.conf:2: dnsbl_action");
}

/* The listeners of issue 11 and the AUTH keys. */
static void test_auth_keys(void **state)
{
	(void)state;
	struct config cfg;
	char err[4096] = "";
	assert_int_equal(load("hostname = mx.example.test\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.submission_listen_count, 0);
	assert_int_equal(cfg.smtps_listen_count, 0);
	assert_int_equal(cfg.smtp_auth, CONFIG_NO);
	assert_int_equal(cfg.auth_cleartext_networks.count, 0);
	assert_int_equal(cfg.auth_sender_check, CONFIG_YES);
	assert_int_equal(cfg.auth_failure_delay, 1);
	assert_int_equal(cfg.auth_client_ban_failures, 10);
	assert_int_equal(cfg.auth_ban_time, 900);
	config_free(&cfg);
	char text[1024];
	snprintf(text, sizeof(text), "hostname = mx.example.test\ntls_cert = %s/c\ntls_key = %s/k\n"
		 "submission_listen = 127.0.0.1:587, [::1]:587\nsmtps_listen = 0.0.0.0:465\n"
		 "auth_cleartext_networks = 127.0.0.0/8\nauth_ban_time = 1h\n"
		 "auth_user_ban_failures = 0\n", dir, dir);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.submission_listen_count, 2);
	assert_string_equal(cfg.submission_listen[1].host, "::1");
	assert_string_equal(cfg.submission_listen[1].port, "587");
	assert_int_equal(cfg.smtps_listen_count, 1);
	assert_int_equal(cfg.auth_ban_time, 3600);
	assert_int_equal(cfg.auth_user_ban_failures, 0);
	assert_int_equal(cfg.listen_count, 1); /* listen keeps its default */
	config_free(&cfg);
	expect_error("smtps_listen = 127.0.0.1:465\n", "smtps_listen needs tls_cert");
	expect_error("submission_listen = 127.0.0.1:587\n", "submission_listen needs tls_cert");
	expect_error("smtps_listen = localhost:465\n", "smtps_listen: ");
	expect_error("auth_failure_delay_max = 5m\n", "auth_failure_delay_max");
	expect_error("listen =\n", "listen: a value is required");
	/* in clear text for a network, submission needs no certificate */
	assert_int_equal(load("submission_listen = 127.0.0.1:587\n"
			      "auth_cleartext_networks = 127.0.0.0/8\n", &cfg, err, sizeof(err)), 0);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_relative_paths),
		cmocka_unit_test(test_spam_max_text),
		cmocka_unit_test(test_capture_keys),
		cmocka_unit_test(test_limits_keys),
		cmocka_unit_test(test_units_and_lists),
		cmocka_unit_test(test_quota_grace),
		cmocka_unit_test(test_queue_lifetime_names),
		cmocka_unit_test(test_pop3_keys),
		cmocka_unit_test(test_errors_name_file_and_line),
		cmocka_unit_test(test_delivery_lanes_and_in_flow),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_quarantine_and_notice_keys),
		cmocka_unit_test(test_spam_keys),
		cmocka_unit_test(test_normalize_path),
		cmocka_unit_test(test_paths_are_normalized),
		cmocka_unit_test(test_defaults_written_differently_are_not_changes),
		cmocka_unit_test(test_changes_are_listed),
		cmocka_unit_test(test_antivirus_keys),
		cmocka_unit_test(test_dns_keys),
		cmocka_unit_test(test_auth_keys),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
