#!/usr/bin/env python3
"""The test runner behind `make test` and `make test-host`.

  run_tests.py [--jobs N] HOST_BINARY... [--cmd NAME=COMMAND]... [-- SCENARIO...]

Runs each cmocka host-test binary (counting its individual tests from
cmocka's own summary), then each --cmd (one test, judged by its exit
status: the simulator and the fuzzer), then the emulator scenarios N at a
time (each is one test), and ends with the line `N passed, N failed`. Exit
status 1 if anything failed.
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time

import scenario  # the runner beside this file: its scenario-file parser

HERE = os.path.dirname(os.path.abspath(__file__))


def run_host(binary):
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="stdout")
    t0 = time.time()
    r = subprocess.run([binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env)
    out = r.stdout
    passed = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
    failed = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
    if r.returncode != 0 and failed == 0:
        failed = 1  # crashed, or a sanitizer stopped it before the summary
    if passed + failed == 0:
        failed = 1  # a binary that ran no test is a failure
    name = os.path.relpath(binary)
    status = "ok" if failed == 0 else "FAILED"
    print(f"{status:6} {name}: {passed} passed, {failed} failed ({time.time() - t0:.1f} s)")
    if failed:
        print("\n".join("    " + l for l in out.splitlines()[-60:]))
    return passed, failed


def run_cmd(spec):
    """NAME=COMMAND: one test, passed when the command exits 0."""
    name, cmd = spec.split("=", 1)
    t0 = time.time()
    r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    ok = r.returncode == 0
    print(f"{'ok' if ok else 'FAILED':6} {name} ({time.time() - t0:.1f} s)")
    lines = r.stdout.splitlines()
    summary = [l for l in lines if l.startswith(("sim:", "Done ", "#")) and
               ("accesses" in l or "Done" in l or "DONE" in l)]
    for l in (lines[-40:] if not ok else summary[-2:]):
        print("    " + l)
    return (1, 0) if ok else (0, 1)


def run_scenario(name):
    r = subprocess.run([sys.executable, os.path.join(HERE, "scenario.py"), name],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return name, r.returncode == 0, r.stdout


def expected_length(name):
    """A scenario's timeout, as a guess at how long it runs."""
    try:
        conf = scenario.parse_scenario(os.path.join(HERE, "..", "scenarios", name, "scenario"))
        return float(conf["timeout"])
    except (OSError, ValueError, scenario.ScenarioError):
        return 0.0  # its own run reports what is wrong with it


def main():
    argv = sys.argv[1:]
    scenarios = []
    if "--" in argv:
        i = argv.index("--")
        argv, scenarios = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cmd", action="append", default=[],
                    help="NAME=COMMAND run as one test judged by its exit status")
    ap.add_argument("binaries", nargs="*")
    a = ap.parse_args(argv)

    passed = failed = 0
    print(f"== host tests ({len(a.binaries)} binaries)")
    for b in a.binaries:
        p, f = run_host(b)
        passed += p
        failed += f
    if a.cmd:
        print(f"== simulator and fuzzer ({len(a.cmd)})")
    for c in a.cmd:
        p, f = run_cmd(c)
        passed += p
        failed += f
    if scenarios:
        # Longest first (by timeout): a long one started last would run
        # alone on one core at the end.
        scenarios.sort(key=lambda n: -expected_length(n))
        print(f"== emulator scenarios ({len(scenarios)}, {a.jobs} at a time, longest first)")
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as ex:
            for name, ok, out in ex.map(run_scenario, scenarios):
                sys.stdout.write(out)
                sys.stdout.flush()
                if ok:
                    passed += 1
                else:
                    failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
