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

// A QProcess started in its own process group; the destructor SIGKILLs the
// group if the leader is still running.
class GroupProcess : public QProcess {
public:
    GroupProcess();
    ~GroupProcess() override;
    // SIGKILL to every process of the group, then waits for the leader.
    void killGroup();
    // `ps` of the group, one process a line.
    std::string describeGroup() const;

private:
    qint64 group_ = 0;
};

struct ResumeRequest {
    QString isrctl;
    QStringList args;         // after "session resume"; --password-stdin etc. included
    QByteArray password;      // written to stdin with a newline, then stdin closed
    QString kioskDir;         // where status.json says which stage the session is in
    std::chrono::seconds bound{600};
};

// Starts the session and waits until status.json says "running" with a
// serial socket. nullptr (with the reason and the group's processes on
// stderr, the group killed) when the child exits first or `bound` passes.
std::unique_ptr<GroupProcess> resumeSession(const ResumeRequest& request);

} // namespace isr::test
