#include "fakesessionbackend.h"

#include <QtGlobal>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace isr::ui {

namespace {
constexpr int kStepsPerStage = 4;
constexpr int kHoardSteps = 8;
} // namespace

FakeSessionBackend::FakeSessionBackend(QObject* parent) : SessionBackend(parent) {
    connect(&stepTimer_, &QTimer::timeout, this, &FakeSessionBackend::step);
}

void FakeSessionBackend::addUser(const QString& user, const QString& password) {
    users_[user].password = password;
}

void FakeSessionBackend::lockParcel(const QString& user, const QString& holder,
                                    const QDateTime& since) {
    users_[user].lockHolder = holder;
    users_[user].lockSince = since;
}

void FakeSessionBackend::failAt(const QString& user, Stage stage, ErrorKind kind) {
    users_[user].failStage = stage;
    users_[user].failKind = kind;
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

void FakeSessionBackend::fail(ErrorKind kind) {
    setError(stage(), kind, defaultMessage(kind));
    transition(Failed);
}

void FakeSessionBackend::stepBytes(qint64 total, Stage next) {
    const double secondsPerStep = stepIntervalMs() > 0 ? stepIntervalMs() / 1000.0 : 0.25;
    const qint64 done = std::min(total, bytesDone() + total / kStepsPerStage);
    if (done >= total && bytesDone() >= total) {
        transition(next);
        return;
    }
    setProgress(done, total, double(total / kStepsPerStage) / secondsPerStep);
}

void FakeSessionBackend::step() {
    const Stage current = stage();
    if (current == SignedOut || current == Failed)
        return;
    User* user = users_.contains(currentUser_) ? &users_[currentUser_] : nullptr;
    if (user && user->failKind != None && user->failStage == current) {
        const ErrorKind kind = user->failKind;
        user->failKind = None; // once
        fail(kind);
        return;
    }
    switch (current) {
    case Authenticating:
        if (!user || user->password != attemptedPassword_) {
            attemptedPassword_.clear();
            fail(WrongCredentials);
        } else {
            transition(CheckingOut);
        }
        break;
    case CheckingOut:
        if (!user->lockHolder.isEmpty()) {
            setLock(user->lockHolder, user->lockSince);
            setError(CheckingOut, LockedElsewhere, defaultMessage(LockedElsewhere));
            transition(Failed);
        } else {
            setHoard(0, hoardChunks_);
            transition(Fetching);
        }
        break;
    case Fetching:
        // The hoard starts with the memory image.
        setHoard(std::min(hoardChunks_, hoardChunksCached() + hoardChunks_ / (2 * kHoardSteps)),
                 hoardChunks_);
        stepBytes(memoryImageBytes_, Restoring);
        break;
    case Restoring:
        stepBytes(memoryImageBytes_, Running);
        if (stage() == Running)
            openDisplay();
        break;
    case Running:
        setHoard(std::min(hoardChunks_, hoardChunksCached() + hoardChunks_ / kHoardSteps),
                 hoardChunks_);
        break;
    case Suspending:
        stepBytes(uploadBytes_, Wiping);
        break;
    case Wiping:
        currentUser_.clear();
        attemptedPassword_.clear();
        setUserName({});
        setHoard(0, 0);
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

void FakeSessionBackend::openDisplay() {
    if (displaySocket_.isEmpty())
        return;
    const QByteArray path = displaySocket_.toLocal8Bit();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (size_t(path.size()) >= sizeof addr.sun_path) {
        qWarning("FakeSessionBackend: display socket path too long");
        return;
    }
    std::memcpy(addr.sun_path, path.constData(), size_t(path.size()));
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        qWarning("FakeSessionBackend: cannot connect to display socket %s", path.constData());
        ::close(fd);
        return;
    }
    setDisplayFd(fd);
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

void FakeSessionBackend::takeOver() {
    if (stage() != Failed || errorKind() != LockedElsewhere)
        return;
    users_[currentUser_].lockHolder.clear();
    transition(CheckingOut);
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

void FakeSessionBackend::retry() {
    if (stage() != Failed || !canRetry())
        return;
    // A VM that died while running is restored again from what was fetched.
    transition(failedStage() == Running ? Restoring : failedStage());
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
