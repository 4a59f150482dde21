#include "session_process.h"

#include "util/json.h"
#include "vm/vm.h"

#include <QElapsedTimer>
#include <QFile>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <sstream>
#include <sys/types.h>
#include <unistd.h>
#include <vector>

namespace isr::test {

namespace {

struct ProcInfo {
    pid_t pid = 0;
    pid_t pgid = 0;
    std::string args;
};

// Every process's pid, process group and command line, from /proc.
std::vector<ProcInfo> processes() {
    std::vector<ProcInfo> out;
    DIR* d = ::opendir("/proc");
    if (!d)
        return out;
    while (dirent* e = ::readdir(d)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (pid <= 0 || *end)
            continue;
        ProcInfo info;
        info.pid = static_cast<pid_t>(pid);
        std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
        std::string line((std::istreambuf_iterator<char>(stat)), {});
        // pid (comm) state ppid pgrp ...: comm may hold spaces; read after ')'.
        auto close = line.rfind(')');
        if (close == std::string::npos)
            continue;
        std::istringstream rest(line.substr(close + 1));
        std::string state;
        long ppid = 0, pgrp = 0;
        rest >> state >> ppid >> pgrp;
        info.pgid = static_cast<pid_t>(pgrp);
        std::ifstream cmd("/proc/" + std::string(e->d_name) + "/cmdline");
        info.args.assign((std::istreambuf_iterator<char>(cmd)), {});
        for (char& c : info.args)
            if (c == '\0')
                c = ' ';
        out.push_back(std::move(info));
    }
    ::closedir(d);
    return out;
}

// The session's libvirt root: what QEMU's command line names.
std::string libvirtRootOf(const QString& stateDir) {
    if (stateDir.isEmpty())
        return {};
    auto root = vm::embeddedRootFor(stateDir.toStdString());
    return root.ok() ? *root : std::string();
}

bool isQemuUnder(const ProcInfo& p, const std::string& root) {
    return !root.empty() && p.args.find("qemu-system") != std::string::npos &&
           p.args.find(root + "/") != std::string::npos;
}

} // namespace

GroupProcess::GroupProcess(QString stateDir) : stateDir_(std::move(stateDir)) {
    setProcessChannelMode(QProcess::ForwardedChannels);
    // Runs in the child between fork and exec: a group of its own, whose id
    // is the child's pid.
    setChildProcessModifier([] { ::setpgid(0, 0); });
    connect(this, &QProcess::started, this, [this] { group_ = processId(); });
}

GroupProcess::~GroupProcess() {
    if (group_ > 0)
        stop();
}

void GroupProcess::stop() {
    if (group_ <= 0)
        return;
    // A leader that ended by itself with nothing left in its group has
    // cleaned up after itself; a later session may already run in the same
    // state dir (`p = resume();`), whose QEMU must be left alone.
    bool running = state() != QProcess::NotRunning;
    if (!running && ::kill(static_cast<pid_t>(-group_), 0) != 0) {
        group_ = 0;
        return;
    }
    if (running) {
        ::kill(static_cast<pid_t>(group_), SIGTERM);
        waitForFinished(30000);
    }
    ::kill(static_cast<pid_t>(-group_), SIGKILL);
    waitForFinished(10000);
    std::string root = libvirtRootOf(stateDir_);
    for (const auto& p : processes())
        if (isQemuUnder(p, root))
            ::kill(p.pid, SIGKILL);
    group_ = 0;
}

std::string GroupProcess::describeGroup() const {
    std::string root = libvirtRootOf(stateDir_);
    std::string out;
    for (const auto& p : processes()) {
        if ((group_ > 0 && p.pgid == group_) || isQemuUnder(p, root)) {
            std::ifstream wchan("/proc/" + std::to_string(p.pid) + "/wchan");
            std::string w((std::istreambuf_iterator<char>(wchan)), {});
            out += "  " + std::to_string(p.pid) + " [" + (w.empty() ? "-" : w) + "] " +
                   p.args.substr(0, 300) + "\n";
        }
    }
    return out.empty() ? "  (none)\n" : out;
}

namespace {

std::string stageOf(const QString& kioskDir, std::string* serial) {
    QFile f(kioskDir + "/status.json");
    if (!f.open(QIODevice::ReadOnly))
        return {};
    auto v = json::parse(f.readAll().toStdString());
    if (!v.ok() || !v->isObject())
        return {};
    if (serial)
        *serial = v->getString("serial_socket").valueOr("");
    return v->getString("stage").valueOr("");
}

} // namespace

std::unique_ptr<GroupProcess> resumeSession(const ResumeRequest& request) {
    auto proc = std::make_unique<GroupProcess>(request.kioskDir);
    proc->start(request.isrctl, QStringList{"session", "resume"} + request.args);
    if (!proc->waitForStarted(30000)) {
        std::fprintf(stderr, "resumeSession: %s did not start\n", qPrintable(request.isrctl));
        return nullptr;
    }
    proc->write(request.password + "\n");
    proc->waitForBytesWritten(30000);
    proc->closeWriteChannel();
    QElapsedTimer t;
    t.start();
    std::string stage;
    while (t.elapsed() < std::chrono::milliseconds(request.bound).count()) {
        std::string serial;
        stage = stageOf(request.kioskDir, &serial);
        if (stage == "running" && !serial.empty())
            return proc;
        // Also lets QProcess notice that the session exited early.
        if (proc->waitForFinished(200)) {
            std::fprintf(stderr, "resumeSession: the session exited (code %d) in stage '%s'\n",
                         proc->exitCode(), stage.c_str());
            proc->stop();
            return nullptr;
        }
    }
    std::fprintf(stderr, "resumeSession: not running after %lld s (stage '%s'); its processes:\n%s",
                 static_cast<long long>(request.bound.count()), stage.c_str(),
                 proc->describeGroup().c_str());
    proc->stop();
    return nullptr;
}

} // namespace isr::test
