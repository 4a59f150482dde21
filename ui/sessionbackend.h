#pragma once
// SessionBackend: what the kiosk's QML sees of a session. An abstract QObject
// with the stages and error kinds, the current failure (rendered into words
// and as the facts QML needs), progress, the hoard, the VM's display source
// and a handful of invokables. QML binds to properties and signals only.
//
// Exposure to QML: the type is registered uncreatable (QML_UNCREATABLE); the
// concrete backend (SessionController over core/session, or the
// FakeSessionBackend) is handed to Main.qml as its required property
// `backend` by showKioskWindow(). Tests create a FakeSessionBackend in QML
// directly.
//
// Stages, error kinds and the legal transitions are core/session's
// (session::Stage, session::ErrorKind, session::isLegalTransition, documented
// in core/session/session.h). The Q_ENUMs below exist because QML needs them;
// every value is pinned to the core's by a static_assert in
// sessionbackend.cpp, and isLegalTransition() asks the core. Backends must
// only make legal transitions; FakeSessionBackend aborts on an illegal one.
//
// Failed always remembers failedStage. LockedElsewhere is reported as Failed
// with failedStage == CheckingOut and lockHolder/lockSince set; the UI offers
// take over (takeOver(password)) or cancel (cancel()).
//
// Every way back from Failed asks for the password again (the core holds no
// keys after a failure, or checks the password before it finishes a failed
// suspend): retry(password) and takeOver(password). A wrong password that
// changes nothing in the core (a failed suspend kept for its retry) is
// reported by passwordRefused(); one that fails a fresh sign-in shows as
// Failed/WrongCredentials like any sign-in.
//
// The lock screen (issue #16, item 12): while Running, checkPassword(password)
// checks the signed-in user's password off the GUI thread (the real backend:
// Session::checkPassword, the account's Argon2id as at sign-in) and answers
// with passwordChecked(right, problem): problem is None for a wrong password,
// the ErrorKind that kept it from being checked otherwise (StoreUnreachable:
// the account could not be read). Nothing else changes either way. Whether
// the screen is locked is the QML's (Main.qml); the backend only checks.
//
// Words: errorMessage and hoardProblem are rendered from the core's facts by
// ui/text/failuretext.h (tr(), local times) when a backend reports them, so
// the fake and the real backend show the same sentences for the same facts.

#include "displaysource.h"
#include "session/session.h"

#include <QDateTime>
#include <QObject>
#include <QString>
#include <QtQml/qqmlregistration.h>
#include <optional>

namespace isr::ui {

class SessionBackend : public QObject {
    Q_OBJECT
    QML_ELEMENT
    QML_UNCREATABLE("SessionBackend is abstract; the kiosk passes one to Main.qml")

    Q_PROPERTY(Stage stage READ stage NOTIFY stageChanged)
    Q_PROPERTY(Stage failedStage READ failedStage NOTIFY errorChanged)
    Q_PROPERTY(ErrorKind errorKind READ errorKind NOTIFY errorChanged)
    Q_PROPERTY(QString failureCause READ failureCauseName NOTIFY errorChanged)
    Q_PROPERTY(QString errorMessage READ errorMessage NOTIFY errorChanged)
    Q_PROPERTY(QString errorDetail READ errorDetail NOTIFY errorChanged)
    Q_PROPERTY(bool canRetry READ canRetry NOTIFY errorChanged)
    Q_PROPERTY(QString lockHolder READ lockHolder NOTIFY errorChanged)
    Q_PROPERTY(QDateTime lockSince READ lockSince NOTIFY errorChanged)
    Q_PROPERTY(qint64 lastSavedVersion READ lastSavedVersion NOTIFY errorChanged)
    Q_PROPERTY(QDateTime lastSavedAt READ lastSavedAt NOTIFY errorChanged)
    Q_PROPERTY(QString lastSavedKiosk READ lastSavedKiosk NOTIFY errorChanged)
    Q_PROPERTY(QString userName READ userName NOTIFY stageChanged)
    // What the resume in progress opens: "Saved Tuesday 14:02 at kiosk
    // gate-23" (local time), once the version is checked; empty before, and
    // after sign-out. The person who knows when and where they last saved
    // sees an older or foreign copy here.
    Q_PROPERTY(QString resumingFrom READ resumingFrom NOTIFY resumingFromChanged)
    Q_PROPERTY(qint64 bytesDone READ bytesDone NOTIFY progressChanged)
    Q_PROPERTY(qint64 bytesTotal READ bytesTotal NOTIFY progressChanged)
    Q_PROPERTY(double rate READ rate NOTIFY progressChanged)
    Q_PROPERTY(qint64 hoardChunksCached READ hoardChunksCached NOTIFY progressChanged)
    Q_PROPERTY(qint64 hoardChunksTotal READ hoardChunksTotal NOTIFY progressChanged)
    Q_PROPERTY(ErrorKind hoardProblemKind READ hoardProblemKind NOTIFY hoardProblemChanged)
    Q_PROPERTY(QString hoardProblem READ hoardProblem NOTIFY hoardProblemChanged)
    Q_PROPERTY(isr::ui::DisplaySource* display READ display CONSTANT)
    // The kiosk is going away (a stop signal, or logind announced a
    // shutdown): the leaving and progress pages say why.
    Q_PROPERTY(bool shuttingDown READ shuttingDown NOTIFY shuttingDownChanged)

public:
    // session::Stage, for QML (pinned in sessionbackend.cpp).
    enum Stage {
        SignedOut,
        Authenticating,
        CheckingOut,
        Fetching,
        Restoring,
        Running,
        Suspending,
        Wiping,
        Failed,
    };
    Q_ENUM(Stage)

    // session::ErrorKind, for QML (pinned in sessionbackend.cpp).
    enum ErrorKind {
        None,
        WrongCredentials,
        StoreUnreachable,
        LockedElsewhere,
        Corrupt,
        NoSpace,
        VmFailed,
        Internal,
    };
    Q_ENUM(ErrorKind)

    explicit SessionBackend(QObject* parent = nullptr);
    ~SessionBackend() override;

    static Stage fromCore(session::Stage stage) { return Stage(int(stage)); }
    static ErrorKind fromCore(session::ErrorKind kind) { return ErrorKind(int(kind)); }
    static session::Stage toCore(Stage stage) { return session::Stage(int(stage)); }
    static session::ErrorKind toCore(ErrorKind kind) { return session::ErrorKind(int(kind)); }

    // session::isLegalTransition. Same-stage "transitions" are not transitions.
    static bool isLegalTransition(Stage from, Stage to);
    Q_INVOKABLE static QString stageName(Stage stage);

    Stage stage() const { return stage_; }
    Stage failedStage() const { return failure_ ? fromCore(failure_->stage) : SignedOut; }
    ErrorKind errorKind() const { return failure_ ? fromCore(failure_->kind) : None; }
    // The facts of the current failure, if any (for C++ callers and tests).
    const std::optional<session::Failure>& failure() const { return failure_; }
    QString failureCauseName() const;
    // What happened and what to do, rendered from the failure's facts.
    QString errorMessage() const { return errorMessage_; }
    // The underlying technical error (the store's or libvirt's words), for
    // the log and a details line; never the main text.
    QString errorDetail() const;
    // Whether retry() makes sense for the current error (network, space,
    // a VM that failed to start) as opposed to needing the user or an admin.
    bool canRetry() const;
    QString lockHolder() const;
    QDateTime lockSince() const;
    qint64 lastSavedVersion() const;
    QDateTime lastSavedAt() const;
    QString lastSavedKiosk() const;
    QString userName() const { return userName_; }
    QString resumingFrom() const { return resumingFrom_; }
    // The facts resumingFrom was rendered from (for SessionHost, which sends
    // facts, not words, to the shell).
    const std::optional<session::SavedVersion>& resumingFromVersion() const {
        return resumingFromVersion_;
    }
    qint64 bytesDone() const { return bytesDone_; }
    qint64 bytesTotal() const { return bytesTotal_; }
    double rate() const { return rate_; }
    qint64 hoardChunksCached() const { return hoardCached_; }
    qint64 hoardChunksTotal() const { return hoardTotal_; }
    ErrorKind hoardProblemKind() const { return hoardProblemKind_; }
    // One quiet line for the running page, or empty.
    QString hoardProblem() const { return hoardProblem_; }
    // The last setHoard() facts (for SessionHost).
    const session::HoardStatus& hoardStatus() const { return hoardStatus_; }
    // The VM's screen: available while Running; the display item binds to it.
    DisplaySource* display() const { return display_; }
    bool shuttingDown() const { return shuttingDown_; }

    Q_INVOKABLE virtual void signIn(const QString& user, const QString& password) = 0;
    Q_INVOKABLE virtual void takeOver(const QString& password) = 0;
    Q_INVOKABLE virtual void cancel() = 0;
    Q_INVOKABLE virtual void suspendAndLeave() = 0;
    Q_INVOKABLE virtual void retry(const QString& password) = 0;
    Q_INVOKABLE virtual void acknowledge() = 0;
    // While Running: answered by passwordChecked() (see the lock screen above).
    Q_INVOKABLE virtual void checkPassword(const QString& password) = 0;

signals:
    void stageChanged(isr::ui::SessionBackend::Stage stage);
    void progressChanged();
    void errorChanged();
    void hoardProblemChanged();
    void shuttingDownChanged();
    void resumingFromChanged();
    // retry(password)/takeOver(password) refused the password and changed
    // nothing: the page says so and asks again.
    void passwordRefused();
    // The answer to checkPassword(): right, or why not (None: the password
    // is wrong; another kind: it could not be checked).
    void passwordChecked(bool right, isr::ui::SessionBackend::ErrorKind problem);

protected:
    // For implementations: they change state only through these, so the
    // signals always fire. setStage() does not check legality (see the fake);
    // it makes the display source available exactly while Running.
    void setStage(Stage stage);
    void setUserName(const QString& user);
    // The version a resume opens (rendered into resumingFrom); cleared by
    // setStage(SignedOut) and setStage(Authenticating).
    void setResumingFrom(const session::SavedVersion& saved);
    // Records the failure's facts and renders errorMessage from them.
    void setFailure(const session::Failure& failure);
    void clearError();
    void setProgress(qint64 done, qint64 total, double rate);
    // Chunk counts and the hoard's problem (rendered into hoardProblem).
    void setHoard(const session::HoardStatus& hoard);
    // How display()->request() is served: answer with display()->offer()
    // or display()->refuse(), on the GUI thread. Default: no display.
    virtual void openDisplay();
    void setShuttingDown(bool on) {
        if (on != shuttingDown_) {
            shuttingDown_ = on;
            emit shuttingDownChanged();
        }
    }

private:
    Stage stage_ = SignedOut;
    std::optional<session::Failure> failure_;
    QString errorMessage_;
    QString userName_;
    QString resumingFrom_;
    std::optional<session::SavedVersion> resumingFromVersion_;
    session::HoardStatus hoardStatus_;
    qint64 bytesDone_ = 0;
    qint64 bytesTotal_ = 0;
    double rate_ = 0;
    qint64 hoardCached_ = 0;
    qint64 hoardTotal_ = 0;
    ErrorKind hoardProblemKind_ = None;
    QString hoardProblem_;
    DisplaySource* display_; // child
    bool shuttingDown_ = false;
};

} // namespace isr::ui
