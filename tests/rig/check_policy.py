#!/usr/bin/env python3
"""The policy-states scenario's host check: reads the serial log of a run
and judges what the memory policy did, from its own lines and the
@hvstat records (docs/stats.md).

    check_policy.py SERIAL [--visit high,clear,soft,hard] [--max-changes N]
                           [--shares HI:LO:RATIO] [--idle IDLE:BUSY]

--visit       every state named must have been entered, and the last state
              change must lead back to high (the VMs stopped, frames came
              back)
--max-changes at most N state changes in all (a machine that flaps near a
              threshold fails)
--shares      while the machine is under pressure (soft or worse) and both
              VMs run, the median of HI's resident pages over LO's must be
              within 20% of RATIO
--idle        under pressure, IDLE (same shares as BUSY, but idle) gives
              up memory: its median resident is below BUSY's, and BUSY's
              refaults (decompress + swap-in per second) stay below its
              demand-zero rate

Every technique's first run in a state ("policy: T starts in state S")
must be in a state that allows it (the table in mm/policy.h), and the
policy's last line must count no technique denied. Prints what it measured;
exit status 1 on any failure.
"""
import argparse
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hvstat  # noqa: E402

STATES = ["high", "clear", "soft", "hard", "low"]
# The state from which each technique is allowed (mm/policy.c: techs[]).
FIRST_STATE = {
    "sharing": "high", "faster sharing": "clear", "balloon": "soft",
    "same-filled reclaim": "soft", "compression": "hard", "swap": "hard",
    "direct reclaim": "low",
}
PRESSURE = {"soft", "hard", "low"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("serial")
    ap.add_argument("--visit", default="")
    ap.add_argument("--max-changes", type=int)
    ap.add_argument("--shares")
    ap.add_argument("--idle")
    a = ap.parse_args()
    text = open(a.serial, errors="replace").read()
    bad = []

    changes = re.findall(r"\[mm\] memory state (\w+) -> (\w+): free (\S+)", text)
    seen = {to for _, to, _ in changes}
    path = " ".join(f"{f}->{t}" for f, t, _ in changes[:12])
    print(f"state changes: {len(changes)}; entered: "
          f"{', '.join(s for s in STATES if s in seen)}; first: {path}")
    for s in filter(None, a.visit.split(",")):
        if s not in seen and not (s == "high" and not changes):
            bad.append(f"state {s} never entered")
    if a.visit and (not changes or changes[-1][1] != "high"):
        bad.append("the machine did not end in state high")
    if a.max_changes is not None and len(changes) > a.max_changes:
        bad.append(f"{len(changes)} state changes, more than {a.max_changes}: flapping")

    starts = re.findall(r"\[mm\] policy: ([a-z -]+?) starts in state (\w+)", text)
    wrong = [(t, s) for t, s in starts
             if t not in FIRST_STATE or STATES.index(s) < STATES.index(FIRST_STATE[t])]
    counts = {}
    for t, s in starts:
        counts.setdefault(t, set()).add(s)
    print("techniques started: " + "; ".join(
        f"{t} in {'/'.join(sorted(v, key=STATES.index))}" for t, v in sorted(counts.items())))
    for t, s in wrong:
        bad.append(f"{t} started in state {s}, which does not allow it")
    denied = re.findall(r"\[mm\] policy: state .* techniques denied (\d+)", text)
    if not denied:
        bad.append("no policy summary line")
    elif denied[-1] != "0":
        bad.append(f"{denied[-1]} techniques asked for in a state that denies them")

    recs = hvstat.parse(text)
    periods = [(m, vms) for _, m, vms in hvstat.periods(recs)
               if m is not None and m.get("state") in PRESSURE]
    print(f"periods under pressure: {len(periods)}")

    def resident(v):
        return v["p2m"]["resident"] + v["shrd"]

    if a.shares:
        hi, lo, ratio = a.shares.split(":")
        ratio = float(ratio)
        rs = [resident(vms[hi]) / resident(vms[lo]) for m, vms in periods
              if hi in vms and lo in vms and resident(vms[lo])]
        if len(rs) < 4:
            bad.append(f"only {len(rs)} periods under pressure with {hi} and {lo}")
        else:
            r = statistics.median(rs)
            print(f"shares: {hi}/{lo} resident, median over {len(rs)} periods: {r:.2f} "
                  f"(want {ratio:g} within 20%)")
            if not ratio * 0.8 <= r <= ratio * 1.2:
                bad.append(f"{hi}/{lo} resident {r:.2f}, not within 20% of {ratio:g}")

    if a.idle:
        idle, busy = a.idle.split(":")
        both = [vms for m, vms in periods if idle in vms and busy in vms]
        if len(both) < 4:
            bad.append(f"only {len(both)} periods under pressure with {idle} and {busy}")
        else:
            ri = statistics.median(resident(v[idle]) for v in both)
            rb = statistics.median(resident(v[busy]) for v in both)
            refault = statistics.median(
                float(v[busy]["faults_s"]["decompress"]) + float(v[busy]["faults_s"]["swap-in"])
                for v in both)
            dz = statistics.median(float(v[busy]["faults_s"]["demand-zero"]) for v in both)
            print(f"idle tax: median resident {idle} {ri:.0f}, {busy} {rb:.0f} pages; "
                  f"{busy} refaults {refault:.1f}/s against demand-zero {dz:.1f}/s")
            if not ri < rb:
                bad.append(f"idle {idle} kept more memory ({ri:.0f}) than busy {busy} ({rb:.0f})")
            if not refault < max(dz, 1.0):
                bad.append(f"busy {busy} refaults {refault:.1f}/s: it lost its working set")

    for b in bad:
        print("FAIL: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
