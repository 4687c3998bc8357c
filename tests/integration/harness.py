"""
harness.py - start a real postern server for the integration tests and
talk to it.

PosternServer owns one temporary folder (config, users, aliases, spool,
mail_root, log), starts "postern serve -c FILE" in its own process group
with stderr in a log file, waits until the listener greets, and always
cleans up: stop() (SIGTERM, wait, exit status 0), kill9_all() (SIGKILL the
supervisor and every descendant found through /proc), reload() (SIGHUP).

SmtpConn is a raw SMTP client on a socket (every read bounded by a
timeout) for dialogues smtplib cannot produce: pipelining, BDAT, bare CR
and LF, STARTTLS injection.

PosternTestCase is the unittest base class: servers it starts are killed
at the end of the test whatever happened, and a test fails if the server
log shows a sanitizer report or a panic.

Environment:
  POSTERN_BIN        the binary (default <repo>/build/postern)
  POSTERN_SANITIZED  1 = ASan/UBSan build: longer timeouts
  POSTERN_KEEP_TMP   1 = keep the temporary folders (their path is printed)
"""
import atexit
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import smtplib
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
POSTERN_BIN = os.environ.get("POSTERN_BIN") or os.path.join(REPO, "build", "postern")
PRELOAD_DIR = os.path.join(REPO, "build", "preload")  # test-only LD_PRELOAD libraries
SANITIZED = os.environ.get("POSTERN_SANITIZED") == "1"
KEEP_TMP = os.environ.get("POSTERN_KEEP_TMP") == "1"
IS_ROOT = os.geteuid() == 0

HOSTNAME = "mx.example.test"
DOMAIN = "example.test"
QUEUE_ID_RE = re.compile(r"queued as ([0-9A-F]{19})\b")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                     "ThreadSanitizer", "MemorySanitizer")
PANIC_RE = re.compile(r"postern/\w+\[\d+\]: panic: .*")


def scaled(seconds):
    """A timeout, made generous for sanitizer builds."""
    return seconds * 4 if SANITIZED else seconds


# ---- run-wide resources ----------------------------------------------------

_session_dir = None
_session_lock = threading.Lock()
_tls_files = {}
_live_servers = set()


def session_dir():
    """One temporary folder for the whole run (certificates)."""
    global _session_dir
    with _session_lock:
        if _session_dir is None:
            _session_dir = tempfile.mkdtemp(prefix="postern-it-run-")
            os.chmod(_session_dir, 0o755)
        return _session_dir


TLS_KEY_OPTIONS = {"rsa": ["-newkey", "rsa:2048"],
                   "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                   "ed25519": ["-newkey", "ed25519"]}


def make_certificate(cert, key, kind="rsa", cn=HOSTNAME):
    """Write a new self-signed certificate and its key (RSA 2048, ECDSA
    P-256 or Ed25519) to the paths cert and key."""
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                    "-keyout", key, "-out", cert] + TLS_KEY_OPTIONS[kind],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=60)


def tls_files(kind="rsa"):
    """(cert, key) of a self-signed certificate made once per run, with an
    RSA ("rsa") or ECDSA ("ec") key."""
    with _session_lock:
        if kind in _tls_files:
            return _tls_files[kind]
    d = session_dir()
    suffix = "" if kind == "rsa" else "-" + kind
    cert, key = os.path.join(d, "tls%s.crt" % suffix), os.path.join(d, "tls%s.key" % suffix)
    make_certificate(cert, key, kind)
    with _session_lock:
        _tls_files[kind] = (cert, key)
    return _tls_files[kind]


def client_tls_context():
    """Accept the self-signed test certificate without verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def private_key_needles(key_path):
    """Byte strings that only a process holding the private key in key_path
    (RSA or EC) has in memory: the first RSA prime or the EC private
    scalar, big-endian (as in DER) and reversed (as in a BIGNUM's
    little-endian words)."""
    text = subprocess.run(["openssl", "pkey", "-in", key_path, "-noout", "-text"],
                          stdout=subprocess.PIPE, check=True, universal_newlines=True,
                          timeout=scaled(10)).stdout
    m = re.search(r"^(?:prime1|priv):\n((?:\s+[0-9a-f:]+\n)+)", text, re.M)
    secret = bytes.fromhex(re.sub(r"[\s:]", "", m.group(1))).lstrip(b"\0")
    return (secret, secret[::-1])


def memory_holds(pid, needles, chunk=16 << 20, largest=1 << 30):
    """Which of needles (bytes) appear in the readable memory of pid,
    read in pieces; mappings over `largest` bytes (a sanitizer's shadow
    reservation) are skipped."""
    found = set()
    overlap = max(len(n) for n in needles) - 1
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or hi - lo > largest:
                continue
            tail = b""
            for start in range(lo, hi, chunk):
                try:
                    mem.seek(start)
                    data = tail + mem.read(min(chunk, hi - start))
                except (OSError, OverflowError, ValueError):
                    break  # [vvar] and the like
                found.update(n for n in needles if n in data)
                tail = data[-overlap:] if overlap else b""
    return found


def starttls_peer_certificate(port, context=None, host="127.0.0.1"):
    """EHLO, STARTTLS and a handshake with Python's smtplib: the server's
    certificate (DER) and the TLS version; then QUIT."""
    s = smtplib.SMTP(host, port, local_hostname="client.test", timeout=scaled(10))
    try:
        s.ehlo()
        code, text = s.starttls(context=context or client_tls_context())
        if code != 220:
            raise AssertionError("STARTTLS refused: %d %r" % (code, text))
        der = s.sock.getpeercert(binary_form=True)
        version = s.sock.version()
        s.quit()
        return der, version
    finally:
        s.close()


def _cleanup_at_exit():
    for srv in list(_live_servers):
        try:
            srv.kill9_all()
        except Exception:
            pass
    if _session_dir is not None and not KEEP_TMP:
        shutil.rmtree(_session_dir, ignore_errors=True)


atexit.register(_cleanup_at_exit)


def free_port(family=socket.AF_INET):
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# Remote mail (not in local_domains) goes to this port by default
# (relayhost): bound but never listening, so every connection is refused
# at once and the mail is deferred, as the tests that only need "a remote
# recipient that waits" expect; the socket stays open for the life of the
# test process, so nothing else can take the port. Tests of the outbound
# relay set relayhost (or None, for MX routing) themselves.
_refusing_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_refusing_socket.bind(("127.0.0.1", 0))
REFUSING_RELAYHOST = "[127.0.0.1]:%d" % _refusing_socket.getsockname()[1]


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---- /proc helpers ---------------------------------------------------------

def _proc_stat(pid):
    """(state, ppid) of a process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def process_alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def descendants(pid):
    """Every live descendant of pid, found by ppid links in /proc."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _proc_stat(int(name))
        if st is not None and st[0] not in ("Z", "X"):
            children.setdefault(st[1], []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


# ---- waiting ---------------------------------------------------------------

def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until it returns something true; AssertionError
    after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_for_files(path, n, timeout=None):
    """Wait until folder path holds at least n entries; return their names."""
    timeout = timeout if timeout is not None else scaled(10)

    def enough():
        try:
            names = sorted(os.listdir(path))
        except FileNotFoundError:
            return None
        return names if len(names) >= n else None
    return wait_until(enough, timeout, what="%d file(s) in %s" % (n, path))


# ---- the server ------------------------------------------------------------

DEFAULT_USERS = ["alice", "bob", "carol", "dave", "admin"]
DEFAULT_ALIASES = {
    "postmaster": ["admin"],
    "team": ["alice", "bob"],
}


def _addr(name):
    return name if "@" in name else "%s@%s" % (name, DOMAIN)


class PosternServer:
    """One postern serve instance in a private temporary folder."""

    def __init__(self, name="postern", config=None, users=None, aliases=None,
                 tls=False, ipv6=False, workdir=None, nofile=None, env=None):
        self.name = name
        self.env = dict(env or {})  # extra environment of the server process
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) to start with
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="postern-it-%s-" % name)
        self.dir = workdir
        os.chmod(self.dir, 0o755)  # the unprivileged roles traverse it
        self.conf_path = os.path.join(self.dir, "postern.conf")
        self.users_path = os.path.join(self.dir, "users")
        self.aliases_path = os.path.join(self.dir, "aliases")
        self.log_path = os.path.join(self.dir, "postern.log")
        self.spool_dir = os.path.join(self.dir, "spool")
        self.mail_root = os.path.join(self.dir, "mail")
        self.port = free_port()
        self.port6 = free_port(socket.AF_INET6) if ipv6 else None
        self.proc = None
        self.command_prefix = []  # e.g. ["prlimit", "--nofile=256:256"]
        self.exit_codes = []
        self.users = list(DEFAULT_USERS if users is None else users)
        self.aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)
        self.settings = {
            "hostname": HOSTNAME,
            "listen": self.listen_text(),
            # Root: the roles run as nobody, local delivery as Debian's
            # "mail" account (it always exists), so the harness needs no
            # account of its own. Not root: everything runs as the caller.
            "user": "nobody" if IS_ROOT else "",
            "mail_owner": "mail" if IS_ROOT else "",
            "workers": "2",
            "spool_dir": "spool",
            "mail_root": "mail",
            "local_domains": DOMAIN,
            "users_file": "users",
            "aliases_file": "aliases",
            "queue_scan_interval": "1s",
            "queue_retry_min": "1s",
            "queue_retry_max": "2s",
            "shutdown_timeout": "5s",
            "command_timeout": "60s",
            "data_timeout": "60s",
            "relayhost": REFUSING_RELAYHOST,
        }
        if tls:  # True (RSA), "rsa" or "ec"
            cert, key = tls_files("rsa" if tls is True else tls)
            self.settings["tls_cert"] = cert
            self.settings["tls_key"] = key
        self.settings.update(config or {})
        self.write_users()
        self.write_aliases()
        self.write_config()

    # -- files --

    def listen_text(self):
        text = "127.0.0.1:%d" % self.port
        if self.port6:
            text += ", [::1]:%d" % self.port6
        return text

    def write_config(self, extra_text=""):
        lines = ["# written by tests/integration/harness.py"]
        for k, v in self.settings.items():
            if v is None:
                continue
            lines.append("%s = %s" % (k, v))
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_text)

    def write_users(self):
        # Mode 0600 as postern recommends: it holds password hashes, and
        # the roles must not be able to read it.
        fd = os.open(self.users_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            for u in self.users:
                f.write("%s:{PLAIN}secret::::::\n" % _addr(u))

    def write_aliases(self):
        with open(self.aliases_path, "w", encoding="utf-8") as f:
            for k, targets in self.aliases.items():
                f.write("%s: %s\n" % (_addr(k), ", ".join(_addr(t) for t in targets)))

    # -- process --

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(15)
        if not os.path.exists(POSTERN_BIN):
            raise AssertionError("postern binary not found: %s (set POSTERN_BIN)" % POSTERN_BIN)
        offset = self.log_size()
        with open(self.log_path, "ab") as log:
            log.write(("--- test harness: start %s ---\n" % time.strftime("%H:%M:%S")).encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command_prefix + [POSTERN_BIN, "serve", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, cwd=self.dir, preexec_fn=self._limits,
                env=self._environment())
        _live_servers.add(self)
        deadline = time.monotonic() + timeout
        targets = [(socket.AF_INET, "127.0.0.1", self.port)]
        if self.port6:
            targets.append((socket.AF_INET6, "::1", self.port6))
        for family, host, port in targets:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError("postern exited with status %s at start; log:\n%s"
                                         % (self.proc.returncode, self.log_tail()))
                if self._greets(family, host, port):
                    break
                if time.monotonic() >= deadline:
                    raise AssertionError("postern did not greet on %s port %d within %.0fs; log:\n%s"
                                         % (host, port, timeout, self.log_tail()))
                time.sleep(0.05)
        # The auth process, which belongs to no generation, has said who
        # it is (reload(wait_old=True) must not wait for it to exit); a
        # server that logs elsewhere than stderr (log_to) says it there.
        if self.settings.get("log_to", "stderr") == "stderr":
            self.wait_log(r"postern/auth\[\d+\]: info: auth ready", timeout=timeout,
                          since=offset)
        return self

    def _environment(self):
        env = dict(os.environ)
        env.update(self.env)
        if "LD_PRELOAD" in self.env and SANITIZED:
            # our preload comes before the ASan runtime: allowed for tests
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        return env

    def _limits(self):
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def serve_refused(self, timeout=None):
        """Run "postern serve" expecting it to refuse to start: return
        (exit status, what it logged). If it is still running after
        timeout seconds it is killed and the test fails."""
        timeout = timeout if timeout is not None else scaled(15)
        offset = self.log_size()
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                self.command_prefix + [POSTERN_BIN, "serve", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, cwd=self.dir)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its children share the group
            proc.wait()
            raise AssertionError("postern started although it should have refused; log:\n"
                                 + self.log_since(offset))
        return rc, self.log_since(offset)

    def _greets(self, family, host, port):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect((host, port))
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(512)
                    if not chunk:
                        return False
                    data += chunk
                if not data.startswith(b"220 "):
                    return False
                s.sendall(b"QUIT\r\n")
                try:
                    s.recv(512)
                except OSError:
                    pass
                return True
        except OSError:
            return False

    def stop(self, timeout=None, expect_rc=0):
        """SIGTERM, wait for the exit, check the exit status."""
        timeout = timeout if timeout is not None else scaled(20)
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9_all()
            raise AssertionError("postern did not exit within %.0fs of SIGTERM; log:\n%s"
                                 % (timeout, self.log_tail()))
        self._forget()
        self.exit_codes.append(rc)
        self._wait_descendants_gone(self._known_children, scaled(10))
        if expect_rc is not None and rc != expect_rc:
            raise AssertionError("postern exited with status %r, expected %r; log:\n%s"
                                 % (rc, expect_rc, self.log_tail()))
        return rc

    def _forget(self):
        _live_servers.discard(self)

    _known_children = ()

    def children(self):
        """Live direct and indirect children of the supervisor."""
        if not self.running():
            return []
        kids = descendants(self.proc.pid)
        self._known_children = tuple(set(self._known_children) | set(kids))
        return kids

    def _wait_descendants_gone(self, pids, timeout):
        deadline = time.monotonic() + timeout
        while any(process_alive(p) for p in pids):
            if time.monotonic() > deadline:
                for p in pids:
                    if process_alive(p):
                        try:
                            os.kill(p, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                break
            time.sleep(0.02)

    def kill9_all(self):
        """SIGKILL the supervisor and all its descendants, at once."""
        if self.proc is None:
            return
        pid = self.proc.pid
        victims = []
        if self.proc.poll() is None:
            try:
                os.kill(pid, signal.SIGSTOP)  # no new children from here on
            except ProcessLookupError:
                pass
            victims = descendants(pid)
        victims += [p for p in self._known_children if process_alive(p)]
        for p in [pid] + victims:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(scaled(10))
        except subprocess.TimeoutExpired:
            pass
        self._wait_descendants_gone(victims, scaled(10))
        self._known_children = ()
        self._forget()

    def kill_role(self, role, sig=signal.SIGKILL):
        """Send sig to one child of the given role ("smtp" or "qmgr");
        returns its pid. A role is known by its log lines, so this waits
        a little for a role that has just started to log."""
        deadline = time.monotonic() + scaled(10)
        pids = self.role_pids(role)
        while not pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = self.role_pids(role)
        if not pids:
            raise AssertionError("no live %s process found; log:\n%s" % (role, self.log_tail()))
        os.kill(pids[0], sig)
        return pids[0]

    def role_pids(self, role):
        """Live children whose log lines say they play role."""
        roles = {}
        for m in re.finditer(r"postern/(\w+)\[(\d+)\]", self.log()):
            roles[int(m.group(2))] = m.group(1)
        return [p for p in self.children() if roles.get(p) == role]

    def wait_roles(self, smtp=2, qmgr=1, timeout=None):
        """Wait until the expected number of role processes are up and
        have logged (a restarted role is ready)."""
        timeout = timeout if timeout is not None else scaled(10)
        wait_until(lambda: len(self.role_pids("smtp")) >= smtp and
                   len(self.role_pids("qmgr")) >= qmgr, timeout,
                   what="%d smtp and %d qmgr processes" % (smtp, qmgr))

    def reload(self, wait=True, wait_old=False, timeout=None):
        """SIGHUP; with wait, return the log match of the reload result.
        With wait_old, also wait until every process of the previous
        generation has exited (they drain their sessions first); the
        anvil, the auth process and the metrics role belong to no
        generation and stay."""
        old = self.children()
        offset = self.log_size()
        os.kill(self.proc.pid, signal.SIGHUP)
        if not wait:
            return None
        m = self.wait_log(r"reload: .*", timeout=timeout, since=offset)
        if wait_old and "generation" in m.group(0):
            # Asked now, not before the signal: one of them may not have
            # logged its role yet then.
            def old_gone():
                kept = set(self.role_pids("anvil")) | set(self.role_pids("auth")) | \
                    set(self.role_pids("metrics"))
                return not any(process_alive(p) for p in old if p not in kept)
            wait_until(old_gone, timeout or scaled(10), what="the old generation to exit")
        return m

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    # -- log --

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=None, since=0):
        """Wait for a regex in the log (from byte offset since); the match."""
        timeout = timeout if timeout is not None else scaled(10)
        rx = re.compile(pattern)
        try:
            return wait_until(lambda: rx.search(self.log_since(since)), timeout,
                              what="log line /%s/" % pattern)
        except AssertionError as e:
            raise AssertionError("%s; log tail:\n%s" % (e, self.log_tail()))

    def sanitizer_problems(self):
        lines = []
        for line in self.log().splitlines():
            if any(m in line for m in SANITIZER_MARKERS) or PANIC_RE.search(line):
                lines.append(line)
        return lines

    # -- mailboxes --

    def maildir(self, user, sub="new"):
        address = _addr(user)
        local, domain = address.rsplit("@", 1)
        return os.path.join(self.mail_root, domain, local, "Maildir", sub)

    def maildir_new(self, user):
        try:
            return sorted(os.listdir(self.maildir(user)))
        except FileNotFoundError:
            return []

    def all_maildir_files(self):
        """{address: [names in new/]} for every mailbox under mail_root."""
        out = {}
        if not os.path.isdir(self.mail_root):
            return out
        for domain in os.listdir(self.mail_root):
            ddir = os.path.join(self.mail_root, domain)
            for local in os.listdir(ddir):
                new = os.path.join(ddir, local, "Maildir", "new")
                if os.path.isdir(new):
                    out["%s@%s" % (local, domain)] = sorted(os.listdir(new))
        return out

    def files_for(self, user, qid):
        return [n for n in self.maildir_new(user) if (".Q%s." % qid) in n]

    def wait_delivery(self, user, qid, timeout=None):
        """Wait for the Maildir file of queue id qid; return (name, bytes)."""
        timeout = timeout if timeout is not None else scaled(10)
        try:
            names = wait_until(lambda: self.files_for(user, qid), timeout,
                               what="delivery of %s to %s" % (qid, _addr(user)))
        except AssertionError as e:
            raise AssertionError("%s; log tail:\n%s" % (e, self.log_tail()))
        with open(os.path.join(self.maildir(user), names[0]), "rb") as f:
            return names[0], f.read()

    def spool_files(self, folder):
        try:
            return sorted(os.listdir(os.path.join(self.spool_dir, folder)))
        except FileNotFoundError:
            return []

    def run_cli(self, *args, timeout=None):
        return subprocess.run([POSTERN_BIN] + list(args) + ["-c", self.conf_path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout or scaled(20))

    def remove(self):
        if not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("kept %s" % self.dir)


# ---- a raw SMTP client -------------------------------------------------------

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def status(self):
        """The enhanced status code of the last line, or ''."""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.lines[-1] if self.lines else "")
        return m.group(1) if m else ""

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


class SmtpClosed(Exception):
    pass


class SmtpConn:
    """A line-oriented SMTP client; every read is bounded."""

    def __init__(self, port, host="127.0.0.1", timeout=None, family=socket.AF_INET,
                 greet=True):
        self.timeout = timeout if timeout is not None else scaled(10)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise SmtpClosed("connection closed by server; buffered %r" % self.buf)
        self.buf += chunk

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete reply line; buffered %r" % self.buf)
            self._fill(left)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self, timeout=None):
        lines, code = [], None
        while True:
            line = self.read_line(timeout)
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError("malformed reply line %r" % line)
            code = int(line[:3])
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(code, lines)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.reply(timeout)

    def pending(self, wait=0.5):
        """Bytes that arrive within wait seconds (b'' if none); raises
        SmtpClosed if the server closed the connection."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                self._fill(max(0.01, end - time.monotonic()))
            except socket.timeout:
                break
            except ssl.SSLError:
                break
        data, self.buf = self.buf, b""
        return data

    def closed_by_server(self, wait=None):
        """True if the server closes the connection within wait seconds."""
        end = time.monotonic() + (wait or self.timeout)
        try:
            while time.monotonic() < end:
                self._fill(max(0.01, end - time.monotonic()))
        except SmtpClosed:
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except (socket.timeout, ssl.SSLError):
            return False
        return False

    def ehlo(self, name="client.test"):
        r = self.cmd("EHLO " + name)
        if r.code != 250:
            raise AssertionError("EHLO refused: %r" % r)
        return r

    def starttls(self, context=None):
        """Send STARTTLS, expect 220, handshake. Anything still buffered
        in clear text is dropped."""
        r = self.cmd("STARTTLS")
        if r.code != 220:
            raise AssertionError("STARTTLS refused: %r" % r)
        self.upgrade(context)
        return r

    def upgrade(self, context=None):
        context = context or client_tls_context()
        self.sock.settimeout(self.timeout)
        self.sock = context.wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.buf = b""


# ---- message helpers -------------------------------------------------------

def make_message(subject="test", body="Hello.\r\n", sender="sender@remote.test",
                 to="alice@example.test", extra_headers=()):
    """RFC 5322 message text with CRLF line ends (str)."""
    headers = ["From: <%s>" % sender, "To: <%s>" % to, "Subject: %s" % subject,
               "Message-ID: <%s.%f@client.test>" % (subject.replace(" ", "-"), time.time())]
    headers += list(extra_headers)
    if not body.endswith("\r\n"):
        body += "\r\n"
    return "\r\n".join(headers) + "\r\n\r\n" + body


def queue_id_of(reply_text):
    m = QUEUE_ID_RE.search(reply_text)
    if not m:
        raise AssertionError("no 'queued as ID' in reply %r" % reply_text)
    return m.group(1)


def smtplib_send(port, sender, rcpts, message, host="127.0.0.1", ehlo="client.test",
                 mail_options=(), tls=False, rcpt_options=()):
    """Send with smtplib (rcpt_options go with every RCPT); return the
    queue id of the 250 reply."""
    if isinstance(message, str):
        message = message.encode("utf-8")
    with smtplib.SMTP(host, port, local_hostname=ehlo, timeout=scaled(15)) as s:
        code, _ = s.ehlo()
        assert code == 250, code
        if tls:
            code, _ = s.starttls(context=client_tls_context())
            assert code == 220, code
            s.ehlo()
        code, text = s.mail(sender, list(mail_options))
        if code != 250:
            raise AssertionError("MAIL refused: %d %r" % (code, text))
        for r in rcpts:
            code, text = s.rcpt(r, list(rcpt_options))
            if code != 250:
                raise AssertionError("RCPT %s refused: %d %r" % (r, code, text))
        code, text = s.data(message)
        if code != 250:
            raise AssertionError("DATA refused: %d %r" % (code, text))
        return queue_id_of(text.decode("utf-8", "replace"))


def raw_send(conn, sender, rcpts, wire_body, mail_params=""):
    """MAIL/RCPT/DATA on an open SmtpConn; wire_body must already be
    dot-stuffed and end with CRLF.CRLF. Returns the final Reply."""
    r = conn.cmd("MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else ""))
    assert r.code == 250, r
    for rc in rcpts:
        r = conn.cmd("RCPT TO:<%s>" % rc)
        assert r.code == 250, (rc, r)
    r = conn.cmd("DATA")
    assert r.code == 354, r
    conn.send(wire_body)
    return conn.reply()


def unfold(header_text):
    return re.sub(r"\r?\n[ \t]+", " ", header_text)


def split_message(data):
    """(header text, body bytes) of a delivered LF-terminated file."""
    head, sep, body = data.partition(b"\n\n")
    return head.decode("utf-8", "replace"), body


# ---- the test case base class -----------------------------------------------

class PosternTestCase(unittest.TestCase):
    """Servers started through start_server() are always cleaned up, and
    a sanitizer report or panic in their log fails the test."""

    maxDiff = 4000
    class_server = None

    @classmethod
    def start_class_server(cls, **kwargs):
        srv = PosternServer(name=cls.__name__, **kwargs)
        cls.addClassCleanup(cls._class_cleanup, srv)
        srv.start()
        cls.class_server = srv
        return srv

    @classmethod
    def _class_cleanup(cls, srv):
        _finish_server(srv)

    def start_server(self, start=True, **kwargs):
        srv = PosternServer(name=self._testMethodName, **kwargs)
        self.addCleanup(_finish_server, srv)
        if start:
            srv.start()
        return srv

    def setUp(self):
        self._class_log_offset = self.class_server.log_size() if self.class_server else 0

    def tearDown(self):
        if self.class_server is not None:
            text = self.class_server.log_since(self._class_log_offset)
            bad = [l for l in text.splitlines()
                   if any(m in l for m in SANITIZER_MARKERS) or PANIC_RE.search(l)]
            if bad:
                self.fail("server log shows sanitizer/panic reports:\n" + "\n".join(bad[:40]))

    # -- assertions used everywhere --

    def assertReply(self, reply, code, status=None, msg=None):
        self.assertIsInstance(reply, Reply)
        self.assertEqual(reply.code, code, msg or "unexpected reply %r" % reply)
        if status is not None:
            self.assertEqual(reply.status, status, msg or "unexpected status in %r" % reply)

    def open_session(self, srv):
        """An SMTP connection to srv, greeted and after EHLO, closed at
        cleanup."""
        c = SmtpConn(srv.port)
        self.addCleanup(c.close)
        c.ehlo()
        return c

    def start_data(self, c, sender, rcpts):
        """MAIL, RCPT for each recipient and DATA, each asserted to succeed."""
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
        for rcpt in rcpts:
            self.assertReply(c.cmd("RCPT TO:<%s>" % rcpt), 250)
        self.assertReply(c.cmd("DATA"), 354)

    def send_data_queued(self, c, data):
        """Send the message data (ending with CRLF.CRLF) after a 354,
        assert the 250 and return the queue id it names."""
        c.send(data)
        r = c.reply()
        self.assertReply(r, 250)
        return queue_id_of(r.text)

    def assertNoPanic(self, srv):
        bad = srv.sanitizer_problems()
        if bad:
            self.fail("server log shows sanitizer/panic reports:\n" + "\n".join(bad[:40]))


def _finish_server(srv):
    """Cleanup: stop if still running, always kill what is left, then
    fail if the log shows memory errors or panics."""
    problems = []
    try:
        if srv.running():
            try:
                srv.stop(expect_rc=None)
            except AssertionError as e:
                problems.append(str(e))
    finally:
        srv.kill9_all()
    bad = srv.sanitizer_problems()
    if not bad and not problems:
        srv.remove()
        return
    if bad:
        problems.insert(0, "server log shows sanitizer/panic reports:\n" + "\n".join(bad[:40]))
    raise AssertionError("\n".join(problems) + "\n(server folder %s)" % srv.dir)
