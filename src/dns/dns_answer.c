/*
 * dns_answer.c - a dns_result from what c-ares reports for a query: its
 * status, and the answer message parsed with c-ares's own parsers (A,
 * AAAA, MX, TXT, PTR) plus the TTLs from dns_packet.c.
 *
 * Untrusted input: the answer message (c-ares parses it; what is kept is
 * bounded: DNS_MAX_RECORDS records, DNS_NAME_MAX bytes of a name,
 * DNS_TEXT_MAX bytes of a TXT record).
 */
#include "dns_internal.h"

#include <ares.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/strutil.h"
#include "../lib/xalloc.h"

struct dns_result *dns_result_new(enum dns_type type, enum dns_status status)
{
	struct dns_result *res = xcalloc(1, sizeof(*res));
	res->type = type;
	res->status = status;
	res->refs = 1;
	return res;
}

struct dns_result *dns_result_ref(struct dns_result *res)
{
	res->refs++;
	return res;
}

void dns_result_unref(struct dns_result **resp)
{
	struct dns_result *res = *resp;
	if (res == NULL)
		return;
	*resp = NULL;
	if (--res->refs > 0)
		return;
	for (size_t i = 0; i < res->count; i++)
		free(res->records[i].text);
	free(res->records);
	free(res);
}

static struct dns_record *add_record(struct dns_result *res)
{
	if (res->count >= DNS_MAX_RECORDS)
		return NULL;
	if (res->records == NULL)
		res->records = xcalloc(DNS_MAX_RECORDS, sizeof(*res->records));
	return &res->records[res->count++];
}

/* A name as kept: at most DNS_NAME_MAX bytes, without a trailing dot. */
static char *name_copy(const char *name)
{
	size_t n = strnlen(name, DNS_NAME_MAX + 1);
	if (n > DNS_NAME_MAX)
		n = DNS_NAME_MAX;
	if (n > 0 && name[n - 1] == '.')
		n--;
	return xstrndup(name, n);
}

static int parse_a(struct dns_result *res, const unsigned char *msg, int len)
{
	struct ares_addrttl ttls[DNS_MAX_RECORDS];
	int n = DNS_MAX_RECORDS;
	int st = ares_parse_a_reply(msg, len, NULL, ttls, &n);
	for (int i = 0; st == ARES_SUCCESS && i < n; i++) {
		struct dns_record *rec = add_record(res);
		rec->family = AF_INET;
		memcpy(rec->addr, &ttls[i].ipaddr, 4);
	}
	return st;
}

static int parse_aaaa(struct dns_result *res, const unsigned char *msg, int len)
{
	struct ares_addr6ttl ttls[DNS_MAX_RECORDS];
	int n = DNS_MAX_RECORDS;
	int st = ares_parse_aaaa_reply(msg, len, NULL, ttls, &n);
	for (int i = 0; st == ARES_SUCCESS && i < n; i++) {
		struct dns_record *rec = add_record(res);
		rec->family = AF_INET6;
		memcpy(rec->addr, &ttls[i].ip6addr, 16);
	}
	return st;
}

static int parse_mx(struct dns_result *res, const unsigned char *msg, int len)
{
	struct ares_mx_reply *mx = NULL;
	int st = ares_parse_mx_reply(msg, len, &mx);
	for (struct ares_mx_reply *m = mx; st == ARES_SUCCESS && m != NULL; m = m->next) {
		struct dns_record *rec = add_record(res);
		if (rec == NULL)
			break;
		rec->preference = m->priority;
		rec->text = name_copy(m->host != NULL ? m->host : "");
	}
	ares_free_data(mx);
	return st;
}

/* The strings of each TXT record joined into one text (RFC 7208 section
 * 3.3 reads them so; a DNSBL's reason is one string). */
static int parse_txt(struct dns_result *res, const unsigned char *msg, int len)
{
	struct ares_txt_ext *txt = NULL;
	int st = ares_parse_txt_reply_ext(msg, len, &txt);
	struct dns_record *rec = NULL;
	size_t used = 0;
	for (struct ares_txt_ext *t = txt; st == ARES_SUCCESS && t != NULL; t = t->next) {
		if (t->record_start || rec == NULL) {
			rec = add_record(res);
			if (rec == NULL)
				break;
			rec->text = xcalloc(1, DNS_TEXT_MAX + 1);
			used = 0;
		}
		size_t n = t->length < DNS_TEXT_MAX - used ? t->length : DNS_TEXT_MAX - used;
		memcpy(rec->text + used, t->txt, n);
		used += n;
	}
	ares_free_data(txt);
	return st;
}

static int parse_ptr(struct dns_result *res, const unsigned char *msg, int len)
{
	static const unsigned char any[4];
	struct hostent *host = NULL;
	int st = ares_parse_ptr_reply(msg, len, any, sizeof(any), AF_INET, &host);
	if (st != ARES_SUCCESS || host == NULL)
		return st;
	/* c-ares lists every PTR name among the aliases and repeats one of
	 * them as h_name: take the aliases, once each, in answer order. */
	char *single[] = { host->h_name, NULL };
	char **names = host->h_aliases != NULL && host->h_aliases[0] != NULL ? host->h_aliases
									     : single;
	for (char **a = names; *a != NULL; a++) {
		bool seen = (*a)[0] == '\0';
		for (size_t i = 0; i < res->count && !seen; i++)
			seen = str_eq_nocase(res->records[i].text, *a);
		struct dns_record *rec = seen ? NULL : add_record(res);
		if (rec != NULL)
			rec->text = name_copy(*a);
	}
	ares_free_hostent(host);
	return res->count > 0 ? st : ARES_ENODATA;
}

static enum dns_status status_of(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS:
		return DNS_FOUND;
	case ARES_ENODATA:
		return DNS_NODATA;
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:
		return DNS_NXDOMAIN;
	case ARES_ETIMEOUT:
		return DNS_TIMEOUT;
	default:
		return DNS_TEMPFAIL; /* SERVFAIL, REFUSED, unreachable, malformed */
	}
}

static uint32_t cap(uint32_t ttl, uint32_t max)
{
	return ttl < max ? ttl : max;
}

struct dns_result *dns_result_from_answer(enum dns_type type, int ares_status,
					  const unsigned char *msg, size_t len,
					  uint32_t negative_ttl_max)
{
	enum dns_status status = status_of(ares_status);
	struct dns_result *res = dns_result_new(type, status);
	struct dns_packet_ttls ttls;
	bool sane = msg != NULL && len <= 65535 && dns_packet_ttls(msg, len, &ttls);
	if (status == DNS_FOUND) {
		int ilen = (int)len, st = ARES_EBADRESP;
		if (sane) {
			switch (type) {
			case DNS_TYPE_A: st = parse_a(res, msg, ilen); break;
			case DNS_TYPE_AAAA: st = parse_aaaa(res, msg, ilen); break;
			case DNS_TYPE_MX: st = parse_mx(res, msg, ilen); break;
			case DNS_TYPE_TXT: st = parse_txt(res, msg, ilen); break;
			case DNS_TYPE_PTR: st = parse_ptr(res, msg, ilen); break;
			}
		}
		if (st == ARES_SUCCESS && res->count > 0) {
			res->ttl = cap(ttls.has_answer ? ttls.answer : 0, DNS_TTL_MAX);
			return res;
		}
		/* Only other types (a CNAME without the record), or nothing
		 * that parses. */
		dns_result_unref(&res);
		status = st == ARES_SUCCESS || st == ARES_ENODATA ? DNS_NODATA : DNS_TEMPFAIL;
		res = dns_result_new(type, status);
	}
	if (status == DNS_NXDOMAIN || status == DNS_NODATA) {
		uint32_t ttl = sane && ttls.has_soa ? ttls.negative : DNS_NEGATIVE_TTL_NO_SOA;
		res->ttl = cap(ttl, negative_ttl_max);
	}
	return res;
}
