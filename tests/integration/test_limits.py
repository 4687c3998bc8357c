"""
test_limits.py - what a hostile or broken client cannot do to a session
(issue 5): hold it by trickling bytes (deadlines per command, per DATA
phase, per transaction and per session, not per read), fill memory over
TLS without reading, keep a timed-out TLS session alive, spin a worker
that is out of descriptors, run message text as commands after a refused
DATA, loop on junk commands, or talk to a server that is shutting down.
Also the parser fixes seen through the real server: long lines accepted
by default (the shared corpus's real messages with such lines, sent by
smtplib, arrive intact), SMTPUTF8 inside a quoted local part, a lone dot
ended by a bare LF in normalize mode.
"""
import os
import re
import shutil
import tempfile
import signal
import socket
import ssl
import threading
import time

from harness import (PRELOAD_DIR, REPO, SANITIZED, PosternTestCase, SmtpClosed, SmtpConn,
                     client_tls_context, queue_id_of, raw_send, scaled, smtplib_send,
                     split_message, wait_until)

CORPUS = os.path.join(os.path.dirname(REPO), "shared", "corpus", "train")


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def trickle(conn, data, interval):
    """Send data one byte at a time; stop quietly when the server closes."""
    for b in data:
        try:
            conn.send(bytes([b]))
        except OSError:
            return
        time.sleep(interval)


class DeadlineTest(PosternTestCase):
    """command_timeout bounds a whole command and data_timeout a whole DATA
    phase: a client sending a byte every second never completes one and
    is cut off, although no single read ever waits long."""

    def test_command_trickled_byte_by_byte_times_out(self):
        srv = self.start_server(config={"command_timeout": "3s"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        start = time.monotonic()
        t = threading.Thread(target=trickle, args=(c, b"NOOP NOOP NOOP NOOP NOOP", 0.5),
                             daemon=True)
        t.start()
        r = c.reply(timeout=scaled(10))
        took = time.monotonic() - start
        self.assertReply(r, 421, "4.4.2")
        self.assertTrue(c.closed_by_server(scaled(5)))
        self.assertGreater(took, 2.5)
        self.assertLess(took, scaled(8), "the deadline is per command, not per read")
        srv.wait_log(r"client=127\.0\.0\.1 timeout after command")

    def test_data_trickled_byte_by_byte_times_out(self):
        srv = self.start_server(config={"data_timeout": "3s", "data_min_rate": "100k"})
        c = self.open_session(srv)
        self.start_data(c, "slow@remote.test", ["alice@example.test"])
        start = time.monotonic()
        t = threading.Thread(target=trickle, args=(c, b"Subject: slow\r\n\r\n" + b"x" * 40, 0.4),
                             daemon=True)
        t.start()
        r = c.reply(timeout=scaled(10))
        self.assertReply(r, 421, "4.4.2")
        self.assertLess(time.monotonic() - start, scaled(8))
        srv.wait_log(r"[0-9A-F]{19}: client=127\.0\.0\.1 timeout after data")
        time.sleep(0.5)
        self.assertEqual(srv.maildir_new("alice"), [])
        self.assertEqual(srv.spool_files("incoming"), [], "the unfinished message is dropped")

    def test_data_deadline_grows_with_the_bytes_received(self):
        # 3 s plus one second per 2 KB at data_min_rate = 2k: 24 KB sent
        # over ~5 s in 2 KB steps stays inside its growing deadline.
        srv = self.start_server(config={"data_timeout": "3s", "data_min_rate": "2k"})
        c = self.open_session(srv)
        self.start_data(c, "steady@remote.test", ["bob@example.test"])
        c.send(b"Subject: steady\r\n\r\n")
        for _ in range(12):
            c.send(b"y" * 2046 + b"\r\n")
            time.sleep(0.4)
        c.send(b".\r\n")
        r = c.reply(timeout=scaled(10))
        self.assertReply(r, 250)
        srv.wait_delivery("bob", queue_id_of(r.text))

    def until_421(self, c, line, limit):
        """Send line every 0.5 s until the server answers 421 (its reply)."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            r = c.cmd(line)
            if r.code == 421:
                return r, time.monotonic() - start
            time.sleep(0.5)
        self.fail("no 421 within %.0f s" % limit)

    def test_transaction_deadline(self):
        srv = self.start_server(config={"transaction_timeout": "3s"})
        c = self.open_session(srv)
        self.assertReply(c.cmd("MAIL FROM:<slowtx@remote.test>"), 250)
        r, took = self.until_421(c, "RCPT TO:<alice@example.test>", scaled(10))
        self.assertIn("transaction time limit", r.text)
        self.assertGreater(took, 2.0)
        self.assertTrue(c.closed_by_server(scaled(5)))
        srv.wait_log(r"timeout after transaction")

    def test_session_deadline(self):
        srv = self.start_server(config={"session_timeout": "3s"})
        c = self.open_session(srv)
        r, took = self.until_421(c, "EHLO again.test", scaled(10))
        self.assertIn("session time limit", r.text)
        self.assertGreater(took, 2.0)
        srv.wait_log(r"timeout after session")


class JunkCommandTest(PosternTestCase):

    def test_junk_commands_count_as_errors_after_the_limit(self):
        srv = self.start_server(config={"junk_command_limit": "5", "error_limit": "3"})
        c = self.open_session(srv)
        for _ in range(7):
            self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd("RSET"), 250)  # the third error past the limit...
        self.assertReply(c.reply(), 421, "4.7.0")  # ...ends the session
        self.assertTrue(c.closed_by_server(scaled(5)))

    def test_an_accepted_message_resets_the_count(self):
        srv = self.start_server(config={"junk_command_limit": "5", "error_limit": "3"})
        c = self.open_session(srv)
        for _ in range(4):  # 20 junk commands, never more than 5 in a row
            for _ in range(5):
                self.assertReply(c.cmd("NOOP"), 250)
            r = raw_send(c, "a@remote.test", ["alice@example.test"], b"Subject: j\r\n\r\nx\r\n.\r\n")
            self.assertReply(r, 250)
        self.assertEqual(c.pending(0.3), b"")


class CommandLoopTest(PosternTestCase):
    """Loops of commands that each look harmless (MAIL then EHLO, the same
    RCPT again) count as junk: the session ends and the log stays small."""

    def test_mail_ehlo_loop_ends_the_session(self):
        srv = self.start_server(config={"junk_command_limit": "20", "error_limit": "5"})
        c = self.open_session(srv)
        log0 = srv.log_size()
        sent = 0
        with self.assertRaises((SmtpClosed, OSError)):
            for _ in range(500):
                c.send(b"MAIL FROM:<a@remote.test>\r\nEHLO x\r\n")
                sent += 1
                c.reply()
                while True:
                    r = c.reply()
                    if r.code == 421:
                        raise SmtpClosed("421")
                    if r.code != 250 or len(r.lines) > 1:
                        break
        self.assertLess(sent, 40)
        self.assertLess(srv.log_since(log0).count("\n"), 80)

    def test_repeated_rcpt_ends_the_session_quietly(self):
        srv = self.start_server(config={"junk_command_limit": "20", "error_limit": "5"})
        c = self.open_session(srv)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        log0 = srv.log_size()
        codes = []
        try:
            for _ in range(200):
                codes.append(c.cmd("RCPT TO:<bob@example.test>").code)
                if codes[-1] == 421:
                    break
        except (SmtpClosed, OSError):
            pass
        self.assertIn(421, codes + [c.reply().code] if codes[-1] != 421 else codes)
        self.assertLess(len(codes), 40)
        self.assertLessEqual(srv.log_since(log0).count("to=<bob@example.test> status=accepted"), 1)


class NonSmtpInputTest(PosternTestCase):
    """A pipelining client whose DATA is refused has sent the message
    already: its lines must never run as commands."""

    BODY = (b"From: <evil@remote.test>\r\n"
            b"Subject: smuggled through a refused DATA\r\n\r\n"
            b"MAIL FROM:<evil@remote.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\n"
            b"DATA\r\n"
            b"inner message\r\n.\r\n")

    def test_message_text_after_refused_data_ends_the_session(self):
        srv = self.start_server()
        c = self.open_session(srv)
        c.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n" +
               self.BODY + b"QUIT\r\n")
        self.assertReply(c.reply(), 250)
        self.assertReply(c.reply(), 550, "5.1.1")
        self.assertReply(c.reply(), 554, "5.5.1")
        self.assertTrue(c.closed_by_server(scaled(5)))
        srv.wait_log(r"sent message text before the reply to DATA")
        time.sleep(1)
        self.assertEqual(srv.all_maildir_files(), {})
        self.assertNotIn("accepted from=", srv.log())

    def test_header_line_where_a_command_belongs_ends_the_session(self):
        srv = self.start_server()
        c = self.open_session(srv)
        c.send(b"From: <evil@remote.test>\r\nMAIL FROM:<evil@remote.test>\r\n")
        self.assertReply(c.reply(), 221, "2.7.0")
        self.assertTrue(c.closed_by_server(scaled(5)))
        srv.wait_log(r"non-SMTP command: From: <evil@remote.test>")

    def test_refused_data_ends_the_transaction(self):
        # Even a body without header lines cannot reuse the transaction:
        # the session ends with the refusal.
        srv = self.start_server()
        c = self.open_session(srv)
        c.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n"
               b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
        codes = [r.code for r in c.replies(3)]
        self.assertEqual(codes, [250, 550, 554])
        self.assertTrue(c.closed_by_server(scaled(5)))

    def test_http_request_ends_the_session(self):
        srv = self.start_server()
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.send(b"GET / HTTP/1.1\r\nHost: mx.example.test\r\n\r\n")
        self.assertReply(c.reply(), 221, "2.7.0")
        self.assertTrue(c.closed_by_server(scaled(5)))

    def test_any_field_name_and_colon_is_message_content(self):
        # "Subject:no-space" is a header too (RFC 5322 needs no space), and
        # no SMTP command has a colon in its first word.
        for line in (b"Subject:no-space", b"MAILFROM:<a@remote.test>", b"X-Mailer:"):
            srv = self.start_server()
            c = self.open_session(srv)
            c.send(line + b"\r\n")
            self.assertReply(c.reply(), 221, "2.7.0")
            self.assertTrue(c.closed_by_server(scaled(5)))

    def test_text_pipelined_after_a_refused_data_never_runs(self):
        # The reviewer's attack: the message after the refused DATA starts
        # with a header without a space, or with no header at all, and
        # carries a whole transaction of its own.
        for first in (b"Subject:no-space", b"just a body line"):
            srv = self.start_server()
            c = self.open_session(srv)
            c.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n" +
                   first + b"\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
                   b"DATA\r\nSubject: injected\r\n\r\nhi\r\n.\r\nQUIT\r\n")
            self.assertReply(c.reply(), 250)
            self.assertReply(c.reply(), 550, "5.1.1")
            self.assertReply(c.reply(), 554, "5.5.1")
            self.assertTrue(c.closed_by_server(scaled(5)), "the session went on after the text")
            srv.wait_log(r"sent message text before the reply to DATA")
            time.sleep(0.5)
            self.assertEqual(srv.all_maildir_files(), {})
            self.assertNotIn("evil@remote.test", srv.log())

    def test_refused_data_without_pipelining_keeps_the_session(self):
        srv = self.start_server()
        c = self.open_session(srv)
        self.assertReply(c.cmd("MAIL FROM:<a@remote.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<nobody@example.test>"), 550)
        self.assertReply(c.cmd("DATA"), 554, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250)
        # The refused DATA ended the transaction: a recipient now needs a
        # new MAIL, and one given then is all the next message gets.
        self.assertReply(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")
        r = raw_send(c, "b@remote.test", ["bob@example.test"], b"Subject: next\r\n\r\nx\r\n.\r\n")
        self.assertReply(r, 250)
        srv.wait_log(r"%s: accepted from=<b@remote\.test> size=\d+ nrcpt=1 "
                     % re.escape(queue_id_of(r.text)))


class TlsResourceTest(PosternTestCase):
    """Over TLS, output is bounded like in plain text, and a session that
    timed out is freed even when its client never reads."""

    def tls_session(self, srv):
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        c.starttls()
        c.ehlo()
        return c

    def test_pipelining_without_reading_does_not_grow_the_worker(self):
        # EHLO over and over would be junk: the limit is out of the way here
        srv = self.start_server(tls=True, config={"workers": "1", "junk_command_limit": "100000"})
        srv.wait_roles(smtp=1, qmgr=1)
        worker = srv.role_pids("smtp")[0]
        c = self.tls_session(srv)
        before = proc_status(worker, "VmRSS")
        c.sock.settimeout(0.5)
        flood = b"EHLO flood.example.test\r\n" * 2000  # ~50 KB in, ~400 KB of replies out
        sent, end = 0, time.monotonic() + scaled(6)
        while time.monotonic() < end:
            try:
                c.sock.sendall(flood)
                sent += len(flood)
            except (socket.timeout, ssl.SSLWantWriteError):
                time.sleep(0.1)  # the server stopped reading: back-pressure works
        grown_kb = proc_status(worker, "VmRSS") - before
        # AddressSanitizer keeps freed memory in quarantine (up to 256 MB)
        # instead of reusing it: there only a runaway backlog would show.
        limit_mb = 400 if SANITIZED else 30
        self.assertLess(grown_kb, limit_mb * 1024, "worker grew by %d KB after %d bytes of commands"
                        % (grown_kb, sent))
        self.assertLess(sent, 20 * 1024 * 1024, "the server kept reading without writing")

    def test_handshake_never_started_is_freed(self):
        srv = self.start_server(tls=True, config={"command_timeout": "2s"})
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        self.assertReply(c.cmd("STARTTLS"), 220)
        # no handshake: the session must still end
        self.assertTrue(c.closed_by_server(scaled(8)))
        srv.wait_log(r"timeout during TLS handshake")
        srv.wait_log(r"disconnect client=127\.0\.0\.1")

    def test_timed_out_sessions_that_never_read_are_freed(self):
        srv = self.start_server(tls=True, config={
            "workers": "1", "worker_connections": "3", "command_timeout": "2s",
            "junk_command_limit": "100000"})
        offset = srv.log_size()
        hogs = []
        for _ in range(3):
            c = self.tls_session(srv)
            c.sock.settimeout(0.2)
            try:
                while True:  # fill every buffer on the way back to us
                    c.sock.sendall(b"EHLO hog.example.test\r\n" * 500)
            except (socket.timeout, ssl.SSLWantWriteError, OSError):
                pass
            hogs.append(c)
        full = SmtpConn(srv.port)
        self.assertReply(full.greeting, 421, "4.7.0")
        full.close()
        # command_timeout, then the bounded wait for the 421 to drain
        wait_until(lambda: srv.log_since(offset).count("disconnect client=") >= 4, scaled(25),
                   what="the three hogs to be freed")
        with SmtpConn(srv.port) as fresh:
            self.assertEqual(fresh.greeting.code, 220)
        # and a retiring generation can now exit
        srv.reload(wait_old=True, timeout=scaled(20))


class DescriptorExhaustionTest(PosternTestCase):
    """Out of descriptors, a worker must not spin on a listener that stays
    readable: it pauses accepting and logs once in a while. A test-only
    LD_PRELOAD library makes accept() fail with EMFILE while a marker file
    exists (with the start-up check on the descriptor limit, a real
    shortage no longer happens on demand)."""

    def test_out_of_descriptors_pauses_instead_of_spinning(self):
        lib = os.path.join(PRELOAD_DIR, "emfile.so")
        self.assertTrue(os.path.exists(lib), "%s missing: run make check-integration" % lib)
        marker_dir = tempfile.mkdtemp(prefix="postern-emfile-")
        os.chmod(marker_dir, 0o755)  # the worker looks for the marker as its own user
        marker = os.path.join(marker_dir, "exhausted")
        self.addCleanup(shutil.rmtree, marker_dir, True)
        srv = self.start_server(config={"workers": "1"},
                                env={"LD_PRELOAD": lib, "POSTERN_TEST_EMFILE": marker})
        srv.wait_roles(smtp=1, qmgr=1)
        worker = srv.role_pids("smtp")[0]
        open(marker, "w").close()
        conns = []
        self.addCleanup(lambda: [s.close() for s in conns])
        for _ in range(5):
            conns.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        srv.wait_log(r"accept failed: Too many open files.*pausing new connections")
        cpu0, log0 = cpu_seconds(worker), srv.log_size()
        time.sleep(3)
        spent = cpu_seconds(worker) - cpu0
        self.assertLess(spent, scaled(0.5), "the worker spun for %.2f s of CPU in 3 s" % spent)
        self.assertLess(srv.log_since(log0).count("accept failed"), 3)
        os.unlink(marker)
        # the waiting clients are greeted once descriptors are back
        c = SmtpConn(srv.port, timeout=scaled(10), greet=False)
        c.sock = conns[0]
        self.assertEqual(c.reply(timeout=scaled(10)).code, 220)


class ShutdownTest(PosternTestCase):

    def test_new_connections_after_sigterm_do_not_hang(self):
        srv = self.start_server(config={"shutdown_timeout": "10s"})
        busy = self.open_session(srv)
        self.start_data(busy, "busy@remote.test", ["alice@example.test"])
        srv.send_signal(signal.SIGTERM)
        srv.wait_log(r"draining")
        time.sleep(0.3)
        start = time.monotonic()
        try:
            with SmtpConn(srv.port, timeout=3) as c:
                self.assertReply(c.greeting, 421, "4.3.2")
        except (ConnectionRefusedError, SmtpClosed, ConnectionResetError):
            pass
        self.assertLess(time.monotonic() - start, 2.5, "a new client waited for nothing")
        busy.send(b"Subject: finishing\r\n\r\nstill here\r\n.\r\n")
        self.assertReply(busy.reply(), 250)
        srv.stop()


class ContentLimitTest(PosternTestCase):

    def test_long_lines_accepted_and_delivered_intact_by_default(self):
        srv = self.start_server()
        c = self.open_session(srv)
        lines = [b"a" * 999, b"b" * 5000, b"c" * 300000]
        body = b"\r\n".join(lines) + b"\r\n"
        r = raw_send(c, "long@remote.test", ["carol@example.test"],
                     b"Subject: long lines\r\nX-Long: " + b"h" * 1500 + b"\r\n\r\n" + body + b".\r\n")
        self.assertReply(r, 250)
        _, data = srv.wait_delivery("carol", queue_id_of(r.text))
        head, got = split_message(data)
        self.assertIn("X-Long: " + "h" * 1500, head)
        self.assertEqual(got, b"\n".join(lines) + b"\n")

    def test_corpus_mail_with_long_lines_delivered_intact(self):
        """The real messages the issue counted (a line over 998
        characters: 10 of the shared corpus's 2966), sent by smtplib to
        a server with the default settings: each is accepted and arrives
        byte for byte under the fields postern puts on top (the only
        change: a Return-Path: the client wrote is dropped)."""
        if not os.path.isdir(CORPUS):
            self.skipTest("no corpus at %s" % CORPUS)
        long_ones = []
        for label in ("ham", "spam"):
            folder = os.path.join(CORPUS, label)
            for name in sorted(os.listdir(folder)):
                with open(os.path.join(folder, name), "rb") as f:
                    data = f.read()
                if data.startswith(b"From "):
                    data = data.split(b"\n", 1)[1]  # the mbox separator
                # A few lines end in CR LF: as a mail client sends them.
                # One of the 10 also has a bare CR inside a line, refused
                # by bare_newline = reject: not this test's subject.
                data = data.replace(b"\r\n", b"\n")
                if b"\r" not in data and max(len(l) for l in data.split(b"\n")) > 998:
                    long_ones.append((name, data))
        self.assertGreaterEqual(len(long_ones), 9)
        srv = self.start_server()
        for name, data in long_ones:
            qid = smtplib_send(srv.port, "corpus@remote.test", ["carol@example.test"],
                               data.replace(b"\n", b"\r\n"), mail_options=["BODY=8BITMIME"])
            _, got = srv.wait_delivery("carol", qid)
            head, _, body = data.partition(b"\n\n")
            head = re.sub(rb"(?im)^Return-Path:.*\n(?:[ \t].*\n)*", b"", head + b"\n")
            self.assertTrue(got.endswith(head + b"\n" + body), "%s changed on its way" % name)

    def test_smtputf8_inside_a_quoted_local_part_is_not_a_parameter(self):
        srv = self.start_server()
        c = self.open_session(srv)
        r = c.cmd('MAIL FROM:<"j\u00f6rg> SMTPUTF8 "@remote.test>')
        self.assertReply(r, 553, "5.6.7")
        r = c.cmd('MAIL FROM:<"j\u00f6rg> SMTPUTF8 "@remote.test> SMTPUTF8')
        self.assertReply(r, 250)

    def test_normalize_keeps_a_lone_dot_line(self):
        srv = self.start_server(config={"bare_newline": "normalize"})
        c = self.open_session(srv)
        r = raw_send(c, "dot@remote.test", ["dave@example.test"],
                     b"Subject: dot\r\n.\nX-After-Dot: yes\r\n\r\nbody\r\n.\r\n")
        self.assertReply(r, 250)
        _, data = srv.wait_delivery("dave", queue_id_of(r.text))
        head, body = split_message(data)
        self.assertIn("\n.\nX-After-Dot: yes", head, "the header section ended early")
        self.assertEqual(body, b"body\n")

    def test_many_recipients_with_duplicates(self):
        srv = self.start_server(config={"recipient_limit": "5000"})
        c = self.open_session(srv)
        self.assertReply(c.cmd("MAIL FROM:<list@remote.test>"), 250)
        rcpts = ["user%04d@remote.test" % i for i in range(3000)]
        wire = "".join("RCPT TO:<%s>\r\n" % r for r in rcpts)
        # a few repeats (each is junk: far fewer than junk_command_limit)
        wire += "".join("RCPT TO:<%s>\r\n" % r.upper().replace(".TEST", ".test") for r in rcpts[:50])
        c.send(wire.encode())
        codes = [r.code for r in c.replies(3050, timeout=scaled(30))]
        self.assertEqual(set(codes), {250})
        self.assertReply(c.cmd("DATA"), 354)
        c.send(b"Subject: list\r\n\r\nhi\r\n.\r\n")
        r = c.reply(timeout=scaled(30))
        self.assertReply(r, 250)
        srv.wait_log(r"%s: accepted from=<list@remote.test> size=\d+ nrcpt=3000 "
                     % re.escape(queue_id_of(r.text)))
