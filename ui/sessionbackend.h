#pragma once
// SessionBackend: what the kiosk's QML sees of a session. An abstract QObject
// with one enum of stages, one enum of error kinds, progress properties and a
// handful of invokables. QML binds to properties and signals only.
//
// Exposure to QML: the type is registered uncreatable (QML_UNCREATABLE); the
// concrete backend (FakeSessionBackend now, an adapter over core/session
// later) is handed to Main.qml as its required property `backend` by
// showKioskWindow(). Tests create a FakeSessionBackend in QML directly.
//
// Legal stage transitions (KRDC's RemoteView style). Anything else is a bug
// in the backend; FakeSessionBackend aborts on it.
//
//   SignedOut      -> Authenticating                         signIn()
//   Authenticating -> CheckingOut | Failed | SignedOut        (cancel)
//   CheckingOut    -> Fetching | Failed | Wiping              (cancel)
//   Fetching       -> Restoring | Failed | Wiping             (cancel)
//   Restoring      -> Running | Failed
//   Running        -> Suspending | Failed                     suspendAndLeave()
//   Suspending     -> Wiping | Failed
//   Wiping         -> SignedOut | Failed
//   Failed         -> Authenticating                          signIn() again / retry() of sign-in
//                   | CheckingOut                             takeOver() (LockedElsewhere) /
//                   retry() | Fetching | Restoring | Suspending       retry() of that stage |
//                   Wiping                                  acknowledge()/cancel() with state to
//                   wipe | SignedOut                               acknowledge()/cancel(), nothing
//                   to wipe
//
// Failed always remembers failedStage. LockedElsewhere is reported as Failed
// with failedStage == CheckingOut and lockHolder/lockSince set; the UI offers
// take over (takeOver()) or cancel (cancel()).

#include <QDateTime>
#include <QObject>
#include <QString>
#include <QtQml/qqmlregistration.h>

namespace isr::ui {

class SessionBackend : public QObject {
    Q_OBJECT
    QML_ELEMENT
    QML_UNCREATABLE("SessionBackend is abstract; the kiosk passes one to Main.qml")

    Q_PROPERTY(Stage stage READ stage NOTIFY stageChanged)
    Q_PROPERTY(Stage failedStage READ failedStage NOTIFY errorChanged)
    Q_PROPERTY(ErrorKind errorKind READ errorKind NOTIFY errorChanged)
    Q_PROPERTY(QString errorMessage READ errorMessage NOTIFY errorChanged)
    Q_PROPERTY(bool canRetry READ canRetry NOTIFY errorChanged)
    Q_PROPERTY(QString lockHolder READ lockHolder NOTIFY errorChanged)
    Q_PROPERTY(QDateTime lockSince READ lockSince NOTIFY errorChanged)
    Q_PROPERTY(QString userName READ userName NOTIFY stageChanged)
    Q_PROPERTY(qint64 bytesDone READ bytesDone NOTIFY progressChanged)
    Q_PROPERTY(qint64 bytesTotal READ bytesTotal NOTIFY progressChanged)
    Q_PROPERTY(double rate READ rate NOTIFY progressChanged)
    Q_PROPERTY(qint64 hoardChunksCached READ hoardChunksCached NOTIFY progressChanged)
    Q_PROPERTY(qint64 hoardChunksTotal READ hoardChunksTotal NOTIFY progressChanged)
    Q_PROPERTY(int displayFd READ displayFd NOTIFY displayReady)

public:
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

    // The table above, as code. Same-stage "transitions" are not transitions.
    static bool isLegalTransition(Stage from, Stage to);
    Q_INVOKABLE static QString stageName(Stage stage);
    // Human text for an error kind: what happened and what to do. Backends
    // may add detail; the UI shows errorMessage as is.
    static QString defaultMessage(ErrorKind kind);

    Stage stage() const { return stage_; }
    Stage failedStage() const { return failedStage_; }
    ErrorKind errorKind() const { return errorKind_; }
    QString errorMessage() const { return errorMessage_; }
    // Whether retry() makes sense for the current error (network, space,
    // a VM that failed to start) as opposed to needing the user or an admin.
    bool canRetry() const;
    QString lockHolder() const { return lockHolder_; }
    QDateTime lockSince() const { return lockSince_; }
    QString userName() const { return userName_; }
    qint64 bytesDone() const { return bytesDone_; }
    qint64 bytesTotal() const { return bytesTotal_; }
    double rate() const { return rate_; }
    qint64 hoardChunksCached() const { return hoardCached_; }
    qint64 hoardChunksTotal() const { return hoardTotal_; }
    // The VM display: a connected socket fd speaking RFB (from
    // virDomainOpenGraphicsFD), or -1. Ownership passes to whoever takes it
    // with takeDisplayFd(); displayReady is emitted when a new one is ready.
    int displayFd() const { return displayFd_; }
    Q_INVOKABLE int takeDisplayFd();

    Q_INVOKABLE virtual void signIn(const QString& user, const QString& password) = 0;
    Q_INVOKABLE virtual void takeOver() = 0;
    Q_INVOKABLE virtual void cancel() = 0;
    Q_INVOKABLE virtual void suspendAndLeave() = 0;
    Q_INVOKABLE virtual void retry() = 0;
    Q_INVOKABLE virtual void acknowledge() = 0;
    // Asks for a fresh display connection while Running (the VM's VNC server
    // may drop a client, e.g. while a booting guest switches video modes);
    // displayReady follows. The fake backend has nothing to reconnect.
    Q_INVOKABLE virtual void reconnectDisplay() {}

signals:
    void stageChanged(isr::ui::SessionBackend::Stage stage);
    void progressChanged();
    void errorChanged();
    void displayReady(int fd);

protected:
    // For implementations: they change state only through these, so the
    // signals always fire. setStage() does not check legality (see the fake).
    void setStage(Stage stage);
    void setUserName(const QString& user);
    void setError(Stage failedStage, ErrorKind kind, const QString& message);
    void clearError();
    void setLock(const QString& holder, const QDateTime& since);
    void setProgress(qint64 done, qint64 total, double rate);
    void setHoard(qint64 cached, qint64 total);
    void setDisplayFd(int fd); // takes ownership; closes a previous untaken fd

private:
    Stage stage_ = SignedOut;
    Stage failedStage_ = SignedOut;
    ErrorKind errorKind_ = None;
    QString errorMessage_;
    QString lockHolder_;
    QDateTime lockSince_;
    QString userName_;
    qint64 bytesDone_ = 0;
    qint64 bytesTotal_ = 0;
    double rate_ = 0;
    qint64 hoardCached_ = 0;
    qint64 hoardTotal_ = 0;
    int displayFd_ = -1;
};

} // namespace isr::ui
