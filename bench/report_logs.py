#!/usr/bin/env python3
"""
report_logs.py - bench/report.sh's generator: one day of mail written
twice, as postern logs it (log.c's format, the roles' lines) and as
Postfix logs it (syslog lines of smtpd, cleanup, qmgr, local, smtp), with
the same messages and the same fates, so that `postern report` and
pflogsumm summarise the same traffic.

  report_logs.py --lines N OUTDIR   (about N postern lines)

Writes OUTDIR/postern.log, OUTDIR/postfix.log and OUTDIR/expected.json
(the counts both reports should find). Deterministic (a fixed seed).
The mix: 80% delivered (some to two recipients, 5% of them spam-tagged),
10% refused at RCPT (four reasons), 3% refused as a virus, 4% deferred
once then delivered, 3% bounced.
"""
import argparse
import json
import os
import random

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class Counted:
    """A file that counts the lines written to it."""
    def __init__(self, f):
        self.f, self.lines = f, 0

    def write(self, text):
        self.lines += text.count("\n")
        self.f.write(text)

    def close(self):
        self.f.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("outdir")
    a = ap.parse_args()
    rnd = random.Random(13)
    os.makedirs(a.outdir, exist_ok=True)
    pt = open(os.path.join(a.outdir, "postern.log"), "w")
    pf = Counted(open(os.path.join(a.outdir, "postfix.log"), "w"))
    senders = ["user%d@sender%d.test" % (i, i % 300) for i in range(20000)]
    rcpts = ["u%d@example.test" % i for i in range(2000)]
    exp = dict(received=0, delivered=0, deferred=0, bounced=0, rejected=0, quarantined=0)
    reasons = [("check_sender_access", "554 5.7.1", "Sender address rejected: go away",
                "restriction=check_sender_access list=sender_restrictions"),
               ("unknown_user", "550 5.1.1", "Recipient address rejected: User unknown",
                "restriction=reject_unlisted_recipient"),
               ("dnsbl", "554 5.7.1", "Client host rejected: listed by bl.test",
                "restriction=dnsbl list=client_restrictions"),
               ("relay_denied", "554 5.7.1", "Relay access denied",
                "restriction=reject_unauth_destination list=recipient_restrictions")]
    lines = 0
    n = 0
    day_seconds = 86400
    while lines < a.lines:
        n += 1
        t = int(day_seconds * lines / a.lines)
        hh, mm, ss = t // 3600, t // 60 % 60, t % 60
        iso = "2026-11-30T%02d:%02d:%02d.%03dZ" % (hh, mm, ss, n % 1000)
        sysl = "Nov 30 %02d:%02d:%02d" % (hh, mm, ss)
        qid = "%019X" % (0x661857C7BC0A5004CEE + n * 7919)
        pqid = "%010X" % (0x4A00000000 + n)
        client = "198.51.%d.%d" % (n % 200, n % 250 + 1)
        sender = rnd.choice(senders)
        to = [rnd.choice(rcpts)] + ([rnd.choice(rcpts)] if n % 5 == 0 else [])
        size = rnd.randint(800, 60000)
        pid = 1000 + n % 50
        P = lambda role, text: pt.write("%s postern/%s[%d]: info: %s\n" % (iso, role, pid, text))
        F = lambda prog, text: pf.write("%s mx postfix/%s[%d]: %s\n" % (sysl, prog, pid, text))
        fate = rnd.random()
        P("smtp", "connect client=%s port=%d" % (client, 40000 + n % 20000))
        F("smtpd", "connect from unknown[%s]" % client)
        lines += 1
        if fate < 0.10:
            reason, code, text, detail = reasons[n % 4]
            P("smtp", "%s: client=%s helo=h%d.test from=<%s> status=accepted"
              % (qid, client, n, sender))
            P("smtp", "%s: reject: RCPT client=%s from=<%s> to=<%s> code=%s reason=%s %s"
              % (qid, client, sender, to[0], code, reason, detail))
            F("smtpd", "NOQUEUE: reject: RCPT from unknown[%s]: %s <%s>: %s; from=<%s> "
              "to=<%s> proto=ESMTP helo=<h%d.test>" % (client, code, to[0], text, sender,
                                                       to[0], n))
            exp["rejected"] += 1
            lines += 2
        elif fate < 0.13:
            P("smtp", "%s: client=%s helo=h%d.test from=<%s> status=accepted"
              % (qid, client, n, sender))
            P("smtp", "%s: to=<%s> status=accepted" % (qid, to[0]))
            P("smtp", "%s: scan action=reject reason=virus status=5.7.0 "
              "hits=virus:Win.Test.EICAR_HDB-1 headers=0 delay=0.004 mime=0.000 "
              "antivirus=0.003 queue=0.000" % qid)
            P("smtp", "%s: reject: end-of-data client=%s from=<%s> size=%d code=550 5.7.0 "
              "reason=virus" % (qid, client, sender, size))
            F("smtpd", "%s: client=unknown[%s]" % (pqid, client))
            F("cleanup", "%s: milter-reject: END-OF-MESSAGE from unknown[%s]: 5.7.0 virus "
              "found: Win.Test.EICAR_HDB-1; from=<%s> to=<%s> proto=ESMTP helo=<h%d.test>"
              % (pqid, client, sender, to[0], n))
            exp["rejected"] += 1
            lines += 4
        else:
            spam = rnd.random() < 0.05
            score = rnd.uniform(5, 9) if spam else rnd.uniform(-2, 3)
            P("smtp", "%s: client=%s helo=h%d.test from=<%s> status=accepted"
              % (qid, client, n, sender))
            F("smtpd", "%s: client=unknown[%s]" % (pqid, client))
            for r in to:
                P("smtp", "%s: to=<%s> status=accepted" % (qid, r))
            P("smtp", "%s: scan action=%s hits=spam:score=%.1f%s headers=3 delay=0.004 "
              "mime=0.000 antivirus=0.003 spam=0.001 queue=0.000"
              % (qid, "tag" if spam else "accept", score, ",spam:T_PILLS" if spam else ""))
            P("smtp", "%s: accepted from=<%s> size=%d nrcpt=%d protocol=ESMTP delay=0.007 "
              "flow=0.000 commit=0.003 client=%s" % (qid, sender, size, len(to), client))
            F("cleanup", "%s: message-id=<%d@sender.test>" % (pqid, n))
            F("qmgr", "%s: from=<%s>, size=%d, nrcpt=%d (queue active)"
              % (pqid, sender, size, len(to)))
            exp["received"] += 1
            lines += 3 + len(to)
            if fate < 0.90:
                outcome = "sent"
            elif fate < 0.94:
                outcome = "deferred"
            else:
                outcome = "bounced"
            for r in to:
                if outcome == "deferred":
                    P("qmgr", "%s: to=<%s> relay=maildir delay=0.02 attempts=1 status=deferred "
                      "(4.2.2 mailbox full, try again later)" % (qid, r))
                    F("local", "%s: to=<%s>, relay=local, delay=0.02, delays=0/0/0/0.02, "
                      "dsn=4.2.2, status=deferred (cannot update mailbox: full)" % (pqid, r))
                    exp["deferred"] += 1
                    lines += 1
                if outcome == "bounced":
                    P("qmgr", "%s: to=<%s> relay=maildir delay=0.02 attempts=1 status=bounced "
                      "(5.1.1 mailbox unknown)" % (qid, r))
                    F("local", "%s: to=<%s>, relay=local, delay=0.02, delays=0/0/0/0.02, "
                      "dsn=5.1.1, status=bounced (unknown user)" % (pqid, r))
                    exp["bounced"] += 1
                else:
                    P("qmgr", "%s: to=<%s> relay=maildir delay=%.2f attempts=%d status=sent "
                      "(delivered to maildir)" % (qid, r, 0.01 if outcome == "sent" else 300,
                                                  1 if outcome == "sent" else 2))
                    F("local", "%s: to=<%s>, relay=local, delay=%.1f, delays=0/0/0/0, "
                      "dsn=2.0.0, status=sent (delivered to mailbox)"
                      % (pqid, r, 0.01 if outcome == "sent" else 300))
                    exp["delivered"] += 1
                lines += 1
            P("qmgr", "%s: removed" % qid)
            F("qmgr", "%s: removed" % pqid)
            lines += 1
        P("smtp", "disconnect client=%s port=%d commands=5 messages=1 errors=0"
          % (client, 40000 + n % 20000))
        F("smtpd", "disconnect from unknown[%s] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
          % client)
        lines += 1
    exp["messages"] = n
    exp["postern_lines"] = lines
    exp["lines_asked"] = a.lines
    exp["postfix_lines"] = pf.lines
    with open(os.path.join(a.outdir, "expected.json"), "w") as f:
        json.dump(exp, f)
    pt.close()
    pf.close()


if __name__ == "__main__":
    main()
