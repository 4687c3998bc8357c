/*
 * test_metrics.c - the shared metrics segment (src/lib/metrics.c):
 * nothing recorded before metrics_init, counters and histograms shared
 * with forked children, labelled series (values made safe, cut, a full
 * table counted as dropped), the process table, and the rendering.
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
#include <event2/buffer.h>

#include "lib/metrics.h"
#include "server/metrics_role.h"

static uint64_t series_value(enum metric_family f, const char *key, size_t key_len)
{
	for (size_t i = 0; i < METRICS_SERIES_MAX; i++) {
		enum metric_family family;
		char k[METRICS_SERIES_KEY_MAX];
		size_t n;
		uint64_t v;
		if (metrics_series(i, &family, k, &n, &v) && family == f && memcmp(k, key, key_len) == 0)
			return v;
	}
	return 0;
}

static void test_nothing_before_init(void **state)
{
	(void)state;
	assert_false(metrics_enabled());
	metrics_count(METRIC_SMTP_CONNECTIONS);
	metrics_observe_us(METRIC_DNS_SECONDS, 5);
	metrics_process_role("smtp");
	assert_int_equal(metrics_counter_value(METRIC_SMTP_CONNECTIONS), 0);
}

static void test_counters_shared_with_children(void **state)
{
	(void)state;
	assert_int_equal(metrics_init(), 0);
	assert_true(metrics_enabled());
	for (int c = 0; c < 4; c++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			for (int i = 0; i < 10000; i++)
				metrics_count(METRIC_SMTP_CONNECTIONS);
			metrics_observe_us(METRIC_SCAN_SECONDS, 3000); /* the 5 ms bucket */
			_exit(0);
		}
	}
	for (int c = 0; c < 4; c++)
		wait(NULL);
	assert_int_equal(metrics_counter_value(METRIC_SMTP_CONNECTIONS), 40000);
	uint64_t buckets[METRICS_BUCKET_COUNT + 1], count, sum;
	metrics_histogram(METRIC_SCAN_SECONDS, buckets, &count, &sum);
	assert_int_equal(count, 4);
	assert_int_equal(sum, 12000);
	assert_int_equal(buckets[2], 4); /* le=0.005 */
	metrics_observe_us(METRIC_SCAN_SECONDS, 1000000000);
	metrics_histogram(METRIC_SCAN_SECONDS, buckets, &count, &sum);
	assert_int_equal(buckets[METRICS_BUCKET_COUNT], 1); /* above every bound */
}

static void test_labels(void **state)
{
	(void)state;
	const char *v[] = { "rcpt", "5xx", "reject_unauth_destination", "relay\"denied\n{x}" };
	metrics_count_labels(METRIC_SMTP_REJECTIONS, v, 4);
	metrics_count_labels(METRIC_SMTP_REJECTIONS, v, 4);
	static const char key[] = "rcpt\0" "5xx\0" "reject_unauth_destination\0" "relay_denied__x_";
	assert_int_equal(series_value(METRIC_SMTP_REJECTIONS, key, sizeof(key)), 2);
	/* a long value is cut */
	char longv[200];
	memset(longv, 'a', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	const char *w[] = { "local", longv };
	metrics_count_labels(METRIC_DELIVERIES, w, 2);
	char cut[6 + METRICS_LABEL_VALUE_MAX];
	memcpy(cut, "local", 6);
	memset(cut + 6, 'a', METRICS_LABEL_VALUE_MAX - 1);
	cut[6 + METRICS_LABEL_VALUE_MAX - 1] = '\0';
	assert_int_equal(series_value(METRIC_DELIVERIES, cut, sizeof(cut)), 1);
}

static void test_full_table_counts_dropped(void **state)
{
	(void)state;
	char name[32];
	for (int i = 0; i < METRICS_SERIES_MAX + 10; i++) {
		snprintf(name, sizeof(name), "reason%d", i);
		const char *v[] = { "pass", name };
		metrics_count_labels(METRIC_SCAN_VERDICTS, v, 2);
	}
	assert_true(metrics_series_dropped() >= 10);
}

static void test_processes(void **state)
{
	(void)state;
	metrics_process_role("tester");
	metrics_process_role("renamed"); /* the same process: one slot */
	int found = 0;
	for (size_t i = 0; i < METRICS_PROCESSES_MAX; i++) {
		int pid;
		char role[METRICS_ROLE_MAX];
		if (metrics_process(i, &pid, role) && pid == getpid()) {
			found++;
			assert_string_equal(role, "renamed");
		}
	}
	assert_int_equal(found, 1);
}

static void test_render(void **state)
{
	(void)state;
	struct evbuffer *out = evbuffer_new();
	metrics_render(out, "/nonexistent", getpid());
	size_t len = evbuffer_get_length(out);
	char *text = calloc(1, len + 1);
	evbuffer_remove(out, text, len);
	assert_non_null(strstr(text, "# TYPE postern_smtp_connections_total counter\n"
				     "postern_smtp_connections_total 40000\n"));
	assert_non_null(strstr(text, "postern_smtp_rejections_total{stage=\"rcpt\",class=\"5xx\","
				     "check=\"reject_unauth_destination\",reason=\"relay_denied__x_\"} 2\n"));
	assert_non_null(strstr(text, "postern_scan_duration_seconds_bucket{le=\"+Inf\"} 5\n"));
	assert_non_null(strstr(text, "postern_scan_duration_seconds_count 5\n"));
	assert_non_null(strstr(text, "postern_processes{role=\"renamed\"} 1\n"));
	assert_null(strstr(text, "postern_queue_messages{")); /* no spool there */
	free(text);
	evbuffer_free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_before_init),
		cmocka_unit_test(test_counters_shared_with_children),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_full_table_counts_dropped),
		cmocka_unit_test(test_processes),
		cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
