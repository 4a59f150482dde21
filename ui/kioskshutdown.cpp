#include "kioskshutdown.h"

#include "sessionbackend.h"

#include <QCoreApplication>
#include <cerrno> // program_invocation_short_name
#include <cstdio>

namespace isr::ui {

KioskShutdown::KioskShutdown(const QString& stateDir, int stopTimeoutSeconds, QObject* parent)
    : QObject(parent), signals_(stateDir, stopTimeoutSeconds) {
    connect(&signals_, &ShutdownSignals::stopRequested, this, [this] { stop(true); });
    connect(&inhibitor_, &LogindInhibitor::shutdownAnnounced, this, [this](bool shutdown) {
        std::fprintf(stderr, "%s: logind announced %s: saving the session\n",
                     program_invocation_short_name, shutdown ? "a shutdown" : "a suspend");
        stop(false);
    });
    connect(&inhibitor_, &LogindInhibitor::announcementWithdrawn, this, [this] {
        if (!quitWhenSignedOut_ && resumeSession_)
            resumeSession_();
    });
}

KioskShutdown::~KioskShutdown() = default;

void KioskShutdown::attach(SessionBackend* backend, std::function<void()> stopSession,
                           std::function<void()> resumeSession) {
    backend_ = backend;
    stopSession_ = std::move(stopSession);
    resumeSession_ = std::move(resumeSession);
    connect(backend, &SessionBackend::stageChanged, this, [this] { onStage(); });
    onStage();
}

void KioskShutdown::stop(bool quit) {
    if (quit)
        quitWhenSignedOut_ = true;
    if (!backend_ || !stopSession_) {
        if (quit)
            QCoreApplication::quit();
        return;
    }
    stopSession_();
    onStage();
}

void KioskShutdown::onStage() {
    if (!backend_)
        return;
    if (backend_->stage() != SessionBackend::SignedOut) {
        inhibitor_.hold();
        return;
    }
    inhibitor_.release();
    if (quitWhenSignedOut_)
        QCoreApplication::quit();
}

} // namespace isr::ui
