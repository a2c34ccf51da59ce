#!/usr/bin/env python3
"""make bench-share: what content-based sharing costs and saves.

1. Host: build/bench_share on the real-guest corpus (scenario `corpus`,
   tests/rig/corpus.py): xxHash64 and memcmp per 4 KiB page in TSC cycles,
   and the scanner's cycles per hashed page with three VMs holding the
   corpus, plus the frames saved there, zero and non-zero apart.
   Reference, not run here: KSM checksums each page with xxhash over
   PAGE_SIZE (Linux 5.x calc_checksum); btrfs's hash-speedtest measured
   that xxhash at 860 cycles per 4096-byte block (commit "btrfs: add
   xxhash to fast checksum implementations").
2. Bochs: the `share` scenario (three identical Linux VMs, one salt):
   frames saved, zero and non-zero, and copy-on-write breaks, from its last
   statistics lines.

    bench_share.py [--rerun]   (--rerun: run the scenarios even if logs are fresh)
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_zpool import scenario_log, ROOT, BUILD  # noqa: E402
import hvstat  # noqa: E402


def host_part(rerun):
    if scenario_log("corpus", rerun) is None:
        return False
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests/rig/corpus.py")],
                       stdout=subprocess.PIPE, text=True)
    print(r.stdout.strip())
    if r.returncode:
        return False
    b = subprocess.run([os.path.join(BUILD, "bench_share"),
                        os.path.join(BUILD, "corpus", "linux-pages.bin")],
                       stdout=subprocess.PIPE, text=True)
    print(b.stdout.strip())
    m = re.search(r"xxHash64 (\d+) cycles/page", b.stdout)
    if b.returncode or not m:
        return False
    print(f"reference: KSM's per-page checksum (xxhash of 4 KiB) measured at 860 cycles in "
          f"btrfs's hash-speedtest; ours here: {m.group(1)} cycles ({int(m.group(1)) / 860:.2f}x)")
    return True


def bochs_part(rerun):
    text = scenario_log("share", rerun)
    if text is None:
        return False
    # The @hvstat lines (docs/stats.md): the period with the most frames
    # saved, and each VM's last line (its stop line).
    periods = [(m, vms) for _, m, vms in hvstat.periods(hvstat.parse(text))
               if m is not None and vms]
    if not periods:
        print("bench-share: the share scenario printed no @hvstat lines")
        return False
    m, vms = max(periods, key=lambda p: p[0]["shrdsvd"])
    frames, refs, saved = m["shared_frames"], m["shrd"], m["shrdsvd"]
    merges = sum(v["share"]["merged"] for v in vms.values())
    cross = sum(v["share"]["cross"] for v in vms.values())
    zero = sum(v["share"]["zero"] for v in vms.values())
    print("three identical Linux VMs in Bochs (scenario share), at the peak of sharing:")
    print(f"  non-zero: {refs} GFNs on {frames} shared frames, {saved} frames "
          f"saved ({saved * 4096 / (1 << 20):.1f} MiB); {merges} merges so far, {cross} across VMs")
    print(f"  zero/same-filled pages returned by the scanner: {zero} frames")
    last = {}
    for r in hvstat.select(hvstat.parse(text), type="vm"):
        s = r["share"]
        last[r["vm"]] = (r["shrd"], s["zero"], s["cow"], s["cow_last"])
    for name, (shared, z, cow, cowl) in sorted(last.items()):
        print(f"  vm {name}: at its stop shared {shared}, same-filled returned {z}, "
              f"copy-on-write {cow} copies + {cowl} last-reference")
    return True


def main():
    rerun = "--rerun" in sys.argv
    ok = host_part(rerun)
    ok = bochs_part(rerun) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
