#!/usr/bin/env python3
"""Run one emulator scenario and judge it by the markers on its serial log.

A scenario is a folder tests/scenarios/NAME/ holding:
  scenario   key = value lines (format below)
  hv.cfg     the hypervisor configuration put at \\hv\\hv.cfg on the ESP

scenario keys (expect, forbid and file may repeat):
  emulator = bochs | qemu
  timeout  = seconds of wall time before the run counts as hung (failure)
  memory   = guest machine memory in MiB
  expect   = REGEX    must appear on the serial log (all of them, any order)
  forbid   = REGEX    fails the run as soon as it appears; added to the
                      defaults (PANIC and FAIL markers), which always apply
  allow    = REGEX    a line matching it does not trip a default forbid (a
                      scenario that expects a panic allows exactly that one);
                      it never lifts the scenario's own forbids
  stop     = REGEX    ends the run (after a short grace) once every expect
                      has matched and this appears; otherwise the run ends
                      when the emulator exits
  exit     = N        (qemu) required exit status (33 = hypervisor success)
  nvme     = SIZE_MB  (qemu) attach an NVMe controller with a scratch disk
  nvme_block = BYTES  (qemu) the NVMe namespace's logical and physical block
                      size (default: QEMU's, 512)
  blkdebug = FILE     (qemu) put the NVMe disk behind QEMU's blkdebug driver
                      with this rules file (in the scenario folder) to inject
                      I/O errors
  swap_disk = SIZE_MB (bochs) a blank second ATA disk: secondary master, the
                      hypervisor's ata2
  debug_exit = yes|no (qemu) attach isa-debug-exit (default yes); without
                      it the hypervisor's power-off must go through ACPI S5
  file     = SRC DST  extra file for the ESP (SRC relative to the repo)
  cut      = SRC BYTES DST  the first BYTES bytes of SRC (relative to the
                      repo), as a file for the ESP at DST: a truncated copy,
                      written into the scenario's output folder (never next
                      to SRC, which may be shared)
  before   = A ;; B   the first line matching regex A comes before the first
                      line matching regex B (both must appear; may repeat)
  check    = A ;; EXPR the first line matching regex A, whose named groups are
                      read as integers, makes the Python expression EXPR
                      over them true (may repeat)
  send     = A ;; TEXT (bochs) type TEXT and Enter on the hypervisor's serial
                      console once regex A first appears (may repeat; each
                      fires once). With any send, COM1 becomes a socket the
                      runner serves: it writes serial.txt itself and keeps
                      what it typed in console.txt.
  host_check = CMD    once the run has passed every other check, run CMD on
                      the host ({serial} is the serial log's path; paths are
                      from the repository root, e.g. build/replay {serial});
                      a non-zero exit fails the scenario (may repeat)

Output: build/scenarios/NAME/{serial.txt, emulator.out, bochs.log, ...}.
Exit status 0 on PASS, 1 on FAIL. --follow echoes the serial log live.
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
HV_EFI = os.path.join(BUILD, "hv.efi")
OVMF_BOCHS = "/usr/share/ovmf/OVMF.fd"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
VGABIOS = "/usr/share/bochs/VGABIOS-lgpl-latest"
DEFAULT_FORBID = [r"\*\*\* PANIC", r"\bFAIL\b"]
TAIL_LINES = 40
# Bochs computes a flat disk's geometry from its size: keep it a whole
# number of 16-head, 63-sector cylinders.
CYLINDER = 16 * 63 * 512


class ScenarioError(Exception):
    pass


def parse_scenario(path):
    conf = {"expect": [], "forbid": [], "allow": [], "file": [], "cut": [], "before": [],
            "send": [], "check": [], "host_check": [],
            "emulator": "bochs",
            "timeout": "300", "memory": "128"}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise ScenarioError(f"{path}:{n}: expected 'key = value'")
            key, val = (s.strip() for s in line.split("=", 1))
            if key in ("expect", "forbid", "allow", "file", "host_check"):
                conf[key].append(val)
            elif key == "cut":
                parts = val.split()
                if len(parts) != 3 or not parts[1].isdigit():
                    raise ScenarioError(f"{path}:{n}: 'cut' needs 'SRC BYTES DST'")
                conf[key].append((parts[0], int(parts[1]), parts[2]))
            elif key in ("before", "send", "check"):
                if ";;" not in val:
                    raise ScenarioError(f"{path}:{n}: '{key}' needs 'A ;; B'")
                conf[key].append(tuple(s.strip() for s in val.split(";;", 1)))
            elif key in ("emulator", "timeout", "memory", "stop", "exit", "nvme",
                         "disk_mb", "debug_exit", "blkdebug", "swap_disk", "nvme_block"):
                conf[key] = val
            else:
                raise ScenarioError(f"{path}:{n}: unknown key '{key}'")
    for rx in conf["expect"] + conf["forbid"] + conf["allow"] + ([conf["stop"]] if "stop" in conf else []) + \
            [r for pair in conf["before"] for r in pair] + \
            [a for a, _ in conf["send"] + conf["check"]]:
        try:
            re.compile(rx)
        except re.error as e:
            raise ScenarioError(f"{path}: bad regex {rx!r}: {e}")
    if conf["emulator"] not in ("bochs", "qemu"):
        raise ScenarioError(f"{path}: emulator must be bochs or qemu")
    if conf["send"] and conf["emulator"] != "bochs":
        raise ScenarioError(f"{path}: 'send' needs emulator = bochs")
    # The defaults are not the scenario's to drop: a scenario that replaced
    # them would pass through a hypervisor panic.
    conf["forbid"] = [r for r in conf["forbid"] if r not in DEFAULT_FORBID]
    return conf


def forbidden(conf, text):
    """The first forbidden marker in text, as a verdict string, or None.
    Default markers count on every line but those an 'allow' regex matches;
    the scenario's own forbids count everywhere."""
    allows = [re.compile(r) for r in conf.get("allow", [])]
    for pat in DEFAULT_FORBID:
        for m in re.finditer(pat, text, re.M):
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.end())
            line = text[start:end if end >= 0 else len(text)]
            if not any(a.search(line) for a in allows):
                return f"forbidden marker /{pat}/ seen: {line.strip()[:160]}"
    for pat in conf["forbid"]:
        m = re.search(pat, text, re.M)
        if m:
            return f"forbidden marker /{pat}/ seen"
    return None


def host_checks(conf, serial):
    """Runs the scenario's host_check commands on the serial log: (verdict
    or None, lines to show)."""
    shown = []
    for cmd in conf.get("host_check", []):
        argv = [a.replace("{serial}", serial) for a in shlex.split(cmd)]
        try:
            r = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"host check '{cmd}' could not run: {e}", shown
        out = [l for l in r.stdout.splitlines() if l.strip()]
        if r.returncode:
            return f"host check '{cmd}' failed (exit {r.returncode}): " + \
                " | ".join(out[-6:]), shown
        shown += [f"host check ok: {l}" for l in out[-4:]]
    return None, shown


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode:
        raise ScenarioError(f"{' '.join(cmd)} failed:\n{r.stdout}")
    return r.stdout


def make_esp(out, sdir, conf):
    """A whole-disk FAT32 image: OVMF boots \\EFI\\BOOT\\BOOTX64.EFI from it."""
    extra = 0
    files = []
    for spec in conf["file"]:
        src, dst = spec.split()
        src = os.path.join(ROOT, src)
        if not os.path.exists(src):
            raise ScenarioError(f"scenario file {src} is missing (build it first)")
        files.append((src, dst))
        extra += os.path.getsize(src)
    for i, (src, nbytes, dst) in enumerate(conf["cut"]):
        src = os.path.join(ROOT, src)
        if not os.path.exists(src):
            raise ScenarioError(f"scenario file {src} is missing (build it first)")
        if nbytes >= os.path.getsize(src):
            raise ScenarioError(f"cut: {src} has only {os.path.getsize(src)} bytes, "
                                f"cannot cut it to {nbytes}")
        copy = os.path.join(out, f"cut{i}-" + os.path.basename(src))
        with open(src, "rb") as f, open(copy, "wb") as g:
            g.write(f.read(nbytes))
        files.append((copy, dst))
        extra += nbytes
    size_mb = max(int(conf.get("disk_mb", "64")), 40 + extra // (1 << 20) + 8)
    cyl = (size_mb << 20) // CYLINDER + 1
    img = os.path.join(out, "esp.img")
    if os.path.exists(img):
        os.unlink(img)
    with open(img, "wb") as f:
        f.truncate(cyl * CYLINDER)
    run(["mformat", "-i", img, "-F", "-h", "16", "-s", "63", "-t", str(cyl), "::"])
    run(["mmd", "-i", img, "::/EFI", "::/EFI/BOOT", "::/hv"])
    run(["mcopy", "-i", img, HV_EFI, "::/EFI/BOOT/BOOTX64.EFI"])
    cfg = os.path.join(sdir, "hv.cfg")
    if os.path.exists(cfg):
        run(["mcopy", "-i", img, cfg, "::/hv/hv.cfg"])
    for src, dst in files:
        run(["mcopy", "-i", img, src, "::" + dst.replace("\\", "/")])
    return img


class Console:
    """COM1 as a TCP socket: Bochs connects to it (mode=socket-client); what
    the hypervisor writes goes to serial.txt, and send() types a line."""

    def __init__(self, serial):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(120)
        self.port = self.srv.getsockname()[1]
        self.serial = serial
        self.conn = None
        self.error = None
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        try:
            self.conn, _ = self.srv.accept()
        except OSError as e:
            self.error = f"the emulator never connected to the console socket: {e}"
            return
        with open(self.serial, "ab") as f:
            while True:
                try:
                    data = self.conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                f.write(data)
                f.flush()

    def send(self, text):
        if not self.conn:
            return False
        # One byte at a time, as typed: the UART takes a byte per poll.
        for ch in (text + "\r").encode():
            self.conn.sendall(bytes([ch]))
            time.sleep(0.01)
        return True

    def close(self):
        for s in (self.conn, self.srv):
            try:
                if s:
                    s.close()
            except OSError:
                pass


def bochs_cmd(out, conf, img, console=None):
    rc = os.path.join(out, "bochsrc")
    swap = ""
    if "swap_disk" in conf:
        disk = os.path.join(out, "swap.img")
        cyl = (int(conf["swap_disk"]) << 20) // CYLINDER + 1
        with open(disk, "wb") as f:
            f.truncate(cyl * CYLINDER)
        swap = (f"ata1: enabled=1, ioaddr1=0x170, ioaddr2=0x370, irq=15\n"
                f"ata1-master: type=disk, path={disk}, mode=flat\n")
    if console:
        com1 = f"com1: enabled=1, mode=socket-client, dev=127.0.0.1:{console.port}"
    else:
        com1 = f"com1: enabled=1, mode=file, dev={os.path.join(out, 'serial.txt')}"
    with open(rc, "w") as f:
        f.write(f"""# written by tests/rig/scenario.py
megs: {int(conf['memory'])}
cpu: model=corei7_skylake_x, count=1, ips=50000000
romimage: file={OVMF_BOCHS}, address=0xffe00000
vgaromimage: file={VGABIOS}
pci: enabled=1, chipset=i440fx
clock: sync=none, time0=946681200
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=disk, path={img}, mode=flat
{swap}boot: disk
{com1}
port_e9_hack: enabled=1
display_library: term
log: {os.path.join(out, 'bochs.log')}
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
""")
    cont = os.path.join(out, "cont.rc")
    with open(cont, "w") as f:
        f.write("c\n")
    # Debian's Bochs has its debugger built in: cont.rc makes it run at once.
    # The term display needs a terminal: script(1) gives it a pseudo-tty.
    return ["script", "-qfec", f"bochs -q -f {rc} -rc {cont}", "/dev/null"]


def qemu_cmd(out, conf, img):
    vars_copy = os.path.join(out, "ovmf_vars.fd")
    shutil.copyfile(OVMF_VARS, vars_copy)
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-cpu", "max", "-accel", "tcg",
           "-m", str(int(conf["memory"])), "-smp", "1",
           "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
           "-drive", f"if=pflash,format=raw,file={vars_copy}",
           "-drive", f"file={img},format=raw,if=none,id=esp",
           "-device", "ide-hd,drive=esp,bus=ide.0,bootindex=0",
           "-serial", f"file:{os.path.join(out, 'serial.txt')}",
           "-display", "none", "-monitor", "none", "-no-reboot"]
    if conf.get("debug_exit", "yes") == "yes":
        cmd += ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    if "nvme" in conf:
        disk = os.path.join(out, "nvme.img")
        with open(disk, "wb") as f:
            f.truncate(int(conf["nvme"]) << 20)
        spec = f"file={disk}"
        if "blkdebug" in conf:
            rules = os.path.join(ROOT, "tests", "scenarios", conf["name"], conf["blkdebug"])
            if not os.path.exists(rules):
                raise ScenarioError(f"blkdebug rules {rules} are missing")
            spec = f"file=blkdebug:{rules}:{disk}"
        dev = "nvme,serial=hvswap,drive=nv0"
        if "nvme_block" in conf:
            bs = int(conf["nvme_block"])
            dev += f",logical_block_size={bs},physical_block_size={bs}"
        cmd += ["-drive", f"{spec},if=none,id=nv0,format=raw", "-device", dev]
    return cmd


def tail(path, n=TAIL_LINES):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return "(no serial log)"
    return "\n".join(lines[-n:])


def clean(text):
    # Drop firmware terminal escape sequences so that regexes see plain text.
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


def run_scenario(name, follow=False, sdir=None, out=None):
    """follow: True echoes the serial log; a callable gets each new piece of
    it instead. sdir and out (tools/experiment.py) put the scenario folder
    and the output folder elsewhere than tests/scenarios/NAME and
    build/scenarios/NAME."""
    sdir = sdir or os.path.join(ROOT, "tests", "scenarios", name)
    spath = os.path.join(sdir, "scenario")
    if not os.path.exists(spath):
        raise ScenarioError(f"no scenario '{name}' ({spath} is missing)")
    conf = parse_scenario(spath)
    conf["name"] = name
    if not os.path.exists(HV_EFI):
        raise ScenarioError(f"{HV_EFI} is missing: run make first")
    out = out or os.path.join(BUILD, "scenarios", name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    img = make_esp(out, sdir, conf)
    serial = os.path.join(out, "serial.txt")
    open(serial, "w").close()
    console = Console(serial) if conf["send"] else None
    cmd = bochs_cmd(out, conf, img, console) if conf["emulator"] == "bochs" \
        else qemu_cmd(out, conf, img)
    env = dict(os.environ, TERM=os.environ.get("TERM") or "xterm")
    if env["TERM"] == "dumb":
        env["TERM"] = "xterm"
    timeout = float(conf["timeout"])
    start = time.time()
    with open(os.path.join(out, "emulator.out"), "w") as eo:
        proc = subprocess.Popen(cmd, cwd=out, stdin=subprocess.DEVNULL, stdout=eo,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    expects = [re.compile(r) for r in conf["expect"]]
    stop = re.compile(conf["stop"]) if "stop" in conf else None
    found = {}
    verdict = None
    sent = set()
    typed = open(os.path.join(out, "console.txt"), "w") if console else None
    shown = 0
    stop_at = None
    text = ""
    while True:
        with open(serial, "rb") as f:
            text = clean(f.read().decode("utf-8", "replace"))
        if follow and len(text) > shown:
            if callable(follow):
                follow(text[shown:])
            else:
                sys.stdout.write(text[shown:])
                sys.stdout.flush()
            shown = len(text)
        for rx in expects:
            if rx.pattern not in found:
                m = rx.search(text)
                if m:
                    found[rx.pattern] = m
        verdict = forbidden(conf, text)
        if verdict:
            time.sleep(2)  # let the rest of a crash dump reach the log
            break
        for i, (trigger, line) in enumerate(conf["send"]):
            if i not in sent and re.search(trigger, text, re.M) and console.send(line):
                sent.add(i)
                typed.write(f"{time.time() - start:7.1f} s  /{trigger}/  typed: {line}\n")
                typed.flush()
        if console and console.error:
            verdict = console.error
            break
        if stop and stop_at is None and len(found) == len(expects) and stop.search(text):
            stop_at = time.time() + 1.0
        if stop_at and time.time() >= stop_at:
            break
        if proc.poll() is not None:
            break
        if time.time() - start > timeout:
            verdict = f"timeout after {timeout:.0f} s"
            break
        time.sleep(0.25)
    elapsed = time.time() - start
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    if console:
        console.thread.join(timeout=2)
        console.close()
        typed.close()
    with open(serial, "rb") as f:
        text = clean(f.read().decode("utf-8", "replace"))
    for rx in expects:
        if rx.pattern not in found and rx.search(text):
            found[rx.pattern] = rx.search(text)
    if follow and len(text) > shown:
        if callable(follow):
            follow(text[shown:])
        else:
            sys.stdout.write(text[shown:])
    if follow and not callable(follow):
        sys.stdout.write("\n")
    if not verdict:
        verdict = forbidden(conf, text)  # what came after the last poll counts too
    if not verdict:
        missing = [rx.pattern for rx in expects if rx.pattern not in found]
        if missing:
            verdict = "missing marker(s): " + "; ".join(f"/{m}/" for m in missing)
    for a, b in ([] if verdict else conf["before"]):
        ma, mb = re.search(a, text, re.M), re.search(b, text, re.M)
        if not ma or not mb:
            verdict = f"order check: /{a if not ma else b}/ never appeared"
        elif ma.start() > mb.start():
            verdict = f"order check: /{a}/ first appears after /{b}/"
        if verdict:
            break
    checked = []
    for rx, expr in ([] if verdict else conf["check"]):
        m = re.search(rx, text, re.M)
        if not m:
            verdict = f"check: /{rx}/ never appeared"
            break
        vals = {k: int(v) for k, v in m.groupdict().items() if v is not None}
        try:
            ok = eval(expr, {"__builtins__": {}, "min": min, "max": max, "abs": abs}, vals)
        except Exception as e:  # a broken expression is the scenario's bug: say so
            verdict = f"check: cannot evaluate '{expr}' with {vals}: {e}"
            break
        if not ok:
            verdict = f"check failed: {expr} with {vals}"
            break
        checked.append(f"check ok: {expr} with {vals}")
    if not verdict and "exit" in conf and proc.returncode != int(conf["exit"]):
        verdict = f"emulator exit status {proc.returncode}, expected {conf['exit']}"
    if not verdict:
        verdict, shown = host_checks(conf, serial)
        checked += shown
    if verdict:
        print(f"FAIL scenario {name} ({elapsed:.0f} s): {verdict}")
        print(f"--- last {TAIL_LINES} lines of {serial} ---")
        print(tail(serial))
        print("---")
        return False
    print(f"PASS scenario {name} ({elapsed:.0f} s, {conf['emulator']}); log: {serial}")
    for rx in expects:
        line_start = text.rfind("\n", 0, found[rx.pattern].start()) + 1
        line_end = text.find("\n", found[rx.pattern].end())
        print("  " + text[line_start:line_end if line_end >= 0 else None])
    for c in checked:
        print("  " + c)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--follow", action="store_true", help="echo the serial log live")
    a = ap.parse_args()
    try:
        ok = run_scenario(a.name, a.follow)
    except ScenarioError as e:
        print(f"FAIL scenario {a.name}: {e}")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
