/*
 * queue_id.c - queue ids (13 hex digits of microseconds + 6 of the pid)
 * and creation of the spool folders.
 *
 * RFCs: none. Untrusted input: queue_id_valid() is used on file names
 * found in the spool and on ids read from the notify pipe. Privilege:
 * unprivileged roles (smtp workers, queue manager, the queue command).
 */
#include "queue.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/safeio.h"
#include "../lib/xalloc.h"
#include "queue_file.h"

#define QUEUE_ID_TIME_DIGITS 13
#define QUEUE_ID_PID_DIGITS 6

static void put_hex(char *out, uint64_t v, int digits)
{
	static const char hex[] = "0123456789ABCDEF";

	for (int i = digits - 1; i >= 0; i--) {
		out[i] = hex[v & 0xf];
		v >>= 4;
	}
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void queue_id_new(char *id)
{
	/* Per process: never the same microsecond twice, never backwards
	 * (a clock stepped back keeps counting up from the last id), also
	 * when several threads ask at once (the queue manager's delivery
	 * lanes queue bounces). After fork() the child inherits last_us,
	 * but its pid differs. */
	static _Atomic uint64_t last_us;
	uint64_t prev = atomic_load(&last_us), us;

	do {
		us = now_us();
		if (us <= prev)
			us = prev + 1;
	} while (!atomic_compare_exchange_weak(&last_us, &prev, us));
	put_hex(id, us, QUEUE_ID_TIME_DIGITS);
	put_hex(id + QUEUE_ID_TIME_DIGITS, (uint64_t)getpid(), QUEUE_ID_PID_DIGITS);
	id[QUEUE_ID_LEN] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool queue_id_valid(const char *text)
{
	for (size_t i = 0; i < QUEUE_ID_LEN; i++) {
		if (hex_value(text[i]) < 0)
			return false;
	}
	return text[QUEUE_ID_LEN] == '\0';
}

uint64_t queue_id_time_us(const char *id)
{
	uint64_t v = 0;

	for (size_t i = 0; i < QUEUE_ID_TIME_DIGITS; i++) {
		int d = hex_value(id[i]);
		if (d < 0)
			return 0;
		v = (v << 4) | (uint64_t)d;
	}
	return v;
}

const char *const queue_subdirs[QUEUE_SUBDIR_COUNT] = {
	"incoming", "queue", "deferred", "hold", "quarantine", "corrupt",
};

int queue_dirs_create(const char *spool_dir, char **err_r)
{
	if (safeio_mkdir_p(spool_dir, 0700) < 0) {
		*err_r = qf_errf("create %s: %s", spool_dir, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < QUEUE_SUBDIR_COUNT; i++) {
		char *path = safeio_path_join(spool_dir, queue_subdirs[i]);
		int rc = mkdir(path, 0700);
		if (rc < 0 && errno != EEXIST) {
			*err_r = qf_errf("create %s: %s", path, strerror(errno));
			free(path);
			return -1;
		}
		free(path);
	}
	return 0;
}
