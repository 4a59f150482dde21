#pragma once
// SessionController: the real SessionBackend, an adapter over core/session.
//
// core's Session methods block (fetching, restoring, uploading), so they run
// on one worker thread that executes jobs in order; the GUI thread never
// blocks on them. Listener callbacks from core arrive on worker or core
// threads and are posted to the GUI thread (Qt::QueuedConnection) before they
// touch any property. Never a BlockingQueuedConnection: the worker must not
// wait on the GUI (KRDC's comment about exit deadlocks applies here too).
//
// Running is announced only after the display is open: core's
// stageChanged(Running) is held back, and the worker, once resume()/retry()
// has returned with the session Running, opens the display
// (Session::openDisplay, a connected RFB socket from virDomainOpenGraphicsFD),
// hands it to the display source and then announces Running. Later display
// requests (after a drop) are worker jobs too; their fd goes to the display
// source in C++, never through QML.
//
// Locking: mutex_ guards jobs_, stopping_ and the session_ pointer for
// readers outside the worker (the hoard poll, requestCancel). The worker
// assigns and resets session_ under it; Session's own methods are called
// without it (Session::hoard() and requestCancel() are safe from any thread).

#include "session/session.h"
#include "sessionbackend.h"

#include <QTimer>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace isr::ui {

class SessionController : public SessionBackend {
    Q_OBJECT
    QML_ELEMENT
    QML_UNCREATABLE("created by the kiosk")

public:
    // `parcel` may be empty: the user's only parcel (or "default") is used.
    SessionController(session::KioskConfig config, QString parcel, QObject* parent = nullptr);
    ~SessionController() override; // abandons an active session (the last commit stays)

    void signIn(const QString& user, const QString& password) override;
    void takeOver(const QString& password) override;
    void cancel() override;
    void suspendAndLeave() override;
    void retry(const QString& password) override;
    void acknowledge() override;
    // Session::checkPassword on the worker, the password in a Secret.
    void checkPassword(const QString& password) override;

    // The kiosk is going away (a stop signal, logind's PrepareForShutdown):
    // Running -> Suspend & Leave; resuming (Authenticating .. Restoring) ->
    // cancelled (lock released, scratch wiped); Suspending -> it finishes;
    // Failed -> abandoned (keys wiped, the last commit stands); SignedOut ->
    // nothing. shuttingDown turns true and sign-in is refused until
    // kioskStopping(false) (the announced shutdown or sleep did not happen).
    // The caller quits once the stage is SignedOut (see KioskShutdown).
    void kioskStopping(bool stopping = true);

    // The kiosk's screen in device pixels (a desktop parcel's preferred
    // mode), for the VM host whose shell reports it after start: applies to
    // sessions created after it (the first sign-in), not to one that exists.
    void setScreenSize(std::uint32_t width, std::uint32_t height);

protected:
    void openDisplay() override;

private:
    void post(std::function<void()> job);         // runs on the worker, in order
    void onGui(std::function<void()> fn);         // runs on the GUI thread
    bool ensureSession();                         // worker thread
    void announceRunning();                       // worker thread, after resume()/retry()
    void applyStage(session::Stage stage);        // GUI thread
    void applyFailure(const session::Failure& f); // GUI thread

    session::KioskConfig config_;
    QString parcel_;
    std::unique_ptr<session::Session> session_; // see the locking note above
    QString user_;
    QTimer hoardTimer_;

    std::thread worker_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
};

} // namespace isr::ui
