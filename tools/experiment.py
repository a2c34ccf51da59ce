#!/usr/bin/env python3
"""Declarative experiments: run them in Bochs, collect the statistics, draw
the plots, write a report.

  experiment.py NAME                 run experiments/NAME (every run in it)
  experiment.py NAME --reuse         analyse the serial logs of an earlier run
  experiment.py NAME --check         run, then load report.html in headless
                                     Chromium and fail unless every plot renders
  experiment.py --analyse LOG --out DIR   a report of one serial log (any
                                     scenario's), no run
  experiment.py --browser-check HTML only the browser check
  experiment.py --scenario demo      make run: the demo scenario, streamed (a
                                     panel line per period without a terminal),
                                     then its report

An experiment is a folder experiments/NAME/ with experiment.toml:

  title = "..."                  question = "what the runs put to the test"
  memory = 256                   Bochs machine memory in MiB (every run)
  timeout = 900                  seconds of wall time per run (Bochs on a loaded
                                 machine runs several times slower)
  swap_disk = 64                 optional: a blank ATA disk (hv.cfg: swap = ata2)
  plots = ["p2m", "free", "faults", "reclaim", "balloon", "throughput"]
  summary = ["rate", "majflt", ...]   columns of the summary table (SUMMARY below)
  [[run]]                        one per configuration; a sweep is several runs
  name = "r1"                    of one template with different vars
  label = "what this run is"
  hv_cfg = "hv.cfg.in"           a file of the folder; {var} is replaced by vars
  vars = { vm_mb = 96 }
  memory = 256                   optional: this run's Bochs memory
  expect = ["REGEX", ...]        optional markers beyond the defaults (every
                                 VM that runs a workload prints WORKLOAD PASS;
                                 the hypervisor powers off with status 0)
  check = ["VM.COLUMN > N"]      optional: figures of the summary (COLUMN of
                                 SUMMARY; > >= < <= ==) the run must show

Every run goes through the scenario rig (tests/rig/scenario.py) with its
default forbids (panics, FAIL lines). The statistics come from the
hypervisor's `@hvstat {json}` lines (docs/stats.md); a log without them
(a hypervisor from before the JSON lines) is read through the adapter for
the `[mm]` text lines, which derives fewer series and says so in the report.

Output: build/experiments/NAME/{data/*.csv, plots/*.png, report.html,
runs/RUN/serial.txt}.
"""
import argparse
import concurrent.futures
import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "rig"))
import scenario as rig  # noqa: E402

PREFIX = "@hvstat "
SCHEMA = 1
PAGE = 4096
P2M_SHOWN = ["resident", "shared", "filled", "compressed", "swapped", "ballooned"]
P2M_COLOURS = {"resident": "#4c72b0", "shared": "#55a868", "filled": "#c4ad66",
               "compressed": "#8172b2", "swapped": "#c44e52", "ballooned": "#64b5cd"}
STATE_COLOURS = {"high": "#e8f5e9", "clear": "#fffde7", "soft": "#fff3e0",
                 "hard": "#ffebee", "low": "#f3b9b9"}
RECLAIM = ["zero", "share", "compress", "swap", "balloon"]
ALL_PLOTS = ["p2m", "free", "faults", "reclaim", "balloon", "throughput"]
WORKLOAD_DONE = re.compile(
    r"^\[(?P<vm>[^\]]+)\] WORKLOAD DONE mode=(?P<mode>\S+) pages=(?P<pages>\d+) "
    r"secs=(?P<secs>[\d.]+) rate=(?P<rate>\d+) majflt=(?P<majflt>-?\d+) "
    r"pswpin=(?P<pswpin>-?\d+) pswpout=(?P<pswpout>-?\d+) errors=(?P<errors>\d+)", re.M)
WORKLOAD_TICK = re.compile(
    r"^\[(?P<vm>[^\]]+)\] WORKLOAD mode=\S+ phase=(?P<phase>\S+) t=(?P<t>[\d.]+) "
    r"pages=\d+ rate=(?P<rate>\d+)", re.M)


class ExperimentError(Exception):
    pass


# ---- the statistics: @hvstat JSON lines -----------------------------------

def parse_stats(text):
    """The @hvstat records of a serial log, in order, and a list of the
    lines that carried the prefix but could not be read (with why)."""
    records, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        i = line.find(PREFIX)
        if i < 0:
            continue
        body = line[i + len(PREFIX):].strip()
        try:
            rec = json.loads(body)
        except json.JSONDecodeError as e:
            bad.append(f"line {n}: not JSON ({e.msg} at column {e.colno})")
            continue
        why = check_record(rec)
        if why:
            bad.append(f"line {n}: {why}")
            continue
        records.append(rec)
    return records, bad


def check_record(rec):
    """None when rec is a record of the schema this tool reads, else why not."""
    if not isinstance(rec, dict):
        return "not an object"
    if rec.get("v") != SCHEMA:
        return f"schema version {rec.get('v')!r}, this tool reads {SCHEMA}"
    if rec.get("type") not in ("vm", "machine"):
        return f"unknown type {rec.get('type')!r}"
    for key in ("t", "seq"):
        if not isinstance(rec.get(key), (int, float)):
            return f"'{key}' missing or not a number"
    if rec["type"] == "vm" and not isinstance(rec.get("vm"), str):
        return "a vm record without 'vm'"
    return None


def series(records):
    """(machine records, {vm: records}) sorted by time; a console-requested
    line is kept out of the series (it would put an odd interval in)."""
    machine, vms = [], {}
    for r in records:
        if r.get("why") == "console":
            continue
        if r["type"] == "machine":
            machine.append(r)
        else:
            vms.setdefault(r["vm"], []).append(r)
    machine.sort(key=lambda r: (r["t"], r["seq"]))
    for v in vms.values():
        v.sort(key=lambda r: (r["t"], r["seq"]))
    return machine, vms


# ---- the adapter for the [mm] text lines -----------------------------------

SIZE = re.compile(r"^([\d.]+)([KMG]?)$")


def pages_of(size):
    m = SIZE.match(size)
    if not m:
        return 0
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]
    return int(float(m.group(1)) * mult / PAGE)


TEXT_VM = re.compile(r"\[mm\] vm (\S+): configured (\S+) resident (\S+) \(peak \S+\) "
                     r"zero-reclaimed (\d+) ws (\S+) faults: demand-zero (\d+) refill (\d+) "
                     r"decompress (\d+) copy-on-write (\d+) swap-in (\d+) spurious (\d+)")
TEXT_SHARE = re.compile(r"\[mm\] vm (\S+): share: shared now (\d+) .*?merged (\d+) .*?"
                        r"copy-on-write (\d+)")
TEXT_POOL = re.compile(r"\[mm\] vm (\S+): pool: compressed now (\d+) \((\S+) in (\S+), ratio "
                       r"(\S+)\), same-filled now (\d+).*?compressions (\d+)")
TEXT_SWAP = re.compile(r"\[mm\] vm (\S+): swap: swapped now (\d+), clean copies kept \d+; "
                       r"out (\d+) pages \+ (\d+) pool objects, in (\d+)")
TEXT_BALLOON = re.compile(r"\[mm\] vm (\S+): balloon: target (\d+) pages .*?ballooned now "
                          r"(\d+), inflated (\d+)")
TEXT_MACHINE = re.compile(r"\[mm\] machine: free (\S+), overcommit ([\d.]+)")
TEXT_WATERMARK = re.compile(r"\[mm\] after VM creation: .*watermark ([\d.]+[KMG]?)")
TEXT_FRAMES = re.compile(r"\[mm\] frames: (\d+) free")
FAULT_KINDS = ["demand-zero", "refill", "decompress", "copy-on-write", "swap-in", "spurious"]


def parse_text(text, period):
    """Records in the JSON schema's shape derived from the human-readable
    [mm] lines of one stats period each (the machine line ends a period).
    Time is seq * period (the text has no clock); rates are differences of
    the cumulative counters over the period. Fewer fields than the JSON:
    no active/touched estimates, no alerts, no machine state."""
    records, cur, prev = [], {}, {}
    min_free = 0
    frames = 0
    seq = 0
    for line in text.splitlines():
        m = TEXT_WATERMARK.search(line)
        if m:
            min_free = pages_of(m.group(1))
        m = TEXT_FRAMES.search(line)
        if m and not frames:
            frames = int(m.group(1))
        m = TEXT_VM.search(line)
        if m:
            g = m.groups()
            cur[g[0]] = {"memsz": pages_of(g[1]), "resident": pages_of(g[2]),
                         "zero_reclaimed": int(g[3]), "actv": pages_of(g[4]),
                         "faults": dict(zip(FAULT_KINDS, map(int, g[5:11])))}
            continue
        for rx, keys in ((TEXT_SHARE, ("shrd", "merged", "cow")),
                         (TEXT_POOL, ("zip", "zip_in", "zip_out", "zip_ratio", "filled",
                                      "compressions")),
                         (TEXT_SWAP, ("swcur", "swap_out", "swap_out_lz4", "swap_in")),
                         (TEXT_BALLOON, ("mctltgt", "mctlsz", "inflated"))):
            m = rx.search(line)
            if m and m.group(1) in cur:
                for k, v in zip(keys, m.groups()[1:]):
                    cur[m.group(1)][k] = v
        m = TEXT_MACHINE.search(line)
        if not m:
            continue
        t = seq * period
        for vm, c in cur.items():
            p = prev.get(vm, {})

            def num(d, k):
                v = d.get(k, 0)
                return int(v) if str(v).isdigit() else 0

            def rate(k):
                return max(0, num(c, k) - num(p, k)) / period if p else 0.0

            ratio = c.get("zip_ratio")
            rec = {"v": SCHEMA, "type": "vm", "t": t, "seq": seq, "why": "period", "src": "text",
                   "vm": vm, "memsz": c["memsz"], "consumed": c["resident"],
                   "actv": c["actv"], "shrd": num(c, "shrd"), "zero": num(c, "filled"),
                   "mctlsz": num(c, "mctlsz"), "mctltgt": num(c, "mctltgt"),
                   "zip": num(c, "zip"), "swcur": num(c, "swcur"),
                   "zip_ratio": float(ratio) if ratio and ratio != "n/a" else None,
                   "zipsaved": max(0, num(c, "zip") - pages_of(c.get("zip_out", "0"))),
                   "p2m": {"resident": c["resident"], "shared": num(c, "shrd"),
                           "filled": num(c, "filled"), "compressed": num(c, "zip"),
                           "swapped": num(c, "swcur"), "ballooned": num(c, "mctlsz")},
                   "faults_s": {k: (max(0, c["faults"][k] - p["faults"][k]) / period
                                    if p else 0.0) for k in FAULT_KINDS},
                   "reclaim_s": {"zero": rate("zero_reclaimed"), "share": rate("merged"),
                                 "compress": rate("compressions"), "swap": rate("swap_out"),
                                 "balloon": rate("inflated")},
                   "share": {"cow": num(c, "cow"), "merged": num(c, "merged")},
                   "swap": {"out": num(c, "swap_out"), "in": num(c, "swap_in")}}
            rec["swr_s"] = rate("swap_in")
            rec["sww_s"] = rate("swap_out")
            records.append(rec)
            prev[vm] = c
        records.append({"v": SCHEMA, "type": "machine", "t": t, "seq": seq, "why": "period",
                        "src": "text", "free": pages_of(m.group(1)),
                        "overcommit": float(m.group(2)), "min_free": min_free,
                        "frames": frames, "state": None, "alerts": []})
        cur = {vm: dict(c) for vm, c in cur.items()}
        seq += 1
    return records


def stats_interval(cfg_text):
    m = re.search(r"^\s*stats\s*=\s*(\d+)", cfg_text, re.M)
    return int(m.group(1)) if m else 0


def collect(text, cfg_text=""):
    """(records, source, problems) of one serial log: the JSON lines when
    there are any, else the text adapter's records."""
    records, bad = parse_stats(text)
    if records:
        return records, "json", bad
    period = stats_interval(cfg_text) or 1
    return parse_text(text, period), "text", bad


# ---- workloads -------------------------------------------------------------

def workloads(text):
    done = {m["vm"]: {k: (float(v) if k in ("secs",) else v if k in ("vm", "mode") else int(v))
                      for k, v in m.groupdict().items()} for m in WORKLOAD_DONE.finditer(text)}
    ticks = {}
    for m in WORKLOAD_TICK.finditer(text):
        ticks.setdefault(m["vm"], []).append((float(m["t"]), int(m["rate"]), m["phase"]))
    return done, ticks


# ---- figures per run ------------------------------------------------------

def dig(rec, path, default=None):
    for k in path.split("."):
        if not isinstance(rec, dict) or rec.get(k) is None:
            return default
        rec = rec[k]
    return rec


def integrate(recs, path):
    """Pages moved over the run: a per-second rate summed over its periods."""
    total, last_t = 0.0, None
    for r in recs:
        if last_t is not None:
            total += (dig(r, path, 0) or 0) * (r["t"] - last_t)
        last_t = r["t"]
    return total


def vm_figures(recs, wl):
    peak = lambda path: max((dig(r, path, 0) or 0 for r in recs), default=0)  # noqa: E731
    last = lambda path: next((dig(r, path) for r in reversed(recs)  # noqa: E731
                              if dig(r, path) is not None), None)
    f = {"memsz": last("memsz"), "consumed_peak": peak("consumed"),
         "shrd_peak": peak("shrd"), "shrdsvd_peak": peak("shrdsvd"),
         "cow": last("share.cow"), "zero_peak": peak("zero"),
         "zip_peak": peak("zip"), "zipsaved_peak": peak("zipsaved"),
         "zip_ratio": last("zip_ratio"), "swcur_peak": peak("swcur"),
         "swap_out": last("swap.out"), "swap_in": last("swap.in"),
         "mctlsz_peak": peak("mctlsz"), "mctltgt_peak": peak("mctltgt")}
    for k in RECLAIM:
        f["rec_" + k] = round(integrate(recs, "reclaim_s." + k))
    for k in ("rate", "secs", "majflt", "pswpin", "pswpout", "errors", "mode"):
        f[k] = wl.get(k) if wl else None
    return f


SUMMARY = {  # column -> (heading, what it is)
    "rate": ("guest pages/s", "the workload's own throughput over its run (WORKLOAD DONE)"),
    "secs": ("guest s", "the workload's duration in guest time"),
    "majflt": ("guest majflt", "major faults in the guest during the workload (/proc/vmstat)"),
    "pswpin": ("guest pswpin", "pages the guest's own swap read (none without a swap device)"),
    "memsz": ("memsz", "configured pages"),
    "consumed_peak": ("consumed peak", "peak machine frames charged to the VM"),
    "shrd_peak": ("shrd peak", "peak GFNs mapped to shared frames"),
    "shrdsvd_peak": ("shrdsvd peak", "peak frames sharing saved"),
    "cow": ("CoW breaks", "copy-on-write breaks of shared pages, cumulative"),
    "zero_peak": ("zero peak", "peak zero/same-filled pages (no frame)"),
    "zip_peak": ("zip peak", "peak pages in the compressed pool"),
    "zipsaved_peak": ("zipsaved peak", "peak frames the pool saved"),
    "zip_ratio": ("zip ratio", "the pool's compression ratio at the end"),
    "swcur_peak": ("swcur peak", "peak pages on the hypervisor's swap"),
    "swap_out": ("hv swap out", "pages the hypervisor wrote to swap, cumulative"),
    "swap_in": ("hv swap in", "pages the hypervisor read back (swap-in faults)"),
    "mctlsz_peak": ("balloon peak", "peak balloon size (pages)"),
    "mctltgt_peak": ("target peak", "peak balloon target (pages)"),
    "rec_zero": ("zero reclaimed", "pages reclaimed as zero (integrated reclaim rate)"),
    "rec_share": ("shared", "pages merged (integrated)"),
    "rec_compress": ("compressed", "pages compressed (integrated)"),
    "rec_swap": ("swapped", "pages swapped out (integrated)"),
    "rec_balloon": ("ballooned", "pages ballooned (integrated)"),
}
DEFAULT_SUMMARY = ["rate", "majflt", "consumed_peak", "shrdsvd_peak", "zip_peak", "swap_out",
                   "swap_in", "mctlsz_peak"]


# ---- CSV -------------------------------------------------------------------

def flatten(rec, prefix=""):
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[prefix + k] = " ".join(map(str, v))
        else:
            out[prefix + k] = v
    return out


def write_csv(path, rows):
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)


# ---- plots -----------------------------------------------------------------

def plt_module():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        raise ExperimentError("matplotlib is missing: install python3-matplotlib "
                              "(tools/deps.sh does)")


def plot_run(plt, kind, run, machine, vms, ticks, path):
    names = sorted(vms)
    if kind == "free":
        fig, ax = plt.subplots(figsize=(8, 3.2))
        t = [r["t"] for r in machine]
        # The band behind each period is the machine state it reported.
        for a, b in zip(machine, machine[1:] + machine[-1:]):
            st = a.get("state")
            if st:
                ax.axvspan(a["t"], b["t"] if b is not a else a["t"] + 1,
                           color=STATE_COLOURS.get(str(st).lower(), "#eeeeee"), lw=0)
        ax.plot(t, [r.get("free", 0) * PAGE / 2**20 for r in machine], color="black",
                label="free")
        ax.plot(t, [(r.get("min_free") or 0) * PAGE / 2**20 for r in machine], "--",
                color="#c44e52", label="min_free")
        seen = []
        for r in machine:
            st = str(r.get("state")).lower()
            if r.get("state") and st not in seen:
                seen.append(st)
                ax.fill_between([], [], color=STATE_COLOURS.get(st, "#eee"), label=f"state {st}")
        ax.set_ylabel("MiB")
        ax.set_title(f"{run}: machine free memory and state")
        ax.legend(fontsize=7, loc="upper right")
    else:
        n = max(1, len(names))
        fig, axes = plt.subplots(n, 1, figsize=(8, 2.6 * n), squeeze=False, sharex=True)
        for ax, vm in zip(axes[:, 0], names or [""]):
            recs = vms.get(vm, [])
            t = [r["t"] for r in recs]
            if kind == "p2m":
                ys = [[(dig(r, "p2m." + s, 0) or 0) * PAGE / 2**20 for r in recs]
                      for s in P2M_SHOWN]
                ax.stackplot(t, ys, labels=P2M_SHOWN,
                             colors=[P2M_COLOURS[s] for s in P2M_SHOWN])
                ax.plot(t, [(r.get("memsz") or 0) * PAGE / 2**20 for r in recs], "k--",
                        lw=0.8, label="memsz")
                ax.set_ylabel("MiB")
            elif kind in ("faults", "reclaim"):
                key = "faults_s" if kind == "faults" else "reclaim_s"
                kinds = RECLAIM if kind == "reclaim" else \
                    sorted({k for r in recs for k in (r.get(key) or {})})
                for k in kinds:
                    ax.plot(t, [dig(r, f"{key}.{k}", 0) or 0 for r in recs], label=k)
                ax.set_ylabel("pages/s")
            elif kind == "balloon":
                ax.plot(t, [r.get("mctltgt") or 0 for r in recs], "--", label="target (mctltgt)")
                ax.plot(t, [r.get("mctlsz") or 0 for r in recs], label="size (mctlsz)")
                ax.set_ylabel("pages")
            elif kind == "throughput":
                tk = ticks.get(vm, [])
                ax.plot([x[0] for x in tk], [x[1] for x in tk], label="pages/s")
                ax.set_ylabel("pages/s")
            ax.set_title(f"{run}: vm {vm}", fontsize=9)
            ax.legend(fontsize=7, loc="upper left", ncol=3)
        axes[-1, 0].set_xlabel("guest seconds (workload clock)" if kind == "throughput"
                               else "seconds since start")
        fig.suptitle({"p2m": "memory by p2m state", "faults": "fault rates by kind",
                      "reclaim": "reclaim rates by technique",
                      "balloon": "balloon target against balloon size",
                      "throughput": "workload throughput"}[kind], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---- the report ------------------------------------------------------------

CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), bad = [];
  for (var i = 0; i < imgs.length; i++)
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) bad.push(imgs[i].getAttribute('src'));
  var d = document.createElement('div');
  d.id = 'imgcheck';
  d.textContent = bad.length ? 'IMAGES-BROKEN ' + bad.join(' ')
                             : 'IMAGES-OK ' + imgs.length;
  document.body.appendChild(d);
});
</script>"""


def esc(x):
    return html.escape(str(x))


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def write_report(out, spec, results, columns):
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(spec['title'])}"
             "</title><style>body{font-family:sans-serif;max-width:70em;margin:1em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 6px;"
             "font-size:90%}td.n{text-align:right}pre{background:#f4f4f4;padding:6px;"
             "font-size:80%;overflow:auto}img{max-width:100%}</style></head><body>",
             f"<h1>{esc(spec['title'])}</h1>",
             f"<p>{esc(spec.get('question', ''))}</p>",
             f"<p>Written by tools/experiment.py at {esc(time.strftime('%Y-%m-%d %H:%M:%S'))}; "
             f"data in <code>data/</code>, serial logs in <code>runs/</code>.</p>",
             "<h2>Summary</h2><table><tr><th>run</th><th>vm</th>"]
    parts += [f"<th title='{esc(SUMMARY[c][1])}'>{esc(SUMMARY[c][0])}</th>" for c in columns]
    parts.append("</tr>")
    for res in results:
        for vm, f in sorted(res["figures"].items()):
            parts.append(f"<tr><td>{esc(res['name'])}</td><td>{esc(vm)}</td>" +
                         "".join(f"<td class=n>{esc(fmt(f.get(c)))}</td>" for c in columns) +
                         "</tr>")
    parts.append("</table><p>Columns: " + "; ".join(
        f"<b>{esc(SUMMARY[c][0])}</b>: {esc(SUMMARY[c][1])}" for c in columns) + ".</p>")
    for res in results:
        parts.append(f"<h2>Run {esc(res['name'])}: {esc(res.get('label', ''))}</h2>")
        parts.append(f"<p>Verdict: <b>{esc(res['verdict'])}</b>; statistics from "
                     f"{'the @hvstat JSON lines' if res['source'] == 'json' else 'the [mm] text lines (adapter: fewer series, no machine state)'}"
                     f" ({res['nrec']} records"
                     + (f", {len(res['bad'])} unreadable" if res["bad"] else "") + ").</p>")
        m = res.get("machine_summary")
        if m:
            parts.append(f"<p>Machine: {esc(m)}</p>")
        for p in res["plots"]:
            parts.append(f"<p><img src='{esc(p)}' alt='{esc(p)}'></p>")
        parts.append(f"<details><summary>configuration (hv.cfg)</summary><pre>"
                     f"{esc(res['cfg'])}</pre></details>")
    parts.append(CHECK_SCRIPT + "</body></html>")
    path = os.path.join(out, "report.html")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def browser_check(report, timeout=120):
    """Loads report in headless Chromium; (ok, message). Every <img> must
    have decoded (naturalWidth > 0): the page's own script writes the
    verdict into the DOM that --dump-dom prints."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        return False, "chromium is missing: install it (tools/deps.sh does)"
    url = "file://" + os.path.abspath(report)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--allow-file-access-from-files", "--virtual-time-budget=5000",
           "--user-data-dir=" + os.path.join(os.path.dirname(os.path.abspath(report)),
                                             ".chromium"),
           "--dump-dom", url]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"chromium did not finish within {timeout} s"
    m = re.search(r'<div id="imgcheck">([^<]*)</div>', r.stdout)
    if not m:
        return False, ("the page's check never ran (no imgcheck marker in the DOM); "
                       f"chromium exit {r.returncode}: {r.stderr.strip()[-300:]}")
    verdict = m.group(1)
    if verdict.startswith("IMAGES-OK "):
        n = int(verdict.split()[1])
        return (n > 0, f"{n} images rendered" if n else "the page has no images")
    return False, verdict


# ---- running ---------------------------------------------------------------

def find_experiment(name):
    for base in ("experiments", os.path.join("tests", "experiments")):
        d = os.path.join(ROOT, base, name)
        if os.path.exists(os.path.join(d, "experiment.toml")):
            return d
    raise ExperimentError(f"no experiment '{name}' (experiments/{name}/experiment.toml)")


def load_spec(folder):
    path = os.path.join(folder, "experiment.toml")
    try:
        with open(path, "rb") as f:
            spec = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"{path}: {e}")
    for key in ("title", "run"):
        if key not in spec:
            raise ExperimentError(f"{path}: '{key}' is missing")
    for p in spec.get("plots", []):
        if p not in ALL_PLOTS:
            raise ExperimentError(f"{path}: unknown plot '{p}' (known: {', '.join(ALL_PLOTS)})")
    for c in spec.get("summary", []):
        if c not in SUMMARY:
            raise ExperimentError(f"{path}: unknown summary column '{c}'")
    names = set()
    for r in spec["run"]:
        if "name" not in r or "hv_cfg" not in r:
            raise ExperimentError(f"{path}: every [[run]] needs name and hv_cfg")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", r["name"]) or r["name"] in names:
            raise ExperimentError(f"{path}: run name {r['name']!r} is not a unique plain name")
        names.add(r["name"])
    return spec


def render_cfg(folder, run):
    path = os.path.join(folder, run["hv_cfg"])
    with open(path) as f:
        text = f.read()
    try:
        return text.format_map(run.get("vars", {})) if run.get("vars") else text
    except (KeyError, ValueError) as e:
        raise ExperimentError(f"{path}: cannot fill in {e} for run {run['name']}")


def scenario_text(spec, run, cfg):
    vms = re.findall(r"^\s*\[vm\s+([^\]\s]+)\s*\]", cfg, re.M)
    lines = ["# written by tools/experiment.py", "emulator = bochs",
             f"timeout = {run.get('timeout', spec.get('timeout', 900))}",
             f"memory = {run.get('memory', spec.get('memory', 256))}",
             r"file = build/guest/vmlinuz \hv\vmlinuz",
             r"file = build/guest/initrd.img \hv\initrd.img",
             r"expect = \[hv\] power-off: status 0",
             # a configuration the hypervisor refused ends in the firmware's
             # shell, which would wait for the timeout
             r"forbid = returning to the firmware|UEFI Interactive Shell",
             # a guest whose own OOM killer ended its workload: the run
             # measured the guest's sizing, not the hypervisor
             r"forbid = Out of memory: Killed process"]
    if "swap_disk" in spec or "swap_disk" in run:
        lines.append(f"swap_disk = {run.get('swap_disk', spec.get('swap_disk'))}")
    for vm in vms:
        section = cfg.split(f"[vm {vm}]", 1)[1].split("[vm ", 1)[0]
        if "workload=" in section:
            lines.append(rf"expect = \[{re.escape(vm)}\] WORKLOAD PASS")
    for rx in spec.get("expect", []) + run.get("expect", []):
        lines.append(f"expect = {rx}")
    return "\n".join(lines) + "\n"


class Panel:
    """A line per stats period from the machine's JSON line: what the demo
    prints when no terminal is attached (tools/hvtop is the live panel)."""

    def __init__(self, stream=sys.stdout, echo=False):
        self.buf = ""
        self.vms = {}
        self.stream = stream
        self.echo = echo  # every other line of the log too (a terminal is watching)

    def __call__(self, chunk):
        self.buf += chunk
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            recs, _ = parse_stats(line)
            for r in recs:
                if r["type"] == "vm":
                    self.vms[r["vm"]] = r
                else:
                    self.stream.write(self.line(r) + "\n")
                    self.stream.flush()
            if not recs and PREFIX not in line and (self.echo or re.search(
                    r"WORKLOAD (DONE|PASS|FAIL)|\*\*\* PANIC|power-off", line)):
                self.stream.write(line + "\n")
                self.stream.flush()

    def line(self, m):
        mib = lambda p: f"{(p or 0) * PAGE / 2**20:.0f}M"  # noqa: E731
        vms = " | ".join(
            f"{n}: res {mib(dig(v, 'p2m.resident'))} shr {mib(v.get('shrd'))} "
            f"zero {mib(v.get('zero'))} zip {mib(v.get('zip'))} swap {mib(v.get('swcur'))} "
            f"bal {mib(v.get('mctlsz'))}" for n, v in sorted(self.vms.items()))
        alerts = ",".join(m.get("alerts") or []) or "-"
        return (f"[panel] t={m['t']:7.1f}s state {m.get('state') or '?'} free "
                f"{mib(m.get('free'))} overcommit {m.get('overcommit', 0):.2f} alerts {alerts} "
                f"|| {vms}")


def analyse_run(name, label, serial_path, cfg, out, plots, plt, verdict):
    with open(serial_path, "rb") as f:
        text = rig.clean(f.read().decode("utf-8", "replace"))
    records, source, bad = collect(text, cfg)
    machine, vms = series(records)
    done, ticks = workloads(text)
    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    write_csv(os.path.join(data, f"{name}-vm.csv"),
              [flatten(r) for v in vms.values() for r in v])
    write_csv(os.path.join(data, f"{name}-machine.csv"), [flatten(r) for r in machine])
    write_csv(os.path.join(data, f"{name}-workload.csv"),
              [{"vm": vm, "t": t, "rate": r, "phase": ph}
               for vm, tk in ticks.items() for t, r, ph in tk])
    figures = {vm: vm_figures(recs, done.get(vm)) for vm, recs in vms.items()}
    for vm, wl in done.items():  # a VM whose workload ran but has no stats line
        figures.setdefault(vm, vm_figures([], wl))
    shown = []
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    if records:
        for kind in plots:
            if kind == "throughput" and not ticks:
                continue
            rel = os.path.join("plots", f"{name}-{kind}.png")
            plot_run(plt, kind, name, machine, vms, ticks, os.path.join(out, rel))
            shown.append(rel)
    ms = None
    if machine:
        ocs = [r.get("overcommit") or 0 for r in machine]
        states = []
        for r in machine:
            if r.get("state") and r["state"] not in states:
                states.append(r["state"])
        ms = (f"overcommit {max(ocs):.2f}; free at least "
              f"{min(r.get('free', 0) for r in machine) * PAGE / 2**20:.1f} MiB; "
              f"states seen: {', '.join(map(str, states)) or 'not reported'}; alerts raised: "
              f"{', '.join(sorted({a for r in machine for a in (r.get('alerts') or [])})) or 'none'}")
    return {"name": name, "label": label, "verdict": verdict, "source": source,
            "nrec": len(records), "bad": bad, "figures": figures, "plots": shown,
            "cfg": cfg, "machine_summary": ms}


CHECK = re.compile(r"^\s*([^.\s]+)\.(\w+)\s*(>=|<=|>|<|==)\s*(-?[\d.]+)\s*$")


def run_checks(run, figures):
    """A run's 'check' lines ("VM.COLUMN OP NUMBER", COLUMN of SUMMARY) over
    its figures: the list of those that do not hold, with the value seen."""
    failed = []
    for c in run.get("check", []):
        m = CHECK.match(c)
        if not m:
            failed.append(f"{c}: not 'VM.COLUMN OP NUMBER'")
            continue
        vm, col, op, num = m.groups()
        v = figures.get(vm, {}).get(col)
        if v is None:
            failed.append(f"{c}: no value for {vm}.{col}")
            continue
        ok = {">=": v >= float(num), "<=": v <= float(num), ">": v > float(num),
              "<": v < float(num), "==": v == float(num)}[op]
        if not ok:
            failed.append(f"{c}: {vm}.{col} is {v}")
    return failed


def judge(serial_path, scenario_path):
    """The rig's verdict on a finished serial log, without booting: every
    expect seen, no forbidden marker (what --reuse reports for a log whose
    emulator another process ran)."""
    conf = rig.parse_scenario(scenario_path)
    with open(serial_path, "rb") as f:
        text = rig.clean(f.read().decode("utf-8", "replace"))
    why = rig.forbidden(conf, text)
    if why:
        return "FAIL: " + why
    missing = [rx for rx in conf["expect"] if not re.search(rx, text)]
    if missing:
        return "FAIL: missing " + "; ".join(f"/{m}/" for m in missing)
    return "PASS"


def run_experiment(name, reuse=False, follow=None, only=None, hv=None, jobs=1):
    folder = find_experiment(name)
    spec = load_spec(folder)
    if only:
        unknown = set(only) - {r["name"] for r in spec["run"]}
        if unknown:
            raise ExperimentError(f"experiment {name} has no run {', '.join(sorted(unknown))}")
        spec["run"] = [r for r in spec["run"] if r["name"] in only]
    out = os.path.join(ROOT, "build", "experiments", name)
    os.makedirs(out, exist_ok=True)
    if hv:
        rig.HV_EFI = os.path.abspath(hv)
    plt = plt_module()
    results, failed = [], []
    summary_rows = []

    def boot(run):
        rname = run["name"]
        cfg = render_cfg(folder, run)
        rdir = os.path.join(out, "runs", rname)
        sdir = os.path.join(out, "specs", rname)
        os.makedirs(sdir, exist_ok=True)
        with open(os.path.join(sdir, "hv.cfg"), "w") as f:
            f.write(cfg)
        with open(os.path.join(sdir, "scenario"), "w") as f:
            f.write(scenario_text(spec, run, cfg))
        print(f"experiment {name}: run {rname} ({run.get('label', '')})", flush=True)
        try:
            ok = rig.run_scenario(f"{name}/{rname}", follow, sdir=sdir, out=rdir)
        except rig.ScenarioError as e:
            print(f"FAIL experiment {name} run {rname}: {e}")
            ok = False
        os.makedirs(rdir, exist_ok=True)
        with open(os.path.join(rdir, "verdict"), "w") as f:
            f.write(("PASS" if ok else "FAIL") + "\n")

    todo = [r for r in spec["run"] if not reuse or not os.path.exists(
        os.path.join(out, "runs", r["name"], "serial.txt"))]
    if jobs > 1 and len(todo) > 1:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(boot, todo))
    else:
        for r in todo:
            boot(r)
    for run in spec["run"]:
        rname = run["name"]
        cfg = render_cfg(folder, run)
        rdir = os.path.join(out, "runs", rname)
        serial = os.path.join(rdir, "serial.txt")
        verdict = "PASS"
        spath = os.path.join(out, "specs", rname, "scenario")
        used = os.path.join(out, "specs", rname, "hv.cfg")
        if run not in todo and os.path.exists(used):
            with open(used) as f:  # the configuration that log ran, not today's template
                cfg = f.read()
        if run in todo:
            with open(os.path.join(rdir, "verdict")) as f:
                verdict = f.read().strip()
        elif os.path.exists(serial) and os.path.exists(spath):
            verdict = judge(serial, spath) + " (log of an earlier run, judged again)"
        if not os.path.exists(serial):
            failed.append(rname)
            continue
        if not verdict.startswith("PASS"):
            failed.append(rname)
        res = analyse_run(rname, run.get("label", ""), serial, cfg, out,
                          spec.get("plots", ALL_PLOTS), plt, verdict)
        bad = run_checks(run, res["figures"])
        if bad:
            res["verdict"] += "; checks failed: " + "; ".join(bad)
            print(f"FAIL experiment {name} run {rname}: " + "; ".join(bad))
            if rname not in failed:
                failed.append(rname)
        elif run.get("check"):
            res["verdict"] += f"; {len(run['check'])} checks hold"
        results.append(res)
        for vm, fig in sorted(res["figures"].items()):
            summary_rows.append(dict({"run": rname, "vm": vm}, **fig))
    write_csv(os.path.join(out, "data", "summary.csv"), summary_rows)
    report = write_report(out, spec, results, spec.get("summary", DEFAULT_SUMMARY))
    return report, results, failed, spec


TECHNIQUES = [("zero pages", "zero_peak"), ("sharing", "shrdsvd_peak"),
              ("compression", "zip_peak"), ("swap", "swcur_peak"), ("balloon", "mctlsz_peak")]


def run_demo(name, out=None, hv=None, reuse=False):
    """A scenario of tests/scenarios (make run: demo) through the rig, its
    log streamed to a terminal, or a panel line per stats period when none
    is attached; then its report. True when the scenario passed and every
    technique of TECHNIQUES moved pages in some VM."""
    if hv:
        rig.HV_EFI = os.path.abspath(hv)
    plt = plt_module()
    sdir = os.path.join(ROOT, "tests", "scenarios", name)
    out = out or os.path.join(ROOT, "build", "experiments", name)
    rdir = os.path.join(out, "runs", name)
    os.makedirs(out, exist_ok=True)
    # A terminal sees the whole log with a panel line in place of each
    # period's JSON lines; a pipe or a file gets the panel lines alone.
    follow = Panel(echo=sys.stdout.isatty())
    serial = os.path.join(rdir, "serial.txt")
    if reuse and os.path.exists(serial):
        verdict = judge(serial, os.path.join(sdir, "scenario"))
        print(f"{verdict} scenario {name} (log of an earlier run, judged again): {serial}")
        ok = verdict == "PASS"
    else:
        try:
            ok = rig.run_scenario(name, follow, sdir=sdir, out=rdir)
        except rig.ScenarioError as e:
            print(f"FAIL scenario {name}: {e}")
            return False
    with open(os.path.join(sdir, "hv.cfg")) as f:
        cfg = f.read()
    res = analyse_run(name, f"tests/scenarios/{name}", os.path.join(rdir, "serial.txt"), cfg,
                      out, ALL_PLOTS, plt, "PASS" if ok else "FAIL")
    spec = {"title": f"make run: the {name} scenario",
            "question": "Two guests overcommitted at least 2:1; every technique should move "
                        "pages: zero pages, sharing across VMs with one salt, compression, "
                        "swap and the balloon."}
    columns = ["rate", "consumed_peak", "zero_peak", "shrdsvd_peak", "zip_peak", "zip_ratio",
               "swcur_peak", "swap_in", "mctlsz_peak"]
    report = write_report(out, spec, [res], columns)
    print_table([res], columns)
    missing = []
    for label, key in TECHNIQUES:
        best = max((f.get(key) or 0 for f in res["figures"].values()), default=0)
        print(f"  {label:12} peak {best} pages{'' if best else '  (NOT SEEN)'}")
        if not best:
            missing.append(label)
    if res.get("machine_summary"):
        print(f"  machine: {res['machine_summary']}")
    print(f"report: {report}")
    if missing:
        print(f"FAIL demo: no pages moved by {', '.join(missing)}")
    return ok and not missing


def print_table(results, columns):
    head = ["run", "vm"] + [SUMMARY[c][0] for c in columns]
    rows = [[r["name"], vm] + [fmt(f.get(c)) for c in columns]
            for r in results for vm, f in sorted(r["figures"].items())]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |")


def debian_python():
    """Debian's matplotlib (python3-matplotlib) lives in Debian's python3: a
    python3 of its own first on PATH (pyenv, a venv) does not see it. Run
    under /usr/bin/python3 then."""
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    deb = "/usr/bin/python3"
    if os.path.exists(deb) and os.path.realpath(sys.executable) != os.path.realpath(deb) \
            and not os.environ.get("EXPERIMENT_REEXEC"):
        os.environ["EXPERIMENT_REEXEC"] = "1"
        os.execv(deb, [deb] + sys.argv)


def main():
    debian_python()
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?")
    ap.add_argument("--reuse", action="store_true", help="analyse earlier runs' logs")
    ap.add_argument("--check", action="store_true",
                    help="fail unless every run passed and the report renders in Chromium")
    ap.add_argument("--run", action="append", help="only this run of the experiment (may repeat): run and report it alone")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs booted at a time (each is a Bochs process)")
    ap.add_argument("--hv", help="the hv.efi to boot (default build/hv.efi)")
    ap.add_argument("--panel", action="store_true",
                    help="print a panel line per stats period while running")
    ap.add_argument("--follow", action="store_true", help="echo the serial log live")
    ap.add_argument("--analyse", metavar="LOG", help="a report of one serial log")
    ap.add_argument("--cfg", help="with --analyse: the hv.cfg of that log")
    ap.add_argument("--out", help="with --analyse: the output folder")
    ap.add_argument("--browser-check", metavar="HTML")
    ap.add_argument("--scenario", metavar="NAME",
                    help="run tests/scenarios/NAME (make run: demo) and write its report")
    a = ap.parse_args()
    try:
        if a.browser_check:
            ok, msg = browser_check(a.browser_check)
            print(("PASS" if ok else "FAIL") + f" browser check of {a.browser_check}: {msg}")
            sys.exit(0 if ok else 1)
        if a.scenario:
            sys.exit(0 if run_demo(a.scenario, a.out, a.hv, a.reuse) else 1)
        if a.analyse:
            out = a.out or os.path.join(ROOT, "build", "experiments", "analyse")
            os.makedirs(out, exist_ok=True)
            cfg = open(a.cfg).read() if a.cfg else ""
            res = analyse_run("log", os.path.basename(a.analyse), a.analyse, cfg, out,
                              ALL_PLOTS, plt_module(), "not judged")
            spec = {"title": f"statistics of {a.analyse}"}
            report = write_report(out, spec, [res], DEFAULT_SUMMARY)
            print_table([res], DEFAULT_SUMMARY)
            print(f"report: {report}")
            return
        if not a.name:
            ap.error("name an experiment (a folder of experiments/)")
        follow = Panel() if a.panel else (True if a.follow else None)
        report, results, failed, spec = run_experiment(a.name, a.reuse, follow, a.run, a.hv,
                                                       a.jobs)
        print_table(results, spec.get("summary", DEFAULT_SUMMARY))
        print(f"report: {report}")
        ok = not failed
        if failed:
            print(f"FAIL experiment {a.name}: runs that did not pass: {', '.join(failed)}")
        if a.check:
            bok, msg = browser_check(report)
            print(("PASS" if bok else "FAIL") + f" browser check: {msg}")
            nplots = sum(len(r["plots"]) for r in results)
            if nplots < len(spec.get("plots", ALL_PLOTS)):
                print(f"FAIL experiment {a.name}: only {nplots} plots drawn")
                ok = False
            ok = ok and bok
        sys.exit(0 if ok else 1)
    except ExperimentError as e:
        print(f"FAIL experiment: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
