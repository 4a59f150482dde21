#pragma once
// hardening: process and host checks for the programs that hold keys or
// plaintext (isr-kiosk, isrctl, the disk server it runs): core dumps off,
// the swap check, and private directories (owned by us, nobody else may
// write, never a symlink).
//
// Free functions, no shared state; thread-safe (disableCoreDumps changes the
// whole process, call it first thing in main).

#include "util/result.h"

#include <string>
#include <vector>

namespace isr::hardening {

// prctl(PR_SET_DUMPABLE, 0) and RLIMIT_CORE 0 (soft and hard): a crash
// writes no core file with the keyring, the typed password or decrypted
// chunks in it, and other processes of the same user cannot ptrace us or
// read /proc/<pid>/mem. Call first thing in main(), before any secret exists.
Status disableCoreDumps();

// ---- swap -------------------------------------------------------------------

struct SwapArea {
    std::string path;   // as /proc/swaps names it (octal escapes decoded)
    std::string type;   // "partition" or "file"
    bool safe = false;  // encrypted (dm-crypt below it) or in memory (zram)
    std::string reason; // why it is or is not safe, for the log and the message
};

// The active swap areas, from `procSwaps` (normally /proc/swaps), judged with
// the block devices under `sysRoot` (normally /sys): zram is safe (RAM);
// a device-mapper device is safe if it, or a device below it (LVM on LUKS,
// through dm/slaves), is a dm-crypt mapping (/sys/block/dm-N/dm/uuid starts
// with "CRYPT-"); a swap file is judged by the device its file system is on
// (/sys/dev/block/MAJ:MIN); anything else is not safe. The paths are
// parameters so that tests can hand it a fake /proc/swaps and /sys.
Result<std::vector<SwapArea>> activeSwap(const std::string& procSwaps = "/proc/swaps",
                                         const std::string& sysRoot = "/sys");

// Ok when every active swap area is safe (or there is none); else
// Unsupported naming the unsafe areas: plaintext of a user's VM, keys or
// typed passwords could be paged out to this kiosk's disk and outlive the
// session.
Status checkSwapEncrypted(const std::string& procSwaps = "/proc/swaps",
                          const std::string& sysRoot = "/sys");

// ---- private directories ---------------------------------------------------

// Ok if `path` is a directory (not a symlink to one), owned by this
// process's effective uid, and neither group- nor world-writable.
// AccessDenied naming what is wrong otherwise; NotFound if it is missing.
Status checkPrivateDirectory(const std::string& path);
// Creates `path` (mode 0700; its parent must exist) if missing, then
// checkPrivateDirectory. A directory someone else made first is refused.
Status ensurePrivateDirectory(const std::string& path);
// mkdtemp(parent/prefixXXXXXX), mode 0700: an unpredictable, fresh,
// private directory. Returns its path.
Result<std::string> makePrivateTempDirectory(const std::string& parent, const std::string& prefix);

} // namespace isr::hardening
