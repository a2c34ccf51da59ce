#!/usr/bin/env python3
"""make bench-swap: what swap I/O costs.

1. NVMe in QEMU (nvme-selftest): 64 single-page writes and 64 reads timed
   with RDTSC around the driver's submit-to-completion code only, against a
   4 KiB memcpy timed the same way in the same run. QEMU's TCG has no
   instruction counter here: RDTSC reads the host's time stamp counter, so
   the figure is host cycles and includes QEMU's NVMe model doing the
   transfer (a real controller works in parallel with the CPU).
2. ATA in Bochs (ata-selftest): the same measurement; there RDTSC counts
   emulated instructions (PIO: one instruction per rep-insw/outsw word).
3. Swap-in fault in Bochs (the swap scenario, a Linux guest): the
   hypervisor's own split of the fault: exit handling, device read,
   check/LZ4/p2m/EPT, and frame allocation (with the reclaim it ran).
   The scenario's log is reused when it is newer than build/hv.efi;
   --rerun runs it again (about 10 minutes).
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HV = os.path.join(ROOT, "build/hv.efi")


def scenario_log(name, reuse):
    log = os.path.join(ROOT, "build/scenarios", name, "serial.txt")
    fresh = os.path.exists(log) and os.path.getmtime(log) > os.path.getmtime(HV)
    if not (reuse and fresh):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tests/rig/scenario.py"), name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode:
            print(r.stdout)
            return None
    return open(log, errors="replace").read()


def io_part(name, dev, unit):
    text = scenario_log(name, False)
    m = text and re.search(rf"{dev}: 4 KiB I/O cost: write (\d+) cycles, read (\d+) cycles per "
                           rf"request .*baseline memcpy of 4 KiB (\d+) cycles", text)
    if not m:
        print(f"bench-swap: {name} gave no I/O cost line")
        return False
    w, r, c = map(int, m.groups())
    print(f"{dev} ({name}), one 4 KiB request inside the driver, in {unit}:")
    print(f"  write {w}, read {r}; baseline memcpy of 4 KiB {c} "
          f"(a write costs {w / max(c, 1):.1f}x, a read {r / max(c, 1):.1f}x the copy)")
    s = re.search(rf"swap: {dev} slots used .*writes (\d+) \((\d+) in one run.*reads (\d+);.*"
                  rf"cycles per write (\d+) per read (\d+)", text)
    if s:
        print(f"  swap path self-test: {s.group(1)} writes ({s.group(2)} batched in one run), "
              f"{s.group(3)} reads; per write {s.group(4)}, per read {s.group(5)}")
    return True


def swapin_part(rerun):
    text = scenario_log("swap", not rerun)
    m = text and re.search(r"swap-in fault cost: (\d+) faults; per fault (\d+) cycles: exit "
                           r"handling (\d+), device read (\d+), check/LZ4/p2m/EPT (\d+); frame "
                           r"allocation with reclaim (\d+) more", text)
    if not m:
        print("bench-swap: the swap scenario gave no swap-in cost line")
        return False
    n, per, ex, io, rest, alloc = map(int, m.groups())
    print("swap-in fault inside Bochs (ATA swap disk, Linux guest; emulated instructions, VM "
          "exit/entry not charged by Bochs):")
    print(f"  {n} faults; per fault {per} = exit handling {ex} + device read {io} + "
          f"check/LZ4/p2m/EPT {rest}; frame allocation with reclaim {alloc} more")
    return True


def main():
    ok = io_part("nvme-selftest", "nvme0", "host TSC cycles (QEMU TCG)")
    ok = io_part("ata-selftest", "ata2", "emulated instructions (Bochs)") and ok
    ok = swapin_part("--rerun" in sys.argv) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
