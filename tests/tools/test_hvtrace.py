#!/usr/bin/env python3
"""tools/hvtrace.py against traces the real mm/ made on the simulator
(build/replay --selftest writes them): the decoded entries and final map
agree with the dump's header and with the replay's own decoding, and
damaged logs are refused with their line number."""
import os
import re
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import hvtrace  # noqa: E402

OUT = os.path.join(ROOT, "build", "hvtrace-test")


def setUpModule():
    r = subprocess.run([os.path.join(ROOT, "build", "replay"), "--selftest", OUT],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise RuntimeError("build/replay --selftest failed:\n" + r.stdout)


def dumps(name):
    with open(os.path.join(OUT, name + ".log")) as f:
        return list(hvtrace.parse(f))


class Decode(unittest.TestCase):
    def test_clean_matches_header_and_replay(self):
        (d,) = dumps("clean")
        entries = list(d.entries())
        self.assertEqual(len(entries), int(d.fields["entries"]))
        self.assertEqual(d.fields["dropped"], "0")
        # Sequence numbers run without a gap; every GFN's entries chain.
        self.assertEqual([e[0] for e in entries], list(range(len(entries))))
        state = {}
        for seq, t, gfn, fr, to, cause in entries:
            self.assertEqual(state.get(gfn, "unpopulated"), fr, f"gfn {gfn} at seq {seq}")
            state[gfn] = to
        final = d.final_map()
        counts = [int(c) for c in d.fields["counts"].split(",")]
        self.assertEqual([final.count(s) for s in hvtrace.STATES], counts)
        for gfn, s in enumerate(final):
            self.assertEqual(state.get(gfn, "unpopulated"), s)
        # The same causes as the C replay counted.
        with open(os.path.join(OUT, "clean.log.out")) as f:
            m = re.search(r"causes: ([^;]*);", f.read())
        by = {}
        for e in entries:
            by[e[5]] = by.get(e[5], 0) + 1
        order = [c for c in hvtrace.CAUSES if c in by]  # the replay prints in cause order
        self.assertEqual(m.group(1), ", ".join(f"{c} {by[c]}" for c in order))

    def test_damaged_logs_are_refused(self):
        with self.assertRaisesRegex(hvtrace.TraceError, r"line \d+: vm sim0: E line 7 "
                                    "checksum mismatch"):
            dumps("corrupt")
        with self.assertRaisesRegex(hvtrace.TraceError, "the log ends before the dump"):
            dumps("truncated")

    def test_cli(self):
        tool = os.path.join(ROOT, "tools", "hvtrace.py")
        csv_path = os.path.join(OUT, "clean.csv")
        r = subprocess.run([sys.executable, tool, os.path.join(OUT, "clean.log"), "--csv",
                            csv_path], stdout=subprocess.PIPE, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("mask all", r.stdout)
        with open(csv_path) as f:
            rows = f.read().splitlines()
        self.assertEqual(rows[0], "dump,vm,seq,t_s,gfn,from,to,cause")
        self.assertEqual(len(rows) - 1, int(dumps("clean")[0].fields["entries"]))
        r = subprocess.run([sys.executable, tool, os.path.join(OUT, "corrupt.log")],
                           stdout=subprocess.PIPE, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("checksum mismatch", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
