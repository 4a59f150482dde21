// libvirt connection, event loop, accelerator probe and domain operations.
#include "vm/vm.h"

#include "util/log.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <mutex>
#include <pwd.h>
#include <set>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace isr::vm {
namespace {

constexpr const char* kLog = "vm";

// ---- libvirt errors -------------------------------------------------------

// Errors are read from libvirt's thread-local last error; the default handler
// that prints every error to stderr is replaced by one that logs at debug.
void silentErrorHandler(void*, virErrorPtr err) {
    if (err && err->message) {
        ISR_LOG_DEBUG(kLog) << "libvirt: " << err->message;
    }
}

Errc errcFromLibvirt(int code) {
    switch (code) {
    case VIR_ERR_NO_DOMAIN:
        return Errc::NotFound;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_CONFIG_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
    case VIR_ERR_AGENT_UNRESPONSIVE:
        return Errc::Unsupported;
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
        return Errc::InvalidArgument;
    case VIR_ERR_OPERATION_DENIED:
    case VIR_ERR_AUTH_FAILED:
        return Errc::AccessDenied;
    case VIR_ERR_SYSTEM_ERROR:
    case VIR_ERR_WRITE_FAILED:
        return Errc::Io;
    case VIR_ERR_OPERATION_TIMEOUT:
        return Errc::Transient;
    default:
        return Errc::Internal;
    }
}

Error libvirtError(std::string_view what) {
    virErrorPtr err = virGetLastError();
    std::string msg(what);
    Errc code = Errc::Internal;
    if (err) {
        code = errcFromLibvirt(err->code);
        if (err->message)
            msg += std::string(": ") + err->message;
        // A full save target (ENOSPC from QEMU's migration stream or from
        // libvirt's own write) is the kiosk being out of space, not a bug.
        if (err->message && std::strstr(err->message, "No space left on device"))
            code = Errc::NoSpace;
        virResetLastError();
    } else {
        msg += ": unknown libvirt error";
    }
    return Error(code, msg);
}

// ---- the event loop -------------------------------------------------------

// libvirt needs an event loop for the embedded driver's monitor I/O and
// keepalives. It is process-wide: registered once before the first
// connection and run on one thread until exit.
class EventLoop {
public:
    static Status ensureRunning() {
        static EventLoop loop;
        return loop.status_;
    }
    ~EventLoop() {
        if (!thread_.joinable())
            return;
        stop_ = true;
        // A zero timeout wakes virEventRunDefaultImpl so it sees stop_.
        virEventAddTimeout(
            0, [](int timer, void*) { virEventRemoveTimeout(timer); }, nullptr, nullptr);
        thread_.join();
    }

private:
    EventLoop() {
        virSetErrorFunc(nullptr, silentErrorHandler);
        if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
            status_ = libvirtError("registering the libvirt event loop");
            return;
        }
        thread_ = std::thread([this] {
            while (!stop_) {
                if (virEventRunDefaultImpl() < 0) {
                    ISR_LOG_ERROR(kLog) << "libvirt event loop failed";
                    break;
                }
            }
        });
    }
    Status status_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// The embedded driver binds a process to one root for its lifetime.
std::mutex gRootMutex;
std::string gEmbeddedRoot;

// ---- helpers --------------------------------------------------------------

Status writeFileAtomically(const std::string& path, const std::string& content) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << content;
        if (!out.flush())
            return Error(Errc::Io, "writing " + tmp + ": " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        return Error(Errc::Io, "renaming " + tmp + ": " + std::strerror(errno));
    return {};
}

// The embedded driver reads <root>/etc/qemu.conf. stdio_handler=file: there
// is no virtlogd, QEMU's stdout/stderr go to <root>/log/qemu/<name>.log.
// remember_owner=0: no xattrs on the kernel/initrd (which may be shared).
Status writeQemuConf(const std::string& root) {
    std::error_code ec;
    std::filesystem::create_directories(root + "/etc", ec);
    if (ec)
        return Error(Errc::Io, "creating " + root + "/etc: " + ec.message());
    std::string conf = "# Written by isr core/vm at every start; edits are lost.\n"
                       "stdio_handler = \"file\"\n"
                       "remember_owner = 0\n";
    if (geteuid() == 0) {
        // A privileged driver looks up its built-in default account before
        // it reads this file; without it the driver does not start.
        if (!getpwnam("libvirt-qemu"))
            return Error(Errc::Unsupported,
                         "libvirt's QEMU driver running as root needs the 'libvirt-qemu' account "
                         "(run packaging/install-deps.sh)");
        // Run QEMU as the calling user; the DAC driver then needs no chown of
        // the sockets and the kernel.
        conf += "user = \"root\"\ngroup = \"root\"\n";
    }
    return writeFileAtomically(root + "/etc/qemu.conf", conf);
}

Result<bool> memoryBacked(const std::string& dir) {
    struct statfs fs {};
    if (statfs(dir.c_str(), &fs) != 0)
        return Error(errno == ENOENT ? Errc::NotFound : Errc::Io,
                     "save directory " + dir + ": " + std::strerror(errno));
    constexpr long kTmpfsMagic = 0x01021994;
    constexpr long kRamfsMagic = 0x858458f6;
    return fs.f_type == kTmpfsMagic || fs.f_type == kRamfsMagic;
}

std::string findProgram(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos)
            end = dirs.size();
        std::string candidate = dirs.substr(start, end - start) + "/" + name;
        if (access(candidate.c_str(), X_OK) == 0)
            return candidate;
        start = end + 1;
    }
    return {};
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

// ---- accelerator ----------------------------------------------------------

Accelerator probeAccelerator() {
    if (const char* forced = std::getenv("ISR_VM_ACCEL")) {
        if (std::string_view(forced) == "tcg")
            return Accelerator::Tcg;
        if (std::string_view(forced) == "kvm")
            return Accelerator::Kvm;
    }
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        ISR_LOG_INFO(kLog) << "no usable /dev/kvm (" << std::strerror(errno) << "), using TCG";
        return Accelerator::Tcg;
    }
    ::close(fd);
    std::string qemu = findProgram("qemu-system-x86_64");
    if (qemu.empty())
        return Accelerator::Tcg;
    // Run the firmware under KVM for a moment with no boot device: broken
    // nested setups abort while loading the vCPU (MSR writes) right away,
    // a working KVM keeps running until we stop it.
    std::vector<std::string> args = {qemu,       "-accel",    "kvm",      "-machine", "q35",
                                     "-cpu",     "qemu64",    "-m",       "32",       "-nodefaults",
                                     "-display", "none",      "-monitor", "none",     "-serial",
                                     "none",     "-no-reboot"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, qemu.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        return Accelerator::Tcg;
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + std::chrono::milliseconds(1500);
    int wstatus = 0;
    while (Clock::now() < deadline) {
        pid_t r = waitpid(pid, &wstatus, WNOHANG);
        if (r == pid) {
            ISR_LOG_WARN(kLog) << "/dev/kvm exists but QEMU under KVM exits at once; using TCG";
            return Accelerator::Tcg;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &wstatus, 0);
    return Accelerator::Kvm;
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

std::string embeddedRootFor(const std::string& stateDir) {
    // libvirt puts UNIX sockets deep under its root (e.g.
    // <root>/lib/qemu/channel/target/domain-N-<20 chars>/org.qemu.guest_agent.0,
    // 71 characters past the root), and sun_path holds 107. A state directory
    // deep in a home directory would make QEMU fail to start, so a long one
    // gets its root in a short runtime directory named after it instead. That
    // directory is per state dir, so leftover domains are still found and
    // reaped; only libvirt's capability cache is lost at reboot.
    constexpr std::size_t kMaxRoot = 34;
    std::string inside = stateDir + "/libvirt";
    if (inside.size() <= kMaxRoot)
        return inside;
    std::string hex;
    std::uint64_t h = 1469598103934665603ull; // FNV-1a: stable, no crypto needed here
    for (unsigned char c : stateDir) {
        h ^= c;
        h *= 1099511628211ull;
    }
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i)
        hex += digits[(h >> (60 - 4 * i)) & 0xf];
    std::string base = ::geteuid() == 0 ? "/run" : "/tmp";
    return base + "/isr-lv-" + hex;
}

Result<std::unique_ptr<Hypervisor>> Hypervisor::open(HostConfig config) {
    if (config.stateDir.empty() || config.stateDir[0] != '/')
        return Error(Errc::InvalidArgument, "state directory must be an absolute path");
    config.stateDir = std::filesystem::path(config.stateDir).lexically_normal().string();
    while (config.stateDir.size() > 1 && config.stateDir.back() == '/')
        config.stateDir.pop_back();

    ISR_TRY_STATUS(EventLoop::ensureRunning());

    std::string uri = config.uri;
    bool embedded = uri.empty();
    if (embedded) {
        std::string root = embeddedRootFor(config.stateDir);
        {
            std::lock_guard lock(gRootMutex);
            if (!gEmbeddedRoot.empty() && gEmbeddedRoot != root)
                return Error(Errc::Unsupported, "libvirt's embedded driver is already bound to " +
                                                    gEmbeddedRoot +
                                                    " in this process; one root per process");
            gEmbeddedRoot = root;
        }
        ISR_TRY_STATUS(writeQemuConf(root));
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
    if (embedded) {
        ISR_TRY_ASSIGN(int reaped, hv->reapAll());
        hv->reaped_ = reaped;
        if (reaped > 0) {
            ISR_LOG_WARN(kLog) << "destroyed " << reaped << " VM(s) left over from a previous run";
        }
    }
    return hv;
}

Status Hypervisor::validate(const VmSpec& spec) const {
    return validateSpec(spec, config_);
}

Result<std::string> Hypervisor::domainXml(const VmSpec& spec) const {
    ISR_TRY_STATUS(validate(spec));
    return buildDomainXml(spec, accel_);
}

Result<Vm> Hypervisor::boot(const VmSpec& spec) {
    ISR_TRY_ASSIGN(std::string xml, domainXml(spec));
    for (const std::string* p : {&spec.kernelPath, &spec.initrdPath})
        if (!p->empty() && access(p->c_str(), R_OK) != 0)
            return Error(Errc::NotFound, "boot file " + *p + ": " + std::strerror(errno));
    ISR_TRY_STATUS(refuseRunning(spec.name));
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
    ISR_TRY_STATUS(refuseRunning(spec.name));
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

std::string Hypervisor::domainLogPath(const std::string& name) const {
    // Where the QEMU driver puts a domain's log: <root>/log/qemu under the
    // embedded driver, the system's directory under qemu:///system.
    if (config_.uri.empty())
        return embeddedRootFor(config_.stateDir) + "/log/qemu/" + name + ".log";
    return "/var/log/libvirt/qemu/" + name + ".log";
}

Vm::Vm(std::unique_ptr<Handle> handle, std::string name, bool allowDiskBackedSaveFiles,
       std::string logPath)
    : handle_(std::move(handle)), name_(std::move(name)), logPath_(std::move(logPath)),
      allowDiskBackedSaveFiles_(allowDiskBackedSaveFiles) {}

const char* vmStopReasonName(VmStopReason reason) {
    switch (reason) {
    case VmStopReason::Unknown:
        return "unknown";
    case VmStopReason::GuestShutdown:
        return "guest shutdown";
    case VmStopReason::Crashed:
        return "crashed";
    case VmStopReason::Destroyed:
        return "destroyed";
    case VmStopReason::Saved:
        return "saved";
    case VmStopReason::Other:
        return "other";
    }
    return "other";
}

VmStopReason stopReasonFromLog(std::string_view text) {
    // libvirt (qemuProcessStop) writes "<time>: shutting down, reason=<r>"
    // with r one of virDomainShutoffReason's names; each start writes
    // "<time>: starting up libvirt version: ...".
    constexpr std::string_view kStop = "shutting down, reason=";
    auto stop = text.rfind(kStop);
    if (stop == std::string_view::npos)
        return VmStopReason::Unknown;
    auto start = text.rfind("starting up");
    if (start != std::string_view::npos && start > stop)
        return VmStopReason::Unknown; // the stop was an earlier run's
    auto from = stop + kStop.size();
    auto reason = text.substr(from, text.find_first_of("\r\n", from) - from);
    if (reason == "shutdown")
        return VmStopReason::GuestShutdown;
    if (reason == "crashed" || reason == "failed")
        return VmStopReason::Crashed;
    if (reason == "destroyed")
        return VmStopReason::Destroyed;
    if (reason == "saved")
        return VmStopReason::Saved;
    return VmStopReason::Other;
}

VmStopReason Vm::lastStopReason() const {
    std::ifstream in(logPath_, std::ios::binary);
    if (!in)
        return VmStopReason::Unknown;
    // The tail is enough: QEMU writes little once running.
    in.seekg(0, std::ios::end);
    std::streamoff size = in.tellg();
    std::streamoff from = std::max<std::streamoff>(0, size - (256 << 10));
    in.seekg(from);
    std::string tail(std::size_t(size - from), '\0');
    in.read(tail.data(), std::streamsize(tail.size()));
    tail.resize(std::size_t(in.gcount()));
    return stopReasonFromLog(tail);
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

Status Vm::syncGuestTime() {
    if (virDomainSetTime(handle_->dom.get(), 0, 0, VIR_DOMAIN_TIME_SYNC) < 0) {
        Error err = libvirtError("setting the clock of VM " + name_);
        err.code = Errc::Unsupported;
        return err;
    }
    return {};
}

} // namespace isr::vm
