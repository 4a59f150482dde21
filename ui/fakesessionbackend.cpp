#include "fakesessionbackend.h"

#include <QMetaObject>
#include <QtGlobal>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace isr::ui {

namespace {
constexpr int kStepsPerStage = 4;
constexpr int kHoardSteps = 8;

// The cause core/session names for a failure of `kind` at `stage`.
session::Failure failureFor(session::Stage stage, session::ErrorKind kind) {
    using session::ErrorKind;
    using session::FailureCause;
    using session::Stage;
    session::Failure f;
    f.stage = stage;
    f.kind = kind;
    switch (kind) {
    case ErrorKind::WrongCredentials:
        f.cause = FailureCause::WrongCredentials;
        break;
    case ErrorKind::StoreUnreachable:
        f.cause = FailureCause::StoreUnreachable;
        break;
    case ErrorKind::LockedElsewhere:
        f.cause = FailureCause::LockedElsewhere;
        break;
    case ErrorKind::Corrupt:
        f.cause = FailureCause::DamagedVersion;
        break;
    case ErrorKind::NoSpace:
        f.cause = FailureCause::KioskStorage;
        f.where = stage == Stage::Suspending ? "/dev/shm" : "/var/lib/isr";
        f.freeBytes = 3ull << 20;
        break;
    case ErrorKind::VmFailed:
        f.cause = stage == Stage::Running      ? FailureCause::VmStopped
                  : stage == Stage::Restoring  ? FailureCause::VmRestore
                  : stage == Stage::Suspending ? FailureCause::SaveFailed
                                               : FailureCause::VmStart;
        break;
    case ErrorKind::None:
    case ErrorKind::Internal:
        break;
    }
    f.detail = std::string("injected by FakeSessionBackend: ") + session::errorKindName(kind);
    return f;
}

} // namespace

FakeSessionBackend::FakeSessionBackend(QObject* parent) : SessionBackend(parent) {
    connect(&stepTimer_, &QTimer::timeout, this, &FakeSessionBackend::step);
}

void FakeSessionBackend::addUser(const QString& user, const QString& password) {
    User& u = users_[user];
    u.password = password;
    if (u.lastSave.version == 0)
        u.lastSave = {1, QDateTime::currentSecsSinceEpoch() - 24 * 3600, "kiosk-1"};
}

void FakeSessionBackend::lockParcel(const QString& user, const QString& holder,
                                    const QDateTime& since) {
    users_[user].lockHolder = holder;
    users_[user].lockSince = since;
}

void FakeSessionBackend::setLastSave(const QString& user, qint64 version, const QDateTime& saved,
                                     const QString& kiosk) {
    users_[user].lastSave = {std::uint64_t(version), saved.toSecsSinceEpoch(), kiosk.toStdString()};
}

void FakeSessionBackend::failAt(const QString& user, Stage stage, ErrorKind kind) {
    if (kind == None) {
        users_[user].failure.reset();
        return;
    }
    failWith(user, failureFor(toCore(stage), toCore(kind)));
}

void FakeSessionBackend::failWith(const QString& user, const session::Failure& failure) {
    users_[user].failure = failure;
}

void FakeSessionBackend::holdHoard(ErrorKind problem) {
    hoard_.problem = toCore(problem);
    publishHoard();
}

void FakeSessionBackend::publishHoard() {
    setHoard(hoard_);
}

void FakeSessionBackend::setStepIntervalMs(int ms) {
    if (ms == stepIntervalMs())
        return;
    if (ms > 0)
        stepTimer_.start(ms);
    else
        stepTimer_.stop();
    emit stepIntervalMsChanged();
}

void FakeSessionBackend::transition(Stage to) {
    if (!isLegalTransition(stage(), to))
        qFatal("FakeSessionBackend: illegal stage transition %s -> %s",
               qPrintable(stageName(stage())), qPrintable(stageName(to)));
    if (to != Failed)
        clearError();
    setProgress(0, 0, 0);
    setStage(to);
}

void FakeSessionBackend::fail(session::Failure failure) {
    // Past sign-in the core knows the user's last committed version.
    const auto it = users_.constFind(currentUser_);
    if (!failure.lastSave && it != users_.constEnd() &&
        failure.stage != session::Stage::SignedOut &&
        failure.stage != session::Stage::Authenticating && it->lastSave.version > 0)
        failure.lastSave = it->lastSave;
    setFailure(failure);
    transition(Failed);
}

void FakeSessionBackend::stepBytes(qint64 total, Stage next) {
    const double secondsPerStep = stepIntervalMs() > 0 ? stepIntervalMs() / 1000.0 : 0.25;
    const qint64 done = std::min(total, bytesDone() + total / kStepsPerStage);
    if (done >= total && bytesDone() >= total) {
        if (next == Running)
            enterRunning();
        else
            transition(next);
        return;
    }
    setProgress(done, total, double(total / kStepsPerStage) / secondsPerStep);
}

void FakeSessionBackend::enterRunning() {
    // As SessionController does: the display is open before Running shows.
    if (UniqueFd fd = connectDisplay(); fd.valid())
        display()->offerAhead(std::move(fd));
    transition(Running);
}

void FakeSessionBackend::step() {
    const Stage current = stage();
    if (current == SignedOut || current == Failed)
        return;
    User* user = users_.contains(currentUser_) ? &users_[currentUser_] : nullptr;
    if (user && user->failure && fromCore(user->failure->stage) == current) {
        session::Failure f = *user->failure;
        user->failure.reset(); // once
        fail(std::move(f));
        return;
    }
    switch (current) {
    case Authenticating:
        if (!user || user->password != attemptedPassword_) {
            attemptedPassword_.clear();
            takingOver_ = false;
            fail(failureFor(session::Stage::Authenticating, session::ErrorKind::WrongCredentials));
        } else {
            if (takingOver_)
                user->lockHolder.clear(); // the take-over, after the password
            takingOver_ = false;
            transition(CheckingOut);
        }
        break;
    case CheckingOut:
        if (!user->lockHolder.isEmpty()) {
            session::Failure f =
                failureFor(session::Stage::CheckingOut, session::ErrorKind::LockedElsewhere);
            parcel::LockInfo holder;
            holder.kiosk = user->lockHolder.toStdString();
            holder.since = user->lockSince.toSecsSinceEpoch();
            holder.heartbeat = holder.since;
            f.holder = holder;
            fail(std::move(f));
        } else {
            hoard_.chunksDone = 0;
            hoard_.chunksTotal = std::uint64_t(hoardChunks_);
            publishHoard();
            setResumingFrom(user->lastSave); // as the core announces the checked version
            transition(Fetching);
        }
        break;
    case Fetching:
        // The hoard starts with the memory image.
        if (hoard_.problem == session::ErrorKind::None)
            hoard_.chunksDone = std::min<std::uint64_t>(
                hoard_.chunksTotal,
                hoard_.chunksDone + std::uint64_t(hoardChunks_) / (2 * kHoardSteps));
        publishHoard();
        stepBytes(memoryImageBytes_, Restoring);
        break;
    case Restoring:
        stepBytes(memoryImageBytes_, Running);
        break;
    case Running:
        if (hoard_.problem == session::ErrorKind::None)
            hoard_.chunksDone = std::min<std::uint64_t>(
                hoard_.chunksTotal, hoard_.chunksDone + std::uint64_t(hoardChunks_) / kHoardSteps);
        publishHoard();
        break;
    case Suspending:
        stepBytes(uploadBytes_, Wiping);
        if (stage() == Wiping && user) // committed: the new last save
            user->lastSave = {user->lastSave.version + 1, QDateTime::currentSecsSinceEpoch(),
                              kioskId_.toStdString()};
        break;
    case Wiping:
        currentUser_.clear();
        attemptedPassword_.clear();
        setUserName({});
        hoard_ = {};
        publishHoard();
        transition(SignedOut);
        break;
    case SignedOut:
    case Failed:
        break;
    }
}

SessionBackend::Stage FakeSessionBackend::stepToNextStage(int maxSteps) {
    const Stage start = stage();
    for (int i = 0; i < maxSteps && stage() == start; ++i)
        step();
    return stage();
}

UniqueFd FakeSessionBackend::connectDisplay() {
    if (displaySocket_.isEmpty())
        return UniqueFd();
    const QByteArray path = displaySocket_.toLocal8Bit();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (size_t(path.size()) >= sizeof addr.sun_path) {
        qWarning("FakeSessionBackend: display socket path too long");
        return UniqueFd();
    }
    std::memcpy(addr.sun_path, path.constData(), size_t(path.size()));
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return fd;
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        qWarning("FakeSessionBackend: cannot connect to display socket %s", path.constData());
        return UniqueFd();
    }
    return fd;
}

void FakeSessionBackend::openDisplay() {
    // Without a socket there is no screen to show: no answer, so the page
    // keeps saying "Its screen appears here" rather than an error.
    if (displaySocket_.isEmpty())
        return;
    UniqueFd fd = connectDisplay();
    if (fd.valid())
        display()->offer(std::move(fd));
    else
        display()->refuse(tr("cannot connect to %1").arg(displaySocket_));
}

void FakeSessionBackend::signIn(const QString& user, const QString& password) {
    const bool again = stage() == Failed && failedStage() == Authenticating;
    if (stage() != SignedOut && !again) {
        qWarning("FakeSessionBackend: signIn ignored in stage %s", qPrintable(stageName(stage())));
        return;
    }
    currentUser_ = user;
    attemptedPassword_ = password;
    setUserName(user);
    transition(Authenticating);
}

// As Session::resume(..., takeOver): a fresh sign-in, the password checked
// before the lock is touched.
void FakeSessionBackend::takeOver(const QString& password) {
    if (stage() != Failed || errorKind() != LockedElsewhere)
        return;
    attemptedPassword_ = password;
    takingOver_ = true;
    transition(Authenticating);
}

void FakeSessionBackend::cancel() {
    switch (stage()) {
    case Authenticating:
        transition(SignedOut);
        break;
    case CheckingOut:
    case Fetching:
        transition(Wiping);
        break;
    case Failed:
        acknowledge();
        break;
    default:
        break;
    }
}

void FakeSessionBackend::suspendAndLeave() {
    if (stage() == Running)
        transition(Suspending);
}

void FakeSessionBackend::retry(const QString& password) {
    if (stage() != Failed || !canRetry())
        return;
    const Stage failed = failedStage();
    if (failed == Wiping) {
        transition(failed); // finishing a wipe needs no password
        return;
    }
    if (failed == Suspending) {
        // The saved state is still here: finish it, the password checked
        // first (a wrong one changes nothing), as Session::retry does.
        if (!users_.contains(currentUser_) || users_[currentUser_].password != password) {
            emit passwordRefused();
            return;
        }
        transition(failed);
        return;
    }
    // Session::retry(password) holds no keys any more: it signs in afresh
    // and resumes the last committed version, stage by stage.
    attemptedPassword_ = password;
    transition(Authenticating);
}

void FakeSessionBackend::checkPassword(const QString& password) {
    const auto it = users_.constFind(currentUser_);
    const ErrorKind problem = stage() == Running ? passwordCheckProblem_ : Internal;
    const bool right = problem == None && it != users_.constEnd() && it->password == password;
    QMetaObject::invokeMethod(
        this, [this, right, problem] { emit passwordChecked(right, problem); },
        Qt::QueuedConnection);
}

void FakeSessionBackend::acknowledge() {
    if (stage() != Failed)
        return;
    if (failedStage() == Authenticating || failedStage() == CheckingOut) {
        currentUser_.clear();
        attemptedPassword_.clear();
        setUserName({});
        transition(SignedOut);
    } else {
        transition(Wiping);
    }
}

} // namespace isr::ui
