#pragma once
// RemoteSessionBackend: the shell's side of the VM host split (sessionwire.h).
// The kiosk's QML binds to it as to any SessionBackend; every invokable goes
// to isr-vmhost over the socket and the host's state messages set the
// properties. The shell holds no keys, no store credentials and no VM: only
// the password the person types, for as long as it takes to send it.
//
// The host is not there (not started yet, restarting, crashed):
//   - the shell keeps trying to connect (every 500 ms) and shows the host's
//     state as soon as it is connected;
//   - a sign-in (or retry) meanwhile fails at once as Internal ("this kiosk
//     cannot start sessions: its VM host is not running"); the page's "OK"
//     returns to sign-in;
//   - a connection lost mid-session shows the same failure in the stage it
//     was in (the host, if it lives, saves the session: sessionhost.h);
//   - kioskStopping() with no host: there is nothing to save here, the
//     stage goes to SignedOut so the shell can quit.
// GUI thread only.

#include "sessionbackend.h"
#include "sessionwire.h"

#include <QSize>
#include <QTimer>
#include <memory>

namespace isr::ui {

class RemoteSessionBackend : public SessionBackend {
    Q_OBJECT
    QML_ELEMENT
    QML_UNCREATABLE("created by the kiosk")

public:
    // screen: this kiosk's screen in device pixels, for the host (a
    // desktop's preferred mode); empty: none sent.
    RemoteSessionBackend(QString socketPath, QSize screen, QObject* parent = nullptr);
    ~RemoteSessionBackend() override;

    void signIn(const QString& user, const QString& password) override;
    void takeOver(const QString& password) override;
    void cancel() override;
    void suspendAndLeave() override;
    void retry(const QString& password) override;
    void acknowledge() override;
    void checkPassword(const QString& password) override;
    // As SessionController::kioskStopping, carried out by the host.
    void kioskStopping(bool stopping = true);

    bool isConnected() const { return channel_ && channel_->isOpen(); }

signals:
    void connectedChanged();

protected:
    void openDisplay() override;

private:
    void tryConnect();
    void onMessage(const QJsonObject& m, const std::shared_ptr<UniqueFd>& fd);
    void applyState(const QJsonObject& m);
    void onLost(const QString& why);
    bool send(const QJsonObject& m);
    void failLocally(Stage stage, const QString& user);

    QString path_;
    QSize screen_;
    std::unique_ptr<wire::Channel> channel_;
    QTimer reconnect_;
    bool displayPending_ = false;
    bool loggedWaiting_ = false;
};

} // namespace isr::ui
