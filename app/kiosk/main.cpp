// isr-kiosk: the fullscreen walk-up shell. Thin: parse options, pick the
// session backend, load the Isr.Ui QML module, run the event loop.
#include "escapechord.h"
#include "fakesessionbackend.h"
#include "inputdevices.h"
#include "kioskshutdown.h"
#include "kioskwindow.h"
#include "remotesessionbackend.h"
#include "session/kiosk_status.h"
#include "session/kioskconfig.h"
#include "sessioncontroller.h"
#include "sessionoptions.h"
#include "util/hardening.h"
#include "util/version.h"

#include <QCommandLineParser>
#include <QDateTime>
#include <QGuiApplication>
#include <QQmlApplicationEngine>
#include <QScreen>
#include <QtQml/qqmlextensionplugin.h>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>

Q_IMPORT_QML_PLUGIN(Isr_UiPlugin)

namespace {

// The --fake-backend demo: the whole flow without VMs or a store.
void scriptDemo(isr::ui::FakeSessionBackend& fake) {
    using B = isr::ui::SessionBackend;
    fake.addUser(QStringLiteral("demo"), QStringLiteral("demo"));
    fake.addUser(QStringLiteral("busy"), QStringLiteral("busy"));
    fake.lockParcel(QStringLiteral("busy"), QStringLiteral("kiosk-3 (library, 2nd floor)"),
                    QDateTime::currentDateTime().addSecs(-2 * 3600));
    fake.addUser(QStringLiteral("offline"), QStringLiteral("offline"));
    fake.failAt(QStringLiteral("offline"), B::Fetching, B::StoreUnreachable);
    fake.setStepIntervalMs(500);
}

// How long a stop (SIGTERM, SIGINT, SIGHUP) may take before the kiosk ends
// itself hard. Below the unit's TimeoutStopSec and logind's
// InhibitDelayMaxSec (packaging/README.md, "Stopping a kiosk").
constexpr int kDefaultStopTimeoutSeconds = 90;

int runKiosk(int argc, char** argv);

} // namespace

// A stop signal ends the kiosk after the session is saved (or cancelled) and
// everything is torn down: the Session's destructor destroys its VM. Then the
// process dies of that same signal, as it would without a handler, so a
// shell sees 143 and systemd a clean "terminated by SIGTERM".
int main(int argc, char** argv) {
    (void)isr::hardening::disableCoreDumps(); // keys and plaintext: no core file, no ptrace
    return isr::ui::ShutdownSignals::endWithFirstSignal(runKiosk(argc, argv));
}

namespace {

int runKiosk(int argc, char** argv) {
    isr::session::KioskFile file = isr::ui::loadKioskConfig("isr-kiosk", argc, argv);
    // The virtual keyboard must be chosen before the application exists.
    // The configuration's choice (default auto: only when no hardware
    // keyboard is attached), overridden by --[no-]virtual-keyboard.
    using Osk = isr::session::KioskUiOptions::OnScreenKeyboard;
    Osk osk = file.ui.virtualKeyboard;
    for (int i = 1; i < argc; ++i) {
        if (qstrcmp(argv[i], "--virtual-keyboard") == 0)
            osk = Osk::Always;
        else if (qstrcmp(argv[i], "--no-virtual-keyboard") == 0)
            osk = Osk::Never;
    }
    const bool wantKeyboard =
        osk == Osk::Always || (osk == Osk::Auto && !isr::ui::hasHardwareKeyboard());
    if (wantKeyboard)
        qputenv("QT_IM_MODULE", "qtvirtualkeyboard");

    // Parse a copy of argv taken before QGuiApplication exists (the platform
    // plugin may remove its own arguments from argv). Seen once under a
    // freshly started Xvfb, not understood and not reproduced since:
    // parser.process(app) reported --fake-backend as unknown.
    QStringList arguments;
    for (int i = 0; i < argc; ++i)
        arguments << QString::fromLocal8Bit(argv[i]);

    QCommandLineParser parser;
    parser.setApplicationDescription(
        QStringLiteral("Internet Suspend/Resume kiosk: sign in and resume your computer."));
    parser.addHelpOption();
    parser.addVersionOption();
    QCommandLineOption windowed(QStringLiteral("windowed"),
                                QStringLiteral("Run in a normal window (development only)."));
    QCommandLineOption demo(QStringLiteral("demo"),
                            QStringLiteral("Demo mode: show the demo credentials at sign-in."));
    QCommandLineOption fakeBackend(
        QStringLiteral("fake-backend"),
        QStringLiteral("Demonstrate the flow without VMs: users demo/demo, busy/busy (open at "
                       "another kiosk), offline/offline (store unreachable while fetching)."));
    QCommandLineOption fakeDisplay(QStringLiteral("fake-display"),
                                   QStringLiteral("With --fake-backend: show the VNC server on "
                                                  "this UNIX socket as the running computer."),
                                   QStringLiteral("socket"));
    QCommandLineOption idleTimeout(QStringLiteral("idle-timeout"),
                                   QStringLiteral("Seconds without input before a running "
                                                  "session is suspended (default 300)."),
                                   QStringLiteral("seconds"));
    QCommandLineOption idleWarning(QStringLiteral("idle-warning"),
                                   QStringLiteral("Seconds of countdown shown before that "
                                                  "(default 30)."),
                                   QStringLiteral("seconds"));
    QCommandLineOption lockTimeout(QStringLiteral("lock-timeout"),
                                   QStringLiteral("Seconds without input before a running "
                                                  "session is locked (default 120)."),
                                   QStringLiteral("seconds"));
    QCommandLineOption escapeChord(
        QStringLiteral("escape-chord"),
        QStringLiteral("The operator's key chord that stops the shell, e.g. %1 (default: none).")
            .arg(isr::ui::EscapeChordFilter::defaultChord().toString()),
        QStringLiteral("keys"));
    QCommandLineOption virtualKeyboard(
        QStringLiteral("virtual-keyboard"),
        QStringLiteral("Show an on-screen keyboard (default: when no hardware keyboard is "
                       "attached, or as kiosk.conf says)."));
    QCommandLineOption noVirtualKeyboard(QStringLiteral("no-virtual-keyboard"),
                                         QStringLiteral("Never show the on-screen keyboard."));
    QCommandLineOption stopTimeout(
        QStringLiteral("stop-timeout"),
        QStringLiteral("Seconds a stop signal may take to save the session before the kiosk "
                       "ends hard (default %1).")
            .arg(kDefaultStopTimeoutSeconds),
        QStringLiteral("seconds"));
    QCommandLineOption status(
        QStringLiteral("status"),
        QStringLiteral("Print this kiosk's state for staff (configuration, host checks, the "
                       "running kiosk's figures from its metrics file) and exit: 0 healthy, 1 "
                       "something to fix. Needs no display."));
    QCommandLineOption vmHost(
        QStringLiteral("vm-host"),
        QStringLiteral("Run sessions in the VM host listening on this socket (isr-vmhost, as "
                       "root; the packaged kiosk) instead of in this process. The store, state "
                       "and guest options then belong to the host."),
        QStringLiteral("socket"));
    const isr::ui::SessionOptions sessionOptions;
    sessionOptions.addTo(parser);
    parser.addOptions({windowed, demo, fakeBackend, fakeDisplay, idleTimeout, idleWarning,
                       lockTimeout, escapeChord, virtualKeyboard, noVirtualKeyboard, stopTimeout,
                       status, vmHost});
    // Parsed before the application exists: --status must work over ssh,
    // where there is no display to open (process() below, which needs the
    // application, handles --help and --version).
    if (!parser.parse(arguments)) {
        // Name what we were given: see the note above about argv.
        std::fprintf(stderr, "isr-kiosk: %s\nisr-kiosk: arguments: %s\n",
                     qPrintable(parser.errorText()), qPrintable(arguments.join(' ')));
        return 2;
    }
    // The real session's configuration: kiosk.conf under the command line.
    // --demo points everything at what `isrctl demo init` made under the
    // user's data directory.
    auto applyOverrides = [&] { sessionOptions.apply(parser, parser.isSet(demo), file); };
    if (parser.isSet(status)) {
        applyOverrides();
        const auto report = isr::session::kioskStatus(file, std::time(nullptr));
        std::fputs(report.text.c_str(), stdout);
        return report.healthy ? 0 : 1;
    }

    QGuiApplication app(argc, argv);
    QGuiApplication::setApplicationName(QStringLiteral("isr-kiosk"));
    QGuiApplication::setApplicationVersion(QString::fromLatin1(isr::kVersion));
    parser.process(arguments);

    auto positive = [&](const QCommandLineOption& option, int fromFile) {
        if (!parser.isSet(option))
            return fromFile;
        bool ok = false;
        const int value = parser.value(option).toInt(&ok);
        if (!ok || value <= 0) {
            std::fprintf(stderr, "isr-kiosk: --%s needs a positive number of seconds\n",
                         qPrintable(option.names().constFirst()));
            std::exit(2);
        }
        return value;
    };
    isr::ui::KioskOptions options;
    options.windowed = parser.isSet(windowed);
    options.demo = parser.isSet(demo);
    options.idleTimeoutSeconds = positive(idleTimeout, file.ui.idleTimeoutSeconds);
    options.idleWarningSeconds = positive(idleWarning, file.ui.idleWarningSeconds);
    options.lockTimeoutSeconds = positive(lockTimeout, file.ui.lockTimeoutSeconds);
    options.failureIdleSeconds = file.ui.failureIdleSeconds;
    options.virtualKeyboard = wantKeyboard;
    const int stopTimeoutSeconds = positive(stopTimeout, kDefaultStopTimeoutSeconds);

    // No chord unless staff configure one: whoever stands at the kiosk
    // could use it (issue #16, item 12). One that is configured stops the
    // kiosk as SIGTERM does (a running session is saved first) and
    // isr-kiosk.service starts a fresh one.
    QKeySequence chord;
    if (parser.isSet(escapeChord) && parser.value(escapeChord) == QLatin1String("none")) {
        // none, as in kiosk.conf
    } else if (parser.isSet(escapeChord)) {
        chord = QKeySequence::fromString(parser.value(escapeChord), QKeySequence::PortableText);
        if (chord.isEmpty() || chord.count() != 1) {
            std::fprintf(stderr, "isr-kiosk: --escape-chord: '%s' is not one key chord\n",
                         qPrintable(parser.value(escapeChord)));
            return 2;
        }
    } else if (!file.ui.escapeChord.empty()) {
        chord = QKeySequence::fromString(QString::fromStdString(file.ui.escapeChord),
                                         QKeySequence::PortableText);
        if (chord.isEmpty() || chord.count() != 1) {
            std::fprintf(stderr, "isr-kiosk: %s: escape_chord: '%s' is not one key chord\n",
                         file.ui.escapeChordOrigin.c_str(), file.ui.escapeChord.c_str());
            return 2;
        }
    }
    std::optional<isr::ui::EscapeChordFilter> escape;
    if (!chord.isEmpty()) {
        escape.emplace(chord);
        QObject::connect(&*escape, &isr::ui::EscapeChordFilter::triggered, &app,
                         [] { std::raise(SIGTERM); });
    }

    // Declared first: the stop signals stay handled (a second one ends it
    // hard) while the controller below tears the session down.
    std::unique_ptr<isr::ui::KioskShutdown> shutdown;
    // Declared before the engine so it outlives the QML that binds to it.
    std::unique_ptr<isr::ui::SessionController> controller;
    std::unique_ptr<isr::ui::RemoteSessionBackend> remote;
    QQmlApplicationEngine engine;
    if (parser.isSet(vmHost) && !parser.isSet(fakeBackend)) {
        // The packaged split (issue #16, items 3 and 4): sessions run in
        // isr-vmhost as root, QEMU as isr-qemu; this process is only the
        // shell. It tells the host its screen (a desktop's preferred mode).
        QSize screenPx;
        if (const QScreen* screen = QGuiApplication::primaryScreen())
            screenPx = screen->size() * screen->devicePixelRatio();
        shutdown = std::make_unique<isr::ui::KioskShutdown>(QString(), stopTimeoutSeconds);
        remote = std::make_unique<isr::ui::RemoteSessionBackend>(parser.value(vmHost), screenPx);
        shutdown->attach(
            remote.get(), [r = remote.get()] { r->kioskStopping(true); },
            [r = remote.get()] { r->kioskStopping(false); });
        if (!isr::ui::showKioskWindow(engine, remote.get(), options))
            return 1;
        return QGuiApplication::exec();
    }
    if (!parser.isSet(fakeBackend)) {
        // The real session.
        applyOverrides();
        // A desktop parcel's display prefers this kiosk's screen (EDID), in
        // device pixels, unless kiosk.conf says screen_size. Offscreen and
        // headless platforms report a nominal screen; that is what they show.
        if (!file.has("screen_size")) {
            if (const QScreen* screen = QGuiApplication::primaryScreen()) {
                const QSize px = screen->size() * screen->devicePixelRatio();
                if (px.width() >= 320 && px.height() >= 200) {
                    file.session.desktop.screenWidth = std::uint32_t(px.width());
                    file.session.desktop.screenHeight = std::uint32_t(px.height());
                }
            }
        }
        if (file.session.storeUrl.empty()) {
            std::fprintf(stderr, "isr-kiosk: no store: use --store URL, ISR_STORE, --demo or "
                                 "--fake-backend\n");
            return 2;
        }
        const isr::session::KioskConfig& config = file.session;
        const QString parcel = QString::fromStdString(file.ui.parcel);
        shutdown = std::make_unique<isr::ui::KioskShutdown>(QString::fromStdString(config.stateDir),
                                                            stopTimeoutSeconds);
        controller = std::make_unique<isr::ui::SessionController>(config, parcel);
        shutdown->attach(
            controller.get(), [c = controller.get()] { c->kioskStopping(true); },
            [c = controller.get()] { c->kioskStopping(false); });
        if (!isr::ui::showKioskWindow(engine, controller.get(), options))
            return 1;
        return QGuiApplication::exec();
    }
    // Nothing to save: a stop signal quits at once.
    shutdown = std::make_unique<isr::ui::KioskShutdown>(QString(), stopTimeoutSeconds);
    isr::ui::FakeSessionBackend fake;
    scriptDemo(fake);
    shutdown->attach(&fake, {});
    fake.setProperty("displaySocket", parser.value(fakeDisplay));
    options.demo = true;

    if (!isr::ui::showKioskWindow(engine, &fake, options))
        return 1;
    return QGuiApplication::exec();
}

} // namespace
