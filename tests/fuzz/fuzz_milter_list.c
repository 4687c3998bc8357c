/*
 * fuzz_milter_list.c - libFuzzer target for the `milters` setting
 * (src/milter/milter_config.c), as an administrator writes it in
 * postern.conf: comma-separated unix:PATH and inet:HOST:PORT entries,
 * entries in braces with per-milter settings. Invariants: the input is
 * refused with a message, or parsed into at most 16 milters, each with a
 * NUL-terminated name, an AF_UNIX socket whose path is absolute and
 * NUL-terminated, or an AF_INET/AF_INET6 address with a port other than
 * 0, timeouts of 1 s to 1 h and a known default action.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "milter/milter_client.h"

static void check_spec(const struct milter_spec *m)
{
	if (memchr(m->name, '\0', sizeof(m->name)) == NULL)
		abort();
	if (m->addr.ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&m->addr;
		if (un->sun_path[0] != '/' || memchr(un->sun_path, '\0', sizeof(un->sun_path)) == NULL)
			abort();
	} else if (m->addr.ss_family == AF_INET) {
		if (((const struct sockaddr_in *)&m->addr)->sin_port == 0)
			abort();
	} else if (m->addr.ss_family == AF_INET6) {
		if (((const struct sockaddr_in6 *)&m->addr)->sin6_port == 0)
			abort();
	} else {
		abort();
	}
	const uint64_t t[3] = { m->connect_timeout, m->command_timeout, m->content_timeout };
	for (size_t i = 0; i < 3; i++)
		if (t[i] < 1 || t[i] > 3600)
			abort();
	if ((unsigned)m->default_action > MILTER_ACTION_ACCEPT)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.milter_connect_timeout = 30;
	cfg.milter_command_timeout = 30;
	cfg.milter_content_timeout = 300;
	cfg.milter_default_action = MILTER_ACTION_TEMPFAIL;
	struct milter_list list;
	char *err = NULL;
	if (milter_list_parse(text, &cfg, &list, &err) == 0) {
		if (err != NULL || list.count > 16)
			abort();
		for (size_t i = 0; i < list.count; i++)
			check_spec(&list.items[i]);
		milter_list_free(&list);
	} else if (err == NULL) {
		abort();
	}
	free(err);
	free(text);
	return 0;
}
