// This process's libvirt: errors, the event loop, the embedded root. See
// libvirt_host.h; the Hypervisor (vm.cpp) is the only user.
#include "vm/libvirt_host.h"

#include "util/hardening.h"
#include "util/log.h"
#include "vm/vm.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <mutex>
#include <poll.h>
#include <pwd.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

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

} // namespace

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

// ---- libvirt's log --------------------------------------------------------

// A line of libvirt's file output: "<date> <time>: <pid>: <level> : <text>",
// where an error's text starts "<function>:<line> : ". A message with
// newlines continues on lines without that header.
std::optional<std::string> LibvirtLogFilter::feed(std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
        line.remove_suffix(1);
    auto levelAt = line.find(": warning : ");
    std::size_t skip = 12;
    if (levelAt == std::string_view::npos) {
        levelAt = line.find(": error : ");
        skip = 10;
    }
    const bool header = levelAt != std::string_view::npos ||
                        line.find(": info : ") != std::string_view::npos ||
                        line.find(": debug : ") != std::string_view::npos;
    if (!header) {
        // A continuation: kept with its message, blank lines dropped.
        if (!keeping_ || line.empty())
            return std::nullopt;
        return std::string(line);
    }
    keeping_ = false;
    if (levelAt == std::string_view::npos)
        return std::nullopt; // info and debug: the version banner and the like
    std::string_view text = line.substr(levelAt + skip);
    // Errors libvirt logs that are no errors for us, each deliberate:
    // - lookups of a domain that is not (yet) defined: how we ask;
    // - the embedded driver has no access manager (none is needed in-process);
    // - host probes: dmidecode without /dev/mem (containers, no SMBIOS to
    //   give the guest anyway), /dev/kvm absent or unusable (we probe KVM
    //   ourselves and fall back to TCG, and say so);
    // - the taints of lazy memory (vm.cpp): QMP passthrough (custom-monitor)
    //   and -incoming defer (custom-argv), one warning per save and restore,
    //   and of the capability override that shortens every start
    //   (QemuPassthrough::quickCpuReadback: custom-hypervisor-feature);
    //   nobody but this process talks to the embedded driver. Other taints
    //   stay.
    // - an agent that is not connected: how we ask whether the guest runs
    //   one yet (Vm::guestAgentAnswers, every 2 s of a first boot and
    //   after a restore); the answer is the call's result.
    static constexpr std::string_view kNoise[] = {
        "Domain not found",
        "No access manager registered",
        "dmidecode",
        "Unable to open /dev/kvm",
        "is tainted: custom-monitor",
        "is tainted: custom-argv",
        "is tainted: custom-hypervisor-feature",
        "QEMU guest agent is not connected",
    };
    for (auto noise : kNoise)
        if (text.find(noise) != std::string_view::npos)
            return std::nullopt;
    keeping_ = true;
    return std::string(text);
}

namespace {

// ---- the event loop -------------------------------------------------------

// libvirt's own log (the embedded driver runs in this process) goes to
// stderr by default: an "info : libvirt version" banner, and errors that are
// no errors here ("Domain not found" from our lookups, dmidecode without
// /dev/mem, no /dev/kvm), on the kiosk's and isrctl's output at every resume
// (issue #18). It is routed instead into a pipe that a thread of the event
// loop reads; LibvirtLogFilter keeps the lines that matter and they go to
// our log, category "libvirt": journald under systemd (with the kiosk's own
// lines), else stderr. An operator's own LIBVIRT_LOG_OUTPUTS wins (e.g.
// LIBVIRT_LOG_OUTPUTS=1:stderr for everything). Returns the pipe's read end,
// or -1 when not routed.
int routeLibvirtLog() {
    if (std::getenv("LIBVIRT_LOG_OUTPUTS"))
        return -1;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    // libvirt opens its file output itself (O_APPEND); /proc/<pid>/fd/N
    // opens the same pipe, also from a child libvirt forks (which reopens
    // its outputs) while it is still root. Warnings and errors only (3).
    // The variable is unset again once virInitialize has read it
    // (in EventLoop's constructor): children (QEMU, another isr process) must not
    // inherit a path to our pipe.
    std::string outputs =
        "3:file:/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fds[1]);
    ::setenv("LIBVIRT_LOG_OUTPUTS", outputs.c_str(), 1);
    // Our write end stays open for the life of the process (libvirt's own
    // fd is a separate open of it; closing ours changes nothing).
    return fds[0];
}

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
        if (logThread_.joinable()) {
            stop_ = true;
            (void)!::write(logStop_[1], "x", 1);
            logThread_.join();
        }
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
        int logFd = routeLibvirtLog();
        if (logFd >= 0 && !startLogReader(logFd)) {
            // Nobody would read the pipe, and libvirt's writes would block
            // once it filled: libvirt keeps its default output instead.
            ::unsetenv("LIBVIRT_LOG_OUTPUTS");
            ::close(logFd);
            logFd = -1;
        }
        virSetErrorFunc(nullptr, silentErrorHandler);
        const bool initialized = virInitialize() >= 0;
        if (logFd >= 0)
            ::unsetenv("LIBVIRT_LOG_OUTPUTS");
        if (!initialized || virEventRegisterDefaultImpl() < 0) {
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
    // Reads libvirt's log lines from the pipe until the destructor says stop.
    // False if the thread could not be set up.
    bool startLogReader(int fd) {
        if (::pipe2(logStop_, O_CLOEXEC) != 0)
            return false;
        logThread_ = std::thread([this, fd] {
            LibvirtLogFilter filter;
            std::string pending;
            char buf[4096];
            while (!stop_) {
                pollfd p[2] = {{fd, POLLIN, 0}, {logStop_[0], POLLIN, 0}};
                if (::poll(p, 2, -1) < 0) {
                    if (errno == EINTR)
                        continue;
                    break;
                }
                if (p[1].revents)
                    break;
                ssize_t n = ::read(fd, buf, sizeof buf);
                if (n <= 0) {
                    if (n < 0 && errno == EINTR)
                        continue;
                    break;
                }
                pending.append(buf, std::size_t(n));
                std::size_t start = 0;
                for (auto nl = pending.find('\n'); nl != std::string::npos;
                     nl = pending.find('\n', start)) {
                    auto kept = filter.feed(std::string_view(pending).substr(start, nl - start));
                    if (kept) {
                        ISR_LOG_WARN("libvirt") << *kept;
                    }
                    start = nl + 1;
                }
                pending.erase(0, start);
            }
            ::close(fd);
        });
        return true;
    }

    Status status_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::thread logThread_;
    int logStop_[2] = {-1, -1};
};

// The embedded driver binds a process to one root for its lifetime.
std::mutex gRootMutex;
std::string gEmbeddedRoot;

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

} // namespace

// The embedded driver reads <root>/etc/qemu.conf. stdio_handler=file: there
// is no virtlogd, QEMU's stdout/stderr go to <root>/log/qemu/<name>.log.
// remember_owner=0: no xattrs on the files libvirt relabels.
//
// As root, QEMU never runs as root (issue #16 item 3): user/group are the
// dedicated account isr-qemu (confinement.h). Why one account in qemu.conf
// rather than a per-domain <seclabel> with a fresh uid per session: swtpm's
// account can only be set here (swtpm_user), one kiosk runs one VM at a
// time, and a uid without a passwd entry would need its own group handling
// for every file QEMU opens. What it does not give: a process an escaped
// QEMU leaves behind keeps the uid of the next session's QEMU (README,
// security model).
// - dynamic_ownership = 1 (libvirt's default, written down): libvirt hands
//   the files it creates for the domain (chardev and swtpm sockets, the
//   UEFI NVRAM copy) to QEMU's uid. The demo guest's domain turns it off
//   with its own <seclabel relabel='no'> (domainxml.cpp): libvirt would
//   otherwise chown the shared, root-owned kernel and initrd to QEMU for
//   the VM's life, i.e. make them writable by it.
// - seccomp_sandbox = 1 (root or not; libvirt's default -1 already means
//   "when QEMU has it", written down so it cannot be lost): QEMU's
//   -sandbox on with obsolete, elevateprivileges, spawn and resourcecontrol
//   denied; measured: Seccomp 2, NoNewPrivs 1 in QEMU's /proc status, as
//   root and as an unprivileged user.
// - clear_emulator_capabilities = 1 (default): CapEff 0.
// - namespaces stay libvirt's default (["mount"]: QEMU gets a private /dev).
// - security_driver stays libvirt's default: "none" here (no AppArmor or
//   SELinux active), AppArmor's libvirt-<uuid> profiles on a host that has
//   AppArmor and libvirt's profiles installed.
// - swtpm_user = tss when it exists (it owns Debian's swtpm local CA, which
//   swtpm_setup needs to manufacture a TPM), else isr-qemu;
//   swtpm_group = isr-qemu, so swtpm may pass through the root, which only
//   that group may enter.
Status writeQemuConf(const std::string& root, const std::optional<QemuAccount>& account) {
    std::error_code ec;
    std::filesystem::create_directories(root + "/etc", ec);
    if (ec)
        return Error(Errc::Io, "creating " + root + "/etc: " + ec.message());
    std::string conf = "# Written by isr core/vm at every start; edits are lost.\n"
                       "stdio_handler = \"file\"\n"
                       "remember_owner = 0\n"
                       "seccomp_sandbox = 1\n";
    if (geteuid() == 0) {
        // A privileged driver looks up its built-in default account before
        // it reads this file; without it the driver does not start.
        if (!getpwnam("libvirt-qemu"))
            return Error(Errc::Unsupported,
                         "libvirt's QEMU driver running as root needs the 'libvirt-qemu' account "
                         "(run packaging/install-deps.sh)");
        if (!account)
            return Error(Errc::Internal, "no QEMU account for a root libvirt");
        const std::string qemu = kQemuAccountName;
        conf += "user = \"" + qemu + "\"\ngroup = \"" + qemu + "\"\n";
        conf += "swtpm_user = \"" + account->swtpmUser + "\"\nswtpm_group = \"" + qemu + "\"\n";
        conf += "dynamic_ownership = 1\n"
                "clear_emulator_capabilities = 1\n";
    }
    return writeFileAtomically(root + "/etc/qemu.conf", conf);
}

Status ensureEventLoop() {
    return EventLoop::ensureRunning();
}

Status bindEmbeddedRoot(const std::string& root) {
    std::lock_guard lock(gRootMutex);
    if (!gEmbeddedRoot.empty() && gEmbeddedRoot != root)
        return Error(Errc::Unsupported, "libvirt's embedded driver is already bound to " +
                                            gEmbeddedRoot +
                                            " in this process; one root per process");
    gEmbeddedRoot = root;
    return {};
}

// Declared in vm.h: callers outside core/vm need it to find the root.
Result<std::string> embeddedRootFor(const std::string& stateDir) {
    // libvirt puts UNIX sockets deep under its root (e.g.
    // <root>/lib/qemu/channel/target/domain-N-<20 chars>/org.qemu.guest_agent.0),
    // and sun_path holds 107. N is the domain id, which counts up for the
    // life of the process: a VM host that has run 10 VMs has two digits, and
    // a budget that allowed one made the 10th VM of a 34-character root fail
    // to start ("UNIX socket path ... too long", found by
    // test_e2e_lazy_memory). So the budget is for 6 digits of N (a million
    // VM starts in one process) and libvirt's 20-character name: 82
    // characters past the root, 25 for the root (/run/isr/<16 hex digits>
    // is 25). A longer one gets its root in a short private runtime
    // directory instead. That directory is per state dir, so leftover
    // domains are still found and reaped; only libvirt's capability cache
    // is lost at reboot.
    //
    // libvirt trusts what is in its root (its sockets, QEMU's pid files, the
    // qemu.conf we write), so a root someone else made first -- a
    // predictable /tmp name, once -- would hand them the VM: every directory
    // on the way is checked to be ours and writable by nobody else.
    constexpr std::size_t kPastRoot = std::string_view("/lib/qemu/channel/target/domain-").size() +
                                      6 + 1 + 20 + 1 +
                                      std::string_view("org.qemu.guest_agent.0").size();
    constexpr std::size_t kMaxRoot = 107 - kPastRoot;
    static_assert(kMaxRoot >= std::string_view("/var/lib/isr/libvirt").size(),
                  "the packaged kiosk's root must stay in its state directory");
    std::string inside = stateDir + "/libvirt";
    if (inside.size() <= kMaxRoot) {
        std::error_code ec;
        std::filesystem::create_directories(stateDir, ec);
        ISR_TRY_STATUS(hardening::ensurePrivateDirectory(inside));
        return inside;
    }
    std::string hex;
    std::uint64_t h = 1469598103934665603ull; // FNV-1a: stable, no crypto needed here
    for (unsigned char c : stateDir) {
        h ^= c;
        h *= 1099511628211ull;
    }
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i)
        hex += digits[(h >> (60 - 4 * i)) & 0xf];

    if (::geteuid() == 0) {
        // /run is root's own tmpfs: /run/isr/<hash>, both private.
        ISR_TRY_STATUS(hardening::ensurePrivateDirectory("/run/isr"));
        const std::string root = "/run/isr/" + hex;
        ISR_TRY_STATUS(hardening::ensurePrivateDirectory(root));
        return root;
    }
    // A user's runtime directory, if the session manager made it properly.
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && xdg[0] == '/') {
        const std::string base = xdg;
        const std::string root = base + "/isr-" + hex.substr(0, 12);
        if (hardening::checkPrivateDirectory(base).ok() && root.size() <= kMaxRoot) {
            ISR_TRY_STATUS(hardening::ensurePrivateDirectory(root));
            return root;
        }
    }
    // Else an unpredictable mkdtemp'd directory under /tmp, its name kept in
    // the state directory so that the next start finds the same root.
    const std::string record = stateDir + "/libvirt-root";
    {
        std::ifstream in(record);
        std::string recorded;
        if (in && std::getline(in, recorded) && !recorded.empty()) {
            struct stat st {};
            if (::lstat(recorded.c_str(), &st) == 0) {
                ISR_TRY_STATUS(hardening::checkPrivateDirectory(recorded));
                return recorded;
            }
            // Gone (a reboot cleaned /tmp): make a new one.
        }
    }
    std::error_code ec;
    std::filesystem::create_directories(stateDir, ec);
    ISR_TRY_ASSIGN(std::string root, hardening::makePrivateTempDirectory("/tmp", "isr-lv-"));
    ISR_TRY_STATUS(writeFileAtomically(record, root + "\n"));
    return root;
}

} // namespace isr::vm
