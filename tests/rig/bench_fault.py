#!/usr/bin/env python3
"""make bench-fault: the cost of a demand-zero fault.

1. Inside Bochs (RDTSC there counts emulated instructions): runs the
   demand-paging scenario and reads the hypervisor's own accounting of its
   EPT-violation exits, split into exit handling, p2m/EPT bookkeeping and
   zeroing. Baseline: the zeroing alone (what any design must pay), so the
   ratio says what demand paging costs on top of it.
2. On the host: the simulator's fault throughput (real mm/ code, modelled
   EPT), against a baseline of zeroing 4 KiB pages with memset on the same
   host in the same run.
"""
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bochs_part():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests/rig/scenario.py"),
                        "demand-paging"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    log = os.path.join(ROOT, "build/scenarios/demand-paging/serial.txt")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    m = re.search(r"fault cost: (\d+) EPT-violation exits, (\d+) demand-zero; per fault (\d+) "
                  r"cycles: exit handling (\d+), p2m/EPT (\d+), zeroing (\d+)", text)
    if r.returncode or not m:
        print(r.stdout)
        print("bench-fault: the demand-paging scenario did not produce a fault-cost line")
        return False
    exits, dz, per, ex, p2m, zero = map(int, m.groups())
    print("demand-zero fault inside Bochs (emulated instructions; VM exit/entry "
          "themselves are not charged by Bochs):")
    print(f"  EPT-violation exits {exits}, demand-zero faults {dz}")
    print(f"  per fault: {per} instructions = exit handling {ex} + p2m/EPT {p2m} + zeroing {zero}")
    if zero:
        print(f"  baseline 'zeroing only' = {zero}: a fault costs {per / zero:.2f}x the zeroing")
    return True


def host_part():
    sim = os.path.join(ROOT, "build/sim")
    t = time.time()
    r = subprocess.run([sim, "--accesses", "3000000", "--quiet"], stdout=subprocess.PIPE,
                       text=True)
    m = re.search(r"(\d+) faults \((\d+) faults/s", r.stdout)
    if r.returncode or not m:
        print(r.stdout)
        return False
    faults, rate = int(m.group(1)), int(m.group(2))
    # Baseline in the same run: memset of 4 KiB pages in C (ctypes would
    # measure Python); the simulator binary times it with --bench-zero.
    b = subprocess.run([sim, "--bench-zero"], stdout=subprocess.PIPE, text=True)
    mb = re.search(r"(\d+) pages/s", b.stdout)
    print("simulator on the host (real mm/ code, modelled EPT and TLB, checks on):")
    print(f"  {faults} faults, {rate} faults/s ({time.time() - t:.1f} s wall)")
    if mb:
        zr = int(mb.group(1))
        print(f"  baseline memset(4 KiB): {zr} pages/s; a simulated fault costs "
              f"{zr / rate:.1f}x a page zeroing")
    return True


def main():
    ok = host_part()
    if "--host-only" not in sys.argv:
        ok = bochs_part() and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
