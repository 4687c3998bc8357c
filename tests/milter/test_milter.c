/*
 * test_milter.c - a small milter for the tests, written with libmilter
 * (the Sendmail milter library, Debian's libmilter-dev), so that the
 * tests can drive an MTA (postern's milter client, or a real Postfix to
 * prove this milter itself right) through every reply and every change a
 * milter can make.
 *
 *   test_milter -p SOCKET -l LOGFILE [-c SCRIPT] [-t TIMEOUT]
 *
 * SOCKET is libmilter's spelling: unix:/path or inet:PORT@127.0.0.1. Once
 * it listens, the line "ready" goes to standard output. LOGFILE gets one
 * JSON object per line for every callback (see log_event): the stage,
 * its arguments (host and address, HELO name, MAIL and RCPT arguments,
 * each header, each body chunk) and the values of the macros the MTA
 * sent that this milter knows to ask for ({i}, j, {client_addr},
 * {auth_authen}, {tls_version}, ...), so a test can assert what the MTA
 * told its milter, and, at the end of the message, the result of each
 * change it asked for.
 *
 * The script (the file SCRIPT, read again at each new connection so that
 * a test can change it between messages, or else the environment
 * variable TEST_MILTER_SCRIPT, lines separated by newlines or ';') says
 * what to answer. One directive per line, '#' starts a comment:
 *
 *   STAGE[@MATCH] ACTION [ARGS]
 *       STAGE: connect helo envfrom envrcpt data header eoh body eom
 *       unknown. MATCH, if given, must occur (case-insensitively) in the
 *       stage's first argument (host name, HELO name, sender, recipient,
 *       header name, unknown command). The first line that fits a
 *       callback decides; none: continue.
 *       ACTION: continue accept reject tempfail discard skip (body),
 *       progress (eom: smfi_progress, then continue),
 *       reply CODE XCODE TEXT (smfi_setreply; reject or tempfail by CODE),
 *       mlreply CODE XCODE LINE|LINE|... (smfi_setmlreply, up to 8 lines).
 *   mod KIND ARGS        a change requested at the end of the message, in
 *                        the order given, before the eom reply:
 *       addheader NAME VALUE        insheader INDEX NAME VALUE
 *       chgheader NAME INDEX VALUE  delheader NAME INDEX
 *       addrcpt ADDR                addrcpt_par ADDR ARGS
 *       delrcpt ADDR                chgfrom ADDR [ARGS]
 *       replacebody TEXT            replacebody_repeat COUNT TEXT
 *       quarantine REASON
 *     VALUE and TEXT may hold \n, \t, \r and \\ (a folded header value,
 *     a body of several lines).
 *   delay STAGE MILLISECONDS     sleep before answering that stage.
 *
 * Untrusted input: what the MTA sends (through libmilter) is only logged,
 * escaped. The script comes from the test. Privilege: whatever the test
 * runs it as; it writes only its log file and its socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#define LINE_MAX_LEN 65536
#define MLREPLY_LINES 8

/* ---- a growable string ----------------------------------------------------- */

struct str {
	char *data;
	size_t len, cap;
};

static void str_grow(struct str *s, size_t more)
{
	if (s->len + more + 1 <= s->cap)
		return;
	size_t cap = s->cap ? s->cap : 256;
	while (cap < s->len + more + 1)
		cap *= 2;
	char *p = realloc(s->data, cap);
	if (p == NULL) {
		perror("test_milter: realloc");
		exit(2);
	}
	s->data = p;
	s->cap = cap;
}

static void str_add(struct str *s, const char *p, size_t n)
{
	str_grow(s, n);
	memcpy(s->data + s->len, p, n);
	s->len += n;
	s->data[s->len] = '\0';
}

static void str_puts(struct str *s, const char *p)
{
	str_add(s, p, strlen(p));
}

static void str_printf(struct str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_printf(struct str *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	str_grow(s, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	s->len += (size_t)n;
}

/* A JSON string: control characters escaped, other bytes as they are. */
static void str_json(struct str *s, const char *p, size_t n)
{
	str_add(s, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			str_add(s, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			str_printf(s, "\\u%04x", c);
		} else {
			str_add(s, (const char *)&c, 1);
		}
	}
	str_add(s, "\"", 1);
}

/* ---- the script ------------------------------------------------------------- */

struct rule {
	char *stage;
	char *match;  /* NULL: any */
	char *action;
	char *args;   /* the rest of the line, "" if none */
};

struct script {
	struct rule *rules;
	size_t count;
};

static const char *script_path;

/* Replace \n, \t, \r, \\ in place. */
static void unescape(char *s)
{
	char *out = s;
	for (char *p = s; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0') {
			p++;
			*out++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
		} else {
			*out++ = *p;
		}
	}
	*out = '\0';
}

/* The next word of *p (space separated), or NULL; *p moves past it. */
static char *next_word(char **p)
{
	char *s = *p;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return NULL;
	char *w = s;
	while (*s != '\0' && *s != ' ' && *s != '\t')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	*p = s;
	return w;
}

static void add_line(struct script *sc, char *line)
{
	char *p = line;
	char *first = next_word(&p);
	if (first == NULL || first[0] == '#')
		return;
	char *second = next_word(&p);
	if (second == NULL) {
		fprintf(stderr, "test_milter: script line without an action: %s\n", first);
		return;
	}
	struct rule r = { 0 };
	char *at = strchr(first, '@');
	if (at != NULL && strcmp(first, "mod") != 0) {
		*at = '\0';
		r.match = strdup(at + 1);
	}
	r.stage = strdup(first);
	r.action = strdup(second);
	r.args = strdup(p);
	struct rule *more = realloc(sc->rules, (sc->count + 1) * sizeof(*more));
	if (more == NULL)
		exit(2);
	sc->rules = more;
	sc->rules[sc->count++] = r;
}

static void script_parse(struct script *sc, char *text, bool semicolons)
{
	char *save = NULL;
	for (char *line = strtok_r(text, semicolons ? "\n;" : "\n", &save); line != NULL;
	     line = strtok_r(NULL, semicolons ? "\n;" : "\n", &save)) {
		size_t n = strlen(line);
		while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
			line[--n] = '\0';
		add_line(sc, line);
	}
}

static void script_load(struct script *sc)
{
	memset(sc, 0, sizeof(*sc));
	if (script_path != NULL) {
		FILE *f = fopen(script_path, "r");
		if (f == NULL)
			return; /* no script: continue everywhere */
		struct str text = { 0 };
		char buf[4096];
		size_t n;
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			str_add(&text, buf, n);
		fclose(f);
		if (text.data != NULL)
			script_parse(sc, text.data, false);
		free(text.data);
		return;
	}
	const char *env = getenv("TEST_MILTER_SCRIPT");
	if (env != NULL) {
		char *copy = strdup(env);
		script_parse(sc, copy, true);
		free(copy);
	}
}

static void script_free(struct script *sc)
{
	for (size_t i = 0; i < sc->count; i++) {
		free(sc->rules[i].stage);
		free(sc->rules[i].match);
		free(sc->rules[i].action);
		free(sc->rules[i].args);
	}
	free(sc->rules);
	memset(sc, 0, sizeof(*sc));
}

/* ---- per connection ---------------------------------------------------------- */

struct conn {
	unsigned long id;
	unsigned messages;
	struct script script;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long connections;
static int log_fd = -1;

static struct conn *conn_of(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	if (c != NULL)
		return c;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		exit(2);
	pthread_mutex_lock(&lock);
	c->id = ++connections;
	pthread_mutex_unlock(&lock);
	script_load(&c->script);
	smfi_setpriv(ctx, c);
	return c;
}

/* ---- the log ------------------------------------------------------------------ */

static const char *const macro_names[] = {
	"i", "j", "_", "v", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{if_name}",
	"{if_addr}", "{client_addr}", "{client_port}", "{client_name}", "{client_ptr}",
	"{client_resolve}", "{client_connections}", "{auth_type}", "{auth_authen}",
	"{auth_author}", "{auth_ssf}", "{tls_version}", "{cipher}", "{cipher_bits}",
	"{cert_subject}", "{cert_issuer}", "{verify}", "{mail_mailer}", "{mail_host}",
	"{mail_addr}", "{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}", "{msg_id}",
};

/* One line: {"conn":N,"msg":N,"stage":S,"args":[...],"macros":{...}[,extra]} */
static void log_event(SMFICTX *ctx, const char *stage, const char *const *args,
		      const size_t *lens, size_t nargs, const char *extra)
{
	struct conn *c = conn_of(ctx);
	struct str s = { 0 };

	str_printf(&s, "{\"conn\":%lu,\"msg\":%u,\"stage\":", c->id, c->messages);
	str_json(&s, stage, strlen(stage));
	str_puts(&s, ",\"args\":[");
	for (size_t i = 0; i < nargs; i++) {
		if (i > 0)
			str_puts(&s, ",");
		if (args[i] == NULL)
			str_puts(&s, "null");
		else
			str_json(&s, args[i], lens != NULL ? lens[i] : strlen(args[i]));
	}
	str_puts(&s, "],\"macros\":{");
	bool first = true;
	for (size_t i = 0; i < sizeof(macro_names) / sizeof(macro_names[0]); i++) {
		char *v = smfi_getsymval(ctx, (char *)macro_names[i]);
		if (v == NULL)
			continue;
		if (!first)
			str_puts(&s, ",");
		first = false;
		str_json(&s, macro_names[i], strlen(macro_names[i]));
		str_puts(&s, ":");
		str_json(&s, v, strlen(v));
	}
	str_puts(&s, "}");
	if (extra != NULL)
		str_puts(&s, extra);
	str_puts(&s, "}\n");
	pthread_mutex_lock(&lock);
	size_t off = 0;
	while (off < s.len) {
		ssize_t n = write(log_fd, s.data + off, s.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	pthread_mutex_unlock(&lock);
	free(s.data);
}

static void log_args(SMFICTX *ctx, const char *stage, char **argv)
{
	const char *args[64];
	size_t n = 0;
	for (; argv != NULL && argv[n] != NULL && n < 64; n++)
		args[n] = argv[n];
	log_event(ctx, stage, args, NULL, n, NULL);
}

/* ---- answers ------------------------------------------------------------------ */

static const struct rule *find_rule(struct conn *c, const char *stage, const char *subject)
{
	for (size_t i = 0; i < c->script.count; i++) {
		const struct rule *r = &c->script.rules[i];
		if (strcmp(r->stage, stage) != 0)
			continue;
		if (r->match != NULL && (subject == NULL || strcasestr(subject, r->match) == NULL))
			continue;
		return r;
	}
	return NULL;
}

static void delay(struct conn *c, const char *stage)
{
	for (size_t i = 0; i < c->script.count; i++) {
		const struct rule *r = &c->script.rules[i];
		if (strcmp(r->stage, "delay") != 0 || strcmp(r->action, stage) != 0)
			continue;
		long ms = atol(r->args);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

/* reply CODE XCODE TEXT / mlreply CODE XCODE LINE|LINE */
static sfsistat custom_reply(SMFICTX *ctx, const struct rule *r, bool multi)
{
	char *copy = strdup(r->args), *p = copy;
	char *code = next_word(&p), *xcode = next_word(&p);
	sfsistat st = SMFIS_TEMPFAIL;

	if (code == NULL || xcode == NULL) {
		fprintf(stderr, "test_milter: %s needs CODE XCODE TEXT\n", r->action);
		free(copy);
		return st;
	}
	unescape(p);
	if (code[0] == '5')
		st = SMFIS_REJECT;
	if (!multi) {
		if (smfi_setreply(ctx, code, xcode, p) != MI_SUCCESS)
			fprintf(stderr, "test_milter: smfi_setreply %s %s refused\n", code, xcode);
	} else {
		char *l[MLREPLY_LINES] = { 0 };
		size_t n = 0;
		char *save = NULL;
		for (char *t = strtok_r(p, "|", &save); t != NULL && n < MLREPLY_LINES;
		     t = strtok_r(NULL, "|", &save))
			l[n++] = t;
		if (smfi_setmlreply(ctx, code, xcode, l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7],
				    (char *)NULL) != MI_SUCCESS)
			fprintf(stderr, "test_milter: smfi_setmlreply %s %s refused\n", code, xcode);
	}
	free(copy);
	return st;
}

static sfsistat answer(SMFICTX *ctx, const char *stage, const char *subject)
{
	struct conn *c = conn_of(ctx);
	const struct rule *r = find_rule(c, stage, subject);

	delay(c, stage);
	if (r == NULL || strcmp(r->action, "continue") == 0)
		return SMFIS_CONTINUE;
	if (strcmp(r->action, "accept") == 0)
		return SMFIS_ACCEPT;
	if (strcmp(r->action, "reject") == 0)
		return SMFIS_REJECT;
	if (strcmp(r->action, "tempfail") == 0)
		return SMFIS_TEMPFAIL;
	if (strcmp(r->action, "discard") == 0)
		return SMFIS_DISCARD;
	if (strcmp(r->action, "skip") == 0)
		return SMFIS_SKIP;
	if (strcmp(r->action, "progress") == 0) {
		smfi_progress(ctx);
		return SMFIS_CONTINUE;
	}
	if (strcmp(r->action, "reply") == 0)
		return custom_reply(ctx, r, false);
	if (strcmp(r->action, "mlreply") == 0)
		return custom_reply(ctx, r, true);
	fprintf(stderr, "test_milter: unknown action %s\n", r->action);
	return SMFIS_CONTINUE;
}

/* ---- the changes at the end of the message ---------------------------------------- */

static int do_mod(SMFICTX *ctx, const char *kind, char *p)
{
	if (strcmp(kind, "addheader") == 0) {
		char *name = next_word(&p);
		unescape(p);
		return name != NULL ? smfi_addheader(ctx, name, p) : -1;
	}
	if (strcmp(kind, "insheader") == 0) {
		char *index = next_word(&p), *name = next_word(&p);
		unescape(p);
		return name != NULL ? smfi_insheader(ctx, atoi(index), name, p) : -1;
	}
	if (strcmp(kind, "chgheader") == 0 || strcmp(kind, "delheader") == 0) {
		char *name = next_word(&p), *index = next_word(&p);
		unescape(p);
		if (index == NULL)
			return -1;
		return smfi_chgheader(ctx, name, atoi(index),
				      strcmp(kind, "delheader") == 0 ? NULL : p);
	}
	if (strcmp(kind, "addrcpt") == 0)
		return smfi_addrcpt(ctx, next_word(&p));
	if (strcmp(kind, "addrcpt_par") == 0) {
		char *addr = next_word(&p);
		return smfi_addrcpt_par(ctx, addr, *p != '\0' ? p : NULL);
	}
	if (strcmp(kind, "delrcpt") == 0)
		return smfi_delrcpt(ctx, next_word(&p));
	if (strcmp(kind, "chgfrom") == 0) {
		char *addr = next_word(&p);
		return smfi_chgfrom(ctx, addr, *p != '\0' ? p : NULL);
	}
	if (strcmp(kind, "replacebody") == 0) {
		unescape(p);
		return smfi_replacebody(ctx, (unsigned char *)p, (int)strlen(p));
	}
	if (strcmp(kind, "quarantine") == 0)
		return smfi_quarantine(ctx, p);
	fprintf(stderr, "test_milter: unknown change %s\n", kind);
	return -1;
}

/* replacebody_repeat COUNT TEXT: TEXT COUNT times, in pieces (libmilter
 * sends at most 64 KiB per message to the MTA anyway). */
static int replace_repeat(SMFICTX *ctx, char *p)
{
	char *count_word = next_word(&p);
	long count = count_word != NULL ? atol(count_word) : 0;
	unescape(p);
	size_t n = strlen(p);
	for (long i = 0; i < count; i++)
		if (smfi_replacebody(ctx, (unsigned char *)p, (int)n) != MI_SUCCESS)
			return -1;
	return 0;
}

/* Every mod line in order; their results go into the eom log line. */
static void apply_mods(SMFICTX *ctx, struct conn *c, struct str *results)
{
	str_puts(results, ",\"mods\":[");
	bool first = true;
	for (size_t i = 0; i < c->script.count; i++) {
		const struct rule *r = &c->script.rules[i];
		if (strcmp(r->stage, "mod") != 0)
			continue;
		char *copy = strdup(r->args);
		int rc = strcmp(r->action, "replacebody_repeat") == 0 ? replace_repeat(ctx, copy)
								      : do_mod(ctx, r->action, copy);
		free(copy);
		if (!first)
			str_puts(results, ",");
		first = false;
		str_puts(results, "[");
		str_json(results, r->action, strlen(r->action));
		str_printf(results, ",%d]", rc == MI_SUCCESS ? 0 : -1);
	}
	str_puts(results, "]");
}

/* ---- callbacks ------------------------------------------------------------------ */

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			     unsigned long f2, unsigned long f3, unsigned long *pf0,
			     unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	char extra[160];
	(void)f2;
	(void)f3;
	snprintf(extra, sizeof(extra), ",\"actions\":%lu,\"protocol\":%lu", f0, f1);
	log_event(ctx, "negotiate", NULL, NULL, 0, extra);
	*pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT |
		     SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_QUARANTINE |
		     SMFIF_SETSYMLIST);
	/* every stage, a reply to each, SMFIS_SKIP if the MTA knows it */
	*pf1 = f1 & SMFIP_SKIP;
	*pf2 = 0;
	*pf3 = 0;
	if ((*pf0 & SMFIF_SETSYMLIST) != 0) {
		smfi_setsymlist(ctx, SMFIM_CONNECT,
				"j _ v {daemon_name} {daemon_addr} {if_name} {if_addr} "
				"{client_addr} {client_port} {client_name} {client_ptr}");
		smfi_setsymlist(ctx, SMFIM_HELO,
				"{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}");
		smfi_setsymlist(ctx, SMFIM_ENVFROM,
				"i {auth_type} {auth_authen} {auth_author} {auth_ssf} "
				"{mail_mailer} {mail_host} {mail_addr}");
		smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i {rcpt_mailer} {rcpt_host} {rcpt_addr}");
		smfi_setsymlist(ctx, SMFIM_DATA, "i");
		smfi_setsymlist(ctx, SMFIM_EOH, "i");
		smfi_setsymlist(ctx, SMFIM_EOM, "i {msg_id}");
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	char addr[INET6_ADDRSTRLEN + 8] = "";
	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
	else if (sa != NULL)
		snprintf(addr, sizeof(addr), "family %d", sa->sa_family);
	const char *args[2] = { host, addr };
	log_event(ctx, "connect", args, NULL, 2, NULL);
	return answer(ctx, "connect", host);
}

static sfsistat cb_helo(SMFICTX *ctx, char *name)
{
	const char *args[1] = { name };
	log_event(ctx, "helo", args, NULL, 1, NULL);
	return answer(ctx, "helo", name);
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
	conn_of(ctx)->messages++;
	log_args(ctx, "envfrom", argv);
	return answer(ctx, "envfrom", argv[0]);
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
	log_args(ctx, "envrcpt", argv);
	return answer(ctx, "envrcpt", argv[0]);
}

static sfsistat cb_data(SMFICTX *ctx)
{
	log_event(ctx, "data", NULL, NULL, 0, NULL);
	return answer(ctx, "data", NULL);
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
	const char *args[2] = { name, value };
	log_event(ctx, "header", args, NULL, 2, NULL);
	return answer(ctx, "header", name);
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
	log_event(ctx, "eoh", NULL, NULL, 0, NULL);
	return answer(ctx, "eoh", NULL);
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
	const char *args[1] = { (const char *)data };
	size_t lens[1] = { len };
	log_event(ctx, "body", args, lens, 1, NULL);
	return answer(ctx, "body", NULL);
}

static sfsistat cb_eom(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	struct str results = { 0 };
	const struct rule *r = find_rule(c, "eom", NULL);

	/* the changes only make sense if the message goes on */
	if (r == NULL || strcmp(r->action, "continue") == 0 || strcmp(r->action, "accept") == 0 ||
	    strcmp(r->action, "progress") == 0)
		apply_mods(ctx, c, &results);
	log_event(ctx, "eom", NULL, NULL, 0, results.data);
	free(results.data);
	return answer(ctx, "eom", NULL);
}

static sfsistat cb_abort(SMFICTX *ctx)
{
	log_event(ctx, "abort", NULL, NULL, 0, NULL);
	return SMFIS_CONTINUE;
}

static sfsistat cb_unknown(SMFICTX *ctx, const char *cmd)
{
	const char *args[1] = { cmd };
	log_event(ctx, "unknown", args, NULL, 1, NULL);
	return answer(ctx, "unknown", cmd);
}

static sfsistat cb_close(SMFICTX *ctx)
{
	log_event(ctx, "close", NULL, NULL, 0, NULL);
	struct conn *c = smfi_getpriv(ctx);
	if (c != NULL) {
		script_free(&c->script);
		free(c);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
	.xxfi_name = "postern-test-milter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT |
		      SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_QUARANTINE |
		      SMFIF_SETSYMLIST,
	.xxfi_connect = cb_connect,
	.xxfi_helo = cb_helo,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_unknown = cb_unknown,
	.xxfi_data = cb_data,
	.xxfi_negotiate = cb_negotiate,
};

static int usage(void)
{
	fprintf(stderr, "usage: test_milter -p SOCKET -l LOGFILE [-c SCRIPT] [-t TIMEOUT]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *log_path = NULL;
	int timeout = 30, opt;

	while ((opt = getopt(argc, argv, "p:l:c:t:")) != -1) {
		switch (opt) {
		case 'p': sock = optarg; break;
		case 'l': log_path = optarg; break;
		case 'c': script_path = optarg; break;
		case 't': timeout = atoi(optarg); break;
		default: return usage();
		}
	}
	if (sock == NULL || log_path == NULL || optind != argc)
		return usage();
	log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		fprintf(stderr, "test_milter: %s: %s\n", log_path, strerror(errno));
		return 1;
	}
	if (smfi_setconn((char *)sock) != MI_SUCCESS || smfi_settimeout(timeout) != MI_SUCCESS ||
	    smfi_register(desc) != MI_SUCCESS || smfi_opensocket(true) != MI_SUCCESS) {
		fprintf(stderr, "test_milter: cannot listen on %s\n", sock);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
