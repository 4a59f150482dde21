#include "kioskwindow.h"

#include <QQuickWindow>
#include <QUrl>

namespace isr::ui {

bool showKioskWindow(QQmlApplicationEngine& engine, const KioskOptions& options) {
    engine.addImportPath(QStringLiteral("qrc:/qt/qml"));
    engine.setInitialProperties({
        {"fullScreenWanted", !options.windowed},
        {"demoMode", options.demo},
    });
    engine.load(QUrl(QStringLiteral("qrc:/qt/qml/Isr/Ui/Main.qml")));
    if (engine.rootObjects().isEmpty())
        return false;
    return qobject_cast<QQuickWindow*>(engine.rootObjects().constFirst()) != nullptr;
}

} // namespace isr::ui
