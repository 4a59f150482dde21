#include "logindinhibitor.h"

#include <QDBusConnection>
#include <QDBusError>
#include <QDBusMessage>
#include <QDBusPendingCallWatcher>
#include <QDBusPendingReply>
#include <cerrno> // program_invocation_short_name
#include <cstdio>

namespace isr::ui {

namespace {
const QString kService = QStringLiteral("org.freedesktop.login1");
const QString kPath = QStringLiteral("/org/freedesktop/login1");
const QString kManager = QStringLiteral("org.freedesktop.login1.Manager");
} // namespace

LogindInhibitor::LogindInhibitor(QObject* parent) : QObject(parent) {
    QDBusConnection bus = QDBusConnection::systemBus();
    if (!bus.isConnected()) {
        unavailable(QStringLiteral("no system bus (%1)").arg(bus.lastError().message()));
        return;
    }
    available_ = true;
    bus.connect(kService, kPath, kManager, QStringLiteral("PrepareForShutdown"), this,
                SLOT(onPrepareForShutdown(bool)));
    bus.connect(kService, kPath, kManager, QStringLiteral("PrepareForSleep"), this,
                SLOT(onPrepareForSleep(bool)));
}

LogindInhibitor::~LogindInhibitor() = default;

void LogindInhibitor::unavailable(const QString& why) {
    available_ = false;
    if (logged_)
        return;
    logged_ = true;
    std::fprintf(stderr, "%s: no logind inhibitor: %s; a shutdown will not wait for the save\n",
                 program_invocation_short_name, qPrintable(why));
}

void LogindInhibitor::hold() {
    wanted_ = true;
    if (!available_ || pending_ || fd_.isValid())
        return;
    pending_ = true;
    QDBusMessage call =
        QDBusMessage::createMethodCall(kService, kPath, kManager, QStringLiteral("Inhibit"));
    call << QStringLiteral("shutdown:sleep") << QStringLiteral("isr-kiosk")
         << QStringLiteral("Saving the user's computer to the store first")
         << QStringLiteral("delay");
    auto* watcher = new QDBusPendingCallWatcher(QDBusConnection::systemBus().asyncCall(call), this);
    connect(watcher, &QDBusPendingCallWatcher::finished, this, [this](QDBusPendingCallWatcher* w) {
        w->deleteLater();
        pending_ = false;
        QDBusPendingReply<QDBusUnixFileDescriptor> reply = *w;
        if (reply.isError()) {
            unavailable(reply.error().message());
            return;
        }
        if (wanted_)
            fd_ = reply.value(); // held while open
        // else: released meanwhile; the reply's fd closes with it.
    });
}

void LogindInhibitor::release() {
    wanted_ = false;
    fd_ = QDBusUnixFileDescriptor(); // closes our copy: logind lets the shutdown go on
}

void LogindInhibitor::onPrepareForShutdown(bool starting) {
    if (starting)
        emit shutdownAnnounced(true);
    else
        emit announcementWithdrawn();
}

void LogindInhibitor::onPrepareForSleep(bool starting) {
    if (starting)
        emit shutdownAnnounced(false);
    else
        emit announcementWithdrawn();
}

} // namespace isr::ui
