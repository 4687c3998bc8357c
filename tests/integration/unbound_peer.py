"""
unbound_peer.py - a private unbound (Debian package unbound) serving the
DNS tests' own zones on a loopback port, never the system's resolver,
configuration or service.

UnboundPeer owns a temporary folder with its own unbound.conf, log (every
query is logged: queries() counts them) and pid file; unbound runs in
the foreground (-d) in its own process group, without privilege drop or
chroot, and is always stopped by its pid (stop()). It answers only from
local zones (module-config "iterator", nothing is forwarded, no root
hints are ever used for the test names):

  zone(name)               a static zone with an SOA (negative answers
                           carry its minimum, 60 s by default)
  record(text)             one local-data line: "name TTL IN TYPE data"
  listing(zone, address, answer="127.0.0.2", txt=None, ttl=300)
                           a DNSBL entry for an IPv4/IPv6 address (its
                           reversed form under zone), with a TXT reason
  refuse(name)             every name below answers REFUSED (what a
                           broken or unwilling server does: c-ares, like
                           for SERVFAIL, gives up on that server)
  drop(name)               every query below is dropped: the name times out

Add zones and records before start(); a running peer can take more with
reload() (SIGHUP). When unbound is not installed, start() fails with a
message saying how to install it: the tests that need it must not pass
by skipping.
"""
import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile

from peer_process import PeerProcess
from harness import have_ipv6_loopback, scaled, wait_until

UNBOUND_CANDIDATES = ("/usr/sbin/unbound",)
NOT_INSTALLED = ("unbound is not installed: the DNS tests need the Debian package unbound "
                 "(tools/install-deps.sh, run by make check, installs it)")
PROBE_ZONE = "postern-probe.test."
QUERY_RE = re.compile(r"info: (\S+) (\S+) (\S+) IN$")


def unbound_binary():
    found = shutil.which("unbound") or next(
        (p for p in UNBOUND_CANDIDATES if os.access(p, os.X_OK)), None)
    if found is None:
        raise AssertionError(NOT_INSTALLED)
    return found


def free_udp_tcp_port():
    """A loopback port free for both UDP and TCP (DNS uses both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free UDP+TCP port on 127.0.0.1")


def dead_port():
    """A loopback UDP port with nothing listening (queries to it get
    ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        return u.getsockname()[1]


def reversed_name(address, zone):
    """The name a DNSBL answers for address under zone (RFC 5782 2.1:
    reversed octets, or the 32 nibbles of an IPv6 address)."""
    ptr = ipaddress.ip_address(address).reverse_pointer
    for suffix in (".in-addr.arpa", ".ip6.arpa"):
        if ptr.endswith(suffix):
            ptr = ptr[:-len(suffix)]
    return "%s.%s" % (ptr, zone.rstrip("."))


def _quote(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


class UnboundPeer(PeerProcess):
    """unbound on 127.0.0.1:<port> (and [::1]:<port> when there is IPv6)."""

    NAME = "unbound"
    STDERR_NAME = "unbound.stderr"
    STOP_GRACE = 10

    def __init__(self, negative_ttl=60):
        self.binary = unbound_binary()
        self.dir = tempfile.mkdtemp(prefix="postern-it-unbound-")
        os.chmod(self.dir, 0o755)
        self.conf_path = os.path.join(self.dir, "unbound.conf")
        self.log_path = os.path.join(self.dir, "unbound.log")
        self.pid_path = os.path.join(self.dir, "unbound.pid")
        self.port = free_udp_tcp_port()
        self.ipv6 = have_ipv6_loopback()
        self.negative_ttl = negative_ttl
        self.zones = []       # (name, type)
        self.data = []        # local-data lines
        self.proc = None
        self.zone(PROBE_ZONE)
        self.record("probe.%s 300 IN A 127.0.0.1" % PROBE_ZONE)

    # -- what it serves --

    def zone(self, name, kind="static"):
        name = name.rstrip(".") + "."
        self.zones.append((name, kind))
        if kind == "static":
            self.record("%s 3600 IN SOA ns.%s hostmaster.%s 1 3600 600 86400 %d"
                        % (name, name, name, self.negative_ttl))
        return self

    def record(self, text):
        self.data.append(text)
        return self

    def txt(self, name, text, ttl=300):
        return self.record('%s %d IN TXT "%s"' % (name, ttl, _quote(text)))

    def listing(self, zone, address, answer="127.0.0.2", txt=None, ttl=300):
        name = reversed_name(address, zone)
        self.record("%s %d IN A %s" % (name, ttl, answer))
        if txt is not None:
            self.txt(name, txt, ttl)
        return name

    def refuse(self, name):
        return self.zone(name, "always_refuse")

    def drop(self, name):
        return self.zone(name, "deny")

    # -- process --

    @property
    def server(self):
        """The dns_servers value that reaches it."""
        return "127.0.0.1:%d" % self.port

    def write_config(self):
        lines = [
            "# written by tests/integration/unbound_peer.py",
            "server:",
            "  interface: 127.0.0.1@%d" % self.port,
        ]
        if self.ipv6:
            lines.append("  interface: ::1@%d" % self.port)
        lines += [
            "  port: %d" % self.port,
            "  do-ip6: %s" % ("yes" if self.ipv6 else "no"),
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            '  directory: "%s"' % self.dir,
            '  pidfile: "%s"' % self.pid_path,
            '  logfile: "%s"' % self.log_path,
            "  use-syslog: no",
            "  log-queries: yes",
            "  verbosity: 1",
            "  num-threads: 1",
            "  so-reuseport: no",
            "  access-control: 127.0.0.0/8 allow",
            "  access-control: ::1/128 allow",
            '  module-config: "iterator"',
            "  minimal-responses: no",
            "  qname-minimisation: no",
            "  msg-cache-size: 1m",
            "  rrset-cache-size: 1m",
        ]
        for name, kind in self.zones:
            lines.append('  local-zone: "%s" %s' % (name, kind))
        for text in self.data:
            lines.append("  local-data: '%s'" % text.replace("'", ""))
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=None):
        timeout = timeout if timeout is not None else scaled(20)
        self.write_config()
        check = subprocess.run([self.binary + "-checkconf", self.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=scaled(20))
        if check.returncode != 0:
            raise AssertionError("unbound-checkconf refused the test config:\n%s"
                                 % check.stdout.decode("utf-8", "replace"))
        return self.launch([self.binary, "-d", "-c", self.conf_path], self.answers, timeout,
                           "unbound answering on %s" % self.server)

    def reload(self):
        """Rewrite the config and make unbound read it again."""
        self.write_config()
        offset = len(self.log())
        os.kill(self.proc.pid, signal.SIGHUP)
        wait_until(lambda: "start of service" in self.log()[offset:], scaled(10),
                   what="unbound to reload")
        wait_until(self.answers, scaled(10), what="unbound answering after reload")

    def answers(self):
        """True if the probe name resolves (one UDP query)."""
        if self.proc.poll() is not None:
            raise AssertionError("unbound exited with status %s at start; log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        query = struct.pack(">HHHHHH", 0x5054, 0x0100, 1, 0, 0, 0)
        for label in ("probe." + PROBE_ZONE).rstrip(".").split("."):
            query += bytes([len(label)]) + label.encode()
        query += b"\0" + struct.pack(">HH", 1, 1)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(query, ("127.0.0.1", self.port))
                data, _ = s.recvfrom(512)
                return len(data) > 12 and data[:2] == b"\x50\x54" and (data[3] & 15) == 0
        except OSError:
            return False

    # -- what it was asked --

    def queries(self, name=None, qtype=None):
        """The queries unbound received, as (name, type) with the name
        lower-cased and without its trailing dot, optionally only those
        for name (and type)."""
        out = []
        for line in self.log().splitlines():
            m = QUERY_RE.search(line)
            if not m:
                continue
            qname, qt = m.group(2).rstrip(".").lower(), m.group(3)
            if qname.startswith("probe.postern-probe.test"):
                continue
            if name is not None and qname != name.rstrip(".").lower():
                continue
            if qtype is not None and qt != qtype:
                continue
            out.append((qname, qt))
        return out

    def wait_queries(self, name, qtype, n, timeout=None):
        """Wait until unbound has logged n queries for (name, type)."""
        return wait_until(lambda: len(self.queries(name, qtype)) >= n,
                          timeout or scaled(10), what="%d %s queries for %s" % (n, qtype, name))
