/* Guest-physical memory seen from the hypervisor: the loader and device
 * models reach guest RAM through these. Pure C over the VM's GFN map, so
 * the host tests link it too. */
#include "lib/string.h"
#include "mm/mm_backend.h"
#include "vmx/vm.h"

void *vm_gpa_ptr(struct vm *vm, uint64_t gpa)
{
    uint8_t *page = p2m_gfn_ptr(&vm->p2m, gpa >> PAGE_SHIFT, true);
    return page ? page + (gpa & (PAGE_SIZE - 1)) : NULL;
}

int vm_copy_to_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len)
{
    const uint8_t *s = src;
    if (gpa + len < gpa || gpa + len > vm->mem_bytes)
        return -1;
    while (len) {
        uint64_t chunk = PAGE_SIZE - (gpa & (PAGE_SIZE - 1));
        if (chunk > len)
            chunk = len;
        void *dst = vm_gpa_ptr(vm, gpa);
        if (!dst)
            return -1; /* out of memory */
        memcpy(dst, s, chunk);
        gpa += chunk;
        s += chunk;
        len -= chunk;
    }
    return 0;
}
