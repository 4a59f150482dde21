// The session state machine (see session.h for the stages and transitions):
// the resume and suspend sequences, and the facts each failure reports. The
// helpers it drives each have a room of their own: the lock lease
// (parcel/lock_lease.h), the byte counter (store/counting_store.h), the stage
// and timeline bookkeeping (stage_tracker.h), the VM watcher (vm_watcher.h),
// the streaming restore (restore_stream.h), the memory image upload
// (memory_upload.h) and the session's files (workspace.h); the tables are in
// stages.cpp.
#include "session/session.h"

#include "cache/cache.h"
#include "cache/chunk_source.h"
#include "crypto/crypto.h"
#include "disk/fuse_export.h"
#include "disk/nbd_server.h"
#include "disk/parcel_disk.h"
#include "memimg/memimg.h"
#include "parcel/lock_lease.h"
#include "session/firmware_state.h"
#include "session/guest_clock.h"
#include "session/kioskconfig.h"
#include "session/memory_upload.h"
#include "session/metrics.h"
#include "session/restore_stream.h"
#include "session/seen_versions.h"
#include "session/stage_tracker.h"
#include "session/vm_spec.h"
#include "session/vm_watcher.h"
#include "session/workspace.h"
#include "store/counting_store.h"
#include "util/fault.h"
#include "util/log.h"
#include "vm/confinement.h"
#include "vm/vm.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
#include <set>
#include <unistd.h>

namespace isr::session {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double secondsSince(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Counts and nearest-rank percentiles (milliseconds) of a RAM file's read
// latency window (Session::memoryFaults).
MemoryFaults summarizeFaults(disk::ReadLatencies l) {
    MemoryFaults f;
    f.lazy = true;
    f.windowOpen = l.windowOpen;
    f.local = l.localMicros.size();
    f.remote = l.remoteMicros.size();
    auto pct = [](std::vector<std::uint32_t>& v, double q) {
        if (v.empty())
            return 0.0;
        auto k = std::size_t(q * double(v.size() - 1) + 0.5);
        std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
        return double(v[k]) / 1000.0;
    };
    f.localP50Ms = pct(l.localMicros, 0.50);
    f.localP99Ms = pct(l.localMicros, 0.99);
    f.remoteP50Ms = pct(l.remoteMicros, 0.50);
    f.remoteP99Ms = pct(l.remoteMicros, 0.99);
    return f;
}

// The RAM hot set a version records: the first RAM chunks the session
// touched, in that order, up to 64 MiB and a quarter of the RAM (what the
// next resume fetches before anything else). Over a long session the touch
// list covers all the RAM the guest used; its head is what the resume and
// the first moments after it needed.
std::vector<std::uint64_t> hotSetOf(const std::vector<std::uint64_t>& firstTouch,
                                    std::uint64_t ramChunks, std::uint32_t chunkSize) {
    constexpr std::uint64_t kHotSetBytes = 64ull << 20;
    const std::uint64_t limit = std::max<std::uint64_t>(
        1, std::min<std::uint64_t>(kHotSetBytes / chunkSize, ramChunks / 4));
    return {firstTouch.begin(),
            firstTouch.begin() + std::ptrdiff_t(std::min<std::uint64_t>(firstTouch.size(), limit))};
}

std::string hostName() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0])
        return "kiosk";
    return buf;
}

// The facts of one failure, as its site knows them; fail() adds the rest.
Failure facts(Stage stage, FailureCause cause, ErrorKind kind = ErrorKind::None) {
    Failure f;
    f.stage = stage;
    f.cause = cause;
    f.kind = kind;
    return f;
}

// How many parents a resume reads to check the chain between the version
// it opens and the newest this kiosk has seen (FORMAT.md, "Chain"): one
// small GET each; a gap wider than this is checked only at its ends.
constexpr unsigned kMaxChainReads = 8;

// How far a lazy version's device-state stream fetches ahead of QEMU's
// reading, in chunks: all of it for a real one (the reference desktop's is
// 13 MB in 108 chunks, 2026-12-04), bounded for a manifest that claims more.
constexpr std::size_t kDeviceStateChunksAhead = 512;

SavedVersion savedOf(const parcel::Manifest& m) {
    return SavedVersion{m.version, m.created, m.kiosk};
}

// The kiosk's own storage at `where` is full or unusable.
Failure storageFacts(Stage stage, const std::string& where) {
    Failure f = facts(stage, FailureCause::KioskStorage);
    f.where = where;
    f.freeBytes = freeBytesAt(where);
    return f;
}

// A VM that could not start or be restored: out of space is the kiosk's
// problem (NoSpace), anything else is the VM's.
ErrorKind vmKind(const Error& error) {
    return error.code == Errc::NoSpace ? ErrorKind::NoSpace : ErrorKind::VmFailed;
}

} // namespace

struct Session::Impl {
    Impl(KioskConfig c, Listener listener)
        : config(std::move(c)), tracker(std::move(listener)), seen(config.stateDir + "/seen") {}

    const KioskConfig config;
    std::unique_ptr<vm::Hypervisor> hypervisor;
    std::unique_ptr<cache::ChunkCache> cache;
    // Before the tracker, which points at it: destroyed after it.
    std::unique_ptr<KioskMetrics> metrics;    // the operators' textfile; set at create()
    StageTracker tracker;                     // stage, failure, timeline; any thread
    std::atomic<bool> cancelRequested{false}; // requestCancel() during a resume
    const SeenVersions seen;                  // the newest version seen, per user and parcel
    // Keys the log's user and parcel tags (logTag): random, per kiosk, in
    // <stateDir>/log.key (0600). Tags are stable on one kiosk, so its journal
    // can follow a user's sessions, and unlinkable across kiosks; without the
    // kiosk's disk they cannot be tested against a list of names.
    crypto::Secret logKey;

    std::string logTag(const char* kind, const std::string& name) const {
        if (logKey.empty())
            return {};
        auto h = crypto::keyedHash(logKey.view(), asBytes(std::string(kind) + ":" + name));
        return toHex(ByteView(h.data(), 8));
    }

    // The active session. Only the controlling thread touches these, and
    // the VM watcher's callback while Running (every public operation stops
    // the watcher before it changes anything).
    std::string user, parcelName;
    std::unique_ptr<store::CountingStore> store;
    std::unique_ptr<parcel::Parcels> parcels;
    // From the first checkout to sign-out, kept across a retry of a failed
    // resume (declared after parcels, which it uses: destroyed before them).
    std::unique_ptr<parcel::LockLease> lease;
    parcel::Manifest base;
    std::uint64_t committed = 0;
    std::optional<SavedVersion> committedSave; // what this sign-in's suspend committed
    Workspace workspace;
    // The one road for this user's chunks (cache, then the store, one
    // download per name): the disk, its hoard and the memory streamer
    // share it. Made in openDisk(); the disk holds it too.
    std::shared_ptr<cache::ChunkSource> chunks;
    const std::string& sessionDir = workspace.sessionDir();
    // Replaced only under diskMutex, so hoard() can read it from any thread;
    // never destroyed under it (see destroyDisk).
    std::unique_ptr<disk::ParcelDisk> disk;
    mutable std::mutex diskMutex;
    std::unique_ptr<disk::NbdServer> nbd;
    // Lazy memory (issue #17; README "Lazy memory"): the guest's RAM as a
    // second ParcelDisk -- base: the manifest's RAM table, or all zeroes for
    // a VM that starts here -- served to QEMU as one file on FUSE. Set for
    // a version saved lazily and, with config.lazyMemory, for every VM.
    std::unique_ptr<disk::ParcelDisk> ram;
    std::unique_ptr<disk::FuseExport> ramExport;
    std::optional<vm::Vm> machine;
    VmWatcher watcher;      // while Running
    FirstBoot firstBoot;    // a firmware parcel's first boot, until its OS shows (vm_watcher.h)
    GuestClock clock;       // after a restore, until the agent answers
    FirmwareState firmware; // NVRAM / TPM state of a firmware parcel (firmware_state.h)
    // Serialises leaving Running (suspendAndLeave, abandon) with the lease's
    // heartbeat thread stopping the VM of a parcel taken over (lockLost).
    std::mutex leaveMutex;
    std::atomic<bool> takenOver{false};                 // the lease found the lock taken over
    bool memorySaved = false;                           // the scratch holds this session's saved VM
    std::optional<std::vector<chunk::ChunkRef>> recipe; // memory image uploaded

    void enter(Stage next) { tracker.enter(next); }
    Stage stage() const { return tracker.stage(); }

    // The committed version that is safe whatever happens next: the one this
    // sign-in's suspend committed, else the one it started from.
    std::optional<SavedVersion> lastSave() const {
        if (committedSave)
            return committedSave;
        if (base.version == 0)
            return std::nullopt;
        return SavedVersion{base.version, base.created, base.kiosk};
    }

    // Records the failure and enters Failed. The site gives the stage, the
    // cause and what else it knows; fail() adds the kind (from the error
    // unless the site chose), the last save and the error's own words as
    // detail. The words a person reads are the renderer's
    // (ui/text/failuretext.h), from these facts.
    //
    // Failed holds nothing of the user unless it must (see README, "Failed
    // holds no keys"): a failure that leaves nothing to save wipes the VM,
    // the disk and the scratch, releases the lock if this kiosk holds it and
    // drops the user's keys BEFORE it is announced, so every way back asks
    // for the password again. Only a failed suspend with something left to
    // save (the saved VM, or a VM still alive) keeps its state and keys so
    // that retry(password) can finish it.
    Error fail(Failure f, const Error& error) {
        if (f.kind == ErrorKind::None)
            f.kind = classify(error);
        if (!f.lastSave)
            f.lastSave = lastSave();
        if (f.detail.empty())
            f.detail = error.describe();
        if (f.stage != Stage::Wiping && !keepsStateAfter(f)) {
            wipeLocal();
            signOut();
        }
        tracker.fail(f);
        return error;
    }

    // A failed suspend that still has something to save (and was not
    // taken over) keeps it for retry(password); nothing else does.
    bool keepsStateAfter(const Failure& f) {
        if (f.stage != Stage::Suspending || f.cause == FailureCause::LockTakenOver)
            return false;
        return memorySaved || vmAlive();
    }

    // True while this session holds a user's keys (a failed suspend kept
    // for retry(password)).
    bool holdsKeys() const { return parcels != nullptr; }

    // The password again, checked against the account of the user this
    // session holds, before anything is touched. AuthFailed if it is wrong.
    Status verifyPassword(std::string_view password) {
        if (!parcels || !store)
            return Error(Errc::InvalidArgument, "sign in again");
        auto again = parcel::signIn(*store, user, password);
        if (!again.ok())
            return std::move(again).error();
        // The same keys -- or, after a password change while this session
        // held its parcel, an account that still lists our master as a
        // previous one (the rotation skips a locked parcel; FORMAT.md, "Key
        // rotation"): the new password is then the right one.
        const ByteView mine = parcels->secrets().master.view();
        if (crypto::equalConstantTime(again->master.view(), mine))
            return {};
        for (const auto& previous : again->previousMasters)
            if (crypto::equalConstantTime(previous.view(), mine))
                return {};
        return Error(Errc::AuthFailed, "authentication failed");
    }

    // On the lease's heartbeat thread: another kiosk took the parcel over.
    // While Running the VM is destroyed at once (no save: its state is no
    // longer this kiosk's to commit); the VM watcher then sees it end and
    // vmEnded() fails the session with LockTakenOver. In any other stage the
    // flag is enough: the resume checks it between stages, and a suspend
    // confirms the lock before it commits.
    void lockLost(const std::string& detail) {
        takenOver = true;
        std::lock_guard lk(leaveMutex);
        if (stage() != Stage::Running || !machine)
            return;
        ISR_LOG_WARN("session") << "the parcel was taken over (" << detail
                                << "): stopping the VM without saving";
        if (auto st = machine->destroy(); !st.ok()) {
            ISR_LOG_WARN("session") << "destroy: " << st.error().describe();
        }
    }

    // The failure for a lock another kiosk now holds: who, when known.
    Failure takenOverFacts(Stage at) {
        Failure f = facts(at, FailureCause::LockTakenOver, ErrorKind::LockedElsewhere);
        if (parcels) {
            if (auto holder = parcels->readLock(parcelName); holder.ok() && holder->has_value())
                f.holder = **holder;
        }
        return f;
    }

    // A fault injected at a named point (util/fault.h) fails the stage like
    // the I/O error it stands for.
    Status injected(Status point, Stage at) {
        if (point.ok())
            return {};
        return fail(facts(at, FailureCause::Generic), point.error());
    }

    void report(const std::string& what, std::uint64_t done, std::uint64_t total,
                Clock::time_point since) {
        tracker.progress(what, done, total, since);
    }

    // ---- pieces ----

    // True while the VM's QEMU is still there (running or paused).
    bool vmAlive() const {
        if (!machine)
            return false;
        auto st = machine->status();
        return st.ok() && (st->state == vm::VmState::Running || st->state == vm::VmState::Paused);
    }

    // While Running: the watcher calls vmEnded() once if the VM ends.
    void watchVm() {
        watcher.start(
            *machine,
            [this](vm::VmStopReason reason, const std::string& stateReason) {
                vmEnded(reason, stateReason);
            },
            &firstBoot);
    }

    // A firmware parcel that boots (no memory image): its operating system
    // must show within the bound (KioskConfig::firstBootTimeout), or the
    // session ends with OsDidNotStart instead of showing a firmware's boot
    // menu for ever. The signs: the guest's balloon driver or agent
    // (Vm::guestOsSign), or a write to the parcel's disk (firmware and boot
    // menus do not write it; every installed OS does as it starts).
    void watchFirstBoot(const vm::VmSpec& spec) {
        if (spec.firmware == vm::Firmware::DirectKernel)
            return;
        const auto bound = firstBootBound();
        if (bound.count() == 0)
            return;
        firstBoot.since = Clock::now();
        firstBoot.bound = bound;
        firstBoot.sign = [this]() -> std::string {
            if (disk && disk->stats().overlayChunks > 0)
                return "writes to its disk";
            return machine ? machine->guestOsSign() : std::string();
        };
        firstBoot.notStarted = [this](std::chrono::milliseconds waited) { osDidNotStart(waited); };
        firstBoot.settled = false;
    }

    std::chrono::seconds firstBootBound() const {
        if (config.firstBootTimeout)
            return *config.firstBootTimeout;
        return hypervisor->accelerator() == vm::Accelerator::Kvm ? kFirstBootTimeoutKvm
                                                                 : kFirstBootTimeoutTcg;
    }

    // On the watcher's thread: the bound passed with no sign of the OS. The
    // VM is stopped without saving: nothing of the user ran, the version
    // this session started from stays the newest, and whatever the firmware
    // wrote to its NVRAM meanwhile goes with the VM.
    void osDidNotStart(std::chrono::milliseconds waited) {
        if (stage() != Stage::Running)
            return;
        ISR_LOG_WARN("session") << "the guest's operating system showed no sign of running "
                                << waited.count() / 1000 << " s after the firmware started";
        Failure f = facts(Stage::Running, FailureCause::OsDidNotStart, ErrorKind::VmFailed);
        f.lastSave = lastSave();
        f.detail = "no sign of the guest's operating system (balloon driver, guest agent or a "
                   "write to its disk) " +
                   std::to_string(waited.count() / 1000) +
                   " s after the firmware started: the firmware found nothing it could start, "
                   "or what it started stopped";
        endOnWatcherThread(std::move(f));
    }

    // On the watcher's thread: the VM is gone while Running.
    void vmEnded(vm::VmStopReason reason, const std::string& stateReason) {
        if (stage() != Stage::Running)
            return;
        ISR_LOG_WARN("session") << "the VM ended while running: " << vm::vmStopReasonName(reason)
                                << " (state reason " << stateReason << ")";
        // A guest that powered itself off left a consistent disk, but this
        // kiosk keeps a computer only as a suspended VM (memory image +
        // disk) through Suspend & Leave: it is treated like any other end of
        // the VM, and the message says so plainly.
        bool poweredOff = reason == vm::VmStopReason::GuestShutdown;
        Failure f =
            takenOver ? takenOverFacts(Stage::Running)
                      : facts(Stage::Running,
                              poweredOff ? FailureCause::GuestPoweredOff : FailureCause::VmStopped,
                              ErrorKind::VmFailed);
        f.lastSave = lastSave();
        f.detail = takenOver ? "the parcel was taken over by another kiosk; the VM was stopped"
                             : std::string("the VM ended: ") + vm::vmStopReasonName(reason) +
                                   " (libvirt state reason " + stateReason + ")";
        // Lazy memory: a RAM chunk damaged in the store is EIO to the guest's
        // read, and QEMU dies of the SIGBUS; the operator's detail says so.
        if (const std::uint64_t bad = ram && !takenOver ? ram->stats().corruptChunks : 0; bad > 0)
            f.detail += "; " + std::to_string(bad) +
                        " of its memory's chunks from the store failed verification (QEMU got an "
                        "I/O error reading them)";
        endOnWatcherThread(std::move(f)); // the stop reason was read above
    }

    // Nothing of this VM can be saved any more: wipe, unlock (unless taken
    // over) and drop the keys here, on the watcher's thread (every public
    // operation joins it first), then fail with `f`. The VM object stays
    // until the next call: openDisplay() may be reading it on the UI's
    // worker.
    void endOnWatcherThread(Failure f) {
        if (disk)
            disk->stopTrickle();
        if (machine) {
            (void)machine->destroy();
            deleteVmLog(*machine);
        }
        dropOnWatcherThread();
        tracker.fail(f);
    }

    // The RAM export (its mount is gone before the RAM disk), the RAM disk
    // and the disk with their hoards, the NBD server, and `chunks` last:
    // the hoards fetch through it, and it through this user's `parcels`
    // (a RAM hoard left running past signOut() fetched through a null
    // `parcels`: test_e2e_lazy_memory damagedRemoteMemoryStopsTheVm). Then
    // the firmware's TPM state. The VM must be gone.
    void dropVmBackends() {
        if (ramExport)
            ramExport->stop(); // QEMU is gone: nothing maps the file now
        ramExport.reset();
        {
            // Like destroyDisk: out of hoard()'s sight under the mutex,
            // destroyed outside it (stops its hoard, deletes its overlay).
            std::unique_ptr<disk::ParcelDisk> dying;
            {
                std::lock_guard lk(diskMutex);
                dying = std::move(ram);
            }
            dying.reset();
        }
        if (nbd)
            nbd->stop();
        destroyDisk();
        chunks.reset();  // its fetch function points into this user's parcels
        firmware.wipe(); // the TPM state lives in libvirt's root, not the session dir
    }

    // wipeLocal() and signOut() without stopping the watcher (we are on
    // its thread) and without resetting the dead VM object.
    void dropOnWatcherThread() {
        dropVmBackends();
        workspace.wipe();
        memorySaved = false;
        recipe.reset();
        signOut();
    }

    Status checkOut(bool takeOver) {
        // Every checkout is a fresh sign-in (a failure drops the lease with
        // the keys), so the lease is new here.
        takenOver = false;
        lease = std::make_unique<parcel::LockLease>(*parcels, parcelName, config.kioskId);
        auto attempt = lease->acquire(takeOver);
        if (!attempt.ok())
            // AuthFailed: the user's password (and keys) changed since this
            // sign-in (Parcels::lock); they sign in again.
            return fail(facts(Stage::CheckingOut, attempt.error().code == Errc::AuthFailed
                                                      ? FailureCause::WrongCredentials
                                                      : FailureCause::StoreUnreachable),
                        attempt.error());
        if (!attempt->acquired) {
            const auto& h = attempt->lock;
            Failure f = facts(Stage::CheckingOut, FailureCause::LockedElsewhere);
            f.holder = h;
            return fail(std::move(f),
                        Error(Errc::Locked, "your computer is open at another kiosk (" +
                                                h.holderLabel() + ") since " +
                                                std::to_string(h.since)));
        }
        auto latest = parcels->latest(parcelName);
        if (!latest.ok())
            return fail(
                facts(Stage::CheckingOut, classify(latest.error()) == ErrorKind::StoreUnreachable
                                              ? FailureCause::StoreUnreachable
                                              : FailureCause::ParcelNotFound),
                latest.error());
        auto m = parcels->manifest(parcelName, *latest);
        if (!m.ok())
            return fail(facts(Stage::CheckingOut, classify(m.error()) == ErrorKind::StoreUnreachable
                                                      ? FailureCause::StoreUnreachable
                                                      : FailureCause::DamagedVersion),
                        m.error());
        ISR_TRY_STATUS(checkAgainstSeen(*m));
        base = std::move(*m);
        ISR_TRY_STATUS(
            injected(ISR_FAULT_POINT("session.checkout.after-manifest"), Stage::CheckingOut));
        std::string missingPackage;
        if (auto st = bootProfileAvailable(base.vm, &missingPackage); !st.ok()) {
            Failure f = facts(Stage::CheckingOut, FailureCause::BootProfileUnavailable);
            f.bootProfile =
                base.vm.boot == "firmware" ? "firmware/" + base.vm.firmware : base.vm.boot;
            f.missingPackage = missingPackage;
            return fail(std::move(f), st.error());
        }
        lease->startHeartbeat(config.heartbeatInterval,
                              [this](const std::string& detail) { lockLost(detail); });
        tracker.resuming(savedOf(base));
        return {};
    }

    // The store can withhold, replay or reorder the sealed manifests, never
    // forge one (FORMAT.md, "Chain"). Before anything of the served version
    // runs: refuse a newest version older than one this kiosk has seen (a
    // rollback), another manifest for a version it has seen, or parents that
    // are not what their children were made from (a fork). Nothing is
    // touched on the store, so nothing is lost and no commit can land on top
    // of a rolled-back head. Passing, the served version becomes the newest
    // this kiosk has seen.
    Status checkAgainstSeen(const parcel::Manifest& served) {
        const std::optional<SeenVersion> known = seen.load(parcels->secrets(), parcelName);
        auto refuse = [&](FailureCause cause, const std::string& why) {
            Failure f = facts(Stage::CheckingOut, cause, ErrorKind::Corrupt);
            f.served = savedOf(served);
            if (known)
                f.seen = SavedVersion{known->version, known->created, known->kiosk};
            return fail(std::move(f), Error(Errc::Corrupt, why));
        };
        const std::string name = "parcel '" + parcelName + "'";
        if (known && served.version < known->version)
            return refuse(FailureCause::StoreRolledBack,
                          "the store served version " + std::to_string(served.version) + " of " +
                              name + " as its newest, but this kiosk has seen version " +
                              std::to_string(known->version) + ": an older copy (rolled back)");
        // A version `isrctl user rekey` rewrote in place names the plaintext
        // it replaced (sealed under the user's master, so the store cannot
        // make it up): the same version this kiosk saw, not a fork.
        auto sameAsSeen = [&](const crypto::Hash& digest,
                              const std::optional<crypto::Hash>& rekeyedFrom) {
            return digest == known->digest || (rekeyedFrom && *rekeyedFrom == known->digest);
        };
        if (known && served.version == known->version &&
            !(served.digest && sameAsSeen(*served.digest, served.rekeyedFrom)))
            return refuse(FailureCause::StoreForked,
                          "the store's version " + std::to_string(served.version) + " of " + name +
                              " is not the one this kiosk saw (forked)");
        // The served version was made from the very version this kiosk saw:
        // the digest it binds is the proof (the store cannot make a sealed
        // manifest), so the parent is not read again -- a manifest less to
        // download (1.7 MB for the reference desktop) at every resume on
        // the kiosk that saw the last one. Any other case reads the chain.
        if (known && served.parent == known->version && served.version == known->version + 1 &&
            served.parentDigest && *served.parentDigest == known->digest) {
            rememberSeen(served);
            return {};
        }
        // At least the parent (when the store has it); down to the seen
        // version when it is near enough.
        std::uint64_t downTo = served.version - 1;
        if (known)
            downTo = std::min(downTo, known->version);
        auto links = parcels->verifyChain(parcelName, served, downTo, kMaxChainReads);
        if (!links.ok()) {
            if (links.error().code == Errc::Corrupt)
                return refuse(FailureCause::StoreForked, links.error().message);
            return fail(
                facts(Stage::CheckingOut, classify(links.error()) == ErrorKind::StoreUnreachable
                                              ? FailureCause::StoreUnreachable
                                              : FailureCause::Generic),
                links.error());
        }
        if (known && served.version > known->version) {
            for (const auto& link : *links)
                if (link.version == known->version && !sameAsSeen(link.digest, link.rekeyedFrom))
                    return refuse(FailureCause::StoreForked,
                                  "version " + std::to_string(served.version) + " of " + name +
                                      " does not descend from version " +
                                      std::to_string(known->version) +
                                      " this kiosk saw (the store forked the parcel)");
        }
        rememberSeen(served);
        return {};
    }

    // Records `m` as the newest version of the parcel this kiosk has seen.
    // A failure only weakens later checks on this kiosk: logged.
    void rememberSeen(const parcel::Manifest& m) {
        if (!m.digest)
            return;
        SeenVersion v{m.version, *m.digest, m.created, m.kiosk};
        if (auto st = seen.record(parcels->secrets(), parcelName, v); !st.ok()) {
            ISR_LOG_WARN("session") << "cannot record the version seen: " << st.error().describe();
        }
    }

    // What the disk and the RAM disk share: this user's road for chunks and
    // convergence secret, the session's overlay directory, the kiosk's hoard
    // settings; the hoard starts once the VM runs (resume()).
    disk::ParcelDiskConfig parcelDiskConfig(std::uint64_t size, std::uint32_t chunkSize,
                                            std::vector<std::optional<chunk::ChunkRef>> baseTable,
                                            std::vector<std::uint64_t> workingSet) {
        disk::ParcelDiskConfig dc;
        dc.diskSize = size;
        dc.chunkSize = chunkSize;
        dc.baseTable = std::move(baseTable);
        dc.source = chunks;
        dc.convergenceSecret = parcels->secrets().convergence.clone();
        dc.overlayDirectory = sessionDir;
        dc.workingSet = std::move(workingSet);
        dc.hoardThreads = config.hoardThreads;
        dc.hoardBandwidthLimit = config.hoardBandwidth;
        dc.hoardFreeSpaceReserve = config.hoardFreeSpaceReserve;
        // The memory image is what the first frame waits for: the hoard
        // starts once the VM runs, not competing with it for the link.
        dc.startHoard = false;
        return dc;
    }

    Status openDisk() {
        chunks =
            std::make_shared<cache::ChunkSource>(cache.get(), [this](const chunk::ChunkName& name) {
                return parcels->fetchChunk(name);
            });
        ISR_TRY_ASSIGN(auto opened, disk::ParcelDisk::open(parcelDiskConfig(
                                        base.diskSize, base.chunkSize, base.disk,
                                        base.workingSet)));
        {
            std::lock_guard lk(diskMutex);
            disk = std::move(opened);
        }
        disk::NbdServerOptions no;
        no.socketPath = sessionDir + "/disk.sock";
        ISR_TRY_ASSIGN(nbd, disk::NbdServer::start(*disk, no));
        return {};
    }

    // The guest's RAM as a file on FUSE, served from the RAM table through
    // the same road for chunks as the disk (cache, then the store). Its
    // hoard fetches the hot set first, then the rest, once the VM runs.
    Status openRam() {
        if (::access("/dev/fuse", R_OK | W_OK) != 0)
            return Error(Errc::Unsupported,
                         "this kiosk cannot serve a VM's memory lazily: /dev/fuse is missing or "
                         "not usable (" +
                             std::string(std::strerror(errno)) + "; install the fuse3 package)");
        // A RAM table keeps the chunk size it was started with; a new one
        // (a boot, a whole image turning lazy) gets the RAM's own size.
        const std::uint32_t chunkSize =
            base.lazyMemory() ? base.ramChunk() : parcel::kDefaultRamChunkSize;
        disk::ParcelDiskConfig rc = parcelDiskConfig(
            base.ramSize(), chunkSize,
            base.lazyMemory() ? base.ram
                              : std::vector<std::optional<chunk::ChunkRef>>(
                                    (base.ramSize() + chunkSize - 1) / chunkSize),
            base.ramHotSet);
        // No sector form: the kernel's page cache keeps a RAM page once it
        // was faulted in, so small re-reads never reach the disk; decoding
        // the whole RAM into a second file would only cost CPU and disk.
        rc.sectorCache = false;
        rc.hoardFillsSectors = false;
        // Smaller chunks, more of them: as many bytes in flight as the
        // disk's hoard keeps, else a cold RAM hoard is bound by round trips
        // (12,000 chunks of a 2 GiB desktop at 20 ms over 4 threads: 60 s,
        // where the bytes take 9 s at 100 Mbit/s).
        const int smaller = int(std::max<std::uint32_t>(1, base.chunkSize / chunkSize));
        rc.hoardThreads = std::min(16, config.hoardThreads * smaller);
        // And while the guest faults, as many bytes in flight as the disk's
        // one chunk, not a quarter of them (with one download in flight, a
        // warm desktop's memory hoard had 11,015 of 14,676 RAM chunks when
        // the user left a minute in, where at 128 KiB it had them all).
        rc.hoardBurstDownloads = smaller;
        ISR_TRY_ASSIGN(auto opened, disk::ParcelDisk::open(std::move(rc)));
        {
            std::lock_guard lk(diskMutex); // hoard() reads it from any thread
            ram = std::move(opened);
        }
        disk::FuseExportOptions fo;
        fo.mountDir = sessionDir + "/ram";
        std::error_code ec;
        fs::create_directory(fo.mountDir, ec);
        if (ec)
            return Error(Errc::Io, "creating " + fo.mountDir + ": " + ec.message());
        // As root QEMU runs as isr-qemu: the file is its group's, and the
        // mount lets other users in (the kernel then checks the mode).
        ISR_TRY_ASSIGN(auto account, vm::qemuAccount());
        if (account) {
            fo.allowOther = true;
            fo.fileMode = 0660;
            fo.fileGroup = long(account->gid);
        }
        ISR_TRY_ASSIGN(ramExport, disk::FuseExport::start(*ram, std::move(fo)));
        return {};
    }

    // Every page the guest dirtied is in the kernel's page cache of the RAM
    // file until written back; fsync sends them to the RAM disk (its sealed
    // overlay). A failure (the kiosk's disk full under the overlay) is EIO.
    Status flushRam() {
        UniqueFd fd(::open(ramExport->filePath().c_str(), O_RDWR | O_CLOEXEC));
        if (!fd.valid() || ::fsync(fd.get()) != 0)
            return Error(errno == ENOSPC ? Errc::NoSpace : Errc::Io,
                         "writing back the guest's memory: " + std::string(std::strerror(errno)));
        return {};
    }

    // Saves a VM whose RAM is the RAM file: paused, its RAM written back
    // while it can still resume (a failure leaves it paused and alive, so
    // a retry can save it), then its device state; the RAM file goes away.
    Status saveLazily(const std::string& savePath) {
        auto f = summarizeFaults(ram->readLatencies());
        ISR_LOG_INFO("session") << "memory reads in the first " << kFaultWindow.count()
                                << " s: " << f.local << " local (p50 " << f.localP50Ms
                                << " ms, p99 " << f.localP99Ms << " ms), " << f.remote
                                << " from the store (p50 " << f.remoteP50Ms << " ms, p99 "
                                << f.remoteP99Ms << " ms)";
        auto t = Clock::now();
        ISR_TRY_STATUS(machine->pause());
        ISR_TRY_STATUS(flushRam());
        const double writeback = secondsSince(t);
        t = Clock::now();
        ISR_TRY_STATUS(machine->saveLazy(savePath));
        ISR_LOG_INFO("session") << "suspend: guest RAM written back in " << writeback
                                << " s, device state saved in " << secondsSince(t) << " s";
        // Nothing dirties RAM after the pause; this one finds nothing to do
        // unless the save itself wrote guest memory.
        ISR_TRY_STATUS(flushRam());
        ramExport->stop();
        ramExport.reset();
        return {};
    }

    Status bringUpVm() {
        // Watched only for a firmware parcel's boot (watchFirstBoot); a
        // restore, in a Session that booted one before, reports no sign.
        firstBoot.settled = true;
        firstBoot.setSeen(std::nullopt);
        // Every fresh boot gets the VM generation ID device (issue #16; old
        // parcels at their next boot); the versions saved from this run
        // carry the flag (next = base), so their resumes have it too.
        if (base.memory.empty())
            base.vm.genid = true;
        vm::VmSpec spec = sessionVmSpec(user, parcelName, base.vm, config.guestDir, sessionDir,
                                        config.serialConsole, config.desktop);
        // A whole memory image (format 1) on a lazy kiosk is loaded into the
        // RAM file (Hypervisor::restoreIntoRamFile: QEMU's own migration
        // stream, RAM pages and all; libvirt 9.0's restore refuses it with
        // file-backed RAM, "Target memoryBacking source 'file' doesn't match
        // source memoryBacking source 'none'"), so the parcel turns lazy at
        // this resume, not at a reboot a desktop may never have: its first
        // lazy Suspend & Leave sends the RAM once, the next ones what changed.
        if (config.lazyMemory || base.lazyMemory()) {
            if (auto st = openRam(); !st.ok())
                return fail(facts(Stage::Fetching, st.error().code == Errc::NoSpace
                                                       ? FailureCause::KioskStorage
                                                       : FailureCause::Generic),
                            st.error());
            spec.ramFile = ramExport->filePath();
            // The memory hoard starts now, not at Running like the disk's:
            // with lazy memory the RAM's hot set (first-touch order, what
            // the last resume faulted in first, device load included) is
            // what restoring and the first frame wait for, and QEMU's
            // start-up (0.7-1.2 s under TCG) is time the link would otherwise
            // idle. Demand faults still go first (Hoard steps aside while
            // one waits for the store). Measured with the walk-up
            // benchmark (README "Performance").
            ram->startHoard();
        }
        // A firmware parcel's NVRAM and TPM state go in place first.
        firmware.configure(spec.firmware, spec.tpm, sessionDir, hypervisor->tpmStateDir(spec.uuid));
        if (auto st = firmware.restore(base, *parcels); !st.ok())
            return fail(facts(Stage::Fetching, st.error().code == Errc::Corrupt
                                                   ? FailureCause::DamagedVersion
                                                   : FailureCause::Generic),
                        st.error());
        if (base.memory.empty()) {
            // First resume of this parcel (or after an import): boot.
            enter(Stage::Restoring);
            if (auto st = checkDiskBootable(*disk, spec.firmware); !st.ok())
                return fail(
                    facts(Stage::Restoring, FailureCause::NoBootLoader, ErrorKind::VmFailed),
                    st.error());
            ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.restore.before"), Stage::Restoring));
            auto booted = hypervisor->boot(spec);
            if (!booted.ok())
                return fail(facts(Stage::Restoring, FailureCause::VmStart, vmKind(booted.error())),
                            booted.error());
            machine.emplace(std::move(*booted));
            watchFirstBoot(spec);
            ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.restore.after"), Stage::Restoring));
            return {};
        }
        if (base.lazyMemory())
            return restoreFromStream(spec, Restore::Lazy);
        // spec.name is a fresh random one (sessionVmSpec); libvirt 9.0
        // restores a whole image only under the name it was saved with, and
        // with the VM generation ID it names (its header is the authority
        // on that device: the versions saved next record what it says).
        if (auto saved = savedDomain(); saved.ok()) {
            // Into a RAM file QEMU loads it under any name, and with a fresh
            // generation ID (the guest reseeds): the session's random name
            // and a new ID stay.
            spec.genid = base.vm.genid = !saved->genid.empty();
            if (!ramExport) {
                spec.name = std::move(saved->name);
                spec.savedGenid = std::move(saved->genid);
            }
            ISR_LOG_INFO("session")
                << "whole memory image of " << spec.name << ", "
                << (spec.genid ? "with" : "without") << " the VM generation ID device";
        } else {
            return fail(facts(Stage::Fetching, FailureCause::MemoryImageFetch), saved.error());
        }
        return restoreFromStream(spec, ramExport ? Restore::IntoRamFile : Restore::Whole);
    }

    // The domain name and VM generation ID a whole memory image was saved
    // under (vm::savedDomain): libvirt's header and domain XML at the start
    // of its first chunk (a few KiB of the ~64 KiB average). The streamer
    // reads that chunk again from the cache. The decoded bytes are guest
    // RAM: wiped.
    Result<vm::SavedDomain> savedDomain() {
        Bytes head;
        crypto::WipeOnExit wipeHead(head);
        head.reserve(std::size_t(1) << 20);
        for (const auto& ref : base.memory) {
            ISR_TRY_ASSIGN(Bytes ciphertext, chunks->get(ref.name));
            auto plain = chunk::decode(ref, ciphertext);
            if (!plain.ok())
                return std::move(plain).error().context("memory image chunk " +
                                                        chunk::nameHex(ref.name));
            head.insert(head.end(), plain->begin(), plain->end());
            crypto::wipe(*plain);
            ISR_TRY_ASSIGN(auto saved, vm::savedDomain(head));
            if (saved)
                return std::move(*saved);
        }
        return Error(Errc::Corrupt, "the memory image ends inside libvirt's save header");
    }

    enum class Restore { Whole, IntoRamFile, Lazy };

    // Streams the version's memory recipe into a FIFO that QEMU loads while
    // the streamer writes, so download, verification and loading overlap:
    //  - Whole: a whole memory image, libvirt's restore reads the FIFO.
    //  - IntoRamFile: the same image loaded into the RAM file
    //    (Hypervisor::restoreIntoRamFile), a whole image turning lazy.
    //  - Lazy: a version saved with lazy memory. QEMU starts on the RAM
    //    file, whose pages arrive as the guest touches them, while the
    //    device state (a few MB: device buffers and video memory;
    //    `x-ignore-shared` leaves the RAM out) streams into its incoming
    //    migration. QEMU's start-up under TCG (0.7-1.2 s on the reference
    //    desktop) then hides the download instead of following it (until
    //    2026-12-04 the state was fetched whole into scratch first: the
    //    walk-up benchmark's "fetching" stage, README "Performance"). The
    //    streamer fetches the whole state ahead of QEMU's reading, so the
    //    link never waits for QEMU's start.
    // QEMU reads a FIFO through a socket (core/vm relayIntoSocket): a writer
    // that stops early, a chunk that cannot be fetched, is an EOF QEMU
    // fails on, not a FIFO hang-up it would spin on.
    Status restoreFromStream(const vm::VmSpec& spec, Restore kind) {
        ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.restore.before"), Stage::Restoring));
        const auto started = Clock::now();
        RestoreStream::Options options;
        options.cancelled = [this] { return cancelRequested.load(); };
        options.progress = [this, started](std::uint64_t done, std::uint64_t total) {
            report("memory image", done, total, started);
        };
        if (kind == Restore::Lazy)
            options.chunksAhead =
                std::min<std::size_t>(base.memory.size(), kDeviceStateChunksAhead);
        // The memory streamer reads the disk's road: cache first, then the
        // store, sharing any download in flight; it never calls back here.
        auto stream = RestoreStream::start(
            base.memory, workspace.scratchDir() + "/restore.fifo",
            [source = chunks](const chunk::ChunkName& n) { return source->get(n); },
            std::move(options));
        if (!stream.ok())
            return fail(storageFacts(Stage::Fetching, workspace.scratchDir()), stream.error());
        // QEMU (through libvirt for a whole image) opens the FIFO and reads
        // it while the streamer writes; the Restoring stage begins when QEMU
        // starts.
        enter(Stage::Restoring);
        const std::string& fifo = (*stream)->path();
        auto restored = kind == Restore::Lazy          ? hypervisor->restoreLazy(fifo, spec)
                        : kind == Restore::IntoRamFile ? hypervisor->restoreIntoRamFile(fifo, spec)
                                                       : hypervisor->restore(fifo, spec);
        Status streamed = (*stream)->finish(restored.ok());
        if (cancelRequested) {
            if (restored.ok())
                machine.emplace(std::move(*restored)); // wiped with the rest
            return Error(Errc::Cancelled, "resume cancelled");
        }
        // A stream that could not be fetched is what failed, whatever QEMU
        // said about it ending early -- even when QEMU loaded it: QEMU 7.2
        // stops reading a lazy state at QEMU_VM_EOF, before the VM
        // description that ends the stream (measured: a damaged last chunk
        // of the demo guest's state, and QEMU ran). Damage from the store is
        // refused wherever it is; the VM is stopped with the rest.
        if (!streamed.ok()) {
            if (restored.ok())
                machine.emplace(std::move(*restored));
            return fail(streamed.error().code == Errc::NoSpace
                            ? storageFacts(Stage::Fetching, workspace.scratchDir())
                            : facts(Stage::Fetching, FailureCause::MemoryImageFetch),
                        streamed.error());
        }
        if (!restored.ok())
            return fail(facts(Stage::Restoring, FailureCause::VmRestore, vmKind(restored.error())),
                        restored.error());
        machine.emplace(std::move(*restored));
        ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.restore.after"), Stage::Restoring));
        // In the background: Running does not wait for the agent. Only a
        // domain with an agent channel (firmware boots) can have one; asking
        // the demo guest would only print libvirt's "agent is not connected"
        // once a second for two minutes.
        if (!spec.agentSocketPath.empty())
            clock.start(*machine);
        return {};
    }

    void startTrickle() {
        disk->startTrickle(config.trickleQuiet, config.trickleInterval,
                           [this](const chunk::EncodedChunk& c) -> Status {
                               ISR_TRY_STATUS(ISR_FAULT_POINT("session.trickle.chunk"));
                               auto r = parcels->uploadChunks({c});
                               if (!r.ok())
                                   return std::move(r).error();
                               return {};
                           });
    }

    // Saves the VM into scratch; the first step of a suspend.
    Status saveVm() {
        if (!machine)
            return fail(facts(Stage::Suspending, FailureCause::VmGoneAtSave, ErrorKind::VmFailed),
                        Error(Errc::Internal, "no VM is running"));
        ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.save.before"), Stage::Suspending));
        const std::string& savePath = workspace.savePath();
        // With its RAM in the RAM file, only the device state is saved.
        if (auto st = ramExport ? saveLazily(savePath) : machine->save(savePath); !st.ok()) {
            if (!vmAlive()) {
                // QEMU is gone (crashed or killed): nothing to save, and
                // retrying cannot help. Drop the dead VM so abandon()
                // releases the parcel for the next resume.
                deleteVmLog(*machine);
                machine.reset();
                return fail(
                    facts(Stage::Suspending, FailureCause::VmGoneAtSave, ErrorKind::VmFailed),
                    st.error());
            }
            // libvirt does not always say why a save failed; a scratch
            // with less room than the VM's memory is the likely reason.
            const std::string& scratch = workspace.scratchDir();
            Error why = st.error();
            std::uint64_t scratchFree = freeBytesAt(scratch).value_or(~std::uint64_t(0));
            // (A lazy save writes only the device state there.)
            if (why.code != Errc::NoSpace && !ramExport &&
                scratchFree < (std::uint64_t(base.vm.memoryMiB) << 20))
                why = Error(Errc::NoSpace, why.message + " (the memory-backed scratch " + scratch +
                                               " has " + std::to_string(scratchFree >> 20) +
                                               " MiB free)");
            if (why.code != Errc::NoSpace)
                return fail(facts(Stage::Suspending, FailureCause::SaveFailed), why);
            ::unlink(savePath.c_str()); // a partial save only takes space
            return fail(storageFacts(Stage::Suspending, scratch), why);
        }
        deleteVmLog(*machine); // the VM is stopped: its log goes now
        machine.reset();
        memorySaved = true;
        ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.save.after"), Stage::Suspending));
        return {};
    }

    // Chunks the saved VM and sends what the store lacks; sets recipe.
    Status uploadMemoryImage(Clock::time_point started) {
        auto upload = MemoryImageUpload::create(*parcels, base.memory, config.memoryDedup);
        if (!upload.ok())
            return fail(facts(Stage::Suspending, FailureCause::Generic), upload.error());
        auto sent = upload->upload(workspace.savePath(), [&](const memimg::Progress& p) {
            report("memory image", p.done, p.total, started);
        });
        if (!sent.ok())
            return fail(facts(Stage::Suspending, FailureCause::MemoryUpload), sent.error());
        recipe = std::move(*sent);
        return {};
    }

    // A disk's (or the RAM's) final table, its new chunks sent: what a
    // commit references. The untouched chunks stay the base's, by reference.
    // `mostlyNew` (the RAM, with its base table, empty for a VM that did
    // not start from one): a changed RAM chunk is almost never in the
    // store already, so its chunks go with put-if-absent without asking
    // first (a HEAD a chunk: half the requests of a lazy Suspend & Leave,
    // measured 22 s for 3,616 32 KiB chunks on 100 Mbit/s with asking);
    // the base table's own chunks are skipped as known.
    Result<disk::FinalTable> sendFinalTable(disk::ParcelDisk& from, const char* what,
                                            FailureCause sendFailed, Clock::time_point started,
                                            const std::vector<std::optional<chunk::ChunkRef>>*
                                                mostlyNew = nullptr) {
        auto step = Clock::now();
        auto table = from.finalChunkTable();
        if (!table.ok())
            return fail(facts(Stage::Suspending, FailureCause::Generic), table.error());
        const double encoded = secondsSince(step);
        step = Clock::now();
        parcel::Parcels::UploadOptions options;
        std::set<chunk::ChunkName> known;
        if (mostlyNew) {
            for (const auto& ref : *mostlyNew)
                if (ref)
                    known.insert(ref->name);
            options.knownPresent = &known;
            options.askStore = false;
        }
        auto sent = parcels->uploadChunks(table->newChunks, options,
                                          [&](std::string_view, std::uint64_t d, std::uint64_t t) {
                                              report(what, d, t, started);
                                          });
        if (!sent.ok())
            return fail(facts(Stage::Suspending, sendFailed), sent.error());
        // Where a Suspend & Leave's time goes, for operators and issue #17.
        ISR_LOG_INFO("session") << "suspend: " << what << ": " << table->newChunks.size()
                                << " changed chunks encoded in " << encoded << " s, sent in "
                                << secondsSince(step) << " s";
        return std::move(*table);
    }

    // Sends the disk's new chunks and commits the next version.
    Status uploadDiskAndCommit(Clock::time_point started) {
        ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.disk.upload.before"), Stage::Suspending));
        ISR_TRY_ASSIGN(auto table,
                       sendFinalTable(*disk, "disk", FailureCause::DiskUpload, started));
        parcel::Manifest next = base;
        next.parent = base.version;
        next.created = 0;
        next.kiosk = config.kioskId;
        next.disk = std::move(table.table);
        next.memory = *recipe;
        if (ram) {
            // The RAM's changed chunks; pages never fetched stay the base's
            // chunks, by reference, never downloaded to be saved.
            ISR_TRY_ASSIGN(auto ramTable,
                           sendFinalTable(*ram, "memory", FailureCause::MemoryUpload, started,
                                          &base.ram));
            next.ram = std::move(ramTable.table);
            next.ramChunkSize = ram->chunkSize(); // the disk's: written as format 2
            next.ramHotSet = hotSetOf(ramTable.workingSet, next.ram.size(), ram->chunkSize());
        } else {
            // A whole save image: no RAM table rides along from the base.
            next.ram.clear();
            next.ramChunkSize = 0;
            next.ramHotSet.clear();
        }
        firmware.applyTo(next);
        next.workingSet = table.workingSet;
        std::sort(next.workingSet.begin(), next.workingSet.end());
        next.workingSet.erase(std::unique(next.workingSet.begin(), next.workingSet.end()),
                              next.workingSet.end());
        // Still ours? A conditional write of our lock, just before the
        // version: a kiosk that was taken over writes nothing.
        lease->stopHeartbeat();
        if (auto held = lease->confirm(); !held.ok()) {
            if (held.error().code == Errc::Locked)
                return fail(takenOverFacts(Stage::Suspending), held.error());
            return fail(facts(Stage::Suspending, FailureCause::Commit), held.error());
        }
        auto n = parcels->commit(parcelName, next, {});
        if (!n.ok()) {
            if (n.error().code == Errc::Conflict)
                return fail(facts(Stage::Suspending, FailureCause::CommitConflict), n.error());
            return fail(facts(Stage::Suspending, FailureCause::Commit), n.error());
        }
        committed = *n;
        committedSave = savedOf(next);
        rememberSeen(next);
        return {};
    }

    // Suspend, resumable: each step is skipped if a previous attempt did it.
    Status suspendSteps() {
        if (disk)
            disk->stopTrickle();
        auto started = Clock::now();
        clock.stop();
        if (!memorySaved)
            ISR_TRY_STATUS(saveVm());
        if (!recipe)
            ISR_TRY_STATUS(uploadMemoryImage(started));
        if (auto st = firmware.collect(*parcels); !st.ok())
            return fail(facts(Stage::Suspending, FailureCause::Generic), st.error());
        ISR_TRY_STATUS(uploadDiskAndCommit(started));
        ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.unlock.before"), Stage::Suspending));
        // The version is committed whatever happens to the lock now. A
        // failed release keeps the lease held so signOut() tries once more;
        // if that fails too, the next kiosk can take the parcel over.
        if (auto st = lease->release(); !st.ok()) {
            ISR_LOG_WARN("session")
                << "unlock failed (trying again at sign-out): " << st.error().describe();
        }
        return {};
    }

    // Suspending -> Wiping -> SignedOut; a failure stops in Failed with the
    // saved state kept, so retry() comes back here.
    Status suspendAndWipe(bool entered = false) {
        if (!entered)
            enter(Stage::Suspending);
        ISR_TRY_STATUS(suspendSteps());
        return wipeAndSignOut();
    }

    Status wipeAndSignOut() {
        enter(Stage::Wiping);
        ISR_TRY_STATUS(injected(ISR_FAULT_POINT("session.wipe.before"), Stage::Wiping));
        wipeLocal();
        signOut();
        enter(Stage::SignedOut);
        return {};
    }

    // After requestCancel(): undo the resume so far (VM, disk, scratch,
    // lock) and end SignedOut. Nothing was committed by this resume.
    Error endCancelled() {
        ISR_LOG_INFO("session") << "resume cancelled at " << stageName(stage());
        if (stage() == Stage::Authenticating) {
            signOut();
            enter(Stage::SignedOut);
        } else {
            enter(Stage::Wiping);
            wipeLocal();
            signOut();
            enter(Stage::SignedOut);
        }
        cancelRequested = false;
        return Error(Errc::Cancelled, "resume cancelled");
    }

    // The disk leaves hoard()'s sight under diskMutex and is destroyed
    // outside it: destroying it waits for in-flight downloads (a hoard
    // worker's fetch from a slow store), and hoard() is polled by the GUI
    // thread every second, which must never wait for that.
    void destroyDisk() {
        std::unique_ptr<disk::ParcelDisk> dying;
        {
            std::lock_guard lk(diskMutex);
            dying = std::move(disk);
        }
        dying.reset(); // stops its threads, deletes the overlay
    }

    // QEMU's log under libvirt's root (<root>/log/qemu/isr-<user>-<parcel>.log)
    // holds the session's command line and whatever QEMU printed; nothing
    // naming a user may outlive the session at the kiosk (issue #16, item
    // 12), so it goes with the VM, once its stop reason has been read.
    // The domain name itself stays isr-<user>-<parcel>: a saved memory image
    // carries it and libvirt refuses to restore under another name ("Target
    // domain name 'x' does not match source 'y'", seen with libvirt 9.0), so
    // renaming would strand every parcel saved before. A VM that boots or
    // resumes lazily gets a random name instead (bringUpVm).
    static void deleteVmLog(const vm::Vm& vm) {
        if (!vm.logPath().empty() && ::unlink(vm.logPath().c_str()) != 0 && errno != ENOENT) {
            ISR_LOG_WARN("session")
                << "cannot delete " << vm.logPath() << ": " << std::strerror(errno);
        }
    }

    // Drops every local trace of the session. Idempotent.
    void wipeLocal() {
        watcher.stop();
        clock.stop();
        if (disk)
            disk->stopTrickle();
        if (machine) {
            if (auto st = machine->destroy(); !st.ok()) {
                ISR_LOG_WARN("session") << "destroy: " << st.error().describe();
            }
            deleteVmLog(*machine);
            machine.reset();
        }
        dropVmBackends();
        nbd.reset();
        if (!workspace.scratchDir().empty()) {
            if (auto st = ISR_FAULT_POINT("session.wipe.after-vm"); !st.ok()) {
                // A wipe never stops half-way: the fault is only reported.
                ISR_LOG_WARN("session") << "wipe: " << st.error().describe();
            }
        }
        workspace.wipe();
        memorySaved = false;
        recipe.reset();
    }

    void signOut() {
        if (lease) {
            if (auto st = lease->release(); !st.ok()) {
                ISR_LOG_WARN("session") << "unlock: " << st.error().describe();
            }
            lease.reset();
        }
        parcels.reset(); // wipes the user's secrets (sodium_free)
        store.reset();
        base = {};
        committedSave.reset();
    }
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Session::~Session() {
    if (impl_) {
        // The watcher first (its thread may be dropping the lease), then
        // the heartbeat (no lockLost() may destroy the VM the wipe drops).
        impl_->watcher.stop();
        if (impl_->lease)
            impl_->lease->stopHeartbeat();
        impl_->wipeLocal();
        impl_->signOut();
    }
}

namespace {

// The log tags' key (Impl::logKey): read, or made on first use. Logging is
// for operators: a key that cannot be read or written means untagged
// events, never a refused session.
crypto::Secret loadLogKey(const std::string& path) {
    constexpr std::size_t kSize = 32;
    crypto::Secret key(kSize);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        ssize_t n = ::read(fd, key.data(), kSize);
        ::close(fd);
        if (n == ssize_t(kSize))
            return key;
    }
    key = crypto::Secret::random(kSize);
    const std::string tmp = path + ".tmp";
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok = fd >= 0 && ::write(fd, key.data(), kSize) == ssize_t(kSize);
    if (fd >= 0)
        ok = ::close(fd) == 0 && ok;
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        ISR_LOG_WARN("session") << "cannot keep " << path << ": " << std::strerror(errno)
                                << " (log tags change at every start)";
        ::unlink(tmp.c_str());
    }
    return key;
}

} // namespace

Result<std::unique_ptr<Session>> Session::create(KioskConfig config, Listener listener) {
    if (config.stateDir.empty() || config.stateDir[0] != '/')
        return Error(Errc::InvalidArgument, "the kiosk state directory must be an absolute path");
    ISR_TRY_STATUS(checkKioskHost(config)); // unencrypted swap (issue #16)
    if (config.kioskId.empty())
        config.kioskId = hostName();
    std::error_code ec;
    fs::create_directories(config.stateDir + "/cache", ec);
    if (ec)
        return Error(Errc::Io, "cannot create " + config.stateDir + ": " + ec.message());
    // Sessions of a crashed previous run: their scratch may hold a saved VM
    // (guest RAM in clear), their overlays are useless ciphertext.
    Workspace::wipeCrashed(config.stateDir);
    auto impl = std::make_unique<Impl>(config, std::move(listener));
    impl->logKey = loadLogKey(config.stateDir + "/log.key");
    impl->metrics = std::make_unique<KioskMetrics>(config.metricsFile);
    impl->tracker.setMetrics(impl->metrics.get());
    ISR_TRY_ASSIGN(impl->cache,
                   cache::ChunkCache::open(config.stateDir + "/cache", config.cacheCapBytes));
    ISR_TRY_ASSIGN(auto host,
                   kioskHostConfig(config.stateDir, config.guestDir, config.accelerator));
    host.guestNetwork.storeHosts = {vm::storeHostFromUrl(config.storeUrl)};
    host.guestNetwork.mayReachStore = config.guestMayReachStore;
    host.guestNetwork.allowedNetworks = config.guestAllowedNetworks;
    host.guestNetwork.allowUnfiltered = config.allowUnfilteredGuestNetwork;
    ISR_TRY_ASSIGN(impl->hypervisor, vm::Hypervisor::open(host));
    if (impl->hypervisor->reapedAtOpen() > 0) {
        ISR_LOG_WARN("session") << "reaped " << impl->hypervisor->reapedAtOpen()
                                << " VM(s) left by a previous run";
    }
    return std::unique_ptr<Session>(new Session(std::move(impl)));
}

// SignedOut/Failed -> Authenticating -> CheckingOut -> Fetching -> Restoring
// -> Running; every step can fail (Failed) or be cancelled (SignedOut).
Status Session::resume(const std::string& user, std::string_view password,
                       const std::string& parcelName, bool takeOver) {
    Impl& s = *impl_;
    Stage now = stage();
    s.cancelRequested = false;
    if (now != Stage::SignedOut && now != Stage::Failed)
        return Error(Errc::InvalidArgument, std::string("cannot resume while ") + stageName(now));
    // A failed suspend of this user that kept its state is given up only
    // for the right password: a wrong one changes nothing (not the lock,
    // not the saved state). Another user's resume abandons it, as the
    // kiosk's idle timeout would.
    if (now == Stage::Failed && s.holdsKeys() && s.user == user)
        ISR_TRY_STATUS(s.verifyPassword(password));
    // Every resume signs in afresh: the password is checked (Argon2id and
    // the account's seal) before the lock is touched, take-over included.
    s.wipeLocal();
    s.signOut();
    s.tracker.setSubject({}, {}); // nobody's until the password is checked
    s.enter(Stage::Authenticating);
    s.user = user;
    s.parcelName = parcelName;
    auto opened = store::openStore(s.config.storeUrl, s.config.storeOptions);
    if (!opened.ok()) {
        // A file store whose mount is gone reads as NotFound/Io here: to
        // the person at the kiosk that is an unreachable store, not an
        // internal error (a malformed URL stays what it is).
        Error e = opened.error();
        if (e.code == Errc::NotFound || e.code == Errc::Io)
            e.code = Errc::Transient;
        return s.fail(facts(Stage::Authenticating, FailureCause::StoreUnreachable), e);
    }
    s.store = std::make_unique<store::CountingStore>(std::move(*opened), s.tracker.bytesDown(),
                                                     s.tracker.bytesUp());
    auto secrets = [&]() -> Result<parcel::UserSecrets> {
        ISR_TRY_STATUS(ISR_FAULT_POINT("session.signin.before"));
        return parcel::signIn(*s.store, user, password);
    }();
    if (!secrets.ok()) {
        s.store.reset();
        bool wrong = secrets.error().code == Errc::AuthFailed;
        FailureCause cause = wrong ? FailureCause::WrongCredentials
                             : classify(secrets.error()) == ErrorKind::StoreUnreachable
                                 ? FailureCause::StoreUnreachable
                                 : FailureCause::Generic;
        return s.fail(facts(Stage::Authenticating, cause), secrets.error());
    }
    // Only now is the user name known to be a user's (a refused sign-in may
    // be a password typed into the name field): tag the log's events.
    s.tracker.setSubject(s.logTag("user", user), {});
    if (!secrets->s3.accessKey.empty())
        s.store->setWriteCredentials(secrets->s3);
    s.parcels = std::make_unique<parcel::Parcels>(*s.store, std::move(*secrets));
    if (s.cancelRequested)
        return s.endCancelled();
    s.enter(Stage::CheckingOut);
    if (s.parcelName.empty()) {
        // The kiosk asks only for a user name: take the user's one parcel,
        // or the one called "default".
        auto names = s.parcels->list();
        if (!names.ok())
            return s.fail(facts(Stage::CheckingOut, FailureCause::StoreUnreachable), names.error());
        if (names->size() == 1)
            s.parcelName = names->front();
        else if (std::find(names->begin(), names->end(), "default") != names->end())
            s.parcelName = "default";
        else
            return s.fail(facts(Stage::CheckingOut, names->empty() ? FailureCause::NoParcel
                                                                   : FailureCause::SeveralParcels),
                          Error(Errc::NotFound, names->empty()
                                                    ? "you have no computer in this store"
                                                    : "you have several computers"));
    }
    s.tracker.setSubject(s.logTag("user", user), s.logTag("parcel", user + "/" + s.parcelName));
    ISR_TRY_STATUS(s.checkOut(takeOver));
    if (s.cancelRequested)
        return s.endCancelled();
    s.enter(Stage::Fetching);
    if (auto st = s.workspace.create(s.config.stateDir, s.config.scratchDir); !st.ok())
        return s.fail(storageFacts(Stage::Fetching, s.workspace.failedAt()), st.error());
    ISR_TRY_STATUS(s.injected(ISR_FAULT_POINT("session.fetch.before-disk"), Stage::Fetching));
    if (auto st = s.openDisk(); !st.ok()) {
        bool full = st.error().code == Errc::NoSpace;
        return s.fail(full ? storageFacts(Stage::Fetching, s.sessionDir)
                           : facts(Stage::Fetching, FailureCause::Generic),
                      st.error());
    }
    if (s.cancelRequested)
        return s.endCancelled();
    if (auto st = s.bringUpVm(); !st.ok())
        return s.cancelRequested ? s.endCancelled() : st;
    if (s.cancelRequested)
        return s.endCancelled();
    {
        // With the heartbeat's lockLost(): a take-over noticed before this
        // point fails the resume, one noticed after it finds Running and
        // stops the VM.
        std::unique_lock lk(s.leaveMutex);
        if (s.takenOver) {
            lk.unlock();
            return s.fail(s.takenOverFacts(Stage::Restoring),
                          Error(Errc::Locked, "the parcel was taken over by another kiosk"));
        }
        s.disk->startHoard();
        if (s.ram) {
            // The guest's first 30 s of page faults, for memoryFaults() and
            // the walk-up benchmark (issue #17).
            s.ram->startReadLatencyWindow(kFaultWindow);
        }
        s.startTrickle();
        s.enter(Stage::Running);
        s.watchVm();
    }
    return {};
}

Status Session::suspendAndLeave() {
    Impl& s = *impl_;
    // From here on a VM that ends is noticed by the save failing.
    s.watcher.stop();
    {
        std::unique_lock lk(s.leaveMutex);
        if (stage() != Stage::Running) {
            auto f = failure();
            if (f && f->stage == Stage::Running)
                return Error(Errc::InvalidArgument, "nothing to suspend: " + f->detail);
            return Error(Errc::InvalidArgument,
                         std::string("nothing to suspend while ") + stageName(stage()));
        }
        if (s.takenOver) {
            // Taken over, and the VM stopped, before the watcher said so.
            lk.unlock();
            Failure f = s.takenOverFacts(Stage::Running);
            f.detail = "the parcel was taken over by another kiosk; the VM was stopped";
            return s.fail(std::move(f), Error(Errc::Locked, f.detail));
        }
        s.enter(Stage::Suspending);
    }
    // Leaving: the hoards stop fetching (fetches under way finish). What
    // they did not bring stays in the new version by reference, and their
    // downloads would only compete with the upload for the link and the
    // CPU (measured in the walk-up benchmark, issue #17: 53 MB came down
    // during a 42 s Suspend & Leave on 20 Mbit/s).
    if (s.disk)
        s.disk->pauseHoard();
    if (s.ram)
        s.ram->pauseHoard();
    return s.suspendAndWipe(true);
}

Status Session::retry(std::string_view password) {
    Impl& s = *impl_;
    s.watcher.stop();
    auto f = failure();
    if (stage() != Stage::Failed || !f)
        return Error(Errc::InvalidArgument, "nothing to retry");
    // Finishing a wipe reaches nothing of the user: no password.
    if (f->stage == Stage::Wiping)
        return s.wipeAndSignOut();
    // A failed suspend that kept its state finishes with the password
    // checked first (a wrong one changes nothing).
    if (f->stage == Stage::Suspending && s.holdsKeys()) {
        ISR_TRY_STATUS(s.verifyPassword(password));
        return s.suspendAndWipe();
    }
    // Everything else holds no keys any more: resume the last committed
    // version, signing in afresh.
    if (s.user.empty())
        return Error(Errc::InvalidArgument, "sign in again");
    return resume(s.user, password, s.parcelName, false);
}

Status Session::abandon() {
    Impl& s = *impl_;
    s.watcher.stop();
    Stage now = stage();
    if (now == Stage::SignedOut)
        return {};
    {
        std::lock_guard lk(s.leaveMutex); // a heartbeat's lockLost() is not stopping the VM now
        s.enter(Stage::Wiping);
    }
    s.wipeLocal();
    s.signOut();
    s.user.clear();
    s.parcelName.clear();
    s.enter(Stage::SignedOut);
    return {};
}

// The lock screen's check. The watcher is paused for it because vmEnded()
// on the watcher's thread drops `parcels` and `store` (signOut), which
// verifyPassword reads; the heartbeat's lockLost() touches neither. Once
// the watcher is stopped nothing else leaves Running while we are here
// (suspendAndLeave and abandon run on this thread), and a VM that ended
// meanwhile is seen by the restarted watcher's first poll.
Status Session::checkPassword(std::string_view password) {
    Impl& s = *impl_;
    s.watcher.stop();
    if (stage() != Stage::Running || !s.machine)
        return Error(Errc::InvalidArgument,
                     std::string("no running computer to unlock while ") + stageName(stage()));
    Status checked = s.verifyPassword(password);
    s.watchVm();
    return checked;
}

void Session::requestCancel() {
    Stage now = stage();
    if (now == Stage::Authenticating || now == Stage::CheckingOut || now == Stage::Fetching ||
        now == Stage::Restoring)
        impl_->cancelRequested = true;
}

Stage Session::stage() const {
    return impl_->tracker.stage();
}
std::optional<Failure> Session::failure() const {
    return impl_->tracker.failure();
}
// Never waits on the disk's work: diskMutex is held only to read the disk's
// progress (a leaf lock inside the disk), never while a disk is destroyed.
HoardStatus Session::hoard() const {
    HoardStatus h;
    {
        std::lock_guard lock(impl_->diskMutex);
        // The disk's hoard and, with lazy memory, the RAM's: one figure for
        // "how much of the computer is on this kiosk".
        std::optional<disk::HoardProgress> p;
        for (const auto* d : {impl_->disk.get(), impl_->ram.get()}) {
            if (!d)
                continue;
            auto q = d->hoardProgress();
            if (d == impl_->ram.get()) {
                h.memoryChunksDone = q.chunksDone;
                h.memoryChunksTotal = q.chunksTotal;
            }
            if (!p) {
                p = q;
                continue;
            }
            p->chunksDone += q.chunksDone;
            p->chunksTotal += q.chunksTotal;
            p->bytesDone += q.bytesDone;
            p->bytesTotal += q.bytesTotal;
            if (!p->stalled)
                p->stalled = q.stalled;
        }
        if (p) {
            h.chunksDone = p->chunksDone;
            h.chunksTotal = p->chunksTotal;
            h.bytesDone = p->bytesDone;
            h.bytesTotal = p->bytesTotal;
            if (p->stalled) {
                bool space = p->stalled->code == Errc::NoSpace || p->stalled->code == Errc::Io;
                h.problem = space ? ErrorKind::NoSpace : ErrorKind::StoreUnreachable;
                h.problemMessage =
                    (space ? "hoard paused, the kiosk's disk is (nearly) full: " +
                                 p->stalled->message +
                                 "; the computer keeps running and fetches what it reads"
                           : "hoard paused, the store is unreachable: " + p->stalled->message +
                                 "; the computer keeps running on what is cached") +
                    "; retrying with backoff";
            }
        }
    }
    // The kiosk polls this every few seconds: the metrics file follows
    // (outside diskMutex: the file is written here).
    if (impl_->metrics) {
        impl_->metrics->hoard(h);
        if (impl_->cache) {
            auto c = impl_->cache->stats();
            impl_->metrics->cache(c.bytes, c.capBytes, c.hits, c.misses);
        }
    }
    return h;
}
MemoryFaults Session::memoryFaults() const {
    std::lock_guard lock(impl_->diskMutex);
    if (!impl_->ram)
        return {};
    return summarizeFaults(impl_->ram->readLatencies());
}

std::vector<TimelineEntry> Session::timeline() const {
    return impl_->tracker.timeline();
}
std::string Session::userName() const {
    return impl_->user;
}
std::string Session::parcelName() const {
    return impl_->parcelName;
}
std::uint64_t Session::baseVersion() const {
    return impl_->base.version;
}
SavedVersion Session::baseSave() const {
    return savedOf(impl_->base);
}
std::uint64_t Session::committedVersion() const {
    return impl_->committed;
}
std::string Session::serialSocketPath() const {
    return impl_->config.serialConsole && !impl_->sessionDir.empty()
               ? impl_->sessionDir + "/serial.sock"
               : "";
}
std::string Session::sessionDirectory() const {
    return impl_->workspace.sessionDir();
}
std::string Session::scratchDirectory() const {
    return impl_->workspace.scratchDir();
}
std::string Session::accelerator() const {
    return vm::acceleratorName(impl_->hypervisor->accelerator());
}
std::optional<FirstBootSign> Session::firstBootSign() const {
    return impl_->firstBoot.seen();
}

Result<int> Session::openDisplay() {
    if (!impl_->machine)
        return Error(Errc::InvalidArgument, "no VM is running");
    ISR_TRY_ASSIGN(UniqueFd fd, impl_->machine->openGraphicsFd());
    return fd.release();
}

} // namespace isr::session
