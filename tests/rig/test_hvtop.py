#!/usr/bin/env python3
"""Statistics as data, read back: tests/rig/hvstat.py and tools/hvtop.

1. Schema: docs/stats.md's tables, hvstat.py's field lists and a recorded
   log of a real run (tests/rig/data/share-hvstat.log, cut from the share
   scenario: three VMs) name the same fields in the same order, and every
   recorded line passes hvstat.problems; a record with a field dropped,
   added or renamed, or another version, is reported.
2. Batch: `hvtop -b -f` on the recorded log writes exactly
   tests/rig/data/share-hvtop.csv (a header, one row per VM per period).
3. Panel: the rendered panel has the machine header and a row per VM;
   keys switch the view and the sort.
4. Live, in tmux: hvtop -f on a file a writer appends the recorded lines
   to, in a detached session; capture-pane shows the header and every VM,
   and then the last period's figures.
Run: python3 tests/rig/test_hvtop.py (make test runs it).
"""
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from importlib.machinery import SourceFileLoader

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import hvstat  # noqa: E402

HVTOP = os.path.join(ROOT, "tools", "hvtop")
LOG = os.path.join(HERE, "data", "share-hvstat.log")
CSV = os.path.join(HERE, "data", "share-hvtop.csv")
hvtop = SourceFileLoader("hvtop", HVTOP).load_module()


class Schema(unittest.TestCase):
    def test_doc_matches_reader(self):
        d = hvstat.doc_fields()
        self.assertEqual(d["vm"], hvstat.VM_FIELDS)
        self.assertEqual(d["machine"], hvstat.MACHINE_FIELDS)

    def test_recorded_log(self):
        recs = hvstat.read(LOG)
        self.assertGreater(len(recs), 8)
        for r in recs:
            self.assertEqual(hvstat.problems(r), [], r)
        names = {r["vm"] for r in hvstat.select(recs, type="vm")}
        self.assertEqual(names, {"one", "two", "three"})
        for seq, m, vms in hvstat.periods(recs):
            if m is not None and m["why"] == "period":
                self.assertEqual(m["vms"], len(vms))
                self.assertEqual(m["memsz"], sum(v["memsz"] for v in vms.values()))
                for v in vms.values():
                    self.assertEqual(sum(v["p2m"].values()), v["memsz"] + v["p2m"]["mmio"])

    def test_changes_are_caught(self):
        r = hvstat.last(hvstat.read(LOG), vm="one")
        for mutate in (lambda x: x.pop("zip"), lambda x: x.update(extra=1),
                       lambda x: x.update(v=2), lambda x: x["p2m"].pop("shared"),
                       lambda x: x.__setitem__("why", "later")):
            y = copy.deepcopy(r)
            mutate(y)
            self.assertNotEqual(hvstat.problems(y), [])
        renamed = {("swcur2" if k == "swcur" else k): v for k, v in r.items()}
        self.assertNotEqual(hvstat.problems(renamed), [])

    def test_parse_line(self):
        self.assertIsNone(hvstat.parse_line("[mm] vm a: something"))
        self.assertEqual(hvstat.parse_line('@hvstat {"v":1,"t":1.50}\r')["t"],
                         hvstat.decimal.Decimal("1.50"))
        with self.assertRaises(ValueError):
            hvstat.parse_line('@hvstat {"v":1,"type":')


class Batch(unittest.TestCase):
    def test_csv_exact(self):
        r = subprocess.run([sys.executable, HVTOP, "-b", "-f", LOG], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(CSV) as f:
            want = f.read()
        self.assertEqual(r.stdout, want)
        rows = want.splitlines()
        self.assertEqual(rows[0].split(",")[:4], ["seq", "t", "why", "vm"])
        vm_lines = [x for x in hvstat.read(LOG) if x["type"] == "vm"]
        self.assertEqual(len(rows) - 1, len(vm_lines))

    def test_missing_file(self):
        r = subprocess.run([sys.executable, HVTOP, "-b", "-f", "/nonexistent/log"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no such file", r.stderr)


class PanelTest(unittest.TestCase):
    def setUp(self):
        self.p = hvtop.Panel()
        for r in hvstat.read(LOG):
            self.p.feed(r)

    def test_render(self):
        lines = self.p.render(200)
        m = hvstat.last(hvstat.read(LOG), type="machine")
        self.assertTrue(lines[0].startswith(f"hvtop  t {m['t']}s  seq {m['seq']}  state "
                                            f"{m['state']}"))
        self.assertIn(f"overcommit {m['overcommit']}", lines[0])
        self.assertIn("alerts: machine", lines[1])
        self.assertTrue(lines[3].startswith("VM ") and "MEMSZ" in lines[3])
        rows = [l.split()[0] for l in lines[4:]]
        self.assertEqual(rows, ["one", "three", "two"])

    def test_keys(self):
        self.p.key("t")
        self.assertIn("SHARED", self.p.render()[3])
        self.p.key(">")  # sort by RESIDENT, largest first
        rows = self.p.rows()
        res = [r["p2m"]["resident"] for r in rows]
        self.assertEqual(res, sorted(res, reverse=True))
        self.p.key("r")
        res = [r["p2m"]["resident"] for r in self.p.rows()]
        self.assertEqual(res, sorted(res))
        self.p.key("m")
        self.assertIn("MCTLSZ", self.p.render()[3])


@unittest.skipUnless(shutil.which("tmux"), "tmux is not installed (tools/deps.sh installs it)")
class Live(unittest.TestCase):
    def test_tmux(self):
        tmp = tempfile.mkdtemp(prefix="hvtop-")
        log = os.path.join(tmp, "serial.txt")
        open(log, "w").close()
        sock = os.path.join(tmp, "tmux.sock")
        tmux = ["tmux", "-S", sock]
        name = "hvtop"
        env = dict(os.environ, TERM="xterm")
        subprocess.run(tmux + ["new-session", "-d", "-s", name, "-x", "200", "-y", "20",
                               f"{sys.executable} {HVTOP} -f {log}"], check=True, env=env)
        try:
            with open(LOG) as f:
                lines = f.read().splitlines(True)
            periods = hvstat.periods(hvstat.read(LOG))
            last_m = [m for _, m, _ in periods if m][-1]
            # A writer appends the recording in pieces, as a serial log grows.
            with open(log, "a") as out:
                for i in range(0, len(lines), 7):
                    out.write("".join(lines[i:i + 7]))
                    out.flush()
                    time.sleep(0.05)
            want = [f"seq {last_m['seq']}", "one", "two", "three", "MEMSZ", "state "]
            screen = ""
            for _ in range(100):
                time.sleep(0.1)
                screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", name],
                                        stdout=subprocess.PIPE, text=True).stdout
                if all(w in screen for w in want):
                    break
            for w in want:
                self.assertIn(w, screen, f"pane lacks {w!r}:\n{screen}")
            self.assertIn("hvtop  t ", screen)
            # The per-technique view on a key press.
            subprocess.run(tmux + ["send-keys", "-t", name, "t"], check=True)
            for _ in range(50):
                time.sleep(0.1)
                screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", name],
                                        stdout=subprocess.PIPE, text=True).stdout
                if "COMPRSD" in screen:
                    break
            self.assertIn("COMPRSD", screen)
            subprocess.run(tmux + ["send-keys", "-t", name, "q"], check=True)
        finally:
            subprocess.run(tmux + ["kill-server"], stderr=subprocess.DEVNULL)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=1)
