#!/usr/bin/env python3
"""make bench-zpool: the compressed pool on real guest memory.

1. Corpus: pages of a real Linux guest, dumped by the hypervisor in the
   `corpus` scenario (run here when its log is missing or older than
   build/hv.efi) and extracted by tests/rig/corpus.py.
2. Host: build/bench_zpool runs the pool path (same-filled test, LZ4
   capped at 2048 bytes, pool store; pool load, LZ4 decode, free) over the
   corpus, and the `lz4` command-line tool's own benchmark runs on the same
   file in the same command, cut into independent 4 KiB blocks (-B4096) at
   the same acceleration (-1): the pool path's throughput is given as a
   ratio of lz4's.
3. Bochs: instructions per decompression fault, from the `compress`
   scenario (RDTSC counts emulated instructions there).

    bench_zpool.py [--rerun]   (--rerun: run both scenarios even if logs are fresh)
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hvstat  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")


def scenario_log(name, rerun):
    log = os.path.join(BUILD, "scenarios", name, "serial.txt")
    efi = os.path.join(BUILD, "hv.efi")
    fresh = os.path.exists(log) and os.path.getmtime(log) > os.path.getmtime(efi)
    if rerun or not fresh:
        print(f"bench-zpool: running scenario {name} (Bochs, a few minutes)", flush=True)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tests/rig/scenario.py"), name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode:
            print(r.stdout[-3000:])
            print(f"bench-zpool: scenario {name} failed")
            return None
    else:
        print(f"bench-zpool: reusing {os.path.relpath(log, ROOT)} (newer than build/hv.efi)")
    return open(log, errors="replace").read()


def host_part(rerun):
    if scenario_log("corpus", rerun) is None:
        return False
    corpus = os.path.join(BUILD, "corpus", "linux-pages.bin")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests/rig/corpus.py")],
                       stdout=subprocess.PIPE, text=True)
    print(r.stdout.strip())
    if r.returncode:
        return False
    b = subprocess.run([os.path.join(BUILD, "bench_zpool"), corpus, "--rounds", "20"],
                       stdout=subprocess.PIPE, text=True)
    print(b.stdout.strip())
    m = re.search(r"compress ([\d.]+) MB/s .* decompress ([\d.]+) MB/s", b.stdout)
    if b.returncode or not m:
        return False
    pc, pd = float(m.group(1)), float(m.group(2))
    l = subprocess.run(["lz4", "-b1", "-B4096", "-i3", corpus], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    out = l.stdout.replace("\r", "\n")
    ml = re.findall(r"(\d+) ->\s+(\d+) \(([\d.]+)\),\s*([\d.]+) MB/s ,\s*([\d.]+) MB/s", out)
    if l.returncode or not ml:
        print(out[-2000:])
        print("bench-zpool: could not read lz4 -b's result")
        return False
    size, csize, ratio, lc, ld = ml[-1]
    lc, ld = float(lc), float(ld)
    print(f"baseline `lz4 -b1 -B4096` (lz4 {lz4_version()}), same file: ratio {ratio} over every "
          f"block, compress {lc:.1f} MB/s, decompress {ld:.1f} MB/s")
    print(f"pool path / lz4 -b: compress {pc / lc:.2f}x, decompress {pd / ld:.2f}x")
    print("  (the pool's compress figure counts every page: same-filled ones cost only the "
          "test, incompressible ones stop at 2048 bytes of output)")
    return True


def lz4_version():
    r = subprocess.run(["lz4", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    m = re.search(r"v(\d+\.\d+\.\d+)", r.stdout)
    return m.group(1) if m else "?"


def bochs_part(rerun):
    text = scenario_log("compress", rerun)
    if text is None:
        return False
    m = re.search(r"decompression fault cost: (\d+) faults; per fault (\d+) cycles: exit handling "
                  r"(\d+), LZ4 (\d+), checksum (\d+), pool/p2m/EPT (\d+); frame allocation with reclaim (\d+) "
                  r"more; compression (\d+) cycles per attempt", text)
    # The last machine @hvstat line with anything in the pool (docs/stats.md).
    p = [(r["pool_ratio"], r["pool_density"]) for r in
         hvstat.select(hvstat.parse(text), type="machine") if r["pool_ratio"] is not None]
    if not m:
        print("bench-zpool: the compress scenario printed no decompression cost line")
        return False
    n, per, ex, lz4, check, rest, alloc, cmp = map(int, m.groups())
    print("decompression fault inside Bochs (emulated instructions; VM exit/entry themselves "
          "are not charged by Bochs):")
    print(f"  {n} decompression faults; per fault {per} instructions = exit handling {ex} + "
          f"LZ4 decode {lz4} + checksum {check} + pool/p2m/EPT {rest}")
    print(f"  without the scenario's testing checksum (pool_check = no, the default): "
          f"{per - check} instructions per fault")
    print(f"  plus frame allocation {alloc} per fault on average (it runs reclaim, i.e. "
          f"compresses other pages, when the VM is at its limit); one compression attempt "
          f"costs {cmp}")
    if p:
        print(f"  pool at the end of the run: ratio {p[-1][0]}, density {p[-1][1]}")
    return True


def main():
    rerun = "--rerun" in sys.argv
    ok = host_part(rerun)
    ok = bochs_part(rerun) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
