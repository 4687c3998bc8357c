/*
 * test_scan_master.c - the scan master (src/server/scan_role.c) run in a
 * child process with a fake pipeline whose one stage tags each message
 * with the number of the build that made it, and watches a state file as
 * its "signatures": the test plays an smtp worker on the real socket.
 * Checks that a changed file makes the master build a new pipeline beside
 * the running one and move to it; that a new set that does not load is
 * logged with its file and line while the running pipeline keeps
 * answering; that a retiring master whose socket a newer one took over
 * tells its workers to move (DRAIN) yet answers what they still send,
 * and exits once they have gone; that without a successor it removes its
 * socket; and that a worker breaking the protocol loses only its own
 * connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "lib/config.h"
#include "lib/safeio.h"
#include "lib/xalloc.h"
#include "queue/queue.h"
#include "scan/scan.h"
#include "scan/scan_proto.h"
#include "server/server.h"

static char *dir, *state_path, *log_path, *sock_path;
static struct config cfg;
static pid_t master = -1;
static unsigned builds; /* successful builds, counted in the master */

/* ---- the fake pipeline (runs in the master and its scanners) --------------- */

struct fake {
	unsigned generation;
	struct timespec loaded; /* the state file's mtime when built */
};

static bool state_mtime(struct timespec *ts)
{
	struct stat st;
	if (stat(state_path, &st) < 0)
		return false;
	*ts = st.st_mtim;
	return true;
}

static int fake_run(void *ctx, const struct scan_message *m, struct scan_verdict *v)
{
	struct fake *f = ctx;
	char field[64];
	(void)m;
	snprintf(field, sizeof(field), "X-Generation: %u", f->generation);
	scan_verdict_add_header(v, field);
	v->action = SCAN_TAG;
	return 0;
}

static bool fake_stale(void *ctx)
{
	struct fake *f = ctx;
	struct timespec now;
	return state_mtime(&now) &&
	       (now.tv_sec != f->loaded.tv_sec || now.tv_nsec != f->loaded.tv_nsec);
}

static struct scan_pipeline *fake_build(const struct config *c, char **err_r)
{
	buf_t state = BUF_INIT;
	struct fake *f = xcalloc(1, sizeof(*f));
	state_mtime(&f->loaded);
	if (safeio_read_file(state_path, 1024, &state) == 0 &&
	    strncmp(buf_cstr(&state), "broken", 6) == 0) {
		*err_r = xstrdup("fake.rules:3: broken on purpose");
		buf_free(&state);
		free(f);
		return NULL;
	}
	buf_free(&state);
	struct scan_pipeline *p = scan_pipeline_build(c, err_r);
	f->generation = ++builds;
	struct scan_stage stage = { "fake", fake_run, fake_stale, free, f, false };
	scan_pipeline_add(p, &stage);
	return p;
}

/* ---- the master in a child ------------------------------------------------------ */

static void write_state(const char *text)
{
	struct timespec pause = { 0, 20 * 1000 * 1000 }; /* a new mtime */
	nanosleep(&pause, NULL);
	char *tmp = safeio_path_join(dir, "state.tmp");
	FILE *f = fopen(tmp, "w");
	fputs(text, f);
	fclose(f);
	assert_int_equal(rename(tmp, state_path), 0);
	free(tmp);
}

static void start_master(void)
{
	char tmpl[] = "/tmp/postern-test-scan-master-XXXXXX";
	dir = xstrdup(mkdtemp(tmpl));
	char *conf = safeio_path_join(dir, "postern.conf");
	FILE *f = fopen(conf, "w");
	fprintf(f, "hostname = mx.example.test\nspool_dir = spool\nscan_workers = 2\n");
	fclose(f);
	assert_int_equal(config_load(conf, &cfg, stderr), 0);
	free(conf);
	char *err = NULL;
	assert_int_equal(queue_dirs_create(cfg.spool_dir, &err), 0);
	char *private = safeio_path_join(cfg.spool_dir, SCAN_SOCKET_FOLDER);
	assert_int_equal(mkdir(private, 0700), 0);
	free(private);
	state_path = safeio_path_join(dir, "state");
	log_path = safeio_path_join(dir, "master.log");
	sock_path = scan_socket_path(cfg.spool_dir);
	write_state("ok\n");

	int ready[2];
	assert_int_equal(pipe(ready), 0);
	fflush(NULL);
	master = fork();
	assert_true(master >= 0);
	if (master == 0) {
		close(ready[0]);
		int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(logfd, STDERR_FILENO);
		close(logfd);
		struct scan_master_pace pace = { 50, 200 };
		_exit(scan_master_run(&cfg, ready[1], fake_build, &pace));
	}
	close(ready[1]);
	struct pollfd p = { ready[0], POLLIN, 0 };
	assert_int_equal(poll(&p, 1, 10000), 1);
	char what = 0;
	assert_int_equal(read(ready[0], &what, 1), 1);
	assert_int_equal(what, SCAN_READY_ON);
	close(ready[0]);
}

/* Wait up to 10 s for the master to exit; its status. */
static int wait_master(void)
{
	int status = -1;
	for (int i = 0; i < 1000; i++) {
		if (waitpid(master, &status, WNOHANG) == master) {
			master = -1;
			return status;
		}
		usleep(10000);
	}
	fail_msg("the scan master did not exit");
	return -1;
}

static void stop_master(void)
{
	if (master > 0) {
		kill(master, SIGTERM);
		assert_int_equal(wait_master(), 0);
	}
	config_free(&cfg);
	testutil_rmtree(dir);
	xfree(&dir);
	xfree(&state_path);
	xfree(&log_path);
	xfree(&sock_path);
}

static bool log_has(const char *text)
{
	buf_t log = BUF_INIT;
	bool found = safeio_read_file(log_path, 1 << 20, &log) == 0 &&
		     strstr(buf_cstr(&log), text) != NULL;
	buf_free(&log);
	return found;
}

static void wait_log(const char *text)
{
	for (int i = 0; i < 1000 && !log_has(text); i++)
		usleep(10000);
	if (!log_has(text))
		fail_msg("the scan master's log never said \"%s\"", text);
}

/* ---- a worker ----------------------------------------------------------------------- */

static int connect_worker(void)
{
	int s = scan_socket_connect(sock_path);
	assert_true(s >= 0);
	return s;
}

/* The next message on s within 10 s (1), or the end of the stream (0). */
static int next_msg(int s, struct scan_msg *m)
{
	const char *why = NULL;
	int fd = -1;
	for (int i = 0; i < 1000; i++) {
		int rc = scan_recv(s, false, m, &fd, &why);
		if (rc >= 0)
			return rc;
		scan_msg_free(m);
		if (errno != EAGAIN)
			fail_msg("receive from the scan master: %s", why);
		struct pollfd p = { s, POLLIN, 0 };
		poll(&p, 1, 10);
	}
	fail_msg("no answer from the scan master");
	return -1;
}

static void send_request(int s, uint32_t seq)
{
	char id[QUEUE_ID_LEN + 1];
	queue_id_new(id);
	char *incoming = safeio_path_join(cfg.spool_dir, "incoming");
	char *path = safeio_path_join(incoming, id);
	FILE *f = fopen(path, "w");
	fputs("Subject: test\n\nhello\n", f);
	fclose(f);
	int fd = open(path, O_RDONLY);
	struct scan_msg m;
	scan_msg_init(&m, SCAN_MSG_REQUEST);
	m.seq = seq;
	memcpy(m.id, id, sizeof(m.id));
	m.content_len = strlen("Subject: test\n\nhello\n");
	scan_msg_set_envelope(&m, "a@remote.test", "192.0.2.1", "client.test", NULL);
	assert_int_equal(scan_send(s, &m, fd), 0);
	scan_msg_free(&m);
	close(fd);
	free(path);
	free(incoming);
}

/* Ask on s; the generation that answered. */
static unsigned ask(int s, uint32_t seq)
{
	struct scan_msg v;
	send_request(s, seq);
	assert_int_equal(next_msg(s, &v), 1);
	assert_int_equal(v.type, SCAN_MSG_VERDICT);
	assert_int_equal(v.seq, seq);
	assert_int_equal(v.verdict.action, SCAN_TAG);
	assert_int_equal(v.verdict.headers.count, 1);
	unsigned gen = 0;
	assert_int_equal(sscanf(v.verdict.headers.items[0], "X-Generation: %u", &gen), 1);
	scan_msg_free(&v);
	return gen;
}

/* ---- the tests ---------------------------------------------------------------------- */

static void test_changed_files_load_beside_the_running_pipeline(void **state)
{
	(void)state;
	start_master();
	int s = connect_worker();
	assert_int_equal(ask(s, 1), 1);
	/* A set that does not load: logged, the running pipeline answers. */
	write_state("broken\n");
	wait_log("scan: the changed files do not load: fake.rules:3: broken on purpose; "
		 "the running pipeline stays");
	assert_int_equal(ask(s, 2), 1);
	/* Fixed: loaded beside the running one, then used. */
	write_state("ok again\n");
	wait_log("scan: new pipeline loaded (1 stage); 2 scanners replaced");
	unsigned gen = 0;
	for (int i = 0; i < 100 && (gen = ask(s, 3 + (uint32_t)i)) != 2; i++)
		usleep(10000);
	assert_int_equal(gen, 2);
	close(s);
	stop_master();
}

static void test_retire_with_a_successor_drains_the_workers(void **state)
{
	(void)state;
	start_master();
	int s = connect_worker();
	assert_int_equal(ask(s, 1), 1);
	/* A newer master takes the path over. */
	char *tmp = xstrdup(sock_path);
	tmp[strlen(tmp) - 1] = 'X';
	int newer = scan_socket_listen(tmp);
	assert_true(newer >= 0);
	assert_int_equal(rename(tmp, sock_path), 0);
	kill(master, SIGUSR2);
	struct scan_msg m;
	assert_int_equal(next_msg(s, &m), 1);
	assert_int_equal(m.type, SCAN_MSG_DRAIN);
	scan_msg_free(&m);
	wait_log("scan: reload: a new scan master has taken over; 1 worker connection goes on");
	/* What the worker still sends is answered; then it leaves, and so
	 * does the master. */
	assert_int_equal(ask(s, 2), 1);
	struct stat st;
	assert_int_equal(stat(sock_path, &st), 0); /* the successor's, untouched */
	close(s);
	assert_int_equal(wait_master(), 0);
	close(newer);
	free(tmp);
	stop_master();
}

static void test_retire_without_a_successor_removes_the_socket(void **state)
{
	(void)state;
	start_master();
	int s = connect_worker();
	kill(master, SIGUSR2);
	wait_log("scan: reload: scanning is off now");
	struct stat st;
	assert_int_equal(stat(sock_path, &st), -1);
	assert_int_equal(ask(s, 1), 1); /* an old worker's session goes on */
	close(s);
	assert_int_equal(wait_master(), 0);
	stop_master();
}

static void test_a_broken_worker_loses_only_its_connection(void **state)
{
	(void)state;
	start_master();
	int good = connect_worker(), bad = connect_worker(), gone = connect_worker();
	assert_int_equal(send(bad, "\x01garbage", 8, 0), 8);
	struct scan_msg m;
	assert_int_equal(next_msg(bad, &m), 0); /* closed by the master */
	scan_msg_free(&m);
	wait_log("protocol violation from an smtp worker");
	/* A worker that leaves while its message is scanned. */
	send_request(gone, 1);
	close(gone);
	assert_int_equal(ask(good, 1), 1);
	assert_int_equal(ask(good, 2), 1);
	close(good);
	close(bad);
	stop_master();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_changed_files_load_beside_the_running_pipeline),
		cmocka_unit_test(test_retire_with_a_successor_drains_the_workers),
		cmocka_unit_test(test_retire_without_a_successor_removes_the_socket),
		cmocka_unit_test(test_a_broken_worker_loses_only_its_connection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
