#include "sessioncontroller.h"

#include "crypto/crypto.h"
#include "session/kioskconfig.h"

#include <QMetaObject>

namespace isr::ui {

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
        if (session_)
            setHoard(session_->hoard());
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
        jobs_.push_back([this] {
            std::unique_ptr<session::Session> gone;
            {
                std::lock_guard lock(mutex_);
                gone = std::move(session_);
            }
        });
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
    listener.stageChanged = [this](session::Stage s) {
        // Running is announced by announceRunning(), once the display is open.
        if (s != session::Stage::Running)
            onGui([this, s] { applyStage(s); });
    };
    listener.progress = [this](const session::Progress& p) {
        onGui([this, p] { setProgress(qint64(p.done), qint64(p.total), p.bytesPerSecond); });
    };
    listener.failed = [this](const session::Failure& f) { onGui([this, f] { applyFailure(f); }); };
    listener.resuming = [this](const session::SavedVersion& v) {
        onGui([this, v] { setResumingFrom(v); });
    };
    auto created = session::Session::create(config_, listener);
    if (!created.ok()) {
        session::Failure f;
        f.stage = session::Stage::Authenticating;
        f.kind = session::ErrorKind::Internal;
        f.detail = "This kiosk cannot start sessions: " + created.error().describe();
        if (auto host = session::checkKioskHost(config_); !host.ok()) { // unencrypted swap
            f.cause = session::FailureCause::UnsafeKiosk;
            f.where = session::unsafeSwapAreas();
        }
        // Through Authenticating, as a session would: SignedOut -> Failed is
        // not a legal transition.
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

void SessionController::announceRunning() {
    if (!session_ || session_->stage() != session::Stage::Running)
        return;
    // The display first, so the running page has a screen the moment it
    // shows. If it cannot be opened now, Running is announced anyway and the
    // display item asks again (with backoff) through the display source.
    auto opened = session_->openDisplay();
    std::shared_ptr<UniqueFd> fd =
        std::make_shared<UniqueFd>(opened.ok() ? *opened : -1); // closed if never delivered
    onGui([this, fd] {
        // The VM watcher may have reported the VM gone in the meantime
        // (Restoring -> Failed already shown, or its failure already here
        // with the stage change on its way): then there is no Running.
        if (failure() || !isLegalTransition(stage(), Running))
            return;
        display()->offerAhead(std::move(*fd));
        applyStage(session::Stage::Running);
    });
}

void SessionController::applyStage(session::Stage s) {
    const Stage stage = fromCore(s);
    if (stage != Failed)
        clearError();
    if (stage == Authenticating)
        setUserName(user_);
    setStage(stage);
    if (stage == Running)
        hoardTimer_.start();
    else
        hoardTimer_.stop();
    if (stage == SignedOut) {
        setProgress(0, 0, 0);
        setHoard({});
        setUserName({}); // nothing of the last user stays on screen
    }
}

void SessionController::applyFailure(const session::Failure& f) {
    setFailure(f);
}

void SessionController::openDisplay() {
    post([this] {
        if (!session_ || session_->stage() != session::Stage::Running) {
            onGui([this] { display()->refuse(tr("your computer is not running")); });
            return;
        }
        auto opened = session_->openDisplay();
        if (!opened.ok()) {
            onGui([this, why = QString::fromStdString(opened.error().describe())] {
                display()->refuse(why);
            });
            return;
        }
        auto fd = std::make_shared<UniqueFd>(*opened);
        onGui([this, fd] { display()->offer(std::move(*fd)); });
    });
}

namespace {
// A typed password as the worker gets it (sign-in, take-over, retry, the
// lock screen): UTF-8 in a Secret (sodium_malloc'ed, mlocked, wiped when the
// job is done), never a std::string; the UTF-8 copy made here is wiped at
// once. The QString is QML's: its field is cleared before the call, and Qt
// frees its buffer unwiped (README "Secrets in memory").
std::shared_ptr<crypto::Secret> typedPassword(const QString& password) {
    QByteArray utf8 = password.toUtf8();
    auto secret = std::make_shared<crypto::Secret>(crypto::Secret::copyOf(
        asBytes(std::string_view(utf8.constData(), std::size_t(utf8.size())))));
    crypto::wipe(
        MutableByteView(reinterpret_cast<std::uint8_t*>(utf8.data()), std::size_t(utf8.size())));
    return secret;
}
} // namespace

void SessionController::signIn(const QString& user, const QString& password) {
    if (shuttingDown())
        return; // the kiosk is going away: no new session
    user_ = user;
    post([this, u = user.toStdString(), p = typedPassword(password)] {
        if (!ensureSession())
            return;
        (void)session_->resume(u, asString(p->view()), parcel_.toStdString(), false);
        announceRunning();
    });
}

// The password again: Session::resume signs in afresh and checks it before
// it touches the lock (a wrong one fails the sign-in, the lock untouched).
void SessionController::takeOver(const QString& password) {
    post([this, p = typedPassword(password)] {
        if (!session_)
            return;
        auto st = session_->resume(session_->userName(), asString(p->view()),
                                   session_->parcelName(), true);
        if (!st.ok() && st.error().code == Errc::AuthFailed &&
            session_->stage() == session::Stage::Failed &&
            session_->failure()->cause != session::FailureCause::WrongCredentials)
            onGui([this] { emit passwordRefused(); });
        announceRunning();
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

void SessionController::retry(const QString& password) {
    post([this, p = typedPassword(password)] {
        if (!session_)
            return;
        auto st = session_->retry(asString(p->view()));
        // A failed suspend kept for its retry refuses a wrong password and
        // stays as it was: say so (a fresh sign-in reports its own failure).
        if (!st.ok() && st.error().code == Errc::AuthFailed &&
            session_->stage() == session::Stage::Failed &&
            session_->failure()->cause != session::FailureCause::WrongCredentials)
            onGui([this] { emit passwordRefused(); });
        announceRunning();
    });
}

void SessionController::acknowledge() {
    cancel();
}

// The lock screen's check, the password in a Secret (typedPassword).
// Argon2id runs on the worker, as at sign-in, so the GUI keeps painting; it
// queues behind nothing else while Running.
void SessionController::checkPassword(const QString& password) {
    auto secret = typedPassword(password);
    post([this, secret] {
        Status checked = session_ ? session_->checkPassword(asString(secret->view()))
                                  : Status(Error(Errc::InvalidArgument, "no session to unlock"));
        const bool right = checked.ok();
        const ErrorKind problem = right || checked.error().code == Errc::AuthFailed
                                      ? None
                                      : fromCore(session::classify(checked.error()));
        onGui([this, right, problem] { emit passwordChecked(right, problem); });
    });
}

void SessionController::setScreenSize(std::uint32_t width, std::uint32_t height) {
    // config_ belongs to the worker (ensureSession reads it there).
    post([this, width, height] {
        config_.desktop.screenWidth = width;
        config_.desktop.screenHeight = height;
    });
}

void SessionController::kioskStopping(bool stopping) {
    setShuttingDown(stopping);
    if (!stopping)
        return;
    // A resume in progress stops at its next step (as Cancel does); nothing
    // happens to a session in any other stage.
    {
        std::lock_guard lock(mutex_);
        if (session_)
            session_->requestCancel();
    }
    // Decided on the worker, behind whatever is running there, by the core's
    // stage (the GUI may not show Running yet while the display opens).
    post([this] {
        if (!session_) {
            onGui([this] {
                if (stage() == Failed) { // no session could be created
                    clearError();
                    setStage(SignedOut);
                }
            });
            return;
        }
        switch (session_->stage()) {
        case session::Stage::SignedOut:
            return;
        case session::Stage::Running:
            (void)session_->suspendAndLeave();
            return;
        default:
            // Failed (also a failed save: its image is dropped, the last
            // commit stands) or a resume that ended otherwise: wipe, unlock.
            (void)session_->abandon();
            return;
        }
    });
}

} // namespace isr::ui
