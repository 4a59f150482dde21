#pragma once
// session: the orchestrator. Signs a user in, checks a parcel out, serves its
// disk, brings the VM back (restore, or boot on first use), keeps it fed
// while it runs, and at Suspend & Leave saves, uploads, commits, unlocks and
// wipes the kiosk. The UI and `isrctl session` drive it unchanged.
//
// Stages and legal transitions (anything else is a bug):
//
//   SignedOut      -> Authenticating                     resume()
//   Authenticating -> CheckingOut | Failed
//   CheckingOut    -> Fetching | Failed                  (Failed/LockedElsewhere: holder known)
//   Fetching       -> Restoring | Failed
//   Restoring      -> Running | Failed
//   Running        -> Suspending | Failed                suspendAndLeave()
//                   | Failed(Running, VmFailed)          the VM ended by itself (below)
//   Suspending     -> Wiping | Failed
//   Wiping         -> SignedOut | Failed
//   Authenticating -> SignedOut                          requestCancel()
//   CheckingOut, Fetching, Restoring -> Wiping           requestCancel()
//   Failed         -> Authenticating                     resume(..., takeOver) / retry(password)
//                   | Suspending                         retry(password) after a failed suspend
//                   | Wiping                             abandon(): drop unsaved state, unlock
//                   | SignedOut                          nothing left to wipe
//
// Nothing committed is ever lost: a failure before the commit leaves the
// previous version as it was; a failed suspend with something left to save
// keeps the saved memory image (in memory-backed scratch), the disk overlay,
// the keys and the lock so retry(password) can finish it.
//
// Failed holds no keys otherwise: every other failure wipes the VM, the
// disk and the scratch, releases the lock if this kiosk holds it (never
// another kiosk's) and drops the user's keys before it is announced. Every
// way back asks for the password again and checks it before the lock is
// touched: retry(password) and resume(..., takeOver) sign in afresh; a
// failed suspend's retry(password) checks the password against the account
// first. A wrong password changes nothing.
//
// The VM ending while Running (QEMU killed or crashed, or the guest powering
// itself off) is noticed within about a second by a watcher thread: Failed
// with stage Running, ErrorKind::VmFailed, wiped and unlocked as above;
// retry(password) resumes the last committed version. A VM paused on a disk
// error (error_policy=stop, e.g. the overlay's file system full) is alive and
// not a failure.
//
// A take-over: the lease's heartbeat finds the lock held by another kiosk;
// the VM is destroyed (no save), and the session fails with LockTakenOver
// (holder: the new holder), wiped, without touching the lock. A suspend
// confirms the lock (a conditional write) just before it commits, so a kiosk
// taken over writes no version.
//
// Threads: resume(), suspendAndLeave(), retry(), abandon(), checkPassword()
// and openDisplay() block and must be called from one controlling thread at
// a time (the CLI's main thread, the UI's worker thread). Listener callbacks
// run on that thread or on internal worker threads (progress, and
// stageChanged/failed from the VM watcher when the VM ends while Running);
// they must not call back into the Session (requestCancel() excepted).
// stage(), failure(), hoard(), memoryFaults(), timeline() and requestCancel() are safe from
// any thread; hoard() never waits on the disk's work (the GUI polls it every
// second, also while a wipe destroys the disk). The other accessors (names,
// versions, directories) read what the controlling thread set: call them
// from it, or while it is not in a call.

#include "parcel/parcel.h"
#include "store/store.h"
#include "util/result.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace isr::session {

enum class Stage {
    SignedOut,
    Authenticating,
    CheckingOut,
    Fetching,
    Restoring,
    Running,
    Suspending,
    Wiping,
    Failed,
};
const char* stageName(Stage stage);
bool isLegalTransition(Stage from, Stage to);

enum class ErrorKind {
    None,
    WrongCredentials,
    StoreUnreachable,
    LockedElsewhere,
    Corrupt,
    NoSpace,
    VmFailed,
    Internal,
};
const char* errorKindName(ErrorKind kind);
ErrorKind classify(const Error& error);

// Which situation a failure is, beyond its kind. The core reports facts;
// the UI (with tr()) and isrctl (in English) turn (kind, cause, stage) and the
// facts below into sentences through one renderer (ui/text/failuretext.h).
enum class FailureCause {
    Generic,                // nothing more specific: kind and stage say it ("try again")
    StoreUnreachable,       // the store could not be opened or did not answer
    WrongCredentials,       // sign-in: unknown user or wrong password (the same answer)
    NoParcel,               // the user has no computer in this store
    SeveralParcels,         // several computers, none called "default"
    ParcelNotFound,         // the parcel's versions cannot be found
    LockedElsewhere,        // open at another kiosk: see holder
    DamagedVersion,         // the newest version does not verify
    BootProfileUnavailable, // the parcel boots in a way this kiosk cannot: see bootProfile,
                            // missingPackage
    NoBootLoader,           // a firmware parcel's disk has nothing the firmware can boot
    OsDidNotStart,    // a firmware parcel's first boot showed no sign of its OS within the bound
                      // (KioskConfig::firstBootTimeout): the VM was stopped, nothing changed
    KioskStorage,     // the kiosk's own disk/scratch is full or unusable: see where, freeBytes
    MemoryImageFetch, // the saved memory image could not be fetched
    VmStart,          // the VM could not start (first boot)
    VmRestore,        // the VM could not be restored
    VmStopped,        // the VM ended by itself while Running (QEMU crashed or was killed)
    GuestPoweredOff,  // the guest shut itself down while Running
    VmGoneAtSave,     // Suspend & Leave found no VM to save
    SaveFailed,       // the VM could not be saved
    MemoryUpload,     // the memory image could not be sent
    DiskUpload,       // the disk changes could not be sent
    CommitConflict,   // another kiosk saved this computer after this one took it
    Commit,           // the new version could not be created
    UnsafeKiosk,      // the kiosk refuses sessions: unencrypted swap is active (see where)
    LockTakenOver,    // another kiosk took the parcel over: this one stopped without saving
                      // (holder: the new holder, when known)
    StoreRolledBack,  // the store's newest version is older than one this kiosk has seen
                      // (served: what it offered; seen: the newer one)
    StoreForked,      // the store's copy is not the one this kiosk saw, or its versions do not
                      // bind each other (served, seen when known)
};
const char* failureCauseName(FailureCause cause);

// A committed version, as a person knows it: "version 3, saved Tuesday 14:02
// at gate-23".
struct SavedVersion {
    std::uint64_t version = 0;
    std::int64_t created = 0; // Unix seconds (UTC); the UI shows local time
    std::string kiosk;
};

struct Failure {
    Stage stage = Stage::SignedOut; // the stage that failed
    ErrorKind kind = ErrorKind::None;
    FailureCause cause = FailureCause::Generic;
    std::optional<parcel::LockInfo> holder; // LockedElsewhere, LockTakenOver: who holds it
    std::optional<SavedVersion> lastSave;   // the committed version that is safe, when known
    std::string where;                      // KioskStorage: the path that is full or unusable
    std::optional<std::uint64_t> freeBytes; // KioskStorage: free bytes there, when known
    std::string bootProfile;                // BootProfileUnavailable: the parcel's profile
    std::string missingPackage; // BootProfileUnavailable: the Debian package the kiosk lacks
    // StoreRolledBack, StoreForked: the version the store offered, and the
    // newest this kiosk has seen of the parcel (session/seen_versions.h).
    std::optional<SavedVersion> served;
    std::optional<SavedVersion> seen;
    // The underlying error in technical English (the store's or libvirt's own
    // words) for the log and a "details" line; never the main text.
    std::string detail;
};

struct Progress {
    Stage stage = Stage::SignedOut;
    std::string what;       // "memory image", "upload", "hoard"...
    std::uint64_t done = 0; // bytes unless `what` says otherwise
    std::uint64_t total = 0;
    double bytesPerSecond = 0;
};

struct HoardStatus {
    std::uint64_t chunksDone = 0;
    std::uint64_t chunksTotal = 0;
    std::uint64_t bytesDone = 0;
    std::uint64_t bytesTotal = 0;
    // Why the background hoard is held back, while it is; the VM keeps running
    // (its reads still fetch from the store) and Suspend & Leave still works.
    //   NoSpace          the kiosk's state directory is full: the cache cannot
    //                    keep chunks (staff should make room)
    //   StoreUnreachable the store does not answer (the VM runs on what is cached)
    // The hoard retries with backoff (1 s doubling to 30 s) and clears this
    // by itself when a chunk gets through. None otherwise.
    ErrorKind problem = ErrorKind::None;
    std::string problemMessage;
    // With lazy memory the figures above are the disk's and the RAM's
    // together; these are the RAM's part (0 without lazy memory).
    std::uint64_t memoryChunksDone = 0;
    std::uint64_t memoryChunksTotal = 0;
};

// Lazy memory (issue #17): the guest's reads of its RAM file in its first
// kFaultWindow of running. Each is one FUSE read: a page fault, with the
// kernel's readahead around it. Local = served on the kiosk (the RAM's
// overlay, plaintext LRU or kiosk cache); remote = a piece had to come from
// the store. Service times are the kiosk's side (ParcelDisk::read), in
// milliseconds; the fault's own kernel round trip is not in them.
struct MemoryFaults {
    bool lazy = false;       // the VM runs from a lazily served RAM file
    bool windowOpen = false; // the window has not ended: figures still grow
    std::uint64_t local = 0;
    std::uint64_t remote = 0;
    double localP50Ms = 0, localP99Ms = 0;
    double remoteP50Ms = 0, remoteP99Ms = 0;
};
inline constexpr std::chrono::seconds kFaultWindow{30};

// One row of the timeline each resume/suspend prints.
struct TimelineEntry {
    Stage stage = Stage::SignedOut;
    double seconds = 0;
    std::uint64_t bytesDown = 0; // from the store during this stage
    std::uint64_t bytesUp = 0;   // to the store during this stage
};

struct Listener {
    std::function<void(Stage)> stageChanged;
    std::function<void(const Progress&)> progress;
    std::function<void(const Failure&)> failed;
    // The version a resume will open, once checked (CheckingOut, before
    // Fetching): "saved Tuesday 14:02 at gate-23", for the person who knows
    // when and where they last saved. On the controlling thread.
    std::function<void(const SavedVersion&)> resuming;
};

// The devices a firmware-booted (desktop) parcel gets from this kiosk.
struct DesktopOptions {
    // The display's preferred mode: the kiosk's screen. 0x0: QEMU's default.
    std::uint32_t screenWidth = 0;
    std::uint32_t screenHeight = 0;
    // The sound device's output: "none" (silent), "pulseaudio", "alsa".
    std::string audio = "none";
};

struct KioskConfig {
    // Shown to other kiosks in the lock, and recorded in every version this
    // kiosk saves (the resume screen says "saved ... at <kiosk id>"): only
    // what the operator configured; default: the host name.
    std::string kioskId;
    // The stateDir also holds seen/: per user and parcel (file named by a
    // keyed hash, sealed with the user's key), the newest version this kiosk
    // has seen, so a store that serves an older or a different copy is
    // refused (StoreRolledBack, StoreForked; session/seen_versions.h).
    std::string stateDir; // cache, libvirt root, per-session dirs (sockets, overlay)
    std::string storeUrl;
    store::StoreOptions storeOptions;
    std::uint64_t cacheCapBytes = 8ull << 30;
    std::string scratchDir;     // memory-backed; empty: /dev/shm
    std::string guestDir;       // the "demo-guest" boot profile: vmlinuz, initrd.img
    std::string metricsFile;    // Prometheus textfile (session/metrics.h); empty: none
    std::string accelerator;    // "", "kvm" or "tcg"
    bool serialConsole = false; // ttyS0 on <session dir>/serial.sock (tests, debugging)
    DesktopOptions desktop;     // firmware-booted parcels' display and sound
    std::chrono::milliseconds trickleQuiet{15000};
    std::chrono::milliseconds trickleInterval{5000};
    std::chrono::milliseconds heartbeatInterval{60000};
    int hoardThreads = 4;
    std::uint64_t hoardBandwidth = 0; // bytes/s, 0 = unlimited
    // The hoard stops (HoardStatus::problem = NoSpace) when the state
    // directory's file system has less than this free, keeping room for the
    // session overlay: a guest write that finds none pauses the VM.
    std::uint64_t hoardFreeSpaceReserve = 64ull << 20;
    // false: Suspend & Leave sends every memory chunk whether or not the store
    // has it, i.e. the whole compressed memory image as OpenISR did. Only the
    // walk-up benchmark's anchor (tests/bench/walkup) turns dedup off.
    bool memoryDedup = true;
    // kiosk.conf allow_unencrypted_swap: create() refuses a host with
    // unencrypted swap unless set (checkKioskHost, kioskconfig.h).
    bool allowUnencryptedSwap = false;
    // The guest's network (vm::GuestNetworkPolicy, issue #16 item 4): as
    // root, the guest reaches the internet only, not the store (unless
    // guest_may_reach_store), not private ranges (except
    // guest_allowed_networks, canonical CIDRs); create() and every start
    // fail when the filter cannot be loaded unless
    // allow_unfiltered_guest_network.
    bool guestMayReachStore = false;
    std::vector<std::string> guestAllowedNetworks;
    bool allowUnfilteredGuestNetwork = false;
    // kiosk.conf lazy_memory (issue #17): run the guest's RAM from a file
    // this kiosk serves from chunks (FUSE) and save it as a chunk table, so
    // the next resume runs before the RAM has arrived and Suspend & Leave
    // sends only the RAM chunks the session changed. A version saved that
    // way is resumed lazily whatever this says; this decides whether a VM
    // this kiosk boots runs (and is saved) lazily. A whole memory image
    // restores as before and stays one (session README "Lazy memory").
    bool lazyMemory = false;
    // kiosk.conf first_boot_timeout: how long a firmware parcel's first boot
    // (no memory image) may go without a sign of its operating system before
    // the session ends with OsDidNotStart (session README "Firmware-booted
    // parcels"); 0 s: never. Unset: kFirstBootTimeoutKvm or
    // kFirstBootTimeoutTcg by the accelerator the VM runs under.
    std::optional<std::chrono::seconds> firstBootTimeout;
};
// Measured 2026-12-04 under TCG on an idle 2-core machine: the reference
// desktop showed itself (writes to its disk) 20.7 s after its firmware
// started (test_e2e_desktop), the demo guest on boot disks (balloon driver)
// 6.5 s under SeaBIOS and 12.5 s under OVMF (test_firmware_boot). A loaded
// machine here ran 4-8x slower than an idle one (the desktop image's build,
// tests/e2e/CMakeLists.txt); these leave a wide margin over that,
// while the person at the kiosk still hears within minutes that the
// computer will not start.
inline constexpr std::chrono::seconds kFirstBootTimeoutKvm{180};
inline constexpr std::chrono::seconds kFirstBootTimeoutTcg{600};

// What showed that a booting guest's operating system runs.
struct FirstBootSign {
    std::string sign;                   // "writes to its disk", "balloon driver", "guest agent"
    std::chrono::milliseconds after{0}; // since the VM (its firmware) started
};

class Session {
public:
    // Opens the hypervisor (reaping VMs a crashed previous run left behind)
    // and the kiosk's chunk cache. One Session per process.
    static Result<std::unique_ptr<Session>> create(KioskConfig config, Listener listener);
    ~Session(); // abandons an active session without saving (the last commit stays)

    // SignedOut/Failed -> ... -> Running, always through a fresh sign-in
    // (the password is checked before the lock is touched). On
    // LockedElsewhere, call again with takeOver = true and the password (or
    // abandon()). An empty parcel name picks the user's only parcel, or the
    // one named "default". From a failed suspend of the same user that kept
    // its state, a wrong password is refused (AuthFailed) with nothing
    // changed; the right one gives that state up.
    Status resume(const std::string& user, std::string_view password, const std::string& parcel,
                  bool takeOver = false);
    // Running -> Suspending -> Wiping -> SignedOut.
    Status suspendAndLeave();
    // Failed -> with the user's password again: a failed suspend that kept
    // its state resumes where it stopped (the password checked first: a
    // wrong one is AuthFailed and changes nothing); anything else resumes
    // the last committed version with a fresh sign-in. A failed wipe is
    // finished (password not needed: it only wipes).
    Status retry(std::string_view password);
    // Failed/Running -> Wiping -> SignedOut without saving: the VM is
    // destroyed, local state wiped, the lock released (if still ours), the
    // keys and the user and parcel names dropped. The last committed version
    // is what the next resume gets.
    Status abandon();
    // Running: checks `password` against the signed-in user's account the
    // way a sign-in does (the account object read from the store, Argon2id,
    // the seal opened and its master key compared with the one held), for
    // the kiosk's lock screen. Nothing changes either way: the VM, the lock
    // and the keys stay. AuthFailed if the password is wrong, InvalidArgument
    // outside Running, the store's error if the account could not be read.
    // The password is only read (the caller wipes its copy); the derived key
    // and the opened secrets are sodium_malloc'ed and wiped on return. Blocks
    // for the key derivation: call it from the controlling thread (the UI's
    // worker). The VM watcher is paused meanwhile (a VM that ends is then
    // noticed when the check returns).
    Status checkPassword(std::string_view password);
    // Asks a resume() in progress on another thread to stop: it returns
    // Cancelled at its next step (between stages, or within a chunk of the
    // memory image), after wiping what it set up and releasing the lock, and
    // the session is SignedOut. The last committed version is untouched.
    // Safe from any thread, and from Listener callbacks (it only sets a flag);
    // does nothing outside a resume.
    void requestCancel();

    Stage stage() const;
    std::optional<Failure> failure() const;
    HoardStatus hoard() const;
    MemoryFaults memoryFaults() const;
    std::vector<TimelineEntry> timeline() const;
    std::string userName() const;
    std::string parcelName() const;
    std::uint64_t baseVersion() const; // version this session started from
    // When and where that version was saved (version 0: none yet).
    SavedVersion baseSave() const;
    std::uint64_t committedVersion() const; // version the last suspend created, 0 if none
    // <session dir>/serial.sock when KioskConfig::serialConsole, else "".
    std::string serialSocketPath() const;
    std::string sessionDirectory() const;
    std::string scratchDirectory() const;
    // A connected VNC socket to the running VM's display (caller owns it).
    Result<int> openDisplay();
    std::string accelerator() const;
    // A firmware parcel's first boot: the sign that its operating system
    // runs and when it came (session README "Firmware-booted parcels");
    // nullopt before one, after a restore and for the demo guest.
    std::optional<FirstBootSign> firstBootSign() const;

    struct Impl;

private:
    explicit Session(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Prints the timeline as a table ("stage  seconds  down  up").
std::string formatTimeline(const std::vector<TimelineEntry>& timeline);

} // namespace isr::session
