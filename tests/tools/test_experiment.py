#!/usr/bin/env python3
"""Unit tests of tools/experiment.py on synthetic input: the @hvstat parser
against the schema of docs/stats.md, the adapter for the [mm] text lines,
the experiment files' validation, the report and its check in headless
Chromium (which must fail on a broken plot). No emulator."""
import io
import json
import os
import shutil
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import experiment as ex  # noqa: E402

ex.debian_python()  # matplotlib is Debian's: re-run under /usr/bin/python3 if need be


def vm_line(t, seq, vm, resident, why="period", **kw):
    rec = {"v": 1, "type": "vm", "t": t, "seq": seq, "why": why, "vm": vm, "memsz": 1000,
           "consumed": resident, "shrd": 10, "shrdsvd": 5, "zero": 7, "mctlsz": 3,
           "mctltgt": 4, "zip": 20, "zipsaved": 12, "zip_ratio": 2.5, "swcur": 0,
           "p2m": {"unpopulated": 1000 - resident, "resident": resident, "shared": 10,
                   "filled": 7, "compressed": 20, "swapped": 0, "ballooned": 3, "mmio": 0},
           "faults_s": {"demand-zero": 100.0, "swap-in": 0.0},
           "reclaim_s": {"zero": 2.0, "share": 1.0, "compress": 4.0, "swap": 0.0,
                         "balloon": 0.5},
           "share": {"cow": seq}, "swap": {"out": 0, "in": 0}}
    rec.update(kw)
    return "@hvstat " + json.dumps(rec, separators=(",", ":"))


def machine_line(t, seq, free, state="high", why="period"):
    return "@hvstat " + json.dumps({"v": 1, "type": "machine", "t": t, "seq": seq, "why": why,
                                    "frames": 5000, "free": free, "min_free": 300,
                                    "state": state, "overcommit": 2.1, "pool_pages": 20,
                                    "pool_ratio": 2.5, "alerts": ["swap"] if seq == 2 else []})


SERIAL = "\n".join([
    "[hv] booting",
    vm_line(5.0, 1, "a", 400), vm_line(5.0, 1, "b", 300), machine_line(5.0, 1, 3000),
    "[a] WORKLOAD mode=hot phase=run t=1.0 pages=512 rate=512 mbs=2.1",
    vm_line(10.0, 2, "a", 500), vm_line(10.0, 2, "b", 350), machine_line(10.0, 2, 900, "soft"),
    vm_line(11.0, 3, "a", 510, why="console"), machine_line(11.0, 3, 880, why="console"),
    "[a] WORKLOAD mode=hot phase=run t=2.0 pages=1024 rate=500 mbs=2.0",
    vm_line(15.0, 4, "a", 450, why="stop"), vm_line(15.0, 4, "b", 300),
    machine_line(15.0, 4, 1500, "clear"),
    "[a] WORKLOAD DONE mode=hot pages=1500 secs=3.0 rate=500 majflt=2 pswpin=0 pswpout=0 errors=0",
    "[a] WORKLOAD PASS",
]) + "\n"

TEXT = """[mm] after VM creation: 192.7M free, watermark 1M, overcommit 1.51 (overcommitted)
[mm] vm x: configured 160M resident 40M (peak 40M) zero-reclaimed 10 ws 4M faults: demand-zero 1000 refill 0 decompress 0 copy-on-write 5 swap-in 0 spurious 0; waits 0 invept 1
[mm] vm x: share: shared now 100 (salt 0x1), merged 200 (with another VM's frame 0), same-filled returned 3, copy-on-write 5 (last reference 1)
[mm] vm x: pool: compressed now 30 (120K in 40K, ratio 3.00), same-filled now 50 (non-zero reclaims 0), compressions 30, decompressions 0, incompressible 0 (flagged now 0), refused 0, corrupt 0
[mm] machine: free 100M, overcommit 1.51, reclaim runs 0 freed 0, waits 0
[mm] vm x: configured 160M resident 48M (peak 48M) zero-reclaimed 30 ws 4M faults: demand-zero 2000 refill 0 decompress 10 copy-on-write 9 swap-in 0 spurious 0; waits 0 invept 1
[mm] vm x: share: shared now 120 (salt 0x1), merged 260 (with another VM's frame 0), same-filled returned 3, copy-on-write 9 (last reference 1)
[mm] vm x: pool: compressed now 60 (240K in 80K, ratio 3.00), same-filled now 70 (non-zero reclaims 0), compressions 80, decompressions 10, incompressible 0 (flagged now 0), refused 0, corrupt 0
[mm] machine: free 90M, overcommit 1.51, reclaim runs 0 freed 0, waits 0
"""


class ParseStats(unittest.TestCase):
    def test_reads_every_record_of_the_schema(self):
        recs, bad = ex.parse_stats(SERIAL)
        self.assertEqual(bad, [])
        self.assertEqual(len(recs), 11)
        machine, vms = ex.series(recs)
        self.assertEqual([r["seq"] for r in machine], [1, 2, 4])  # console line kept out
        self.assertEqual(sorted(vms), ["a", "b"])
        self.assertEqual([r["consumed"] for r in vms["a"]], [400, 500, 450])

    def test_bad_lines_are_reported_not_guessed(self):
        text = "\n".join([
            "@hvstat {\"v\":2,\"type\":\"vm\",\"t\":1,\"seq\":1,\"vm\":\"a\"}",
            "@hvstat {\"v\":1,\"type\":\"vm\",\"t\":1,\"seq\":1",
            "@hvstat {\"v\":1,\"type\":\"disk\",\"t\":1,\"seq\":1}",
            "@hvstat {\"v\":1,\"type\":\"vm\",\"t\":1,\"seq\":1}",
            "@hvstat {\"v\":1,\"type\":\"machine\",\"seq\":1}",
            "[x] text before it @hvstat " + json.dumps({"v": 1, "type": "machine", "t": 2,
                                                         "seq": 3}),
        ])
        recs, bad = ex.parse_stats(text)
        self.assertEqual(len(recs), 1)  # the prefix counts anywhere in a line
        self.assertEqual(len(bad), 5)
        self.assertIn("schema version 2", bad[0])
        self.assertIn("not JSON", bad[1])
        self.assertIn("unknown type", bad[2])
        self.assertIn("without 'vm'", bad[3])
        self.assertIn("'t' missing", bad[4])

    def test_figures_and_integrated_reclaim(self):
        recs, _ = ex.parse_stats(SERIAL)
        machine, vms = ex.series(recs)
        done, ticks = ex.workloads(SERIAL)
        f = ex.vm_figures(vms["a"], done["a"])
        self.assertEqual(f["consumed_peak"], 500)
        self.assertEqual(f["rate"], 500)
        self.assertEqual(f["majflt"], 2)
        self.assertEqual(f["cow"], 4)
        # compress at 4 pages/s over 10 s of periods (5 -> 10 -> 15)
        self.assertEqual(f["rec_compress"], 40)
        self.assertEqual(len(ticks["a"]), 2)


class TextAdapter(unittest.TestCase):
    def test_derives_the_series_from_the_mm_lines(self):
        recs = ex.parse_text(TEXT, period=5)
        machine, vms = ex.series(recs)
        self.assertEqual([r["t"] for r in machine], [0, 5])
        self.assertEqual(machine[0]["free"], 100 << 8)
        self.assertEqual(machine[0]["min_free"], 256)
        x = vms["x"]
        self.assertEqual(x[1]["p2m"]["resident"], 48 << 8)
        self.assertEqual(x[1]["zip"], 60)
        self.assertEqual(x[1]["zero"], 70)
        self.assertEqual(x[1]["faults_s"]["demand-zero"], 200.0)  # 1000 more in 5 s
        self.assertEqual(x[1]["reclaim_s"]["share"], 12.0)        # 60 more merges in 5 s
        self.assertEqual(x[1]["reclaim_s"]["compress"], 10.0)
        self.assertEqual(x[1]["zip_ratio"], 3.0)
        self.assertEqual(x[0]["faults_s"]["demand-zero"], 0.0)    # no earlier period

    def test_json_wins_over_text(self):
        recs, src, _ = ex.collect(TEXT + SERIAL, "stats = 5\n")
        self.assertEqual(src, "json")
        recs, src, _ = ex.collect(TEXT, "stats = 5\n")
        self.assertEqual(src, "text")
        self.assertEqual(len(recs), 4)


class Spec(unittest.TestCase):
    def write(self, d, toml, cfg="stats = 5\n[vm a]\ncmdline = \"workload=hot,1,1,1,1\"\n"):
        with open(os.path.join(d, "experiment.toml"), "w") as f:
            f.write(toml)
        with open(os.path.join(d, "hv.cfg.in"), "w") as f:
            f.write(cfg)

    def test_refuses_bad_experiment_files(self):
        with tempfile.TemporaryDirectory() as d:
            for toml, why in [
                ('title = "x"\n', "'run' is missing"),
                ('title = "x"\nplots = ["pie"]\n[[run]]\nname = "a"\nhv_cfg = "hv.cfg.in"\n',
                 "unknown plot"),
                ('title = "x"\n[[run]]\nname = "a"\nhv_cfg = "h"\n[[run]]\nname = "a"\n'
                 'hv_cfg = "h"\n', "not a unique"),
                ('title = "x"\n[[run]]\nname = "a"\n', "needs name and hv_cfg"),
                ('title = "x"\nsummary = ["speed"]\n[[run]]\nname = "a"\nhv_cfg = "h"\n',
                 "unknown summary column"),
                ('title = \n', "Invalid"),
            ]:
                self.write(d, toml)
                with self.assertRaises(ex.ExperimentError) as cm:
                    ex.load_spec(d)
                self.assertIn(why, str(cm.exception))

    def test_template_and_scenario(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, 'title = "x"\n[[run]]\nname = "a"\nhv_cfg = "hv.cfg.in"\n',
                       cfg="stats = {s}\n[vm a]\ncmdline = \"workload=hot,{mb},1,1,1\"\n"
                           "[vm b]\ncmdline = \"memcheck=5\"\n")
            spec = ex.load_spec(d)
            with self.assertRaises(ex.ExperimentError):
                ex.render_cfg(d, {"name": "a", "hv_cfg": "hv.cfg.in", "vars": {"s": 5}})
            cfg = ex.render_cfg(d, {"name": "a", "hv_cfg": "hv.cfg.in",
                                    "vars": {"s": 5, "mb": 8}})
            self.assertIn("workload=hot,8,", cfg)
            sc = ex.scenario_text(spec, spec["run"][0], cfg)
            self.assertIn(r"expect = \[a\] WORKLOAD PASS", sc)
            self.assertNotIn(r"\[b\] WORKLOAD", sc)  # b runs memcheck, not a workload
            self.assertIn(r"expect = \[hv\] power-off: status 0", sc)

    def test_shipped_experiments_load(self):
        names = [n for n in os.listdir(os.path.join(ROOT, "experiments"))
                 if os.path.exists(os.path.join(ROOT, "experiments", n, "experiment.toml"))]
        self.assertGreaterEqual(len(names), 4)
        for n in names:
            folder = ex.find_experiment(n)
            spec = ex.load_spec(folder)
            for run in spec["run"]:
                cfg = ex.render_cfg(folder, run)
                self.assertNotRegex(cfg, r"\{\w+\}", f"{n}/{run['name']}: unfilled variable")
                self.assertRegex(cfg, r"(?m)^stats = [1-9]", f"{n}: no stats period")
                # a var in a comment that expands to several lines would put
                # the rest outside the comment (the hypervisor refuses it)
                with open(os.path.join(folder, run["hv_cfg"])) as f:
                    for line in f:
                        if line.lstrip().startswith("#"):
                            self.assertNotRegex(line, r"\{\w+\}",
                                                f"{n}: a variable in a comment: {line!r}")


class Judge(unittest.TestCase):
    def test_an_earlier_log_is_judged_by_the_scenario_markers(self):
        with tempfile.TemporaryDirectory() as d:
            sc, log = os.path.join(d, "scenario"), os.path.join(d, "serial.txt")
            with open(sc, "w") as f:
                f.write("expect = \\[a\\] WORKLOAD PASS\nforbid = UEFI Interactive Shell\n")
            for text, want in [(SERIAL, "PASS"), ("[hv] booting\n", "FAIL: missing"),
                               (SERIAL + "*** PANIC at x\n", "FAIL: forbidden"),
                               (SERIAL + "UEFI Interactive Shell v2.2\n", "FAIL: forbidden")]:
                with open(log, "w") as f:
                    f.write(text)
                self.assertTrue(ex.judge(log, sc).startswith(want), (want, ex.judge(log, sc)))


class Checks(unittest.TestCase):
    def test_checks_hold_or_say_why_not(self):
        figs = {"a": {"zip_peak": 10, "swap_out": 0, "zip_ratio": None}}
        self.assertEqual(ex.run_checks({"check": ["a.zip_peak > 0", "a.swap_out == 0"]}, figs),
                         [])
        bad = ex.run_checks({"check": ["a.swap_out > 0", "a.zip_ratio > 1", "b.zip_peak > 0",
                                       "a.zip_peak is big"]}, figs)
        self.assertEqual(len(bad), 4)
        self.assertIn("a.swap_out is 0", bad[0])
        self.assertIn("no value for a.zip_ratio", bad[1])
        self.assertIn("no value for b.zip_peak", bad[2])
        self.assertIn("not 'VM.COLUMN OP NUMBER'", bad[3])


class Panel(unittest.TestCase):
    def test_one_line_per_period_across_chunk_boundaries(self):
        out = io.StringIO()
        p = ex.Panel(out)
        for i in range(0, len(SERIAL), 37):  # pieces that split lines anywhere
            p(SERIAL[i:i + 37])
        lines = [l for l in out.getvalue().splitlines() if l.startswith("[panel]")]
        self.assertEqual(len(lines), 4)  # console machine line included: it is a reading
        self.assertIn("state soft", lines[1])
        self.assertIn("alerts swap", lines[1])
        self.assertIn("a: res ", lines[0])
        self.assertIn("[a] WORKLOAD DONE", out.getvalue())
        self.assertNotIn("[hv] booting", out.getvalue())  # no terminal: panel lines only
        out = io.StringIO()
        ex.Panel(out, echo=True)(SERIAL)
        self.assertIn("[hv] booting", out.getvalue())     # a terminal: the log too ...
        self.assertNotIn("@hvstat", out.getvalue())        # ... with panels for the JSON
        self.assertEqual(out.getvalue().count("[panel]"), 4)


class Report(unittest.TestCase):
    def test_report_renders_and_a_broken_plot_is_caught(self):
        d = tempfile.mkdtemp()
        try:
            serial = os.path.join(d, "serial.txt")
            with open(serial, "w") as f:
                f.write(SERIAL)
            res = ex.analyse_run("r", "synthetic", serial, "stats = 5\n", d, ex.ALL_PLOTS,
                                 ex.plt_module(), "PASS")
            self.assertEqual(len(res["plots"]), len(ex.ALL_PLOTS))
            report = ex.write_report(d, {"title": "t"}, [res], ex.DEFAULT_SUMMARY)
            ok, msg = ex.browser_check(report)
            self.assertTrue(ok, msg)
            self.assertIn(f"{len(ex.ALL_PLOTS)} images rendered", msg)
            with open(os.path.join(d, "data", "r-vm.csv")) as f:
                head = f.readline()
            self.assertIn("p2m.resident", head)
            with open(os.path.join(d, res["plots"][1]), "r+b") as f:
                f.truncate(64)  # a PNG cut short: decodes to nothing
            os.unlink(os.path.join(d, res["plots"][0]))
            ok, msg = ex.browser_check(report)
            self.assertFalse(ok)
            self.assertIn(res["plots"][0], msg)
            self.assertIn(res["plots"][1], msg)
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main(verbosity=1)
