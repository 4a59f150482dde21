#include "kioskwindow.h"

#include "sessionbackend.h"

#include <QQuickWindow>
#include <QUrl>

namespace isr::ui {

bool showKioskWindow(QQmlApplicationEngine& engine, SessionBackend* backend,
                     const KioskOptions& options) {
    engine.addImportPath(QStringLiteral("qrc:/qt/qml"));
    engine.setInitialProperties({
        {"backend", QVariant::fromValue(backend)},
        {"fullScreenWanted", !options.windowed},
        {"demoMode", options.demo},
        {"idleTimeoutSeconds", options.idleTimeoutSeconds},
        {"idleWarningSeconds", options.idleWarningSeconds},
        {"lockTimeoutSeconds", options.lockTimeoutSeconds},
        {"leaveNoticeSeconds", options.leaveNoticeSeconds},
        {"failureIdleSeconds", options.failureIdleSeconds},
        {"virtualKeyboard", options.virtualKeyboard},
    });
    engine.load(QUrl(QStringLiteral("qrc:/qt/qml/Isr/Ui/Main.qml")));
    if (engine.rootObjects().isEmpty())
        return false;
    return qobject_cast<QQuickWindow*>(engine.rootObjects().constFirst()) != nullptr;
}

} // namespace isr::ui
