#pragma once
// FakeSessionBackend: a scripted SessionBackend for tests and for the kiosk's
// --fake-backend demo. No VMs, no store: users and passwords live in a table,
// a parcel can be "open at another kiosk", a failure can be injected at any
// stage, and progress moves one tick per step() — called by tests, or by a
// QTimer when stepIntervalMs > 0. Illegal stage transitions abort (qFatal),
// so a test that drives the fake into one fails loudly.
//
// Per step: Authenticating checks the password; CheckingOut checks the lock;
// Fetching, Restoring and Suspending move a quarter of their bytes; Running
// caches an eighth of the hoard; Wiping finishes. An injected failure fires on
// the first step inside its stage, once.
//
// If displaySocket is set, entering Running connects to that UNIX socket (for
// example QEMU's `-vnc unix:PATH`) and hands the fd out as the display.

#include "sessionbackend.h"

#include <QHash>
#include <QTimer>

namespace isr::ui {

class FakeSessionBackend : public SessionBackend {
    Q_OBJECT
    QML_ELEMENT
    Q_PROPERTY(
        int stepIntervalMs READ stepIntervalMs WRITE setStepIntervalMs NOTIFY stepIntervalMsChanged)
    Q_PROPERTY(QString displaySocket MEMBER displaySocket_)
    Q_PROPERTY(qint64 memoryImageBytes MEMBER memoryImageBytes_)
    Q_PROPERTY(qint64 uploadBytes MEMBER uploadBytes_)
    Q_PROPERTY(qint64 hoardChunks MEMBER hoardChunks_)

public:
    explicit FakeSessionBackend(QObject* parent = nullptr);

    Q_INVOKABLE void addUser(const QString& user, const QString& password);
    // The user's parcel is held by `holder` since `since` until taken over.
    Q_INVOKABLE void lockParcel(const QString& user, const QString& holder, const QDateTime& since);
    // The next time `user` reaches `stage`, it fails with `kind`.
    Q_INVOKABLE void failAt(const QString& user, isr::ui::SessionBackend::Stage stage,
                            isr::ui::SessionBackend::ErrorKind kind);
    // Advance the script by one tick.
    Q_INVOKABLE void step();
    // Step until the stage changes or `maxSteps` ticks pass; returns the stage.
    Q_INVOKABLE isr::ui::SessionBackend::Stage stepToNextStage(int maxSteps = 16);

    int stepIntervalMs() const { return stepTimer_.isActive() ? stepTimer_.interval() : 0; }
    void setStepIntervalMs(int ms);

    void signIn(const QString& user, const QString& password) override;
    void takeOver() override;
    void cancel() override;
    void suspendAndLeave() override;
    void retry() override;
    void acknowledge() override;

signals:
    void stepIntervalMsChanged();

private:
    struct User {
        QString password;
        QString lockHolder;
        QDateTime lockSince;
        Stage failStage = SignedOut;
        ErrorKind failKind = None;
    };
    void transition(Stage to);
    void fail(ErrorKind kind);
    void stepBytes(qint64 total, Stage next);
    void openDisplay();

    QHash<QString, User> users_;
    QString currentUser_;
    QString attemptedPassword_;
    QTimer stepTimer_;
    QString displaySocket_;
    qint64 memoryImageBytes_ = 768ll << 20;
    qint64 uploadBytes_ = 96ll << 20;
    qint64 hoardChunks_ = 4096;
    qint64 restoreBytes_ = 0;
};

} // namespace isr::ui
