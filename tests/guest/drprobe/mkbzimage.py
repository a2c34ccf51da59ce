#!/usr/bin/env python3
"""Wraps a flat 64-bit program (linked at 16 MiB, entry 0x200 in) into the
smallest file the hypervisor's Linux loader takes as a bzImage: one setup
sector after the boot sector with a boot-protocol 2.12 header that declares
a 64-bit entry, the payload's size (syssize) and what it needs (init_size).

usage: mkbzimage.py FLAT OUT"""
import struct
import sys

flat = open(sys.argv[1], "rb").read()
flat += b"\0" * (-len(flat) % 16)
flat += b"\0" * max(0, 0x1000 - 1024 - len(flat))  # the loader wants 4 KiB at least
setup_sects = 1
head = bytearray(512 * (1 + setup_sects))


def put(off, fmt, v):
    struct.pack_into("<" + fmt, head, off, v)


put(0x1F1, "B", setup_sects)
put(0x1F4, "I", len(flat) // 16)  # syssize, 16-byte units
put(0x1FE, "H", 0xAA55)
put(0x200, "B", 0xEB)  # jmp short over the header ...
put(0x201, "B", 0x66)  # ... which ends at 0x268
head[0x202:0x206] = b"HdrS"
put(0x206, "H", 0x020C)  # protocol 2.12
put(0x211, "B", 0x01)  # LOADED_HIGH
put(0x214, "I", 0x1000000)  # code32_start
put(0x22C, "I", 0x7FFFFFFF)  # initrd_addr_max
put(0x230, "I", 0x200000)  # kernel_alignment
put(0x236, "H", 0x0001)  # XLF_KERNEL_64
put(0x238, "I", 255)  # cmdline_size
put(0x260, "I", max(len(flat), 0x100000))  # init_size
open(sys.argv[2], "wb").write(bytes(head) + flat)
