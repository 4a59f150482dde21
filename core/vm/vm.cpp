// The Hypervisor (one libvirt connection) and the Vm operations. This
// process's libvirt (errors, event loop, embedded root) is libvirt_host.cpp,
// the accelerator probe accel.cpp, the stop reason from the log domainlog.cpp.
#include "vm/vm.h"

#include "util/log.h"
#include "vm/confinement.h"
#include "vm/egress.h"
#include "vm/libvirt_host.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <set>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <thread>
#include <unistd.h>

namespace isr::vm {
namespace {

constexpr const char* kLog = "vm";

// ---- helpers --------------------------------------------------------------

Result<bool> memoryBacked(const std::string& dir) {
    struct statfs fs {};
    if (statfs(dir.c_str(), &fs) != 0)
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     "save directory " + dir + ": " + std::strerror(errno));
    constexpr long kTmpfsMagic = 0x01021994;
    constexpr long kRamfsMagic = 0x858458f6;
    return fs.f_type == kTmpfsMagic || fs.f_type == kRamfsMagic;
}

struct DomainDeleter {
    void operator()(virDomainPtr d) const {
        if (d)
            virDomainFree(d);
    }
};
using DomainPtr = std::unique_ptr<virDomain, DomainDeleter>;

struct StreamDeleter {
    void operator()(virStreamPtr s) const {
        if (s)
            virStreamFree(s);
    }
};

} // namespace

const char* acceleratorName(Accelerator accel) {
    return accel == Accelerator::Kvm ? "kvm" : "tcg";
}

const char* vmStateName(VmState state) {
    switch (state) {
    case VmState::Running:
        return "running";
    case VmState::Paused:
        return "paused";
    case VmState::ShutOff:
        return "shut off";
    case VmState::Crashed:
        return "crashed";
    case VmState::Other:
        return "other";
    }
    return "other";
}

// ---- Hypervisor -----------------------------------------------------------

struct Hypervisor::Connection {
    virConnectPtr conn = nullptr;
    ~Connection() {
        if (conn)
            virConnectClose(conn);
    }
};

struct Vm::Handle {
    DomainPtr dom;
};

Hypervisor::Hypervisor(HostConfig config, std::unique_ptr<Connection> conn, std::string uri,
                       Accelerator accel)
    : config_(std::move(config)), conn_(std::move(conn)), uri_(std::move(uri)), accel_(accel) {}

Hypervisor::~Hypervisor() = default;

Result<std::unique_ptr<Hypervisor>> Hypervisor::open(HostConfig config) {
    if (config.stateDir.empty() || config.stateDir[0] != '/')
        return Error(Errc::InvalidArgument, "state directory must be an absolute path");
    config.stateDir = std::filesystem::path(config.stateDir).lexically_normal().string();
    while (config.stateDir.size() > 1 && config.stateDir.back() == '/')
        config.stateDir.pop_back();

    ISR_TRY_STATUS(ensureEventLoop());

    std::string uri = config.uri;
    bool embedded = uri.empty();
    std::shared_ptr<const QemuAccount> qemu;
    std::string embeddedRoot;
    if (embedded) {
        ISR_TRY_ASSIGN(std::string root, embeddedRootFor(config.stateDir));
        embeddedRoot = root;
        ISR_TRY_STATUS(bindEmbeddedRoot(root));
        ISR_TRY_ASSIGN(std::optional<QemuAccount> account, qemuAccount());
        if (account) {
            // QEMU (isr-qemu) reads its master key and pid file below the
            // root: the root and the directories above it up to the state
            // directory (or /run/isr) let QEMU's group pass, never list.
            namespace fs = std::filesystem;
            const fs::path r(root);
            const fs::path rel = r.lexically_relative(config.stateDir);
            const bool inside = !rel.empty() && *rel.begin() != "..";
            const std::string top = inside ? config.stateDir : r.parent_path().string();
            ISR_TRY_STATUS(grantTraverse(top, account->gid));
            fs::path dir(top);
            for (const auto& part : r.lexically_relative(top)) {
                if (part == ".")
                    continue;
                dir /= part;
                ISR_TRY_STATUS(grantTraverse(dir.string(), account->gid));
            }
            qemu = std::make_shared<const QemuAccount>(*account);
        }
        ISR_TRY_STATUS(writeQemuConf(root, account));
        uri = "qemu:///embed?root=" + root;
    }

    auto conn = std::make_unique<Connection>();
    conn->conn = virConnectOpen(uri.c_str());
    if (!conn->conn)
        return libvirtError("connecting to " + uri);

    Accelerator accel = Accelerator::Tcg;
    if (config.accelerator) {
        accel = *config.accelerator;
    } else {
        // The probe runs QEMU for 1.5 s when /dev/kvm exists: once per process.
        static const Accelerator probed = probeAccelerator();
        accel = probed;
    }
    ISR_LOG_INFO(kLog) << "connected to " << uri << ", accelerator " << acceleratorName(accel);
    std::unique_ptr<Hypervisor> hv(new Hypervisor(std::move(config), std::move(conn), uri, accel));
    hv->qemu_ = std::move(qemu);
    hv->embeddedRoot_ = std::move(embeddedRoot);
    if (embedded && !hv->qemu_) {
        // Not root: QEMU runs as this process's own user, whose sockets
        // (the store's, the kiosk's) cannot be told from the guest's by uid.
        static std::atomic<bool> warned{false};
        if (!warned.exchange(true)) {
            ISR_LOG_WARN(kLog) << "not running as root: QEMU shares this process's uid, so the "
                                  "guest network cannot be filtered (the guest reaches this "
                                  "host's loopback services and its network); run as root for "
                                  "the filter (README, security model)";
        }
    }
    ISR_TRY_STATUS(hv->applyGuestNetworkPolicy());
    if (embedded) {
        ISR_TRY_ASSIGN(int reaped, hv->reapAll());
        hv->reaped_ = reaped;
        if (reaped > 0) {
            ISR_LOG_WARN(kLog) << "destroyed " << reaped << " VM(s) left over from a previous run";
        }
        // TPM state a crashed session left (persistent_state keeps it past
        // the domain): a parcel's secrets, and no VM of this root runs now.
        std::error_code ec;
        if (auto root = embeddedRootFor(hv->config_.stateDir); root.ok())
            std::filesystem::remove_all(*root + "/lib/swtpm", ec);
    }
    return hv;
}

Status Hypervisor::validate(const VmSpec& spec) const {
    return validateSpec(spec, config_);
}

Result<std::string> Hypervisor::domainXml(const VmSpec& spec) const {
    ISR_TRY_STATUS(validate(spec));
    std::string label;
    if (qemu_)
        label = "+" + std::to_string(qemu_->uid) + ":+" + std::to_string(qemu_->gid);
    return buildDomainXml(spec, accel_, label);
}

// As root, QEMU runs as isr-qemu (confinement.h) and opens some files by
// path: the NBD socket (we serve it; it connects), the UEFI NVRAM copy,
// the kernel and initrd. Those below the state directory, and the
// directories on the way, get QEMU's group (pass through, never list; the
// socket and NVRAM rw, a kernel r); those elsewhere (the installed demo
// guest, Debian's OVMF) must already be world-readable, root-owned: they
// stay as they are. Sockets QEMU listens on (serial, agent) are made by
// libvirt and handed over as file descriptors; the save file is opened by
// libvirt (this process) and passed as one.
Status Hypervisor::prepareQemuAccess(const VmSpec& spec) const {
    if (!qemu_)
        return {};
    const QemuAccount& account = *qemu_;
    const std::string& top = config_.stateDir;
    auto below = [&](const std::string& p) {
        const auto rel = std::filesystem::path(p).lexically_relative(top);
        return !rel.empty() && *rel.begin() != "..";
    };
    auto grant = [&](const std::string& p, mode_t bits) -> Status {
        if (p.empty() || !below(p))
            return {};
        struct stat st {};
        if (::lstat(p.c_str(), &st) != 0)
            return {}; // missing: libvirt's own error names it
        return grantPathBelow(top, p, account.gid, bits);
    };
    ISR_TRY_STATUS(grant(spec.diskSocketPath, S_IRGRP | S_IWGRP));
    ISR_TRY_STATUS(grant(spec.nvramPath, S_IRGRP | S_IWGRP));
    ISR_TRY_STATUS(grant(spec.kernelPath, S_IRGRP));
    ISR_TRY_STATUS(grant(spec.initrdPath, S_IRGRP));
    if (spec.tpm)
        ISR_TRY_STATUS(handTpmStateToSwtpm(account, tpmStateDir(spec.uuid)));
    // Say who cannot read what, rather than libvirt's bare EACCES.
    const std::pair<const std::string*, int> needs[] = {{&spec.kernelPath, R_OK},
                                                        {&spec.initrdPath, R_OK},
                                                        {&spec.loaderPath, R_OK},
                                                        {&spec.diskSocketPath, R_OK | W_OK}};
    for (const auto& [path, mode] : needs) {
        std::string why;
        if (path->empty() || ::access(path->c_str(), F_OK) != 0 ||
            accountCanAccess(account, *path, mode, &why))
            continue;
        return Error(Errc::AccessDenied, "QEMU runs as " + std::string(kQemuAccountName) +
                                             " and cannot open " + *path + ": " + why);
    }
    return {};
}

// The guest network filter (egress.h), when QEMU runs as isr-qemu. Loaded
// at open() and again before every boot and restore: resolv.conf, the
// kiosk's own addresses (DHCP) and the store's (DNS) may have changed since.
// A filter that cannot be loaded stops the VM from starting unless the
// configuration accepts an unfiltered guest (allowUnfiltered): the guest
// would otherwise quietly reach the kiosk's loopback services and LAN.
Status Hypervisor::applyGuestNetworkPolicy() {
    if (!qemu_) // not root (warned at open), or another URI's own libvirt
        return {};
    const GuestNetworkPolicy& policy = config_.guestNetwork;
    Status st = installGuestEgress(qemu_->uid, policy, embeddedRoot_ + "/etc/guest-egress.nft");
    egressFiltered_ = st.ok();
    if (st.ok())
        return {};
    if (st.error().code == Errc::InvalidArgument) // a bad allowed network
        return st;
    if (policy.allowUnfiltered) {
        ISR_LOG_WARN(kLog) << "guest network NOT filtered (allowed by configuration): "
                           << st.error().message;
        return {};
    }
    const char* remedy = st.error().code == Errc::Unsupported
                             ? ". Install nftables (with a kernel that has nf_tables), or set "
                             : ". Fix that, or set ";
    return Error(Errc::Unsupported,
                 "the guest's network cannot be limited to the internet: " + st.error().message +
                     remedy +
                     "allow_unfiltered_guest_network = yes in kiosk.conf to accept that guests "
                     "reach this kiosk's own services and network");
}

// A missing firmware package is NotFound naming it, before libvirt's own
// less helpful error; the UEFI variable store must be in place.
Status Hypervisor::checkFirmwareFiles(const VmSpec& spec) const {
    if (spec.firmware == Firmware::DirectKernel)
        return {};
    ISR_TRY_STATUS(checkFirmwareInstalled(spec.firmware));
    if (!spec.loaderPath.empty() && access(spec.loaderPath.c_str(), R_OK) != 0)
        return Error(Errc::NotFound,
                     "UEFI loader " + spec.loaderPath + ": " + std::strerror(errno));
    if (!spec.nvramPath.empty() && access(spec.nvramPath.c_str(), R_OK | W_OK) != 0)
        return Error(Errc::NotFound, "NVRAM " + spec.nvramPath + ": " + std::strerror(errno));
    return {};
}

Result<Vm> Hypervisor::boot(const VmSpec& spec) {
    ISR_TRY_ASSIGN(std::string xml, domainXml(spec));
    for (const std::string* p : {&spec.kernelPath, &spec.initrdPath})
        if (!p->empty() && access(p->c_str(), R_OK) != 0)
            return Error(Errc::NotFound, "boot file " + *p + ": " + std::strerror(errno));
    ISR_TRY_STATUS(checkFirmwareFiles(spec));
    ISR_TRY_STATUS(refuseRunning(spec.name));
    ISR_TRY_STATUS(prepareQemuAccess(spec));
    ISR_TRY_STATUS(applyGuestNetworkPolicy());
    DomainPtr dom(virDomainCreateXML(conn_->conn, xml.c_str(), VIR_DOMAIN_NONE));
    if (!dom)
        return libvirtError("starting VM " + spec.name);
    ISR_LOG_INFO(kLog) << "booted " << spec.name;
    return Vm(std::make_unique<Vm::Handle>(Vm::Handle{std::move(dom)}), spec.name,
              config_.allowDiskBackedSaveFiles, domainLogPath(spec.name));
}

Result<Vm> Hypervisor::restore(const std::string& savePath, const VmSpec& spec) {
    ISR_TRY_ASSIGN(std::string xml, domainXml(spec));
    if (savePath.empty() || savePath[0] != '/')
        return Error(Errc::InvalidArgument, "save file path must be absolute: " + savePath);
    struct stat st {};
    if (::stat(savePath.c_str(), &st) != 0)
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     "save file " + savePath + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
        return Error(Errc::InvalidArgument, "save file " + savePath + " is not a file or FIFO");
    ISR_TRY_STATUS(checkFirmwareFiles(spec));
    ISR_TRY_STATUS(refuseRunning(spec.name));
    ISR_TRY_STATUS(prepareQemuAccess(spec));
    ISR_TRY_STATUS(applyGuestNetworkPolicy());
    if (virDomainRestoreFlags(conn_->conn, savePath.c_str(), xml.c_str(), VIR_DOMAIN_SAVE_RUNNING) <
        0)
        return libvirtError("restoring VM " + spec.name + " from " + savePath);
    ISR_LOG_INFO(kLog) << "restored " << spec.name << " from " << savePath;
    return find(spec.name);
}

// libvirt reports a name clash as a generic "operation failed"; check first
// so the caller gets AlreadyExists.
Status Hypervisor::refuseRunning(const std::string& name) {
    DomainPtr existing(virDomainLookupByName(conn_->conn, name.c_str()));
    if (!existing) {
        virResetLastError();
        return {};
    }
    return Error(Errc::AlreadyExists, "a VM named " + name + " is already running");
}

Result<Vm> Hypervisor::find(const std::string& name) {
    DomainPtr dom(virDomainLookupByName(conn_->conn, name.c_str()));
    if (!dom)
        return libvirtError("looking up VM " + name);
    return Vm(std::make_unique<Vm::Handle>(Vm::Handle{std::move(dom)}), name,
              config_.allowDiskBackedSaveFiles, domainLogPath(name));
}

Result<std::vector<std::string>> Hypervisor::activeDomains() {
    virDomainPtr* doms = nullptr;
    int n = virConnectListAllDomains(conn_->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (n < 0)
        return libvirtError("listing VMs");
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i) {
        if (const char* name = virDomainGetName(doms[i]))
            names.emplace_back(name);
        virDomainFree(doms[i]);
    }
    free(doms);
    return names;
}

Result<int> Hypervisor::reapAll() {
    // Right after a connection opens, libvirt is still reconnecting to the
    // QEMU processes of a previous run on its own threads; a domain may
    // vanish under us (NotFound) and come back. Loop until none is active.
    std::set<std::string> seen; // destroyed by us or gone while we tried
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
        virDomainPtr* doms = nullptr;
        int n = virConnectListAllDomains(conn_->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0)
            return libvirtError("listing VMs");
        std::optional<Error> failure;
        for (int i = 0; i < n; ++i) {
            const char* name = virDomainGetName(doms[i]);
            seen.insert(name ? name : "?");
            if (virDomainDestroy(doms[i]) != 0) {
                Error err =
                    libvirtError(std::string("destroying leftover VM ") + (name ? name : "?"));
                if (err.code != Errc::NotFound && !failure)
                    failure = err;
            }
            virDomainFree(doms[i]);
        }
        free(doms);
        if (n == 0)
            return int(seen.size());
        if (std::chrono::steady_clock::now() >= deadline)
            return failure ? *failure : Error(Errc::Internal, "leftover VMs keep reappearing");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

// ---- Vm -------------------------------------------------------------------

std::string Hypervisor::tpmStateDir(const std::string& uuid) const {
    // libvirt keeps swtpm's state in <swtpm storage dir>/<uuid>/tpm2/; the
    // storage dir is <root>/lib/swtpm under the embedded driver.
    if (config_.uri.empty()) {
        // open() made and checked the root already; this finds the same one.
        auto root = embeddedRootFor(config_.stateDir);
        return (root.ok() ? *root : config_.stateDir + "/libvirt") + "/lib/swtpm/" + uuid;
    }
    return "/var/lib/libvirt/swtpm/" + uuid;
}

std::string Hypervisor::domainLogPath(const std::string& name) const {
    // Where the QEMU driver puts a domain's log: <root>/log/qemu under the
    // embedded driver, the system's directory under qemu:///system.
    if (config_.uri.empty()) {
        // open() made and checked the root already; this finds the same one.
        auto root = embeddedRootFor(config_.stateDir);
        return (root.ok() ? *root : config_.stateDir + "/libvirt") + "/log/qemu/" + name + ".log";
    }
    return "/var/log/libvirt/qemu/" + name + ".log";
}

Vm::Vm(std::unique_ptr<Handle> handle, std::string name, bool allowDiskBackedSaveFiles,
       std::string logPath)
    : handle_(std::move(handle)), name_(std::move(name)), logPath_(std::move(logPath)),
      allowDiskBackedSaveFiles_(allowDiskBackedSaveFiles) {}

VmStopReason Vm::lastStopReason() const {
    return stopReasonFromLogFile(logPath_);
}
Vm::~Vm() = default;
Vm::Vm(Vm&&) noexcept = default;
Vm& Vm::operator=(Vm&&) noexcept = default;

Result<VmStatus> Vm::status() const {
    int state = 0, reason = 0;
    if (virDomainGetState(handle_->dom.get(), &state, &reason, 0) < 0) {
        Error err = libvirtError("state of VM " + name_);
        // A transient domain that stopped no longer exists.
        if (err.code == Errc::NotFound)
            return VmStatus{VmState::ShutOff, false, "gone"};
        return err;
    }
    VmStatus st;
    switch (state) {
    case VIR_DOMAIN_RUNNING:
        st.state = VmState::Running;
        break;
    case VIR_DOMAIN_PAUSED:
        st.state = VmState::Paused;
        break;
    case VIR_DOMAIN_SHUTOFF:
        st.state = VmState::ShutOff;
        break;
    case VIR_DOMAIN_CRASHED:
        st.state = VmState::Crashed;
        break;
    default:
        st.state = VmState::Other;
    }
    st.ioError = state == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_IOERROR;
    st.reason = std::to_string(reason);
    return st;
}

Status Vm::save(const std::string& path) {
    if (path.empty() || path[0] != '/')
        return Error(Errc::InvalidArgument, "save path must be absolute: " + path);
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (!allowDiskBackedSaveFiles_) {
        ISR_TRY_ASSIGN(bool inMemory, memoryBacked(dir));
        if (!inMemory)
            return Error(Errc::InvalidArgument,
                         "refusing to write the VM's memory to " + dir +
                             ": not memory-backed (use /dev/shm or a tmpfs)");
    }
    if (virDomainSaveFlags(handle_->dom.get(), path.c_str(), nullptr, VIR_DOMAIN_SAVE_RUNNING) < 0)
        return libvirtError("saving VM " + name_ + " to " + path);
    ISR_LOG_INFO(kLog) << "saved " << name_ << " to " << path;
    return {};
}

Status Vm::destroy() {
    if (virDomainDestroy(handle_->dom.get()) < 0)
        return libvirtError("destroying VM " + name_);
    return {};
}

Status Vm::pause() {
    if (virDomainSuspend(handle_->dom.get()) < 0)
        return libvirtError("pausing VM " + name_);
    return {};
}

Status Vm::resume() {
    if (virDomainResume(handle_->dom.get()) < 0)
        return libvirtError("resuming VM " + name_);
    return {};
}

Result<Screenshot> Vm::screenshot() {
    virConnectPtr conn = virDomainGetConnect(handle_->dom.get());
    std::unique_ptr<virStream, StreamDeleter> stream(virStreamNew(conn, 0));
    if (!stream)
        return libvirtError("screenshot stream");
    char* mime = virDomainScreenshot(handle_->dom.get(), stream.get(), 0, 0);
    if (!mime)
        return libvirtError("screenshot of VM " + name_);
    Screenshot shot;
    shot.mimeType = mime;
    free(mime);
    char buf[64 * 1024];
    for (;;) {
        int got = virStreamRecv(stream.get(), buf, sizeof buf);
        if (got < 0) {
            Error err = libvirtError("reading screenshot of VM " + name_);
            virStreamAbort(stream.get());
            return err;
        }
        if (got == 0)
            break;
        shot.data.insert(shot.data.end(), buf, buf + got);
    }
    if (virStreamFinish(stream.get()) < 0)
        return libvirtError("finishing screenshot of VM " + name_);
    return shot;
}

Result<UniqueFd> Vm::openGraphicsFd() {
    int fd = virDomainOpenGraphicsFD(handle_->dom.get(), 0, VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH);
    if (fd < 0)
        return libvirtError("opening the display of VM " + name_);
    return UniqueFd(fd);
}

Status Vm::sendKeys(std::span<const unsigned> linuxKeycodes, unsigned holdMs) {
    if (linuxKeycodes.empty() || linuxKeycodes.size() > VIR_DOMAIN_SEND_KEY_MAX_KEYS)
        return Error(Errc::InvalidArgument, "1 to 16 keys at once");
    std::vector<unsigned> codes(linuxKeycodes.begin(), linuxKeycodes.end());
    if (virDomainSendKey(handle_->dom.get(), VIR_KEYCODE_SET_LINUX, holdMs, codes.data(),
                         int(codes.size()), 0) < 0)
        return libvirtError("sending keys to VM " + name_);
    return {};
}

namespace {
constexpr unsigned kKeyLeftShift = 42;

// US layout: character -> (Linux keycode, shift). 0 = not typeable.
std::pair<unsigned, bool> usKey(char c) {
    static const char* row1 = "1234567890-=";
    static const char* row1s = "!@#$%^&*()_+";
    static const char* row2 = "qwertyuiop[]";
    static const char* row2s = "QWERTYUIOP{}";
    static const char* row3 = "asdfghjkl;'`";
    static const char* row3s = "ASDFGHJKL:\"~";
    static const char* row4 = "\\zxcvbnm,./";
    static const char* row4s = "|ZXCVBNM<>?";
    auto find = [c](const char* row, unsigned base) -> unsigned {
        const char* p = std::strchr(row, c);
        return p ? base + unsigned(p - row) : 0;
    };
    if (c == '\n')
        return {28, false};
    if (c == ' ')
        return {57, false};
    if (c == '\t')
        return {15, false};
    if (c == '\0')
        return {0, false};
    if (unsigned k = find(row1, 2))
        return {k, false};
    if (unsigned k = find(row1s, 2))
        return {k, true};
    if (unsigned k = find(row2, 16))
        return {k, false};
    if (unsigned k = find(row2s, 16))
        return {k, true};
    if (unsigned k = find(row3, 30))
        return {k, false};
    if (unsigned k = find(row3s, 30))
        return {k, true};
    if (unsigned k = find(row4, 43))
        return {k, false};
    if (unsigned k = find(row4s, 43))
        return {k, true};
    return {0, false};
}
} // namespace

Status Vm::typeText(std::string_view text) {
    constexpr unsigned kHoldMs = 20;
    for (char c : text) {
        auto [code, shift] = usKey(c);
        if (code == 0)
            return Error(Errc::InvalidArgument,
                         std::string("cannot type character ") + std::to_string(int(c)));
        std::vector<unsigned> keys;
        if (shift)
            keys.push_back(kKeyLeftShift);
        keys.push_back(code);
        ISR_TRY_STATUS(sendKeys(keys, kHoldMs));
        // Let the release land before the next press: a repeated letter
        // pressed while still held would read as one key.
        std::this_thread::sleep_for(std::chrono::milliseconds(kHoldMs + 15));
    }
    return {};
}

bool Vm::guestAgentAnswers() {
    long long seconds = 0;
    unsigned int nseconds = 0;
    if (virDomainGetTime(handle_->dom.get(), &seconds, &nseconds, 0) < 0) {
        virResetLastError();
        return false;
    }
    return true;
}

Status Vm::syncGuestTime() {
    // The host's time, given explicitly: the agent sets the guest's system
    // clock to it (and its RTC). libvirt bounds the agent's answer (5 s).
    struct timespec now {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    if (virDomainSetTime(handle_->dom.get(), now.tv_sec, static_cast<unsigned>(now.tv_nsec), 0) <
        0) {
        Error err = libvirtError("setting the clock of VM " + name_);
        err.code = Errc::Unsupported;
        return err;
    }
    return {};
}

} // namespace isr::vm
