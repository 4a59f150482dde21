// isr-kiosk: the fullscreen walk-up shell. Thin: parse options, load the
// Isr.Ui QML module, run the event loop.
#include <QCommandLineParser>
#include <QGuiApplication>
#include <QQmlApplicationEngine>
#include <QtQml/qqmlextensionplugin.h>

#include "kioskwindow.h"
#include "util/version.h"

Q_IMPORT_QML_PLUGIN(Isr_UiPlugin)

int main(int argc, char** argv) {
    QGuiApplication app(argc, argv);
    QGuiApplication::setApplicationName(QStringLiteral("isr-kiosk"));
    QGuiApplication::setApplicationVersion(QString::fromLatin1(isr::kVersion));

    QCommandLineParser parser;
    parser.setApplicationDescription(
        QStringLiteral("Internet Suspend/Resume kiosk: sign in and resume your computer."));
    parser.addHelpOption();
    parser.addVersionOption();
    QCommandLineOption windowed(QStringLiteral("windowed"),
                                QStringLiteral("Run in a normal window (development only)."));
    QCommandLineOption demo(QStringLiteral("demo"),
                            QStringLiteral("Demo mode: show the demo credentials at sign-in."));
    parser.addOption(windowed);
    parser.addOption(demo);
    parser.process(app);

    QQmlApplicationEngine engine;
    isr::ui::KioskOptions options;
    options.windowed = parser.isSet(windowed);
    options.demo = parser.isSet(demo);
    if (!isr::ui::showKioskWindow(engine, options))
        return 1;
    return QGuiApplication::exec();
}
