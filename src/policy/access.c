/*
 * access.c - the values of access maps and the order of their lookups
 * (see access.h). Reply codes when a value does not give its own:
 * REJECT 554 5.7.1, DEFER 450 4.7.1 (Postfix's access_map_reject_code
 * and access_map_defer_code); a reply code without an enhanced status
 * gets X.7.1 of its own class.
 *
 * Input: map values (checked when read); keys built from untrusted
 * client data, bounded by the SMTP parser (addresses 256 octets, HELO
 * names command_line_limit). Runs in the smtp worker and check-config.
 */
#include "access.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../lib/compat.h"
#include "../lib/strutil.h"

static const struct {
	const char *word;
	enum access_action action;
	bool takes_text;
} access_words[] = {
	{ "OK", ACCESS_OK, false },
	{ "DUNNO", ACCESS_DUNNO, false },
	{ "REJECT", ACCESS_REFUSE, true },
	{ "DEFER", ACCESS_REFUSE, true },
	{ "DISCARD", ACCESS_DISCARD, true },
	{ "HOLD", ACCESS_HOLD, true },
	{ "WARN", ACCESS_WARN, true },
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* "d.ddd.ddd" of class cls at s, ended by white space or the end; its
 * length or 0. */
static size_t status_length(const char *s, char cls)
{
	if (s[0] != cls || s[1] != '.')
		return 0;
	size_t i = 2, n = 0;
	while (is_digit(s[i]) && n < 3)
		i++, n++;
	if (n == 0 || s[i] != '.')
		return 0;
	i++, n = 0;
	while (is_digit(s[i]) && n < 3)
		i++, n++;
	if (n == 0 || (s[i] != '\0' && s[i] != ' ' && s[i] != '\t'))
		return 0;
	return i;
}

static const char *skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* "4NN [4.x.y] text" / "5NN [5.x.y] text". */
static const char *parse_reply(const char *value, struct access_result *r)
{
	if (!is_digit(value[1]) || !is_digit(value[2]) ||
	    (value[3] != '\0' && value[3] != ' ' && value[3] != '\t'))
		return "expected a reply code such as 550 or 450";
	r->code = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
	if (r->code == 421)
		return "421 closes the connection: use another 4xx code";
	const char *s = skip_space(value + 3);
	size_t n = status_length(s, value[0]);
	if (n > 0) {
		memcpy(r->status, s, n);
		r->status[n] = '\0';
		s = skip_space(s + n);
	} else if (is_digit(s[0]) && s[1] == '.') {
		return "the enhanced status code must be of the reply code's class (5xx 5.x.y, 4xx 4.x.y)";
	} else {
		r->status[0] = value[0];
		memcpy(r->status + 1, ".7.1", 5);
	}
	r->action = ACCESS_REFUSE;
	r->text = s;
	return NULL;
}

const char *access_parse(const char *value, struct access_result *r)
{
	memset(r, 0, sizeof(*r));
	r->text = "";
	size_t wlen = strcspn(value, " \t");
	if (wlen == 0)
		return "empty value";
	const char *rest = skip_space(value + wlen);
	if ((value[0] == '4' || value[0] == '5') && wlen == 3)
		return parse_reply(value, r);
	bool numeric = true;
	for (size_t i = 0; i < wlen && numeric; i++)
		numeric = is_digit(value[i]);
	if (numeric) { /* Postfix: an all-numerical value means OK */
		r->action = ACCESS_OK;
		return *rest == '\0' ? NULL : "a number (OK) takes no text";
	}
	for (size_t i = 0; i < ARRAY_LEN(access_words); i++) {
		if (strlen(access_words[i].word) != wlen ||
		    strncasecmp(value, access_words[i].word, wlen) != 0)
			continue;
		r->action = access_words[i].action;
		if (!access_words[i].takes_text && *rest != '\0')
			return i == 0 ? "OK takes no text" : "DUNNO takes no text";
		r->text = rest;
		if (r->action == ACCESS_REFUSE) {
			bool defer = i == 3;
			r->code = defer ? 450 : 554;
			memcpy(r->status, defer ? "4.7.1" : "5.7.1", 6);
		}
		return NULL;
	}
	return "unknown action (expected OK, DUNNO, REJECT, DEFER, DISCARD, HOLD, WARN, "
	       "or a reply such as \"550 5.7.1 text\")";
}

const char *access_check_value(const char *value)
{
	struct access_result r;
	const char *why = access_parse(value, &r);
	if (why == NULL && strlen(r.text) > ACCESS_TEXT_MAX)
		return "text longer than 400 characters";
	return why;
}

/* ---- lookups ----------------------------------------------------------------- */

static const char *try_key(struct map *m, const char *key, buf_t *key_r)
{
	const char *v = map_lookup(m, key);
	if (v != NULL) {
		buf_reset(key_r);
		buf_puts(key_r, key);
	}
	return v;
}

/* The address inside "[192.0.2.1]" or "[IPv6:2001:db8::1]" into out;
 * false if name is not such a literal. */
static bool literal_address(const char *name, buf_t *out)
{
	size_t len = strlen(name);
	if (len < 3 || name[0] != '[' || name[len - 1] != ']')
		return false;
	const char *inner = name + 1;
	size_t n = len - 2;
	if (n > 5 && strncasecmp(inner, "IPv6:", 5) == 0)
		inner += 5, n -= 5;
	buf_reset(out);
	buf_append(out, inner, n);
	return true;
}

const char *access_lookup_name(struct map *m, const char *name, buf_t *key_r)
{
	buf_t key = BUF_INIT;
	const char *v = NULL;
	if (name[0] == '[') {
		v = try_key(m, name, key_r);
		if (v == NULL && map_get_type(m) == MAP_TYPE_CIDR && literal_address(name, &key))
			v = try_key(m, buf_cstr(&key), key_r);
		buf_free(&key);
		return v;
	}
	buf_puts(&key, name);
	str_lower(key.data); /* host names ignore case (RFC 4343) */
	if (key.len > 1 && key.data[key.len - 1] == '.')
		key.data[--key.len] = '\0'; /* "mx.example.com." is mx.example.com */
	v = try_key(m, buf_cstr(&key), key_r);
	if (map_get_type(m) == MAP_TYPE_FILE) {
		buf_t dotted = BUF_INIT;
		for (const char *p = strchr(buf_cstr(&key), '.'); v == NULL && p != NULL;
		     p = strchr(p + 1, '.')) {
			if (p[1] == '\0')
				break;
			v = try_key(m, p + 1, key_r);
			if (v == NULL) {
				buf_reset(&dotted);
				buf_puts(&dotted, p);
				v = try_key(m, buf_cstr(&dotted), key_r);
			}
		}
		buf_free(&dotted);
	}
	buf_free(&key);
	return v;
}

const char *access_lookup_client(struct map *m, const char *addr, const char *name,
				 buf_t *key_r)
{
	const char *v = NULL;
	if (name != NULL && name[0] != '\0')
		v = access_lookup_name(m, name, key_r);
	if (v != NULL)
		return v;
	v = try_key(m, addr, key_r);
	if (v != NULL || map_get_type(m) != MAP_TYPE_FILE)
		return v;
	/* Postfix's network keys: drop the last part, one at a time. */
	char sep = strchr(addr, ':') != NULL ? ':' : '.';
	buf_t key = BUF_INIT;
	buf_puts(&key, addr);
	for (;;) {
		char *cut = strrchr(key.data, sep);
		if (cut == NULL || cut == key.data)
			break;
		*cut = '\0';
		key.len = (size_t)(cut - key.data);
		if ((v = try_key(m, key.data, key_r)) != NULL)
			break;
	}
	buf_free(&key);
	return v;
}

const char *access_lookup_address(struct map *m, const struct mail_address *a, buf_t *key_r)
{
	if (a->is_null)
		return try_key(m, "<>", key_r);
	char local[ADDR_LOCAL_MAX + 1];
	if (!address_unquoted_local(a, local, sizeof(local)))
		snprintf(local, sizeof(local), "%s", a->local);
	buf_t key = BUF_INIT;
	buf_puts(&key, local);
	if (a->domain[0] != '\0')
		buf_printf(&key, "@%s", a->domain);
	const char *v = try_key(m, buf_cstr(&key), key_r);
	if (v == NULL && map_get_type(m) == MAP_TYPE_FILE) {
		if (a->domain[0] != '\0')
			v = access_lookup_name(m, a->domain, key_r);
		if (v == NULL) {
			buf_reset(&key);
			buf_printf(&key, "%s@", local);
			v = try_key(m, buf_cstr(&key), key_r);
		}
	}
	buf_free(&key);
	return v;
}
