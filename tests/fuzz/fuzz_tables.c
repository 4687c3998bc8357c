/*
 * fuzz_tables.c - libFuzzer target for the users (passwd-file) and aliases
 * parsers, the uid/gid field check, and alias expansion (file input). The
 * input is split at the first NUL: users before it, aliases after. The
 * users part is also loaded as text (recipients_load_users_text, what
 * `postern user` checks before writing), which must agree with the file.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/buf.h"
#include "mail/recipients.h"

static int memfile(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
	int fd = memfd_create("table", 0);
	if (fd < 0)
		return -1;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t users_len = nul ? (size_t)(nul - data) : size;
	char upath[64], apath[64];
	int ufd = memfile(data, users_len, upath, sizeof(upath));
	int afd = nul ? memfile(nul + 1, size - users_len - 1, apath, sizeof(apath))
		      : memfile((const uint8_t *)"", 0, apath, sizeof(apath));
	if (ufd >= 0 && afd >= 0) {
		FILE *devnull = fopen("/dev/null", "w");
		static const struct recipients_owner owner = { "mail_owner vmail", 5000, 5000 };
		struct recipient_tables *t = recipients_load(upath, apath, &owner, devnull);
		buf_t text = BUF_INIT;
		buf_append(&text, data, users_len);
		struct recipient_tables *from_text =
			recipients_load_users_text(upath, &text, apath, &owner, devnull);
		if ((t == NULL) != (from_text == NULL))
			__builtin_trap(); /* the command and the server would disagree */
		recipients_free(&from_text);
		buf_free(&text);
		if (t != NULL) {
			strlist_t out = { 0 };
			recipients_expand(t, "a@b.test", &out);
			strlist_free(&out);
			recipients_free(&t);
		}
		fclose(devnull);
	}
	if (ufd >= 0)
		close(ufd);
	if (afd >= 0)
		close(afd);
	return 0;
}
