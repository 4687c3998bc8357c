/*
 * metrics.c - the shared metrics segment (see metrics.h): atomic
 * counters, fixed-bucket histograms, a lock-free table of labelled
 * series and the table of processes and their roles.
 *
 * RFCs: none. Untrusted input: none (label values are reduced to a safe
 * alphabet before they are stored). Privilege: any; written by every
 * process of "postern serve", read by the metrics role.
 */
#include "metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* A series slot: EMPTY, being written by the process that claimed it,
 * or READY (family and key fixed for the segment's life). */
enum { SLOT_EMPTY, SLOT_WRITING, SLOT_READY };
/* A claimer that finds a slot being written waits at most this many
 * turns (the writer copies a few bytes; it may have died meanwhile). */
#define WRITING_SPINS 100000

struct series_slot {
	_Atomic uint32_t state;
	uint32_t family;
	uint32_t key_len;
	char key[METRICS_SERIES_KEY_MAX];
	_Atomic uint64_t value;
};

struct histogram {
	_Atomic uint64_t buckets[METRICS_BUCKET_COUNT + 1];
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
};

/* pid 0: free; -1: being (re)claimed; the role is two words so that a
 * reader never sees half of one. */
struct process_slot {
	_Atomic int32_t pid;
	_Atomic uint64_t role[METRICS_ROLE_MAX / 8];
};

struct metrics_segment {
	_Atomic uint64_t counters[METRIC_COUNTER_COUNT];
	struct histogram histograms[METRIC_HISTOGRAM_COUNT];
	_Atomic uint64_t series_dropped;
	struct series_slot series[METRICS_SERIES_MAX];
	struct process_slot processes[METRICS_PROCESSES_MAX];
};

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free to be shared");
_Static_assert(METRICS_ROLE_MAX % 8 == 0, "role words");

static struct metrics_segment *segment;

#define COUNTER_DEF(id, name, help) { name, help, { NULL, NULL, NULL, NULL } },
#define FAMILY_DEF(id, name, help, l1, l2, l3, l4) { name, help, { l1, l2, l3, l4 } },
const struct metrics_def metrics_counter_defs[METRIC_COUNTER_COUNT] = {
	METRICS_COUNTERS(COUNTER_DEF)
};
const struct metrics_def metrics_family_defs[METRIC_FAMILY_COUNT] = {
	METRICS_FAMILIES(FAMILY_DEF)
};
const struct metrics_def metrics_histogram_defs[METRIC_HISTOGRAM_COUNT] = {
	METRICS_HISTOGRAMS(COUNTER_DEF)
};
#undef COUNTER_DEF
#undef FAMILY_DEF
const uint64_t metrics_bucket_us[METRICS_BUCKET_COUNT] = METRICS_BUCKETS_US;

int metrics_init(void)
{
	if (segment != NULL)
		return 0;
	void *p = mmap(NULL, sizeof(*segment), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		return -1;
	segment = p; /* zero-filled: every counter 0, every slot free */
	return 0;
}

bool metrics_enabled(void)
{
	return segment != NULL;
}

uint64_t metrics_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void metrics_add(enum metric_counter id, uint64_t n)
{
	if (segment != NULL && (size_t)id < METRIC_COUNTER_COUNT)
		atomic_fetch_add_explicit(&segment->counters[id], n, memory_order_relaxed);
}

void metrics_count(enum metric_counter id)
{
	metrics_add(id, 1);
}

void metrics_observe_us(enum metric_histogram id, uint64_t microseconds)
{
	if (segment == NULL || (size_t)id >= METRIC_HISTOGRAM_COUNT)
		return;
	struct histogram *h = &segment->histograms[id];
	size_t b = 0;
	while (b < METRICS_BUCKET_COUNT && microseconds > metrics_bucket_us[b])
		b++;
	atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, microseconds, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

static bool safe_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
}

/* The values, each cut, reduced to the safe alphabet and ended by NUL. */
static size_t make_key(const char *const *values, size_t count, char key[METRICS_SERIES_KEY_MAX])
{
	size_t len = 0;
	for (size_t i = 0; i < count && i < METRICS_LABELS_MAX; i++) {
		const char *v = values[i] != NULL ? values[i] : "";
		for (size_t j = 0; v[j] != '\0' && j < METRICS_LABEL_VALUE_MAX - 1; j++)
			key[len++] = safe_char(v[j]) ? v[j] : '_';
		key[len++] = '\0';
	}
	return len;
}

static uint64_t key_hash(uint32_t family, const char *key, size_t len)
{
	uint64_t h = 14695981039346656037ULL ^ family;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static bool slot_is(const struct series_slot *s, uint32_t family, const char *key, size_t len)
{
	return s->family == family && s->key_len == len && memcmp(s->key, key, len) == 0;
}

/* The slot of (family, key), claimed if it is new; NULL if the table is full. */
static struct series_slot *series_find(uint32_t family, const char *key, size_t len)
{
	size_t start = key_hash(family, key, len) % METRICS_SERIES_MAX;
	for (size_t n = 0; n < METRICS_SERIES_MAX; n++) {
		struct series_slot *s = &segment->series[(start + n) % METRICS_SERIES_MAX];
		uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
		if (state == SLOT_EMPTY) {
			uint32_t expected = SLOT_EMPTY;
			if (atomic_compare_exchange_strong_explicit(&s->state, &expected, SLOT_WRITING,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				s->family = family;
				s->key_len = (uint32_t)len;
				memcpy(s->key, key, len);
				atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
				return s;
			}
			state = expected;
		}
		for (int spins = 0; state == SLOT_WRITING && spins < WRITING_SPINS; spins++)
			state = atomic_load_explicit(&s->state, memory_order_acquire);
		if (state == SLOT_READY && slot_is(s, family, key, len))
			return s;
	}
	return NULL;
}

void metrics_count_labels(enum metric_family id, const char *const *values, size_t count)
{
	if (segment == NULL || (size_t)id >= METRIC_FAMILY_COUNT)
		return;
	char key[METRICS_SERIES_KEY_MAX];
	size_t len = make_key(values, count, key);
	struct series_slot *s = series_find((uint32_t)id, key, len);
	if (s != NULL)
		atomic_fetch_add_explicit(&s->value, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&segment->series_dropped, 1, memory_order_relaxed);
}

static void role_store(struct process_slot *p, const char *role)
{
	char text[METRICS_ROLE_MAX] = { 0 };
	strncpy(text, role, sizeof(text) - 1);
	for (size_t w = 0; w < METRICS_ROLE_MAX / 8; w++) {
		uint64_t word;
		memcpy(&word, text + 8 * w, 8);
		atomic_store_explicit(&p->role[w], word, memory_order_relaxed);
	}
}

/* A slot is free if nobody claimed it or its process is gone. */
static bool slot_free(int32_t pid)
{
	return pid == 0 || (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH);
}

void metrics_process_role(const char *role)
{
	if (segment == NULL)
		return;
	int32_t me = (int32_t)getpid();
	int saved = errno;
	for (size_t i = 0; i < METRICS_PROCESSES_MAX; i++) {
		struct process_slot *p = &segment->processes[i];
		if (atomic_load_explicit(&p->pid, memory_order_acquire) == me) {
			role_store(p, role); /* a role named twice (a fork's child, then itself) */
			errno = saved;
			return;
		}
	}
	for (size_t i = 0; i < METRICS_PROCESSES_MAX; i++) {
		struct process_slot *p = &segment->processes[i];
		int32_t old = atomic_load_explicit(&p->pid, memory_order_acquire);
		if (!slot_free(old) ||
		    !atomic_compare_exchange_strong(&p->pid, &old, -1))
			continue;
		role_store(p, role);
		atomic_store_explicit(&p->pid, me, memory_order_release);
		break;
	}
	errno = saved;
}

uint64_t metrics_counter_value(enum metric_counter id)
{
	if (segment == NULL || (size_t)id >= METRIC_COUNTER_COUNT)
		return 0;
	return atomic_load_explicit(&segment->counters[id], memory_order_relaxed);
}

bool metrics_series(size_t i, enum metric_family *family_r,
		    char key_r[METRICS_SERIES_KEY_MAX], size_t *nvalues_r, uint64_t *value_r)
{
	if (segment == NULL || i >= METRICS_SERIES_MAX)
		return false;
	struct series_slot *s = &segment->series[i];
	if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY ||
	    s->family >= METRIC_FAMILY_COUNT || s->key_len > METRICS_SERIES_KEY_MAX)
		return false;
	*family_r = (enum metric_family)s->family;
	memcpy(key_r, s->key, s->key_len);
	size_t n = 0;
	for (size_t j = 0; j < s->key_len; j++)
		n += s->key[j] == '\0';
	*nvalues_r = n;
	*value_r = atomic_load_explicit(&s->value, memory_order_relaxed);
	return true;
}

uint64_t metrics_series_dropped(void)
{
	return segment != NULL ? atomic_load_explicit(&segment->series_dropped, memory_order_relaxed)
			       : 0;
}

void metrics_histogram(enum metric_histogram id, uint64_t buckets_r[METRICS_BUCKET_COUNT + 1],
		       uint64_t *count_r, uint64_t *sum_us_r)
{
	memset(buckets_r, 0, sizeof(uint64_t) * (METRICS_BUCKET_COUNT + 1));
	*count_r = *sum_us_r = 0;
	if (segment == NULL || (size_t)id >= METRIC_HISTOGRAM_COUNT)
		return;
	struct histogram *h = &segment->histograms[id];
	for (size_t b = 0; b <= METRICS_BUCKET_COUNT; b++)
		buckets_r[b] = atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
	*count_r = atomic_load_explicit(&h->count, memory_order_relaxed);
	*sum_us_r = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

bool metrics_process(size_t i, int *pid_r, char role_r[METRICS_ROLE_MAX])
{
	if (segment == NULL || i >= METRICS_PROCESSES_MAX)
		return false;
	struct process_slot *p = &segment->processes[i];
	int32_t pid = atomic_load_explicit(&p->pid, memory_order_acquire);
	if (pid <= 0)
		return false;
	for (size_t w = 0; w < METRICS_ROLE_MAX / 8; w++) {
		uint64_t word = atomic_load_explicit(&p->role[w], memory_order_relaxed);
		memcpy(role_r + 8 * w, &word, 8);
	}
	role_r[METRICS_ROLE_MAX - 1] = '\0';
	*pid_r = pid;
	return true;
}
