/*
 * test_capture.c - the capture switch (src/queue/capture.h): when it is
 * on, which messages match, and the file a copy makes (envelope header,
 * content range, mode, cleaned envelope text).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#include "lib/buf.h"
#include "lib/config.h"
#include "lib/safeio.h"
#include "queue/capture.h"

TESTUTIL_PRIVATE_DIR("capture")

static void load(const char *extra, struct config *cfg)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/postern.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "hostname = mx.example.test\ncapture_dir = %s\n%s", dir, extra);
	fclose(f);
	char err[2048] = "";
	FILE *errors = fmemopen(err, sizeof(err), "w");
	int rc = config_load(path, cfg, errors);
	fclose(errors);
	if (rc != 0)
		fail_msg("config: %s", err);
}

static struct sockaddr_in client_at(const char *addr)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	assert_int_equal(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
	return sin;
}

static void test_off_without_keys(void **state)
{
	(void)state;
	struct config cfg;
	load("", &cfg);
	assert_null(capture_new(&cfg)); /* nothing at all while off */
	config_free(&cfg);
}

static void test_matching(void **state)
{
	(void)state;
	struct config cfg;
	load("capture = yes\ncapture_senders = spy@remote.test, watched.test\n"
	     "capture_recipients = @example.test\ncapture_clients = 192.0.2.0/24\n", &cfg);
	struct capture *c = capture_new(&cfg);
	assert_non_null(c);
	assert_true(capture_on(c));
	strlist_t rcpts = { 0 };
	strlist_add(&rcpts, "someone@other.test");
	struct sockaddr_in far = client_at("198.51.100.7"), near = client_at("192.0.2.9");
	struct capture_message m = { .queue_id = "0123456789ABCDEF012",
		.client = (struct sockaddr *)&far, .client_addr = "198.51.100.7",
		.sender = "other@remote.test", .rcpts = &rcpts };
	assert_false(capture_matches(c, &m));
	m.sender = "Spy@Remote.test";
	assert_true(capture_matches(c, &m));
	m.sender = "anyone@watched.test";
	assert_true(capture_matches(c, &m));
	m.sender = "";  /* <> */
	assert_false(capture_matches(c, &m));
	m.client = (struct sockaddr *)&near;
	assert_true(capture_matches(c, &m));
	m.client = (struct sockaddr *)&far;
	strlist_add(&rcpts, "bob@example.test");
	assert_true(capture_matches(c, &m));
	strlist_free(&rcpts);
	capture_free(&c);
	assert_null(c);
	config_free(&cfg);
}

/* Wait until path exists (the capture thread has written it). */
static void wait_for(const char *path)
{
	for (int i = 0; i < 500 && access(path, F_OK) != 0; i++) {
		struct timespec tick = { 0, 10 * 1000 * 1000 };
		nanosleep(&tick, NULL);
	}
	assert_int_equal(access(path, F_OK), 0);
}

static void test_copy(void **state)
{
	(void)state;
	struct config cfg;
	load("capture = yes\n", &cfg);
	/* A content file with bytes before and after the range. */
	char content_path[300];
	snprintf(content_path, sizeof(content_path), "%s/content", dir);
	const char file[] = "ENVELOPE-RECORDS|Subject: hi\n\nbody\n|TRAILER";
	int fd = open(content_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(safeio_write_all(fd, file, sizeof(file) - 1), 0);
	close(fd);
	struct capture *c = capture_new(&cfg);
	strlist_t rcpts = { 0 };
	strlist_add(&rcpts, "a@example.test");
	strlist_add(&rcpts, "b@example.test");
	struct sockaddr_in sin = client_at("192.0.2.1");
	struct capture_message m = { .queue_id = "0123456789ABCDEF012",
		.client = (struct sockaddr *)&sin, .client_addr = "192.0.2.1",
		.helo = "evil\r\nX-Injected: 1", .sender = "s@remote.test", .rcpts = &rcpts,
		.content_path = content_path, .content_off = 17, .content_len = 19 };
	capture_message(c, &m);
	char path[300];
	snprintf(path, sizeof(path), "%s/0123456789ABCDEF012.eml", dir);
	wait_for(path);
	buf_t got = BUF_INIT;
	assert_int_equal(safeio_read_file(path, 4096, &got), 0);
	const char *text = buf_cstr(&got);
	assert_non_null(strstr(text, "X-Postern-Capture-Queue-Id: 0123456789ABCDEF012\n"));
	assert_non_null(strstr(text, "\nX-Postern-Capture-Client: 192.0.2.1 "
				     "helo=evil??X-Injected: 1\n"));
	assert_non_null(strstr(text, "\nX-Postern-Capture-Sender: <s@remote.test>\n"));
	assert_non_null(strstr(text, "\nX-Postern-Capture-Recipient: <a@example.test>\n"
				     "X-Postern-Capture-Recipient: <b@example.test>\n"
				     "Subject: hi\n\nbody\n"));
	assert_null(strstr(text, "TRAILER"));
	assert_null(strstr(text, "ENVELOPE"));
	assert_null(strstr(text, "MTA-Queue-Id")); /* serve's copy: no MTA */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	buf_free(&got);
	/* The content file may go away right after: the copy holds it open. */
	fd = open(content_path, O_RDONLY); /* for the descriptor case below */
	assert_true(fd >= 0);
	m.queue_id = "0123456789ABCDEF013";
	capture_message(c, &m);
	unlink(content_path);
	snprintf(path, sizeof(path), "%s/0123456789ABCDEF013.eml", dir);
	wait_for(path);
	/* A descriptor rather than a path (the milter server's unlinked spool). */
	m.content_path = NULL;
	m.content_fd = fd;
	m.queue_id = "0123456789ABCDEF015";
	m.mta_queue_id = "4Zx9\r\nX-Injected: 1"; /* the MTA's {i}, untrusted */
	capture_message(c, &m);
	close(fd); /* the capture holds its own duplicate */
	snprintf(path, sizeof(path), "%s/0123456789ABCDEF015.eml", dir);
	wait_for(path);
	assert_int_equal(safeio_read_file(path, 4096, &got), 0);
	assert_non_null(strstr(buf_cstr(&got), "\nSubject: hi\n\nbody\n"));
	assert_non_null(strstr(buf_cstr(&got), "X-Postern-Capture-Queue-Id: 0123456789ABCDEF015\n"
					       "X-Postern-Capture-MTA-Queue-Id: 4Zx9??X-Injected: 1\n"));
	buf_free(&got);
	m.mta_queue_id = NULL;
	m.content_path = content_path;
	/* A content file that is gone before: logged, nothing written. */
	m.queue_id = "0123456789ABCDEF014";
	capture_message(c, &m);
	capture_free(&c);
	snprintf(path, sizeof(path), "%s/0123456789ABCDEF014.eml", dir);
	assert_int_not_equal(access(path, F_OK), 0);
	strlist_free(&rcpts);
	config_free(&cfg);
}

static void test_trigger_file(void **state)
{
	(void)state;
	struct config cfg;
	char trigger[300], line[400];
	snprintf(trigger, sizeof(trigger), "%s/capture-on", dir);
	snprintf(line, sizeof(line), "capture_trigger_file = %s\n", trigger);
	load(line, &cfg);
	struct capture *c = capture_new(&cfg);
	assert_non_null(c);
	assert_false(capture_on(c));
	fclose(fopen(trigger, "w"));
	/* Looked at again within a second, not at every message. */
	struct timespec wait = { 1, 100 * 1000 * 1000 };
	nanosleep(&wait, NULL);
	assert_true(capture_on(c));
	unlink(trigger);
	nanosleep(&wait, NULL);
	assert_false(capture_on(c));
	capture_free(&c);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_off_without_keys),
		cmocka_unit_test(test_matching),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_trigger_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
