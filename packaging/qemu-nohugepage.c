/* LD_PRELOAD for QEMU when guest RAM is a file on FUSE (issue #17,
 * core/disk/README.md "Guest RAM over FUSE").
 *
 * QEMU calls madvise(MADV_HUGEPAGE) on all guest RAM. On kernels whose FUSE
 * page cache has large folios (6.18 here) every fault on the RAM file then
 * reads a whole 2 MiB folio, as two 1 MiB FUSE reads, whatever the readahead
 * setting: restore pulls in 4-5x more than the guest touches (measured in
 * the spike: 9.2 s against 3.9 s to the first answer at 100 Mbit/s). This
 * makes MADV_HUGEPAGE a no-op that succeeds, so faults stay readahead-sized.
 * Every other advice goes to the kernel unchanged. QEMU's other users of
 * MADV_HUGEPAGE (the TCG code buffer) lose transparent huge pages too; no
 * effect on correctness.
 *
 * The system call is made directly (no dlsym), so the library needs nothing
 * but libc and works whatever QEMU links. Built without sanitizers: a
 * preloaded library must not pull in a sanitizer runtime. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int madvise(void *address, size_t length, int advice) {
    if (advice == MADV_HUGEPAGE)
        return 0;
    long result = syscall(SYS_madvise, address, length, advice);
    return result == 0 ? 0 : -1; /* syscall() has set errno */
}
