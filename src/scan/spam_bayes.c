/*
 * spam_bayes.c - Bayes's arithmetic and policy (spam.h): the probability
 * that a message is spam from its tokens' counts, learning one message,
 * the id it is learned under, and when to expire tokens.
 *
 * The probability, as Gary Robinson described it and SpamBayes and
 * bogofilter compute it:
 *   - per token w, seen in s of nspam spam and h of nham ham messages:
 *       p(w) = (s/nspam) / (s/nspam + h/nham)
 *       f(w) = (S*X + n*p(w)) / (S + n),  n = s + h,  S = 0.45, X = 0.5
 *     (a token seen rarely stays near X: little evidence, little weight;
 *     S = 0.45, SpamBayes's choice, caught 1 % more of make eval's spam
 *     than S = 1 at the same ham rate; SpamAssassin's S = 0.03 with its
 *     0.346 strength floor caught less and flagged more ham);
 *   - the tokens whose |f - 0.5| > 0.1, the 150 strongest of them,
 *     combined with Fisher's method: with C(x, k) the probability that a
 *     chi-square variable of k degrees of freedom is at least x,
 *       H = C(-2 sum ln f,       2N)   (small when the tokens say ham)
 *       S = C(-2 sum ln (1 - f), 2N)   (small when they say spam)
 *       probability = (1 + H - S) / 2.
 *     So agreeing tokens push it to 0 or 1, and a message with strong
 *     evidence both ways lands near 0.5 ("unsure") instead of at an
 *     extreme.
 *
 * Untrusted input: the message (through spam_tokenize), the store's
 * counts (a count larger than its total is cut to it). Privilege:
 * scanners and `postern learn`.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "spam.h"

#define ROBINSON_S 0.45
#define ROBINSON_X 0.5
#define MIN_STRENGTH 0.1
#define MAX_CLUES 150
#define MESSAGE_ID_SEED 0x6c6561726e656431ULL  /* never change: learned ids live on disk */

/* ---- the arithmetic -------------------------------------------------------------- */

/* Robinson's f(w). */
static double token_probability(const struct spam_token_counts *c, uint32_t nspam, uint32_t nham)
{
	uint32_t s = c->spam < nspam ? c->spam : nspam;
	uint32_t h = c->ham < nham ? c->ham : nham;
	double n = (double)s + h;
	if (n == 0)
		return ROBINSON_X;
	double b = (double)s / nspam, g = (double)h / nham;
	double p = b / (b + g);
	return (ROBINSON_S * ROBINSON_X + n * p) / (ROBINSON_S + n);
}

/* The probability that a chi-square variable with 2k degrees of freedom
 * is at least x2: e^-m (1 + m + m^2/2! + ... + m^(k-1)/(k-1)!), m = x2/2,
 * summed in the log domain so that no term overflows or underflows early. */
static double chi2_tail(double x2, size_t k)
{
	double m = x2 / 2.0;
	if (m <= 0)
		return 1.0;
	double log_term = -m, sum = exp(log_term), log_m = log(m);
	for (size_t i = 1; i < k; i++) {
		log_term += log_m - log((double)i);
		sum += exp(log_term);
	}
	return sum < 1.0 ? sum : 1.0;
}

struct clue {
	double f, strength;
	uint64_t token;
};

static int stronger_first(const void *a, const void *b)
{
	const struct clue *x = a, *y = b;
	if (x->strength != y->strength)
		return x->strength > y->strength ? -1 : 1;
	return x->token < y->token ? -1 : x->token > y->token;
}

static double combine(const struct clue *clues, size_t n)
{
	if (n == 0)
		return 0.5;
	double ln_f = 0, ln_not_f = 0;
	for (size_t i = 0; i < n; i++) {
		ln_f += log(clues[i].f);
		ln_not_f += log(1.0 - clues[i].f);
	}
	double hamminess = chi2_tail(-2.0 * ln_f, n);
	double spamminess = chi2_tail(-2.0 * ln_not_f, n);
	return (1.0 + hamminess - spamminess) / 2.0;
}

double spam_bayes_classify(struct spam_store *store, const uint64_t *tokens, size_t n,
			   uint32_t min_learned, struct spam_bayes_detail *detail_r)
{
	struct spam_bayes_detail d = { 0 };
	struct spam_token_counts *counts = xcalloc(n + 1, sizeof(*counts));
	struct clue *clues = xcalloc(n + 1, sizeof(*clues));
	double p = -1.0;
	if (store->ops->lookup(store, tokens, n, counts, &d.nspam, &d.nham) < 0)
		goto out;
	if (d.nspam == 0 || d.nham == 0 || d.nspam < min_learned || d.nham < min_learned)
		goto out;
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		if (counts[i].spam == 0 && counts[i].ham == 0)
			continue;
		d.known++;
		double f = token_probability(&counts[i], d.nspam, d.nham);
		double strength = fabs(f - 0.5);
		if (strength > MIN_STRENGTH)
			clues[used++] = (struct clue){ f, strength, tokens[i] };
	}
	qsort(clues, used, sizeof(*clues), stronger_first);
	d.used = used < MAX_CLUES ? used : MAX_CLUES;
	p = combine(clues, d.used);
out:
	free(counts);
	free(clues);
	if (detail_r != NULL)
		*detail_r = d;
	return p;
}

double spam_bayes_probability(struct spam_store *store, const uint64_t *tokens, size_t n,
			      uint32_t min_learned)
{
	return spam_bayes_classify(store, tokens, n, min_learned, NULL);
}

/* ---- learning ---------------------------------------------------------------------- */

/* Hash of the body with line ends as LF (a copy kept with CRLF or LF is
 * the same message) and trailing line ends dropped. */
static uint64_t body_hash(const unsigned char *p, size_t len)
{
	XXH64_state_t *st = XXH64_createState();
	if (st == NULL)
		log_fatal("out of memory");
	XXH64_reset(st, MESSAGE_ID_SEED);
	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	size_t start = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			XXH64_update(st, p + start, i - start);
			start = i + 1;
		}
	}
	XXH64_update(st, p + start, len - start);
	uint64_t h = XXH64_digest(st);
	XXH64_freeState(st);
	return h;
}

uint64_t spam_message_id(const struct scan_message *m)
{
	const char *mid = "";
	for (size_t i = 0; i < m->header_count; i++)
		if (m->headers[i].part == 0 && str_eq_nocase(m->headers[i].name, "message-id")) {
			mid = m->headers[i].decoded != NULL ? m->headers[i].decoded : "";
			break;
		}
	/* <local@domain> without what surrounds it */
	const char *lt = strchr(mid, '<');
	size_t mid_len = lt != NULL ? strcspn(lt, ">") + 1 : strlen(mid);
	if (lt != NULL)
		mid = lt;
	while (mid_len > 0 && (mid[mid_len - 1] == ' ' || mid[mid_len - 1] == '\t' ||
			       mid[mid_len - 1] == '\0'))
		mid_len--;
	/* the body: after the first empty line */
	size_t body = m->len;
	for (size_t i = 0; i + 1 < m->len; i++) {
		if (m->data[i] != '\n')
			continue;
		if (m->data[i + 1] == '\n') {
			body = i + 2;
			break;
		}
		if (m->data[i + 1] == '\r' && i + 2 < m->len && m->data[i + 2] == '\n') {
			body = i + 3;
			break;
		}
	}
	unsigned char b[8 + 998];
	uint64_t h = body_hash(m->data + body, m->len - body);
	memcpy(b, &h, 8);
	if (mid_len > sizeof(b) - 8)
		mid_len = sizeof(b) - 8;
	memcpy(b + 8, mid, mid_len);
	return XXH64(b, 8 + mid_len, MESSAGE_ID_SEED);
}

int spam_bayes_learn(struct spam_store *store, const struct spam_text *t,
		     enum spam_learn_as as, enum spam_learn_outcome *outcome_r)
{
	uint64_t *tokens = xreallocarray(NULL, SPAM_TOKENS_MAX, sizeof(*tokens));
	size_t n = spam_tokenize(t, tokens, SPAM_TOKENS_MAX);
	int rc = store->ops->learn(store, spam_message_id(t->msg), tokens, n, as, outcome_r);
	free(tokens);
	return rc;
}

/* ---- expiry --------------------------------------------------------------------------- */

int spam_bayes_maintain(struct spam_store *store, uint32_t age_days, uint64_t max_tokens,
			bool force, uint64_t *removed_r)
{
	struct spam_store_stats st;
	uint32_t today = (uint32_t)(time(NULL) / 86400);
	*removed_r = 0;
	if (store->ops->stats(store, &st) < 0)
		return -1;
	bool due = st.last_expire < today || (max_tokens > 0 && st.tokens > max_tokens);
	if (!force && !due)
		return 0;
	uint32_t before = age_days > 0 && today > age_days ? today - age_days : 0;
	return store->ops->expire(store, before, SPAM_EXPIRE_MIN_COUNT, max_tokens, removed_r);
}
