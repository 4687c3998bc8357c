/*
 * spam_eval.c - the eval: tests postern has built in, under the names
 * SpamAssassin's rule files call them (so that those rules run) and a few
 * of postern's own for its default rules: header anomalies (a missing To,
 * an all-capitals Subject, illegal bytes, repeated fields, a Date far
 * from the Received times, a broken Received trail), body and MIME facts
 * (HTML only, images with little text, invisible text, capitals), Bayes'
 * probability bands, and link tricks (anchor text naming another domain,
 * IP-literal and punycode hosts, a display name naming another domain).
 * Also which SpamAssassin plugins and features postern counts as present
 * for "ifplugin" and "if can(...)": only those whose rules it can run.
 *
 * Each test returns 0 (no hit) or the hit's value. Written anew from
 * SpamAssassin's documented behaviour.
 *
 * Input: the message's views (hostile), bounded by spam_text. Runs in the
 * scanners; the arguments were checked at load (args_ok).
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/strutil.h"
#include "spam_rules_impl.h"

/* ---- plugins and features ------------------------------------------------------- */

static const char *const plugins_present[] = {
	"Mail::SpamAssassin::Plugin::Check",
	"Mail::SpamAssassin::Plugin::Bayes",
	"Mail::SpamAssassin::Plugin::HeaderEval",
	"Mail::SpamAssassin::Plugin::BodyEval",
	"Mail::SpamAssassin::Plugin::MIMEEval",
	"Mail::SpamAssassin::Plugin::HTMLEval",
	"Mail::SpamAssassin::Plugin::MIMEHeader",
	"Mail::SpamAssassin::Plugin::ReplaceTags",
};

static const char *const features_present[] = {
	/* metas whose dependencies are missing read them as 0 */
	"Mail::SpamAssassin::Conf::feature_bug6558_free",
	/* PCRE2 takes Perl 5.10's syntax (possessive quantifiers ...) */
	"Mail::SpamAssassin::Conf::perl_min_version_5010000",
	"Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
	"Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length",
};

static bool in_list(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

bool spam_plugin_present(const char *name)
{
	/* "ifplugin Mail::...::X # {" has its comment cut already; spaces too */
	char tmp[128];
	size_t n = strcspn(name, " \t");
	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, name, n);
	tmp[n] = '\0';
	return in_list(plugins_present, ARRAY_LEN(plugins_present), tmp);
}

bool spam_feature_present(const char *name)
{
	return in_list(features_present, ARRAY_LEN(features_present), name);
}

/* ---- helpers -------------------------------------------------------------------- */

static double arg_num(const struct spam_eval_args *a, size_t i, double dflt)
{
	return i < a->count && !isnan(a->num[i]) ? a->num[i] : dflt;
}

/* Every argument a number ('undef' allowed where says undef_ok). */
static bool numbers_ok(const struct spam_eval_args *a)
{
	for (size_t i = 0; i < a->count; i++)
		if (isnan(a->num[i]) && strcmp(a->str[i], "undef") != 0)
			return false;
	return true;
}

static const struct scan_message *msg(struct spam_run *run)
{
	return run->t != NULL ? run->t->msg : NULL;
}

/* The domain of an address (after the last '@'), lower case, into out. */
static void domain_of(const char *addr, char *out, size_t outlen)
{
	const char *at = strrchr(addr, '@');
	const char *d = at ? at + 1 : addr;
	size_t n = strcspn(d, " \t>\"'");
	if (n >= outlen)
		n = outlen - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)d[i]);
	out[n] = '\0';
	while (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
}

/* The organisation's part of a host name: the last two labels, or three
 * under a two-letter country code with a short second level (co.uk). */
static const char *org_domain(const char *host)
{
	size_t n = strlen(host);
	const char *labels[4] = { NULL };
	size_t found = 0;
	for (size_t i = n; i > 0 && found < 3; i--)
		if (host[i - 1] == '.')
			labels[found++] = host + i;
	/* labels[0] = TLD, labels[1] = second level + ... */
	if (found == 0)
		return host;
	if (found >= 2) {
		size_t tld = strlen(labels[0]);
		size_t second = (size_t)(labels[0] - labels[1]) - 1;
		if (tld == 2 && second <= 3)
			return found >= 3 ? labels[2] : host;
	}
	return found >= 2 ? labels[1] : host;
}

static bool same_org(const char *a, const char *b)
{
	return a[0] != '\0' && b[0] != '\0' && str_eq_nocase(org_domain(a), org_domain(b));
}

static bool is_domainish(const char *s, size_t n)
{
	/* letters/digits/hyphens in labels, a dot, a TLD of 2+ letters */
	size_t dot = 0;
	bool alpha_tld = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			dot = i + 1;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-')
			return false;
	}
	if (dot == 0 || n - dot < 2)
		return false;
	alpha_tld = true;
	for (size_t i = dot; i < n; i++)
		alpha_tld = alpha_tld && isalpha((unsigned char)s[i]);
	return alpha_tld;
}

/* The first domain named in free text ("support@bank.example",
 * "www.bank.example", "https://bank.example/..."), lower case. */
static bool domain_in_text(const char *text, char *out, size_t outlen)
{
	const char *p = text;
	while (*p != '\0') {
		while (*p != '\0' && !isalnum((unsigned char)*p))
			p++;
		const char *b = p;
		while (*p != '\0' && (isalnum((unsigned char)*p) || *p == '.' || *p == '-' ||
				      *p == '@' || *p == '_' || *p == '+'))
			p++;
		size_t n = (size_t)(p - b);
		while (n > 0 && b[n - 1] == '.')
			n--;
		const char *at = memchr(b, '@', n);
		const char *d = at ? at + 1 : b;
		size_t dn = n - (size_t)(d - b);
		if (dn > 0 && dn < outlen && is_domainish(d, dn)) {
			for (size_t i = 0; i < dn; i++)
				out[i] = (char)tolower((unsigned char)d[i]);
			out[dn] = '\0';
			return true;
		}
		if (*p == ':' && strncmp(p, "://", 3) == 0)
			p += 3;
	}
	return false;
}

/* ---- dates ---------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* An RFC 5322 date ("Tue, 3 Jun 2008 11:05:30 +0200", obsolete zones and
 * two-digit years too), seconds since the epoch; INT64_MIN if unreadable. */
static int64_t parse_date(const char *s)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	const char *p = s;
	while (*p == ' ' || *p == '\t')
		p++;
	if (isalpha((unsigned char)*p)) {
		/* a day name */
		while (isalpha((unsigned char)*p))
			p++;
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
	}
	char *end;
	long day = strtol(p, &end, 10);
	if (end == p || day < 1 || day > 31)
		return INT64_MIN;
	p = end;
	while (*p == ' ' || *p == '-')
		p++;
	char mon[4] = { 0 };
	for (int i = 0; i < 3; i++) {
		if (!isalpha((unsigned char)p[i]))
			return INT64_MIN;
		mon[i] = (char)tolower((unsigned char)p[i]);
	}
	const char *mpos = strstr(months, mon);
	if (mpos == NULL || (mpos - months) % 3 != 0)
		return INT64_MIN;
	unsigned month = (unsigned)((mpos - months) / 3) + 1;
	while (isalpha((unsigned char)*p))
		p++;
	while (*p == ' ' || *p == '-')
		p++;
	long year = strtol(p, &end, 10);
	if (end == p)
		return INT64_MIN;
	if (end - p <= 2)
		year += year < 50 ? 2000 : 1900;
	else if (end - p == 3)
		year += 1900;
	if (year < 1900 || year > 9999)
		return INT64_MIN;
	p = end;
	long hh = 0, mm = 0, ss = 0;
	hh = strtol(p, &end, 10);
	if (end == p || *end != ':' || hh > 23)
		return INT64_MIN;
	p = end + 1;
	mm = strtol(p, &end, 10);
	if (end == p || mm > 59)
		return INT64_MIN;
	p = end;
	if (*p == ':') {
		ss = strtol(p + 1, &end, 10);
		if (end == p + 1 || ss > 60)
			return INT64_MIN;
		p = end;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	long offset = 0;  /* seconds east of UTC */
	if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int digits = 0;
		long v = 0;
		for (p++; isdigit((unsigned char)*p) && digits < 4; p++, digits++)
			v = v * 10 + (*p - '0');
		if (digits == 4)
			offset = sign * ((v / 100) * 3600 + (v % 100) * 60);
	} else {
		static const struct {
			const char *name;
			int hours;
		} zones[] = {
			{ "EDT", -4 }, { "EST", -5 }, { "CDT", -5 }, { "CST", -6 },
			{ "MDT", -6 }, { "MST", -7 }, { "PDT", -7 }, { "PST", -8 },
		};
		for (size_t i = 0; i < ARRAY_LEN(zones); i++)
			if (strncmp(p, zones[i].name, 3) == 0)
				offset = zones[i].hours * 3600L;
	}
	int64_t t = days_from_civil(year, month, (unsigned)day) * 86400 + hh * 3600 + mm * 60 + ss;
	return t - offset;
}

static int64_t date_field(struct spam_run *run)
{
	if (!run->date_done) {
		run->date_done = true;
		const char *d = spam_header_first(run->t, "Date", false);
		run->date = d != NULL ? parse_date(d) : INT64_MIN;
	}
	return run->date;
}

/* ---- header tests ---------------------------------------------------------------- */

static double ev_missing_to(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	const char *to = spam_header_first(run->t, "To", false);
	if (to == NULL || to[strspn(to, " \t")] == '\0')
		to = spam_header_first(run->t, "Apparently-To", false);
	return to == NULL || to[strspn(to, " \t")] == '\0';
}

static double ev_subject_all_caps(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	const char *s = spam_header_first(run->t, "Subject", false);
	if (s == NULL)
		return 0;
	/* reply and forward prefixes do not count */
	static const char *const prefixes[] = { "re:", "fwd:", "fw:", "aw:", "wg:", "sv:", "vs:" };
	bool again = true;
	while (again) {
		again = false;
		while (isspace((unsigned char)*s))
			s++;
		for (size_t i = 0; i < ARRAY_LEN(prefixes); i++) {
			if (str_has_prefix_nocase(s, prefixes[i])) {
				s += strlen(prefixes[i]);
				again = true;
			}
		}
	}
	size_t len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len < 10 || memchr(s, ' ', len) == NULL)
		return 0;
	size_t letters = 0;
	for (size_t i = 0; i < len; i++) {
		if (islower((unsigned char)s[i]))
			return 0;
		letters += isupper((unsigned char)s[i]) != 0;
	}
	/* Subjects encoded in scripts without case come out as no letters */
	return letters > 0;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
			: (c & 0xf8) == 0xf0 ? 3 : 9;
		if (k == 9 || (k == 1 && c < 0xc2) || (k > 0 && i + k >= n))
			return false;
		for (size_t j = 1; j <= k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		i += k + 1;
	}
	return true;
}

static double ev_illegal_chars(struct spam_run *run, const struct spam_eval_args *a)
{
	const char *name = a->str[0];
	double ratio = a->num[1], min_count = a->num[2];
	buf_t text = BUF_INIT;
	const struct scan_message *m = msg(run);
	bool all = strcmp(name, "ALL") == 0;
	for (size_t i = 0; m != NULL && i < m->header_count; i++) {
		const struct scan_header *h = &m->headers[i];
		if (h->part != 0 || h->raw == NULL || (!all && !str_eq_nocase(h->name, name)))
			continue;
		if (text.len > 0)
			buf_putc(&text, '\n');
		buf_puts(&text, h->raw);
	}
	double hit = 0;
	const unsigned char *s = (const unsigned char *)buf_cstr(&text);
	size_t n = text.len, illegal = 0, exempt = 0, controls = 0;
	bool non_ascii = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c >= 0x80)
			non_ascii = true;
		if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c >= 0x7f)
			illegal++;
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			controls++;
		if (c == 0xa2 || c == 0xa3 || c == 0xae)
			exempt++;
	}
	/* UTF-8 without control characters is fine (SMTPUTF8 mail) */
	bool fine_utf8 = non_ascii && controls == 0 && valid_utf8(s, n);
	if (illegal > 0 && str_eq_nocase(name, "Subject") && exempt == 1)
		illegal--;
	if (!fine_utf8 && n > 0 && strspn((const char *)s, " \t\n") < n)
		hit = (double)illegal / (double)n >= ratio && (double)illegal >= min_count;
	buf_free(&text);
	return hit;
}

static bool illegal_args_ok(const struct spam_eval_args *a)
{
	return a->count == 3 && !isnan(a->num[1]) && !isnan(a->num[2]);
}

static double ev_header_count_range(struct spam_run *run, const struct spam_eval_args *a)
{
	double n = (double)spam_header_count(run->t, a->str[0]);
	return n >= arg_num(a, 1, 0) && n <= arg_num(a, 2, INFINITY);
}

static bool count_range_args_ok(const struct spam_eval_args *a)
{
	return a->count == 3 && !isnan(a->num[1]) && !isnan(a->num[2]);
}

/* The date after the last ';' of a Received field. */
static int64_t received_time(const char *v)
{
	const char *semi = strrchr(v, ';');
	return semi ? parse_date(semi + 1) : INT64_MIN;
}

static double ev_shifted_date(struct spam_run *run, const struct spam_eval_args *a)
{
	int64_t date = date_field(run);
	const struct scan_message *m = msg(run);
	if (date == INT64_MIN || m == NULL)
		return 0;
	/* the Received time nearest the Date (the last one only if it is
	 * not the same: SpamAssassin skips a zero difference there) */
	int64_t best = 0;
	bool have = false;
	for (size_t i = 0; i < m->header_count; i++) {
		const struct scan_header *h = &m->headers[i];
		if (h->part != 0 || !str_eq_nocase(h->name, "Received") || h->decoded == NULL)
			continue;
		int64_t t = received_time(h->decoded);
		if (t == INT64_MIN)
			continue;
		int64_t diff = date - t;
		if (!have || llabs(diff) < llabs(best)) {
			best = diff;
			have = true;
		}
	}
	if (!have)
		return 0;
	double hours_lo = a->count > 0 && !isnan(a->num[0]) ? a->num[0] * 3600 : -INFINITY;
	double hours_hi = a->count > 1 && !isnan(a->num[1]) ? a->num[1] * 3600 : INFINITY;
	return (double)best >= hours_lo && (double)best < hours_hi;
}

/* The host after a keyword ("from", "by") in a Received field. */
static bool received_host(const char *v, const char *word, char *out, size_t outlen)
{
	size_t wl = strlen(word);
	for (const char *p = v; *p != '\0'; p++) {
		if ((p == v || isspace((unsigned char)p[-1])) && strncasecmp(p, word, wl) == 0 &&
		    isspace((unsigned char)p[wl])) {
			const char *h = p + wl;
			while (isspace((unsigned char)*h))
				h++;
			size_t n = 0;
			while (h[n] != '\0' && !isspace((unsigned char)h[n]) && h[n] != ';' &&
			       h[n] != '(' && n + 1 < outlen) {
				out[n] = (char)tolower((unsigned char)h[n]);
				n++;
			}
			out[n] = '\0';
			return n > 0;
		}
	}
	return false;
}

/*
 * A trail of Received fields where a relay's name ("by") does not match
 * what the next one down the chain saw it as ("from" and its comment):
 * more than one break in the chain looks forged.
 */
static double ev_forged_received_trail(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	const struct scan_message *m = msg(run);
	if (m == NULL)
		return 0;
	const char *prev_from_text = NULL;  /* the newer field's whole value */
	unsigned breaks = 0;
	for (size_t i = 0; i < m->header_count; i++) {
		const struct scan_header *h = &m->headers[i];
		if (h->part != 0 || !str_eq_nocase(h->name, "Received") || h->decoded == NULL)
			continue;
		char by[256];
		if (prev_from_text != NULL && received_host(h->decoded, "by", by, sizeof(by)) &&
		    strchr(by, '.') != NULL) {
			/* the newer field should name this relay somewhere in its
			 * "from" part (helo, reverse DNS) */
			const char *org = org_domain(by);
			char from_part[512];
			size_t k = strcspn(prev_from_text, ";");
			if (k >= sizeof(from_part))
				k = sizeof(from_part) - 1;
			for (size_t j = 0; j < k; j++)
				from_part[j] = (char)tolower((unsigned char)prev_from_text[j]);
			from_part[k] = '\0';
			const char *by_kw = strstr(from_part, " by ");
			if (by_kw != NULL)
				from_part[by_kw - from_part] = '\0';
			if (strstr(from_part, org) == NULL)
				breaks++;
		}
		prev_from_text = h->decoded;
	}
	return breaks > 1;
}

/* ---- sender tests ---------------------------------------------------------------- */

/* The From display name names a domain other than the From address's. */
static double ev_fromname_spoof(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	const char *from = spam_header_first(run->t, "From", false);
	if (from == NULL)
		return 0;
	buf_t name = BUF_INIT, addr = BUF_INIT;
	spam_header_display_name(from, &name);
	spam_header_addr(from, &addr);
	char named[256], real[256];
	double hit = 0;
	if (domain_in_text(buf_cstr(&name), named, sizeof(named)) && strchr(buf_cstr(&addr), '@')) {
		domain_of(buf_cstr(&addr), real, sizeof(real));
		hit = !same_org(named, real);
	}
	buf_free(&name);
	buf_free(&addr);
	return hit;
}

/* Reply-To's address is in another organisation's domain than From's. */
static double ev_replyto_other_domain(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	const char *from = spam_header_first(run->t, "From", false);
	const char *reply = spam_header_first(run->t, "Reply-To", false);
	if (from == NULL || reply == NULL)
		return 0;
	buf_t fa = BUF_INIT, ra = BUF_INIT;
	spam_header_addr(from, &fa);
	spam_header_addr(reply, &ra);
	double hit = 0;
	if (strchr(buf_cstr(&fa), '@') && strchr(buf_cstr(&ra), '@')) {
		char fd[256], rd[256];
		domain_of(buf_cstr(&fa), fd, sizeof(fd));
		domain_of(buf_cstr(&ra), rd, sizeof(rd));
		hit = !same_org(fd, rd);
	}
	buf_free(&fa);
	buf_free(&ra);
	return hit;
}

/* ---- body and MIME tests --------------------------------------------------------- */

static double ev_bayes(struct spam_run *run, const struct spam_eval_args *a)
{
	double p = run->ctx->bayes_probability;
	if (p < 0 || isnan(p))
		return 0;
	double lo = a->num[0];
	bool no_max = strcmp(a->str[1], "undef") == 0;
	return (lo == 0 || p > lo) && (no_max || p <= a->num[1]);
}

static bool bayes_args_ok(const struct spam_eval_args *a)
{
	return a->count == 2 && !isnan(a->num[0]) && (!isnan(a->num[1]) || strcmp(a->str[1], "undef") == 0);
}

static double ev_body_length(struct spam_run *run, const struct spam_eval_args *a)
{
	const struct scan_message *m = msg(run);
	if (m == NULL || m->data == NULL)
		return 0;
	/* the body as sent: after the empty line ending the header section */
	const unsigned char *d = m->data;
	size_t i = 0, body = m->len;
	while (i < m->len) {
		const unsigned char *nl = memchr(d + i, '\n', m->len - i);
		size_t end = nl ? (size_t)(nl - d) + 1 : m->len;
		if (end - i == 1 || (end - i == 2 && d[i] == '\r')) {
			body = m->len - end;
			break;
		}
		i = end;
	}
	return (double)body <= a->num[0];
}

/* The percentage of capitals among the letters and digits of the body's
 * lines of words (200 bytes of them at least), or -1; once per message
 * (SpamAssassin's rules ask several ranges of it). */
static double uppercase_percent(struct spam_run *run)
{
	if (run->upper_done)
		return run->upper_pct;
	run->upper_done = true;
	const buf_t *b = &run->t->body;
	const char *s = buf_cstr(b);
	size_t len = 0, lower = 0, upper = 0;
	for (size_t i = 0; i < b->len;) {
		const char *nl = memchr(s + i, '\n', b->len - i);
		size_t end = nl ? (size_t)(nl - s) : b->len;
		const char *line = s + i;
		size_t n = end - i;
		/* lines of words only (a space between two non-spaces), not base64 */
		bool words = false, b64 = n >= 60;
		for (size_t k = 1; k + 1 < n && !words; k++)
			words = isspace((unsigned char)line[k]) && !isspace((unsigned char)line[k - 1]);
		for (size_t k = 0; k < n && k < 60 && b64; k++)
			b64 = isalnum((unsigned char)line[k]) || line[k] == '+' || line[k] == '/' ||
			      line[k] == '=';
		if (words && !b64) {
			len += n;
			for (size_t k = 0; k < n; k++) {
				unsigned char c = (unsigned char)line[k];
				if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
					lower++;
				else if (c >= 'A' && c <= 'Z')
					upper++;
			}
		}
		i = end + 1;
	}
	run->upper_pct = len < 200 || upper + lower == 0
				 ? -1 : 100.0 * (double)upper / (double)(upper + lower);
	return run->upper_pct;
}

static double ev_uppercase(struct spam_run *run, const struct spam_eval_args *a)
{
	double pct = uppercase_percent(run);
	return pct >= 0 && pct > a->num[0] && pct <= a->num[1];
}

static double ev_mime_html(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	return run->t->html.html_parts > 0;
}

static double ev_mime_html_only(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	return run->t->html.html_parts > 0 && run->t->html.text_parts == 0;
}

static bool mime_args_ok(const struct spam_eval_args *a)
{
	return a->count == 1 && (strcmp(a->str[0], "mime_attachment") == 0 ||
				 strcmp(a->str[0], "mime_body_html_count") == 0 ||
				 strcmp(a->str[0], "mime_body_text_count") == 0);
}

static double ev_for_mime(struct spam_run *run, const struct spam_eval_args *a)
{
	const char *what = a->str[0];
	if (strcmp(what, "mime_body_html_count") == 0)
		return run->t->html.html_parts > 0;
	if (strcmp(what, "mime_body_text_count") == 0)
		return run->t->html.text_parts > 0;
	const struct scan_message *m = msg(run);
	for (size_t i = 0; m != NULL && i < m->part_count; i++) {
		const struct scan_part *p = &m->parts[i];
		if (p->multipart || p->message)
			continue;
		if (p->filename != NULL ||
		    (p->disposition != NULL && str_eq_nocase(p->disposition, "attachment")))
			return 1;
	}
	return 0;
}

static double ev_html_image_only(struct spam_run *run, const struct spam_eval_args *a)
{
	const struct spam_html_facts *h = &run->t->html;
	double text = (double)h->html_text_bytes;
	return h->html_parts > 0 && h->images > 0 && text > a->num[0] && text <= a->num[1];
}

static double ev_html_image_ratio(struct spam_run *run, const struct spam_eval_args *a)
{
	const struct spam_html_facts *h = &run->t->html;
	if (h->html_parts == 0 || h->image_area == 0)
		return 0;
	double ratio = (double)h->html_text_bytes / (double)h->image_area;
	return ratio > a->num[0] && ratio <= a->num[1];
}

/* postern's: at least N bytes of text no reader sees (and, optionally, at
 * least that share of the HTML text). */
static double ev_html_invisible_text(struct spam_run *run, const struct spam_eval_args *a)
{
	const struct spam_html_facts *h = &run->t->html;
	double bytes = (double)h->invisible_text_bytes;
	if (bytes < a->num[0] || bytes == 0)
		return 0;
	if (a->count > 1) {
		double total = (double)h->html_text_bytes + bytes;
		return total > 0 && bytes / total >= a->num[1];
	}
	return 1;
}

static double ev_html_obfuscated_words(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	return run->t->html.has_obfuscated_words;
}

/* ---- link tests ------------------------------------------------------------------ */

static bool host_is_ip_literal(const char *h)
{
	if (h[0] == '[')
		return true;
	int dots = 0;
	for (const char *p = h; *p != '\0'; p++) {
		if (*p == '.')
			dots++;
		else if (!isdigit((unsigned char)*p))
			return false;
	}
	return dots == 3;
}

static double ev_uri_ip_literal(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	for (size_t i = 0; i < run->t->uri_count; i++)
		if (run->t->uris[i].host != NULL && host_is_ip_literal(run->t->uris[i].host))
			return 1;
	return 0;
}

static double ev_uri_punycode(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	for (size_t i = 0; i < run->t->uri_count; i++) {
		const char *h = run->t->uris[i].host;
		if (h == NULL)
			continue;
		if (strncmp(h, "xn--", 4) == 0 || strstr(h, ".xn--") != NULL)
			return 1;
	}
	return 0;
}

/* Links whose anchor text names another domain than the link goes to:
 * the count of such links. */
static double ev_uri_text_mismatch(struct spam_run *run, const struct spam_eval_args *a)
{
	(void)a;
	unsigned n = 0;
	for (size_t i = 0; i < run->t->uri_count; i++) {
		const struct spam_uri *u = &run->t->uris[i];
		char named[256];
		if (u->anchor_text == NULL || u->host == NULL || u->host[0] == '\0')
			continue;
		if (domain_in_text(u->anchor_text, named, sizeof(named)) && !same_org(named, u->host))
			n++;
	}
	return n;
}

/* ---- the table ------------------------------------------------------------------- */

static const struct spam_eval_def evals[] = {
	{ "check_bayes", ev_bayes, 2, 2, bayes_args_ok },
	{ "check_for_missing_to_header", ev_missing_to, 0, 0, NULL },
	{ "subject_is_all_caps", ev_subject_all_caps, 0, 0, NULL },
	{ "check_illegal_chars", ev_illegal_chars, 3, 3, illegal_args_ok },
	{ "check_header_count_range", ev_header_count_range, 3, 3, count_range_args_ok },
	{ "check_for_shifted_date", ev_shifted_date, 2, 2, numbers_ok },
	{ "check_for_forged_received_trail", ev_forged_received_trail, 0, 0, NULL },
	{ "check_fromname_spoof", ev_fromname_spoof, 0, 0, NULL },
	{ "check_replyto_other_domain", ev_replyto_other_domain, 0, 0, NULL },
	{ "check_body_length", ev_body_length, 1, 1, numbers_ok },
	{ "check_for_uppercase", ev_uppercase, 2, 2, numbers_ok },
	{ "check_for_mime_html", ev_mime_html, 0, 0, NULL },
	{ "check_for_mime_html_only", ev_mime_html_only, 0, 0, NULL },
	{ "check_for_mime", ev_for_mime, 1, 1, mime_args_ok },
	{ "html_image_only", ev_html_image_only, 2, 2, numbers_ok },
	{ "html_image_ratio", ev_html_image_ratio, 2, 2, numbers_ok },
	{ "html_invisible_text", ev_html_invisible_text, 1, 2, numbers_ok },
	{ "html_obfuscated_words", ev_html_obfuscated_words, 0, 0, NULL },
	{ "check_uri_ip_literal", ev_uri_ip_literal, 0, 0, NULL },
	{ "check_uri_punycode", ev_uri_punycode, 0, 0, NULL },
	{ "check_uri_text_mismatch", ev_uri_text_mismatch, 0, 0, NULL },
};

const struct spam_eval_def *spam_eval_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(evals); i++)
		if (strcmp(evals[i].name, name) == 0)
			return &evals[i];
	return NULL;
}
