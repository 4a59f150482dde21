#include "sessioncontroller.h"

#include <QDateTime>
#include <QMetaObject>
#include <QPointer>

namespace isr::ui {

namespace {

SessionBackend::Stage toUi(session::Stage s) {
    switch (s) {
    case session::Stage::SignedOut:
        return SessionBackend::SignedOut;
    case session::Stage::Authenticating:
        return SessionBackend::Authenticating;
    case session::Stage::CheckingOut:
        return SessionBackend::CheckingOut;
    case session::Stage::Fetching:
        return SessionBackend::Fetching;
    case session::Stage::Restoring:
        return SessionBackend::Restoring;
    case session::Stage::Running:
        return SessionBackend::Running;
    case session::Stage::Suspending:
        return SessionBackend::Suspending;
    case session::Stage::Wiping:
        return SessionBackend::Wiping;
    case session::Stage::Failed:
        return SessionBackend::Failed;
    }
    return SessionBackend::Failed;
}

SessionBackend::ErrorKind toUi(session::ErrorKind k) {
    switch (k) {
    case session::ErrorKind::None:
        return SessionBackend::None;
    case session::ErrorKind::WrongCredentials:
        return SessionBackend::WrongCredentials;
    case session::ErrorKind::StoreUnreachable:
        return SessionBackend::StoreUnreachable;
    case session::ErrorKind::LockedElsewhere:
        return SessionBackend::LockedElsewhere;
    case session::ErrorKind::Corrupt:
        return SessionBackend::Corrupt;
    case session::ErrorKind::NoSpace:
        return SessionBackend::NoSpace;
    case session::ErrorKind::VmFailed:
        return SessionBackend::VmFailed;
    case session::ErrorKind::Internal:
        return SessionBackend::Internal;
    }
    return SessionBackend::Internal;
}

} // namespace

SessionController::SessionController(session::KioskConfig config, QString parcel, QObject* parent)
    : SessionBackend(parent), config_(std::move(config)), parcel_(std::move(parcel)) {
    worker_ = std::thread([this] {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
                if (jobs_.empty())
                    return;
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            job();
        }
    });
    hoardTimer_.setInterval(1000);
    connect(&hoardTimer_, &QTimer::timeout, this, [this] {
        // Session::hoard() is safe from any thread.
        std::lock_guard lock(mutex_);
        if (session_) {
            auto h = session_->hoard();
            setHoard(qint64(h.chunksDone), qint64(h.chunksTotal));
        }
    });
}

SessionController::~SessionController() {
    hoardTimer_.stop();
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        // Pending jobs are dropped; the session's destructor abandons
        // whatever is active (nothing committed is touched).
        jobs_.clear();
        jobs_.push_back([this] { session_.reset(); });
    }
    wake_.notify_all();
    if (worker_.joinable())
        worker_.join();
}

void SessionController::post(std::function<void()> job) {
    {
        std::lock_guard lock(mutex_);
        jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
}

void SessionController::onGui(std::function<void()> fn) {
    QMetaObject::invokeMethod(this, std::move(fn), Qt::QueuedConnection);
}

bool SessionController::ensureSession() {
    if (session_)
        return true;
    session::Listener listener;
    listener.stageChanged = [this](session::Stage s) { onGui([this, s] { applyStage(s); }); };
    listener.progress = [this](const session::Progress& p) {
        onGui([this, p] { setProgress(qint64(p.done), qint64(p.total), p.bytesPerSecond); });
    };
    listener.failed = [this](const session::Failure& f) { onGui([this, f] { applyFailure(f); }); };
    auto created = session::Session::create(config_, listener);
    if (!created.ok()) {
        session::Failure f;
        f.stage = session::Stage::Authenticating;
        f.kind = session::ErrorKind::Internal;
        f.message =
            "This kiosk cannot start sessions: " + created.error().describe() + ". Tell staff.";
        // Through Authenticating, as a session would: SignedOut -> Failed is
        // not a legal transition for the UI.
        onGui([this, f] {
            setUserName(user_);
            setStage(Authenticating);
            applyFailure(f);
            setStage(Failed);
        });
        return false;
    }
    std::lock_guard lock(mutex_);
    session_ = std::move(*created);
    return true;
}

void SessionController::applyStage(session::Stage s) {
    Stage stage = toUi(s);
    if (stage != Failed)
        clearError();
    if (stage == Authenticating)
        setUserName(user_);
    setStage(stage);
    if (stage == Running) {
        hoardTimer_.start();
        post([this] {
            auto fd = session_->openDisplay();
            if (fd.ok())
                onGui([this, f = *fd] { setDisplayFd(f); });
        });
    } else {
        hoardTimer_.stop();
    }
    if (stage == SignedOut)
        setProgress(0, 0, 0);
}

void SessionController::applyFailure(const session::Failure& f) {
    if (f.holder)
        setLock(QString::fromStdString(f.holder->kiosk),
                QDateTime::fromSecsSinceEpoch(f.holder->since));
    setError(toUi(f.stage), toUi(f.kind), QString::fromStdString(f.message));
}

void SessionController::signIn(const QString& user, const QString& password) {
    user_ = user;
    post([this, u = user.toStdString(), p = password.toStdString()] {
        if (!ensureSession())
            return;
        (void)session_->resume(u, p, parcel_.toStdString(), false);
    });
}

void SessionController::takeOver() {
    post([this] {
        if (session_)
            (void)session_->resume(session_->userName(), "", session_->parcelName(), true);
    });
}

void SessionController::cancel() {
    // A resume in progress blocks the worker: ask it to stop now (safe from
    // this thread), so Cancel does not wait for the whole memory image. The
    // abandon() queued behind it then finds nothing left, or wipes a session
    // that had already reached Running or Failed.
    {
        std::lock_guard lock(mutex_);
        if (session_)
            session_->requestCancel();
    }
    post([this] {
        if (session_) {
            (void)session_->abandon();
            return;
        }
        // No session could be created: nothing to wipe, back to sign-in
        // (without this the error page could never be left).
        onGui([this] {
            if (stage() == Failed) {
                clearError();
                setStage(SignedOut);
            }
        });
    });
}

void SessionController::suspendAndLeave() {
    post([this] {
        if (session_)
            (void)session_->suspendAndLeave();
    });
}

void SessionController::retry() {
    post([this] {
        if (session_)
            (void)session_->retry();
    });
}

void SessionController::acknowledge() {
    cancel();
}

void SessionController::reconnectDisplay() {
    post([this] {
        if (!session_ || session_->stage() != session::Stage::Running)
            return;
        auto fd = session_->openDisplay();
        if (fd.ok())
            onGui([this, f = *fd] { setDisplayFd(f); });
    });
}

} // namespace isr::ui
