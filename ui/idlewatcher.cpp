#include "idlewatcher.h"

#include <QCoreApplication>
#include <QEvent>
#include <cmath>

namespace isr::ui {

IdleWatcher::IdleWatcher(QObject* parent) : QObject(parent) {
    deadline_.setSingleShot(true);
    // Coarse timers may fire 5% early, which would show one second too many.
    deadline_.setTimerType(Qt::PreciseTimer);
    connect(&deadline_, &QTimer::timeout, this, &IdleWatcher::tick);
    if (QCoreApplication::instance())
        QCoreApplication::instance()->installEventFilter(this);
}

IdleWatcher::~IdleWatcher() {
    if (QCoreApplication::instance())
        QCoreApplication::instance()->removeEventFilter(this);
}

void IdleWatcher::setActive(bool active) {
    if (active == active_)
        return;
    active_ = active;
    if (active_) {
        restart();
    } else {
        deadline_.stop();
        setWarning(false);
    }
    emit activeChanged();
}

void IdleWatcher::setTimeoutMs(int ms) {
    if (ms == timeoutMs_ || ms <= 0)
        return;
    timeoutMs_ = ms;
    emit configChanged();
    if (active_)
        restart();
}

void IdleWatcher::setWarningMs(int ms) {
    if (ms == warningMs_ || ms < 0)
        return;
    warningMs_ = ms;
    emit configChanged();
    if (active_)
        restart();
}

void IdleWatcher::poke() {
    if (active_)
        restart();
}

bool IdleWatcher::eventFilter(QObject* watched, QEvent* event) {
    switch (event->type()) {
    case QEvent::KeyPress:
    case QEvent::KeyRelease:
    case QEvent::MouseButtonPress:
    case QEvent::MouseButtonRelease:
    case QEvent::MouseMove:
    case QEvent::Wheel:
    case QEvent::TouchBegin:
    case QEvent::TouchUpdate:
    case QEvent::TouchEnd:
        if (resetByInput_)
            poke();
        break;
    default:
        break;
    }
    return QObject::eventFilter(watched, event);
}

void IdleWatcher::restart() {
    fired_ = false;
    quietFor_.start();
    setWarning(false);
    deadline_.start(std::max(0, timeoutMs_ - warningMs_));
}

void IdleWatcher::tick() {
    if (!active_ || fired_)
        return;
    const qint64 left = timeoutMs_ - quietFor_.elapsed();
    if (left <= 0) {
        fired_ = true;
        setWarning(false);
        emit timedOut();
        return;
    }
    // The count first, so the warning never shows a stale number.
    const int seconds = int(std::ceil(left / 1000.0));
    if (seconds != remainingSeconds_) {
        remainingSeconds_ = seconds;
        emit remainingSecondsChanged();
    }
    setWarning(true);
    // Wake at the next whole second of the countdown, or at the end.
    const qint64 toNextSecond = left - (seconds - 1) * 1000;
    deadline_.start(int(std::clamp<qint64>(toNextSecond, 1, left)));
}

void IdleWatcher::setWarning(bool warning) {
    if (warning == warning_)
        return;
    warning_ = warning;
    emit warningChanged();
}

} // namespace isr::ui
