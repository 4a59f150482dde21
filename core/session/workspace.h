#pragma once
// Workspace: the kiosk-side files of one session, and their wiping.
//
//   <stateDir>/sessions/<random>/   mode 0700: the disk's NBD socket, the
//                                   sealed overlay, the serial socket, and
//                                   `scratch`, a record of the directory below
//   <scratch parent>/isr-memimg-*/  memory-backed (tmpfs): memory.save, the
//                                   saved VM (guest RAM in clear), and the
//                                   restore FIFO
//
// The scratch lives outside the state directory, so its path is recorded in
// the session directory: the next start of a kiosk that crashed finds and
// wipes it (wipeCrashed). Only directories memimg created (isr-memimg-*) are
// ever wiped, whatever a record says.
//
// Threads: one owner; not thread-safe.

#include "util/result.h"

#include <cstdint>
#include <optional>
#include <string>

namespace isr::session {

class Workspace {
public:
    // Before any session of this process: wipes the scratch of every session
    // a crashed previous run left under <stateDir>/sessions, then removes
    // those session directories (their overlays are ciphertext under keys
    // that died with that process, so useless).
    static void wipeCrashed(const std::string& stateDir);

    // Makes the session directory and the scratch (scratchParent empty: the
    // memimg default, /dev/shm). On failure failedAt() names the directory
    // that could not be made or written; what was made stays for wipe().
    Status create(const std::string& stateDir, const std::string& scratchParent);
    // Removes the scratch (overwritten with zeros first) and the session
    // directory. Idempotent; never stops half-way (failures are logged).
    void wipe();

    bool active() const { return !sessionDir_.empty() || !scratchDir_.empty(); }
    const std::string& sessionDir() const { return sessionDir_; }
    const std::string& scratchDir() const { return scratchDir_; }
    const std::string& savePath() const { return savePath_; } // the saved VM, in scratch
    const std::string& failedAt() const { return failedAt_; }

private:
    std::string sessionDir_, scratchDir_, savePath_, failedAt_;
};

// Free bytes for an unprivileged writer on the file system holding `path`;
// nullopt if it cannot be asked.
std::optional<std::uint64_t> freeBytesAt(const std::string& path);

} // namespace isr::session
