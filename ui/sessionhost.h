#pragma once
// SessionHost: serves a SessionBackend (the real one: SessionController) to
// the kiosk's shell in another process, over the session wire
// (sessionwire.h). Runs in isr-vmhost, as root, on its GUI-less main thread.
//
// - listen(): a SOCK_SEQPACKET socket at a path, owned root:<the shell's
//   group>, mode 0660; every connection's peer (SO_PEERCRED) must be the
//   shell's uid or root, else it is closed at once (and logged). One shell at
//   a time: a new allowed connection replaces the old one (a restarted shell
//   whose predecessor's close the host has not read yet).
// - The shell's commands call the backend's invokables; every change of the
//   backend's state goes to the shell as one "state" message with all of it.
// - The display: the fd the controller opens ahead of Running goes to the
//   shell before the state that says Running; later requests are answered
//   with a fresh fd or the reason there is none.
// - The shell goes away (crash, restart, killed) while a session is active or
//   failed: the host saves or ends it as for a kiosk stop (stopping(true):
//   Running -> Suspend & Leave, a resume cancelled, a failure abandoned), and
//   once signed out lets sign-ins in again (stopping(false)) unless the host
//   itself is stopping. Nobody is left with a running computer and no screen.
//   The same when a shell that asked for a stop goes away: its successor
//   (a restarted shell) finds sign-ins open.
// GUI (main) thread only.

#include "sessionbackend.h"
#include "sessionwire.h"

#include <QObject>
#include <QSocketNotifier>
#include <functional>
#include <memory>
#include <sys/types.h>

namespace isr::ui {

class SessionHost : public QObject {
    Q_OBJECT

public:
    struct Hooks {
        // The kiosk is (not) going away: SessionController::kioskStopping.
        std::function<void(bool)> stopping;
        // The shell's screen in device pixels (its hello); may be empty.
        std::function<void(int width, int height)> screen;
    };
    SessionHost(SessionBackend* backend, Hooks hooks, QObject* parent = nullptr);
    ~SessionHost() override; // removes the socket it made

    // Makes the socket (replacing a stale one at `path`) and starts
    // accepting. shellUid: the only non-root uid allowed to connect;
    // shellGid: the socket file's group.
    Status listen(const std::string& path, uid_t shellUid, gid_t shellGid);

    // The host itself is going away (a stop signal): a lost shell's save
    // does not let sign-ins in afterwards.
    void setHostStopping() { hostStopping_ = true; }

    bool hasShell() const { return shell_ && shell_->isOpen(); }
    // Connections refused by the peer check, for tests and the log.
    int refusedPeers() const { return refused_; }

signals:
    void shellConnected();
    void shellLost(const QString& why);

private:
    void accept();
    void onMessage(const QJsonObject& message);
    void sendState();
    void onStage();
    void onShellLost(const QString& why);
    void shellGone(); // the connected shell went away or was replaced
    void reopenIfSignedOut();

    SessionBackend* backend_;
    Hooks hooks_;
    std::string path_;
    uid_t shellUid_ = 0;
    UniqueFd listenFd_;
    std::unique_ptr<QSocketNotifier> acceptNotifier_;
    std::unique_ptr<wire::Channel> shell_;
    bool displayRequested_ = false;
    bool shellAskedStop_ = false;      // the connected shell said stopping(true)
    bool reopenWhenSignedOut_ = false; // sign-ins open again once SignedOut
    bool hostStopping_ = false;
    int refused_ = 0;
};

} // namespace isr::ui
