#pragma once
// KioskShutdown: how the kiosk goes away. Owns the stop signals
// (ShutdownSignals) and logind's delay inhibitor (LogindInhibitor) and ties
// them to the session backend:
//   - the delay lock is held while the backend is anywhere but SignedOut,
//     and released when it is back at SignedOut (saved, cancelled or
//     abandoned): a shutdown waits for the save, and only for it;
//   - the first SIGTERM/SIGINT/SIGHUP calls stopSession (the controller's
//     kioskStopping()) and quits the application once the stage is
//     SignedOut; with no stopSession (the fake backend) it quits at once;
//   - logind's PrepareForShutdown(true) / PrepareForSleep(true) call
//     stopSession too, but the application stays: systemd's SIGTERM follows
//     and then finds it at SignedOut (quitting on our own would make the
//     unit's Restart=always start a new kiosk in the middle of the
//     shutdown). PrepareForSleep(false) (awake again) calls resumeSession.
//   - a second signal or the stop timeout: ShutdownSignals ends it hard.
// GUI thread only.

#include "logindinhibitor.h"
#include "shutdownsignals.h"

#include <QPointer>
#include <functional>

namespace isr::ui {

class SessionBackend;

class KioskShutdown : public QObject {
    Q_OBJECT

public:
    // Installs the signal handlers and asks for the system bus now, before
    // any session exists. stateDir: see ShutdownSignals.
    KioskShutdown(const QString& stateDir, int stopTimeoutSeconds, QObject* parent = nullptr);
    ~KioskShutdown() override;

    // The backend to watch. stopSession: "the kiosk is going away" (empty:
    // nothing to save, quit at once); resumeSession: the announced shutdown
    // or sleep did not happen.
    void attach(SessionBackend* backend, std::function<void()> stopSession,
                std::function<void()> resumeSession = {});

    bool quitting() const { return quitWhenSignedOut_; }
    LogindInhibitor& inhibitor() { return inhibitor_; }

private:
    void stop(bool quit);
    void onStage();

    ShutdownSignals signals_;
    LogindInhibitor inhibitor_;
    QPointer<SessionBackend> backend_;
    std::function<void()> stopSession_;
    std::function<void()> resumeSession_;
    bool quitWhenSignedOut_ = false;
};

} // namespace isr::ui
