#!/usr/bin/env python3
"""maildir_wait.py - wait until a Maildir folder holds EXPECTED messages.

Usage: maildir_wait.py DIR EXPECTED [STALL_SECONDS]

Polls the number of files in DIR (normally <Maildir>/new) every 0.2 s until
it reaches EXPECTED, or until the count has not changed for STALL_SECONDS
(default 60). Then prints one line for the shell:

    COUNT T_SEEN T_LAST

COUNT   files in DIR at the end
T_SEEN  wall-clock time (epoch seconds) when the loop saw the final count
T_LAST  the newest change time (ctime) among those files = the moment the
        last message was linked into DIR (both postern and Postfix'
        virtual(8) link a fsync'ed tmp/ file into new/, which sets ctime).

T_LAST is what the benchmark uses as "last message delivered": it does not
depend on the polling interval, so the poller can stay cheap (one directory
scan per 0.2 s) and disturb the system under test as little as possible.
Exit status 0 when COUNT == EXPECTED, 1 otherwise (stalled or too many).
"""
import os
import sys
import time


def count(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def newest_ctime(d):
    newest = 0.0
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                newest = max(newest, st.st_ctime_ns / 1e9)
    except FileNotFoundError:
        pass
    return newest


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    d, expected = sys.argv[1], int(sys.argv[2])
    stall = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    last_n, last_change = -1, time.monotonic()
    while True:
        n = count(d)
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        if n >= expected or time.monotonic() - last_change > stall:
            break
        time.sleep(0.2)
    t_seen = time.time()
    print("%d %.6f %.6f" % (n, t_seen, newest_ctime(d)))
    sys.exit(0 if n == expected else 1)


if __name__ == "__main__":
    main()
