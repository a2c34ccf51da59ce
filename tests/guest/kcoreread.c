/* kcoreread: reads the guest's direct map of RAM through /proc/kcore, as
 * a crash-dump or debugging tool would, and says how much it read. A
 * balloon whose pages the kernel does not know are gone gets them all
 * touched (and, under OvercommitHV, each touch is a fresh zero page the
 * hypervisor has to find a frame for); pages marked PageOffline read as
 * zeros without being touched. Static, for the test initramfs.
 *   kcoreread          prints "GUEST KCORE read BYTES bytes of SEGMENTS RAM segments" */
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK (1u << 20)

int main(void)
{
    static unsigned char buf[CHUNK];
    Elf64_Ehdr eh;
    int fd = open("/proc/kcore", O_RDONLY);
    if (fd < 0) {
        perror("kcoreread: /proc/kcore");
        return 1;
    }
    if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 4096) {
        fprintf(stderr, "kcoreread: not a 64-bit ELF core\n");
        return 1;
    }
    Elf64_Phdr *ph = calloc(eh.e_phnum, sizeof(*ph));
    size_t len = (size_t)eh.e_phnum * sizeof(*ph);
    if (!ph || pread(fd, ph, len, (off_t)eh.e_phoff) != (ssize_t)len) {
        fprintf(stderr, "kcoreread: cannot read the program headers\n");
        return 1;
    }
    unsigned long long total = 0;
    unsigned segs = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        /* RAM in the direct map: a physical address, below the kernel text. */
        if (ph[i].p_type != PT_LOAD || ph[i].p_paddr == UINT64_MAX ||
            ph[i].p_vaddr >= 0xffffffff80000000ull)
            continue;
        segs++;
        for (uint64_t off = 0; off < ph[i].p_filesz; off += CHUNK) {
            size_t n = ph[i].p_filesz - off < CHUNK ? (size_t)(ph[i].p_filesz - off) : CHUNK;
            ssize_t got = pread(fd, buf, n, (off_t)(ph[i].p_offset + off));
            if (got != (ssize_t)n) {
                fprintf(stderr, "kcoreread: segment %u: short read at %#llx\n", i,
                        (unsigned long long)off);
                return 1;
            }
            total += (unsigned long long)got;
        }
    }
    printf("GUEST KCORE read %llu bytes of %u RAM segments\n", total, segs);
    return segs ? 0 : 1;
}
