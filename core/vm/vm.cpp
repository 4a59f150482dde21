// The Hypervisor (one libvirt connection) and the Vm operations. This
// process's libvirt (errors, event loop, embedded root) is libvirt_host.cpp,
// the accelerator probe accel.cpp, the stop reason from the log domainlog.cpp.
#include "vm/vm.h"

#include "crypto/crypto.h"
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
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <thread>
#include <unistd.h>

namespace isr::vm {
namespace {

constexpr const char* kLog = "vm";

// ---- helpers --------------------------------------------------------------

constexpr long kTmpfsMagic = 0x01021994;
constexpr long kRamfsMagic = 0x858458f6;
constexpr long kFuseMagic = 0x65735546;

// The file system type of dir (statfs f_type); `what` names dir in errors.
Result<long> filesystemType(const std::string& dir, const std::string& what) {
    struct statfs fs {};
    if (statfs(dir.c_str(), &fs) != 0)
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     what + " " + dir + ": " + std::strerror(errno));
    return long(fs.f_type);
}

Result<bool> memoryBacked(const std::string& dir) {
    ISR_TRY_ASSIGN(long type, filesystemType(dir, "save directory"));
    return type == kTmpfsMagic || type == kRamfsMagic;
}

struct DomainDeleter {
    void operator()(virDomainPtr d) const {
        if (d)
            virDomainFree(d);
    }
};
using DomainPtr = std::unique_ptr<virDomain, DomainDeleter>;

// ---- lazy memory helpers (README "Lazy memory") ----------------------------

// Where guest RAM may live: memory (tmpfs, ramfs) or the kiosk's FUSE file
// that serves it from chunks; a disk would keep the guest's plaintext.
Result<bool> ramFileFilesystemOk(const std::string& dir) {
    ISR_TRY_ASSIGN(long type, filesystemType(dir, "RAM file directory"));
    return type == kTmpfsMagic || type == kRamfsMagic || type == kFuseMagic;
}

// The value of the first "<key>": "<string>" after `from` in a QMP reply
// (QEMU's JSON: strings without escapes for the fields read here).
std::string qmpString(std::string_view reply, std::string_view key, std::size_t from = 0) {
    const std::string quoted = "\"" + std::string(key) + "\"";
    std::size_t at = reply.find(quoted, from);
    if (at == std::string_view::npos)
        return "";
    at += quoted.size();
    while (at < reply.size() && (reply[at] == ' ' || reply[at] == ':'))
        ++at;
    if (at >= reply.size() || reply[at] != '"')
        return "";
    std::string out;
    for (++at; at < reply.size() && reply[at] != '"'; ++at) {
        if (reply[at] == '\\' && at + 1 < reply.size())
            ++at;
        out += reply[at];
    }
    return out;
}

// QEMU's own complaint in a domain log: its last "qemu-system-...: <text>"
// line of this run (e.g. "load of migration failed: Input/output error").
std::string lastQemuError(const std::string& logPath) {
    std::ifstream in(logPath);
    std::string line, found;
    while (std::getline(in, line)) {
        if (line.find("starting up libvirt") != std::string::npos)
            found.clear();
        auto at = line.find("qemu-system-");
        if (at == std::string::npos || line.find("terminating on signal") != std::string::npos)
            continue;
        auto colon = line.find(": ", at);
        if (colon != std::string::npos && line.find('\\', at) == std::string::npos)
            found = line.substr(colon + 2);
    }
    return found;
}

// Removes `name` below the directory `parentFd` (a file, a link, or a tree),
// never following a link: as root, in a directory QEMU's account owns.
void removeTreeAt(int parentFd, const std::string& name) {
    if (::unlinkat(parentFd, name.c_str(), 0) == 0 || errno != EISDIR)
        return;
    int fd = ::openat(parentFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    if (DIR* d = ::fdopendir(fd)) {
        std::vector<std::string> names;
        while (const dirent* e = ::readdir(d))
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
                names.emplace_back(e->d_name);
        for (const std::string& n : names)
            removeTreeAt(::dirfd(d), n);
        ::closedir(d);
    } else {
        ::close(fd);
    }
    ::unlinkat(parentFd, name.c_str(), AT_REMOVEDIR);
}

// The domain ids the embedded driver hands out count up per process
// (qemuDriverAllocateID); lazy starts need to know the next one in
// advance, since libvirt puts it in the RAM file's path.
std::atomic<int> gLastDomainId{0};
void noteDomainId(int id) {
    int seen = gLastDomainId.load();
    while (id > seen && !gLastDomainId.compare_exchange_weak(seen, id)) {
    }
}

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

std::string defaultRamPreload() {
    if (const char* env = std::getenv("ISR_QEMU_RAM_PRELOAD"))
        return env;
    std::error_code ec;
    for (const char* candidate : {"/usr/lib/isr/libisr-qemu-nohugepage.so", ISR_BUILD_RAM_PRELOAD})
        if (std::filesystem::is_regular_file(candidate, ec))
            return candidate;
    return {};
}

namespace {

// Why `path` must not be QEMU's RAM preload (HostConfig::ramPreload), or ""
// when it may: a regular file owned by root or us, writable by nobody else,
// and readable by QEMU (its account when set). A preloaded library is code
// in QEMU, before its seccomp filter is in place.
std::string ramPreloadProblem(const std::string& path, const QemuAccount* qemu) {
    if (path.empty() || path[0] != '/')
        return "it is not an absolute path";
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return std::strerror(errno);
    if (!S_ISREG(st.st_mode))
        return "it is not a regular file";
    if ((st.st_uid != 0 && st.st_uid != ::geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH)))
        return "someone other than root or this process's user may change it";
    std::string why;
    if (qemu && !accountCanAccess(*qemu, path, R_OK, &why))
        return why;
    if (!qemu && ::access(path.c_str(), R_OK) != 0)
        return std::strerror(errno);
    return {};
}

} // namespace

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
    if (const std::string& lib = hv->config_.ramPreload; !lib.empty()) {
        if (std::string why = ramPreloadProblem(lib, hv->qemu_.get()); why.empty()) {
            hv->ramPreload_ = lib;
        } else {
            ISR_LOG_WARN(kLog) << "not preloading " << lib << " into QEMU (" << why
                               << "): lazy memory faults will read 2 MiB pieces on kernels "
                                  "whose FUSE page cache has large folios";
        }
    }
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
    return domainXmlFor(spec, XmlFor::LibvirtRestore);
}

Result<std::string> Hypervisor::domainXmlFor(const VmSpec& spec, XmlFor use) const {
    ISR_TRY_STATUS(validate(spec));
    std::string label;
    if (qemu_)
        label = "+" + std::to_string(qemu_->uid) + ":+" + std::to_string(qemu_->gid);
    QemuPassthrough qemu;
    qemu.ramPreload = ramPreload_;
    qemu.incomingDefer = use == XmlFor::Incoming;
    // Not for libvirt's restore: the CPU that restore checks and starts
    // comes with the saved image (its XML and cookie), read back by the
    // libvirt of its day; that path stays exactly as it was.
    qemu.quickCpuReadback = use != XmlFor::LibvirtRestore;
    return buildDomainXml(spec, accel_, label, qemu);
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
    ISR_TRY_ASSIGN(std::string xml, domainXmlFor(spec, XmlFor::Boot));
    for (const std::string* p : {&spec.kernelPath, &spec.initrdPath})
        if (!p->empty() && access(p->c_str(), R_OK) != 0)
            return Error(Errc::NotFound, "boot file " + *p + ": " + std::strerror(errno));
    ISR_TRY_STATUS(checkFirmwareFiles(spec));
    ISR_TRY_STATUS(refuseRunning(spec.name));
    ISR_TRY_STATUS(prepareQemuAccess(spec));
    ISR_TRY_STATUS(applyGuestNetworkPolicy());
    if (!spec.ramFile.empty()) {
        // Started paused, checked to map our file, then run.
        ISR_TRY_STATUS(prepareRamFile(spec));
        auto start = [&]() -> Status {
            DomainPtr d(virDomainCreateXML(conn_->conn, xml.c_str(), VIR_DOMAIN_START_PAUSED));
            if (!d)
                return libvirtError("starting VM " + spec.name);
            return {};
        };
        ISR_TRY_ASSIGN(Vm vm, startOnRamFile(spec, start, true));
        if (Status st = vm.resume(); !st.ok()) {
            (void)vm.destroy();
            return st.error();
        }
        ISR_LOG_INFO(kLog) << "booted " << spec.name << " with its RAM in " << spec.ramFile;
        return vm;
    }
    DomainPtr dom(virDomainCreateXML(conn_->conn, xml.c_str(), VIR_DOMAIN_NONE));
    if (!dom)
        return libvirtError("starting VM " + spec.name);
    noteDomainId(virDomainGetID(dom.get()));
    ISR_LOG_INFO(kLog) << "booted " << spec.name;
    return Vm(std::make_unique<Vm::Handle>(Vm::Handle{std::move(dom)}), spec.name,
              config_.allowDiskBackedSaveFiles, domainLogPath(spec.name));
}

namespace {

// The libvirt header facts of a regular save file, read 4 KiB at a time
// until its XML is complete (a few KiB; what comes after is guest data, and
// at most the rest of that block is read: wiped).
Result<SavedDomain> savedDomainOf(const std::string& savePath) {
    std::ifstream in(savePath, std::ios::binary);
    if (!in)
        return Error(Errc::Io, "save file " + savePath + ": cannot open");
    Bytes head;
    crypto::WipeOnExit wipeHead(head);
    constexpr std::size_t kStep = 4096, kMax = (16u << 20) + 4096;
    while (head.size() < kMax) {
        const std::size_t had = head.size();
        head.resize(had + kStep);
        in.read(reinterpret_cast<char*>(head.data() + had), std::streamsize(kStep));
        head.resize(had + std::size_t(in.gcount()));
        ISR_TRY_ASSIGN(std::optional<SavedDomain> saved, savedDomain(head));
        if (saved)
            return std::move(*saved);
        if (head.size() < had + kStep)
            break;
    }
    return Error(Errc::Corrupt, "save file " + savePath + " ends inside libvirt's header");
}

} // namespace

Result<Vm> Hypervisor::restore(const std::string& savePath, const VmSpec& requested) {
    ISR_TRY_STATUS(validate(requested));
    if (savePath.empty() || savePath[0] != '/')
        return Error(Errc::InvalidArgument, "save file path must be absolute: " + savePath);
    struct stat st {};
    if (::stat(savePath.c_str(), &st) != 0)
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     "save file " + savePath + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
        return Error(Errc::InvalidArgument, "save file " + savePath + " is not a file or FIFO");
    VmSpec spec = requested;
    if (S_ISREG(st.st_mode) && spec.savedGenid.empty()) {
        // The generation ID device must be as saved, with the ID the image
        // names (savedDomain): say so before libvirt's ABI check does.
        ISR_TRY_ASSIGN(SavedDomain saved, savedDomainOf(savePath));
        if (saved.genid.empty() == spec.genid)
            return Error(Errc::InvalidArgument,
                         "save file " + savePath + " was saved " +
                             (spec.genid ? "without" : "with") +
                             " a VM generation ID device; it restores only " +
                             (spec.genid ? "without" : "with") + " one");
        spec.savedGenid = saved.genid;
    } else if (spec.genid && spec.savedGenid.empty()) {
        return Error(Errc::InvalidArgument,
                     "restoring VM " + spec.name + " with a VM generation ID from the FIFO " +
                         savePath + " needs the ID it was saved with (vm::savedDomain)");
    }
    ISR_TRY_ASSIGN(std::string xml, domainXml(spec));
    ISR_TRY_STATUS(checkFirmwareFiles(spec));
    ISR_TRY_STATUS(refuseRunning(spec.name));
    ISR_TRY_STATUS(prepareQemuAccess(spec));
    ISR_TRY_STATUS(applyGuestNetworkPolicy());
    if (!spec.ramFile.empty()) {
        // Loaded paused, checked to map our file, then run. A wrong domain
        // id guess could only be retried by reading the save file again,
        // which a FIFO does not allow.
        ISR_TRY_STATUS(prepareRamFile(spec));
        auto start = [&]() -> Status {
            if (virDomainRestoreFlags(conn_->conn, savePath.c_str(), xml.c_str(),
                                      VIR_DOMAIN_SAVE_PAUSED) < 0)
                return libvirtError("restoring VM " + spec.name + " from " + savePath);
            return {};
        };
        ISR_TRY_ASSIGN(Vm vm, startOnRamFile(spec, start, S_ISREG(st.st_mode)));
        if (Status r = vm.resume(); !r.ok()) {
            (void)vm.destroy();
            return r.error();
        }
        ISR_LOG_INFO(kLog) << "restored " << spec.name << " from " << savePath << ", RAM in "
                           << spec.ramFile;
        return vm;
    }
    if (virDomainRestoreFlags(conn_->conn, savePath.c_str(), xml.c_str(), VIR_DOMAIN_SAVE_RUNNING) <
        0)
        return libvirtError("restoring VM " + spec.name + " from " + savePath);
    ISR_LOG_INFO(kLog) << "restored " << spec.name << " from " << savePath;
    return find(spec.name);
}

// ---- lazy memory (README "Lazy memory") ------------------------------------

namespace {

// A QMP command through libvirt's monitor passthrough, with at most one file
// descriptor for QEMU's getfd. libvirt marks the domain tainted
// (custom-monitor); there is no libvirt API for x-ignore-shared or a
// deferred incoming migration. A QMP "error" reply is an error here.
Result<std::string> qmp(virDomainPtr dom, const std::string& vmName, const std::string& command,
                        int fd = -1) {
    char* reply = nullptr;
    int rc = 0;
    if (fd >= 0) {
        int files[1] = {fd};
        unsigned int nout = 0;
        int* outFiles = nullptr;
        rc = virDomainQemuMonitorCommandWithFiles(dom, command.c_str(), 1, files, &nout, &outFiles,
                                                  &reply, 0);
        for (unsigned int i = 0; i < nout; ++i)
            ::close(outFiles[i]);
        free(outFiles);
    } else {
        rc = virDomainQemuMonitorCommand(dom, command.c_str(), &reply, 0);
    }
    if (rc < 0)
        return libvirtError("QEMU command on VM " + vmName);
    std::string out = reply ? reply : "";
    free(reply);
    if (out.find("\"error\"") != std::string::npos)
        return Error(Errc::Internal, "QEMU refused " + command + " on VM " + vmName + ": " +
                                         qmpString(out, "desc"));
    return out;
}

constexpr const char* kIgnoreShared =
    R"({"execute":"migrate-set-capabilities","arguments":{"capabilities":)"
    R"([{"capability":"x-ignore-shared","state":true}]}})";
// Device state goes through a file descriptor QEMU gets from us (getfd),
// never a path: QEMU (isr-qemu) needs no access to the kiosk's scratch
// directory, and exec: URIs are impossible under QEMU's sandbox (spawn=deny).
constexpr const char* kStateFdName = "isr-device-state";
// Device state is well under a megabyte; this only bounds a hung QEMU or a
// FIFO whose writer stalls.
constexpr auto kMigrationLimit = std::chrono::minutes(5);

} // namespace

std::string Hypervisor::qemuPidFile(const std::string& name) const {
    return embeddedRoot_ + "/run/qemu/" + name + ".pid";
}

// The RAM file must exist, be a regular file of exactly the VM's memory
// size (a file of another VM, or a truncated one, is refused before QEMU
// starts: nothing in the migration stream would notice it), live in memory
// or on FUSE, and be reachable by QEMU's account and nobody else.
Status Hypervisor::prepareRamFile(const VmSpec& spec) const {
    if (embeddedRoot_.empty())
        return Error(Errc::Unsupported,
                     "file-backed guest RAM needs libvirt's embedded driver (not " + uri_ + ")");
    struct stat st {};
    if (::lstat(spec.ramFile.c_str(), &st) != 0)
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     "RAM file " + spec.ramFile + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        return Error(Errc::InvalidArgument, "RAM file " + spec.ramFile + " is not a regular file");
    const std::uint64_t want = std::uint64_t(spec.memoryMiB) << 20;
    if (std::uint64_t(st.st_size) != want)
        return Error(Errc::InvalidArgument, "RAM file " + spec.ramFile + " has " +
                                                std::to_string(st.st_size) + " bytes, VM " +
                                                spec.name + " has " + std::to_string(want) +
                                                ": not this VM's RAM, refusing to start");
    const std::string dir = std::filesystem::path(spec.ramFile).parent_path().string();
    if (!config_.allowDiskBackedSaveFiles) {
        ISR_TRY_ASSIGN(bool ok, ramFileFilesystemOk(dir));
        if (!ok)
            return Error(Errc::InvalidArgument, "refusing guest RAM in " + dir +
                                                    ": not memory-backed or FUSE (use /dev/shm)");
    }
    struct stat dst {};
    if (::stat(dir.c_str(), &dst) != 0)
        return Error(Errc::Io, "RAM file directory " + dir + ": " + std::strerror(errno));
    if (dst.st_mode & S_IWOTH)
        return Error(Errc::AccessDenied, "RAM file directory " + dir +
                                             " is writable by others: the file could be swapped");
    if (!qemu_)
        return {};
    // As root, QEMU (isr-qemu) opens the file by path: group isr-qemu rw,
    // nobody else; the directory lets the group pass, never list.
    std::string why;
    if (!accountCanAccess(*qemu_, spec.ramFile, R_OK | W_OK, &why) || (st.st_mode & S_IRWXO)) {
        if (st.st_uid == ::geteuid() && (st.st_mode & S_IRWXO) &&
            ::chmod(spec.ramFile.c_str(), st.st_mode & 0770) != 0)
            return Error(Errc::Io, "chmod " + spec.ramFile + ": " + std::strerror(errno));
        if (dst.st_uid == ::geteuid())
            ISR_TRY_STATUS(grantPathBelow(dir, spec.ramFile, qemu_->gid, S_IRGRP | S_IWGRP));
        if (!accountCanAccess(*qemu_, spec.ramFile, R_OK | W_OK, &why))
            return Error(Errc::AccessDenied, "QEMU runs as " + std::string(kQemuAccountName) +
                                                 " and cannot open the RAM file: " + why);
    }
    return {};
}

// libvirt 9.0 picks the path of file-backed RAM itself:
// <root>/lib/qemu/ram/<domain id>-<name, 20 chars>/pc.ram, creating the
// directory only when it does not exist and deleting it (never following a
// link in it) when the domain stops. So the directory is made here first,
// for the id libvirt will hand out next, with a link pc.ram -> spec.ramFile
// in it. The id is a guess (ids count up per process; a failed start or a
// reconnected driver shifts them): the domain starts paused, and a wrong
// guess -- QEMU then mapped a fresh file of libvirt's -- is destroyed before
// it ran and tried again with the id libvirt really used. Whatever the
// path, the file QEMU mapped is checked in /proc/<pid>/maps against the
// RAM file's device and inode: a wrong file would be silent guest
// corruption. (Considered: our own -object memory-backend-file through
// <qemu:commandline>: an explicit path, but the RAM block would not be
// pc.ram, so normal saves would no longer restore across the two kinds.)
Result<Vm> Hypervisor::startOnRamFile(const VmSpec& spec,
                                      const std::function<Status()>& startPaused, bool mayRetry) {
    namespace fs = std::filesystem;
    // libvirt makes lib/qemu and lib/qemu/ram QEMU's (isr-qemu): everything
    // below is done relative to a descriptor of the real directory, so a
    // link put in place of ram/ cannot send this (root) process elsewhere.
    const std::string ramDir = embeddedRoot_ + "/lib/qemu/ram";
    std::error_code ec;
    fs::create_directories(ramDir, ec);
    UniqueFd ramFd(::open(ramDir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!ramFd.valid())
        return Error(Errc::Io, "opening " + ramDir + ": " + std::strerror(errno));
    struct stat rst {};
    if (::stat(spec.ramFile.c_str(), &rst) != 0)
        return Error(Errc::Io, "RAM file " + spec.ramFile + ": " + std::strerror(errno));
    const std::string shortName = spec.name.substr(0, 20);
    // Directories of this name for other ids: left by a crash, or planted by
    // an escaped QEMU. libvirt would use one that exists as it is.
    {
        std::vector<std::string> stale;
        if (DIR* d = ::fdopendir(::dup(ramFd.get()))) {
            while (const dirent* e = ::readdir(d)) {
                const std::string n = e->d_name;
                const auto dash = n.find('-');
                if (dash != std::string::npos && dash > 0 && n.substr(dash + 1) == shortName &&
                    n.find_first_not_of("0123456789") == dash)
                    stale.push_back(n);
            }
            ::closedir(d);
        }
        for (const std::string& n : stale)
            removeTreeAt(ramFd.get(), n);
    }
    int guess = gLastDomainId.load() + 1;
    for (int attempt = 0; attempt < 3; ++attempt, guess = gLastDomainId.load() + 1) {
        const std::string name = std::to_string(guess) + "-" + shortName;
        const std::string dir = ramDir + "/" + name;
        removeTreeAt(ramFd.get(), name);
        if (::mkdirat(ramFd.get(), name.c_str(), 0700) != 0)
            return Error(Errc::Io, "creating " + dir + ": " + std::strerror(errno));
        UniqueFd dirFd(
            ::openat(ramFd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!dirFd.valid())
            return Error(Errc::Io, "opening " + dir + ": " + std::strerror(errno));
        if (qemu_ &&
            (::fchown(dirFd.get(), uid_t(-1), qemu_->gid) != 0 || ::fchmod(dirFd.get(), 0710) != 0))
            return Error(Errc::Io, "handing " + dir + " to QEMU: " + std::strerror(errno));
        if (::symlinkat(spec.ramFile.c_str(), dirFd.get(), "pc.ram") != 0)
            return Error(Errc::Io,
                         "linking the RAM file into " + dir + ": " + std::strerror(errno));
        dirFd.reset();

        if (Status started = startPaused(); !started.ok()) {
            removeTreeAt(ramFd.get(), name);
            return started.error();
        }
        auto found = find(spec.name);
        if (!found.ok()) {
            removeTreeAt(ramFd.get(), name);
            return found.error();
        }
        Vm vm = std::move(*found);
        const int id = int(virDomainGetID(vm.handle_->dom.get()));
        if (id != guess && !mayRetry) {
            (void)vm.destroy();
            removeTreeAt(ramFd.get(), name);
            return Error(Errc::Internal, "VM " + spec.name + " got domain id " +
                                             std::to_string(id) + ", not " + std::to_string(guess) +
                                             ": its RAM file was not used; try again");
        }
        if (id != guess) {
            ISR_LOG_INFO(kLog) << "VM " << spec.name << " got domain id " << id << ", not " << guess
                               << ": restarting it on its RAM file";
            (void)vm.destroy();
            removeTreeAt(ramFd.get(), name);
            continue;
        }
        // Which file QEMU mapped shared, by device and inode.
        long pid = -1;
        std::ifstream(qemuPidFile(spec.name)) >> pid;
        std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
        const std::uint64_t want = std::uint64_t(spec.memoryMiB) << 20;
        bool mapped = false;
        std::string line;
        while (!mapped && std::getline(maps, line)) {
            std::istringstream in(line);
            std::string range, perms, offset, dev;
            unsigned long inode = 0;
            if (!(in >> range >> perms >> offset >> dev >> inode) || perms.size() < 4 ||
                perms[3] != 's')
                continue;
            unsigned long start = 0, end = 0, major = 0, minor = 0;
            if (std::sscanf(range.c_str(), "%lx-%lx", &start, &end) != 2 ||
                std::sscanf(dev.c_str(), "%lx:%lx", &major, &minor) != 2)
                continue;
            mapped = inode == rst.st_ino && major == ::major(rst.st_dev) &&
                     minor == ::minor(rst.st_dev) && end - start == want;
        }
        if (!mapped) {
            (void)vm.destroy();
            return Error(Errc::Internal, "QEMU of VM " + spec.name + " (pid " +
                                             std::to_string(pid) + ") did not map " + spec.ramFile +
                                             " as its RAM: refusing to run it");
        }
        return vm;
    }
    return Error(Errc::Internal,
                 "VM " + spec.name + ": libvirt's domain ids kept moving, RAM file not placed");
}

namespace {

// What a device state's relay drops after QEMU closed its end: more than a
// real one (13 MB on the reference desktop, mostly video memory).
constexpr std::uint64_t kDeviceStateDrain = 256ull << 20;

// QEMU reads a migration stream from a socket, never from a FIFO itself:
// QEMU 7.2 waits for a readable migration fd with a G_IO_IN watch, and a
// FIFO whose writer closed early (a chunk that could not be fetched) only
// ever reports HUP, so QEMU spun at 100 % CPU until the migration limit
// (measured, 2026-12-03). A socket's EOF is readable. The thread copies
// `from` into one end of a socket pair until `from` ends. QEMU closes its
// end when it has loaded the state, which is before the stream's end
// (QEMU 7.2 stops at QEMU_VM_EOF and leaves the VM description after it
// unread: measured, a lazy restore ran with the last chunk of its stream
// damaged), or when it fails. With `drainUpTo` the rest, up to that many bytes,
// is then read and dropped, so that the writer of a device state finishes
// and reports only its own errors (a fetch that failed), never "the reader
// went away" for a restore that worked; past it (or with 0: a whole image,
// whose download a failed QEMU should stop at once) the relay closes `from`
// and its writer sees the reader gone. The bytes are guest data and are
// wiped. Join the thread once QEMU is done with its end.
struct SocketRelay {
    UniqueFd qemuEnd;
    std::thread thread;
};

Result<SocketRelay> relayIntoSocket(UniqueFd from, std::uint64_t drainUpTo) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        return Error(Errc::Io, std::string("socketpair: ") + std::strerror(errno));
    SocketRelay relay;
    relay.qemuEnd = UniqueFd(pair[0]);
    relay.thread = std::thread([from = std::move(from), to = UniqueFd(pair[1]),
                                drainUpTo]() mutable {
        std::vector<std::uint8_t> buf(1 << 20);
        std::uint64_t dropped = 0;
        for (;;) {
            const ssize_t n = ::read(from.get(), buf.data(), buf.size());
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            if (!to.valid()) {
                dropped += std::uint64_t(n);
                if (dropped > drainUpTo)
                    break;
                continue;
            }
            for (ssize_t off = 0; to.valid() && off < n;) {
                const ssize_t w = ::send(to.get(), buf.data() + off, size_t(n - off), MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    to.reset(); // QEMU closed its end: drop the rest
                    break;
                }
                off += w;
            }
            if (!to.valid() && drainUpTo == 0)
                break;
        }
        crypto::wipe(buf);
    });
    return relay;
}

} // namespace

Result<Vm> Hypervisor::restoreLazy(const std::string& deviceStatePath, const VmSpec& spec) {
    if (spec.ramFile.empty())
        return Error(Errc::InvalidArgument,
                     "lazy restore of VM " + spec.name + " needs a RAM file");
    if (deviceStatePath.empty() || deviceStatePath[0] != '/')
        return Error(Errc::InvalidArgument,
                     "device state path must be absolute: " + deviceStatePath);
    struct stat st {};
    if (::stat(deviceStatePath.c_str(), &st) != 0)
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     "device state " + deviceStatePath + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
        return Error(Errc::InvalidArgument,
                     "device state " + deviceStatePath + " is not a file or FIFO");
    ISR_TRY_STATUS(validate(spec));
    // Opened before QEMU starts (a FIFO: until its writer comes).
    UniqueFd state(::open(deviceStatePath.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!state.valid())
        return Error(Errc::Io,
                     "opening device state " + deviceStatePath + ": " + std::strerror(errno));
    if (!S_ISFIFO(st.st_mode))
        return restoreIncoming(std::move(state), deviceStatePath, spec, true);
    // A FIFO's writer may still be downloading while QEMU starts; QEMU
    // reads it through a socket (relayIntoSocket).
    ISR_TRY_ASSIGN(SocketRelay relay, relayIntoSocket(std::move(state), kDeviceStateDrain));
    auto vm = restoreIncoming(std::move(relay.qemuEnd), deviceStatePath, spec, true);
    relay.thread.join();
    return vm;
}

Result<Vm> Hypervisor::restoreIntoRamFile(const std::string& savePath, const VmSpec& spec) {
    if (spec.ramFile.empty())
        return Error(Errc::InvalidArgument,
                     "restoring VM " + spec.name + " into a RAM file needs one");
    if (savePath.empty() || savePath[0] != '/')
        return Error(Errc::InvalidArgument, "save file path must be absolute: " + savePath);
    ISR_TRY_STATUS(validate(spec));
    UniqueFd in(::open(savePath.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!in.valid())
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     "save file " + savePath + ": " + std::strerror(errno));
    // libvirt's header (92 bytes), then the XML it announces, never past it.
    Bytes head;
    crypto::WipeOnExit wipeHead(head);
    auto readMore = [&](std::size_t n) -> Status {
        const std::size_t had = head.size();
        head.resize(had + n);
        std::size_t got = 0;
        while (got < n) {
            const ssize_t r = ::read(in.get(), head.data() + had + got, n - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return Error(Errc::Io,
                             "reading save file " + savePath + ": " + std::strerror(errno));
            if (r == 0)
                return Error(Errc::Corrupt,
                             "save file " + savePath + " ends inside libvirt's header");
            got += std::size_t(r);
        }
        return {};
    };
    ISR_TRY_STATUS(readMore(kSaveImageHeader));
    auto size = saveImageHeaderSize(head);
    if (!size.ok())
        return std::move(size).error().context("save file " + savePath);
    ISR_TRY_STATUS(readMore(std::size_t(*size - kSaveImageHeader)));
    auto parsed = savedDomain(head); // complete now: a value or an error
    if (!parsed.ok())
        return std::move(parsed).error().context("save file " + savePath);
    const SavedDomain* saved = &**parsed;
    if (!saved->raw)
        return Error(Errc::InvalidArgument,
                     "save file " + savePath +
                         " is compressed; only raw images load into a RAM file");
    if (saved->genid.empty() == spec.genid)
        return Error(Errc::InvalidArgument, "save file " + savePath + " was saved " +
                                                (spec.genid ? "without" : "with") +
                                                " a VM generation ID device");
    ISR_TRY_ASSIGN(SocketRelay relay, relayIntoSocket(std::move(in), 0));
    auto vm = restoreIncoming(std::move(relay.qemuEnd), savePath, spec, false);
    relay.thread.join();
    return vm;
}

Result<Vm> Hypervisor::restoreIncoming(UniqueFd stream, const std::string& what, const VmSpec& spec,
                                       bool ignoreShared) {
    // QEMU waits for the state instead of booting: -incoming defer.
    ISR_TRY_ASSIGN(std::string xml, domainXmlFor(spec, XmlFor::Incoming));
    ISR_TRY_STATUS(checkFirmwareFiles(spec));
    ISR_TRY_STATUS(refuseRunning(spec.name));
    ISR_TRY_STATUS(prepareQemuAccess(spec));
    ISR_TRY_STATUS(prepareRamFile(spec));
    ISR_TRY_STATUS(applyGuestNetworkPolicy());

    auto start = [&]() -> Status {
        DomainPtr d(virDomainCreateXML(conn_->conn, xml.c_str(), VIR_DOMAIN_START_PAUSED));
        if (!d)
            return libvirtError("starting VM " + spec.name);
        return {};
    };
    const auto begun = std::chrono::steady_clock::now();
    ISR_TRY_ASSIGN(Vm vm, startOnRamFile(spec, start, true));
    const auto qemuUp = std::chrono::steady_clock::now();
    virDomainPtr dom = vm.handle_->dom.get();
    const char* kind = ignoreShared ? "lazy restore" : "restore into its RAM file";
    auto fail = [&](const std::string& step, const Error& err) -> Error {
        std::string qemuSays = lastQemuError(vm.logPath());
        (void)vm.destroy(); // gone already when QEMU exited
        virResetLastError();
        return Error(err.code, std::string(kind) + " of VM " + spec.name + " from " + what + ": " +
                                   step + " (" +
                                   (qemuSays.empty() ? "" : "QEMU: " + qemuSays + "; ") +
                                   err.message + ")");
    };
    std::string ignore = kIgnoreShared;
    if (!ignoreShared)
        ignore.replace(ignore.find("true"), 4, "false");
    for (const std::string& cmd :
         {ignore,
          std::string(R"({"execute":"getfd","arguments":{"fdname":")") + kStateFdName + "\"}}",
          std::string(R"({"execute":"migrate-incoming","arguments":{"uri":"fd:)") + kStateFdName +
              "\"}}"}) {
        auto r =
            qmp(dom, spec.name, cmd, cmd.find("getfd") != std::string::npos ? stream.get() : -1);
        if (!r.ok())
            return fail("starting the incoming migration", r.error());
    }
    stream.reset(); // QEMU has its own copy
    const auto deadline = std::chrono::steady_clock::now() + kMigrationLimit;
    std::string status = "inmigrate";
    while (status == "inmigrate") {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto r = qmp(dom, spec.name, R"({"execute":"query-status"})");
        if (!r.ok()) {
            // QEMU exits when the state does not load (bad, truncated, or
            // not this VM's): bad input, not a libvirt problem.
            return fail("QEMU could not load the device state and stopped",
                        Error(Errc::InvalidArgument, "the VM was not started"));
        }
        status = qmpString(*r, "status");
        if (status == "inmigrate" && std::chrono::steady_clock::now() > deadline)
            return fail("loading the device state", Error(Errc::Transient, "timed out"));
    }
    if (status != "paused" && status != "running")
        return fail("loading the device state",
                    Error(Errc::Internal, "QEMU ended in state '" + status + "'"));
    // Off again: a normal save() of this VM would otherwise leave its RAM
    // out (measured: 0.76 MB "save" of a 256 MiB guest, which then fails to
    // restore). saveLazy() sets it again when it is wanted.
    if (ignoreShared) {
        std::string off = kIgnoreShared;
        off.replace(off.find("true"), 4, "false");
        if (auto r = qmp(dom, spec.name, off); !r.ok())
            return fail("resetting x-ignore-shared", r.error());
    }
    if (status == "paused") {
        if (Status r = vm.resume(); !r.ok())
            return fail("resuming", r.error());
    }
    // Where a lazy resume's "restoring" stage goes (issue #17): QEMU's
    // start (libvirt, QEMU, its firmware and TPM), then the state's load
    // (waiting for the stream, and RAM the devices touch).
    using Seconds = std::chrono::duration<double>;
    const auto loaded = std::chrono::steady_clock::now();
    ISR_LOG_INFO(kLog) << "restored " << spec.name << (ignoreShared ? " lazily" : "") << " from "
                       << what << ", RAM in " << spec.ramFile << " (QEMU started in "
                       << Seconds(qemuUp - begun).count() << " s, state loaded and running in "
                       << Seconds(loaded - qemuUp).count() << " s)";
    return vm;
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
    noteDomainId(virDomainGetID(dom.get()));
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
            noteDomainId(virDomainGetID(doms[i]));
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

Status Vm::saveLazy(const std::string& deviceStatePath) {
    if (deviceStatePath.empty() || deviceStatePath[0] != '/')
        return Error(Errc::InvalidArgument,
                     "device state path must be absolute: " + deviceStatePath);
    const std::string dir = std::filesystem::path(deviceStatePath).parent_path().string();
    if (!allowDiskBackedSaveFiles_) {
        // Device state holds guest data too (device buffers, ROMs, queues).
        ISR_TRY_ASSIGN(bool inMemory, memoryBacked(dir));
        if (!inMemory)
            return Error(Errc::InvalidArgument,
                         "refusing to write the VM's device state to " + dir +
                             ": not memory-backed (use /dev/shm or a tmpfs)");
    }
    UniqueFd out(::open(deviceStatePath.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
    if (!out.valid())
        return Error(Errc::Io, "creating " + deviceStatePath + ": " + std::strerror(errno));
    virDomainPtr dom = handle_->dom.get();
    // Paused first: the RAM file must not change after the state is taken.
    ISR_TRY_STATUS(pause());
    const std::string stillAlive = "; VM " + name_ + " is paused and still running";
    auto failed = [&](const std::string& what, const Error& err) {
        // No half-written state under the real name.
        out.reset();
        ::unlink(deviceStatePath.c_str());
        const bool full = err.message.find("No space left on device") != std::string::npos;
        return Error(full ? Errc::NoSpace : err.code,
                     "lazy save of VM " + name_ + ": " + what + ": " + err.message + stillAlive);
    };
    const auto started = std::chrono::steady_clock::now();
    for (const std::string& cmd :
         {std::string(kIgnoreShared),
          std::string(R"({"execute":"getfd","arguments":{"fdname":")") + kStateFdName + "\"}}",
          std::string(R"({"execute":"migrate","arguments":{"uri":"fd:)") + kStateFdName + "\"}}"}) {
        auto r = qmp(dom, name_, cmd, cmd.find("getfd") != std::string::npos ? out.get() : -1);
        if (!r.ok())
            return failed("starting the migration", r.error());
    }
    const auto deadline = std::chrono::steady_clock::now() + kMigrationLimit;
    for (;;) {
        auto r = qmp(dom, name_, R"({"execute":"query-migrate"})");
        if (!r.ok())
            return failed("asking for the migration's progress", r.error());
        const std::string status = qmpString(*r, "status");
        if (status == "completed")
            break;
        if (status == "failed" || status == "cancelled")
            return failed("writing the device state",
                          Error(Errc::Io, status + ": " + qmpString(*r, "error-desc")));
        if (std::chrono::steady_clock::now() > deadline) {
            (void)qmp(dom, name_, R"({"execute":"migrate_cancel"})");
            return failed("writing the device state", Error(Errc::Transient, "timed out"));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (::fsync(out.get()) != 0 || out.close() != 0)
        return failed("finishing " + deviceStatePath, Error(Errc::Io, std::strerror(errno)));
    const auto migrated = std::chrono::steady_clock::now();
    // The RAM file now holds the RAM that goes with the state. Stopping QEMU
    // unmaps it; libvirt then deletes its link to the file, not the file.
    ISR_TRY_STATUS(destroy());
    // Where a lazy Suspend & Leave's "device state" second goes (issue #17).
    using Seconds = std::chrono::duration<double>;
    ISR_LOG_INFO(kLog) << "saved " << name_ << " lazily: device state in " << deviceStatePath
                       << " (migration " << Seconds(migrated - started).count()
                       << " s, QEMU stopped in "
                       << Seconds(std::chrono::steady_clock::now() - migrated).count() << " s)";
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

std::string Vm::guestOsSign() {
    virDomainPtr dom = handle_->dom.get();
    // The statistics a guest driver pushes (QEMU's "guest-stats"): libvirt
    // reports LAST_UPDATE (the guest's last push, seconds) only once one
    // came. The driver's first push happens as it loads; the period makes
    // QEMU ask again, so a driver that loaded before this VM was watched
    // (a restored guest) answers too.
    if (!statsPeriodSet_) {
        if (virDomainSetMemoryStatsPeriod(dom, 2, VIR_DOMAIN_AFFECT_LIVE) < 0)
            virResetLastError();
        statsPeriodSet_ = true;
    }
    virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
    const int n = virDomainMemoryStats(dom, stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);
    if (n < 0)
        virResetLastError();
    std::string sign;
    for (int i = 0; i < n && sign.empty(); ++i)
        if (stats[i].tag == VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE && stats[i].val > 0)
            sign = "balloon driver";
    if (sign.empty() && guestAgentAnswers())
        sign = "guest agent";
    // Answered: the caller stops asking, so QEMU stops polling the guest
    // (period 0), instead of waking it every 2 s for the rest of the session.
    if (!sign.empty() && virDomainSetMemoryStatsPeriod(dom, 0, VIR_DOMAIN_AFFECT_LIVE) < 0)
        virResetLastError();
    return sign;
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
