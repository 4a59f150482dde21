#pragma once
// ShutdownSignals: SIGTERM, SIGINT and SIGHUP as "this kiosk is going away".
//
// The signal handler only write()s the signal number into a pipe (the
// self-pipe trick: write() is async-signal-safe, nothing else is done in the
// handler). A watchdog thread of our own reads the pipe, so the last resort
// below works even while the GUI thread is blocked (e.g. joining the session
// worker at exit):
//   - the first signal is posted to the GUI thread as stopRequested(signo)
//     and arms the stop deadline (stopTimeoutSeconds);
//   - a second signal, or the deadline, ends the process hard at once from
//     the watchdog thread: every QEMU of this kiosk is killed (SIGKILL; the
//     processes started under the kiosk's state directory, or children of
//     this process), the sessions' memory-backed scratch is wiped (the
//     crash recovery of session::Workspace, run now rather than at the next
//     sign-in) and the process dies of the signal (SIGTERM for the
//     deadline). Nothing is saved then; what the fault matrix guarantees
//     holds (the last committed version stands, the next sign-in takes the
//     lock over).
// signalfd is not used on purpose: it needs the signals blocked in every
// thread, and libvirt's threads and the QEMUs it starts would inherit the
// mask.
//
// One instance per process (the handler writes into a process-wide pipe).
// firstSignal() stays readable after the object is gone, so main() can end
// the process with the same signal once everything is torn down (a shell
// or systemd then sees "terminated by SIGTERM", as without a handler).

#include <QObject>
#include <QString>
#include <atomic>
#include <thread>

namespace isr::ui {

class ShutdownSignals : public QObject {
    Q_OBJECT

public:
    // stateDir: the kiosk's state directory (QEMUs whose command line names
    // it are this kiosk's); empty = only children of this process.
    explicit ShutdownSignals(QString stateDir, int stopTimeoutSeconds, QObject* parent = nullptr);
    ~ShutdownSignals() override; // restores the default dispositions

    // The first stop signal received by this process, 0 if none.
    static int firstSignal();
    // For main(), once everything is torn down: if a stop signal came, the
    // process dies of it (default disposition, raised again) so a shell sees
    // 143 and systemd "terminated by SIGTERM"; otherwise returns rc.
    static int endWithFirstSignal(int rc);

    // Kills this kiosk's QEMUs (SIGKILL) and returns how many. Safe from any
    // thread; used by the hard end and usable at exit.
    static int killQemus(const QString& stateDir);

signals:
    // GUI thread: the first stop signal (SIGTERM, SIGINT or SIGHUP).
    void stopRequested(int signo);

private:
    void watch();
    [[noreturn]] void hardEnd(int signo, const char* why);

    QString stateDir_;
    int stopTimeoutSeconds_;
    int wakeFd_ = -1; // eventfd: the destructor stops the watchdog
    std::thread watchdog_;
};

} // namespace isr::ui
