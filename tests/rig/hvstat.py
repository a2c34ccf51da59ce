#!/usr/bin/env python3
"""Reader for the hypervisor's statistics as data: the `@hvstat ` JSON lines
on its serial log (mm/stats_json.c; schema in docs/stats.md).

    import hvstat
    recs = hvstat.parse(text)                 # every record, in log order
    hvstat.last(recs, vm="a")                 # the last line of VM a
    hvstat.last(recs, type="machine")         # the last machine line
    for seq, machine, vms in hvstat.periods(recs): ...

Numbers with a decimal point are kept as decimal.Decimal, so that what a
tool writes out (hvtop -b) is the hypervisor's own text. Run as a script it
checks a log against the schema: hvstat.py FILE.
"""
import decimal
import json
import os
import re
import sys

PREFIX = "@hvstat "
SCHEMA_VERSION = 1
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "stats.md")

# The top-level fields of each line type, in the order the hypervisor
# writes them (docs/stats.md documents each; test_hvtop.py checks that the
# document, this list and a recorded log agree).
COMMON = ["v", "type", "t", "seq", "why"]
VM_FIELDS = COMMON + [
    "vm", "memsz", "grant", "consumed", "ovhd", "reserve", "limit", "tchd", "actv", "idle",
    "shrd", "shrdsvd", "zero", "mctlsz", "mctltgt", "mctlmax", "zip", "zipsaved", "zip_ratio",
    "swcur", "swtgt", "swr_s", "sww_s", "p2m", "faults_s", "faults", "reclaim_s", "direct", "share",
    "swap", "balloon", "waits", "alerts"]
MACHINE_FIELDS = COMMON + [
    "vms", "frames", "free", "min_free", "state", "overcommit", "memsz", "grant", "mctlsz",
    "shared_frames", "shrd", "shrdsvd", "pool_pages", "pool_frames", "pool_cap", "pool_ratio",
    "pool_density", "swap_slots", "swap_used", "swr_s", "sww_s", "scan_s", "scan_rate",
    "scan_rounds", "faults_s", "reclaim_s", "direct_s", "bg_s", "reclaim_runs", "waits", "alerts"]
P2M_STATES = ["unpopulated", "resident", "shared", "filled", "compressed", "swapped",
              "ballooned", "mmio"]
FAULT_KINDS = ["demand-zero", "refill", "decompress", "copy-on-write", "swap-in", "spurious",
               "outside-ram", "mmio"]
RECLAIM_KINDS = ["zero", "share", "compress", "swap", "balloon"]
PAGE = 4096

_ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def parse_line(line):
    """The record of one log line, or None when it is not an @hvstat line.
    A line that has the prefix but is not one JSON object raises ValueError."""
    line = _ESC.sub("", line).replace("\r", "").strip("\n")
    if not line.startswith(PREFIX):
        return None
    rec = json.loads(line[len(PREFIX):], parse_float=decimal.Decimal)
    if not isinstance(rec, dict):
        raise ValueError(f"@hvstat line is not an object: {line[:80]}")
    return rec


def parse(text):
    """Every @hvstat record of a log, in order."""
    out = []
    for line in text.splitlines():
        r = parse_line(line)
        if r is not None:
            out.append(r)
    return out


def read(path):
    with open(path, errors="replace") as f:
        return parse(f.read())


def select(recs, type=None, vm=None, why=None):
    return [r for r in recs if (type is None or r.get("type") == type) and
            (vm is None or r.get("vm") == vm) and (why is None or r.get("why") == why)]


def last(recs, type=None, vm=None, why=None):
    """The last record matching, or None. vm= implies type vm."""
    s = select(recs, "vm" if vm is not None and type is None else type, vm, why)
    return s[-1] if s else None


def periods(recs):
    """(seq, machine record or None, {vm name: record}) per emission, in order."""
    groups = {}
    order = []
    for r in recs:
        seq = r.get("seq")
        if seq not in groups:
            groups[seq] = (None, {})
            order.append(seq)
        m, vms = groups[seq]
        if r.get("type") == "machine":
            groups[seq] = (r, vms)
        else:
            vms[r.get("vm")] = r
    return [(s, groups[s][0], groups[s][1]) for s in order]


def problems(rec):
    """What is wrong with a record against the schema (empty list: nothing)."""
    out = []
    if rec.get("v") != SCHEMA_VERSION:
        out.append(f"schema version {rec.get('v')!r}, this reader knows {SCHEMA_VERSION}")
    want = {"vm": VM_FIELDS, "machine": MACHINE_FIELDS}.get(rec.get("type"))
    if want is None:
        return out + [f"unknown type {rec.get('type')!r}"]
    if list(rec) != want:
        missing = [k for k in want if k not in rec]
        extra = [k for k in rec if k not in want]
        out.append(f"{rec['type']} fields differ: missing {missing}, unknown {extra}"
                   if missing or extra else f"{rec['type']} fields out of order")
    if rec.get("why") not in ("period", "stop", "console"):
        out.append(f"why {rec.get('why')!r}")
    if rec["type"] == "vm" and "p2m" in rec and list(rec["p2m"]) != P2M_STATES:
        out.append(f"p2m states {list(rec['p2m'])}")
    if "faults_s" in rec and list(rec["faults_s"]) != FAULT_KINDS:
        out.append(f"fault kinds {list(rec['faults_s'])}")
    if "reclaim_s" in rec and list(rec["reclaim_s"]) != RECLAIM_KINDS:
        out.append(f"reclaim kinds {list(rec['reclaim_s'])}")
    return out


def doc_fields(path=DOC):
    """{"vm": [...], "machine": [...]}: the fields docs/stats.md's tables list
    (rows of the form | `name` | ... under the '## VM lines' and '## Machine
    lines' headings; the common fields are listed under both)."""
    out = {"vm": [], "machine": [], "common": []}
    cur = None
    for line in open(path):
        h = re.match(r"^## (Common fields|VM lines|Machine lines)", line)
        if h:
            cur = {"Common fields": "common", "VM lines": "vm", "Machine lines": "machine"}[h.group(1)]
            continue
        if line.startswith("## "):
            cur = None
        m = re.match(r"^\| ((?:`[a-z_0-9]+`(?:, )?)+) \|", line)
        if cur and m:
            out[cur] += re.findall(r"`([a-z_0-9]+)`", m.group(1))
    return {"vm": out["common"] + out["vm"], "machine": out["common"] + out["machine"]}


def main():
    if len(sys.argv) != 2:
        print("usage: hvstat.py SERIAL_LOG", file=sys.stderr)
        sys.exit(2)
    recs = read(sys.argv[1])
    bad = 0
    for r in recs:
        for p in problems(r):
            print(f"seq {r.get('seq')} {r.get('type')} {r.get('vm', '')}: {p}")
            bad += 1
    print(f"{len(recs)} @hvstat records, {len(periods(recs))} emissions, {bad} problems")
    sys.exit(1 if bad or not recs else 0)


if __name__ == "__main__":
    main()
