#!/usr/bin/env python3
"""Turns "[dump] NAME GFN STATE BASE64" lines of a serial log (dump_pages in
hv.cfg, see mm/dump.c) into a file of raw 4 KiB pages.

    corpus.py [SERIAL_LOG] [OUTPUT]

Defaults: build/scenarios/corpus/serial.txt -> build/corpus/linux-pages.bin.
Exits 1 when the log holds no complete page.
"""
import base64
import binascii
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINE = re.compile(r"^\[dump\] (\S+) ([0-9a-f]+) (\S+) ([A-Za-z0-9+/=]+)\s*$")


def extract(log, out):
    pages = []
    with open(log, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            try:
                data = base64.b64decode(m.group(4), validate=True)
            except (binascii.Error, ValueError):
                continue  # a line cut short by the end of the run
            if len(data) == 4096:
                pages.append(data)
    if not pages:
        return 0
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(b"".join(pages))
    return len(pages)


def main():
    log = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/scenarios/corpus/serial.txt")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build/corpus/linux-pages.bin")
    n = extract(log, out)
    if not n:
        print(f"corpus: no complete [dump] page in {log}")
        sys.exit(1)
    print(f"corpus: {n} pages ({n * 4096} bytes) -> {out}")


if __name__ == "__main__":
    main()
