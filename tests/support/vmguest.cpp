#include "vmguest.h"

#include "parcel/parcel.h"
#include "store/store.h"
#include "testsupport.h"

#include <QStringList>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <string_view>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace isr::test {

pid_t qemuPidOf(const std::string& stateDir, const std::string& name) {
    auto root = vm::embeddedRootFor(stateDir);
    if (!root.ok())
        return -1;
    std::ifstream in(*root + "/run/qemu/" + name + ".pid");
    long pid = -1;
    in >> pid;
    return pid_t(pid);
}

vm::VmSpec demoGuestSpec(const GuestImage& guest, const std::string& name, const std::string& dir) {
    vm::VmSpec spec;
    spec.name = name;
    spec.uuid = vm::newUuid();
    spec.memoryMiB = 256;
    spec.kernelPath = guest.kernel;
    spec.initrdPath = guest.initrd;
    spec.diskSocketPath = dir + "/disk.sock";
    spec.serialSocketPath = dir + "/serial.sock";
    return spec;
}
namespace {

using Clock = std::chrono::steady_clock;

std::string guestCacheDir() {
    if (const char* d = std::getenv("ISR_GUEST_DIR"); d && *d)
        return d;
    // As root, QEMU runs as isr-qemu, which cannot enter root's home.
    if (::geteuid() == 0)
        return std::string(ISR_BINARY_DIR) + "/guest";
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
        return std::string(x) + "/isr/guest";
    if (const char* h = std::getenv("HOME"); h && *h)
        return std::string(h) + "/.cache/isr/guest";
    return std::string(ISR_BINARY_DIR) + "/guest";
}

int connectUnix(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        ::close(fd);
        errno = ENAMETOOLONG;
        return -1;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        int saved = errno;
        ::close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

} // namespace

GuestImage requireGuest() {
    bool haveKernel = false;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator("/boot", ec))
        if (e.path().filename().string().rfind("vmlinuz-", 0) == 0)
            haveKernel = true;
    if (!haveKernel)
        skipAll("no kernel in /boot (install linux-image-amd64)");
    if (access("/bin/busybox", X_OK) != 0)
        skipAll("no /bin/busybox (install busybox-static)");
    requirePrograms({"cpio", "gzip"});
    if (!haveProgram("mke2fs") && access("/sbin/mke2fs", X_OK) != 0)
        skipAll("mke2fs not installed (install e2fsprogs)");

    GuestImage g;
    g.dir = guestCacheDir();
    std::string script = std::string(ISR_SOURCE_DIR) + "/resources/guest/build-guest.sh";
    auto r = runProcess("/bin/sh", {QString::fromStdString(script), QString::fromStdString(g.dir)},
                        {}, 300000);
    if (r.exitCode != 0)
        throw std::runtime_error("build-guest.sh failed: " + r.out + r.err);
    g.kernel = g.dir + "/vmlinuz";
    g.initrd = g.dir + "/initrd.img";
    g.homeImage = g.dir + "/home.ext4";
    return g;
}

// ---- NbdServer --------------------------------------------------------------

Result<std::unique_ptr<NbdServer>> NbdServer::start(const std::string& image,
                                                    const std::string& socketPath) {
    std::unique_ptr<NbdServer> server(new NbdServer);
    server->socket_ = socketPath;
    ::unlink(socketPath.c_str());
    // --persistent and --shared: serve more than one connection in turn (a
    // restored QEMU connects anew); --discard=unmap passes the guest's TRIM
    // through. stop() before copying the image.
    std::vector<std::string> args = {"qemu-nbd",   "--format=raw",    "--persistent",
                                     "--shared=4", "--discard=unmap", "--cache=writeback",
                                     "--socket",   socketPath,        image};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    if (int rc = posix_spawnp(&pid, "qemu-nbd", nullptr, nullptr, argv.data(), environ); rc != 0)
        return Error(Errc::Io, std::string("spawning qemu-nbd: ") + std::strerror(rc));
    server->pid_ = pid;
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
        int fd = connectUnix(socketPath);
        if (fd >= 0) {
            ::close(fd);
            return server;
        }
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            server->pid_ = -1;
            return Error(Errc::Io, "qemu-nbd exited at start");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return Error(Errc::Transient, "qemu-nbd did not listen on " + socketPath);
}

void NbdServer::stop() {
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    ::unlink(socket_.c_str());
}

NbdServer::~NbdServer() {
    stop();
}

// ---- SerialConsole ----------------------------------------------------------

Result<std::unique_ptr<SerialConsole>> SerialConsole::connect(const std::string& socketPath,
                                                              std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        int fd = connectUnix(socketPath);
        if (fd >= 0)
            return std::unique_ptr<SerialConsole>(new SerialConsole(fd));
        if (Clock::now() >= deadline)
            return Error(Errc::Io, "connecting to serial console " + socketPath + ": " +
                                       std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

SerialConsole::~SerialConsole() {
    if (fd_ >= 0)
        ::close(fd_);
}

Status SerialConsole::sendAll(const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return Error(Errc::Io,
                         std::string("writing to serial console: ") + std::strerror(errno));
        }
        done += std::size_t(n);
    }
    return {};
}

Result<SerialConsole::Output> SerialConsole::run(const std::string& command,
                                                 std::chrono::milliseconds timeout) {
    unsigned id = next_++;
    std::string tag = std::to_string(id);
    // The typed line shows '<<B7''>>' (quotes included); only the shell's
    // output has "<<B7>>". Likewise "<<E7 <status> >>".
    std::string begin = "<<B" + tag + ">>";
    std::string endPrefix = "<<E" + tag + " ";
    // One line: while a command runs the tty echoes typed input at once, so a
    // second line could land in the middle of the output.
    std::string line =
        "echo '<<B" + tag + "''>>'; " + command + "; echo '<<E" + tag + "' $? '>>'\n";
    buffer_.clear();
    ISR_TRY_STATUS(sendAll(line));

    auto deadline = Clock::now() + timeout;
    for (;;) {
        auto b = buffer_.find(begin);
        if (b != std::string::npos) {
            auto e = buffer_.find(endPrefix, b);
            if (e != std::string::npos) {
                auto close = buffer_.find(">>", e + endPrefix.size());
                if (close != std::string::npos) {
                    Output out;
                    out.exitStatus = std::atoi(buffer_.c_str() + e + endPrefix.size());
                    std::string text = buffer_.substr(b + begin.size(), e - b - begin.size());
                    std::string clean;
                    for (char c : text)
                        if (c != '\r')
                            clean += c;
                    if (!clean.empty() && clean.front() == '\n')
                        clean.erase(0, 1);
                    out.text = clean;
                    return out;
                }
            }
        }
        if (Clock::now() >= deadline)
            return Error(Errc::Transient, "no answer from the guest to: " + command);
        ISR_TRY_STATUS(receiveSome(deadline));
    }
}

Status SerialConsole::receiveSome(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, int(std::clamp<std::int64_t>(left.count(), 0, 200)));
    if (pr < 0 && errno != EINTR)
        return Error(Errc::Io, std::string("poll: ") + std::strerror(errno));
    if (pr > 0) {
        char buf[4096];
        ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n == 0)
            return Error(Errc::Io, "serial console closed");
        if (n > 0)
            received(buf, std::size_t(n));
    }
    return {};
}

void SerialConsole::received(const char* data, std::size_t n) {
    buffer_.append(data, n);
    tail_.append(data, n);
    constexpr std::size_t kKeep = 3000;
    if (tail_.size() > 2 * kKeep)
        tail_.erase(0, tail_.size() - kKeep);
}

std::string SerialConsole::recentOutput() const {
    constexpr std::size_t kShow = 1500;
    std::string_view last(tail_);
    if (last.size() > kShow)
        last.remove_prefix(last.size() - kShow);
    std::string out;
    for (char c : last) {
        if (c == '\n' || (c >= 0x20 && c < 0x7f))
            out += c;
        else if (c != '\r')
            out += '.';
    }
    return out.empty() ? "(nothing)" : out;
}

Status SerialConsole::waitForShell(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        auto r = run("cat /run/ready", std::chrono::milliseconds(1500));
        if (r.ok() && r->exitStatus == 0)
            return {};
        if (!r.ok() && r.error().code == Errc::Io)
            return r.error();
        if (Clock::now() >= deadline)
            // What the guest printed last tells a hung boot (a panic, an
            // init stuck on its disk) from a slow one.
            return Error(Errc::Transient,
                         "guest shell did not answer on the serial console; it printed last:\n" +
                             recentOutput());
    }
}

Status SerialConsole::waitForText(const std::string& marker, std::chrono::milliseconds timeout,
                                  const std::function<bool()>& elsewhere) {
    buffer_.clear();
    auto deadline = Clock::now() + timeout;
    for (;;) {
        if (buffer_.find(marker) != std::string::npos || (elsewhere && elsewhere())) {
            buffer_.clear();
            return {};
        }
        // Keep what a marker split across reads needs, not a whole boot log.
        if (buffer_.size() > 2 * marker.size() + 8192)
            buffer_.erase(0, buffer_.size() - marker.size());
        if (Clock::now() >= deadline)
            return Error(Errc::Transient, "the guest never printed \"" + marker +
                                              "\" on the serial console; it printed last:\n" +
                                              recentOutput());
        ISR_TRY_STATUS(receiveSome(deadline));
    }
}

bool SerialConsole::closedByPeer(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) > 0) {
            char buf[4096];
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                return true;
        }
    }
    return false;
}

Status createGuestParcel(const std::string& storeDir, const GuestImage& guest,
                         const std::string& user, const std::string& password,
                         const std::string& parcel, std::uint32_t memoryMiB) {
    std::error_code ec;
    std::filesystem::create_directories(storeDir, ec);
    if (ec)
        return Error(Errc::Io, "cannot create " + storeDir + ": " + ec.message());
    ISR_TRY_ASSIGN(auto store, store::openStore("file://" + storeDir));
    return createGuestParcel(*store, guest, user, password, parcel, memoryMiB);
}

Status createGuestParcel(store::Store& store, const GuestImage& guest, const std::string& user,
                         const std::string& password, const std::string& parcel,
                         std::uint32_t memoryMiB) {
    ISR_TRY_STATUS(parcel::initStore(store, crypto::KdfParams::minimal()));
    ISR_TRY_STATUS(parcel::createAccount(store, user, password));
    ISR_TRY_ASSIGN(auto secrets, parcel::signIn(store, user, password));
    parcel::Parcels parcels(store, std::move(secrets));
    parcel::ImportOptions opts;
    opts.vm.boot = "demo-guest";
    opts.vm.memoryMiB = memoryMiB;
    ISR_TRY_STATUS(parcel::importImage(parcels, parcel, guest.homeImage, opts));
    return {};
}

GuestCounter readCounter(SerialConsole& console, std::chrono::milliseconds timeout) {
    GuestCounter g;
    auto out = console.run("cat /run/counter", timeout);
    if (out.ok()) {
        std::istringstream in(out->text);
        in >> g.counter >> g.bootId;
    }
    return g;
}

} // namespace isr::test
