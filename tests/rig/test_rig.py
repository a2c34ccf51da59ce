#!/usr/bin/env python3
"""Unit tests of the scenario rig's own judgement (run by `make test-host`).

A scenario file must not be able to weaken the runner: its forbid lines add
to the default markers (hypervisor panic, FAIL) instead of replacing them,
and only an explicit 'allow' exempts a line from a default.
"""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenario  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(os.path.dirname(HERE), "scenarios")


def parse(text):
    with tempfile.NamedTemporaryFile("w", suffix=".scenario", delete=False) as f:
        f.write(text)
    try:
        return scenario.parse_scenario(f.name)
    finally:
        os.unlink(f.name)


PANIC_LOG = "[hv] boot\n\n*** PANIC: mm/p2m.c:12: bad state\n*** PANIC: halted\n"


class Forbid(unittest.TestCase):
    def test_own_forbid_keeps_defaults(self):
        conf = parse("forbid = out of memory\n")
        self.assertIsNotNone(scenario.forbidden(conf, PANIC_LOG))
        self.assertIsNotNone(scenario.forbidden(conf, "[x] memcheck FAIL\n"))
        self.assertIsNotNone(scenario.forbidden(conf, "vm a: out of memory\n"))
        self.assertIsNone(scenario.forbidden(conf, "[hv] power-off: status 0\n"))

    def test_no_forbid_uses_defaults(self):
        conf = parse("timeout = 10\n")
        self.assertIn("PANIC", scenario.forbidden(conf, PANIC_LOG))

    def test_allow_exempts_only_matching_lines(self):
        conf = parse("allow = ^\\*\\*\\* PANIC: (test crash|halted)$\n")
        self.assertIsNone(scenario.forbidden(conf, "*** PANIC: test crash\n*** PANIC: halted\n"))
        # Any other panic still fails the run.
        self.assertIsNotNone(scenario.forbidden(conf, PANIC_LOG))

    def test_allow_never_lifts_own_forbids(self):
        conf = parse("forbid = power-off\nallow = power-off\n")
        self.assertIsNotNone(scenario.forbidden(conf, "[hv] power-off: status 0\n"))

    def test_every_shipped_scenario_keeps_the_defaults(self):
        """No scenario in the tree may pass through a hypervisor panic it
        does not name."""
        for name in sorted(os.listdir(SCENARIOS)):
            path = os.path.join(SCENARIOS, name, "scenario")
            if not os.path.exists(path):
                continue
            conf = scenario.parse_scenario(path)
            with self.subTest(scenario=name):
                self.assertIsNotNone(
                    scenario.forbidden(conf, "*** PANIC: mm/p2m.c:1: something else\n"))
                self.assertIsNotNone(scenario.forbidden(conf, "memcheck FAIL\n"))


class HostCheck(unittest.TestCase):
    """host_check runs a host command on the serial log and fails the run
    when it exits non-zero (the trace replay of the swap scenario)."""

    def test_pass_and_fail(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("@hvtrace line\n")
        try:
            ok = parse("host_check = python3 -c \"import sys; sys.exit('@hvtrace' not in "
                       "open(sys.argv[1]).read())\" {serial}\n")
            self.assertEqual(ok["host_check"][0].count("{serial}"), 1)
            verdict, shown = scenario.host_checks(ok, f.name)
            self.assertIsNone(verdict)
            bad = parse("host_check = python3 -c \"print('replay: MISMATCH'); raise "
                        "SystemExit(1)\" {serial}\n")
            verdict, _ = scenario.host_checks(bad, f.name)
            self.assertIn("exit 1", verdict)
            self.assertIn("MISMATCH", verdict)
            missing = parse("host_check = build/no-such-tool {serial}\n")
            verdict, _ = scenario.host_checks(missing, f.name)
            self.assertIn("could not run", verdict)
        finally:
            os.unlink(f.name)


def _policy_log(ratio=2.0, wrong_start=False, denied=0, end="high"):
    """A synthetic serial log for check_policy.py: states high -> clear ->
    soft -> hard -> clear -> END, and 6 periods under pressure in which hi
    holds RATIO times lo's resident pages and idle less than lo."""
    import json
    lines = ["[mm] memory state high -> clear: free 47M (below 48M), cause: vm hi grew",
             "[mm] memory state clear -> soft: free 11M (below 12M), cause: vm lo grew",
             "[mm] policy: balloon starts in state soft (free 11M)",
             "[mm] memory state soft -> hard: free 7M (below 7.6M), cause: vm lo grew",
             "[mm] policy: compression starts in state %s (free 7M)" % ("soft" if wrong_start else "hard")]
    vm = {"p2m": {"resident": 0}, "shrd": 0,
          "faults_s": {"decompress": "1.00", "swap-in": "1.00", "demand-zero": "50.00"}}
    for seq in range(6):
        lines.append("@hvstat " + json.dumps({"v": 1, "type": "machine", "seq": seq, "state": "hard"}))
        for name, res in (("hi", int(3000 * ratio)), ("lo", 3000), ("idle", 1000)):
            r = json.loads(json.dumps(vm))
            r.update(type="vm", seq=seq, vm=name)
            r["p2m"]["resident"] = res
            lines.append("@hvstat " + json.dumps(r))
    lines += ["[mm] memory state hard -> clear: free 15M (at least 15M), cause: background reclaim",
              "[mm] memory state clear -> %s: free 60M, cause: frames given back" % end,
              "[mm] policy: state high, min_free 12M, 6 transitions; techniques denied %d; x" % denied]
    return "\n".join(lines) + "\n"


class CheckPolicy(unittest.TestCase):
    """tests/rig/check_policy.py, the policy-states judgement, can fail."""
    ARGS = ["--visit", "high,clear,soft,hard", "--shares", "hi:lo:2", "--idle", "idle:lo"]

    def verdict(self, text):
        import subprocess
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(text)
        try:
            r = subprocess.run([sys.executable, os.path.join(HERE, "check_policy.py"), f.name]
                               + self.ARGS, stdout=subprocess.PIPE, text=True)
        finally:
            os.unlink(f.name)
        return r.returncode, r.stdout

    def test_good_run_passes(self):
        rc, out = self.verdict(_policy_log())
        self.assertEqual(rc, 0, out)

    def test_each_fault_is_caught(self):
        for kw, why in ((dict(ratio=1.0), "not within 20%"),
                        (dict(wrong_start=True), "does not allow it"),
                        (dict(denied=3), "techniques asked for"),
                        (dict(end="clear"), "did not end in state high")):
            rc, out = self.verdict(_policy_log(**kw))
            self.assertEqual(rc, 1, (kw, out))
            self.assertIn(why, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
