#pragma once
// FuseExport: a BlockDevice served as one regular file on a FUSE mount inside
// the kiosk process (libfuse3's low-level API), so QEMU can map it as guest
// RAM (memory-backend-file, share=on): pages are read from the device when
// the guest first touches them and dirty pages are written back to it
// (issue #17; the route is in shared/notes/lazy-memory-spike.md).
//
//   <mountDir>/<fileName>   size = device.size(), the only file
//
//   read -> device read;  write -> device write;  fsync/flush -> device flush;
//   fallocate(PUNCH_HOLE|KEEP_SIZE) -> device trim;  ZERO_RANGE -> writeZeroes;
//   truncate to the same size: accepted; any other size: EINVAL;
//   create/mknod/mkdir/unlink/rmdir/rename/link/symlink: EPERM.
//
// The file is served through the kernel's page cache (no direct_io: QEMU must
// mmap it; no writeback_cache; keep_cache on every open). See README.md
// "Guest RAM over FUSE" for what that means for plaintext and errors.
//
// Threading: `threads` loop threads each read a request from the FUSE device
// and serve it to the end, so the BlockDevice is called from several threads
// at once (as the NBD server does). After stop() returns it is never called
// again.

#include "disk/block_device.h"
#include "util/result.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace isr::disk {

struct FuseExportOptions {
    // An existing directory, the mount point. Its parent's permissions are
    // the fence around the file (like the NBD socket's directory).
    std::string mountDir;
    std::string fileName = "pc.ram";
    // Let users other than the mounting one reach the file at all (QEMU as
    // isr-qemu / libvirt-qemu while the kiosk is root). Off: only the
    // mounting user (not even root, if that is someone else). A non-root
    // kiosk needs `user_allow_other` in /etc/fuse.conf for this.
    bool allowOther = false;
    // The file's mode and group as the kernel enforces them (the mount uses
    // default_permissions). Owner: the mounting user. fileGroup >= 0 sets the
    // group (e.g. QEMU's user's group, with 0660).
    unsigned fileMode = 0600;
    long fileGroup = -1;
    int threads = 4;
    // The most the kernel reads ahead per request (bytes). The kernel caps it
    // at what it offers (128 KiB by default for FUSE); 0 = page by page.
    std::uint32_t maxReadahead = 128 * 1024;
    // A request the device fails with Errc::Transient (the store cannot be
    // reached right now: link down, radosgw away, FileStore root gone) is
    // tried again, waiting `storeRetryFirst` and doubling up to
    // `storeRetryMax`, until it succeeds, fails otherwise, or stop() comes.
    // Guest RAM is not a disk: an error on a page is SIGBUS and QEMU dies
    // with everything since the resume, so the vCPU that touched a page
    // still in the store waits for it, as it does for a slow store. Other
    // errors (a chunk missing or altered: Corrupt, NotFound) fail at once.
    std::chrono::milliseconds storeRetryFirst{250};
    std::chrono::milliseconds storeRetryMax{4000};
};

struct FuseExportStats {
    std::uint64_t reads = 0;
    std::uint64_t bytesRead = 0;
    std::uint64_t writes = 0;
    std::uint64_t bytesWritten = 0;
    std::uint64_t flushes = 0; // fsync and flush (close) requests
    std::uint64_t trims = 0;   // fallocate punch/zero requests
    std::uint64_t errors = 0;  // requests answered with an error
    // Requests waiting for an unreachable store now (storeRetryFirst), and
    // the retries made so far.
    std::uint64_t waitingForStore = 0;
    std::uint64_t storeRetries = 0;
};

class FuseExport {
public:
    // Mounts and starts the loop threads; the file is reachable when this
    // returns. `device` must outlive the export (or stop() come first).
    static Result<std::unique_ptr<FuseExport>> start(BlockDevice& device,
                                                     FuseExportOptions options);
    ~FuseExport(); // calls stop()
    FuseExport(const FuseExport&) = delete;
    FuseExport& operator=(const FuseExport&) = delete;

    // Joins the loop threads (a request being served finishes first; one
    // waiting for an unreachable store ends with its error), then
    // aborts the connection and detaches the mount (lazily: a QEMU that still
    // maps the file keeps its mapping; its next fault on a page not in the
    // page cache gets SIGBUS, and dirty pages not yet written back are lost).
    // Call it after QEMU is gone and the file was fsynced. Idempotent.
    void stop();

    // A mount left behind by a process that died while serving (a kiosk
    // killed mid-session): its connection is gone (reads fail ENOTCONN;
    // stat may still answer from the kernel's attribute cache) and nothing
    // under it can be removed until it is detached, lazily (umount2
    // (MNT_DETACH) as root, else `fusermount3 -u -z`). For a directory the
    // caller knows no live export serves (a crashed session's): whatever
    // is mounted on `mountDir` goes. Ok, doing nothing, when nothing is.
    static Status detachLeftover(const std::string& mountDir);

    const std::string& mountDir() const;
    const std::string& filePath() const; // <mountDir>/<fileName>
    FuseExportStats stats() const;

    struct Impl;

private:
    explicit FuseExport(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace isr::disk
