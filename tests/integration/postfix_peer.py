"""
postfix_peer.py - a private, throw-away Postfix instance for the
integration tests: a real sending MTA that relays every message it
receives to postern, the way a mail provider's outbound server would.

PostfixPeer writes its own main.cf and master.cf into a temporary folder
that also holds its queue, its data folder and its log file, starts it
with "postfix -c DIR start" (as root: Postfix's master must be root), and
always stops and removes it (destroy()), even after a failed start; a
watchdog process does the same if the test process dies without
cleaning up (SIGKILL, run.py's hang timeout). It never touches the system
instance (/etc/postfix/main.cf, /var/spool/postfix; it only reads the
package's /etc/postfix/postfix-files): every command gets "-c DIR" and
MAIL_CONFIG=DIR, and start() refuses to run unless postconf reports the
queue, data and log paths inside the temporary folder. It shares nothing with the benchmark's
instance (bench/run.sh, ../shared/anchors/postfix_ctl.sh: /etc/postfix-
anchor, /var/spool/postfix-anchor, port 10025) nor with a second
PostfixPeer: ports are free loopback ports, syslog_name is unique, and
Postfix keeps its pid file, lock files and sockets in the instance's own
queue and data folders.

Mail goes in through the instance's smtpd on 127.0.0.1:<free port>
(inject_many()) and out through its smtp client to relayhost = [127.0.0.1]:
<postern's port>, with STARTTLS when postern offers it
(smtp_tls_security_level = may) or never (none). The log (maillog_file,
written by postlogd) is parsed for the delivery status of each queue id.

Runs as root; the only untrusted input is what postern answers, which
Postfix itself judges. Requires the Debian package postfix (installed
by tools/install-deps.sh with "No configuration": no system instance).
"""
import atexit
import os
import pty
import re
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

from harness import KEEP_TMP, free_port, scaled, wait_until

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
DAEMON_DIR = "/usr/lib/postfix/sbin"

# "250 2.0.0 Ok: queued as 4Rq2Lk0XyZz7" from the instance's smtpd
POSTFIX_QID_RE = re.compile(r"queued as ([0-9A-Za-z]+)")
# What the smtp client logs when a delivery did not go as it should.
TROUBLE_RE = re.compile(r"lost connection|may be sent more than once|"
                        r"status=(?:deferred|bounced|expired)|"
                        r"Connection timed out|conversation with .* timed out")

_live_peers = set()


def postfix_unusable():
    """Why a private Postfix cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "the private Postfix instance needs root (its master runs as root)"
    if not os.path.exists(POSTFIX) or not os.path.exists(POSTCONF):
        return "postfix is not installed (tools/install-deps.sh installs it)"
    return None


def destroy_all_peers():
    """atexit / last resort: stop every instance still running."""
    for peer in list(_live_peers):
        try:
            peer.destroy()
        except Exception:
            pass


atexit.register(destroy_all_peers)


def _pgrp_members(pgrp):
    """Live processes whose process group is pgrp (Postfix's master
    calls setsid(), so its group holds exactly the instance's daemons)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        # fields: state ppid pgrp ...
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgrp:
            out.append(int(name))
    return out


def _postfix_env(config_dir):
    env = dict(os.environ)
    env["MAIL_CONFIG"] = config_dir
    return env


def run_on_terminal(cmd, env, timeout):
    """Run a Postfix command; (exit status, output). Postfix commands
    print their errors on stderr only when it is a terminal (otherwise
    to syslog alone, which a test machine may not even have), so cmd
    gets a pseudo-terminal. The output is read while it runs; the whole
    is bounded by timeout (TimeoutExpired, cmd killed)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                env=env, start_new_session=True)
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(cmd, timeout, out)
            ready, _, _ = select.select([master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: no writer left
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break  # exited; a daemon it started may hold the terminal
    finally:
        os.close(master)
    status = proc.wait(max(0.1, deadline - time.monotonic()))
    return status, out.decode("utf-8", "replace").replace("\r\n", "\n")


def _read_master_pid(queue_dir):
    try:
        with open(os.path.join(queue_dir, "pid", "master.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_master_of(pid, config_dir):
    """pid is a live Postfix master started with MAIL_CONFIG=config_dir
    (the postfix command exports it to the master it starts)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return False
    return ("MAIL_CONFIG=%s" % config_dir).encode() in env


def stop_instance(config_dir, queue_dir, master_pid=None):
    """"postfix stop", then wait for the master's process group to
    empty; what is still there after a while is killed, by pid, if the
    master is (or was) the one started with this config_dir."""
    pid = master_pid or _read_master_pid(queue_dir)
    try:
        run_on_terminal([POSTFIX, "-c", config_dir, "stop"], _postfix_env(config_dir),
                        scaled(20))
    except subprocess.TimeoutExpired:
        pass
    if pid is None:
        return

    def gone():
        return not _pgrp_members(pid)  # the master leads its own group
    try:
        wait_until(gone, scaled(10), interval=0.1, what="postfix to stop")
        return
    except AssertionError:
        pass
    if _is_master_of(pid, config_dir) or not os.path.exists("/proc/%d" % pid):
        for p in _pgrp_members(pid):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            wait_until(gone, scaled(10), interval=0.1, what="postfix to die")
        except AssertionError:
            pass


def _reap_on_eof(base):
    """The watchdog's body (python3 postfix_peer.py --reap BASE): wait
    until the test process closes our stdin - by destroy(), or by dying
    in any way, even SIGKILL or run.py's hang timeout, which skip atexit -
    then stop the instance in BASE if it is still there and remove BASE."""
    sys.stdin.buffer.read()
    name = os.path.basename(os.path.normpath(base))
    if not name.startswith("postern-it-postfix-"):
        sys.exit("postfix_peer.py: %s is not a PostfixPeer folder" % base)
    config_dir = os.path.join(base, "etc")
    if os.path.isdir(config_dir):
        stop_instance(config_dir, os.path.join(base, "spool"))
    if not KEEP_TMP:
        shutil.rmtree(base, ignore_errors=True)


class PostfixPeer:
    """One private Postfix instance relaying everything to postern."""

    def __init__(self, relay_port, tls_level="may", name="peer", extra_main=None):
        self.relay_port = relay_port
        self.tls_level = tls_level
        self.base = tempfile.mkdtemp(prefix="postern-it-postfix-%s-" % name)
        # Postfix's daemons run as the user postfix and must traverse the
        # whole path to their queue: mkdtemp's 0700 would lock them out.
        os.chmod(self.base, 0o755)
        self.config_dir = os.path.join(self.base, "etc")
        self.queue_dir = os.path.join(self.base, "spool")
        self.data_dir = os.path.join(self.base, "data")
        self.log_dir = os.path.join(self.base, "log")
        self.log_path = os.path.join(self.log_dir, "maillog")
        self.smtpd_port = free_port()
        # The log tag tells instances apart in a shared log and in ps.
        self.syslog_name = "postfix-%s-%d" % (name, self.smtpd_port)
        self.hostname = "sender.postfix-peer.test"
        self.master_pid = None
        self.started = False
        self.watchdog = None
        os.mkdir(self.config_dir, 0o755)
        os.mkdir(self.log_dir, 0o755)
        # The postfix command chdir()s into the queue folder before it runs
        # post-install, which creates the rest: this one must exist, owned
        # by root (postfix-files: root, 0755).
        os.mkdir(self.queue_dir, 0o755)
        self._write_main_cf(extra_main or {})
        self._write_master_cf()
        _live_peers.add(self)

    # -- configuration --

    def _main_settings(self):
        return [
            # Without a compatibility level Postfix keeps pre-3.0 defaults
            # and every command warns about them.
            ("compatibility_level", "3.6"),
            # The instance's own state. config_directory itself cannot be
            # set here: it is the -c argument / MAIL_CONFIG.
            ("queue_directory", self.queue_dir),
            ("data_directory", self.data_dir),
            # The packaged programs, and meta_directory's postfix-files,
            # which "postfix start" reads (read only) to create the queue
            # folders with the owners it lists: mail_owner for most,
            # setgid_group for maildrop/ and public/ (post-install
            # create-missing). Creating them ourselves would mean copying
            # that table.
            ("command_directory", "/usr/sbin"),
            ("daemon_directory", DAEMON_DIR),
            ("meta_directory", "/etc/postfix"),
            ("shlib_directory", "/usr/lib/postfix"),
            ("mail_owner", "postfix"),
            ("setgid_group", "postdrop"),
            ("syslog_name", self.syslog_name),
            # postlogd refuses a maillog_file outside maillog_file_prefixes
            # (default /var, /dev/stdout): allow our own folder only.
            ("maillog_file", self.log_path),
            ("maillog_file_prefixes", self.log_dir),
            # The machine's name may have no dot (Postfix then refuses to
            # start: "unable to use my own hostname"); it must also differ
            # from postern's greeting name, or the smtp client reports a
            # mail loop.
            ("myhostname", self.hostname),
            ("mydomain", "postfix-peer.test"),
            ("myorigin", "$myhostname"),
            # Nothing is local: the default mydestination ($myhostname,
            # localhost) and the local alias/recipient tables would need
            # files we do not have.
            ("mydestination", ""),
            ("local_recipient_maps", ""),
            ("alias_maps", ""),
            ("alias_database", ""),
            ("relay_domains", ""),
            # Loopback only, IPv4 only: the default "all" would listen and
            # claim every address of the machine as our own.
            ("inet_interfaces", "127.0.0.1"),
            ("inet_protocols", "ipv4"),
            ("mynetworks", "127.0.0.0/8"),
            ("smtpd_relay_restrictions", "permit_mynetworks, reject"),
            ("smtpd_banner", "$myhostname ESMTP"),
            ("smtpd_peername_lookup", "no"),
            ("biff", "no"),
            ("append_dot_mydomain", "no"),
            ("readme_directory", "no"),
            # Every message goes to postern, whatever its domain.
            ("relayhost", "[127.0.0.1]:%d" % self.relay_port),
            ("default_transport", "smtp"),
            ("relay_transport", "smtp"),
            # As a real outbound MTA: STARTTLS when offered (may), or not
            # at all (none); certificate not verified either way.
            ("smtp_tls_security_level", self.tls_level),
            ("smtp_tls_loglevel", "1"),
            # No TLS session cache: every delivery makes a full handshake.
            ("smtp_tls_session_cache_database", ""),
            # One session per message: the smtp client then pipelines QUIT
            # right after the end of the data, as it does for a sender with
            # little mail (connection caching would reuse sessions instead).
            ("smtp_connection_cache_on_demand", "no"),
            # Retry within the test, so a message retried after a lost
            # reply shows up as a duplicate while we watch.
            ("queue_run_delay", "1s"),
            ("minimal_backoff_time", "1s"),
            ("maximal_backoff_time", "2s"),
            ("smtp_connect_timeout", "5s"),
            ("smtp_helo_timeout", "20s"),
            ("delay_warning_time", "0h"),
        ]

    def _write_main_cf(self, extra):
        settings = dict(self._main_settings())
        settings.update(extra)
        lines = ["# written by tests/integration/postfix_peer.py"]
        lines += ["%s = %s" % (k, v) for k, v in settings.items()]
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _write_master_cf(self):
        # The chroot column (5th) is "n" everywhere: a chrooted daemon
        # would need copies of /etc/services, resolv.conf and the NSS
        # libraries inside the queue folder (Debian's init script makes
        # them for the system instance only); the package's master.cf.dist
        # has "y". Only the services a relay-only MTA uses; smtpd listens
        # on our free port only.
        services = [
            ("127.0.0.1:%d" % self.smtpd_port, "inet", "n", "-", "n", "-", "-", "smtpd"),
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("tlsmgr", "unix", "-", "-", "n", "1000?", "1", "tlsmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            # maillog_file needs postlogd; it opens the file as root.
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write("# written by tests/integration/postfix_peer.py\n")
            for row in services:
                f.write("%-16s %-10s %-3s %-3s %-3s %-6s %-3s %s\n" % row)

    # -- running Postfix commands --

    def _env(self):
        return _postfix_env(self.config_dir)

    def _postfix(self, *args, timeout=None, check=True):
        status, out = run_on_terminal([POSTFIX, "-c", self.config_dir] + list(args),
                                      self._env(), timeout or scaled(30))
        if check and status != 0:
            raise AssertionError("postfix %s failed (status %d):\n%s\nlog:\n%s"
                                 % (" ".join(args), status, out, self.log_tail()))
        return out

    def postconf(self, *names):
        r = subprocess.run([POSTCONF, "-c", self.config_dir, "-h"] + list(names),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self._env(), timeout=scaled(20))
        if r.returncode != 0:
            raise AssertionError("postconf failed: %s" % r.stderr.decode("utf-8", "replace"))
        return r.stdout.decode("utf-8", "replace").splitlines()

    def _check_private_paths(self):
        """Refuse to start unless Postfix itself says every path it will
        write is inside our folder (never the system instance's)."""
        names = ("queue_directory", "data_directory", "maillog_file", "config_directory")
        values = self.postconf(*names)
        for name, value in zip(names, values):
            real = os.path.realpath(value)
            if not real.startswith(os.path.realpath(self.base) + os.sep):
                raise AssertionError("postfix %s = %s is outside %s: refusing to start"
                                     % (name, value, self.base))

    # -- life cycle --

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(30)
        why = postfix_unusable()
        if why:
            raise AssertionError(why)
        self._check_private_paths()
        self._start_watchdog()
        # "start" runs post-install create-missing (queue folders) and
        # master -w, which returns once the master daemon is up.
        self.started = True
        self._postfix("start", timeout=timeout)
        self.master_pid = _read_master_pid(self.queue_dir)
        deadline = time.monotonic() + timeout
        while not self._greets():
            if time.monotonic() >= deadline:
                raise AssertionError("postfix smtpd did not greet on port %d within %.0fs; log:\n%s"
                                     % (self.smtpd_port, timeout, self.log_tail()))
            time.sleep(0.1)
        return self

    def _start_watchdog(self):
        """A process of its own that stops the instance when we go away
        without destroy() (see _reap_on_eof)."""
        self.watchdog = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--reap", self.base],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)

    def _greets(self):
        try:
            with socket.create_connection(("127.0.0.1", self.smtpd_port), timeout=2) as s:
                s.settimeout(2)
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(512)
                    if not chunk:
                        return False
                    data += chunk
                s.sendall(b"QUIT\r\n")
                return data.startswith(b"220 ")
        except OSError:
            return False

    def destroy(self):
        """Stop the instance (politely, then by force, by the master's pid
        and process group) and remove its folder. Safe to call twice."""
        try:
            if self.started:
                stop_instance(self.config_dir, self.queue_dir, self.master_pid)
        finally:
            self.started = False
            _live_peers.discard(self)
            if KEEP_TMP:
                print("kept %s" % self.base)
            else:
                shutil.rmtree(self.base, ignore_errors=True)
            if self.watchdog is not None:
                self.watchdog.stdin.close()  # nothing left for it to do
                try:
                    self.watchdog.wait(scaled(30))
                except subprocess.TimeoutExpired:
                    self.watchdog.kill()
                    self.watchdog.wait()
                self.watchdog = None

    # -- mail in --

    def inject_many(self, items):
        """Submit several (sender, rcpts, message) in one SMTP session;
        return their queue ids in order."""
        qids = []
        with smtplib.SMTP("127.0.0.1", self.smtpd_port, local_hostname="injector.test",
                          timeout=scaled(15)) as s:
            for sender, rcpts, message in items:
                if isinstance(message, str):
                    message = message.encode("utf-8")
                qids.append(self._inject_on(s, sender, rcpts, message))
        return qids

    @staticmethod
    def _inject_on(s, sender, rcpts, message):
        s.ehlo_or_helo_if_needed()
        code, text = s.mail(sender)
        if code != 250:
            raise AssertionError("postfix refused MAIL: %d %r" % (code, text))
        for rcpt in rcpts:
            code, text = s.rcpt(rcpt)
            if code != 250:
                raise AssertionError("postfix refused RCPT %s: %d %r" % (rcpt, code, text))
        code, text = s.data(message)
        text = text.decode("utf-8", "replace")
        m = POSTFIX_QID_RE.search(text)
        if code != 250 or not m:
            raise AssertionError("postfix refused the message: %d %r" % (code, text))
        return m.group(1)

    # -- log --

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def client_lines(self):
        """Log lines of the instance's smtp client (the relay to postern)."""
        tag = "%s/smtp[" % self.syslog_name
        return [l for l in self.log().splitlines() if tag in l]

    def delivery_status(self, qid):
        """The status= values logged for queue id qid, in order."""
        rx = re.compile(r"\b%s: to=<[^>]*>,.* status=(\w+)" % re.escape(qid))
        return [m.group(1) for m in map(rx.search, self.client_lines()) if m]

    def trouble_lines(self):
        return [l for l in self.client_lines() if TROUBLE_RE.search(l)]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--reap":
        _reap_on_eof(sys.argv[2])
    else:
        sys.exit("usage: postfix_peer.py --reap BASE (started by PostfixPeer)")
