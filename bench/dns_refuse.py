#!/usr/bin/env python3
"""dns_refuse.py - a DNS server that refuses every query at once.

Usage: dns_refuse.py ADDR PORT COUNTFILE

For bench/spam.sh, inside the benchmark's loopback-only network
namespace. The anchors point rspamd's resolver at 127.0.0.1:53 where
nothing listens, and rspamd then waits out its timeout (0.2 s) on each
lookup it makes, such as the PTR of the sending IP when no MTA told it
the client's host name: with corpus messages (a Received chain with
public IPs) that made rspamd wait, not work, and its rate a measure of
the timeout. This answers each UDP query at once with REFUSED (RCODE 5),
as a resolver that will not help would: the lookup fails as before
(RDNS_DNSFAIL) without the wait, and every rule still runs.

Input: datagrams from the loopback interface of that namespace (rspamd),
untrusted only in form: a datagram shorter than a DNS header is dropped;
the reply is the query's header with QR set and RCODE 5, its question
copied, no records. Runs as root (port 53) for as long as the benchmark
needs it; SIGTERM ends it, writing the count of answered queries to
COUNTFILE.
"""
import signal
import socket
import struct
import sys


def refusal(query):
    """the reply to one query, or None for a datagram that is not one"""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000:  # a response: never answer those
        return None
    # keep the opcode and RD, set QR and RCODE = REFUSED
    flags = 0x8000 | (flags & 0x7900) | 5
    # copy the question (the first one) when it is whole
    pos, end = 12, len(query)
    if qdcount >= 1:
        while pos < end and query[pos] != 0:
            if query[pos] & 0xC0:  # a pointer cannot occur in a query's first name
                pos = end
                break
            pos += 1 + query[pos]
        pos += 1 + 4  # the root label, QTYPE, QCLASS
    if qdcount >= 1 and pos <= end:
        return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + query[12:pos]
    return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: dns_refuse.py ADDR PORT COUNTFILE")
    addr, port, countfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    answered = [0]

    def stop(_sig, _frame):
        with open(countfile, "w") as f:
            f.write("%d\n" % answered[0])
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        query, peer = sock.recvfrom(4096)
        reply = refusal(query)
        if reply is not None:
            sock.sendto(reply, peer)
            answered[0] += 1


if __name__ == "__main__":
    main()
