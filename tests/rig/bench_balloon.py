#!/usr/bin/env python3
"""make bench-balloon: how fast the balloon inflates, and what a page costs.

Runs the balloon scenario in Bochs (or reuses its log when it is newer
than build/hv.efi and the initrd; --rerun forces a run, about 8 minutes),
where two guests inflate in the same run:
  vm a: 10240 pages with batches of 512 GFNs per hypercall (the driver's
        default), on a console command;
  vm b: 2048 pages with overcommithv_balloon.batch=1, one GFN per hypercall: the
        unbatched baseline.
Figures:
  - pages per second in the guest's time (Bochs' emulated time: 50 million
    instructions per emulated second, ips in the bochsrc);
  - instructions per page in all (guest page allocation, list building,
    hypercalls), measured by the guest driver with RDTSC (in Bochs RDTSC
    counts instructions);
  - instructions per hypercall round trip, measured by the guest around
    VMCALL, and inside the hypervisor's handler (vmx/exit.c times
    hc_dispatch), per call and per page. Bochs does not charge VM exits and
    entries as instructions, so the round trip is the guest's and the
    handler's own work.
The published virtio-balloon figures (about 445k pages/s without batching
and 3.7M pages/s with it, on real hardware) are quoted as a reference;
they are not measured here.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HV = os.path.join(ROOT, "build/hv.efi")
INITRD = os.path.join(ROOT, "build/guest/initrd.img")
IPS = 50_000_000  # tests/rig/scenario.py: cpu: ips=50000000
REF_UNBATCHED, REF_BATCHED = 445_000, 3_700_000


def scenario_log(name, rerun):
    log = os.path.join(ROOT, "build/scenarios", name, "serial.txt")
    newest = max(os.path.getmtime(HV), os.path.getmtime(INITRD))
    if rerun or not os.path.exists(log) or os.path.getmtime(log) < newest:
        print(f"bench-balloon: running the {name} scenario in Bochs ...", flush=True)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tests/rig/scenario.py"), name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode:
            print(r.stdout)
            return None
    return open(log, errors="replace").read()


def vm_figures(text, vm):
    g = re.search(rf"\[{vm}\] \[ *[0-9.]+\] overcommithv_balloon: inflated to (\d+) pages: \+(\d+) in (\d+) "
                  rf"us, (\d+) pages/s; (\d+) batch calls, (\d+) cycles per call round trip, "
                  rf"(\d+) cycles per page in all", text)
    h = re.search(rf"\[vmx\] vm {vm}: hypercall cost in the handler: inflate (\d+) cycles per "
                  rf"call, (\d+) per page; deflate (\d+) per call, (\d+) per page", text)
    if not g or not h:
        return None
    _, pages, us, rate, calls, rt, per_page = map(int, g.groups())
    hcall, hpage, dcall, dpage = map(int, h.groups())
    return dict(pages=pages, us=us, rate=rate, calls=calls, rt=rt, per_page=per_page,
                hcall=hcall, hpage=hpage, dcall=dcall, dpage=dpage)


def show(label, f):
    print(f"  {label}: {f['pages']} pages in {f['calls']} hypercalls, {f['us'] / 1000:.1f} ms "
          f"of emulated time: {f['rate']} pages/s")
    print(f"    per page in all {f['per_page']} instructions; per hypercall round trip "
          f"{f['rt']} (of which the handler {f['hcall']}, {f['hpage']} per page); deflate "
          f"handler {f['dcall']} per call, {f['dpage']} per page")


def main():
    text = scenario_log("balloon", "--rerun" in sys.argv)
    if text is None:
        sys.exit(1)
    a, b = vm_figures(text, "a"), vm_figures(text, "b")
    if not a or not b:
        print("bench-balloon: the balloon scenario's log lacks the inflation or hypercall cost "
              "lines")
        sys.exit(1)
    print(f"balloon inflation in Bochs (Linux 6.1 guests; {IPS // 1000000} million emulated "
          "instructions per emulated second; instruction counts by RDTSC):")
    show("batched, 512 GFNs per call (vm a)", a)
    show("unbatched, 1 GFN per call (vm b, the baseline)", b)
    hc_a = a['rt'] * a['calls'] / max(a['pages'], 1)
    hc_b = b['rt'] * b['calls'] / max(b['pages'], 1)
    print(f"  hypercall cost per page (round trips / pages): batched {hc_a:.0f}, unbatched "
          f"{hc_b:.0f} instructions: batching makes it {hc_b / max(hc_a, 1):.1f}x cheaper")
    print(f"  the guest's own work per page (allocation, zeroing on allocation, the list): "
          f"batched {a['per_page'] - hc_a:.0f}, unbatched {b['per_page'] - hc_b:.0f} "
          "instructions: most of a page's cost, so batching gains "
          f"{a['rate'] / max(b['rate'], 1):.1f}x the pages per second here")
    print("reference (published virtio-balloon figures on real hardware, quoted, not measured "
          f"here): {REF_UNBATCHED:,} pages/s unbatched, {REF_BATCHED:,} batched "
          f"({REF_BATCHED / REF_UNBATCHED:.1f}x)")
    print("  our per-page instruction counts at 3 billion instructions per second would give "
          f"{3_000_000_000 // max(a['per_page'], 1):,} pages/s batched and "
          f"{3_000_000_000 // max(b['per_page'], 1):,} unbatched (an estimate: real VM exits "
          "cost about a microsecond each, which Bochs does not charge)")


if __name__ == "__main__":
    main()
