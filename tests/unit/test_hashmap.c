/*
 * test_hashmap.c - the string hash table: insert, remove, iterate, and
 * its resistance to hash flooding: the slot order of the same keys
 * differs from process to process (a per-process random SipHash key), a
 * child forked after a table was built still finds every key (the roles
 * inherit the supervisor's tables), and keys crafted to collide under
 * the unkeyed FNV-1a the table used before stay spread out (probes are
 * counted, not timed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/hashmap.h"

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL
#define FLOOD_KEYS 30000
#define FLOOD_BITS 16 /* the table of 30000 keys has 65536 slots */
#define FLOOD_KEY_MAX 48
#define ORDER_KEYS 64

static char flood[FLOOD_KEYS][FLOOD_KEY_MAX];

/* The unkeyed FNV-1a the table used before: the attacker's model. */
static uint64_t fnv1a(const char *s)
{
	uint64_t h = FNV_OFFSET;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= FNV_PRIME;
	}
	return h;
}

/* The inverse of FNV_PRIME modulo 2^64 (Newton's iteration). */
static uint64_t prime_inverse(void)
{
	uint64_t x = FNV_PRIME;
	for (int i = 0; i < 6; i++)
		x *= 2 - FNV_PRIME * x;
	return x;
}

/*
 * Addresses "flood<i>.XY@example.test" whose FNV-1a hashes share their
 * low FLOOD_BITS bits. The low bits of FNV-1a's state depend only on the
 * low bits before each step, and a fixed suffix maps them one to one, so
 * it is enough that the states after Y collide: X is searched so that the
 * state after it has the wanted bits 8..15, Y then sets bits 0..7.
 */
static void craft_flood_keys(void)
{
	const uint64_t mask = (1u << FLOOD_BITS) - 1, target = 0x2a2a;
	const uint64_t want = (target * prime_inverse()) & mask; /* state ^ Y */
	size_t made = 0;

	for (unsigned i = 0; made < FLOOD_KEYS; i++) {
		char prefix[32];
		snprintf(prefix, sizeof(prefix), "flood%u.", i);
		uint64_t s = fnv1a(prefix);
		for (unsigned x = 1; x < 256; x++) {
			uint64_t s1 = (s ^ x) * FNV_PRIME;
			unsigned y = (unsigned)((s1 ^ want) & 0xff);
			if (((s1 ^ want) & mask & ~0xffULL) != 0 || y == 0)
				continue;
			snprintf(flood[made++], FLOOD_KEY_MAX, "%s%c%c@example.test", prefix,
				 (char)x, (char)y);
			break;
		}
	}
}

static void test_basics(void **state)
{
	(void)state;
	hashmap_t m = HASHMAP_INIT;
	char key[32];
	assert_int_equal(hashmap_probe_count(&m, "k0"), 0);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		hashmap_put(&m, key, (void *)(intptr_t)(i + 1));
	}
	for (int i = 0; i < 5000; i += 2) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal((intptr_t)hashmap_remove(&m, key), i + 1);
	}
	assert_int_equal(m.count, 2500);
	assert_false(hashmap_contains(&m, "k0"));
	assert_int_equal((intptr_t)hashmap_get(&m, "k4999", NULL), 5000);
	assert_null(hashmap_put(&m, "k0", NULL));
	assert_true(hashmap_contains(&m, "k0"));
	assert_int_equal((intptr_t)hashmap_put(&m, "k1", (void *)7), 2);
	size_t pos = 0, n = 0;
	const char *k;
	void *v;
	while (hashmap_next(&m, &pos, &k, &v))
		n++;
	assert_int_equal(n, 2501);
	hashmap_free(&m, NULL);
}

static void build_order_map(hashmap_t *m)
{
	char key[32];
	for (int i = 0; i < ORDER_KEYS; i++) {
		snprintf(key, sizeof(key), "user%d@example.test", i);
		hashmap_put(m, key, NULL);
	}
}

/* The keys of build_order_map in slot order, one line each. */
static void print_order(FILE *out)
{
	hashmap_t m = HASHMAP_INIT;
	size_t pos = 0;
	const char *k;
	void *v;
	build_order_map(&m);
	while (hashmap_next(&m, &pos, &k, &v))
		fprintf(out, "%s\n", k);
	hashmap_free(&m, NULL);
}

/* The slot order printed by a new process running this binary. */
static void order_in_new_process(char *out, size_t size)
{
	char self[4096], command[4200];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(len > 0);
	self[len] = '\0';
	snprintf(command, sizeof(command), "exec '%s' --print-order", self);
	FILE *p = popen(command, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	assert_int_equal(pclose(p), 0);
}

static void test_slot_order_differs_between_processes(void **state)
{
	(void)state;
	static char first[4096], second[4096], here[4096], again[4096];
	FILE *mem = fmemopen(here, sizeof(here), "w");
	print_order(mem);
	fclose(mem);
	mem = fmemopen(again, sizeof(again), "w");
	print_order(mem);
	fclose(mem);
	assert_string_equal(here, again); /* one process, one key */
	order_in_new_process(first, sizeof(first));
	order_in_new_process(second, sizeof(second));
	assert_int_equal(strlen(first), strlen(here)); /* the same keys */
	/* 64 keys in 128 slots: the same order under two random keys has a
	 * chance far below 2^-100. */
	if (strcmp(first, second) == 0 || strcmp(first, here) == 0)
		fail_msg("the same keys took the same slot order in two processes:\n%s", first);
}

/* The roles inherit tables the supervisor built before fork(). */
static void test_child_finds_inherited_keys(void **state)
{
	(void)state;
	hashmap_t m = HASHMAP_INIT;
	build_order_map(&m);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char key[32];
		int missing = 0;
		for (int i = 0; i < ORDER_KEYS; i++) {
			snprintf(key, sizeof(key), "user%d@example.test", i);
			missing += !hashmap_contains(&m, key);
		}
		_exit(missing == 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	hashmap_free(&m, NULL);
}

static void test_crafted_collisions_stay_spread(void **state)
{
	(void)state;
	const uint64_t mask = (1u << FLOOD_BITS) - 1;
	hashmap_t m = HASHMAP_INIT;
	craft_flood_keys();
	/* The keys really do collide under the old, unkeyed hash. */
	for (size_t i = 1; i < FLOOD_KEYS; i++)
		if ((fnv1a(flood[i]) & mask) != (fnv1a(flood[0]) & mask))
			fail_msg("key %zu (%s) does not collide", i, flood[i]);
	for (size_t i = 0; i < FLOOD_KEYS; i++)
		assert_null(hashmap_put(&m, flood[i], NULL));
	assert_int_equal(m.count, FLOOD_KEYS);
	assert_int_equal(m.cap, 65536);
	size_t total = 0, longest = 0;
	for (size_t i = 0; i < FLOOD_KEYS; i++) {
		size_t p = hashmap_probe_count(&m, flood[i]);
		total += p;
		if (p > longest)
			longest = p;
	}
	/* Linear probing at 46% load examines about 1.4 slots per lookup on
	 * average; the unkeyed hash put all 30000 keys in one run (about
	 * 15000 per lookup). */
	if (total > 3 * (size_t)FLOOD_KEYS || longest > 200)
		fail_msg("crafted keys collide: %zu probes for %d lookups, longest %zu",
			 total, FLOOD_KEYS, longest);
	hashmap_free(&m, NULL);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--print-order") == 0) {
		print_order(stdout);
		return 0;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basics),
		cmocka_unit_test(test_slot_order_differs_between_processes),
		cmocka_unit_test(test_child_finds_inherited_keys),
		cmocka_unit_test(test_crafted_collisions_stay_spread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
