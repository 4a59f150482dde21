#pragma once
// FakeSessionBackend: a scripted SessionBackend for tests and for the kiosk's
// --fake-backend demo. No VMs, no store: users and passwords live in a table,
// a parcel can be "open at another kiosk", a failure can be injected at any
// stage, and progress moves one tick per step() — called by tests, or by a
// QTimer when stepIntervalMs > 0. It follows core/session's transition table
// (session::isLegalTransition); an illegal transition aborts (qFatal), so a
// test that drives the fake into one fails loudly.
//
// Failures are session::Failure values with the facts the core reports
// (cause, stage, lock holder, last saved version), rendered by the same
// ui/text renderer as the real backend's: UI tests read the real words.
//
// Per step: Authenticating checks the password; CheckingOut checks the lock
// (and, passing, announces the user's last save as resumingFrom);
// Fetching, Restoring and Suspending move a quarter of their bytes; Running
// caches an eighth of the hoard (none while the hoard is held back); Wiping
// finishes. An injected failure fires on the first step inside its stage,
// once. retry(password) and takeOver(password) go the core's way: a fresh
// sign-in (Failed -> Authenticating, the password checked before the lock),
// except a failed suspend, which checks the password and finishes
// (passwordRefused() on a wrong one, nothing changed).
//
// checkPassword(password) answers passwordChecked() on the next turn of the
// event loop, as the real backend's worker does: right only while Running
// and for the signed-in user's password.
//
// If displaySocket is set, the display is that UNIX socket (for example
// QEMU's `-vnc unix:PATH`): connected before Running is announced, and again
// whenever the display item asks.

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
    Q_PROPERTY(QString kioskId MEMBER kioskId_)
    Q_PROPERTY(qint64 memoryImageBytes MEMBER memoryImageBytes_)
    Q_PROPERTY(qint64 uploadBytes MEMBER uploadBytes_)
    Q_PROPERTY(qint64 hoardChunks MEMBER hoardChunks_)

public:
    explicit FakeSessionBackend(QObject* parent = nullptr);

    Q_INVOKABLE void addUser(const QString& user, const QString& password);
    // The user's parcel is held by `holder` since `since` until taken over.
    Q_INVOKABLE void lockParcel(const QString& user, const QString& holder, const QDateTime& since);
    // The user's last committed version (default: version 1, saved a day
    // ago at "kiosk-1"); a Suspend & Leave here makes the next one.
    Q_INVOKABLE void setLastSave(const QString& user, qint64 version, const QDateTime& saved,
                                 const QString& kiosk);
    // The next time `user` reaches `stage`, it fails with `kind` (the cause
    // the core would name for that kind at that stage).
    Q_INVOKABLE void failAt(const QString& user, isr::ui::SessionBackend::Stage stage,
                            isr::ui::SessionBackend::ErrorKind kind);
    // The same with every fact given; `failure.stage` says when it fires.
    // lastSave is filled in from the user's when left empty past sign-in.
    void failWith(const QString& user, const session::Failure& failure);
    // Hold the background hoard back (NoSpace, StoreUnreachable) or let it
    // go again (None), as the core's HoardStatus::problem does.
    Q_INVOKABLE void holdHoard(isr::ui::SessionBackend::ErrorKind problem);
    // Advance the script by one tick.
    Q_INVOKABLE void step();
    // Step until the stage changes or `maxSteps` ticks pass; returns the stage.
    Q_INVOKABLE isr::ui::SessionBackend::Stage stepToNextStage(int maxSteps = 16);

    int stepIntervalMs() const { return stepTimer_.isActive() ? stepTimer_.interval() : 0; }
    void setStepIntervalMs(int ms);

    void signIn(const QString& user, const QString& password) override;
    void takeOver(const QString& password) override;
    void cancel() override;
    void suspendAndLeave() override;
    void retry(const QString& password) override;
    void acknowledge() override;
    // Against the user table, answered from the event loop (the real one
    // answers from its worker). failPasswordCheck(kind) makes the next
    // checks answer "could not check" with that kind (None: check again).
    void checkPassword(const QString& password) override;
    Q_INVOKABLE void failPasswordCheck(isr::ui::SessionBackend::ErrorKind kind) {
        passwordCheckProblem_ = kind;
    }

signals:
    void stepIntervalMsChanged();

protected:
    void openDisplay() override;

private:
    struct User {
        QString password;
        QString lockHolder;
        QDateTime lockSince;
        session::SavedVersion lastSave;
        std::optional<session::Failure> failure; // injected, fires once
    };
    void transition(Stage to);
    void fail(session::Failure failure);
    void stepBytes(qint64 total, Stage next);
    void enterRunning();
    UniqueFd connectDisplay();
    void publishHoard();

    QHash<QString, User> users_;
    QString currentUser_;
    QString attemptedPassword_;
    bool takingOver_ = false; // the sign-in in progress is a take-over
    QTimer stepTimer_;
    QString displaySocket_;
    QString kioskId_ = QStringLiteral("this kiosk");
    qint64 memoryImageBytes_ = 768ll << 20;
    qint64 uploadBytes_ = 96ll << 20;
    qint64 hoardChunks_ = 4096;
    session::HoardStatus hoard_;
    ErrorKind passwordCheckProblem_ = None;
};

} // namespace isr::ui
