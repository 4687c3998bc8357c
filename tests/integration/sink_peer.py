"""
sink_peer.py - destinations for the outbound SMTP tests (postern's relay
agent delivering onward):

SmtpSink     Postfix's smtp-sink (Debian package postfix, /usr/sbin/
             smtp-sink) on a loopback address and port, each message
             dumped to a file of its own (-d), run as nobody; options
             switch its capabilities off (-8 no 8BITMIME, -p no
             PIPELINING, -e no ESMTP) or make it refuse (-r soft, -f
             hard), stall (-w DATA delay) or drop the connection (-q).
             Always stopped by its pid.
ScriptedPeer a small SMTP server in this process (a thread per
             connection) whose RCPT replies come from a function of the
             address, for per-recipient mixes of 250, 4xx and 5xx that
             smtp-sink cannot give; it records what it received.

Runs as root (smtp-sink needs -u to drop privileges). Untrusted input:
none (we are the ones being tested).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

from harness import KEEP_TMP, free_port, scaled, wait_until

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def sink_unusable():
    if not os.path.exists(SMTP_SINK):
        return "smtp-sink is not installed (Debian package postfix; tools/install-deps.sh)"
    if os.geteuid() != 0:
        return "smtp-sink is run as root with -u nobody"
    return None


class SmtpSink:
    def __init__(self, port=None, host="127.0.0.1", options=()):
        self.host = host
        self.port = port or free_port()
        self.options = list(options)
        self.dir = tempfile.mkdtemp(prefix="postern-sink-")
        self.dump = os.path.join(self.dir, "dump")
        os.makedirs(self.dump)
        os.chmod(self.dir, 0o755)
        os.chmod(self.dump, 0o777)
        self.proc = None

    def start(self):
        argv = [SMTP_SINK, "-u", "nobody", "-d", os.path.join(self.dump, "%M."),
                *self.options, "%s:%d" % (self.host, self.port), "100"]
        self.log = open(os.path.join(self.dir, "sink.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        def listening():
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return True
            except OSError:
                return self.proc.poll() is not None
        wait_until(listening, scaled(10), what="smtp-sink listening")
        if self.proc.poll() is not None:
            raise RuntimeError("smtp-sink did not start: " + open(self.log.name).read())
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def remove(self):
        self.stop()
        if not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)

    def files(self):
        out = []
        for root, _dirs, names in os.walk(self.dump):
            out.extend(os.path.join(root, n) for n in names)
        return sorted(out)

    def messages(self):
        """Each dumped message as bytes (smtp-sink's X- headers first)."""
        result = []
        for path in self.files():
            with open(path, "rb") as f:
                result.append(f.read())
        return result

    def wait_messages(self, n, timeout=None):
        """At least n complete dumps (smtp-sink writes a dump as the data
        comes and ends it with an empty line of its own)."""
        def complete():
            msgs = self.messages()
            return len(msgs) >= n and all(m.endswith(b"\n\n") for m in msgs)
        wait_until(complete, timeout or scaled(30), what="%d message(s) at smtp-sink" % n)
        return self.messages()


class ScriptedPeer:
    """An SMTP server whose RCPT replies come from rcpt_reply(address,
    attempt) -> "250 2.1.5 Ok" etc.; records each accepted transaction
    as (mail_from, [rcpts], data_bytes)."""

    def __init__(self, rcpt_reply=None, ehlo_lines=("PIPELINING", "8BITMIME", "SIZE 0"),
                 data_reply=None, dot_reply=None):
        self.port = free_port()
        self.rcpt_reply = rcpt_reply or (lambda addr, n: "250 2.1.5 Ok")
        # data_reply(attempt) -> a reply to DATA other than 354 (then no
        # content is read), or None for the usual 354.
        self.data_reply = data_reply
        self.data_seen = 0
        # dot_reply(n) -> the text sent after the n-th message's end of data
        # (lines joined by CR LF; it may sleep first), or None for the usual.
        self.dot_reply = dot_reply
        self.ehlo_lines = list(ehlo_lines)
        self.received = []
        self.connections = 0
        self.rcpt_seen = {}
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(50)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        def send(line):
            conn.sendall(line.encode() + b"\r\n")
        try:
            send("220 scripted ESMTP")
            mail, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    lines = ["scripted"] + self.ehlo_lines
                    for i, l in enumerate(lines):
                        send("250%s%s" % ("-" if i < len(lines) - 1 else " ", l))
                elif verb == "HELO":
                    send("250 scripted")
                elif verb == "MAIL":
                    mail, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                    send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    addr = cmd[8:].split(">")[0].lstrip("<")
                    with self.lock:
                        n = self.rcpt_seen.get(addr, 0) + 1
                        self.rcpt_seen[addr] = n
                    reply = self.rcpt_reply(addr, n)
                    if reply.startswith("2"):
                        rcpts.append(addr)
                    send(reply)
                elif verb == "DATA":
                    if not rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    with self.lock:
                        self.data_seen += 1
                        odd = self.data_reply(self.data_seen) if self.data_reply else None
                    if odd is not None:
                        send(odd)
                        continue
                    send("354 go ahead")
                    data = b""
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        data += l
                    with self.lock:
                        self.received.append((mail, list(rcpts), data))
                        n = len(self.received)
                    odd = self.dot_reply(n) if self.dot_reply else None
                    send(odd if odd is not None else "250 2.0.0 Ok: queued as SCRIPTED%d" % n)
                elif verb == "RSET":
                    mail, rcpts = None, []
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 unknown command")
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass
