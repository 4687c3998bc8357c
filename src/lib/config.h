/*
 * config.h - postern.conf: one "key = value" per line, '#' comments.
 *
 * The keys are a typed table (name, type, default, bounds) in config.c,
 * parsed once. Relative paths are made relative to the config file's
 * folder, and every path is lexically normalised. Unknown keys and bad
 * values are errors reported as "FILE:LINE: message". Each role gets the
 * whole struct but uses its part.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cidr.h"
#include "log.h"
#include "strutil.h"

enum bare_newline_mode { BARE_NEWLINE_REJECT, BARE_NEWLINE_NORMALIZE };
enum policy_action { POLICY_ACTION_TEMPFAIL, POLICY_ACTION_ACCEPT };
/* What a milter that cannot be reached or fails decides (milter_default_action;
 * "accept" is another name of continue). */
enum milter_action { MILTER_ACTION_TEMPFAIL, MILTER_ACTION_CONTINUE, MILTER_ACTION_REJECT,
		     MILTER_ACTION_ACCEPT };
enum config_bool { CONFIG_NO, CONFIG_YES };
/* What the antivirus stage does with a message it finds a virus in. */
enum virus_action { VIRUS_ACTION_REJECT, VIRUS_ACTION_QUARANTINE, VIRUS_ACTION_DISCARD };
/* scan: auto = when a content stage is configured, yes = always (the MIME
 * limits alone when no stage is), no = never. */
enum scan_mode { SCAN_MODE_AUTO, SCAN_MODE_YES, SCAN_MODE_NO };
/* tls_min_version: the oldest TLS version the servers accept. */
enum tls_version { TLS_VERSION_1_0, TLS_VERSION_1_1, TLS_VERSION_1_2, TLS_VERSION_1_3 };
enum mime_limit_action { MIME_LIMIT_REJECT, MIME_LIMIT_TEMPFAIL };
/* What a client that talks before the greeting gets: 554 and the end, or
 * a log line and the session as usual. */
enum early_talker_action { EARLY_TALKER_REJECT, EARLY_TALKER_LOG };

/* The levels of one rate (events per rate_window; 0 = no such level). */
struct config_rate {
	uint64_t warn;  /* log and tell notify_admin */
	uint64_t block; /* refuse, and block the client, sender or user for rate_block_time */
};

/* What a DNS blocklist listing does: refuse (5xx), refuse for now (4xx,
 * rblsmtpd's temporary mode), or only log. */
enum dnsbl_action { DNSBL_ACTION_REJECT, DNSBL_ACTION_TEMPFAIL, DNSBL_ACTION_WARN };

/* A list of words kept with the line it was set on (0: the default), for
 * values another module interprets and reports on as FILE:LINE: the
 * restriction lists (src/policy/restrictions.c). */
struct config_words {
	strlist_t words;
	unsigned line;
};

struct listen_addr {
	char *host; /* numeric address, "127.0.0.1" or "::1" */
	char *port; /* numeric port */
	char *text; /* as written, for logs */
};

/* quota_grace: "10%" (percent of each limit) or a size ("10M", bytes
 * over the byte limit only); 0 either way = no grace. */
struct config_grace {
	uint64_t amount; /* percent (0..CONFIG_GRACE_PERCENT_MAX) or bytes */
	bool percent;
};
#define CONFIG_GRACE_PERCENT_MAX 1000

struct config {
	char *path;      /* the file this was read from */
	char *hostname;  /* our name in banners and Received: */
	struct listen_addr *listen;
	size_t listen_count;
	/* RFC 6409 submission (STARTTLS, then AUTH before MAIL) and RFC 8314
	 * implicit TLS submission; none by default. */
	struct listen_addr *submission_listen;
	size_t submission_listen_count;
	struct listen_addr *smtps_listen;
	size_t smtps_listen_count;
	/* POP3 (src/pop3/): STLS (RFC 2595) and implicit TLS; none by default. */
	struct listen_addr *pop3_listen;
	size_t pop3_listen_count;
	struct listen_addr *pop3s_listen;
	size_t pop3s_listen_count;
	char *user;       /* smtp workers and queue manager run as it when root */
	char *mail_owner; /* owns mail_root and every Maildir; local delivery runs as it */
	uint64_t workers; /* smtp worker processes; 0 = one per core */
	char *spool_dir;
	char *mail_root;
	strlist_t local_domains;
	char *users_file;   /* "" = no users (only aliases) */
	char *aliases_file; /* "" = no aliases */
	/* Quotas (src/queue/maildir_quota.h): a user without a
	 * userdb_quota_rule gets mailbox_quota bytes (0 = unlimited); RCPT
	 * refuses a mailbox with less than quota_reject_margin free. Mail
	 * from the senders quota_sender_exempt names may go past the quota
	 * by quota_grace (src/mail/quota_rule.h), no further. */
	uint64_t mailbox_quota;
	uint64_t quota_reject_margin;
	struct config_grace quota_grace;
	char *domains_file; /* more local domains and their settings (src/mail/domains.h); "" = none */
	cidr_list_t mynetworks;
	strlist_t relay_domains;
	/* SMTP restrictions (src/policy/restrictions.h), evaluated at RCPT
	 * (the first four, in this order) and at DATA. */
	struct config_words client_restrictions;
	struct config_words helo_restrictions;
	struct config_words sender_restrictions;
	struct config_words recipient_restrictions;
	struct config_words data_restrictions;
	enum config_bool helo_required;       /* MAIL needs HELO/EHLO first */
	enum config_bool strict_rfc821_envelopes; /* MAIL/RCPT paths need <> */
	enum config_bool strict_7bit_headers; /* 8-bit header bytes refused (without SMTPUTF8) */
	char *smtpd_banner;   /* the 220 greeting, $hostname expanded (config_banner) */
	char *tls_cert;     /* "" = no STARTTLS */
	char *tls_key;
	enum tls_version tls_min_version;

	uint64_t message_size_limit;
	uint64_t recipient_limit;
	uint64_t command_line_limit;
	uint64_t text_line_limit;  /* 0 = lines of any length (streamed) */
	uint64_t header_size_limit;
	uint64_t error_limit;
	uint64_t junk_command_limit; /* NOOP/RSET/VRFY/... before they count as errors */
	uint64_t worker_connections;
	enum bare_newline_mode bare_newline;

	uint64_t command_timeout;  /* seconds; RFC 5321 4.5.3.2.7 */
	uint64_t data_timeout;
	uint64_t data_min_rate;    /* bytes/s that extend data_timeout; 0 = none */
	uint64_t transaction_timeout; /* MAIL to end of message */
	uint64_t session_timeout;  /* the whole connection */
	uint64_t policy_timeout;   /* a stage's checks must answer within this */
	enum policy_action policy_default_action; /* ... or this applies */
	uint64_t commit_threads;   /* per smtp worker */
	uint64_t shutdown_timeout;

	uint64_t queue_retry_min;
	uint64_t queue_retry_max;
	uint64_t queue_lifetime;     /* maximal_queue_lifetime (or queue_lifetime) */
	uint64_t delay_warning_time; /* 0 = no delay warnings */
	uint64_t queue_scan_interval;
	uint64_t delivery_lanes;   /* local delivery agents working in parallel */
	uint64_t in_flow_delay;    /* seconds a commit waits for a flow token; 0 = off */
	uint64_t in_flow_tokens;   /* the queue manager's stock of flow tokens */

	uint64_t quarantine_retention; /* seconds a quarantined message is kept; 0 = for ever */
	char *notify_admin;        /* address told of quarantines and viruses; "" = nobody */
	enum config_bool notify_sender; /* also tell the sender (never of a virus) */
	char *notify_template;     /* the notices' text; "" = the built-in one */
	uint64_t notify_rate_limit; /* notices per minute per smtp worker */
	/* Message capture (src/queue/capture.h): copies of incoming messages
	 * in capture_dir while capture = yes or capture_trigger_file exists,
	 * of every message or of those matching one of the lists. */
	enum config_bool capture;
	char *capture_trigger_file; /* "" = none */
	char *capture_dir;          /* "" = none (then capture must stay off) */
	char *capture_group;        /* the group that may read the captured files */
	strlist_t capture_senders;  /* "user@domain", "domain"; none of the three = all */
	strlist_t capture_recipients;
	cidr_list_t capture_clients;
	/* Antivirus (src/scan/antivirus.c): libclamav in process or clamd. */
	char *clamav_db_dir;            /* "" = no in-process engine */
	char *clamd_socket;             /* "" = none; "/path" or "host:port" */
	uint64_t clamav_max_scan_size;  /* libclamav's limits */
	uint64_t clamav_max_file_size;
	uint64_t clamav_max_recursion;
	uint64_t clamav_max_files;
	uint64_t clamav_max_scan_time;  /* seconds; also bounds a clamd exchange */
	unsigned clamav_alert_exceeds_max; /* 1 = past a limit counts as a virus */
	char *clamav_temp_dir;          /* where libclamav unpacks; "" = /dev/shm, else $TMPDIR */
	enum virus_action virus_action;
	/* Content scanning (docs/scanning.md). */
	enum scan_mode scan;
	uint64_t scan_workers;     /* scanner processes; 0 = one per core */
	uint64_t scan_timeout;     /* seconds one message may take in a scanner */
	enum config_bool scan_fail_open; /* a message that cannot be scanned is accepted */
	uint64_t scan_archive_max_bytes; /* decoded archive bytes kept per message for the rules */
	uint64_t spam_max_text;   /* text of a message kept and rendered for the spam tests */
	uint64_t mime_max_depth;
	uint64_t mime_max_parts;
	uint64_t mime_max_header_size;  /* one part's header section */
	uint64_t mime_max_decoded_size; /* all decoded parts together */
	enum mime_limit_action mime_limit_action;

	enum log_level log_level;
	/* Operation (docs/postern.8 METRICS, LOGGING). */
	struct listen_addr *metrics_listen; /* at most one; none = no metrics role */
	size_t metrics_listen_count;
	char *milter_listen;       /* postern milter's socket; "" = none (milter_server.h) */
	enum log_to log_to;        /* where log lines go */
	enum syslog_facility syslog_facility;
	char *syslog_socket;       /* log_to = syslog: the local syslog socket (datagrams) */
	char *log_file;            /* log_to = file: the file; SIGUSR1 reopens it */

	char *content_rules_file; /* "" = no content rules (docs/postern-rules.5) */

	/* Spam scoring (src/scan/spam.c): rules in SpamAssassin's syntax. */
	char *spam_rules_file;     /* postern's own rules, read strictly; "" = none */
	strlist_t spam_rules_dirs; /* SpamAssassin's rule folders, read leniently */
	double spam_tag_score;     /* X-Spam-Flag: YES and the subject prefix from here */
	double spam_quarantine_score; /* 0 = never quarantined for its score */
	double spam_reject_score;  /* 550 5.7.1 from here; 0 = never refused for its score */
	char *spam_subject_prefix; /* "" = the Subject stays */
	enum config_bool spam_report; /* also X-Spam-Report: each rule, its score, why */
	uint64_t spam_time_budget; /* seconds the rules may take per message */
	/* Bayes (src/scan/spam_bayes.c, the token store in spam_store_lmdb.c). */
	char *bayes_dir;              /* the token store's folder; "" = Bayes off */
	uint64_t bayes_min_learned;   /* spam and ham each before Bayes says anything */
	uint64_t bayes_expiry_days;   /* rare tokens not learned from for this long go; 0 = never */
	uint64_t bayes_max_tokens;    /* the store's bound in tokens; 0 = none */
	uint64_t bayes_map_size;      /* the LMDB map's least size (it grows when full) */
	/* The spam stage learns a message whose score (without the Bayes and
	 * learning rules) is at most the ham or at least the spam threshold. */
	enum config_bool bayes_autolearn;
	double bayes_autolearn_ham_score;
	double bayes_autolearn_spam_score;

	/* SMTP AUTH (src/smtp/auth.c) and the auth process (src/server/auth.c). */
	enum config_bool smtp_auth;        /* offer AUTH on listen (port 25) too */
	cidr_list_t auth_cleartext_networks; /* AUTH without TLS from these clients */
	enum config_bool auth_sender_check; /* MAIL FROM must belong to the login */
	enum config_bool received_auth_user; /* Received: names the login */
	uint64_t auth_threads;             /* password hashing threads */
	uint64_t auth_failure_delay;       /* seconds the first failure's answer waits */
	uint64_t auth_failure_delay_max;
	uint64_t auth_client_ban_failures; /* failures before a client is banned; 0 = never */
	uint64_t auth_user_ban_failures;   /* the same per user */
	uint64_t auth_ban_time;            /* a ban, and the memory of failures */
	/* Behaviour checks (src/smtp/greeting.c, session.c). */
	uint64_t greet_pause;            /* seconds the banner waits; 0 = none */
	enum early_talker_action early_talker_action;
	enum config_bool reject_unauth_pipelining;
	uint64_t soft_error_limit;       /* errors answered at once; later ones wait */
	uint64_t error_delay;            /* seconds per error past soft_error_limit */
	/* Concurrency and rates, counted across all smtp workers by the anvil
	 * (src/policy/limits.c, src/server/anvil.c); 0 = no limit. */
	uint64_t connection_limit;        /* open sessions in total */
	uint64_t client_connection_limit; /* open sessions per client network */
	uint64_t client_ipv4_prefix;      /* the client network of an address */
	uint64_t client_ipv6_prefix;
	uint64_t rate_window;             /* seconds over which rates are counted */
	uint64_t rate_block_time;         /* seconds a blocked client, sender or user waits */
	struct config_rate client_connection_rate;
	struct config_rate client_message_rate;
	struct config_rate client_recipient_rate;
	struct config_rate sender_message_rate;
	struct config_rate sender_recipient_rate;
	struct config_rate user_message_rate;
	struct config_rate user_recipient_rate;
	uint64_t site_message_rate_panic;   /* all clients together; 0 = none */
	uint64_t site_recipient_rate_panic;
	cidr_list_t limits_ignore_networks; /* never limited */
	strlist_t limits_ignore_senders;    /* "user@domain", "domain" */
	/* Greylisting (src/policy/greylist.c), in the anvil's store. */
	enum config_bool greylist;
	uint64_t greylist_delay;         /* seconds before a retry passes */
	uint64_t greylist_retry_window;  /* seconds a first attempt waits for its retry */
	uint64_t greylist_expiry;        /* seconds an entry lives without being seen */
	uint64_t greylist_auto_allow;    /* passed triplets that allow a client; 0 = never */
	uint64_t greylist_ipv4_prefix;
	uint64_t greylist_ipv6_prefix;
	cidr_list_t greylist_ignore_networks;
	strlist_t greylist_ignore_recipients; /* "user@domain", "domain" */
	/* DNS (src/dns/dns.h): the resolver of each smtp worker. */
	strlist_t dns_servers;     /* "addr", "addr:port", "[v6addr]:port"; none = resolv.conf */
	uint64_t dns_timeout;      /* seconds one lookup may take, every try included */
	uint64_t dns_tries;        /* tries per server */
	uint64_t dns_cache_size;   /* answers kept per worker; 0 = no cache */
	uint64_t dns_negative_ttl; /* seconds a "no such name/data" answer is kept at most */
	/* DNS blocklists (src/policy/dnsbl.h): list specs as written, checked
	 * by dnsbl_config_check() (FILE:LINE through config_key_line). */
	strlist_t dnsbl_sites;        /* the client's address, at connect */
	strlist_t rhsbl_sender_sites; /* the sender's domain, at MAIL */
	uint64_t dnsbl_threshold;     /* a weighted sum from here is a listing */
	enum dnsbl_action dnsbl_action;
	char *dnsbl_reply;            /* template of the refusal's text */
	uint64_t dnsbl_timeout;       /* seconds the lists are waited for */
	enum config_bool dnsbl_fail_open; /* a list that does not answer counts as "not listed" */
	/* Milters postern calls (src/milter/milter_client.h): the list as
	 * written, checked by milter_config_check() (FILE:LINE). */
	char *milters;
	enum milter_action milter_default_action;
	uint64_t milter_connect_timeout; /* seconds */
	uint64_t milter_command_timeout;
	uint64_t milter_content_timeout;
	/* Outbound SMTP (src/relay/relay_route.h). */
	char *transport_file;      /* domain -> transport map; "" = none */
	char *relayhost;           /* next hop of remote mail without a transport entry */
	uint64_t relay_port;       /* port of next hops that name none */
	uint64_t delivery_concurrency;    /* outbound SMTP sessions at most */
	uint64_t destination_concurrency; /* of them to one destination */
	uint64_t destination_backoff;     /* seconds a failing destination is left alone */
	char *tls_policy;          /* default level: none, may, encrypt, verify */
	char *tls_policy_file;     /* destination -> level map; "" = none */
	char *tls_ca_file;         /* CAs for "verify"; "" = the system's store */
	uint64_t relay_connect_timeout;
	uint64_t relay_command_timeout;
	uint64_t relay_data_timeout;
	uint64_t relay_idle_timeout; /* an open connection waits this long for more mail */

	/* POP3 (src/pop3/, docs/postern.conf.5 POP3). */
	cidr_list_t pop3_clients;        /* who may connect to the POP3 listeners */
	cidr_list_t pop3_cleartext_networks; /* may log in without TLS */
	uint64_t pop3_connection_limit;  /* open POP3 sessions at most */
	uint64_t pop3_idle_timeout;      /* seconds without a command (RFC 1939: >= 10 min) */

	unsigned *key_lines; /* the line each key was set on (0: default), by key */
};

/* Read and validate path. On success returns 0 and fills *cfg. On failure
 * returns -1 after printing every problem to `errors` as
 * "FILE:LINE: message" (or "FILE: message"). */
int config_load(const char *path, struct config *cfg, FILE *errors);
/* The same for check-config, which reports every problem it can: on
 * errors *cfg is still filled (a refused value keeps its default) and
 * must be freed with config_free. Returns the number of problems. */
int config_load_partial(const char *path, struct config *cfg, FILE *errors);
void config_free(struct config *cfg);
/* Does key (a known key's name) mean something else in a than in b? */
bool config_key_differs(const struct config *a, const struct config *b, const char *key);
/* What only the server reads: tls_cert and tls_key must be readable (by
 * the caller). Checked by serve and check-config, not by the commands that
 * never touch them ("postern queue", which an unprivileged administrator
 * may run). Problems are printed as "FILE: key: message"; returns their
 * number. */
int config_check_server_files(const struct config *cfg, FILE *errors);
/* The line of cfg->path where key was set; 0 if it has its default (or
 * is no key). For checks made after loading that report FILE:LINE. */
unsigned config_key_line(const struct config *cfg, const char *key);
/* Print "key = value" for each key whose value differs from the default. */
void config_print_nondefault(const struct config *cfg, FILE *out);

/* The folder of the configuration file, absolute (malloc'ed): relative
 * paths in values other modules read (map names) are relative to it. */
char *config_base_dir(const struct config *cfg);
/* The greeting text after "220 " (malloc'ed): smtpd_banner with
 * $hostname (or $myhostname) replaced by hostname. */
char *config_banner(const struct config *cfg);

/* May capture be on while cfg is in force (capture = yes, or a
 * capture_trigger_file is named)? */
bool config_capture_possible(const struct config *cfg);

/* A domain name as local_domains takes it (letters, digits, '-', '_',
 * labels of at most 63 octets, 253 in all). */
bool config_valid_domain(const char *s);
/* "local@domain": a local part of printable ASCII without white space,
 * angle brackets, quotes, ',', ':' or a second '@', and a valid domain. */
bool config_valid_address(const char *s);

/*
 * Lexically normalised copy of path (malloc'ed): repeated slashes, "."
 * components and a trailing slash go, and ".." removes the component
 * before it ("/a/b/../c" is "/a/c", "/.." is "/"; a relative path keeps
 * leading ".." components; "" and "a/.." become "."). The file system is
 * not consulted, so "link/.." is the folder holding link, not the parent
 * of its target. Every path key of the configuration is stored this way.
 */
char *config_normalize_path(const char *path);

#endif
