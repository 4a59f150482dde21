#pragma once
// Named fault points for crash and error testing.
//
//   ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.commit.after-version"));
//
// When the environment variable ISR_FAULT names a point, the point fires on
// its N-th hit:
//
//   ISR_FAULT=<point>[:kill|:fail][@N][,<point>...]     (default kill, N = 1)
//
//   kill  the process dies at once with SIGKILL: no destructors, no atexit,
//         no flush, no unlock -- what a power cut or `kill -9` leaves behind.
//   fail  the point returns Error(Errc::Io, "injected fault at <point>"),
//         which the caller propagates like any other I/O error.
//
// Either way one line "isr-fault: fired <point> <mode> hit <N>" goes to
// stderr first, so a test can tell that the point was reached.
//
// The environment is read once, at the first point reached. An ISR_FAULT
// that does not parse (unknown point, bad mode, N = 0) is a test bug: the
// process prints why and exits with status 70 rather than run unarmed.
// When ISR_FAULT is unset a point costs one relaxed atomic load.
//
// Every point is listed in kFaultPoints below; ISR_FAULT_POINT refuses at
// compile time a name that is not there, so the list is always complete
// (`isrctl debug fault-points` prints it; core/util/README.md explains each).
//
// Thread-safe: points may be hit from any thread.

#include "util/result.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace isr::fault {

struct PointInfo {
    const char* name;
    const char* where; // one line: what has happened when the point is reached
};

// In the order a session reaches them.
inline constexpr PointInfo kFaultPoints[] = {
    {"session.signin.before", "store opened, before the account is fetched and opened"},
    {"parcel.lock.before", "before the lock object is created (put-if-absent or take-over put)"},
    {"parcel.lock.after", "the lock object exists, before the caller learns it holds the lock"},
    {"session.checkout.after-manifest",
     "lock held and the latest manifest read, before the heartbeat starts"},
    {"parcel.heartbeat.before", "each heartbeat: lock checked ours, before it is rewritten"},
    {"session.fetch.before-disk",
     "session and scratch directories made, before the disk and NBD server open"},
    {"memimg.stream.chunk",
     "each memory-image chunk fetched and verified, before it is written to the restore FIFO"},
    {"session.restore.before", "before libvirt restores (or boots) the VM"},
    {"session.restore.after", "the VM runs, before the session reports Running"},
    {"session.trickle.chunk", "each dirty disk chunk the trickle uploads, before its upload"},
    {"session.save.before", "Suspend & Leave: trickle stopped, before the VM is saved"},
    {"session.save.after", "the VM saved into scratch (QEMU gone), before chunking"},
    {"session.memimg.batch", "each batch of memory-image chunks, before it is uploaded"},
    {"parcel.upload.batch",
     "each store batch of chunks (memory, disk, trickle) uploaded, before the next one"},
    {"session.disk.upload.before", "memory image uploaded, before the new disk chunks go up"},
    {"parcel.commit.before-version",
     "every chunk durable, before versions/<n+1> is created (the manifest write)"},
    {"parcel.commit.after-version", "versions/<n+1> created, before head is updated"},
    {"parcel.commit.after-head", "head updated, before the commit returns"},
    {"session.unlock.before", "committed, heartbeat stopped, before the lock is released"},
    {"parcel.unlock.before-remove", "the lock read and found ours, before it is deleted"},
    {"session.wipe.before", "committed and unlocked, before the kiosk is wiped"},
    {"session.wipe.after-vm",
     "VM, NBD server and overlay gone, before the scratch (saved memory) is wiped"},
    {"store.file.before-rename",
     "FileStore: each object written to its temp file and synced, before the rename"},
    // Not a session's: a password change (isrctl user passwd) rotating the
    // master key (parcel/account.cpp).
    {"parcel.rotate.after-account",
     "password change: the account written under the new password and master, before any "
     "version is re-sealed"},
    {"parcel.rotate.reseal",
     "each version re-sealed under the new master and written, before it is read back"},
    {"parcel.rotate.before-finish",
     "every version re-sealed, before the account is rewritten without the previous masters"},
    // Not a session's: rotating the convergence secret (isrctl user rekey;
    // parcel/rekey.cpp).
    {"parcel.rekey.after-account",
     "rekey: the account written with the new convergence secret and master, before any "
     "version is converted"},
    {"parcel.rekey.chunks",
     "rekey: each version's chunks re-encrypted and uploaded, before its manifest is rewritten"},
    {"parcel.rekey.version", "rekey: each version rewritten, before its read-back and refs"},
    {"parcel.rekey.before-finish",
     "rekey: every version converted, before the account drops the old secret and masters"},
    // Not a session's: garbage collection (isrctl gc; parcel/maintenance.cpp).
    {"parcel.gc.prune",
     "gc: everything read and planned, before each pruned version (then its reference list) is "
     "removed"},
    {"parcel.gc.sweep", "gc: versions pruned, before each unreferenced chunk is removed"},
};
inline constexpr std::size_t kFaultPointCount = sizeof(kFaultPoints) / sizeof(kFaultPoints[0]);

namespace detail {
// Fails constant evaluation (a compile error) for a name not in kFaultPoints.
consteval std::size_t pointIndex(std::string_view name) {
    for (std::size_t i = 0; i < kFaultPointCount; ++i)
        if (std::string_view(kFaultPoints[i].name) == name)
            return i;
    throw "ISR_FAULT_POINT: unknown fault point; add it to kFaultPoints in util/fault.h";
}
// -1: ISR_FAULT not read yet, 0: nothing armed, 1: something armed.
extern std::atomic<int> gState;
int loadState();
Status hit(std::size_t index);
inline bool anyArmed() {
    int s = gState.load(std::memory_order_relaxed);
    return s == 0 ? false : s == 1 ? true : loadState() == 1;
}
} // namespace detail

enum class Mode { Kill, Fail };

struct Arm {
    std::string point;
    Mode mode = Mode::Kill;
    std::uint64_t onHit = 1; // fires on this hit (1-based)
};

// Parses an ISR_FAULT value; InvalidArgument naming the bad part.
Result<std::vector<Arm>> parseSpec(std::string_view spec);
// Replaces what is armed (and resets hit counts); "" disarms. For tests that
// drive fault points in-process; InvalidArgument if the spec does not parse.
Status arm(std::string_view spec);
// How often a point was hit since it was armed (0 for a point not armed).
std::uint64_t hits(std::string_view point);
const char* modeName(Mode mode);

} // namespace isr::fault

// A Status: ok unless the point is armed and fires in fail mode.
#define ISR_FAULT_POINT(name)                                                                      \
    (::isr::fault::detail::anyArmed()                                                              \
         ? ::isr::fault::detail::hit(                                                              \
               std::integral_constant<std::size_t, ::isr::fault::detail::pointIndex(name)>::value) \
         : ::isr::Status())
