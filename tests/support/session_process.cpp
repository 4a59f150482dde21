#include "session_process.h"

#include "util/json.h"

#include <QElapsedTimer>
#include <QFile>
#include <csignal>
#include <cstdio>
#include <sys/types.h>
#include <unistd.h>

namespace isr::test {

GroupProcess::GroupProcess() {
    setProcessChannelMode(QProcess::ForwardedChannels);
    // Runs in the child between fork and exec: a group of its own, whose id
    // is the child's pid.
    setChildProcessModifier([] { ::setpgid(0, 0); });
    connect(this, &QProcess::started, this, [this] { group_ = processId(); });
}

GroupProcess::~GroupProcess() {
    if (state() != QProcess::NotRunning)
        killGroup();
    else if (group_ > 0)
        ::kill(static_cast<pid_t>(-group_), SIGKILL); // leftovers of an exited leader
}

void GroupProcess::killGroup() {
    if (group_ > 0)
        ::kill(static_cast<pid_t>(-group_), SIGKILL);
    waitForFinished(30000);
}

std::string GroupProcess::describeGroup() const {
    if (group_ <= 0)
        return "(not started)\n";
    QProcess ps;
    ps.start("ps", {"-o", "pid,ppid,stat,wchan:24,etime,args", "-g", QString::number(group_)});
    if (!ps.waitForFinished(10000))
        return "(ps did not answer)\n";
    return ps.readAllStandardOutput().toStdString();
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
    auto proc = std::make_unique<GroupProcess>();
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
            return nullptr;
        }
    }
    std::fprintf(stderr,
                 "resumeSession: not running after %lld s (stage '%s'); its processes:\n%s",
                 static_cast<long long>(request.bound.count()), stage.c_str(),
                 proc->describeGroup().c_str());
    proc->killGroup();
    return nullptr;
}

} // namespace isr::test
