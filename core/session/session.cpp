// The session state machine (see session.h for the stages and transitions).
#include "session/session.h"

#include "cache/cache.h"
#include "cache/chunk_source.h"
#include "crypto/crypto.h"
#include "disk/nbd_server.h"
#include "disk/parcel_disk.h"
#include "memimg/memimg.h"
#include "util/fault.h"
#include "util/log.h"
#include "vm/vm.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <thread>
#include <unistd.h>

namespace isr::session {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const char* stageName(Stage stage) {
    switch (stage) {
    case Stage::SignedOut:
        return "signed out";
    case Stage::Authenticating:
        return "authenticating";
    case Stage::CheckingOut:
        return "checking out";
    case Stage::Fetching:
        return "fetching";
    case Stage::Restoring:
        return "restoring";
    case Stage::Running:
        return "running";
    case Stage::Suspending:
        return "suspending";
    case Stage::Wiping:
        return "wiping";
    case Stage::Failed:
        return "failed";
    }
    return "?";
}

bool isLegalTransition(Stage from, Stage to) {
    switch (from) {
    case Stage::SignedOut:
        return to == Stage::Authenticating;
    case Stage::Authenticating:
        return to == Stage::CheckingOut || to == Stage::Failed || to == Stage::SignedOut;
    case Stage::CheckingOut:
        return to == Stage::Fetching || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Fetching:
        return to == Stage::Restoring || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Restoring:
        return to == Stage::Running || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Running:
        return to == Stage::Suspending || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Suspending:
        return to == Stage::Wiping || to == Stage::Failed;
    case Stage::Wiping:
        return to == Stage::SignedOut || to == Stage::Failed;
    case Stage::Failed:
        return to == Stage::CheckingOut || to == Stage::Suspending || to == Stage::Wiping ||
               to == Stage::Authenticating || to == Stage::SignedOut;
    }
    return false;
}

const char* errorKindName(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::None:
        return "none";
    case ErrorKind::WrongCredentials:
        return "wrong credentials";
    case ErrorKind::StoreUnreachable:
        return "store unreachable";
    case ErrorKind::LockedElsewhere:
        return "locked elsewhere";
    case ErrorKind::Corrupt:
        return "corrupt";
    case ErrorKind::NoSpace:
        return "no space";
    case ErrorKind::VmFailed:
        return "VM failed";
    case ErrorKind::Internal:
        return "internal";
    }
    return "?";
}

const char* failureCauseName(FailureCause cause) {
    switch (cause) {
    case FailureCause::Generic:
        return "generic";
    case FailureCause::StoreUnreachable:
        return "store-unreachable";
    case FailureCause::WrongCredentials:
        return "wrong-credentials";
    case FailureCause::NoParcel:
        return "no-parcel";
    case FailureCause::SeveralParcels:
        return "several-parcels";
    case FailureCause::ParcelNotFound:
        return "parcel-not-found";
    case FailureCause::LockedElsewhere:
        return "locked-elsewhere";
    case FailureCause::DamagedVersion:
        return "damaged-version";
    case FailureCause::BootProfileUnavailable:
        return "boot-profile-unavailable";
    case FailureCause::KioskStorage:
        return "kiosk-storage";
    case FailureCause::MemoryImageFetch:
        return "memory-image-fetch";
    case FailureCause::VmStart:
        return "vm-start";
    case FailureCause::VmRestore:
        return "vm-restore";
    case FailureCause::VmStopped:
        return "vm-stopped";
    case FailureCause::GuestPoweredOff:
        return "guest-powered-off";
    case FailureCause::VmGoneAtSave:
        return "vm-gone-at-save";
    case FailureCause::SaveFailed:
        return "save-failed";
    case FailureCause::MemoryUpload:
        return "memory-upload";
    case FailureCause::DiskUpload:
        return "disk-upload";
    case FailureCause::CommitConflict:
        return "commit-conflict";
    case FailureCause::Commit:
        return "commit";
    }
    return "?";
}

ErrorKind classify(const Error& error) {
    switch (error.code) {
    case Errc::AuthFailed:
        return ErrorKind::WrongCredentials;
    case Errc::Transient:
    case Errc::AccessDenied:
        return ErrorKind::StoreUnreachable;
    case Errc::Locked:
        return ErrorKind::LockedElsewhere;
    case Errc::Corrupt:
        return ErrorKind::Corrupt;
    case Errc::NoSpace:
        return ErrorKind::NoSpace;
    default:
        return ErrorKind::Internal;
    }
}

namespace {

// Counts the bytes that cross to and from the store, for the timeline and
// the benchmarks (what must cross the network is the figure that matters).
class CountingStore : public store::Store {
public:
    // The counters outlive the store (they belong to the Session), so the
    // timeline can difference them across sign-ins.
    CountingStore(std::unique_ptr<store::Store> inner, std::atomic<std::uint64_t>& down,
                  std::atomic<std::uint64_t>& up)
        : down(down), up(up), inner_(std::move(inner)) {}
    std::atomic<std::uint64_t>& down;
    std::atomic<std::uint64_t>& up;

    std::string url() const override { return inner_->url(); }
    Result<Bytes> get(const std::string& key) override { return count(inner_->get(key)); }
    Result<Bytes> getRange(const std::string& key, std::uint64_t offset,
                           std::uint64_t length) override {
        return count(inner_->getRange(key, offset, length));
    }
    Status put(const std::string& key, ByteView data) override {
        auto st = inner_->put(key, data);
        if (st.ok())
            up += data.size();
        return st;
    }
    Status putIfAbsent(const std::string& key, ByteView data) override {
        auto st = inner_->putIfAbsent(key, data);
        if (st.ok())
            up += data.size();
        return st;
    }
    Status remove(const std::string& key) override { return inner_->remove(key); }
    Result<std::vector<store::ObjectInfo>> list(const std::string& prefix) override {
        return inner_->list(prefix);
    }
    Result<bool> exists(const std::string& key) override { return inner_->exists(key); }
    std::vector<Result<Bytes>> getMany(const std::vector<std::string>& keys) override {
        auto results = inner_->getMany(keys);
        for (auto& r : results)
            if (r.ok())
                down += r->size();
        return results;
    }
    std::vector<Status> putMany(const std::vector<store::PutItem>& items) override {
        auto results = inner_->putMany(items);
        for (std::size_t i = 0; i < results.size(); ++i)
            if (results[i].ok())
                up += items[i].data.size();
        return results;
    }
    void setWriteCredentials(const store::Credentials& c) override {
        inner_->setWriteCredentials(c);
    }

private:
    Result<Bytes> count(Result<Bytes> r) {
        if (r.ok())
            down += r->size();
        return r;
    }
    std::unique_ptr<store::Store> inner_;
};

std::string hostName() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0])
        return "kiosk";
    return buf;
}

// A stable per-parcel VM identity: libvirt checks the UUID of a restored
// image against the domain XML, so every kiosk must derive the same one.
std::string parcelUuid(const std::string& user, const std::string& parcel) {
    auto h = crypto::hash(asBytes("isr-vm-uuid:" + user + "/" + parcel));
    h[6] = std::uint8_t((h[6] & 0x0f) | 0x50); // version 5-style (name-based)
    h[8] = std::uint8_t((h[8] & 0x3f) | 0x80);
    std::string hex = toHex(ByteView(h.data(), 16));
    return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
           hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

// Wipes the scratch directory each leftover session recorded (makeDirectories
// writes <session dir>/scratch). Only directories memimg created
// (isr-memimg-*) are touched, whatever the record says.
void wipeCrashedSessions(const std::string& sessionsDir) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(sessionsDir, ec)) {
        std::ifstream record(entry.path() / "scratch");
        std::string scratch;
        if (!record || !std::getline(record, scratch))
            continue;
        fs::path p(scratch);
        if (!p.is_absolute() || p.filename().string().rfind("isr-memimg-", 0) != 0 ||
            !fs::is_directory(fs::symlink_status(p, ec)))
            continue;
        ISR_LOG_WARN("session") << "wiping the scratch of a crashed session: " << scratch;
        if (auto st = memimg::wipeScratchDir(scratch); !st.ok()) {
            ISR_LOG_WARN("session") << "wiping " << scratch << ": " << st.error().describe();
        }
    }
}

} // namespace

struct Session::Impl {
    KioskConfig config;
    Listener listener;
    std::unique_ptr<vm::Hypervisor> hypervisor;
    std::unique_ptr<cache::ChunkCache> cache;

    mutable std::mutex mutex; // guards stage, failure, timeline, names
    Stage stage = Stage::SignedOut;
    std::optional<Failure> failure;
    std::vector<TimelineEntry> timeline;
    Clock::time_point stageStart = Clock::now();
    std::atomic<std::uint64_t> totalDown{0}, totalUp{0}; // bytes to/from the store, ever
    std::uint64_t stageDown = 0, stageUp = 0;
    std::atomic<bool> cancelRequested{false}; // requestCancel() during a resume

    // The active session. Only the controlling thread touches these.
    std::string user, parcelName;
    std::unique_ptr<CountingStore> store;
    std::unique_ptr<parcel::Parcels> parcels;
    parcel::LockInfo lock;
    bool haveLock = false;
    parcel::Manifest base;
    std::uint64_t committed = 0;
    std::string sessionDir, scratchDir, savePath;
    // The one road for this user's chunks (cache, then the store, one
    // download per name): the disk, its hoard and the memory streamer
    // share it. Made in openDisk(); the disk holds it too.
    std::shared_ptr<cache::ChunkSource> chunks;
    std::unique_ptr<disk::ParcelDisk> disk; // replaced only under diskMutex
    mutable std::mutex diskMutex;           // lets hoard() run on any thread
    std::unique_ptr<disk::NbdServer> nbd;
    std::optional<vm::Vm> machine;
    bool memorySaved = false;                           // savePath holds this session's saved VM
    std::optional<std::vector<chunk::ChunkRef>> recipe; // memory image uploaded
    std::set<chunk::ChunkName> baseMemoryNames;         // filled at the first suspend

    // The VM watcher, alive only while Running (see startWatcher).
    std::thread watcherThread;
    std::mutex watcherMutex;
    std::condition_variable watcherWake;
    bool watcherStop = false;

    std::thread heartbeatThread;
    std::mutex heartbeatMutex;
    std::condition_variable heartbeatWake;
    bool heartbeatStop = false;

    // ---- stage bookkeeping ----

    void closeTimelineEntry() {
        std::uint64_t down = totalDown.load();
        std::uint64_t up = totalUp.load();
        if (stage != Stage::SignedOut && stage != Stage::Failed) {
            double secs = std::chrono::duration<double>(Clock::now() - stageStart).count();
            timeline.push_back({stage, secs, down - stageDown, up - stageUp});
        }
        stageStart = Clock::now();
        stageDown = down;
        stageUp = up;
    }

    void enter(Stage next) {
        {
            std::lock_guard lock_(mutex);
            if (!isLegalTransition(stage, next)) {
                ISR_LOG_ERROR("session")
                    << "illegal transition " << stageName(stage) << " -> " << stageName(next);
            }
            closeTimelineEntry();
            stage = next;
            if (next != Stage::Failed)
                failure.reset();
        }
        ISR_LOG_INFO("session") << "stage: " << stageName(next);
        if (listener.stageChanged)
            listener.stageChanged(next);
    }

    Error fail(Stage failedStage, const Error& error, std::string advice,
               std::optional<parcel::LockInfo> holder = std::nullopt,
               std::optional<ErrorKind> kind = std::nullopt) {
        Failure f;
        f.stage = failedStage;
        f.kind = kind ? *kind : classify(error);
        f.message = error.message.empty() ? std::string(errcName(error.code)) : error.message;
        if (!advice.empty())
            f.message += ". " + advice;
        f.holder = std::move(holder);
        {
            std::lock_guard lock_(mutex);
            failure = f;
        }
        ISR_LOG_WARN("session") << stageName(failedStage) << " failed: " << f.message;
        // The failure first, then the stage: a UI switching to its error page
        // on the stage change finds the message already there.
        if (listener.failed)
            listener.failed(f);
        enter(Stage::Failed);
        return error;
    }

    void report(const std::string& what, std::uint64_t done, std::uint64_t total,
                Clock::time_point since) {
        if (!listener.progress)
            return;
        double secs = std::chrono::duration<double>(Clock::now() - since).count();
        Progress p;
        {
            std::lock_guard lock_(mutex);
            p.stage = stage;
        }
        p.what = what;
        p.done = done;
        p.total = total;
        p.bytesPerSecond = secs > 0 ? double(done) / secs : 0;
        listener.progress(p);
    }

    // ---- pieces ----

    // True while the VM's QEMU is still there (running or paused).
    bool vmAlive() const {
        if (!machine)
            return false;
        auto st = machine->status();
        return st.ok() && (st->state == vm::VmState::Running || st->state == vm::VmState::Paused);
    }

    std::uint64_t scratchFree() const {
        struct statvfs vfs {};
        if (scratchDir.empty() || ::statvfs(scratchDir.c_str(), &vfs) != 0)
            return ~std::uint64_t(0);
        return std::uint64_t(vfs.f_bavail) * vfs.f_frsize;
    }

    // A VM that could not start or be restored: out of space is the kiosk's
    // problem (NoSpace), anything else is the VM's.
    static ErrorKind vmKind(const Error& error) {
        return error.code == Errc::NoSpace ? ErrorKind::NoSpace : ErrorKind::VmFailed;
    }

    // ---- the VM watcher ----
    //
    // A status poll (virDomainGetState, an in-process call under the
    // embedded driver) every half second, not libvirt's lifecycle events:
    // with the embedded QEMU driver of libvirt 9.0 a domain lifecycle
    // callback registered fine (virConnectDomainEventRegisterAny on the
    // default event loop core/vm runs) but was never called, neither for a
    // SIGKILLed QEMU nor for a guest power-off, while the poll saw both
    // within a second. A transient domain that stopped is gone at once, so
    // the poll learns *why* from the "shutting down, reason=" line libvirt
    // writes to the domain log first (Vm::lastStopReason). A paused VM
    // (disk error) is alive and not an end.
    //
    // The watcher never takes a lock the controlling thread holds while
    // waiting for it; every public operation stops (joins) it before it
    // changes the stage, so the two never race on a transition.
    static constexpr std::chrono::milliseconds kWatchPoll{500};

    void startWatcher() {
        {
            std::lock_guard lk(watcherMutex);
            watcherStop = false;
        }
        watcherThread = std::thread([this] { watchVm(); });
    }

    void stopWatcher() {
        {
            std::lock_guard lk(watcherMutex);
            watcherStop = true;
        }
        watcherWake.notify_all();
        if (watcherThread.joinable())
            watcherThread.join();
    }

    void watchVm() {
        bool pausedSeen = false;
        std::unique_lock lk(watcherMutex);
        while (!watcherWake.wait_for(lk, kWatchPoll, [this] { return watcherStop; })) {
            lk.unlock();
            auto st = machine->status();
            lk.lock();
            if (watcherStop || !st.ok())
                continue; // a libvirt hiccup is not an end: ask again
            if (st->state == vm::VmState::Paused) {
                if (st->ioError && !pausedSeen) {
                    ISR_LOG_WARN("session") << "the VM paused on a disk error (alive, kept)";
                }
                pausedSeen = true;
                continue;
            }
            pausedSeen = false;
            if (st->state != vm::VmState::ShutOff && st->state != vm::VmState::Crashed)
                continue;
            lk.unlock();
            vmEnded(machine->lastStopReason(), st->reason);
            return;
        }
    }

    // "version 3, saved 2026-11-26 05:01 UTC"
    std::string lastSaveText() const {
        std::string text = "version " + std::to_string(base.version);
        if (base.created > 0) {
            std::time_t t = std::time_t(base.created);
            std::tm tm{};
            char when[64];
            if (::gmtime_r(&t, &tm) && std::strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm))
                text += std::string(", saved ") + when;
        }
        return text;
    }

    // On the watcher thread: the VM is gone while Running.
    void vmEnded(vm::VmStopReason reason, const std::string& detail) {
        {
            std::lock_guard lk(mutex);
            if (stage != Stage::Running)
                return;
        }
        ISR_LOG_WARN("session") << "the VM ended while running: " << vm::vmStopReasonName(reason)
                                << " (state reason " << detail << ")";
        // A guest that powered itself off left a consistent disk, but this
        // kiosk keeps a computer only as a suspended VM (memory image +
        // disk) through Suspend & Leave: it is treated like any other end of
        // the VM, and the message says so plainly.
        bool poweredOff = reason == vm::VmStopReason::GuestShutdown;
        Error what(Errc::Internal, poweredOff ? "Your computer was shut down from inside"
                                              : "Your computer stopped unexpectedly (its virtual "
                                                "machine ended)");
        std::string advice =
            std::string(poweredOff ? "Changes since your last save were not kept (only Suspend & "
                                     "Leave saves)"
                                   : "What you did since your last save is lost") +
            ". Your last saved version (" + lastSaveText() +
            ") is safe: start again from your last save";
        fail(Stage::Running, what, advice, std::nullopt, ErrorKind::VmFailed);
        // Nothing of this VM will be committed: stop sending its disk writes.
        if (disk)
            disk->stopTrickle();
    }

    Status makeDirectories() {
        std::string id = toHex(crypto::randomBytes(6));
        sessionDir = config.stateDir + "/sessions/" + id;
        std::error_code ec;
        fs::create_directories(sessionDir, ec);
        if (ec)
            return Error(Errc::Io, "cannot create " + sessionDir + ": " + ec.message());
        ::chmod(sessionDir.c_str(), 0700);
        memimg::ScratchOptions so;
        so.parent = config.scratchDir;
        ISR_TRY_ASSIGN(scratchDir, memimg::createScratchDir(so));
        savePath = scratchDir + "/memory.save";
        // The scratch holds the saved VM (guest RAM in clear) outside the
        // state directory; name it here so that the next start of a kiosk
        // that crashed can wipe it (see wipeCrashedSessions).
        std::ofstream record(sessionDir + "/scratch", std::ios::trunc);
        record << scratchDir << "\n";
        record.close();
        if (!record)
            return Error(Errc::NoSpace, "cannot record the scratch directory in " + sessionDir);
        return {};
    }

    vm::VmSpec vmSpec() const {
        vm::VmSpec spec;
        spec.name = "isr-" + user + "-" + parcelName;
        for (char& c : spec.name)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
                c = '_';
        if (spec.name.size() > 64)
            spec.name.resize(64);
        spec.uuid = parcelUuid(user, parcelName);
        spec.memoryMiB = base.vm.memoryMiB;
        spec.vcpus = base.vm.vcpus;
        spec.machine = base.vm.machine;
        spec.cpuModel = base.vm.cpu;
        spec.kernelPath = config.guestDir + "/vmlinuz";
        spec.initrdPath = config.guestDir + "/initrd.img";
        spec.diskSocketPath = sessionDir + "/disk.sock";
        if (config.serialConsole)
            spec.serialSocketPath = sessionDir + "/serial.sock";
        return spec;
    }

    Status checkOut(bool takeOver) {
        // A retry after a failed resume still holds its own lock: keep it
        // (locking again would find it and call it another kiosk's).
        if (!haveLock) {
            auto attempt = parcels->lock(parcelName, config.kioskId, takeOver);
            if (!attempt.ok())
                return fail(Stage::CheckingOut, attempt.error(),
                            "The store is unreachable; try again in a moment");
            if (!attempt->acquired) {
                const auto& h = attempt->lock;
                return fail(Stage::CheckingOut,
                            Error(Errc::Locked, "your computer is open at another kiosk (" +
                                                    h.kiosk + ") since " + std::to_string(h.since)),
                            "Take it over to continue here (unsaved work there is lost), or cancel",
                            h);
            }
            lock = attempt->lock;
            haveLock = true;
        }
        auto latest = parcels->latest(parcelName);
        if (!latest.ok())
            return fail(Stage::CheckingOut, latest.error(),
                        "Check the parcel name or ask an administrator");
        auto m = parcels->manifest(parcelName, *latest);
        if (!m.ok())
            return fail(Stage::CheckingOut, m.error(),
                        "The store's copy is damaged; an administrator can roll back to an earlier "
                        "version");
        base = std::move(*m);
        if (auto st = ISR_FAULT_POINT("session.checkout.after-manifest"); !st.ok())
            return fail(Stage::CheckingOut, st.error(), "Try again");
        if (base.vm.boot != "demo-guest")
            return fail(Stage::CheckingOut,
                        Error(Errc::Unsupported,
                              "boot profile '" + base.vm.boot + "' is not available on this kiosk"),
                        "Use a kiosk with that profile");
        startHeartbeat();
        return {};
    }

    void startHeartbeat() {
        heartbeatStop = false;
        heartbeatThread = std::thread([this] {
            std::unique_lock lk(heartbeatMutex);
            while (!heartbeatWake.wait_for(lk, config.heartbeatInterval,
                                           [this] { return heartbeatStop; })) {
                lk.unlock();
                auto st = parcels->heartbeat(parcelName, lock);
                if (!st.ok()) {
                    // The store may be down (the VM runs on cached data) or
                    // someone took the parcel over; the commit will tell.
                    ISR_LOG_WARN("session") << "heartbeat: " << st.error().describe();
                }
                lk.lock();
            }
        });
    }

    void stopHeartbeat() {
        {
            std::lock_guard lk(heartbeatMutex);
            heartbeatStop = true;
        }
        heartbeatWake.notify_all();
        if (heartbeatThread.joinable())
            heartbeatThread.join();
    }

    Status openDisk() {
        disk::ParcelDiskConfig dc;
        dc.diskSize = base.diskSize;
        dc.chunkSize = base.chunkSize;
        dc.baseTable = base.disk;
        chunks =
            std::make_shared<cache::ChunkSource>(cache.get(), [this](const chunk::ChunkName& name) {
                return parcels->fetchChunk(name);
            });
        dc.source = chunks;
        dc.convergenceSecret = parcels->secrets().convergence.clone();
        dc.overlayDirectory = sessionDir;
        dc.workingSet = base.workingSet;
        dc.hoardThreads = config.hoardThreads;
        dc.hoardBandwidthLimit = config.hoardBandwidth;
        dc.hoardFreeSpaceReserve = config.hoardFreeSpaceReserve;
        // The memory image is what the first frame waits for: the hoard
        // starts once the VM runs, not competing with it for the link.
        dc.startHoard = false;
        ISR_TRY_ASSIGN(auto opened, disk::ParcelDisk::open(std::move(dc)));
        {
            std::lock_guard lk(diskMutex);
            disk = std::move(opened);
        }
        disk::NbdServerOptions no;
        no.socketPath = sessionDir + "/disk.sock";
        ISR_TRY_ASSIGN(nbd, disk::NbdServer::start(*disk, no));
        return {};
    }

    // The memory streamer's reads take the disk's road: cache first, then
    // the store, sharing any download in flight.
    Result<Bytes> fetchCached(const chunk::ChunkName& name) { return chunks->get(name); }

    Status bringUpVm() {
        vm::VmSpec spec = vmSpec();
        if (base.memory.empty()) {
            // First resume of this parcel (or after an import): boot.
            enter(Stage::Restoring);
            if (auto st = ISR_FAULT_POINT("session.restore.before"); !st.ok())
                return fail(Stage::Restoring, st.error(), "Try again");
            auto booted = hypervisor->boot(spec);
            if (!booted.ok())
                return fail(Stage::Restoring, booted.error(),
                            "The virtual machine could not start; try again", std::nullopt,
                            vmKind(booted.error()));
            machine.emplace(std::move(*booted));
            if (auto st = ISR_FAULT_POINT("session.restore.after"); !st.ok())
                return fail(Stage::Restoring, st.error(), "Try again");
            return {};
        }
        // Stream the memory image into a FIFO that libvirt restores from, so
        // download, verification and loading overlap.
        if (auto st = ISR_FAULT_POINT("session.restore.before"); !st.ok())
            return fail(Stage::Restoring, st.error(), "Try again");
        std::string fifo = scratchDir + "/restore.fifo";
        ::unlink(fifo.c_str());
        if (::mkfifo(fifo.c_str(), 0600) != 0)
            return fail(Stage::Fetching,
                        Error(Errc::Io, std::string("mkfifo: ") + std::strerror(errno)), "");
        std::uint64_t total = 0;
        for (const auto& r : base.memory)
            total += r.length;
        auto started = Clock::now();
        Status streamed;
        std::atomic<bool> cancel{false};
        std::thread streamer([&] {
            memimg::StreamOptions so;
            so.cancel = &cancel;
            // Enough requests in flight to fill a link with tens of ms of
            // round trip (64 KiB chunks: 4 in flight cap 20 ms at ~13 MB/s).
            so.threads = 16;
            so.chunksAhead = 64;
            auto r = memimg::streamImage(
                base.memory, [this](const chunk::ChunkName& n) { return fetchCached(n); }, fifo, so,
                [&](const memimg::Progress& p) {
                    if (cancelRequested)
                        cancel = true;
                    report("memory image", p.done, total, started);
                });
            if (!r.ok())
                streamed = std::move(r).error();
        });
        // libvirt opens the FIFO and reads it while the streamer writes; the
        // Restoring stage begins when QEMU starts loading.
        enter(Stage::Restoring);
        auto restored = hypervisor->restore(fifo, spec);
        if (!restored.ok())
            cancel = true;
        // Unblock a streamer still waiting for a reader.
        if (!restored.ok()) {
            int fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
            if (fd >= 0)
                ::close(fd);
        }
        streamer.join();
        ::unlink(fifo.c_str());
        if (cancelRequested) {
            if (restored.ok())
                machine.emplace(std::move(*restored)); // wiped with the rest
            return Error(Errc::Cancelled, "resume cancelled");
        }
        if (!streamed.ok())
            return fail(Stage::Fetching, streamed.error(),
                        "The saved memory image could not be fetched; try again, or an "
                        "administrator can roll back");
        if (!restored.ok())
            return fail(Stage::Restoring, restored.error(),
                        "The virtual machine could not be restored; try again", std::nullopt,
                        vmKind(restored.error()));
        machine.emplace(std::move(*restored));
        if (auto st = ISR_FAULT_POINT("session.restore.after"); !st.ok())
            return fail(Stage::Restoring, st.error(), "Try again");
        if (auto t = machine->syncGuestTime(); !t.ok()) {
            ISR_LOG_INFO("session") << "guest clock not set: " << t.error().describe();
        }
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

    // Chunks the base version's memory image names are in the store (that
    // version is committed), so they are skipped without asking the store:
    // asking is one round trip a chunk, and an image has thousands. The
    // rest is almost always new, so it goes with put-if-absent unasked.
    Result<memimg::Uploaded> uploadMemoryChunks(const std::vector<chunk::EncodedChunk>& batch) {
        parcel::Parcels::UploadOptions options;
        options.askStore = false;
        options.dedup = config.memoryDedup;
        if (config.memoryDedup) {
            if (baseMemoryNames.empty())
                for (const auto& r : base.memory)
                    baseMemoryNames.insert(r.name);
            options.knownPresent = &baseMemoryNames;
        }
        ISR_TRY_ASSIGN(auto sent, parcels->uploadChunks(batch, options));
        return memimg::Uploaded{sent.chunks, sent.bytes};
    }

    // Suspend, resumable: each step is skipped if a previous attempt did it.
    Status suspendSteps() {
        if (disk)
            disk->stopTrickle();
        auto started = Clock::now();
        if (!memorySaved) {
            if (!machine)
                return fail(Stage::Suspending, Error(Errc::Internal, "no VM is running"),
                            "Your last saved version is intact: resume it again", std::nullopt,
                            ErrorKind::VmFailed);
            if (auto st = ISR_FAULT_POINT("session.save.before"); !st.ok())
                return fail(Stage::Suspending, st.error(), "Try again");
            auto st = machine->save(savePath);
            if (!st.ok()) {
                if (!vmAlive()) {
                    // QEMU is gone (crashed or killed): nothing to save, and
                    // retrying cannot help. Drop the dead VM so abandon()
                    // releases the parcel for the next resume.
                    machine.reset();
                    return fail(Stage::Suspending, st.error(),
                                "The virtual machine stopped unexpectedly and its unsaved work "
                                "is lost; your last saved version is intact: resume it again",
                                std::nullopt, ErrorKind::VmFailed);
                }
                // libvirt does not always say why a save failed; a scratch
                // with less room than the VM's memory is the likely reason.
                Error why = st.error();
                if (why.code != Errc::NoSpace &&
                    scratchFree() < (std::uint64_t(base.vm.memoryMiB) << 20))
                    why = Error(Errc::NoSpace,
                                why.message + " (the memory-backed scratch " + scratchDir +
                                    " has " + std::to_string(scratchFree() >> 20) + " MiB free)");
                if (why.code == Errc::NoSpace)
                    ::unlink(savePath.c_str()); // a partial save only takes space
                return fail(Stage::Suspending, why,
                            why.code == Errc::NoSpace
                                ? "The kiosk ran out of memory-backed space for your memory "
                                  "image; tell staff, then try again"
                                : "The virtual machine could not be saved; try again");
            }
            machine.reset();
            memorySaved = true;
            if (auto fst = ISR_FAULT_POINT("session.save.after"); !fst.ok())
                return fail(Stage::Suspending, fst.error(), "Try again");
        }
        if (!recipe) {
            auto chunker = memimg::Chunker::create(parcels->secrets().convergence.view());
            if (!chunker.ok())
                return fail(Stage::Suspending, chunker.error(), "");
            auto chunked = memimg::chunkImage(
                savePath, parcels->secrets().convergence.view(), *chunker,
                [this](const std::vector<chunk::EncodedChunk>& batch) -> Result<memimg::Uploaded> {
                    ISR_TRY_STATUS(ISR_FAULT_POINT("session.memimg.batch"));
                    return uploadMemoryChunks(batch);
                },
                {},
                [&](const memimg::Progress& p) {
                    report("memory image", p.done, p.total, started);
                });
            if (!chunked.ok())
                return fail(Stage::Suspending, chunked.error(),
                            "Could not send your memory image; check the network and try again");
            recipe = chunked->recipe;
        }
        if (auto st = ISR_FAULT_POINT("session.disk.upload.before"); !st.ok())
            return fail(Stage::Suspending, st.error(), "Try again");
        auto table = disk->finalChunkTable();
        if (!table.ok())
            return fail(Stage::Suspending, table.error(), "");
        auto uploaded = parcels->uploadChunks(
            table->newChunks, [&](std::string_view, std::uint64_t d, std::uint64_t t) {
                report("disk", d, t, started);
            });
        if (!uploaded.ok())
            return fail(Stage::Suspending, uploaded.error(),
                        "Could not send your disk changes; check the network and try again");
        parcel::Manifest next = base;
        next.parent = base.version;
        next.created = 0;
        next.kiosk = config.kioskId;
        next.disk = std::move(table->table);
        next.memory = *recipe;
        next.workingSet = table->workingSet;
        std::sort(next.workingSet.begin(), next.workingSet.end());
        next.workingSet.erase(std::unique(next.workingSet.begin(), next.workingSet.end()),
                              next.workingSet.end());
        auto n = parcels->commit(parcelName, next, {});
        if (!n.ok()) {
            if (n.error().code == Errc::Conflict)
                return fail(Stage::Suspending, n.error(),
                            "Another kiosk saved this computer after you took it; your session "
                            "here cannot be saved over it");
            return fail(Stage::Suspending, n.error(),
                        "Could not save; check the network and try again");
        }
        committed = *n;
        stopHeartbeat();
        if (auto st = ISR_FAULT_POINT("session.unlock.before"); !st.ok())
            return fail(Stage::Suspending, st.error(), "Try again");
        // The version is committed whatever happens to the lock now. A
        // failed unlock keeps haveLock so signOut() tries once more; if that
        // fails too, the next kiosk can take the parcel over.
        if (auto st = parcels->unlock(parcelName, lock); !st.ok()) {
            ISR_LOG_WARN("session")
                << "unlock failed (trying again at sign-out): " << st.error().describe();
        } else {
            haveLock = false;
        }
        return {};
    }

    // Suspending -> Wiping -> SignedOut; a failure stops in Failed with the
    // saved state kept, so retry() comes back here.
    Status suspendAndWipe() {
        enter(Stage::Suspending);
        ISR_TRY_STATUS(suspendSteps());
        return wipeAndSignOut();
    }

    Status wipeAndSignOut() {
        enter(Stage::Wiping);
        if (auto st = ISR_FAULT_POINT("session.wipe.before"); !st.ok())
            return fail(Stage::Wiping, st.error(), "Try again");
        wipeLocal();
        signOut();
        enter(Stage::SignedOut);
        return {};
    }

    // After requestCancel(): undo the resume so far (VM, disk, scratch,
    // lock) and end SignedOut. Nothing was committed by this resume.
    Error endCancelled() {
        ISR_LOG_INFO("session") << "resume cancelled at " << stageName(stage);
        if (stage == Stage::Authenticating) {
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

    // Drops every local trace of the session. Idempotent.
    void wipeLocal() {
        stopWatcher();
        if (disk)
            disk->stopTrickle();
        if (machine) {
            if (auto st = machine->destroy(); !st.ok()) {
                ISR_LOG_WARN("session") << "destroy: " << st.error().describe();
            }
            machine.reset();
        }
        if (nbd)
            nbd->stop();
        nbd.reset();
        {
            std::lock_guard lk(diskMutex);
            disk.reset(); // deletes the overlay
        }
        if (!scratchDir.empty()) {
            if (auto st = ISR_FAULT_POINT("session.wipe.after-vm"); !st.ok()) {
                // A wipe never stops half-way: the fault is only reported.
                ISR_LOG_WARN("session") << "wipe: " << st.error().describe();
            }
            if (auto st = memimg::wipeScratchDir(scratchDir); !st.ok()) {
                ISR_LOG_WARN("session") << "wiping scratch: " << st.error().describe();
            }
        }
        scratchDir.clear();
        savePath.clear();
        if (!sessionDir.empty()) {
            std::error_code ec;
            fs::remove_all(sessionDir, ec);
        }
        sessionDir.clear();
        memorySaved = false;
        recipe.reset();
        baseMemoryNames.clear();
    }

    void signOut() {
        stopHeartbeat();
        if (haveLock && parcels) {
            if (auto st = parcels->unlock(parcelName, lock); !st.ok()) {
                ISR_LOG_WARN("session") << "unlock: " << st.error().describe();
            }
        }
        haveLock = false;
        parcels.reset(); // wipes the user's secrets (sodium_free)
        store.reset();
        base = {};
    }
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Session::~Session() {
    if (impl_) {
        impl_->wipeLocal();
        impl_->signOut();
    }
}

Result<std::unique_ptr<Session>> Session::create(KioskConfig config, Listener listener) {
    if (config.stateDir.empty() || config.stateDir[0] != '/')
        return Error(Errc::InvalidArgument, "the kiosk state directory must be an absolute path");
    if (config.kioskId.empty())
        config.kioskId = hostName();
    std::error_code ec;
    fs::create_directories(config.stateDir + "/cache", ec);
    if (ec)
        return Error(Errc::Io, "cannot create " + config.stateDir + ": " + ec.message());
    // Sessions of a crashed previous run: their overlays are ciphertext under
    // keys that died with that process, so they are useless; remove them.
    // Their scratch directories may hold a saved VM (guest RAM in clear):
    // wipe those first.
    wipeCrashedSessions(config.stateDir + "/sessions");
    fs::remove_all(config.stateDir + "/sessions", ec);
    auto impl = std::make_unique<Impl>();
    impl->config = config;
    impl->listener = std::move(listener);
    ISR_TRY_ASSIGN(impl->cache,
                   cache::ChunkCache::open(config.stateDir + "/cache", config.cacheCapBytes));
    vm::HostConfig hc;
    hc.stateDir = config.stateDir;
    if (!config.guestDir.empty())
        hc.bootDirs.push_back(config.guestDir);
    if (config.accelerator == "kvm")
        hc.accelerator = vm::Accelerator::Kvm;
    else if (config.accelerator == "tcg")
        hc.accelerator = vm::Accelerator::Tcg;
    else if (!config.accelerator.empty())
        return Error(Errc::InvalidArgument, "accelerator must be kvm or tcg");
    ISR_TRY_ASSIGN(impl->hypervisor, vm::Hypervisor::open(hc));
    if (impl->hypervisor->reapedAtOpen() > 0) {
        ISR_LOG_WARN("session") << "reaped " << impl->hypervisor->reapedAtOpen()
                                << " VM(s) left by a previous run";
    }
    return std::unique_ptr<Session>(new Session(std::move(impl)));
}

Status Session::resume(const std::string& user, const std::string& password,
                       const std::string& parcelName, bool takeOver) {
    Impl& s = *impl_;
    Stage now = stage();
    s.cancelRequested = false;
    bool continuing =
        now == Stage::Failed && s.parcels && s.user == user && s.parcelName == parcelName;
    if (!continuing) {
        if (now != Stage::SignedOut && now != Stage::Failed)
            return Error(Errc::InvalidArgument,
                         std::string("cannot resume while ") + stageName(now));
        s.wipeLocal();
        s.signOut();
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
            return s.fail(Stage::Authenticating, e,
                          "The store is unreachable; try again in a moment");
        }
        s.store = std::make_unique<CountingStore>(std::move(*opened), s.totalDown, s.totalUp);
        auto secrets = [&]() -> Result<parcel::UserSecrets> {
            ISR_TRY_STATUS(ISR_FAULT_POINT("session.signin.before"));
            return parcel::signIn(*s.store, user, password);
        }();
        if (!secrets.ok()) {
            s.store.reset();
            return s.fail(Stage::Authenticating, secrets.error(),
                          secrets.error().code == Errc::AuthFailed ? "Check them and try again"
                                                                   : "Try again in a moment");
        }
        if (!secrets->s3.accessKey.empty())
            s.store->setWriteCredentials(secrets->s3);
        s.parcels = std::make_unique<parcel::Parcels>(*s.store, std::move(*secrets));
        if (s.cancelRequested)
            return s.endCancelled();
    } else {
        s.wipeLocal();     // a failed resume leaves nothing worth keeping
        s.stopHeartbeat(); // checkOut starts it again
    }
    s.enter(Stage::CheckingOut);
    if (s.parcelName.empty()) {
        // The kiosk asks only for a user name: take the user's one parcel,
        // or the one called "default".
        auto names = s.parcels->list();
        if (!names.ok())
            return s.fail(Stage::CheckingOut, names.error(), "The store is unreachable; try again");
        if (names->size() == 1)
            s.parcelName = names->front();
        else if (std::find(names->begin(), names->end(), "default") != names->end())
            s.parcelName = "default";
        else
            return s.fail(Stage::CheckingOut,
                          Error(Errc::NotFound, names->empty()
                                                    ? "you have no computer in this store"
                                                    : "you have several computers"),
                          "Ask an administrator which one this kiosk should open");
    }
    ISR_TRY_STATUS(s.checkOut(takeOver));
    if (s.cancelRequested)
        return s.endCancelled();
    s.enter(Stage::Fetching);
    if (auto st = s.makeDirectories(); !st.ok())
        return s.fail(Stage::Fetching, st.error(),
                      "The kiosk is out of space or misconfigured; tell staff");
    if (auto st = ISR_FAULT_POINT("session.fetch.before-disk"); !st.ok())
        return s.fail(Stage::Fetching, st.error(), "Try again");
    if (auto st = s.openDisk(); !st.ok())
        return s.fail(Stage::Fetching, st.error(),
                      st.error().code == Errc::NoSpace ? "The kiosk is out of space; tell staff"
                                                       : "");
    if (s.cancelRequested)
        return s.endCancelled();
    if (auto st = s.bringUpVm(); !st.ok())
        return s.cancelRequested ? s.endCancelled() : st;
    if (s.cancelRequested)
        return s.endCancelled();
    s.disk->startHoard();
    s.startTrickle();
    s.enter(Stage::Running);
    s.startWatcher();
    return {};
}

Status Session::suspendAndLeave() {
    Impl& s = *impl_;
    // From here on a VM that ends is noticed by the save failing.
    s.stopWatcher();
    if (stage() != Stage::Running) {
        auto f = failure();
        if (f && f->stage == Stage::Running)
            return Error(Errc::InvalidArgument, f->message);
        return Error(Errc::InvalidArgument,
                     std::string("nothing to suspend while ") + stageName(stage()));
    }
    return s.suspendAndWipe();
}

Status Session::retry() {
    Impl& s = *impl_;
    auto f = failure();
    if (stage() != Stage::Failed || !f)
        return Error(Errc::InvalidArgument, "nothing to retry");
    if (f->stage == Stage::Suspending)
        return s.suspendAndWipe();
    if (f->stage == Stage::Wiping)
        return s.wipeAndSignOut();
    if (!s.parcels)
        return Error(Errc::InvalidArgument, "sign in again");
    return resume(s.user, "", s.parcelName, false);
}

Status Session::abandon() {
    Impl& s = *impl_;
    s.stopWatcher();
    Stage now = stage();
    if (now == Stage::SignedOut)
        return {};
    s.enter(Stage::Wiping);
    s.wipeLocal();
    s.signOut();
    s.enter(Stage::SignedOut);
    return {};
}

void Session::requestCancel() {
    Stage now = stage();
    if (now == Stage::Authenticating || now == Stage::CheckingOut || now == Stage::Fetching ||
        now == Stage::Restoring)
        impl_->cancelRequested = true;
}

Stage Session::stage() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->stage;
}
std::optional<Failure> Session::failure() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->failure;
}
HoardStatus Session::hoard() const {
    HoardStatus h;
    std::lock_guard lock(impl_->diskMutex);
    if (impl_->disk) {
        auto p = impl_->disk->hoardProgress();
        h.chunksDone = p.chunksDone;
        h.chunksTotal = p.chunksTotal;
        h.bytesDone = p.bytesDone;
        h.bytesTotal = p.bytesTotal;
        if (p.stalled) {
            bool space = p.stalled->code == Errc::NoSpace || p.stalled->code == Errc::Io;
            h.problem = space ? ErrorKind::NoSpace : ErrorKind::StoreUnreachable;
            h.problemMessage =
                (space ? "hoard paused, the kiosk's disk is (nearly) full: " + p.stalled->message +
                             "; the computer keeps running and fetches what it reads"
                       : "hoard paused, the store is unreachable: " + p.stalled->message +
                             "; the computer keeps running on what is cached") +
                "; retrying with backoff";
        }
    }
    return h;
}
std::vector<TimelineEntry> Session::timeline() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->timeline;
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
std::uint64_t Session::committedVersion() const {
    return impl_->committed;
}
std::string Session::serialSocketPath() const {
    return impl_->config.serialConsole && !impl_->sessionDir.empty()
               ? impl_->sessionDir + "/serial.sock"
               : "";
}
std::string Session::sessionDirectory() const {
    return impl_->sessionDir;
}
std::string Session::scratchDirectory() const {
    return impl_->scratchDir;
}
std::string Session::accelerator() const {
    return vm::acceleratorName(impl_->hypervisor->accelerator());
}

Result<int> Session::openDisplay() {
    if (!impl_->machine)
        return Error(Errc::InvalidArgument, "no VM is running");
    ISR_TRY_ASSIGN(UniqueFd fd, impl_->machine->openGraphicsFd());
    return fd.release();
}

std::string formatTimeline(const std::vector<TimelineEntry>& timeline) {
    std::ostringstream out;
    char line[160];
    std::snprintf(line, sizeof line, "%-16s %9s %12s %12s\n", "stage", "seconds", "down", "up");
    out << line;
    double total = 0;
    std::uint64_t down = 0, up = 0;
    for (const auto& e : timeline) {
        std::snprintf(line, sizeof line, "%-16s %9.2f %12llu %12llu\n", stageName(e.stage),
                      e.seconds, (unsigned long long)e.bytesDown, (unsigned long long)e.bytesUp);
        out << line;
        total += e.seconds;
        down += e.bytesDown;
        up += e.bytesUp;
    }
    std::snprintf(line, sizeof line, "%-16s %9.2f %12llu %12llu\n", "total", total,
                  (unsigned long long)down, (unsigned long long)up);
    out << line;
    return out.str();
}

} // namespace isr::session
