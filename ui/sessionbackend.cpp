#include "sessionbackend.h"

#include <QMetaEnum>
#include <unistd.h>

namespace isr::ui {

SessionBackend::SessionBackend(QObject* parent) : QObject(parent) {}

SessionBackend::~SessionBackend() {
    if (displayFd_ >= 0)
        ::close(displayFd_);
}

bool SessionBackend::isLegalTransition(Stage from, Stage to) {
    switch (from) {
    case SignedOut:
        return to == Authenticating;
    case Authenticating:
        return to == CheckingOut || to == Failed || to == SignedOut;
    case CheckingOut:
        return to == Fetching || to == Failed || to == Wiping;
    case Fetching:
        return to == Restoring || to == Failed || to == Wiping;
    case Restoring:
        return to == Running || to == Failed;
    case Running:
        return to == Suspending || to == Failed;
    case Suspending:
        return to == Wiping || to == Failed;
    case Wiping:
        return to == SignedOut || to == Failed;
    case Failed:
        return to == Authenticating || to == CheckingOut || to == Fetching || to == Restoring ||
               to == Suspending || to == Wiping || to == SignedOut;
    }
    return false;
}

QString SessionBackend::stageName(Stage stage) {
    return QString::fromLatin1(QMetaEnum::fromType<Stage>().valueToKey(stage));
}

QString SessionBackend::defaultMessage(ErrorKind kind) {
    switch (kind) {
    case None:
        return {};
    case WrongCredentials:
        return tr("The user name or password is not right. Check them and try again.");
    case StoreUnreachable:
        return tr("The kiosk cannot reach the place where your computer is stored. "
                  "Check that the kiosk is online and try again in a moment.");
    case LockedElsewhere:
        return tr("Your computer is open at another kiosk. Take it over here, or leave it "
                  "there.");
    case Corrupt:
        return tr("Part of your stored computer could not be read back intact. Nothing was "
                  "changed; please ask the kiosk's administrator for help.");
    case NoSpace:
        return tr("This kiosk has run out of space. Try again, or use another kiosk.");
    case VmFailed:
        return tr("Your computer could not be started on this kiosk. Try again; if it keeps "
                  "happening, use another kiosk.");
    case Internal:
        return tr("Something went wrong inside the kiosk. Try again; your saved work is safe.");
    }
    return {};
}

bool SessionBackend::canRetry() const {
    // Signing in again needs the password, which the kiosk does not keep:
    // the way on is "Back to sign-in".
    if (failedStage_ == Authenticating)
        return false;
    switch (errorKind_) {
    case StoreUnreachable:
    case NoSpace:
    case VmFailed:
    case Internal:
        return true;
    case None:
    case WrongCredentials: // the user types again on the sign-in page
    case LockedElsewhere:  // take over or cancel instead
    case Corrupt:          // retrying cannot fix it; an admin must
        return false;
    }
    return false;
}

int SessionBackend::takeDisplayFd() {
    const int fd = displayFd_;
    displayFd_ = -1;
    return fd;
}

void SessionBackend::setStage(Stage stage) {
    if (stage == stage_)
        return;
    stage_ = stage;
    emit stageChanged(stage);
}

void SessionBackend::setUserName(const QString& user) {
    userName_ = user;
}

void SessionBackend::setError(Stage failedStage, ErrorKind kind, const QString& message) {
    failedStage_ = failedStage;
    errorKind_ = kind;
    errorMessage_ = message;
    emit errorChanged();
}

void SessionBackend::clearError() {
    if (errorKind_ == None && errorMessage_.isEmpty() && lockHolder_.isEmpty())
        return;
    errorKind_ = None;
    errorMessage_.clear();
    lockHolder_.clear();
    lockSince_ = {};
    emit errorChanged();
}

void SessionBackend::setLock(const QString& holder, const QDateTime& since) {
    lockHolder_ = holder;
    lockSince_ = since;
    emit errorChanged();
}

void SessionBackend::setProgress(qint64 done, qint64 total, double rate) {
    bytesDone_ = done;
    bytesTotal_ = total;
    rate_ = rate;
    emit progressChanged();
}

void SessionBackend::setHoard(qint64 cached, qint64 total) {
    hoardCached_ = cached;
    hoardTotal_ = total;
    emit progressChanged();
}

void SessionBackend::setDisplayFd(int fd) {
    if (displayFd_ >= 0 && displayFd_ != fd)
        ::close(displayFd_);
    displayFd_ = fd;
    emit displayReady(fd);
}

} // namespace isr::ui
