// This process's libvirt: errors, the event loop, the embedded root. See
// libvirt_host.h; the Hypervisor (vm.cpp) is the only user.
#include "vm/libvirt_host.h"

#include "util/log.h"
#include "vm/vm.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <mutex>
#include <pwd.h>
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

namespace {

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
        // swtpm (a parcel's TPM) runs as this account too; libvirt's default
        // is "tss", which need not exist on a kiosk.
        conf += "swtpm_user = \"root\"\nswtpm_group = \"root\"\n";
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

} // namespace isr::vm
