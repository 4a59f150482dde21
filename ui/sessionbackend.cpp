#include "sessionbackend.h"

#include "failuretext.h"

#include <QMetaEnum>

namespace isr::ui {

// One stage table: QML's enums are the core's, value for value.
#define ISR_PIN_STAGE(name)                                                                        \
    static_assert(int(SessionBackend::name) == int(session::Stage::name), "Stage::" #name)
ISR_PIN_STAGE(SignedOut);
ISR_PIN_STAGE(Authenticating);
ISR_PIN_STAGE(CheckingOut);
ISR_PIN_STAGE(Fetching);
ISR_PIN_STAGE(Restoring);
ISR_PIN_STAGE(Running);
ISR_PIN_STAGE(Suspending);
ISR_PIN_STAGE(Wiping);
ISR_PIN_STAGE(Failed);
#undef ISR_PIN_STAGE
#define ISR_PIN_KIND(name)                                                                         \
    static_assert(int(SessionBackend::name) == int(session::ErrorKind::name), "ErrorKind::" #name)
ISR_PIN_KIND(None);
ISR_PIN_KIND(WrongCredentials);
ISR_PIN_KIND(StoreUnreachable);
ISR_PIN_KIND(LockedElsewhere);
ISR_PIN_KIND(Corrupt);
ISR_PIN_KIND(NoSpace);
ISR_PIN_KIND(VmFailed);
ISR_PIN_KIND(Internal);
#undef ISR_PIN_KIND

SessionBackend::SessionBackend(QObject* parent)
    : QObject(parent), display_(new DisplaySource(this)) {
    display_->setOpener([this] { openDisplay(); });
}

SessionBackend::~SessionBackend() = default;

bool SessionBackend::isLegalTransition(Stage from, Stage to) {
    return session::isLegalTransition(toCore(from), toCore(to));
}

QString SessionBackend::stageName(Stage stage) {
    return QString::fromLatin1(QMetaEnum::fromType<Stage>().valueToKey(stage));
}

QString SessionBackend::failureCauseName() const {
    return failure_ ? QString::fromLatin1(session::failureCauseName(failure_->cause)) : QString();
}

QString SessionBackend::errorDetail() const {
    if (!failure_)
        return {};
    return QString::fromStdString(failure_->detail);
}

QString SessionBackend::lockHolder() const {
    return failure_ && failure_->holder ? QString::fromStdString(failure_->holder->holderLabel())
                                        : QString();
}

QDateTime SessionBackend::lockSince() const {
    if (!failure_ || !failure_->holder)
        return {};
    return QDateTime::fromSecsSinceEpoch(failure_->holder->since).toLocalTime();
}

qint64 SessionBackend::lastSavedVersion() const {
    return failure_ && failure_->lastSave ? qint64(failure_->lastSave->version) : 0;
}

QDateTime SessionBackend::lastSavedAt() const {
    if (!failure_ || !failure_->lastSave || failure_->lastSave->created == 0)
        return {};
    return QDateTime::fromSecsSinceEpoch(failure_->lastSave->created).toLocalTime();
}

QString SessionBackend::lastSavedKiosk() const {
    return failure_ && failure_->lastSave ? QString::fromStdString(failure_->lastSave->kiosk)
                                          : QString();
}

bool SessionBackend::canRetry() const {
    // Signing in again needs the password, which the kiosk does not keep:
    // the way on is "Back to sign-in".
    if (failedStage() == Authenticating)
        return false;
    switch (errorKind()) {
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

void SessionBackend::setStage(Stage stage) {
    if (stage == stage_)
        return;
    stage_ = stage;
    // A new sign-in, or none: no version is being opened (yet).
    if ((stage == SignedOut || stage == Authenticating) && !resumingFrom_.isEmpty()) {
        resumingFrom_.clear();
        resumingFromVersion_.reset();
        emit resumingFromChanged();
    }
    emit stageChanged(stage);
    // After the stage: a display bound to the source sees Running first.
    display_->setAvailable(stage == Running);
}

void SessionBackend::setUserName(const QString& user) {
    userName_ = user;
}

void SessionBackend::setResumingFrom(const session::SavedVersion& saved) {
    resumingFrom_ = text::resumingFrom(saved);
    resumingFromVersion_ = saved;
    emit resumingFromChanged();
}

void SessionBackend::setFailure(const session::Failure& failure) {
    failure_ = failure;
    errorMessage_ = text::failure(failure);
    emit errorChanged();
}

void SessionBackend::clearError() {
    if (!failure_)
        return;
    failure_.reset();
    errorMessage_.clear();
    emit errorChanged();
}

void SessionBackend::setProgress(qint64 done, qint64 total, double rate) {
    bytesDone_ = done;
    bytesTotal_ = total;
    rate_ = rate;
    emit progressChanged();
}

void SessionBackend::setHoard(const session::HoardStatus& hoard) {
    hoardStatus_ = hoard;
    hoardCached_ = qint64(hoard.chunksDone);
    hoardTotal_ = qint64(hoard.chunksTotal);
    emit progressChanged();
    // The words depend on more than the kind (lazy memory still in the store).
    const ErrorKind kind = fromCore(hoard.problem);
    const QString words = text::hoardProblem(hoard);
    if (kind != hoardProblemKind_ || words != hoardProblem_) {
        hoardProblemKind_ = kind;
        hoardProblem_ = words;
        emit hoardProblemChanged();
    }
}

void SessionBackend::openDisplay() {
    display_->refuse(tr("this kiosk has no display to show"));
}

} // namespace isr::ui
