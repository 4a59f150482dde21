#pragma once
// core/vm: the VM through libvirt's embedded QEMU driver.
//
// A Hypervisor is this process's connection to libvirt (by default
// qemu:///embed?root=<stateDir>/libvirt, so a kiosk needs no libvirtd). It
// writes the driver's qemu.conf, runs libvirt's event loop on its own thread,
// picks the accelerator (KVM only when it really works, else TCG), and
// destroys any domain a crashed previous run left behind.
//
// The domain XML is always generated here from a VmSpec; XML from elsewhere
// (a store, a save file) is never used. A VM saved on one kiosk restores on
// another: the restore passes freshly generated XML carrying this kiosk's
// socket paths, and libvirt checks it is ABI-compatible with the saved one.
//
// Threads: Hypervisor and Vm methods may be called from any thread (libvirt
// connections and domain handles are thread-safe); neither class holds a lock
// of its own. The embedded driver allows ONE root per process for the life of
// the process: open() with a second, different root fails with Unsupported.

#include "util/bytes.h"
#include "util/posix.h"
#include "util/result.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace isr::vm {

enum class Accelerator { Kvm, Tcg };
const char* acceleratorName(Accelerator accel);

// How the VM boots. DirectKernel: the kiosk's kernel/initrd (the demo
// guest's profile, with its fixed hardware). The others boot the parcel's
// own disk through firmware from Debian's packages and get the desktop
// devices (display with the kiosk's screen size, sound, rng, agent socket).
enum class Firmware { DirectKernel, Bios, Uefi, UefiSecure };
const char* firmwareName(Firmware firmware);

// Where Debian keeps the firmware, and which package brings it.
struct FirmwareFiles {
    std::string code;         // loader (UEFI: pflash code, read-only); empty for BIOS
    std::string varsTemplate; // UEFI: the variable store a new parcel starts from
    std::string package;      // Debian package that provides them
};
// The files for a firmware under `root` ("" = /, tests may point elsewhere).
FirmwareFiles firmwareFiles(Firmware firmware, const std::string& root = "");
// NotFound naming the Debian package when a file is missing on this kiosk.
Status checkFirmwareInstalled(Firmware firmware, const std::string& root = "");

// Everything the parcel says about its VM, plus this kiosk's paths. Two specs
// that differ only in paths describe the same virtual hardware.
struct VmSpec {
    std::string name;                   // libvirt domain name: [A-Za-z0-9_.-], 1..64
    std::string uuid;                   // "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", fixed per parcel
    std::uint32_t memoryMiB = 512;      //
    std::uint32_t vcpus = 1;            //
    std::string machine = "pc-q35-7.2"; // pinned, so a save restores on any QEMU >= 7.2
    // A named CPU model both TCG and KVM provide, so a memory image saved on one
    // kiosk restores on another whatever its CPU (never host-passthrough).
    std::string cpuModel = "qemu64";
    std::string kernelPath; // direct kernel boot
    std::string initrdPath; // optional
    std::string cmdline = "console=tty0 console=ttyS0 quiet";
    // QEMU's VM generation ID device (libvirt `<genid/>`, no value; README
    // "VM generation ID"): libvirt gives it a new random 128-bit ID at every
    // boot, restore() and restoreLazy(), and a guest with a vmgenid driver
    // (Linux >= 5.18, Windows) reseeds its RNG when the ID changes, so two
    // resumes of one saved image do not repeat its "random" bytes. It is
    // virtual hardware: a save made with it restores only with it, one made
    // without only without (the parcel records which, parcel::VmSpec::genid).
    bool genid = false;
    // restore() of a whole save image with `genid`: the ID the image was
    // saved with (savedDomain(): libvirt's ABI check wants to see that one,
    // then starts QEMU with a new one). Empty: restore() reads it from a
    // regular save file itself; a FIFO needs it set.
    std::string savedGenid;
    std::string diskSocketPath;   // NBD server on a UNIX socket (export name "")
    std::string serialSocketPath; // optional: ttyS0 on a UNIX socket QEMU listens on

    // ---- firmware boot (firmware != DirectKernel; kernel fields unused) ----
    Firmware firmware = Firmware::DirectKernel;
    std::string loaderPath; // UEFI code, from firmwareFiles() (never from a store)
    std::string nvramPath;  // UEFI: this parcel's variable store, under stateDir
    bool tpm = false;       // TPM 2.0 emulated by swtpm (libvirt runs it)
    // The display's preferred mode (EDID), the kiosk's screen; 0 = QEMU's default.
    std::uint32_t displayWidth = 0;
    std::uint32_t displayHeight = 0;
    // QEMU audio backend for the sound device: "none" (silent), "pulseaudio", "alsa".
    std::string audio = "none";
    // org.qemu.guest_agent.0 on this UNIX socket (under stateDir); empty:
    // libvirt picks the path (the demo guest's profile).
    std::string agentSocketPath;

    // ---- lazy memory (issue #17; README "Lazy memory") ----
    // Empty: guest RAM is anonymous memory (save()/restore() carry it).
    // Set: guest RAM is this host file, mapped shared (MAP_SHARED): a regular
    // file of exactly memoryMiB MiB on tmpfs/ramfs or FUSE (unless
    // HostConfig::allowDiskBackedSaveFiles), which then holds the guest's
    // RAM; saveLazy() writes only device state, restoreLazy() maps the file
    // again. boot() with it set starts fresh with file-backed RAM. The file
    // must belong to this VM's saved state exactly: nothing in QEMU checks
    // that, a wrong file is a corrupt guest.
    std::string ramFile;
};

// Where the embedded driver's root goes for a state directory, created if
// missing: <stateDir>/libvirt when short enough for libvirt's socket paths,
// else a short private per-state-dir directory: /run/isr/<hash> for root;
// $XDG_RUNTIME_DIR/isr-<hash> when that is set, ours and not writable by
// others; else a mkdtemp'd /tmp/isr-lv-XXXXXX recorded in
// <stateDir>/libvirt-root. Every directory used is checked to be ours
// (owner = our euid, no group/world write, not a symlink): AccessDenied
// otherwise, so a directory someone else made first is refused.
Result<std::string> embeddedRootFor(const std::string& stateDir);

// A fresh random UUID for a new parcel's VM.
std::string newUuid();

// What the guest's user-mode network may reach (issue #16 item 4;
// core/vm/README.md "Guest network", egress.h). Enforced with an nftables table when this
// process is root (QEMU runs as isr-qemu): the internet, DNS to the kiosk's
// resolvers, not the kiosk itself, not private ranges or the kiosk's
// subnets, not the store. Not root: QEMU has the kiosk's own uid and
// nothing can be enforced (open() logs a warning).
struct GuestNetworkPolicy {
    // Host names or addresses of the parcel store (storeHostFromUrl): refused
    // to the guest unless mayReachStore.
    std::vector<std::string> storeHosts;
    bool mayReachStore = false;
    // Private or LAN destinations the guest may reach anyway ("10.1.0.0/16",
    // "fd12::/48"; parseNetworkList's items). Never the kiosk's own addresses.
    std::vector<std::string> allowedNetworks;
    // As root: start VMs although the filter cannot be loaded (no nft, a
    // kernel without nf_tables). Default: open(), boot() and restore() fail
    // with Unsupported saying so.
    bool allowUnfiltered = false;
};

// The host of a network store's URL, for GuestNetworkPolicy::storeHosts
// ("s3://host:port/b" -> "host", "s3s://[fd00::1]/b" -> "fd00::1"); empty
// for a file store.
std::string storeHostFromUrl(std::string_view url);
// A list of IP networks or addresses separated by commas and/or blanks
// ("10.1.0.0/16, fd12::/48 192.0.2.7"), canonical (host bits cleared, a
// bare address /32 or /128); InvalidArgument naming a bad item.
Result<std::vector<std::string>> parseNetworkList(std::string_view text);

struct HostConfig {
    // The kiosk's state directory. libvirt's root is <stateDir>/libvirt; the
    // VM's sockets must live below stateDir.
    std::string stateDir;
    // Directories a kernel/initrd may come from besides stateDir (e.g. the
    // installed demo guest).
    std::vector<std::string> bootDirs;
    std::uint32_t maxMemoryMiB = 16384;
    std::uint32_t maxVcpus = 16;
    // Force an accelerator; unset = probe (ISR_VM_ACCEL=kvm|tcg overrides too).
    std::optional<Accelerator> accelerator;
    // Empty = the embedded driver under stateDir. "qemu:///system" etc. is
    // possible; then qemu.conf is the system's and nothing is reaped.
    std::string uri;
    // Save files hold the guest's memory in plaintext: by default save()
    // refuses a directory that is not memory-backed (tmpfs/ramfs).
    bool allowDiskBackedSaveFiles = false;
    GuestNetworkPolicy guestNetwork;
    // Lazy memory (VmSpec::ramFile): a library QEMU preloads (LD_PRELOAD,
    // through libvirt's <qemu:env>) whose madvise() ignores MADV_HUGEPAGE
    // (packaging/qemu-nohugepage.c; core/disk/README.md "Guest RAM over
    // FUSE"), so a fault on RAM served over FUSE reads readahead-sized pieces
    // instead of a 2 MiB folio. Empty: none (defaultRamPreload() finds the
    // installed or built one). Hypervisor::open drops it with a warning
    // unless it is a regular file owned by root or by us that nobody else
    // may write, and QEMU's account can read it: a faster restore is not
    // worth a QEMU that runs code someone else can change, nor a failed start.
    std::string ramPreload;
};

// The RAM preload library to use (HostConfig::ramPreload): $ISR_QEMU_RAM_PRELOAD
// when set (set and empty: none); else the installed
// /usr/lib/isr/libisr-qemu-nohugepage.so; else this build tree's copy; else "".
std::string defaultRamPreload();

enum class VmState { Running, Paused, ShutOff, Crashed, Other };
const char* vmStateName(VmState state);

struct VmStatus {
    VmState state = VmState::Other;
    bool ioError = false; // paused because the disk failed (error_policy=stop)
    std::string reason;   // libvirt's reason, for logs
};

// Why a VM stopped, as libvirt recorded it.
enum class VmStopReason {
    Unknown,       // still running, or the log says nothing for this run
    GuestShutdown, // the guest powered itself off (or QEMU got SIGTERM)
    Crashed,       // QEMU died (killed, crashed) or failed
    Destroyed,     // destroy()
    Saved,         // save() finished
    Other,
};
const char* vmStopReasonName(VmStopReason reason);
// The reason in libvirt's "shutting down, reason=<r>" line of a domain log
// text, if it comes after the last "starting up" line (i.e. this run's).
VmStopReason stopReasonFromLog(std::string_view logText);
// The same, from the tail of a domain log file (Unknown if it cannot be read).
VmStopReason stopReasonFromLogFile(const std::string& logPath);

struct Screenshot {
    std::string mimeType; // e.g. "image/png" or "image/x-portable-pixmap"
    Bytes data;
};

class Hypervisor;
struct QemuAccount; // confinement.h: who QEMU runs as when we are root

// A handle to one domain. Dropping the handle does NOT stop the VM: its
// lifetime is explicit (save or destroy); a VM left running when the process
// dies is reaped by the next Hypervisor::open on the same root.
class Vm {
public:
    ~Vm();
    Vm(Vm&&) noexcept;
    Vm& operator=(Vm&&) noexcept;
    Vm(const Vm&) = delete;
    Vm& operator=(const Vm&) = delete;

    const std::string& name() const { return name_; }
    // libvirt's log of this domain (QEMU's command line and stderr, libvirt's
    // start/stop notes). The session deletes it at wipe (issue #16, item 12).
    const std::string& logPath() const { return logPath_; }
    Result<VmStatus> status() const;

    // Saves memory and device state to `path` and stops the VM. The directory
    // must be memory-backed unless HostConfig allows otherwise. libvirt seeks
    // in the file, so it must be a regular file (not a pipe).
    Status save(const std::string& path);
    // For a VM started with VmSpec::ramFile: pauses it, writes its device
    // state (not its RAM, which stays in the RAM file) to `deviceStatePath`
    // (a regular file, created or truncated; memory-backed directory unless
    // HostConfig allows otherwise; typically < 1 MB), then destroys the VM.
    // The RAM file then holds the guest's RAM matching that state; the
    // caller copies or fsyncs it. On failure the VM is left paused and
    // running (the error says so) and the state file is not valid.
    Status saveLazy(const std::string& deviceStatePath);
    // Stops the VM at once (power cut).
    Status destroy();
    Status pause();
    Status resume();

    // The primary display as libvirt gives it (QEMU 7.2: PNG or PPM).
    Result<Screenshot> screenshot();
    // A connected VNC socket for the UI's client, no TCP and no password.
    Result<UniqueFd> openGraphicsFd();
    // Presses and releases Linux input keycodes (KEY_A = 30, ...) together.
    Status sendKeys(std::span<const unsigned> linuxKeycodes, unsigned holdMs = 30);
    // Types US-ASCII text key by key ('\n' is Enter). For tests and demos.
    Status typeText(std::string_view text);
    // Why the VM stopped, from the "shutting down, reason=" line libvirt
    // writes to the domain's log before it drops the domain (a transient
    // domain that stopped is gone, so its state can no longer be asked).
    VmStopReason lastStopReason() const;
    // Sets the guest clock to the host's (needs a guest agent; Unsupported if
    // the guest has none — see README for what the demo guest does instead).
    Status syncGuestTime();
    // Asks the guest agent for a ping-like answer (virDomainGetTime): true
    // when an agent answered. Never blocks longer than libvirt's agent timeout.
    bool guestAgentAnswers();
    // A sign that the guest's operating system runs, not only its firmware:
    // "balloon driver" when the guest's virtio-balloon driver has reported
    // memory statistics (firmware has no balloon driver: OVMF and SeaBIOS
    // never touch that device), "guest agent" when an agent answered; empty
    // when neither (yet). The first call turns the balloon's statistics
    // period on (live, 2 s; a guest driver answers it), a sign turns it off
    // again. Never blocks longer than
    // libvirt's agent timeout. For the first-boot watch (session/vm_watcher.h).
    std::string guestOsSign();

private:
    friend class Hypervisor;
    struct Handle;
    Vm(std::unique_ptr<Handle> handle, std::string name, bool allowDiskBackedSaveFiles,
       std::string logPath);
    std::unique_ptr<Handle> handle_;
    std::string name_;
    std::string logPath_; // libvirt's log of this domain (QEMU's stderr, libvirt's notes)
    bool allowDiskBackedSaveFiles_ = false;
    bool statsPeriodSet_ = false; // guestOsSign() turned the balloon's statistics on
};

class Hypervisor {
public:
    // Connects (see HostConfig), then destroys every domain left in the
    // embedded root by a previous run (reapedAtOpen() says how many).
    static Result<std::unique_ptr<Hypervisor>> open(HostConfig config);
    // Closes the connection; running VMs keep running (see Vm).
    ~Hypervisor();
    Hypervisor(const Hypervisor&) = delete;
    Hypervisor& operator=(const Hypervisor&) = delete;

    Accelerator accelerator() const { return accel_; }
    const HostConfig& config() const { return config_; }
    const std::string& uri() const { return uri_; }
    int reapedAtOpen() const { return reaped_; }
    // True when the guest network filter (egress.h) was loaded for this
    // hypervisor's VMs: root, embedded driver, nft worked.
    bool guestNetworkFiltered() const { return egressFiltered_; }

    // Refuses absurd or unsafe specs with InvalidArgument (see README).
    Status validate(const VmSpec& spec) const;
    // The domain XML for this host's accelerator (validates first), as
    // libvirt's restore of a saved image gets it.
    Result<std::string> domainXml(const VmSpec& spec) const;

    // Starts a new transient domain from the spec.
    Result<Vm> boot(const VmSpec& spec);
    // Restores a save file (a regular file or a FIFO being written) with XML
    // generated from `spec`, i.e. with this kiosk's paths. The VM runs after.
    // With spec.ramFile set the RAM is loaded into that file (a normal save
    // of either kind of VM restores into file-backed RAM: the RAM block is
    // pc.ram for both), so the session can saveLazy() it later.
    Result<Vm> restore(const std::string& savePath, const VmSpec& spec);
    // Resumes a VM saved by saveLazy(): starts QEMU on spec.ramFile (the RAM
    // saved with that state, exactly; refused before start if its size is
    // not the VM's), loads the device state from `deviceStatePath` (a regular
    // file or a FIFO being written) and runs it. A bad or truncated state
    // file is an error naming QEMU's complaint, and no domain is left.
    Result<Vm> restoreLazy(const std::string& deviceStatePath, const VmSpec& spec);
    // A whole save image (a regular file or a FIFO being written, as for
    // restore()) loaded into spec.ramFile: the way a parcel saved with
    // anonymous RAM turns lazy without a reboot (libvirt 9.0's own restore
    // refuses it with file-backed RAM: its ABI check compares the memory
    // backing). libvirt's header is read and skipped here; QEMU, started on
    // the RAM file with -incoming defer, loads the image's migration stream
    // *with* its RAM pages (no x-ignore-shared), so every page lands in the
    // file; the VM runs after. spec.genid must be as the image was saved
    // (savedDomain). A bad or truncated image fails like restoreLazy's.
    Result<Vm> restoreIntoRamFile(const std::string& savePath, const VmSpec& spec);
    // Finds a running domain by name.
    Result<Vm> find(const std::string& name);
    // Names of the domains currently active on this connection.
    Result<std::vector<std::string>> activeDomains();

    // Destroys every active domain on this connection. Only for the embedded
    // root, which belongs to this kiosk alone.
    Result<int> reapAll();

    // Where libvirt keeps the swtpm state of the domain with this UUID
    // (<root>/lib/swtpm/<uuid>, state files in its tpm2/ subdirectory). It
    // outlives the domain (persistent_state='yes'): the caller fills it
    // before the VM starts and empties it when the session ends.
    std::string tpmStateDir(const std::string& uuid) const;

private:
    struct Connection;
    Status refuseRunning(const std::string& name);
    Status checkFirmwareFiles(const VmSpec& spec) const;
    std::string domainLogPath(const std::string& name) const;
    Status prepareQemuAccess(const VmSpec& spec) const;
    // What the XML starts: a boot, libvirt's restore of a saved image, or
    // QEMU waiting for our own incoming migration (restoreIncoming).
    enum class XmlFor { Boot, LibvirtRestore, Incoming };
    Result<std::string> domainXmlFor(const VmSpec& spec, XmlFor use) const;
    Status prepareRamFile(const VmSpec& spec) const;
    Result<Vm> startOnRamFile(const VmSpec& spec, const std::function<Status()>& startPaused,
                              bool mayRetry);
    // restoreLazy and restoreIntoRamFile: QEMU on spec.ramFile loads the
    // migration stream on `stream` (`what` names it in errors), leaving the
    // RAM file's pages out of it when `ignoreShared`.
    Result<Vm> restoreIncoming(UniqueFd stream, const std::string& what, const VmSpec& spec,
                               bool ignoreShared);
    std::string qemuPidFile(const std::string& name) const;
    Status applyGuestNetworkPolicy();
    Hypervisor(HostConfig config, std::unique_ptr<Connection> conn, std::string uri,
               Accelerator accel);
    HostConfig config_;
    std::unique_ptr<Connection> conn_;
    std::string uri_;
    Accelerator accel_ = Accelerator::Tcg;
    int reaped_ = 0;
    std::atomic<bool> egressFiltered_{false}; // boot/restore may run on any thread
    std::string embeddedRoot_;                // empty for another URI
    // Set when this process is root and QEMU runs as isr-qemu (embedded root).
    std::shared_ptr<const QemuAccount> qemu_;
    std::string ramPreload_; // HostConfig::ramPreload once checked, or ""
};

// Probes whether KVM works here: /dev/kvm opens read-write and a short QEMU
// run under KVM survives (nested setups may abort on MSR writes).
Accelerator probeAccelerator();

// The generator behind Hypervisor::domainXml, exposed for tests. Does not
// validate. `dacLabel` ("+uid:+gid", the QEMU account when we are root):
// the demo guest's domain then gets a static DAC <seclabel relabel='no'>
// (libvirt would chown its shared kernel and initrd to QEMU's uid).
// `qemu`: what the domain passes QEMU that libvirt has no XML for.
struct QemuPassthrough {
    std::string ramPreload;     // LD_PRELOAD, only with spec.ramFile (HostConfig::ramPreload)
    bool incomingDefer = false; // -incoming defer: QEMU waits for a migration (restoreIncoming)
    // libvirt 9.0 reads the started guest's CPU back from QEMU 7.2 one
    // property at a time (~400 qom-gets: 0.57 s of a 0.82 s start under
    // TCG, measured); dropping QEMU's "unavailable-features" capability
    // makes it read two feature words instead. QEMU's command line is the
    // same either way. Set for domains started from our own XML (boot,
    // restoreIncoming), not for libvirt's restore of a saved image.
    bool quickCpuReadback = false;
};
std::string buildDomainXml(const VmSpec& spec, Accelerator accel, const std::string& dacLabel = "",
                           const QemuPassthrough& qemu = {});
// Spec checks behind Hypervisor::validate, exposed for tests.
Status validateSpec(const VmSpec& spec, const HostConfig& config);

// libvirt's QEMU save image (a save file, a whole memory image) begins with
// libvirt's header (92 bytes: magic "LibvirtQemudSave", version, XML length,
// ...) and the domain XML it was saved with. libvirt 9.0 restores it only
// under that domain's name ("Target domain name ... does not match source")
// and, for a domain with the VM generation ID device, only with XML naming
// the ID it was saved with ("Target domain genid ... does not match
// source"; libvirt then starts QEMU with a new ID anyway). Reads both from
// the image's first bytes: nullopt when `head` is too short to hold the
// header and XML (pass more), Corrupt when it is no complete libvirt save
// image, its name is not a valid domain name or its ID not a UUID.
struct SavedDomain {
    std::string name;
    std::string genid; // "": saved without the VM generation ID device
    // Whether QEMU's stream is stored raw (libvirt's save format 0, what isr
    // writes) rather than through a compressor.
    bool raw = true;
};
Result<std::optional<SavedDomain>> savedDomain(ByteView head);
// libvirt's fixed header, and the size of header + XML (+ padding) from its
// first kSaveImageHeader bytes: where QEMU's own migration stream begins.
// Corrupt when `head` is shorter or no libvirt save image.
inline constexpr std::size_t kSaveImageHeader = 92;
Result<std::uint64_t> saveImageHeaderSize(ByteView head);

} // namespace isr::vm
