/*
 * config.c - the postern.conf parser: a typed table of keys (name, type,
 * default, bounds), parsed once at start-up and on SIGHUP by the
 * supervisor. Input is a file written by the administrator; every line is
 * bounded and every problem is reported as "FILE:LINE: message".
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "diag.h"
#include "safeio.h"
#include "xalloc.h"

#define CONFIG_MAX_BYTES (1024 * 1024)
#define CONFIG_LINE_MAX 8192

enum key_type {
	K_STRING,   /* free text, no bounds */
	K_HOSTNAME, /* a DNS name */
	K_PATH,     /* relative to the config file's folder; may be empty if allowed */
	K_SIZE,     /* bytes with optional k/M/G */
	K_DURATION, /* seconds with optional s/m/h/d/w */
	K_UINT,
	K_DOMAINS,  /* list of domain names */
	K_CIDRS,    /* network list */
	K_LISTEN,   /* list of address:port */
	K_ENUM,     /* one of a list of words, stored as its index (an enum) */
	K_PATHS,    /* list of paths, each as K_PATH (a strlist_t) */
	K_SCORE,    /* a decimal number such as 5 or 5.0 or 12.25, within min..max (a double) */
	K_ADDRESSES, /* list of "user@domain", "@domain" or "domain", lower-cased (a strlist_t) */
	K_WORDS,    /* list of words with its line (struct config_words), read by another module */
	K_ITEMS,    /* list of items, checked by the module that uses them (a strlist_t) */
	K_SERVERS,  /* list of numeric addresses, each with an optional port (a strlist_t) */
	K_GRACE,    /* "N%" or a size, within min..max bytes (struct config_grace) */
};

struct key_def {
	const char *name;
	enum key_type type;
	size_t offset;
	const char *default_text;
	uint64_t min, max; /* numbers only; 0,0 = unbounded */
	bool may_be_empty; /* strings: may be ""; numbers: 0 is allowed outside min..max */
	const char *const *words; /* K_ENUM: the spellings, NULL-terminated, in enum order */
};

/* K_ENUM fields are C enums with small non-negative values: gcc stores
 * them as unsigned int, which is what the table code reads and writes. */
_Static_assert(sizeof(enum bare_newline_mode) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum policy_action) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum config_bool) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum virus_action) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum scan_mode) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum mime_limit_action) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum early_talker_action) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum dnsbl_action) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum log_to) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum syslog_facility) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum tls_version) == sizeof(unsigned), "enum size");
_Static_assert(sizeof(enum milter_action) == sizeof(unsigned), "enum size");

static const char *const bare_newline_words[] = { "reject", "normalize", NULL };
static const char *const policy_action_words[] = { "tempfail", "accept", NULL };
static const char *const milter_action_words[] = { "tempfail", "continue", "reject", "accept",
						     NULL };
static const char *const log_level_words[] = { "debug", "info", "warn", "error", NULL };
static const char *const yes_no_words[] = { "no", "yes", NULL };
static const char *const virus_action_words[] = { "reject", "quarantine", "discard", NULL };
static const char *const scan_mode_words[] = { "auto", "yes", "no", NULL };
static const char *const tls_version_words[] = { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3",
						  NULL };
static const char *const mime_limit_words[] = { "reject", "tempfail", NULL };
static const char *const early_talker_words[] = { "reject", "log", NULL };
static const char *const dnsbl_action_words[] = { "reject", "tempfail", "warn", NULL };
static const char *const log_to_words[] = { "stderr", "syslog", "file", NULL };
/* syslog_facility: syslog(3)'s names, in the order of enum syslog_facility. */
static const char *const syslog_facility_words[] = { "mail", "daemon", "user", "local0",
	"local1", "local2", "local3", "local4", "local5", "local6", "local7", NULL };

#define OFF(field) offsetof(struct config, field)
#define DAY (86400ULL)
/* Events per rate_window: the bound of every rate level. */
#define RATE_MAX 1000000
/* The warn and block levels of one rate (struct config_rate). */
#define RATE_KEYS(name, field)                                                          \
	{ name "_warn", K_UINT, OFF(field.warn), "0", 0, RATE_MAX, false, NULL },        \
	{ name "_block", K_UINT, OFF(field.block), "0", 0, RATE_MAX, false, NULL }

static const struct key_def keys[] = {
	{ "hostname", K_HOSTNAME, OFF(hostname), "", 0, 0, true, NULL },
	{ "listen", K_LISTEN, OFF(listen), "127.0.0.1:25", 0, 0, false, NULL },
	{ "submission_listen", K_LISTEN, OFF(submission_listen), "", 0, 0, true, NULL },
	{ "smtps_listen", K_LISTEN, OFF(smtps_listen), "", 0, 0, true, NULL },
	{ "pop3_listen", K_LISTEN, OFF(pop3_listen), "", 0, 0, true, NULL },
	{ "pop3s_listen", K_LISTEN, OFF(pop3s_listen), "", 0, 0, true, NULL },
	{ "user", K_STRING, OFF(user), "postern", 0, 0, true, NULL },
	{ "mail_owner", K_STRING, OFF(mail_owner), "vmail", 0, 0, true, NULL },
	{ "workers", K_UINT, OFF(workers), "0", 0, 256, false, NULL },
	{ "spool_dir", K_PATH, OFF(spool_dir), "/var/spool/postern", 0, 0, false, NULL },
	{ "mail_root", K_PATH, OFF(mail_root), "/var/lib/postern/mail", 0, 0, false, NULL },
	{ "local_domains", K_DOMAINS, OFF(local_domains), "", 0, 0, true, NULL },
	{ "users_file", K_PATH, OFF(users_file), "", 0, 0, true, NULL },
	{ "aliases_file", K_PATH, OFF(aliases_file), "", 0, 0, true, NULL },
	{ "mailbox_quota", K_SIZE, OFF(mailbox_quota), "0", 0, 1ULL << 60, false, NULL },
	{ "quota_reject_margin", K_SIZE, OFF(quota_reject_margin), "25k", 0, 1ULL << 40, false,
	  NULL },
	{ "quota_grace", K_GRACE, OFF(quota_grace), "10%", 0, 1ULL << 60, false, NULL },
	{ "domains_file", K_PATH, OFF(domains_file), "", 0, 0, true, NULL },
	{ "mynetworks", K_CIDRS, OFF(mynetworks), "127.0.0.0/8, ::1/128", 0, 0, true, NULL },
	{ "relay_domains", K_DOMAINS, OFF(relay_domains), "", 0, 0, true, NULL },
	{ "client_restrictions", K_WORDS, OFF(client_restrictions), "", 0, 0, true, NULL },
	{ "helo_restrictions", K_WORDS, OFF(helo_restrictions), "", 0, 0, true, NULL },
	{ "sender_restrictions", K_WORDS, OFF(sender_restrictions), "", 0, 0, true, NULL },
	{ "recipient_restrictions", K_WORDS, OFF(recipient_restrictions),
	  "permit_mynetworks, permit_auth, reject_unauth_destination", 0, 0, false, NULL },
	{ "data_restrictions", K_WORDS, OFF(data_restrictions), "", 0, 0, true, NULL },
	{ "helo_required", K_ENUM, OFF(helo_required), "yes", 0, 0, false, yes_no_words },
	{ "strict_rfc821_envelopes", K_ENUM, OFF(strict_rfc821_envelopes), "yes", 0, 0, false,
	  yes_no_words },
	{ "strict_7bit_headers", K_ENUM, OFF(strict_7bit_headers), "no", 0, 0, false, yes_no_words },
	{ "smtpd_banner", K_STRING, OFF(smtpd_banner), "$hostname ESMTP postern", 0, 0, false, NULL },
	{ "tls_cert", K_PATH, OFF(tls_cert), "", 0, 0, true, NULL },
	{ "tls_key", K_PATH, OFF(tls_key), "", 0, 0, true, NULL },
	{ "tls_min_version", K_ENUM, OFF(tls_min_version), "TLSv1.2", 0, 0, false,
	  tls_version_words },
	{ "message_size_limit", K_SIZE, OFF(message_size_limit), "10240000", 1024, 1ULL << 40, false, NULL },
	{ "recipient_limit", K_UINT, OFF(recipient_limit), "1000", 1, 100000, false, NULL },
	{ "command_line_limit", K_UINT, OFF(command_line_limit), "2048", 512, 65536, false, NULL },
	{ "text_line_limit", K_UINT, OFF(text_line_limit), "0", 78, 1ULL << 40, true, NULL },
	{ "header_size_limit", K_SIZE, OFF(header_size_limit), "102400", 1024, 1ULL << 30, false, NULL },
	{ "error_limit", K_UINT, OFF(error_limit), "10", 1, 1000, false, NULL },
	{ "junk_command_limit", K_UINT, OFF(junk_command_limit), "100", 1, 100000, false, NULL },
	{ "worker_connections", K_UINT, OFF(worker_connections), "2000", 1, 1000000, false, NULL },
	{ "bare_newline", K_ENUM, OFF(bare_newline), "reject", 0, 0, false, bare_newline_words },
	{ "command_timeout", K_DURATION, OFF(command_timeout), "5m", 1, DAY, false, NULL },
	{ "data_timeout", K_DURATION, OFF(data_timeout), "3m", 1, DAY, false, NULL },
	{ "data_min_rate", K_SIZE, OFF(data_min_rate), "500", 0, 1ULL << 30, false, NULL },
	{ "transaction_timeout", K_DURATION, OFF(transaction_timeout), "30m", 1, DAY, false, NULL },
	{ "session_timeout", K_DURATION, OFF(session_timeout), "1h", 1, DAY, false, NULL },
	{ "policy_timeout", K_DURATION, OFF(policy_timeout), "2m", 1, DAY, false, NULL },
	{ "policy_default_action", K_ENUM, OFF(policy_default_action), "tempfail", 0, 0, false,
	  policy_action_words },
	{ "commit_threads", K_UINT, OFF(commit_threads), "4", 1, 64, false, NULL },
	{ "shutdown_timeout", K_DURATION, OFF(shutdown_timeout), "30s", 0, DAY, false, NULL },
	{ "queue_retry_min", K_DURATION, OFF(queue_retry_min), "5m", 1, 30 * DAY, false, NULL },
	{ "queue_retry_max", K_DURATION, OFF(queue_retry_max), "1h", 1, 30 * DAY, false, NULL },
	{ "maximal_queue_lifetime", K_DURATION, OFF(queue_lifetime), "5d", 0, 365 * DAY, false,
	  NULL },
	{ "delay_warning_time", K_DURATION, OFF(delay_warning_time), "4h", 0, 365 * DAY, false,
	  NULL },
	{ "queue_scan_interval", K_DURATION, OFF(queue_scan_interval), "60s", 1, DAY, false, NULL },
	{ "delivery_lanes", K_UINT, OFF(delivery_lanes), "4", 1, 64, false, NULL },
	{ "in_flow_delay", K_DURATION, OFF(in_flow_delay), "1s", 0, 60, false, NULL },
	{ "in_flow_tokens", K_UINT, OFF(in_flow_tokens), "1000", 1, 100000, false, NULL },
	{ "quarantine_retention", K_DURATION, OFF(quarantine_retention), "30d", 60, 3650 * DAY, true,
	  NULL },
	{ "notify_admin", K_STRING, OFF(notify_admin), "", 0, 0, true, NULL },
	{ "notify_sender", K_ENUM, OFF(notify_sender), "no", 0, 0, false, yes_no_words },
	{ "notify_template", K_PATH, OFF(notify_template), "", 0, 0, true, NULL },
	{ "notify_rate_limit", K_UINT, OFF(notify_rate_limit), "10", 1, 100000, false, NULL },
	/* Message capture (src/queue/capture.h, postern.conf(5) CAPTURE). */
	{ "capture", K_ENUM, OFF(capture), "no", 0, 0, false, yes_no_words },
	{ "capture_trigger_file", K_PATH, OFF(capture_trigger_file), "", 0, 0, true, NULL },
	{ "capture_dir", K_PATH, OFF(capture_dir), "", 0, 0, true, NULL },
	{ "capture_group", K_STRING, OFF(capture_group), "root", 0, 0, false, NULL },
	{ "capture_senders", K_ADDRESSES, OFF(capture_senders), "", 0, 0, true, NULL },
	{ "capture_recipients", K_ADDRESSES, OFF(capture_recipients), "", 0, 0, true, NULL },
	{ "capture_clients", K_CIDRS, OFF(capture_clients), "", 0, 0, true, NULL },
	{ "clamav_db_dir", K_PATH, OFF(clamav_db_dir), "", 0, 0, true, NULL },
	{ "clamd_socket", K_STRING, OFF(clamd_socket), "", 0, 0, true, NULL },
	{ "clamav_max_scan_size", K_SIZE, OFF(clamav_max_scan_size), "100M", 1024, 4000ULL << 20, false, NULL },
	{ "clamav_max_file_size", K_SIZE, OFF(clamav_max_file_size), "25M", 1024, 4000ULL << 20, false, NULL },
	{ "clamav_max_recursion", K_UINT, OFF(clamav_max_recursion), "16", 1, 100, false, NULL },
	{ "clamav_max_files", K_UINT, OFF(clamav_max_files), "10000", 1, 1000000, false, NULL },
	{ "clamav_max_scan_time", K_DURATION, OFF(clamav_max_scan_time), "25s", 1, 3600, false, NULL },
	{ "clamav_temp_dir", K_PATH, OFF(clamav_temp_dir), "", 0, 0, true, NULL },
	{ "clamav_alert_exceeds_max", K_ENUM, OFF(clamav_alert_exceeds_max), "yes", 0, 0, false,
	  yes_no_words },
	{ "virus_action", K_ENUM, OFF(virus_action), "reject", 0, 0, false, virus_action_words },
	{ "scan", K_ENUM, OFF(scan), "auto", 0, 0, false, scan_mode_words },
	{ "scan_workers", K_UINT, OFF(scan_workers), "0", 0, 256, false, NULL },
	{ "scan_timeout", K_DURATION, OFF(scan_timeout), "30s", 1, 3600, false, NULL },
	{ "scan_fail_open", K_ENUM, OFF(scan_fail_open), "no", 0, 0, false, yes_no_words },
	{ "scan_archive_max_bytes", K_SIZE, OFF(scan_archive_max_bytes), "10M", 0, 1ULL << 30, false, NULL },
	{ "spam_max_text", K_SIZE, OFF(spam_max_text), "1M", 0, 1ULL << 28, false, NULL },
	{ "mime_max_depth", K_UINT, OFF(mime_max_depth), "20", 1, 1000, false, NULL },
	{ "mime_max_parts", K_UINT, OFF(mime_max_parts), "1000", 1, 1000000, false, NULL },
	{ "mime_max_header_size", K_SIZE, OFF(mime_max_header_size), "256k", 1024, 1ULL << 26, false, NULL },
	{ "mime_max_decoded_size", K_SIZE, OFF(mime_max_decoded_size), "100M", 1024, 1ULL << 40, false, NULL },
	{ "mime_limit_action", K_ENUM, OFF(mime_limit_action), "reject", 0, 0, false, mime_limit_words },
	{ "log_level", K_ENUM, OFF(log_level), "info", 0, 0, false, log_level_words },
	{ "log_to", K_ENUM, OFF(log_to), "stderr", 0, 0, false, log_to_words },
	{ "syslog_facility", K_ENUM, OFF(syslog_facility), "mail", 0, 0, false,
	  syslog_facility_words },
	{ "syslog_socket", K_PATH, OFF(syslog_socket), "/dev/log", 0, 0, false, NULL },
	{ "log_file", K_PATH, OFF(log_file), "", 0, 0, true, NULL },
	{ "metrics_listen", K_LISTEN, OFF(metrics_listen), "", 0, 0, true, NULL },
	/* postern milter (src/milter/milter_server.h): unix:/PATH or inet:HOST:PORT */
	{ "milter_listen", K_STRING, OFF(milter_listen), "", 0, 0, true, NULL },
	{ "content_rules_file", K_PATH, OFF(content_rules_file), "", 0, 0, true, NULL },
	{ "spam_rules_file", K_PATH, OFF(spam_rules_file), "", 0, 0, true, NULL },
	{ "spam_rules_dirs", K_PATHS, OFF(spam_rules_dirs), "", 0, 0, true, NULL },
	{ "spam_tag_score", K_SCORE, OFF(spam_tag_score), "5.0", 0, 1000, false, NULL },
	{ "spam_quarantine_score", K_SCORE, OFF(spam_quarantine_score), "0", 0, 1000, false, NULL },
	{ "spam_reject_score", K_SCORE, OFF(spam_reject_score), "15", 0, 1000, false, NULL },
	{ "spam_subject_prefix", K_STRING, OFF(spam_subject_prefix), "", 0, 0, true, NULL },
	{ "spam_report", K_ENUM, OFF(spam_report), "no", 0, 0, false, yes_no_words },
	{ "spam_time_budget", K_DURATION, OFF(spam_time_budget), "10s", 1, 600, false, NULL },
	{ "bayes_dir", K_PATH, OFF(bayes_dir), "", 0, 0, true, NULL },
	{ "bayes_min_learned", K_UINT, OFF(bayes_min_learned), "200", 1, 1000000, false, NULL },
	{ "bayes_expiry_days", K_UINT, OFF(bayes_expiry_days), "90", 1, 36500, true, NULL },
	{ "bayes_max_tokens", K_UINT, OFF(bayes_max_tokens), "500000", 1000, 1000000000, true, NULL },
	{ "bayes_map_size", K_SIZE, OFF(bayes_map_size), "64M", 1ULL << 20, 1ULL << 40, false, NULL },
	{ "bayes_autolearn", K_ENUM, OFF(bayes_autolearn), "yes", 0, 0, false, yes_no_words },
	{ "bayes_autolearn_ham_score", K_SCORE, OFF(bayes_autolearn_ham_score), "0.1", 0, 1000,
	  false, NULL },
	{ "bayes_autolearn_spam_score", K_SCORE, OFF(bayes_autolearn_spam_score), "12.0", 0, 1000,
	  false, NULL },
	/* SMTP AUTH and the auth process (src/smtp/auth.c, src/server/auth.c). */
	{ "smtp_auth", K_ENUM, OFF(smtp_auth), "no", 0, 0, false, yes_no_words },
	{ "auth_cleartext_networks", K_CIDRS, OFF(auth_cleartext_networks), "", 0, 0, true, NULL },
	{ "auth_sender_check", K_ENUM, OFF(auth_sender_check), "yes", 0, 0, false, yes_no_words },
	{ "received_auth_user", K_ENUM, OFF(received_auth_user), "no", 0, 0, false, yes_no_words },
	{ "auth_threads", K_UINT, OFF(auth_threads), "2", 1, 64, false, NULL },
	{ "auth_failure_delay", K_DURATION, OFF(auth_failure_delay), "1s", 0, 60, false, NULL },
	{ "auth_failure_delay_max", K_DURATION, OFF(auth_failure_delay_max), "15s", 0, 30, false,
	  NULL },
	{ "auth_client_ban_failures", K_UINT, OFF(auth_client_ban_failures), "10", 0, 100000,
	  false, NULL },
	{ "auth_user_ban_failures", K_UINT, OFF(auth_user_ban_failures), "30", 0, 100000, false,
	  NULL },
	{ "auth_ban_time", K_DURATION, OFF(auth_ban_time), "15m", 1, 7 * DAY, false, NULL },
	/* Behaviour checks. */
	{ "greet_pause", K_DURATION, OFF(greet_pause), "0", 0, 300, false, NULL },
	{ "early_talker_action", K_ENUM, OFF(early_talker_action), "reject", 0, 0, false,
	  early_talker_words },
	{ "reject_unauth_pipelining", K_ENUM, OFF(reject_unauth_pipelining), "yes", 0, 0, false,
	  yes_no_words },
	{ "soft_error_limit", K_UINT, OFF(soft_error_limit), "5", 0, 1000, false, NULL },
	{ "error_delay", K_DURATION, OFF(error_delay), "1s", 0, 60, false, NULL },
	/* Concurrency and rates. */
	{ "connection_limit", K_UINT, OFF(connection_limit), "0", 0, 10000000, false, NULL },
	{ "client_connection_limit", K_UINT, OFF(client_connection_limit), "50", 0, 1000000, false,
	  NULL },
	{ "client_ipv4_prefix", K_UINT, OFF(client_ipv4_prefix), "32", 8, 32, false, NULL },
	{ "client_ipv6_prefix", K_UINT, OFF(client_ipv6_prefix), "64", 16, 128, false, NULL },
	{ "rate_window", K_DURATION, OFF(rate_window), "60s", 1, DAY, false, NULL },
	{ "rate_block_time", K_DURATION, OFF(rate_block_time), "10m", 1, 7 * DAY, false, NULL },
	RATE_KEYS("client_connection_rate", client_connection_rate),
	RATE_KEYS("client_message_rate", client_message_rate),
	RATE_KEYS("client_recipient_rate", client_recipient_rate),
	RATE_KEYS("sender_message_rate", sender_message_rate),
	RATE_KEYS("sender_recipient_rate", sender_recipient_rate),
	RATE_KEYS("user_message_rate", user_message_rate),
	RATE_KEYS("user_recipient_rate", user_recipient_rate),
	{ "site_message_rate_panic", K_UINT, OFF(site_message_rate_panic), "0", 0, RATE_MAX, false,
	  NULL },
	{ "site_recipient_rate_panic", K_UINT, OFF(site_recipient_rate_panic), "0", 0, RATE_MAX,
	  false, NULL },
	{ "limits_ignore_networks", K_CIDRS, OFF(limits_ignore_networks), "127.0.0.0/8, ::1/128", 0,
	  0, true, NULL },
	{ "limits_ignore_senders", K_ADDRESSES, OFF(limits_ignore_senders), "", 0, 0, true, NULL },
	/* Greylisting. */
	{ "greylist", K_ENUM, OFF(greylist), "no", 0, 0, false, yes_no_words },
	{ "greylist_delay", K_DURATION, OFF(greylist_delay), "5m", 1, DAY, false, NULL },
	{ "greylist_retry_window", K_DURATION, OFF(greylist_retry_window), "2d", 1, 30 * DAY, false,
	  NULL },
	{ "greylist_expiry", K_DURATION, OFF(greylist_expiry), "35d", 1, 3650 * DAY, false, NULL },
	{ "greylist_auto_allow", K_UINT, OFF(greylist_auto_allow), "5", 0, 1000, false, NULL },
	{ "greylist_ipv4_prefix", K_UINT, OFF(greylist_ipv4_prefix), "24", 8, 32, false, NULL },
	{ "greylist_ipv6_prefix", K_UINT, OFF(greylist_ipv6_prefix), "64", 16, 128, false, NULL },
	{ "greylist_ignore_networks", K_CIDRS, OFF(greylist_ignore_networks), "127.0.0.0/8, ::1/128",
	  0, 0, true, NULL },
	{ "greylist_ignore_recipients", K_ADDRESSES, OFF(greylist_ignore_recipients), "", 0, 0, true,
	  NULL },
	{ "dns_servers", K_SERVERS, OFF(dns_servers), "", 0, 0, true, NULL },
	{ "dns_timeout", K_DURATION, OFF(dns_timeout), "5s", 1, 300, false, NULL },
	{ "dns_tries", K_UINT, OFF(dns_tries), "2", 1, 10, false, NULL },
	{ "dns_cache_size", K_UINT, OFF(dns_cache_size), "10000", 0, 10000000, false, NULL },
	{ "dns_negative_ttl", K_DURATION, OFF(dns_negative_ttl), "5m", 0, DAY, false, NULL },
	{ "dnsbl_sites", K_ITEMS, OFF(dnsbl_sites), "", 0, 0, true, NULL },
	{ "rhsbl_sender_sites", K_ITEMS, OFF(rhsbl_sender_sites), "", 0, 0, true, NULL },
	{ "dnsbl_threshold", K_UINT, OFF(dnsbl_threshold), "1", 1, 100000, false, NULL },
	{ "dnsbl_action", K_ENUM, OFF(dnsbl_action), "reject", 0, 0, false, dnsbl_action_words },
	{ "dnsbl_reply", K_STRING, OFF(dnsbl_reply),
	  "$rbl_class [$rbl_what] is listed by $rbl_domain${rbl_txt?: $rbl_txt}", 0, 0, false,
	  NULL },
	{ "dnsbl_timeout", K_DURATION, OFF(dnsbl_timeout), "5s", 1, 300, false, NULL },
	{ "dnsbl_fail_open", K_ENUM, OFF(dnsbl_fail_open), "yes", 0, 0, false, yes_no_words },
	/* Milters (src/milter/, postern.conf(5) MILTERS); Postfix's names and defaults. */
	{ "milters", K_STRING, OFF(milters), "", 0, 0, true, NULL },
	{ "milter_default_action", K_ENUM, OFF(milter_default_action), "tempfail", 0, 0, false,
	  milter_action_words },
	{ "milter_connect_timeout", K_DURATION, OFF(milter_connect_timeout), "30s", 1, 3600, false,
	  NULL },
	{ "milter_command_timeout", K_DURATION, OFF(milter_command_timeout), "30s", 1, 3600, false,
	  NULL },
	{ "milter_content_timeout", K_DURATION, OFF(milter_content_timeout), "300s", 1, 3600, false,
	  NULL },
	/* Outbound SMTP (src/relay/, postern.conf(5) ROUTING). */
	{ "transport_file", K_PATH, OFF(transport_file), "", 0, 0, true, NULL },
	{ "relayhost", K_STRING, OFF(relayhost), "", 0, 0, true, NULL },
	{ "relay_port", K_UINT, OFF(relay_port), "25", 1, 65535, false, NULL },
	{ "delivery_concurrency", K_UINT, OFF(delivery_concurrency), "20", 1, 1000, false, NULL },
	{ "destination_concurrency", K_UINT, OFF(destination_concurrency), "10", 1, 1000, false,
	  NULL },
	{ "destination_backoff", K_DURATION, OFF(destination_backoff), "1m", 0, DAY, false, NULL },
	{ "tls_policy", K_STRING, OFF(tls_policy), "may", 0, 0, false, NULL },
	{ "tls_policy_file", K_PATH, OFF(tls_policy_file), "", 0, 0, true, NULL },
	{ "tls_ca_file", K_PATH, OFF(tls_ca_file), "", 0, 0, true, NULL },
	{ "relay_connect_timeout", K_DURATION, OFF(relay_connect_timeout), "30s", 1, 3600, false,
	  NULL },
	{ "relay_command_timeout", K_DURATION, OFF(relay_command_timeout), "5m", 1, 3600, false,
	  NULL },
	{ "relay_data_timeout", K_DURATION, OFF(relay_data_timeout), "10m", 1, 3600, false, NULL },
	{ "relay_idle_timeout", K_DURATION, OFF(relay_idle_timeout), "2s", 0, 300, false, NULL },
	/* POP3 (src/pop3/, postern.conf(5) POP3); the listeners are above. */
	{ "pop3_clients", K_CIDRS, OFF(pop3_clients), "0.0.0.0/0, ::/0", 0, 0, true, NULL },
	{ "pop3_cleartext_networks", K_CIDRS, OFF(pop3_cleartext_networks), "", 0, 0, true, NULL },
	{ "pop3_connection_limit", K_UINT, OFF(pop3_connection_limit), "200", 1, 100000, false,
	  NULL },
	{ "pop3_idle_timeout", K_DURATION, OFF(pop3_idle_timeout), "10m", 1, DAY, false, NULL },
};

struct parse_ctx {
	const char *file;
	const char *base_dir;
	FILE *errors;
	int error_count;
	struct config *cfg;
	unsigned line; /* of the value being applied; 0 for the defaults */
};

static void report(struct parse_ctx *ctx, unsigned line, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void report(struct parse_ctx *ctx, unsigned line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(ctx->errors, ctx->file, line, fmt, ap);
	va_end(ap);
	ctx->error_count++;
}

static bool valid_hostname(const char *s)
{
	size_t len = strlen(s), label = 0;
	if (len == 0 || len > 253)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		char c = *p;
		if (c == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || (c == '-' && label > 0);
		if (!ok || ++label > 63)
			return false;
	}
	return label > 0 && s[len - 1] != '-';
}

/* "local@domain": a local part of printable ASCII without white space,
 * angle brackets, quotes or a second '@', and a valid domain name. */
static bool plain_address(const char *s)
{
	const char *at = strrchr(s, '@');
	if (at == NULL || at == s || at - s > 64 || !valid_hostname(at + 1))
		return false;
	for (const char *p = s; p < at; p++)
		if (*p <= ' ' || *p >= 127 || strchr("<>\"@,;:\\()[]", *p) != NULL)
			return false;
	return true;
}

bool config_valid_domain(const char *s)
{
	return valid_hostname(s);
}

bool config_valid_address(const char *s)
{
	return plain_address(s);
}

/* A K_LISTEN field: the array at the key's offset, its count right after
 * it (checked for each such field below). */
struct listen_field {
	struct listen_addr **addrs;
	size_t *count;
};

static struct listen_field listen_field_at(void *field)
{
	struct listen_field f = { field, (size_t *)((char *)field + sizeof(struct listen_addr *)) };
	return f;
}

#define LISTEN_PAIR(name)                                                                  \
	_Static_assert(offsetof(struct config, name##_count) ==                           \
			       offsetof(struct config, name) + sizeof(struct listen_addr *),     \
		       #name "_count must follow " #name)
LISTEN_PAIR(listen);
LISTEN_PAIR(submission_listen);
LISTEN_PAIR(smtps_listen);
LISTEN_PAIR(metrics_listen);
LISTEN_PAIR(pop3_listen);
LISTEN_PAIR(pop3s_listen);

static void free_listen(struct listen_field f)
{
	for (size_t i = 0; i < *f.count; i++) {
		free((*f.addrs)[i].host);
		free((*f.addrs)[i].port);
		free((*f.addrs)[i].text);
	}
	xfree(f.addrs);
	*f.count = 0;
}

/* Parse "host:port" or "[v6]:port" into a listen_addr; NULL = ok. */
static const char *parse_one_listen(const char *item, struct listen_addr *la)
{
	const char *colon;
	char host[INET6_ADDRSTRLEN + 1];
	size_t hl;
	const char *h = item;
	if (item[0] == '[') {
		const char *close = strchr(item, ']');
		if (close == NULL || close[1] != ':')
			return "expected [IPv6]:port";
		h = item + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(item, ':');
		if (colon == NULL)
			return "expected address:port";
		hl = (size_t)(colon - item);
		if (memchr(item, ':', hl) != NULL)
			return "IPv6 addresses must be written as [address]:port";
	}
	if (hl == 0 || hl >= sizeof(host))
		return "missing or bad address";
	memcpy(host, h, hl);
	host[hl] = '\0';
	unsigned char tmp[16];
	if (inet_pton(AF_INET, host, tmp) != 1 && inet_pton(AF_INET6, host, tmp) != 1)
		return "address must be a numeric IPv4 or IPv6 address";
	uint64_t port;
	if (!str_parse_uint(colon + 1, &port) || port == 0 || port > 65535)
		return "port must be a number from 1 to 65535";
	la->host = xstrdup(host);
	la->port = xstrdup(colon + 1);
	la->text = xstrdup(item);
	return NULL;
}

/* "addr", "addr:port", "[v6addr]" or "[v6addr]:port" with a numeric
 * address (a DNS server); NULL = ok. */
static const char *check_server(const char *item)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *h = item, *port = NULL;
	size_t hl;
	unsigned char tmp[16];
	if (item[0] == '[') {
		const char *close = strchr(item, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return "expected [IPv6 address] or [IPv6 address]:port";
		h = item + 1;
		hl = (size_t)(close - h);
		port = close[1] == ':' ? close + 2 : NULL;
	} else if (inet_pton(AF_INET6, item, tmp) == 1) {
		hl = strlen(item); /* a bare IPv6 address, the default port */
	} else {
		const char *colon = strchr(item, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return "an IPv6 address with a port is written [address]:port";
		hl = colon != NULL ? (size_t)(colon - item) : strlen(item);
		port = colon != NULL ? colon + 1 : NULL;
	}
	if (hl == 0 || hl >= sizeof(host))
		return "missing or bad address";
	memcpy(host, h, hl);
	host[hl] = '\0';
	bool v4 = inet_pton(AF_INET, host, tmp) == 1;
	if (!v4 && inet_pton(AF_INET6, host, tmp) != 1)
		return "address must be a numeric IPv4 or IPv6 address";
	if (item[0] == '[' && v4)
		return "brackets are for IPv6 addresses";
	uint64_t n;
	if (port != NULL && (!str_parse_uint(port, &n) || n == 0 || n > 65535))
		return "port must be a number from 1 to 65535";
	return NULL;
}

static const char *set_servers(strlist_t *list, const char *value, char **detail_r)
{
	strlist_free(list);
	strlist_split(list, value);
	for (size_t i = 0; i < list->count; i++) {
		const char *err = check_server(list->items[i]);
		if (err != NULL) {
			buf_t b = BUF_INIT;
			buf_printf(&b, "\"%s\": %s", list->items[i], err);
			*detail_r = buf_steal(&b);
			return "bad server";
		}
	}
	return NULL;
}

static const char *set_listen(const struct key_def *k, struct listen_field f,
			      const char *value)
{
	strlist_t items = { 0 };
	const char *err = NULL;
	free_listen(f);
	strlist_split(&items, value);
	if (items.count == 0 && !k->may_be_empty)
		err = "at least one address:port is needed";
	for (size_t i = 0; err == NULL && i < items.count; i++) {
		*f.addrs = xreallocarray(*f.addrs, *f.count + 1, sizeof(**f.addrs));
		err = parse_one_listen(items.items[i], &(*f.addrs)[*f.count]);
		if (err == NULL)
			(*f.count)++;
	}
	strlist_free(&items);
	return err;
}

/* Is the component of len bytes at p ".."? */
static bool is_dotdot(const char *p, size_t len)
{
	return len == 2 && p[0] == '.' && p[1] == '.';
}

char *config_normalize_path(const char *path)
{
	size_t len = strlen(path);
	bool absolute = path[0] == '/';
	char *out = xmalloc(len + 2);
	size_t root = absolute ? 1 : 0; /* out[0..root) is never removed */
	size_t o = root;
	out[0] = '/';
	for (const char *p = path; *p != '\0';) {
		while (*p == '/')
			p++;
		const char *start = p;
		while (*p != '\0' && *p != '/')
			p++;
		size_t n = (size_t)(p - start);
		if (n == 0 || (n == 1 && start[0] == '.'))
			continue;
		if (is_dotdot(start, n)) {
			size_t last = o;
			while (last > root && out[last - 1] != '/')
				last--;
			if (o > root && !is_dotdot(out + last, o - last)) {
				/* Drop the last component and the slash before it. */
				o = last > root ? last - 1 : root;
				continue;
			}
			if (absolute)
				continue; /* "/.." is "/" */
		}
		if (o > root)
			out[o++] = '/';
		memcpy(out + o, start, n);
		o += n;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	return out;
}

/* The value made absolute against the config file's folder, then
 * normalised, so that logs and check-config show one spelling. */
static char *resolve_path(const struct parse_ctx *ctx, const char *value)
{
	if (value[0] == '\0')
		return xstrdup(value);
	char *joined = value[0] == '/' ? xstrdup(value) : safeio_path_join(ctx->base_dir, value);
	char *clean = config_normalize_path(joined);
	free(joined);
	return clean;
}

/* A bound of k written as the admin would: 30s, 5m, 1h, 2d for a
 * duration, 64k, 10M, 1G for a size, digits otherwise. */
static void bound_text(const struct key_def *k, uint64_t v, buf_t *out)
{
	static const struct {
		char unit;
		uint64_t scale;
	} durations[] = { { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 } },
	  sizes[] = { { 'G', 1024ULL * 1024 * 1024 }, { 'M', 1024 * 1024 }, { 'k', 1024 } };
	bool dur = k->type == K_DURATION;
	if (k->type == K_DURATION || k->type == K_SIZE) {
		for (size_t i = 0; i < 3; i++) {
			uint64_t scale = dur ? durations[i].scale : sizes[i].scale;
			if (v != 0 && v % scale == 0) {
				buf_printf(out, "%llu%c", (unsigned long long)(v / scale),
					   dur ? durations[i].unit : sizes[i].unit);
				return;
			}
		}
	}
	buf_printf(out, "%llu%s", (unsigned long long)v, dur ? "s" : "");
}

/* The bounds of k for an out-of-range value: "\"0\" (1s to 1h)". */
static char *range_detail(const struct key_def *k, const char *value)
{
	buf_t b = BUF_INIT;
	buf_printf(&b, "\"%s\" (", value);
	bound_text(k, k->min, &b);
	buf_puts(&b, " to ");
	bound_text(k, k->max, &b);
	if (k->may_be_empty && k->min > 0)
		buf_puts(&b, ", or 0");
	buf_putc(&b, ')');
	return buf_steal(&b);
}

static const char *set_number(const struct key_def *k, uint64_t *field,
			      const char *value, char **detail_r)
{
	uint64_t v;
	bool ok = k->type == K_SIZE ? str_parse_size(value, &v)
		: k->type == K_DURATION ? str_parse_duration(value, &v)
		: str_parse_uint(value, &v);
	if (!ok)
		return k->type == K_SIZE ? "expected a size such as 10485760, 64k or 10M"
		     : k->type == K_DURATION ? "expected a duration such as 300, 30s, 5m, 1h or 5d"
		     : "expected a whole number";
	bool zero_ok = v == 0 && k->may_be_empty;
	if ((k->min || k->max) && !zero_ok && (v < k->min || v > k->max)) {
		*detail_r = range_detail(k, value);
		return "value out of range";
	}
	*field = v;
	return NULL;
}

static const char *set_paths(const struct parse_ctx *ctx, strlist_t *list, const char *value)
{
	strlist_t items = { 0 };
	strlist_split(&items, value);
	strlist_free(list);
	for (size_t i = 0; i < items.count; i++) {
		char *p = resolve_path(ctx, items.items[i]);
		strlist_add(list, p);
		free(p);
	}
	strlist_free(&items);
	return NULL;
}

/* "N%" with N at most CONFIG_GRACE_PERCENT_MAX, or a size within k's
 * bounds. */
static const char *set_grace(const struct key_def *k, struct config_grace *field,
			     const char *value)
{
	size_t len = strlen(value);
	struct config_grace g = { 0, false };
	if (len > 1 && value[len - 1] == '%') {
		g.percent = true;
		for (size_t i = 0; i + 1 < len; i++) {
			if (value[i] < '0' || value[i] > '9')
				return "expected a percentage such as 10% or a size such as 10M";
			g.amount = g.amount * 10 + (uint64_t)(value[i] - '0');
			if (g.amount > CONFIG_GRACE_PERCENT_MAX)
				return "value out of range (at most 1000%)";
		}
	} else {
		if (!str_parse_size(value, &g.amount))
			return "expected a percentage such as 10% or a size such as 10M";
		if (g.amount < k->min || g.amount > k->max)
			return "value out of range";
	}
	*field = g;
	return NULL;
}

/* Digits, optionally a point and up to three more: no sign, no exponent,
 * no "inf" (strtod would take them). */
static const char *set_score(const struct key_def *k, double *field, const char *value)
{
	const char *p = value;
	size_t whole = 0, frac = 0;
	while (*p >= '0' && *p <= '9' && whole < 6)
		p++, whole++;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9' && frac < 4; p++)
			frac++;
	if (whole == 0 || *p != '\0' || frac > 3)
		return "expected a score such as 5, 5.0 or 12.25";
	double v = strtod(value, NULL);
	if (v < (double)k->min || v > (double)k->max)
		return "value out of range";
	*field = v;
	return NULL;
}

static const char *set_domains(strlist_t *list, const char *value)
{
	strlist_free(list);
	strlist_split(list, value);
	for (size_t i = 0; i < list->count; i++) {
		str_lower(list->items[i]);
		if (!valid_hostname(list->items[i]))
			return "not a valid domain name";
	}
	return NULL;
}

/* "user@domain", "@domain" or "domain": what the ignore lists of the
 * limits and of greylisting hold. */
static bool address_or_domain(const char *s)
{
	const char *at = strrchr(s, '@');
	if (at == NULL)
		return valid_hostname(s);
	return at == s ? valid_hostname(at + 1) : plain_address(s);
}

static const char *set_addresses(strlist_t *list, const char *value, char **detail_r)
{
	strlist_free(list);
	strlist_split(list, value);
	for (size_t i = 0; i < list->count; i++) {
		str_lower(list->items[i]);
		if (!address_or_domain(list->items[i])) {
			buf_t b = BUF_INIT;
			buf_printf(&b, "\"%s\" is not user@domain, @domain or a domain",
				   list->items[i]);
			*detail_r = buf_steal(&b);
			return "bad entry";
		}
	}
	return NULL;
}

/* One of k->words; the error lists them all. */
static const char *set_enum(const struct key_def *k, unsigned *field, const char *value,
			    char **detail_r)
{
	for (unsigned i = 0; k->words[i] != NULL; i++) {
		if (strcmp(value, k->words[i]) == 0) {
			*field = i;
			return NULL;
		}
	}
	buf_t b = BUF_INIT;
	buf_printf(&b, "\"%s\" is not one of:", value);
	for (unsigned i = 0; k->words[i] != NULL; i++)
		buf_printf(&b, " %s", k->words[i]);
	*detail_r = buf_steal(&b);
	return "unknown value";
}

/* Apply one value; returns NULL or a static error text. *detail_r may be
 * set to a malloc'ed detail the caller prints and frees. */
static const char *apply(struct parse_ctx *ctx, const struct key_def *k,
			 const char *value, char **detail_r)
{
	void *field = (char *)ctx->cfg + k->offset;
	if (value[0] == '\0' && !k->may_be_empty)
		return "a value is required";
	switch (k->type) {
	case K_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return NULL;
	case K_HOSTNAME:
		if (value[0] != '\0' && !valid_hostname(value))
			return "not a valid host name";
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return NULL;
	case K_PATH:
		free(*(char **)field);
		*(char **)field = resolve_path(ctx, value);
		return NULL;
	case K_SIZE:
	case K_DURATION:
	case K_UINT:
		return set_number(k, field, value, detail_r);
	case K_DOMAINS:
		return set_domains(field, value);
	case K_CIDRS:
		cidr_list_free(field);
		return cidr_list_parse(field, value, detail_r) ? NULL : "bad network";
	case K_LISTEN:
		return set_listen(k, listen_field_at(field), value);
	case K_ENUM:
		return set_enum(k, field, value, detail_r);
	case K_PATHS:
		return set_paths(ctx, field, value);
	case K_SCORE:
		return set_score(k, field, value);
	case K_GRACE:
		return set_grace(k, field, value);
	case K_ADDRESSES:
		return set_addresses(field, value, detail_r);
	case K_WORDS: {
		struct config_words *w = field;
		strlist_free(&w->words);
		strlist_split(&w->words, value);
		w->line = ctx->line;
		return NULL;
	}
	case K_ITEMS:
		strlist_free(field);
		strlist_split(field, value);
		return NULL;
	case K_SERVERS:
		return set_servers(field, value, detail_r);
	}
	return "internal error: unknown key type";
}

/* Former names still accepted: the same key under another name. */
static const struct {
	const char *old_name, *name;
} key_aliases[] = {
	{ "queue_lifetime", "maximal_queue_lifetime" },
};

static const struct key_def *find_key(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(key_aliases); i++)
		if (strcmp(key_aliases[i].old_name, name) == 0)
			name = key_aliases[i].name;
	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static void set_key(struct parse_ctx *ctx, unsigned line, const struct key_def *k,
		    const char *value)
{
	char *detail = NULL;
	ctx->line = line;
	const char *err = apply(ctx, k, value, &detail);
	if (err != NULL) {
		if (detail != NULL)
			report(ctx, line, "%s: %s: %s", k->name, err, detail);
		else
			report(ctx, line, "%s: %s: \"%s\"", k->name, err, value);
	}
	free(detail);
}

static void set_defaults(struct parse_ctx *ctx)
{
	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		set_key(ctx, 0, &keys[i], keys[i].default_text);
}

/* Strip a '#' comment that starts a line or follows white space. */
static void strip_comment(char *line)
{
	for (char *p = line; *p != '\0'; p++) {
		if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
	}
}

struct pending {
	const struct key_def *key;
	unsigned line;
	buf_t value;
};

static void flush_pending(struct parse_ctx *ctx, struct pending *pend,
			  unsigned *seen_line)
{
	if (pend->key == NULL)
		return;
	size_t idx = (size_t)(pend->key - keys);
	if (seen_line[idx] != 0)
		report(ctx, pend->line, "%s: set twice (first on line %u)",
		       pend->key->name, seen_line[idx]);
	else
		seen_line[idx] = pend->line;
	ctx->cfg->key_lines[idx] = pend->line;
	slice_t v = slice_trim(slice_make(pend->value.data, pend->value.len));
	char *value = xstrndup(v.ptr, v.len);
	set_key(ctx, pend->line, pend->key, value);
	free(value);
	pend->key = NULL;
	buf_reset(&pend->value);
}

static void parse_line(struct parse_ctx *ctx, struct pending *pend,
		       unsigned *seen_line, char *line, unsigned lineno)
{
	strip_comment(line);
	slice_t s = slice_trim(slice_from_cstr(line));
	if (s.len == 0)
		return;
	if (line[0] == ' ' || line[0] == '\t') {
		if (pend->key == NULL) {
			report(ctx, lineno, "continuation line without a key before it");
			return;
		}
		buf_putc(&pend->value, ' ');
		buf_append(&pend->value, s.ptr, s.len);
		return;
	}
	flush_pending(ctx, pend, seen_line);
	const char *eq = memchr(s.ptr, '=', s.len);
	if (eq == NULL) {
		report(ctx, lineno, "expected \"key = value\"");
		return;
	}
	slice_t name = slice_trim(slice_make(s.ptr, (size_t)(eq - s.ptr)));
	char *key = xstrndup(name.ptr, name.len);
	const struct key_def *k = find_key(key);
	if (k == NULL)
		report(ctx, lineno, "unknown key \"%s\"", key);
	free(key);
	if (k == NULL)
		return;
	pend->key = k;
	pend->line = lineno;
	buf_append(&pend->value, eq + 1, s.len - (size_t)(eq + 1 - s.ptr));
}

static void parse_text(struct parse_ctx *ctx, buf_t *text)
{
	struct pending pend = { NULL, 0, BUF_INIT };
	unsigned seen_line[ARRAY_LEN(keys)] = { 0 };
	unsigned lineno = 0;
	char *p = text->data != NULL ? text->data : "";
	char *end = p + text->len;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl ? nl : end;
		lineno++;
		if (eol > p && eol[-1] == '\r')
			eol[-1] = '\0';
		*eol = '\0';
		if ((size_t)(eol - p) > CONFIG_LINE_MAX)
			report(ctx, lineno, "line longer than %d bytes", CONFIG_LINE_MAX);
		else if (memchr(p, '\0', (size_t)(eol - p)) != NULL && strlen(p) + 1 < (size_t)(eol - p))
			report(ctx, lineno, "line contains a NUL byte");
		else
			parse_line(ctx, &pend, seen_line, p, lineno);
		p = eol + 1;
	}
	flush_pending(ctx, &pend, seen_line);
	buf_free(&pend.value);
}

/* The default of hostname: the system's name, "" if it is not usable. */
static char *system_hostname(void)
{
	char name[256] = "";
	if (gethostname(name, sizeof(name) - 1) != 0 || !valid_hostname(name))
		name[0] = '\0';
	return xstrdup(name);
}

/* The later of the lines that set two keys. */
static unsigned later_line(const struct parse_ctx *ctx, const char *a, const char *b)
{
	unsigned la = config_key_line(ctx->cfg, a), lb = config_key_line(ctx->cfg, b);
	return la > lb ? la : lb;
}

/* The levels of each rate, and greylisting's times, in their order
 * (reported at the line of the later of the two keys). */
static void check_limits(struct parse_ctx *ctx)
{
	const struct config *cfg = ctx->cfg;
	static const struct {
		const char *name;
		size_t offset;
	} rates[] = {
		{ "client_connection_rate", OFF(client_connection_rate) },
		{ "client_message_rate", OFF(client_message_rate) },
		{ "client_recipient_rate", OFF(client_recipient_rate) },
		{ "sender_message_rate", OFF(sender_message_rate) },
		{ "sender_recipient_rate", OFF(sender_recipient_rate) },
		{ "user_message_rate", OFF(user_message_rate) },
		{ "user_recipient_rate", OFF(user_recipient_rate) },
	};
	for (size_t i = 0; i < ARRAY_LEN(rates); i++) {
		const struct config_rate *r =
			(const struct config_rate *)((const char *)cfg + rates[i].offset);
		char warn[48], block[48];
		snprintf(warn, sizeof(warn), "%s_warn", rates[i].name);
		snprintf(block, sizeof(block), "%s_block", rates[i].name);
		if (r->warn != 0 && r->block != 0 && r->warn >= r->block)
			report(ctx, later_line(ctx, warn, block), "%s (%llu) must be below %s (%llu)",
			       warn, (unsigned long long)r->warn, block, (unsigned long long)r->block);
	}
	if (cfg->greylist_retry_window <= cfg->greylist_delay)
		report(ctx, later_line(ctx, "greylist_retry_window", "greylist_delay"),
		       "greylist_retry_window (%llus) must be longer than greylist_delay "
		       "(%llus): no retry could pass", (unsigned long long)cfg->greylist_retry_window,
		       (unsigned long long)cfg->greylist_delay);
	if (cfg->greylist_expiry < cfg->greylist_retry_window)
		report(ctx, later_line(ctx, "greylist_expiry", "greylist_retry_window"),
		       "greylist_expiry (%llus) must not be shorter than "
		       "greylist_retry_window (%llus)", (unsigned long long)cfg->greylist_expiry,
		       (unsigned long long)cfg->greylist_retry_window);
}

/* The host name variable at p ("$hostname", "${hostname}", or Postfix's
 * "$myhostname"): its length, or 0 if p holds none. */
static size_t banner_variable(const char *p)
{
	static const char *const names[] = { "${hostname}", "${myhostname}", "$hostname",
					     "$myhostname" };
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		size_t n = strlen(names[i]);
		bool word_ends = names[i][1] == '{' || !((p[n] >= 'a' && p[n] <= 'z') ||
							(p[n] >= '0' && p[n] <= '9') || p[n] == '_');
		if (strncmp(p, names[i], n) == 0 && word_ends)
			return n;
	}
	return 0;
}

/* RFC 5321 4.3.1: the greeting starts with our name; one line of
 * printable text. NULL if the banner is fine. */
static const char *banner_problem(const char *banner)
{
	if (banner_variable(banner) == 0)
		return "must start with $hostname (RFC 5321 section 4.3.1: the greeting names the "
		       "server first)";
	if (strlen(banner) > 400)
		return "longer than 400 characters";
	for (const char *p = banner; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			return "only printable ASCII is allowed";
		if (*p == '$') {
			size_t n = banner_variable(p);
			if (n == 0)
				return "unknown variable (only $hostname is known)";
			p += n - 1;
		}
	}
	return NULL;
}

char *config_banner(const struct config *cfg)
{
	buf_t b = BUF_INIT;
	for (const char *p = cfg->smtpd_banner; *p != '\0'; p++) {
		size_t n = *p == '$' ? banner_variable(p) : 0;
		if (n > 0) {
			buf_puts(&b, cfg->hostname);
			p += n - 1;
		} else {
			buf_putc(&b, *p);
		}
	}
	if (b.len == 0)
		buf_puts(&b, cfg->hostname);
	return buf_steal(&b);
}

char *config_base_dir(const struct config *cfg)
{
	char *copy = xstrdup(cfg->path != NULL ? cfg->path : ".");
	const char *dir = dirname(copy);
	char *base = realpath(dir, NULL);
	if (base == NULL) {
		/* The folder is gone: as written, made absolute. */
		char *joined = dir[0] == '/' ? xstrdup(dir) : NULL;
		if (joined == NULL) {
			char cwd[4096];
			joined = safeio_path_join(getcwd(cwd, sizeof(cwd)) != NULL ? cwd : "/", dir);
		}
		base = config_normalize_path(joined);
		free(joined);
	}
	free(copy);
	return base;
}

static bool listen_clash(const struct listen_addr *a, const struct listen_addr *b);

/* One socket per address:port: two listener keys that name the same one
 * would pass here and fail at bind ("Address already in use", naming
 * neither key). Reported at the later key's line, naming both. */
static void check_listener_overlap(struct parse_ctx *ctx)
{
	static const char *const listener_keys[] = { "listen", "submission_listen", "smtps_listen",
					     "pop3_listen", "pop3s_listen" };
	const size_t n = sizeof(listener_keys) / sizeof(listener_keys[0]);
	for (size_t i = 0; i < n; i++) {
		const struct key_def *ki = find_key(listener_keys[i]);
		struct listen_field a = listen_field_at((char *)ctx->cfg + ki->offset);
		for (size_t j = i + 1; j < n; j++) {
			const struct key_def *kj = find_key(listener_keys[j]);
			struct listen_field b = listen_field_at((char *)ctx->cfg + kj->offset);
			for (size_t x = 0; x < *a.count; x++)
				for (size_t y = 0; y < *b.count; y++)
					if (listen_clash(&(*a.addrs)[x], &(*b.addrs)[y]))
						report(ctx, later_line(ctx, listener_keys[i], listener_keys[j]),
						       "%s %s and %s %s: the same address:port "
						       "cannot serve two listener keys",
						       listener_keys[i], (*a.addrs)[x].text,
						       listener_keys[j], (*b.addrs)[y].text);
		}
	}
}

/* Capture can be on (capture = yes, or a trigger file that may appear):
 * it needs a folder. Reported at the line that turned it on. */
static void check_capture(struct parse_ctx *ctx)
{
	struct config *cfg = ctx->cfg;
	if (!config_capture_possible(cfg) || cfg->capture_dir[0] != '\0')
		return;
	const char *key = cfg->capture == CONFIG_YES ? "capture" : "capture_trigger_file";
	report(ctx, config_key_line(cfg, key), "%s: capture_dir is not set: captured messages "
	       "need a folder (postern serve creates it, owned by user and capture_group)", key);
}

bool config_capture_possible(const struct config *cfg)
{
	return cfg->capture == CONFIG_YES || cfg->capture_trigger_file[0] != '\0';
}

static void check_consistency(struct parse_ctx *ctx)
{
	check_listener_overlap(ctx);
	struct config *cfg = ctx->cfg;
	if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0'))
		report(ctx, 0, "tls_cert and tls_key must be set together");
	if (cfg->smtps_listen_count > 0 && cfg->tls_cert[0] == '\0')
		report(ctx, 0, "smtps_listen needs tls_cert and tls_key (implicit TLS)");
	if (cfg->pop3s_listen_count > 0 && cfg->tls_cert[0] == '\0')
		report(ctx, config_key_line(cfg, "pop3s_listen"), "pop3s_listen: implicit TLS needs "
		       "tls_cert and tls_key");
	if (cfg->submission_listen_count > 0 && cfg->tls_cert[0] == '\0' &&
	    cfg->auth_cleartext_networks.count == 0)
		report(ctx, 0, "submission_listen needs tls_cert and tls_key: AUTH is offered only "
		       "after STARTTLS (or to auth_cleartext_networks)");
	for (size_t i = 0; i < cfg->relay_domains.count; i++)
		if (strlist_contains_nocase(&cfg->local_domains, cfg->relay_domains.items[i]))
			report(ctx, 0, "relay_domains: %s is also a local domain",
			       cfg->relay_domains.items[i]);
	if (cfg->metrics_listen_count > 1)
		report(ctx, 0, "metrics_listen takes one address:port");
	if ((cfg->log_to == LOG_TO_FILE) != (cfg->log_file[0] != '\0'))
		report(ctx, 0, "log_to = file and log_file go together");
	if (cfg->queue_retry_min > cfg->queue_retry_max)
		report(ctx, 0, "queue_retry_min is larger than queue_retry_max");
	if (cfg->notify_admin[0] != '\0' && !plain_address(cfg->notify_admin))
		report(ctx, 0, "notify_admin: \"%s\" is not an address such as "
		       "postmaster@example.com", cfg->notify_admin);
	if (cfg->clamav_db_dir[0] != '\0' && cfg->clamd_socket[0] != '\0')
		report(ctx, 0, "clamav_db_dir and clamd_socket are both set: the antivirus is "
		       "either libclamav in process or clamd, choose one");
	if (cfg->clamd_socket[0] != '\0' && cfg->clamd_socket[0] != '/' &&
	    strrchr(cfg->clamd_socket, ':') == NULL)
		report(ctx, 0, "clamd_socket: expected an absolute socket path or host:port: \"%s\"",
		       cfg->clamd_socket);
	check_capture(ctx);
	check_limits(ctx);
	if (cfg->hostname[0] == '\0') {
		free(cfg->hostname);
		cfg->hostname = system_hostname();
		if (cfg->hostname[0] == '\0')
			report(ctx, 0, "hostname: not set and the system host name is not usable");
	}
	const char *why = banner_problem(cfg->smtpd_banner);
	if (why != NULL)
		report(ctx, 0, "smtpd_banner: %s: \"%s\"", why, cfg->smtpd_banner);
}

int config_load(const char *path, struct config *cfg, FILE *errors)
{
	if (config_load_partial(path, cfg, errors) == 0)
		return 0;
	config_free(cfg);
	return -1;
}

int config_load_partial(const char *path, struct config *cfg, FILE *errors)
{
	buf_t text = BUF_INIT;
	char *dir_copy = xstrdup(path);
	/* Absolute base folder, so that paths stay right whatever the
	 * daemon's working directory becomes. */
	char *base = realpath(dirname(dir_copy), NULL);
	struct parse_ctx ctx = { path, base != NULL ? base : ".", errors, 0, cfg, 0 };

	memset(cfg, 0, sizeof(*cfg));
	cfg->path = xstrdup(path);
	cfg->key_lines = xcalloc(ARRAY_LEN(keys), sizeof(*cfg->key_lines));
	set_defaults(&ctx);
	if (ctx.error_count != 0)
		log_panic("config: built-in defaults do not parse");
	if (safeio_read_file(path, CONFIG_MAX_BYTES, &text) < 0) {
		report(&ctx, 0, "cannot read: %s", strerror(errno));
	} else {
		parse_text(&ctx, &text);
		if (ctx.error_count == 0)
			check_consistency(&ctx);
	}
	buf_free(&text);
	free(dir_copy);
	free(base);
	return ctx.error_count;
}

int config_check_server_files(const struct config *cfg, FILE *errors)
{
	int problems = 0;
	if (cfg->tls_cert[0] == '\0' || cfg->tls_key[0] == '\0')
		return 0;
	for (size_t i = 0; i < 2; i++) {
		const char *f = i == 0 ? cfg->tls_cert : cfg->tls_key;
		if (access(f, R_OK) != 0) {
			fprintf(errors, "%s: %s: cannot read %s: %s\n", cfg->path,
				i == 0 ? "tls_cert" : "tls_key", f, strerror(errno));
			problems++;
		}
	}
	return problems;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		void *field = (char *)cfg + keys[i].offset;
		switch (keys[i].type) {
		case K_STRING:
		case K_HOSTNAME:
		case K_PATH:
			xfree(field);
			break;
		case K_DOMAINS:
		case K_PATHS:
		case K_ADDRESSES:
		case K_ITEMS:
		case K_SERVERS:
			strlist_free(field);
			break;
		case K_CIDRS:
			cidr_list_free(field);
			break;
		case K_LISTEN:
			free_listen(listen_field_at(field));
			break;
		case K_WORDS:
			strlist_free(&((struct config_words *)field)->words);
			break;
		default:
			break;
		}
	}
	xfree(&cfg->path);
	xfree(&cfg->key_lines);
}

unsigned config_key_line(const struct config *cfg, const char *key)
{
	const struct key_def *k = find_key(key);
	if (k == NULL || cfg->key_lines == NULL)
		return 0;
	return cfg->key_lines[k - keys];
}

/* Every item of a is in b (ASCII case-insensitively)? */
static bool strlist_within(const strlist_t *a, const strlist_t *b)
{
	for (size_t i = 0; i < a->count; i++)
		if (!strlist_contains_nocase(b, a->items[i]))
			return false;
	return true;
}

static bool cidr_equal(const struct cidr *a, const struct cidr *b)
{
	return a->family == b->family && a->prefix == b->prefix &&
	       memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

static bool cidrs_within(const cidr_list_t *a, const cidr_list_t *b)
{
	for (size_t i = 0; i < a->count; i++) {
		bool found = false;
		for (size_t j = 0; j < b->count && !found; j++)
			found = cidr_equal(&a->items[i], &b->items[j]);
		if (!found)
			return false;
	}
	return true;
}

/* Same address and port, however written ("[::1]:25", "[0::1]:025"). */
static bool listen_equal(const struct listen_addr *a, const struct listen_addr *b)
{
	unsigned char xa[16] = { 0 }, xb[16] = { 0 };
	int fa = strchr(a->host, ':') != NULL ? AF_INET6 : AF_INET;
	int fb = strchr(b->host, ':') != NULL ? AF_INET6 : AF_INET;
	return fa == fb && inet_pton(fa, a->host, xa) == 1 &&
	       inet_pton(fb, b->host, xb) == 1 && memcmp(xa, xb, sizeof(xa)) == 0 &&
	       strtoul(a->port, NULL, 10) == strtoul(b->port, NULL, 10);
}

/* Would binding both fail? The same address and port, or the same port
 * where one is the family's any-address (0.0.0.0, [::]: the IPv6 sockets
 * are IPV6_V6ONLY, so the families do not meet). */
static bool listen_clash(const struct listen_addr *a, const struct listen_addr *b)
{
	static const unsigned char any[16] = { 0 };
	unsigned char xa[16] = { 0 }, xb[16] = { 0 };
	int fa = strchr(a->host, ':') != NULL ? AF_INET6 : AF_INET;
	int fb = strchr(b->host, ':') != NULL ? AF_INET6 : AF_INET;
	return fa == fb && inet_pton(fa, a->host, xa) == 1 && inet_pton(fb, b->host, xb) == 1 &&
	       (memcmp(xa, xb, sizeof(xa)) == 0 || memcmp(xa, any, sizeof(any)) == 0 ||
		memcmp(xb, any, sizeof(any)) == 0) &&
	       strtoul(a->port, NULL, 10) == strtoul(b->port, NULL, 10);
}

static bool listen_within(const void *fa, const void *fb)
{
	struct listen_field a = listen_field_at((void *)fa), b = listen_field_at((void *)fb);
	for (size_t i = 0; i < *a.count; i++) {
		bool found = false;
		for (size_t j = 0; j < *b.count && !found; j++)
			found = listen_equal(&(*a.addrs)[i], &(*b.addrs)[j]);
		if (!found)
			return false;
	}
	return true;
}

/* Does key k mean something else in a than in b? Values are compared as
 * parsed, not as written: "10M" is 10485760, lists are sets, host names
 * and domains ignore case, paths are already normalised. */
static bool key_differs(const struct key_def *k, const struct config *a,
			const struct config *b)
{
	const void *fa = (const char *)a + k->offset;
	const void *fb = (const char *)b + k->offset;
	switch (k->type) {
	case K_STRING:
	case K_PATH:
		return strcmp(*(char *const *)fa, *(char *const *)fb) != 0;
	case K_HOSTNAME:
		return !str_eq_nocase(*(char *const *)fa, *(char *const *)fb);
	case K_SIZE:
	case K_DURATION:
	case K_UINT:
		return *(const uint64_t *)fa != *(const uint64_t *)fb;
	case K_DOMAINS:
	case K_ADDRESSES:
		return !strlist_within(fa, fb) || !strlist_within(fb, fa);
	case K_PATHS:
	case K_ITEMS:
	case K_SERVERS: {
		const strlist_t *la = fa, *lb = fb;
		if (la->count != lb->count)
			return true;
		for (size_t i = 0; i < la->count; i++)
			if (strcmp(la->items[i], lb->items[i]) != 0)
				return true;
		return false;
	}
	case K_SCORE:
		return *(const double *)fa != *(const double *)fb;
	case K_GRACE: {
		const struct config_grace *ga = fa, *gb = fb;
		return ga->amount != gb->amount || ga->percent != gb->percent;
	}
	case K_CIDRS:
		return !cidrs_within(fa, fb) || !cidrs_within(fb, fa);
	case K_LISTEN:
		return !listen_within(fa, fb) || !listen_within(fb, fa);
	case K_ENUM:
		return *(const unsigned *)fa != *(const unsigned *)fb;
	case K_WORDS: {
		const strlist_t *la = &((const struct config_words *)fa)->words;
		const strlist_t *lb = &((const struct config_words *)fb)->words;
		if (la->count != lb->count)
			return true;
		for (size_t i = 0; i < la->count; i++)
			if (strcmp(la->items[i], lb->items[i]) != 0)
				return true;
		return false;
	}
	}
	return true;
}

bool config_key_differs(const struct config *a, const struct config *b, const char *key)
{
	const struct key_def *k = find_key(key);
	return k != NULL && key_differs(k, a, b);
}

/* The value of key k in cfg, as check-config prints it. */
static void format_value(const struct key_def *k, const struct config *cfg, buf_t *v)
{
	const void *field = (const char *)cfg + k->offset;
	switch (k->type) {
	case K_STRING:
	case K_HOSTNAME:
	case K_PATH:
		buf_puts(v, *(char *const *)field);
		break;
	case K_SIZE:
	case K_DURATION:
	case K_UINT:
		buf_printf(v, "%llu", (unsigned long long)*(const uint64_t *)field);
		break;
	case K_DOMAINS:
	case K_PATHS:
	case K_ADDRESSES:
	case K_ITEMS:
	case K_SERVERS: {
		const strlist_t *l = field;
		for (size_t j = 0; j < l->count; j++)
			buf_printf(v, "%s%s", j ? ", " : "", l->items[j]);
		break;
	}
	case K_SCORE:
		buf_printf(v, "%g", *(const double *)field);
		break;
	case K_GRACE: {
		const struct config_grace *g = field;
		buf_printf(v, "%llu%s", (unsigned long long)g->amount, g->percent ? "%" : "");
		break;
	}
	case K_CIDRS: {
		const cidr_list_t *l = field;
		char txt[INET6_ADDRSTRLEN];
		for (size_t j = 0; j < l->count; j++) {
			inet_ntop(l->items[j].family, l->items[j].addr, txt, sizeof(txt));
			buf_printf(v, "%s%s/%u", j ? ", " : "", txt, l->items[j].prefix);
		}
		break;
	}
	case K_LISTEN: {
		struct listen_field f = listen_field_at((void *)field);
		for (size_t j = 0; j < *f.count; j++)
			buf_printf(v, "%s%s", j ? ", " : "", (*f.addrs)[j].text);
		break;
	}
	case K_ENUM:
		buf_puts(v, k->words[*(const unsigned *)field]);
		break;
	case K_WORDS: {
		const strlist_t *l = &((const struct config_words *)field)->words;
		for (size_t j = 0; j < l->count; j++)
			buf_printf(v, "%s%s", j ? " " : "", l->items[j]);
		break;
	}
	}
}

void config_print_nondefault(const struct config *cfg, FILE *out)
{
	/* The defaults as config_load() completes them: an unset hostname
	 * is the system's name. */
	struct config def;
	struct parse_ctx ctx = { "(defaults)", "/", stderr, 0, &def, 0 };
	memset(&def, 0, sizeof(def));
	set_defaults(&ctx);
	free(def.hostname);
	def.hostname = system_hostname();
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		if (!key_differs(&keys[i], cfg, &def))
			continue;
		buf_t v = BUF_INIT;
		format_value(&keys[i], cfg, &v);
		fprintf(out, "%s = %s\n", keys[i].name, buf_cstr(&v));
		buf_free(&v);
	}
	config_free(&def);
}
