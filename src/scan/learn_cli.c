/*
 * learn_cli.c - `postern learn` (see learn_cli.h): each message is parsed
 * as the scanners parse it (scan_message_parse, spam_text_build),
 * tokenized (spam_tokenize) and learned in one transaction of the token
 * store, so the scanners reading it at the same time never wait and
 * never see half a message learned.
 *
 * Output: classifications and the closing summary on stdout; problems,
 * and a progress line (at most once a second, on a terminal or with
 * --progress) on stderr.
 *
 * Untrusted input: the messages (and their file names, printed with
 * control characters as '?'). Privilege: the invoking user, or `user`
 * (the learner) beside a root reader process (learn_input.h).
 */
#include "learn_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/xalloc.h"
#include "learn_input.h"
#include "scan_message.h"
#include "spam.h"

/* The text Bayes reads of a message: as much as the spam stage reads. */
#define LEARN_TEXT_MAX_BODY (512 * 1024)
#define LEARN_TEXT_MAX_URIS 1000

enum learn_mode { MODE_NONE, MODE_SPAM, MODE_HAM, MODE_FORGET, MODE_CLASSIFY, MODE_STATS,
		  MODE_EXPIRE };

struct options {
	enum learn_mode mode;
	bool progress;
	const char **paths;
	size_t count;
};

struct run {
	const struct config *cfg;
	const struct options *opt;
	struct spam_store *store;
	uint64_t *tokens;
	struct mime_limits limits;
	struct spam_text_limits text_limits;
	size_t messages, done, already, switched, unknown, skipped, errors, spammy;
	bool store_failed;
	bool progress, tty;
	double start, last_tick;
	bool progress_shown;
};

static double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* s for a text line: control characters as '?'. */
static void text_field(FILE *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, out);
}

static void print_source(FILE *out, const char *source, unsigned number)
{
	text_field(out, source);
	if (number > 0)
		fprintf(out, " (message %u)", number);
}

/* ---- progress -------------------------------------------------------------------- */

static void progress_tick(struct run *r)
{
	if (!r->progress)
		return;
	double now = mono_seconds();
	if (now - r->last_tick < 1.0)
		return;
	r->last_tick = now;
	double rate = r->messages / (now - r->start);
	fprintf(stderr, "%spostern learn: %zu messages, %.0f/s%s", r->tty ? "\r" : "",
		r->messages, rate, r->tty ? "\033[K" : "\n");
	fflush(stderr);
	r->progress_shown = true;
}

static void progress_end(struct run *r)
{
	if (r->progress_shown && r->tty)
		fputs("\r\033[K", stderr);
}

/* ---- one message ------------------------------------------------------------------- */

static void classify(struct run *r, const struct learn_message *lm, size_t n)
{
	struct spam_bayes_detail d;
	double p = spam_bayes_classify(r->store, r->tokens, n, (uint32_t)r->cfg->bayes_min_learned,
				       &d);
	print_source(stdout, lm->source, lm->number);
	if (p < 0) {
		fputs(": bayes=none\n", stdout);
		r->errors++;
		return;
	}
	printf(": bayes=%.4f tokens=%zu known=%zu used=%zu\n", p, n, d.known, d.used);
	r->spammy += p >= 0.5;
}

static bool learn_one(struct run *r, const struct learn_message *lm, uint64_t id, size_t n)
{
	enum spam_learn_as as = r->opt->mode == MODE_SPAM ? SPAM_LEARN_SPAM
				: r->opt->mode == MODE_HAM ? SPAM_LEARN_HAM : SPAM_LEARN_FORGET;
	enum spam_learn_outcome outcome;
	if (r->store->ops->learn(r->store, id, r->tokens, n, as, &outcome) < 0) {
		progress_end(r);
		fputs("postern learn: ", stderr);
		print_source(stderr, lm->source, lm->number);
		fprintf(stderr, ": %s\n", r->store->ops->last_error(r->store));
		r->store_failed = true;
		return false;
	}
	r->done += outcome == SPAM_LEARN_DONE;
	r->already += outcome == SPAM_LEARN_ALREADY;
	r->switched += outcome == SPAM_LEARN_SWITCHED;
	r->unknown += outcome == SPAM_LEARN_UNKNOWN;
	return true;
}

static bool on_message(void *arg, const struct learn_message *lm)
{
	static const strlist_t no_rcpts = { NULL, 0 };
	static const struct scan_envelope offline = { "", "", &no_rcpts, "", "" };
	struct run *r = arg;
	struct scan_message m = { .env = &offline, .data = lm->data, .len = lm->len };
	struct spam_text t;
	scan_message_parse(&m, &r->limits, 0);
	spam_text_build(&m, &r->text_limits, &t);
	size_t n = spam_tokenize(&t, r->tokens, SPAM_TOKENS_MAX);
	bool go = true;
	r->messages++;
	if (r->opt->mode == MODE_CLASSIFY)
		classify(r, lm, n);
	else
		go = learn_one(r, lm, spam_message_id(&m), n);
	spam_text_free(&t);
	scan_message_free(&m);
	progress_tick(r);
	return go;
}

static void on_problem(void *arg, const char *source, unsigned number, int err)
{
	struct run *r = arg;
	progress_end(r);
	fputs("postern learn: ", stderr);
	print_source(stderr, source, number);
	if (err == EFBIG) {
		fprintf(stderr, ": larger than message_size_limit (%" PRIu64 " bytes), left out\n",
			r->cfg->message_size_limit);
		r->skipped++;
	} else if (err == ENODATA) {
		fputs(": empty, left out\n", stderr);
		r->skipped++;
	} else {
		fprintf(stderr, ": cannot read: %s\n", strerror(err));
		r->errors++;
	}
}

/* ---- a run over the inputs ---------------------------------------------------------- */

static void summary(const struct run *r, double seconds)
{
	const char *cls = r->opt->mode == MODE_SPAM ? "spam" : "ham";
	printf("postern learn: %zu message%s", r->messages, r->messages == 1 ? "" : "s");
	if (r->opt->mode == MODE_CLASSIFY)
		printf(" classified, %zu at 0.5 or more", r->spammy);
	else if (r->opt->mode == MODE_FORGET)
		printf(": %zu forgotten, %zu never learned", r->done, r->unknown);
	else
		printf(": %zu learned as %s, %zu already learned, %zu moved from %s", r->done, cls,
		       r->already, r->switched, r->opt->mode == MODE_SPAM ? "ham" : "spam");
	printf(", %zu left out; %.2f s", r->skipped, seconds);
	if (seconds > 0 && r->messages > 0)
		printf(", %.0f messages/s", r->messages / seconds);
	putchar('\n');
}

/* Too little learned to classify: say so once. */
static bool ready(struct run *r)
{
	uint32_t nspam, nham;
	uint64_t min = r->cfg->bayes_min_learned;
	if (r->store->ops->totals(r->store, &nspam, &nham) < 0) {
		fprintf(stderr, "postern learn: %s\n", r->store->ops->last_error(r->store));
		return false;
	}
	if (nspam >= min && nham >= min)
		return true;
	fprintf(stderr, "postern learn: Bayes has learned %" PRIu32 " spam and %" PRIu32 " ham "
		"messages, fewer than bayes_min_learned (%" PRIu64 ") of each: it cannot "
		"classify yet\n", nspam, nham, min);
	return false;
}

static int status_of(const struct run *r)
{
	if (r->errors > 0 || r->store_failed)
		return LEARN_CLI_ERROR;
	if (r->opt->mode == MODE_CLASSIFY)
		return r->spammy > 0 ? LEARN_CLI_PARTLY : LEARN_CLI_DONE;
	return r->skipped > 0 || r->unknown > 0 ? LEARN_CLI_PARTLY : LEARN_CLI_DONE;
}

/* Learn (or classify) every message of the inputs, read here or, from
 * a root reader process, through pipe_fd (>= 0). */
static int run_inputs(const struct config *cfg, const struct options *opt, int pipe_fd)
{
	struct run r = { .cfg = cfg, .opt = opt };
	char *err = NULL;
	bool writable = opt->mode != MODE_CLASSIFY;
	r.store = spam_store_lmdb_open(cfg->bayes_dir, writable, cfg->bayes_map_size, &err);
	if (r.store == NULL) {
		fprintf(stderr, "postern learn: %s\n", err);
		free(err);
		return LEARN_CLI_ERROR;
	}
	if (opt->mode == MODE_CLASSIFY && !ready(&r)) {
		r.store->ops->close(r.store);
		return LEARN_CLI_ERROR;
	}
	r.tokens = xreallocarray(NULL, SPAM_TOKENS_MAX, sizeof(*r.tokens));
	r.limits.max_depth = (unsigned)cfg->mime_max_depth;
	r.limits.max_parts = (unsigned)cfg->mime_max_parts;
	r.limits.max_header_bytes = (size_t)cfg->mime_max_header_size;
	r.limits.max_decoded_bytes = cfg->mime_max_decoded_size;
	r.limits.no_sniff = true;  /* Bayes reads text and header fields only */
	r.text_limits.max_body = LEARN_TEXT_MAX_BODY;
	r.text_limits.max_uris = LEARN_TEXT_MAX_URIS;
	r.tty = isatty(STDERR_FILENO) == 1;
	r.progress = opt->progress || r.tty;
	r.start = r.last_tick = mono_seconds();

	struct learn_handler h = { on_message, on_problem, &r };
	struct learn_splitter *sp = learn_splitter_new(cfg->message_size_limit, &h);
	struct learn_sink sink = learn_splitter_sink(sp);
	if (pipe_fd >= 0) {
		if (learn_pipe_read(pipe_fd, &sink) < 0) {
			fputs("postern learn: the reader process stopped in the middle of a file\n",
			      stderr);
			r.errors++;
		}
	} else {
		learn_walk(opt->paths, opt->count, &sink);
	}
	learn_splitter_free(&sp);
	progress_end(&r);
	summary(&r, mono_seconds() - r.start);

	uint64_t removed = 0;
	if (writable && !r.store_failed) {
		if (spam_bayes_maintain(r.store, (uint32_t)cfg->bayes_expiry_days,
					cfg->bayes_max_tokens, false, &removed) < 0) {
			fprintf(stderr, "postern learn: expiry: %s\n",
				r.store->ops->last_error(r.store));
			r.errors++;
		} else if (removed > 0) {
			printf("postern learn: %" PRIu64 " tokens expired\n", removed);
		}
	}
	r.store->ops->close(r.store);
	free(r.tokens);
	return status_of(&r);
}

/* Root: this process reads the inputs and passes their bytes to a
 * child that becomes `user` before it parses or learns anything. */
static int run_split(const struct config *cfg, const struct options *opt, learn_become_fn become)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0) {
		fprintf(stderr, "postern learn: pipe: %s\n", strerror(errno));
		return LEARN_CLI_ERROR;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "postern learn: fork: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return LEARN_CLI_ERROR;
	}
	if (pid == 0) {
		close(fds[1]);
		const char *own = opt->mode == MODE_CLASSIFY ? NULL : cfg->bayes_dir;
		int rc = become(cfg, own) < 0 ? LEARN_CLI_ERROR : run_inputs(cfg, opt, fds[0]);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	close(fds[0]);
	signal(SIGPIPE, SIG_IGN);  /* the learner may stop first: EPIPE then */
	int fd = fds[1];
	struct learn_sink sink = learn_pipe_sink(&fd);
	learn_walk(opt->paths, opt->count, &sink);
	close(fd);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return LEARN_CLI_ERROR;
	return WIFEXITED(status) ? WEXITSTATUS(status) : LEARN_CLI_ERROR;
}

/* ---- --stats and --expire ------------------------------------------------------------- */

static void print_day(const char *label, uint32_t day)
{
	if (day == 0) {
		printf("%s: never\n", label);
		return;
	}
	time_t t = (time_t)day * 86400;
	struct tm tm;
	char text[32];
	gmtime_r(&t, &tm);
	strftime(text, sizeof(text), "%Y-%m-%d", &tm);
	printf("%s: %s\n", label, text);
}

static int stats(const struct config *cfg)
{
	char *err = NULL;
	struct spam_store *s = spam_store_lmdb_open(cfg->bayes_dir, false, 0, &err);
	struct spam_store_stats st;
	if (s == NULL || s->ops->stats(s, &st) < 0) {
		fprintf(stderr, "postern learn: %s\n", s != NULL ? s->ops->last_error(s) : err);
		free(err);
		if (s != NULL)
			s->ops->close(s);
		return LEARN_CLI_ERROR;
	}
	uint64_t min = cfg->bayes_min_learned;
	printf("bayes_dir: %s\n", cfg->bayes_dir);
	printf("spam: %" PRIu32 "\n", st.nspam);
	printf("ham: %" PRIu32 "\n", st.nham);
	printf("ready: %s (bayes_min_learned = %" PRIu64 " of each)\n",
	       st.nspam >= min && st.nham >= min ? "yes" : "no", min);
	printf("tokens: %" PRIu64, st.tokens);
	if (cfg->bayes_max_tokens > 0)
		printf(" (bayes_max_tokens = %" PRIu64 ")", cfg->bayes_max_tokens);
	printf("\nmessages: %" PRIu64 " learned records\n", st.messages);
	print_day("last expiry", st.last_expire);
	printf("size: %.1f MiB used of a %.1f MiB map\n", st.used_bytes / 1048576.0,
	       st.map_bytes / 1048576.0);
	s->ops->close(s);
	return LEARN_CLI_DONE;
}

static int expire(const struct config *cfg)
{
	char *err = NULL;
	struct spam_store *s = spam_store_lmdb_open(cfg->bayes_dir, true, cfg->bayes_map_size, &err);
	if (s == NULL) {
		fprintf(stderr, "postern learn: %s\n", err);
		free(err);
		return LEARN_CLI_ERROR;
	}
	uint64_t removed;
	struct spam_store_stats st;
	int rc = spam_bayes_maintain(s, (uint32_t)cfg->bayes_expiry_days, cfg->bayes_max_tokens,
				     true, &removed);
	if (rc == 0)
		rc = s->ops->stats(s, &st);
	if (rc < 0)
		fprintf(stderr, "postern learn: %s\n", s->ops->last_error(s));
	else
		printf("postern learn: %" PRIu64 " tokens expired, %" PRIu64 " kept\n", removed,
		       st.tokens);
	s->ops->close(s);
	return rc < 0 ? LEARN_CLI_ERROR : LEARN_CLI_DONE;
}

/* ---- the command line ----------------------------------------------------------------- */

static int usage_error(const char *what)
{
	fprintf(stderr, "postern learn: %s\n"
		"usage: postern learn --spam|--ham|--forget [--progress] FILE|DIR|-...\n"
		"       postern learn --classify FILE|DIR|-...\n"
		"       postern learn --stats | --expire\n", what);
	return LEARN_CLI_ERROR;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
	static const struct { const char *name; enum learn_mode mode; } modes[] = {
		{ "--spam", MODE_SPAM }, { "--ham", MODE_HAM }, { "--forget", MODE_FORGET },
		{ "--classify", MODE_CLASSIFY }, { "--stats", MODE_STATS },
		{ "--expire", MODE_EXPIRE },
	};
	bool stdin_taken = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		enum learn_mode m = MODE_NONE;
		for (size_t k = 0; k < ARRAY_LEN(modes); k++)
			if (strcmp(a, modes[k].name) == 0)
				m = modes[k].mode;
		if (m != MODE_NONE) {
			/* --spam --forget (or --ham --forget): forget, whatever it was */
			bool forget_pair = (m == MODE_FORGET && (opt->mode == MODE_SPAM ||
								 opt->mode == MODE_HAM)) ||
					   (opt->mode == MODE_FORGET && (m == MODE_SPAM || m == MODE_HAM));
			if (opt->mode != MODE_NONE && opt->mode != m && !forget_pair)
				return usage_error("choose one of --spam, --ham, --forget, --classify, "
						   "--stats, --expire");
			opt->mode = forget_pair ? MODE_FORGET : m;
		} else if (strcmp(a, "--progress") == 0) {
			opt->progress = true;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "postern learn: unknown option %s\n", a);
			return LEARN_CLI_ERROR;
		} else {
			if (strcmp(a, "-") == 0 && stdin_taken)
				return usage_error("- (standard input) given twice");
			stdin_taken |= strcmp(a, "-") == 0;
			opt->paths[opt->count++] = a;
		}
	}
	if (opt->mode == MODE_NONE)
		return usage_error("say what to do: --spam, --ham, --forget, --classify, --stats "
				   "or --expire");
	bool takes_inputs = opt->mode != MODE_STATS && opt->mode != MODE_EXPIRE;
	if (takes_inputs && opt->count == 0)
		return usage_error("name at least one message FILE, DIR, or - for standard input");
	if (!takes_inputs && opt->count > 0)
		return usage_error("--stats and --expire take no FILE");
	return LEARN_CLI_DONE;
}

/* Not root: a store written as another account than `user` may be one
 * the scanners cannot read. */
static void warn_if_not_user(const struct config *cfg)
{
	struct passwd *pw = cfg->user[0] != '\0' ? getpwnam(cfg->user) : NULL;
	if (pw != NULL && pw->pw_uid != geteuid())
		fprintf(stderr, "postern learn: warning: running as uid %u, not as user %s: the "
			"scanners, which run as %s, need to read %s\n", (unsigned)geteuid(),
			cfg->user, cfg->user, cfg->bayes_dir);
}

int learn_cli_main(const struct config *cfg, int argc, char **argv, learn_become_fn become)
{
	struct options opt = { MODE_NONE, false, xcalloc((size_t)argc + 1, sizeof(char *)), 0 };
	int rc = parse_options(argc, argv, &opt);
	if (rc != LEARN_CLI_DONE)
		goto out;
	rc = LEARN_CLI_ERROR;
	if (cfg->bayes_dir[0] == '\0') {
		fprintf(stderr, "postern learn: %s: bayes_dir is not set: Bayes is off\n", cfg->path);
		goto out;
	}
	bool root = geteuid() == 0;
	if (!root && opt.mode != MODE_STATS && opt.mode != MODE_CLASSIFY)
		warn_if_not_user(cfg);
	if (opt.mode == MODE_STATS || opt.mode == MODE_EXPIRE) {
		const char *own = opt.mode == MODE_EXPIRE ? cfg->bayes_dir : NULL;
		if (!root || become(cfg, own) == 0)
			rc = opt.mode == MODE_STATS ? stats(cfg) : expire(cfg);
	} else {
		rc = root ? run_split(cfg, &opt, become) : run_inputs(cfg, &opt, -1);
	}
out:
	free(opt.paths);
	return rc;
}
