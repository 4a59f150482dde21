#pragma once
// LogindInhibitor: a shutdown waits for the save. While a session is active
// the kiosk holds a logind *delay* inhibitor ("shutdown:sleep", mode
// "delay"): a power-off, reboot or suspend (the power button included, with
// the package's HandlePowerKey=poweroff) first announces itself with
// PrepareForShutdown(true) / PrepareForSleep(true) and then waits until the
// inhibitor is released or logind's InhibitDelayMaxSec passes (the package's
// logind drop-in sets it from the measured Suspend & Leave time). Those
// announcements come out as shutdownAnnounced(); the kiosk saves the
// computer then, and release() lets the shutdown go on.
//
// org.freedesktop.login1.Manager.Inhibit returns a file descriptor; the lock
// is held for as long as it is open (here: the QDBusUnixFileDescriptor we
// keep). The call is asynchronous: the GUI thread never waits on the bus; a
// release() before the answer arrives closes the answer's fd at once.
//
// Without a system bus or logind (tests, containers) it logs once and does
// nothing. GUI thread only.

#include <QDBusUnixFileDescriptor>
#include <QObject>

namespace isr::ui {

class LogindInhibitor : public QObject {
    Q_OBJECT

public:
    explicit LogindInhibitor(QObject* parent = nullptr);
    ~LogindInhibitor() override;

    // Takes the delay lock (idempotent; asynchronous).
    void hold();
    // Lets a waiting shutdown go on (idempotent).
    void release();
    // Whether logind's fd is held right now.
    bool held() const { return fd_.isValid(); }
    // Whether a system bus with logind was found.
    bool available() const { return available_; }

signals:
    // logind is about to power off / reboot (shutdown = true) or suspend the
    // machine; the delay lock, if held, makes it wait for us.
    void shutdownAnnounced(bool shutdown);
    // PrepareForShutdown(false) / PrepareForSleep(false): the shutdown was
    // cancelled, or the machine is awake again.
    void announcementWithdrawn();

private slots:
    void onPrepareForShutdown(bool starting);
    void onPrepareForSleep(bool starting);

private:
    void unavailable(const QString& why);

    bool available_ = false;
    bool wanted_ = false;
    bool pending_ = false;
    bool logged_ = false;
    QDBusUnixFileDescriptor fd_;
};

} // namespace isr::ui
