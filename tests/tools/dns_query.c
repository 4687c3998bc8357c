/*
 * dns_query.c - test tool of the DNS tests: drive the resolver of
 * src/dns/ on a libevent loop against a server the test started (a
 * private unbound) and print what each step got, one JSON object a line.
 *
 *   dns_query [options] STEP...
 *     --server ADDR[:PORT]   a server (repeatable; default: resolv.conf)
 *     --timeout-ms N         a lookup's whole time (default 3000)
 *     --tries N              tries per server (default 2)
 *     --cache N              cache entries (default 100; 0 = no cache)
 *     --negative-ttl S       longest negative caching (default 300)
 *   steps, run one after the other:
 *     TYPE:NAME[+TYPE:NAME...]  lookups started together (A, AAAA, MX,
 *                            TXT, PTR); each printed as it ends
 *     cancel@MS:TYPE:NAME    start, run the loop MS ms, cancel: its
 *                            callback must never come (exit 3 if it does)
 *     fcrdns:ADDRESS         forward-confirmed reverse DNS of ADDRESS
 *     domain:NAME            can NAME receive mail (MX, else A/AAAA)
 *     sleep:MS               run the loop MS ms
 *     stats                  the resolver's counters
 *     free-pending:TYPE:NAME start a lookup, free the resolver while it is
 *                            outstanding, make a new resolver
 * A lookup's line: {"step","status","ttl","records":[...],"ms"}; records
 * are addresses, "PREF HOST" for MX, texts for TXT and PTR.
 *
 * Never installed; runs as whoever runs the tests.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns/dns.h"
#include "dns/dns_check.h"
#include "lib/buf.h"
#include "lib/json.h"
#include "lib/xalloc.h"

static struct event_base *base;
static struct dns_resolver *resolver;
static struct dns_options options;
static size_t pending;
static uint64_t step_start;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void die(const char *what)
{
	fprintf(stderr, "dns_query: %s\n", what);
	exit(2);
}

static void new_resolver(void)
{
	char *err = NULL;
	resolver = dns_resolver_new(base, &options, &err);
	if (resolver == NULL)
		die(err);
}

static bool parse_type(const char *s, size_t len, enum dns_type *t)
{
	static const enum dns_type all[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_MX,
					     DNS_TYPE_TXT, DNS_TYPE_PTR };
	for (size_t i = 0; i < ARRAY_LEN(all); i++)
		if (strlen(dns_type_name(all[i])) == len &&
		    strncmp(dns_type_name(all[i]), s, len) == 0) {
			*t = all[i];
			return true;
		}
	return false;
}

static void print_line(buf_t *b)
{
	buf_printf(b, ",\"ms\":%llu}\n", (unsigned long long)(now_ms() - step_start));
	fputs(buf_cstr(b), stdout);
	fflush(stdout);
	buf_free(b);
}

static void lookup_done(void *arg, const struct dns_result *res)
{
	char *step = arg;
	buf_t b = BUF_INIT;
	buf_puts(&b, "{\"step\":");
	json_put_cstr(&b, step);
	buf_printf(&b, ",\"status\":\"%s\",\"ttl\":%u,\"records\":[", dns_status_name(res->status),
		   (unsigned)res->ttl);
	for (size_t i = 0; i < res->count; i++) {
		const struct dns_record *rec = &res->records[i];
		char text[DNS_NAME_MAX + 16];
		if (i > 0)
			buf_putc(&b, ',');
		if (rec->family != 0) {
			inet_ntop(rec->family, rec->addr, text, sizeof(text));
			json_put_cstr(&b, text);
		} else if (res->type == DNS_TYPE_MX) {
			snprintf(text, sizeof(text), "%u %s", rec->preference, rec->text);
			json_put_cstr(&b, text);
		} else {
			json_put_cstr(&b, rec->text);
		}
	}
	buf_putc(&b, ']');
	print_line(&b);
	free(step);
	pending--;
}

static void never_called(void *arg, const struct dns_result *res)
{
	(void)res;
	fprintf(stderr, "dns_query: the callback of cancelled %s came\n", (const char *)arg);
	exit(3);
}

static void fcrdns_done(void *arg, const struct dns_fcrdns_result *res)
{
	buf_t b = BUF_INIT;
	buf_puts(&b, "{\"step\":");
	json_put_cstr(&b, arg);
	buf_printf(&b, ",\"status\":\"%s\",\"name\":", dns_fcrdns_status_name(res->status));
	json_put_cstr(&b, res->name);
	print_line(&b);
	free(arg);
	pending--;
}

static void domain_done(void *arg, enum dns_domain_status status)
{
	buf_t b = BUF_INIT;
	buf_puts(&b, "{\"step\":");
	json_put_cstr(&b, arg);
	buf_printf(&b, ",\"status\":\"%s\"", dns_domain_status_name(status));
	print_line(&b);
	free(arg);
	pending--;
}

static void loop_for(uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* Run the loop until every lookup of the step has ended. */
static void wait_step(void)
{
	uint64_t limit = now_ms() + 60000;
	while (pending > 0) {
		if (now_ms() > limit)
			die("a step did not end within 60 s");
		event_base_loop(base, EVLOOP_ONCE);
	}
}

/* "TYPE:NAME" -> type and name; false if malformed. */
static bool split_lookup(const char *s, enum dns_type *t, const char **name)
{
	const char *colon = strchr(s, ':');
	if (colon == NULL || !parse_type(s, (size_t)(colon - s), t))
		return false;
	*name = colon + 1;
	return true;
}

static void start_lookup(const char *spec)
{
	enum dns_type t;
	const char *name;
	if (!split_lookup(spec, &t, &name))
		die("bad lookup step (TYPE:NAME)");
	pending++;
	dns_lookup_start(resolver, t, name, lookup_done, xstrdup(spec));
}

static void print_stats(void)
{
	struct dns_stats st;
	dns_resolver_stats(resolver, &st);
	printf("{\"step\":\"stats\",\"lookups\":%llu,\"sent\":%llu,\"cache_hits\":%llu,"
	       "\"shared\":%llu,\"timeouts\":%llu,\"cached\":%llu}\n",
	       (unsigned long long)st.lookups, (unsigned long long)st.sent,
	       (unsigned long long)st.cache_hits, (unsigned long long)st.shared,
	       (unsigned long long)st.timeouts, (unsigned long long)st.cached);
	fflush(stdout);
}

static void run_step(const char *step)
{
	step_start = now_ms();
	if (strncmp(step, "sleep:", 6) == 0) {
		loop_for(strtoull(step + 6, NULL, 10));
	} else if (strcmp(step, "stats") == 0) {
		print_stats();
	} else if (strncmp(step, "cancel@", 7) == 0) {
		char *end;
		unsigned long long ms = strtoull(step + 7, &end, 10);
		enum dns_type t;
		const char *name;
		if (*end != ':' || !split_lookup(end + 1, &t, &name))
			die("bad cancel step (cancel@MS:TYPE:NAME)");
		struct dns_lookup *l = dns_lookup_start(resolver, t, name, never_called,
							(void *)step);
		if (ms > 0)
			loop_for(ms);
		dns_lookup_cancel(&l);
		printf("{\"step\":\"%s\",\"status\":\"cancelled\"}\n", step);
		fflush(stdout);
	} else if (strncmp(step, "fcrdns:", 7) == 0) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, step + 7, &a4->sin_addr) == 1)
			a4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, step + 7, &a6->sin6_addr) == 1)
			a6->sin6_family = AF_INET6;
		else
			die("bad address in fcrdns step");
		pending++;
		dns_fcrdns_start(resolver, (struct sockaddr *)&ss, fcrdns_done, xstrdup(step));
		wait_step();
	} else if (strncmp(step, "domain:", 7) == 0) {
		pending++;
		dns_domain_check_start(resolver, step + 7, domain_done, xstrdup(step));
		wait_step();
	} else if (strncmp(step, "free-pending:", 13) == 0) {
		enum dns_type t;
		const char *name;
		if (!split_lookup(step + 13, &t, &name))
			die("bad free-pending step");
		dns_lookup_start(resolver, t, name, never_called, (void *)step);
		dns_resolver_free(&resolver);
		new_resolver();
		printf("{\"step\":\"%s\",\"status\":\"freed\"}\n", step);
		fflush(stdout);
	} else {
		char *copy = xstrdup(step);
		for (char *s = copy, *plus; s != NULL; s = plus) {
			plus = strchr(s, '+');
			if (plus != NULL)
				*plus++ = '\0';
			start_lookup(s);
		}
		free(copy);
		wait_step();
	}
}

int main(int argc, char **argv)
{
	strlist_t servers = { 0 };
	options.timeout_ms = 3000;
	options.tries = 2;
	options.cache_size = 100;
	options.negative_ttl_max = 300;
	int i = 1;
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		const char *v = argv[i + 1];
		if (strcmp(argv[i], "--server") == 0)
			strlist_add(&servers, v);
		else if (strcmp(argv[i], "--timeout-ms") == 0)
			options.timeout_ms = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--tries") == 0)
			options.tries = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--cache") == 0)
			options.cache_size = strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--negative-ttl") == 0)
			options.negative_ttl_max = (uint32_t)strtoul(v, NULL, 10);
		else
			die("unknown option");
	}
	options.servers = &servers;
	base = event_base_new();
	if (base == NULL)
		die("no event base");
	new_resolver();
	for (; i < argc; i++)
		run_step(argv[i]);
	dns_resolver_free(&resolver);
	event_base_free(base);
	strlist_free(&servers);
	return 0;
}
