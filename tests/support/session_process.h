#pragma once
// `isrctl session resume` as a child of an end-to-end test.
//
// The child runs in a process group of its own, and destroying the object
// kills the whole group: a session stuck in a child of isrctl (libvirt forks
// before it execs QEMU) must not outlive the test and hold CTest's output
// pipe open; in the CI run of 2026-12-02 one such stuck child made a failed
// test wait for CTest's 30-minute timeout. When the session does not reach
// Running, the group's processes are printed (pid, state, wait channel,
// command line) so a log tells a stuck fork from a slow restore.

#include <QProcess>
#include <QString>
#include <QStringList>
#include <chrono>
#include <memory>

namespace isr::test {

// A QProcess started in its own process group. Stopping it (the destructor,
// when the leader still runs) sends SIGTERM first (isrctl then suspends or
// cancels and destroys its VM), SIGKILL to the whole group after 30 s, and
// then kills what libvirt daemonized out of the group: QEMU processes whose
// command line names the session's libvirt root (`stateDir`'s). A leader
// that exited by itself with an empty group is left alone: it cleaned up,
// and a later session may already run in the same state dir.
class GroupProcess : public QProcess {
public:
    explicit GroupProcess(QString stateDir = {});
    ~GroupProcess() override;
    void stop();
    // `ps` of the group and of the QEMUs under the session's libvirt root.
    std::string describeGroup() const;

private:
    QString stateDir_;
    qint64 group_ = 0;
};

struct ResumeRequest {
    QString isrctl;
    QStringList args;    // after "session resume"; --password-stdin etc. included
    QByteArray password; // written to stdin with a newline, then stdin closed
    QString kioskDir;    // the state dir: status.json, and the libvirt root its QEMUs name
    std::chrono::seconds bound{600};
};

// Starts the session and waits until status.json says "running" with a
// serial socket. nullptr (with the reason and the group's processes on
// stderr, the group killed) when the child exits first or `bound` passes.
std::unique_ptr<GroupProcess> resumeSession(const ResumeRequest& request);

} // namespace isr::test
