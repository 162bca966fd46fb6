#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Drives a migration over one QMP connection, for tests/vm/nested-mig.sh.

  migctl.py wait SOCK STATUS-RE SECONDS
      Polls query-migrate (every 100 ms) until its status matches STATUS-RE
      (a Python regular expression, whole status), or is failed or
      cancelled, or SECONDS pass. Prints "STATUS TOTAL-MS DOWNTIME-MS SYNCS";
      exits 0 only on a match.

  migctl.py hold SOCK URI CONSOLE LOG RXFILE N SECS
      Migrates to URI while netloop, the L2 guest's traffic (console input
      CONSOLE, output LOG), holds its receive side (netloop's "hold N
      SECS"), so that the device's writes to guest memory land in pages
      RAM's first pass has copied and that only the destination reads:
        1. "hold N SECS": the guest arms the hold ("netloop: hold armed"):
           from then on nothing in it reads or writes its receive ring and
           buffers, and it dirties 4 MiB of its own without pause;
        2. migrate at 8 MiB/s with a downtime limit of 1 ms: QEMU switches
           over only when less than its threshold (bandwidth x downtime
           limit: 8 KiB) is dirty after a pass, and each pass, at least
           half a second for the 4 MiB the guest keeps writing, leaves all
           of them dirty again; wait for the end of RAM's first pass (the
           second dirty sync): the receive ring and buffers are copied;
        3. "go": the guest sends N frames; the device (RXFILE, its
           rx_packets) returns them into the receive buffers;
        4. the limits go up (downtime 30 s, 128 MiB/s): QEMU switches over
           while the guest holds.
      Then as wait for "completed". Prints the steps on stderr and the
      final "STATUS TOTAL-MS DOWNTIME-MS SYNCS" on stdout. A failed step
      cancels the migration.
"""
import json
import re
import socket
import sys
import os
import time

VERBOSE = os.environ.get("MIGCTL_VERBOSE") == "1"


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self.reply()
        self.cmd("qmp_capabilities")

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP connection closed")
            m = json.loads(line)
            if "event" not in m:
                return m

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args} if args
                                else {"execute": name}) + "\n")
        self.f.flush()
        return self.reply()

    def info(self):
        r = self.cmd("query-migrate").get("return", {})
        if VERBOSE:
            ram = r.get("ram", {})
            log("%.2f %s remaining %s dirty-rate %s syncs %s transferred %s" % (
                time.time(), r.get("status"), ram.get("remaining"), ram.get("dirty-pages-rate"),
                ram.get("dirty-sync-count"), ram.get("transferred")))
        return (r.get("status", "none"), r.get("total-time", "-"),
                r.get("downtime", "-"), r.get("ram", {}).get("dirty-sync-count", 0))


def line(i):
    return " ".join(str(x) for x in i)


def wait(q, want, secs):
    """Until the status matches want; returns (matched, info)."""
    end = time.time() + secs
    i = q.info()
    while True:
        if re.fullmatch(want, i[0]):
            # QEMU sets "completed" before it computes the totals
            # (migration_completion(), then migration_calculate_complete()
            # under the BQL): a poll in between reads 0 ms for both.
            settle = time.time() + 2
            while i[0] == "completed" and i[1] == 0 and time.time() < settle:
                time.sleep(0.05)
                i = q.info()
            return True, i
        if i[0] in ("failed", "cancelled") or time.time() > end:
            return False, i
        time.sleep(0.1)
        i = q.info()


def log(*a):
    print("migctl:", *a, file=sys.stderr, flush=True)


def console_wait(logf, off, pattern, secs):
    """The first line of logf after offset off matching pattern, or None."""
    end = time.time() + secs
    while time.time() < end:
        with open(logf, "rb") as f:
            f.seek(off)
            for ln in f.read().decode("utf-8", "replace").splitlines():
                if re.search(pattern, ln):
                    return ln.strip()
        time.sleep(0.1)
    return None


def hold(q, uri, console, logf, rxfile, n, secs):
    r = hold_steps(q, uri, console, logf, rxfile, n, secs)
    if r:
        # A failed step: the source goes on as it was.
        q.cmd("migrate_cancel")
        q.cmd("migrate-set-parameters", **{"downtime-limit": 300, "max-bandwidth": 128 << 20})
    return r


def hold_steps(q, uri, console, logf, rxfile, n, secs):
    rd = lambda: int(open(rxfile).read())
    with open(logf, "rb") as f:
        off = f.seek(0, 2)
    with open(console, "w") as c:
        c.write("hold %d %d\n" % (n, secs))
    armed = console_wait(logf, off, r"netloop: hold(:)? (armed|not|no |NAPI)", 15)
    if not armed or "armed" not in armed:
        print("not-armed", armed)
        return 1
    tarm = time.time()
    q.cmd("migrate-set-parameters", **{"downtime-limit": 1, "max-bandwidth": 8 << 20})
    r = q.cmd("migrate", uri=uri)
    if "error" in r:
        print("refused", json.dumps(r))
        return 1
    while True:
        i = q.info()
        if i[0] not in ("setup", "active") or i[3] >= 2 or time.time() - tarm > secs - 5:
            break
        time.sleep(0.05)
    if i[0] != "active" or i[3] < 2:
        print("first-pass", line(i), "after %.1f s" % (time.time() - tarm))
        return 1
    log("armed; RAM's first pass done %.1f s after" % (time.time() - tarm))
    rx0 = rd()
    with open(console, "w") as c:
        c.write("go\n")
    rx = rx1 = rx0
    t1 = time.time()
    while time.time() - t1 < 5:
        time.sleep(0.1)
        rx = rd()
        if rx >= rx0 + n and rx == rx1:
            break
        rx1 = rx
    i = q.info()
    q.cmd("migrate-set-parameters", **{"downtime-limit": 30000, "max-bandwidth": 128 << 20})
    log("held: the device returned %d frames (rx_packets %d -> %d); limits up "
        "%.1f s after arming, at dirty sync %d (%s)" % (rx - rx0, rx0, rx, time.time() - tarm, i[3], i[0]))
    if i[0] != "active":
        print("switched-early", line(i))
        return 1
    ok, i = wait(q, "completed", 120)
    print(line(i))
    return 0 if ok else 1


def main(argv):
    if len(argv) == 5 and argv[1] == "wait":
        try:
            ok, i = wait(Qmp(argv[2]), argv[3], float(argv[4]))
        except (OSError, EOFError, ValueError) as e:
            print("none - - 0")
            log(argv[2], e)
            return 1
        print(line(i))
        return 0 if ok else 1
    if len(argv) == 9 and argv[1] == "hold":
        try:
            return hold(Qmp(argv[2]), argv[3], argv[4], argv[5], argv[6],
                        int(argv[7]), int(argv[8]))
        except (OSError, EOFError, ValueError) as e:
            print("error", e)
            return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
