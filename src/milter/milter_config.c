/*
 * milter_config.c - the `milters` key: which milters postern calls, in
 * which order, each with its own timeouts and default action
 * (postern.conf(5) MILTERS).
 *
 *   milters = unix:/run/opendkim/opendkim.sock,
 *             { inet:127.0.0.1:8891, command_timeout=10s, default_action=continue }
 *
 * Input: the administrator's configuration file (read by the supervisor
 * and by check-config; the smtp worker parses the checked value again).
 * Every entry is bounded (a unix path fits sun_path, a port is 1-65535,
 * durations use the config's own parser).
 */
#include "milter_client.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/diag.h"
#include "../lib/strutil.h"
#include "../lib/xalloc.h"

/* More than this many milters is a mistake, not a configuration. */
#define MILTER_LIST_MAX 16
#define MILTER_TIMEOUT_MAX 3600

static int fail(char **err_r, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int fail(char **err_r, const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	*err_r = buf_steal(&b);
	return -1;
}

/* "unix:PATH" or "inet:HOST:PORT" into spec. */
static int parse_address(const char *text, struct milter_spec *spec, char **err_r)
{
	if (strlen(text) >= sizeof(spec->name))
		return fail(err_r, "\"%.60s...\": too long", text);
	snprintf(spec->name, sizeof(spec->name), "%s", text);
	memset(&spec->addr, 0, sizeof(spec->addr));
	if (strncmp(text, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&spec->addr;
		const char *path = text + 5;
		if (path[0] != '/' || strlen(path) >= sizeof(un->sun_path))
			return fail(err_r, "\"%s\": a unix socket needs an absolute path "
				    "of at most 107 bytes", text);
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, strlen(path) + 1);
		spec->addr_len = (socklen_t)sizeof(*un);
		return 0;
	}
	if (strncmp(text, "local:", 6) == 0)
		return fail(err_r, "\"%s\": write unix:%s (postern, like Postfix, takes "
			    "unix:PATH or inet:HOST:PORT)", text, text + 6);
	if (strncmp(text, "inet6:", 6) == 0)
		return fail(err_r, "\"%s\": write inet:[ADDRESS]:PORT (an IPv6 address in "
			    "brackets; postern, like Postfix, takes unix:PATH or inet:HOST:PORT)",
			    text);
	if (strncmp(text, "inet:", 5) != 0)
		return fail(err_r, "\"%s\": expected unix:PATH or inet:HOST:PORT", text);
	const char *host = text + 5, *colon = strrchr(host, ':');
	const char *at = strchr(host, '@');
	if (colon == NULL && at != NULL && at > host && at[1] != '\0')
		/* opendkim's and clamav-milter's own Socket lines say PORT@HOST:
		 * the admin copied one; say how to write it here. */
		return fail(err_r, "\"%s\": write inet:%s:%.*s (PORT@HOST is the "
			    "milter's own spelling; postern, like Postfix, takes "
			    "inet:HOST:PORT)", text, at + 1, (int)(at - host), host);
	if (colon == NULL || colon == host)
		return fail(err_r, "\"%s\": expected inet:HOST:PORT", text);
	char hostbuf[64];
	size_t hlen = (size_t)(colon - host);
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	if (hlen >= sizeof(hostbuf))
		return fail(err_r, "\"%s\": host too long", text);
	memcpy(hostbuf, host, hlen);
	hostbuf[hlen] = '\0';
	uint64_t port;
	if (!str_parse_uint(colon + 1, &port) || port == 0 || port > 65535)
		return fail(err_r, "\"%s\": the port must be 1 to 65535", text);
	if (strcmp(hostbuf, "localhost") == 0)
		snprintf(hostbuf, sizeof(hostbuf), "127.0.0.1");
	struct sockaddr_in *in4 = (struct sockaddr_in *)&spec->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&spec->addr;
	if (inet_pton(AF_INET, hostbuf, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		spec->addr_len = (socklen_t)sizeof(*in4);
	} else if (inet_pton(AF_INET6, hostbuf, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		spec->addr_len = (socklen_t)sizeof(*in6);
	} else {
		return fail(err_r, "\"%s\": the host must be a numeric address or localhost",
			    text);
	}
	return 0;
}

static int parse_setting(const char *item, struct milter_spec *spec, char **err_r)
{
	const char *eq = strchr(item, '=');
	if (eq == NULL)
		return fail(err_r, "\"%s\": expected key=value", item);
	size_t klen = (size_t)(eq - item);
	const char *value = eq + 1;
	uint64_t *timeout = NULL;
	if (klen == 15 && strncmp(item, "connect_timeout", klen) == 0)
		timeout = &spec->connect_timeout;
	else if (klen == 15 && strncmp(item, "command_timeout", klen) == 0)
		timeout = &spec->command_timeout;
	else if (klen == 15 && strncmp(item, "content_timeout", klen) == 0)
		timeout = &spec->content_timeout;
	if (timeout != NULL) {
		uint64_t secs;
		if (!str_parse_duration(value, &secs) || secs == 0 || secs > MILTER_TIMEOUT_MAX)
			return fail(err_r, "\"%s\": a duration of 1s to 1h is needed", item);
		*timeout = secs;
		return 0;
	}
	if (klen == 14 && strncmp(item, "default_action", klen) == 0) {
		static const char *const words[] = { "tempfail", "continue", "reject", "accept" };
		for (size_t i = 0; i < ARRAY_LEN(words); i++)
			if (strcmp(value, words[i]) == 0) {
				spec->default_action = (enum milter_action)i;
				return 0;
			}
		return fail(err_r, "\"%s\": the default action is continue, accept, tempfail "
			    "or reject", item);
	}
	return fail(err_r, "\"%s\": unknown setting (connect_timeout, command_timeout, "
		    "content_timeout, default_action)", item);
}

/* One entry: an address, or "{ address, key=value, ... }" (inner is the
 * text between the braces). */
static int parse_entry(char *entry, bool braced, const struct config *cfg,
		       struct milter_spec *spec, char **err_r)
{
	memset(spec, 0, sizeof(*spec));
	spec->connect_timeout = cfg->milter_connect_timeout;
	spec->command_timeout = cfg->milter_command_timeout;
	spec->content_timeout = cfg->milter_content_timeout;
	spec->default_action = cfg->milter_default_action;
	strlist_t items = { 0 };
	strlist_split(&items, entry);
	int rc = 0;
	if (items.count == 0)
		rc = fail(err_r, "%s", braced ? "\"{ }\" names no milter" : "empty entry");
	else if (!braced && items.count > 1)
		rc = fail(err_r, "\"%s\": settings need braces: { ADDRESS, key=value }", entry);
	for (size_t i = 0; rc == 0 && i < items.count; i++)
		rc = i == 0 ? parse_address(items.items[0], spec, err_r)
			    : parse_setting(items.items[i], spec, err_r);
	strlist_free(&items);
	return rc;
}

int milter_list_parse(const char *text, const struct config *cfg, struct milter_list *list_r,
		      char **err_r)
{
	memset(list_r, 0, sizeof(*list_r));
	const char *p = text != NULL ? text : "";
	while (*p != '\0') {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		bool braced = *p == '{';
		const char *start = braced ? p + 1 : p, *end;
		if (braced) {
			end = strchr(start, '}');
			if (end == NULL || memchr(start, '{', (size_t)(end - start)) != NULL) {
				milter_list_free(list_r);
				return fail(err_r, "%s", "a \"{\" without its \"}\"");
			}
		} else {
			end = start + strcspn(start, ", \t{}");
			if (*end == '{' || *end == '}') {
				milter_list_free(list_r);
				return fail(err_r, "%s", "a brace inside an entry");
			}
		}
		if (list_r->count == MILTER_LIST_MAX) {
			milter_list_free(list_r);
			return fail(err_r, "more than %s milters", "16");
		}
		char *entry = xstrndup(start, (size_t)(end - start));
		list_r->items = xreallocarray(list_r->items, list_r->count + 1,
					      sizeof(*list_r->items));
		int rc = parse_entry(entry, braced, cfg, &list_r->items[list_r->count], err_r);
		free(entry);
		if (rc != 0) {
			milter_list_free(list_r);
			return -1;
		}
		list_r->count++;
		p = braced ? end + 1 : end;
		if (braced && *p != '\0' && *p != ',' && *p != ' ' && *p != '\t') {
			milter_list_free(list_r);
			return fail(err_r, "%s", "expected a comma after \"}\"");
		}
	}
	return 0;
}

void milter_list_free(struct milter_list *list)
{
	free(list->items);
	memset(list, 0, sizeof(*list));
}

static void problem(FILE *errors, const struct config *cfg, const char *fmt, ...)
	PRINTF_LIKE(3, 4);
static void problem(FILE *errors, const struct config *cfg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vprint(errors, cfg->path, config_key_line(cfg, "milters"), fmt, ap);
	va_end(ap);
}

int milter_config_check(const struct config *cfg, FILE *errors)
{
	struct milter_list list;
	char *err = NULL;
	if (milter_list_parse(cfg->milters, cfg, &list, &err) != 0) {
		problem(errors, cfg, "milters: %s", err);
		free(err);
		return 1;
	}
	milter_list_free(&list);
	return 0;
}
