"""
test_logging.py - where the log lines go: log_to = syslog read by a real
syslog daemon (rsyslogd, Debian package rsyslog, listening on a private
socket given to postern as syslog_socket) with the configured facility,
one line per event with the queue id; a syslog socket nobody listens on
sends the lines to stderr instead; log_to = file with log_file, only the
log writer holding the file, SIGUSR1 after a rename moving every
process's lines to the new file, and a SIGUSR1 sent to every process of
postern killing none.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import (IS_ROOT, POSTERN_BIN, SANITIZER_MARKERS, PosternTestCase, descendants, make_message, process_alive,
                     scaled, smtplib_send, wait_until)

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd"
                                         if os.path.exists("/usr/sbin/rsyslogd") else None)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class RsyslogPeer:
    """rsyslogd in the foreground with a private configuration: one unix
    datagram socket, every message written to out.log with its facility,
    severity and tag."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-it-rsyslog-")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "log.sock")
        self.out = os.path.join(self.dir, "out.log")
        self.traditional = os.path.join(self.dir, "mail.log")  # as Debian's /var/log/mail.log
        conf = os.path.join(self.dir, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write('global(workDirectory="%s")\n' % self.dir)
            f.write('module(load="imuxsock" SysSock.Use="off")\n')
            f.write('input(type="imuxsock" Socket="%s")\n' % self.socket)
            f.write('template(name="t" type="string" string="%syslogfacility-text%.'
                    '%syslogseverity-text% %syslogtag%%msg%\\n")\n')
            f.write('*.* action(type="omfile" file="%s" template="t")\n' % self.out)
            f.write('*.* action(type="omfile" file="%s" '
                    'template="RSYSLOG_TraditionalFileFormat")\n' % self.traditional)
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", conf, "-i", os.path.join(self.dir, "rsyslogd.pid")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "stderr"), "w"))
        wait_until(lambda: os.path.exists(self.socket), scaled(10), what="rsyslogd's socket")
        os.chmod(self.socket, 0o666)  # the roles run as nobody

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@unittest.skipUnless(RSYSLOGD, "rsyslogd (Debian package rsyslog) is not installed")
class SyslogTest(PosternTestCase):
    def test_lines_reach_rsyslog_with_facility_and_queue_id(self):
        peer = RsyslogPeer()
        self.addCleanup(peer.stop)
        srv = self.start_server(config={"log_to": "syslog", "syslog_facility": "local3",
                                        "syslog_socket": peer.socket})
        qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                           make_message(subject="to syslog"))
        wait_until(lambda: re.search(r"postern/qmgr\[\d+\]: info: %s: to=<alice@example.test>"
                                     r".* status=sent" % qid, read(peer.out)),
                   scaled(10), what="the delivery line in rsyslog's file")
        text = read(peer.out)
        lines = [l for l in text.splitlines() if "postern/" in l]
        self.assertTrue(lines)
        for l in lines:
            self.assertTrue(l.startswith("local3."), l)  # every line, every role
        self.assertRegex(text, r"(?m)^local3\.info postern/smtp\[\d+\]: info: %s: accepted "
                               r"from=<sender@remote.test>" % qid)
        self.assertRegex(text, r"(?m)^local3\.info postern/master\[%d\]: info: postern starting"
                         % srv.pid)
        # one line per event: no line of one process runs into another's
        for l in lines:
            self.assertEqual(len(re.findall(r"postern/\w+\[\d+\]:", l)), 1, l)
        # the lines went to syslog, not to stderr
        self.assertNotIn(qid, srv.log())
        srv.stop()
        wait_until(lambda: "postern stopped" in read(peer.out), scaled(10),
                   what="the last line")
        # postern report reads the daemon's own file ("Mmm dd hh:mm:ss HOST postern/...")
        p = subprocess.run([POSTERN_BIN, "report", "--json", peer.traditional],
                           capture_output=True, timeout=scaled(30))
        self.assertEqual(p.returncode, 0, p.stderr)
        report = json.loads(p.stdout)
        self.assertEqual((report["received"], report["delivered"]), (1, 1), report)

    def test_no_syslog_daemon_lines_go_to_stderr(self):
        missing = os.path.join(tempfile.mkdtemp(prefix="postern-it-nolog-"), "none.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(missing), True)
        srv = self.start_server(config={"log_to": "syslog", "syslog_socket": missing})
        qid = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                           make_message(subject="nobody listens"))
        srv.wait_log(r"%s: to=<alice@example.test>.* status=sent" % qid)


class LogFileTest(PosternTestCase):
    def holders(self, srv, path):
        """The processes of srv that hold path open."""
        found = []
        for pid in [srv.pid] + descendants(srv.pid):
            try:
                for fd in os.listdir("/proc/%d/fd" % pid):
                    try:
                        if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path:
                            found.append(pid)
                    except OSError:
                        pass
            except OSError:
                pass
        return sorted(set(found))

    def test_sigusr1_reopens_after_rotation(self):
        srv = self.start_server(start=False)
        path = os.path.join(srv.dir, "postern-file.log")
        srv.settings.update({"log_to": "file", "log_file": path})
        srv.write_config()
        srv.start()
        first = smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"],
                             make_message(subject="before the rotation"))
        wait_until(lambda: re.search(r"%s: to=<alice@example.test>.* status=sent" % first,
                                     read(path)), scaled(10), what="delivery 1 in log_file")
        self.assertNotIn(first, srv.log())  # stderr has only the start-up lines
        # only the log writer holds the file, and it runs unprivileged
        holders = self.holders(srv, path)
        self.assertEqual(len(holders), 1, holders)
        if IS_ROOT:
            with open("/proc/%d/status" % holders[0]) as f:
                uid = [l for l in f if l.startswith("Uid:")][0].split()[1]
            self.assertEqual(uid, "65534")
        os.rename(path, path + ".1")
        srv.send_signal(signal.SIGUSR1)
        wait_until(lambda: "log file %s reopened" % path in read(path), scaled(10),
                   what="the reopening said in the new file")
        second = smtplib_send(srv.port, "sender@remote.test", ["bob@example.test"],
                              make_message(subject="after the rotation"))
        wait_until(lambda: re.search(r"%s: to=<bob@example.test>.* status=sent" % second,
                                     read(path)), scaled(10), what="delivery 2 in the new file")
        self.assertRegex(read(path), r"postern/smtp\[\d+\]: info: %s: accepted" % second)
        old = read(path + ".1")
        self.assertIn(first, old)
        self.assertNotIn(second, old)
        self.assertEqual(self.holders(srv, path + ".1"), [])
        srv.stop()
        wait_until(lambda: "postern stopped" in read(path), scaled(10), what="the last line")
        # the harness looks for sanitizer reports on stderr; here they would be in the file
        text = read(path) + read(path + ".1")
        self.assertFalse([m for m in SANITIZER_MARKERS if m in text], text[-3000:])

    def test_sigusr1_to_every_process_kills_none(self):
        srv = self.start_server()
        pids = [srv.pid] + descendants(srv.pid)
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(0.5)
        for pid in pids:
            self.assertTrue(process_alive(pid), "pid %d died of SIGUSR1" % pid)
        srv.wait_log(r"signal USR1: no log file to reopen")
        smtplib_send(srv.port, "sender@remote.test", ["alice@example.test"], make_message())
        srv.stop()

    def test_log_file_needs_log_to_file(self):
        srv = self.start_server(start=False, config={"log_file": "x.log"})
        out = srv.run_cli("check-config")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"log_to = file and log_file go together", out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main()
