/* Guest-physical memory seen from the hypervisor: the loader and device
 * models reach guest RAM through these. Pure C over the VM's GFN map, so
 * the host tests link it too. */
#include "lib/string.h"
#include "mm/mm_backend.h"
#include "vmx/vm.h"

void *vm_gpa_ptr(struct vm *vm, uint64_t gpa)
{
    uint64_t gfn = gpa >> PAGE_SHIFT;
    if (gfn >= vm->nframes)
        return NULL;
    return (uint8_t *)mm_phys_to_virt((uint64_t)vm->gfn_mfn[gfn] << PAGE_SHIFT) +
           (gpa & (PAGE_SIZE - 1));
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
        memcpy(vm_gpa_ptr(vm, gpa), s, chunk);
        gpa += chunk;
        s += chunk;
        len -= chunk;
    }
    return 0;
}
