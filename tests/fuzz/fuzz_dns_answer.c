/*
 * fuzz_dns_answer.c - libFuzzer target for what postern reads of a DNS
 * answer (src/dns/dns_packet.c: TTLs and the SOA of a negative answer;
 * src/dns/dns_answer.c: the records c-ares parses, copied and bounded).
 * The input is a DNS message as a server would send it. Invariants: a
 * result has at most DNS_MAX_RECORDS records, FOUND only with records,
 * TTLs within their caps, names and texts NUL-terminated within their
 * bounds.
 */
#include <ares.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum dns_type types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_MX,
					       DNS_TYPE_TXT, DNS_TYPE_PTR };
	static const int statuses[] = { ARES_SUCCESS, ARES_ENOTFOUND, ARES_ENODATA };
	struct dns_packet_ttls ttls;
	(void)dns_packet_ttls(data, size, &ttls);
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
		for (size_t s = 0; s < sizeof(statuses) / sizeof(statuses[0]); s++) {
			struct dns_result *r = dns_result_from_answer(types[t], statuses[s], data,
								      size, 300);
			if (r->count > DNS_MAX_RECORDS || (r->status == DNS_FOUND) != (r->count > 0))
				abort();
			if (r->ttl > (r->status == DNS_FOUND ? DNS_TTL_MAX : 300))
				abort();
			for (size_t i = 0; i < r->count; i++) {
				const char *text = r->records[i].text;
				size_t max = types[t] == DNS_TYPE_TXT ? DNS_TEXT_MAX : DNS_NAME_MAX;
				if (text != NULL && strnlen(text, max + 1) > max)
					abort();
			}
			dns_result_unref(&r);
		}
	return 0;
}
