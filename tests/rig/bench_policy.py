#!/usr/bin/env python3
"""make bench-policy: what background reclaim buys at fault time.

Runs the compress and swap scenarios (Linux guests in Bochs) twice each in
one go: as configured (background reclaim at its default reclaim_cpu) and
with reclaim_cpu = 0 (background reclaim off: every reclaim is direct,
inside a fault). From each run's summary line

  [mm] vm NAME: direct reclaim/faults and cost in cycles by kind:
       demand-zero D/N p50 X p99 Y; decompress ...

it reports, per fault kind, the share of faults that needed direct reclaim
and the p50/p99 cost (cycles; emulated instructions in Bochs, estimated
inside log2 buckets), and checks the goals: at least 95% of faults
without direct reclaim, and p99 demand-zero at most 3x the unpressured
cost (the p50 of demand-zero faults of the same run, which does not
reclaim when at most half the faults reclaim). The variants are copies of
the scenarios under build/bench-policy/ with one hv.cfg line added; the
scenario rig runs them (build/scenarios/NAME-bg and NAME-off). About 40
minutes of Bochs.
"""
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests/rig"))
import scenario  # noqa: E402

LINE = re.compile(r"\[mm\] vm (\S+): direct reclaim/faults and cost in cycles by kind: (.*)")
KIND = re.compile(r"([\w-]+) (\d+)/(\d+) p50 (\d+) p99 (\d+)")


def variant(name, suffix, extra):
    """A copy of scenario name with extra hv.cfg lines, under a root whose
    build/ is the real one."""
    root = os.path.join(ROOT, "build/bench-policy/root")
    sdir = os.path.join(root, "tests/scenarios", name + suffix)
    shutil.rmtree(sdir, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "tests/scenarios", name), sdir)
    with open(os.path.join(sdir, "hv.cfg")) as f:
        cfg = f.read()
    with open(os.path.join(sdir, "hv.cfg"), "w") as f:
        f.write(extra + cfg)
    link = os.path.join(root, "build")
    if not os.path.exists(link):
        os.symlink(os.path.join(ROOT, "build"), link)
    return root, name + suffix


def run(name, suffix, extra):
    root, vname = variant(name, suffix, extra)
    scenario.ROOT = root
    try:
        ok = scenario.run_scenario(vname)
    finally:
        scenario.ROOT = ROOT
    log = os.path.join(ROOT, "build/scenarios", vname, "serial.txt")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    kinds = {}
    for m in LINE.finditer(text):
        for k in KIND.finditer(m.group(2)):
            d, n, p50, p99 = (int(x) for x in k.groups()[1:])
            t = kinds.setdefault(k.group(1), [0, 0, 0, 0])
            t[0] += d
            t[1] += n
            t[2] = max(t[2], p50)
            t[3] = max(t[3], p99)
    return ok, kinds


def main():
    failed = False
    for name in ("compress", "swap"):
        res = {}
        for suffix, extra in (("-bg", ""), ("-off", "reclaim_cpu = 0\n")):
            ok, kinds = run(name, suffix, extra)
            res[suffix] = kinds
            if not ok or not kinds:
                print(f"bench-policy: {name}{suffix}: the scenario failed or printed no costs")
                failed = True
        print(f"{name}: kind            background on (direct/faults, p50, p99) | off")
        for kind in sorted(set(res["-bg"]) | set(res["-off"])):
            row = []
            for suffix in ("-bg", "-off"):
                d, n, p50, p99 = res[suffix].get(kind, [0, 0, 0, 0])
                share = 100.0 * (n - d) / n if n else 0.0
                row.append(f"{d:>6}/{n:<7} ({share:5.1f}% without) p50 {p50:>7} p99 {p99:>8}")
            print(f"  {kind:<14} {row[0]} | {row[1]}")
        bg = res["-bg"]
        n = sum(v[1] for v in bg.values())
        d = sum(v[0] for v in bg.values())
        share = 100.0 * (n - d) / n if n else 0.0
        dz = bg.get("demand-zero")
        ratio = dz[3] / dz[2] if dz and dz[2] else float("inf")
        print(f"  goals: {share:.1f}% of faults without direct reclaim (goal >= 95%), "
              f"p99/p50 demand-zero {ratio:.2f} (goal <= 3)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
