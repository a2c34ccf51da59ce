#!/usr/bin/env python3
"""Decode the per-page transition traces on a hypervisor serial log.

    tools/hvtrace.py LOG                  one summary line per dump
    tools/hvtrace.py LOG --csv OUT.csv    every entry: dump, vm, seq, t_s,
                                          gfn, from, to, cause
    tools/hvtrace.py LOG --gfn 0x1234     one GFN's history in every dump

The format is docs/trace.md. Every line's CRC-32, the line numbers and
the dump's CRC are checked; a damaged log is reported with its line
number (exit 2). The replay against mm/ is tests/sim/replay.c
(build/replay LOG); this decoder is for reading and plotting.
"""
import argparse
import base64
import binascii
import csv
import struct
import sys
import zlib

STATES = ["unpopulated", "resident", "shared", "filled", "compressed", "swapped",
          "ballooned", "mmio"]
CAUSES = ["other", "fault", "reclaim", "share", "swap", "balloon", "load"]
ENTRY = struct.Struct("<IIBBHI")  # t, gfn, edge, cause, owner, seq


class TraceError(Exception):
    pass


class Dump:
    def __init__(self, line_no, fields):
        self.line = line_no
        self.fields = fields
        self.vm = fields["vm"]
        self.ebytes = bytearray()
        self.mbytes = bytearray()
        self.lines = {"E": 0, "M": 0}
        self.crc = 0

    def entries(self):
        """(seq, t_seconds, gfn, from, to, cause) per entry, time unwrapped."""
        hz = int(self.fields["tick_hz"]) or 1
        hi, prev, t0 = 0, None, None
        for off in range(0, len(self.ebytes), ENTRY.size):
            t, gfn, edge, cause, owner, seq = ENTRY.unpack_from(self.ebytes, off)
            if prev is not None and t < prev:
                hi += 1 << 32
            prev = t
            abs_t = hi + t
            t0 = abs_t if t0 is None else t0
            yield (seq, (abs_t - t0) / hz, gfn, STATES[edge >> 4] if edge >> 4 < 8 else "?",
                   STATES[edge & 15] if edge & 15 < 8 else "?",
                   CAUSES[cause] if cause < len(CAUSES) else "?")

    def final_map(self):
        """The hypervisor's final state of every GFN, as a list of state names."""
        out, v, shift = [], 0, 0
        for b in self.mbytes:
            v |= (b & 0x7F) << shift
            shift += 7
            if b & 0x80:
                continue
            out.extend([STATES[v & 7]] * (v >> 3))
            v, shift = 0, 0
        if shift or len(out) != int(self.fields["ngfn"]):
            raise TraceError(f"vm {self.vm}: the final map does not cover its "
                             f"{self.fields['ngfn']} GFNs")
        return out


def parse(lines):
    """Yields every complete dump in an iterable of log lines."""
    cur = None
    n = 0
    for n, raw in enumerate(lines, 1):
        i = raw.find("@hvtrace ")
        if i < 0:
            continue
        words = raw[i + 9:].rstrip("\r\n").split(" ")
        kind = words[0]
        if kind == "H":
            if cur:
                raise TraceError(f"line {n}: a new dump begins before the dump of line "
                                 f"{cur.line} ended")
            fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            if fields.get("v") != "1":
                raise TraceError(f"line {n}: trace format version {fields.get('v')}, "
                                 "this decoder reads 1")
            cur = Dump(n, fields)
        elif cur is None:
            raise TraceError(f"line {n}: trace line outside a dump")
        elif kind in ("E", "M"):
            if len(words) != 5 or words[1] != cur.vm:
                raise TraceError(f"line {n}: malformed trace data line")
            if int(words[2]) != cur.lines[kind]:
                raise TraceError(f"line {n}: vm {cur.vm}: {kind} line {words[2]} where "
                                 f"{cur.lines[kind]} was due (a line is missing)")
            try:
                data = base64.b64decode(words[3], validate=True)
            except (binascii.Error, ValueError):
                raise TraceError(f"line {n}: vm {cur.vm}: {kind} line {words[2]} is not "
                                 "valid base64")
            if zlib.crc32(data) != int(words[4], 16):
                raise TraceError(f"line {n}: vm {cur.vm}: {kind} line {words[2]} checksum "
                                 "mismatch: the log is damaged")
            (cur.ebytes if kind == "E" else cur.mbytes).extend(data)
            cur.crc = zlib.crc32(data, cur.crc)
            cur.lines[kind] += 1
        elif kind == "Z":
            f = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            if int(f["elines"]) != cur.lines["E"] or int(f["mlines"]) != cur.lines["M"] \
                    or int(f["crc"], 16) != cur.crc:
                raise TraceError(f"line {n}: vm {cur.vm}: the dump's totals or checksum do "
                                 "not match its lines")
            if len(cur.ebytes) != int(cur.fields["entries"]) * ENTRY.size:
                raise TraceError(f"line {n}: vm {cur.vm}: header says "
                                 f"{cur.fields['entries']} entries")
            yield cur
            cur = None
        else:
            raise TraceError(f"line {n}: unknown trace line")
    if cur:
        raise TraceError(f"line {n}: the log ends before the dump of line {cur.line} does")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--csv", help="write every entry to this CSV file")
    ap.add_argument("--gfn", help="print one GFN's history (decimal or 0x...)")
    a = ap.parse_args()
    gfn = int(a.gfn, 0) if a.gfn else None
    try:
        with open(a.log, encoding="utf-8", errors="replace") as f:
            dumps = list(parse(f))
        if not dumps:
            raise TraceError("no trace dump in this log")
        out = None
        if a.csv:
            out = csv.writer(open(a.csv, "w", newline=""))
            out.writerow(["dump", "vm", "seq", "t_s", "gfn", "from", "to", "cause"])
        for i, d in enumerate(dumps):
            final = d.final_map()
            causes = {}
            for seq, t, g, fr, to, cause in d.entries():
                causes[cause] = causes.get(cause, 0) + 1
                if out:
                    out.writerow([i, d.vm, seq, f"{t:.6f}", g, fr, to, cause])
                if g == gfn:
                    print(f"dump {i} vm {d.vm}: seq {seq} t {t:.6f} s: gfn {g:#x} {fr} -> "
                          f"{to} ({cause})")
            if gfn is not None and gfn < len(final):
                print(f"dump {i} vm {d.vm}: gfn {gfn:#x} ends {final[gfn]}")
            f = d.fields
            print(f"dump {i}: vm {d.vm} ({f['why']}), mask {f['mask']}: {f['entries']} "
                  f"entries, recorded {f['recorded']}, overwritten {f['dropped']}; causes "
                  + ", ".join(f"{k} {v}" for k, v in sorted(causes.items()))
                  + f"; final map of {len(final)} GFNs")
    except TraceError as e:
        print(f"hvtrace: {a.log}: {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
