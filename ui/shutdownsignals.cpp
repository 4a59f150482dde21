#include "shutdownsignals.h"

#include "session/workspace.h"

#include <QMetaObject>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/eventfd.h>
#include <unistd.h>

namespace isr::ui {

namespace {

constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGHUP};

// The process-wide self-pipe. Created once and never closed: a handler may
// run on any thread at any time, also while the object is being destroyed.
int g_pipe[2] = {-1, -1};
std::atomic<int> g_first{0};

extern "C" void onStopSignal(int signo) {
    const int saved = errno;
    const unsigned char byte = static_cast<unsigned char>(signo);
    if (::write(g_pipe[1], &byte, 1) < 0) {
        // The pipe is full (64 KiB of signals): the watchdog has plenty.
    }
    errno = saved;
}

std::string readSmallFile(const std::string& path) {
    std::string text;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        text.append(buf, std::size_t(n));
        if (text.size() > 64 * 1024)
            break;
    }
    ::close(fd);
    return text;
}

} // namespace

ShutdownSignals::ShutdownSignals(QString stateDir, int stopTimeoutSeconds, QObject* parent)
    : QObject(parent), stateDir_(std::move(stateDir)), stopTimeoutSeconds_(stopTimeoutSeconds) {
    if (g_pipe[0] < 0 && ::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        std::fprintf(stderr, "%s: cannot create the signal pipe: %s\n",
                     program_invocation_short_name, std::strerror(errno));
        return;
    }
    wakeFd_ = ::eventfd(0, EFD_CLOEXEC);
    struct sigaction sa {};
    sa.sa_handler = onStopSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int signo : kStopSignals)
        ::sigaction(signo, &sa, nullptr);
    watchdog_ = std::thread([this] { watch(); });
}

ShutdownSignals::~ShutdownSignals() {
    if (watchdog_.joinable()) {
        const std::uint64_t one = 1;
        if (::write(wakeFd_, &one, sizeof one) < 0) {
            // An eventfd write fails only on overflow; the thread is awake.
        }
        watchdog_.join();
    }
    if (wakeFd_ >= 0)
        ::close(wakeFd_);
    // Back to the defaults: a signal from now on ends the process at once
    // (main() re-raises the first one after the teardown anyway).
    for (int signo : kStopSignals)
        ::signal(signo, SIG_DFL);
}

int ShutdownSignals::firstSignal() {
    return g_first.load();
}

int ShutdownSignals::endWithFirstSignal(int rc) {
    if (const int signo = firstSignal(); signo != 0) {
        std::fflush(nullptr);
        std::signal(signo, SIG_DFL);
        std::raise(signo);
    }
    return rc;
}

void ShutdownSignals::watch() {
    using Clock = std::chrono::steady_clock;
    int received = 0;
    Clock::time_point deadline{};
    for (;;) {
        int timeoutMs = -1;
        if (received > 0) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0)
                hardEnd(SIGTERM, "the stop timeout passed before the session was saved");
            timeoutMs = int(left.count()) + 1;
        }
        pollfd fds[2] = {{g_pipe[0], POLLIN, 0}, {wakeFd_, POLLIN, 0}};
        int n = ::poll(fds, 2, timeoutMs);
        if (n < 0 && errno != EINTR)
            return;
        if (fds[1].revents & POLLIN)
            return;
        if (!(fds[0].revents & POLLIN))
            continue;
        unsigned char byte = 0;
        while (::read(g_pipe[0], &byte, 1) == 1) {
            const int signo = byte;
            ++received;
            if (received == 1) {
                g_first = signo;
                deadline = Clock::now() + std::chrono::seconds(stopTimeoutSeconds_);
                std::fprintf(stderr, "%s: %s: stopping (a second signal, or %d s, ends it hard)\n",
                             program_invocation_short_name, strsignal(signo), stopTimeoutSeconds_);
                QMetaObject::invokeMethod(
                    this, [this, signo] { emit stopRequested(signo); }, Qt::QueuedConnection);
            } else {
                hardEnd(signo, "a second stop signal");
            }
        }
    }
}

void ShutdownSignals::hardEnd(int signo, const char* why) {
    const int killed = killQemus(stateDir_);
    // The saved memory image (guest RAM in clear) must not wait in /dev/shm
    // for the next sign-in here: the next start's crash recovery, now. It
    // only unlinks (tmpfs frees the pages once the last fd closes), so the
    // worker still inside a save cannot fault on it before we exit.
    if (!stateDir_.isEmpty())
        session::Workspace::wipeCrashed(stateDir_.toStdString());
    std::fprintf(stderr, "%s: %s: ending at once, %d QEMU process(es) killed, scratch wiped\n",
                 program_invocation_short_name, why, killed);
    std::fflush(stderr);
    ::signal(signo, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    ::kill(::getpid(), signo);
    // Not reached for SIGTERM/SIGINT/SIGHUP (their default ends the process).
    ::_exit(128 + signo);
}

int ShutdownSignals::killQemus(const QString& stateDir) {
    const pid_t self = ::getpid();
    const std::string needle = stateDir.isEmpty() ? std::string() : stateDir.toStdString() + "/";
    int killed = 0;
    DIR* proc = ::opendir("/proc");
    if (!proc)
        return 0;
    while (dirent* entry = ::readdir(proc)) {
        char* end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (pid <= 0 || *end != '\0' || pid == self)
            continue;
        const std::string base = std::string("/proc/") + entry->d_name;
        // stat: "pid (comm) state ppid ..."; comm may hold spaces: parse after ')'.
        const std::string stat = readSmallFile(base + "/stat");
        const auto open = stat.find('(');
        const auto close = stat.rfind(')');
        if (open == std::string::npos || close == std::string::npos || close < open)
            continue;
        const std::string comm = stat.substr(open + 1, close - open - 1);
        if (comm.rfind("qemu-system", 0) != 0)
            continue;
        long ppid = 0;
        if (std::sscanf(stat.c_str() + close + 1, " %*c %ld", &ppid) != 1)
            continue;
        bool ours = ppid == self;
        if (!ours && !needle.empty()) {
            const std::string cmdline = readSmallFile(base + "/cmdline");
            ours = cmdline.find(needle) != std::string::npos;
        }
        if (ours && ::kill(pid_t(pid), SIGKILL) == 0)
            ++killed;
    }
    ::closedir(proc);
    return killed;
}

} // namespace isr::ui
