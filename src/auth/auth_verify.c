/*
 * auth_verify.c - password checks against Dovecot passwd-file hashes with
 * crypt_r(3) (see auth_verify.h). Untrusted input: the password and the
 * stored field. Runs in the auth process's pool threads.
 */
#include "auth_verify.h"

#include <string.h>
#include <strings.h>

/* The crypt(3) prefixes libcrypt computes that we accept. DES and MD5
 * crypt are deliberately absent: too weak to keep accepting. */
static const char *const crypt_prefixes[] = {
	"$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2y$", "$2a$", NULL,
};

enum scheme { SCHEME_CRYPT, SCHEME_PLAIN, SCHEME_UNKNOWN };

/* The scheme of field and where its hash starts. */
static enum scheme split_scheme(const char *field, const char **hash_r)
{
	static const struct {
		const char *name;
		enum scheme scheme;
	} names[] = {
		{ "{SHA512-CRYPT}", SCHEME_CRYPT }, { "{SHA256-CRYPT}", SCHEME_CRYPT },
		{ "{BLF-CRYPT}", SCHEME_CRYPT },    { "{CRYPT}", SCHEME_CRYPT },
		{ "{PLAIN}", SCHEME_PLAIN },        { "{CLEAR}", SCHEME_PLAIN },
		{ "{CLEARTEXT}", SCHEME_PLAIN },
	};
	*hash_r = field;
	if (field[0] != '{')
		return SCHEME_CRYPT; /* a raw crypt(3) hash, as Dovecot reads it */
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i].name);
		if (strncasecmp(field, names[i].name, n) == 0) {
			*hash_r = field + n;
			return names[i].scheme;
		}
	}
	return SCHEME_UNKNOWN;
}

static bool locked(const char *hash)
{
	return hash[0] == '\0' || hash[0] == '!' || hash[0] == '*';
}

static bool known_crypt(const char *hash)
{
	for (size_t i = 0; crypt_prefixes[i] != NULL; i++)
		if (strncmp(hash, crypt_prefixes[i], strlen(crypt_prefixes[i])) == 0)
			return true;
	return false;
}

bool auth_hash_supported(const char *field, const char **why_r)
{
	const char *hash;
	switch (split_scheme(field, &hash)) {
	case SCHEME_PLAIN:
		return true;
	case SCHEME_CRYPT:
		if (locked(hash) || known_crypt(hash))
			return true;
		*why_r = "not a yescrypt, SHA-512, SHA-256 or bcrypt crypt(3) hash";
		return false;
	default:
		*why_r = "unknown password scheme (known: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, "
			 "CRYPT, PLAIN)";
		return false;
	}
}

bool auth_equal_ct(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *x = a, *y = b;
	size_t n = alen > blen ? alen : blen;
	unsigned char diff = alen != blen;
	for (size_t i = 0; i < n; i++) {
		unsigned char cx = i < alen ? x[i] : 0, cy = i < blen ? y[i] : 0;
		diff |= (unsigned char)(cx ^ cy);
	}
	return diff == 0;
}

bool auth_hash_costly(const char *field)
{
	const char *hash;
	return split_scheme(field, &hash) == SCHEME_CRYPT && !locked(hash) && known_crypt(hash);
}

bool auth_hash_checkable(const char *field)
{
	const char *hash;
	return split_scheme(field, &hash) == SCHEME_PLAIN || auth_hash_costly(field);
}

void auth_hash_cost_class(const char *field, char *out, size_t outlen)
{
	const char *hash;
	(void)split_scheme(field, &hash);
	/* bcrypt: "$2b$NN$" then salt and hash in one piece; the others:
	 * "$id$[params$]salt$hash" */
	const char *end = strrchr(hash, '$');
	if (end != NULL && strncmp(hash, "$2", 2) != 0 && end > hash) {
		const char *p = end - 1;
		while (p > hash && *p != '$')
			p--;
		end = p;
	}
	size_t n = end != NULL ? (size_t)(end - hash) + 1 : 0;
	if (outlen == 0)
		return;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, hash, n);
	out[n] = '\0';
}

bool auth_hash_matches(const char *field, const char *password, struct crypt_data *cd)
{
	const char *hash;
	switch (split_scheme(field, &hash)) {
	case SCHEME_PLAIN:
		return auth_equal_ct(hash, strlen(hash), password, strlen(password));
	case SCHEME_CRYPT:
		break;
	default:
		return false;
	}
	if (locked(hash) || !known_crypt(hash))
		return false;
	cd->initialized = 0;
	const char *out = crypt_r(password, hash, cd);
	/* libxcrypt fails with "*0" or "*1", never with NULL here; both are
	 * refused by the comparison as well (a stored hash never starts
	 * with '*': locked() above). */
	bool ok = out != NULL && out[0] != '*' &&
		  auth_equal_ct(out, strlen(out), hash, strlen(hash));
	explicit_bzero(cd, sizeof(*cd));
	return ok;
}
