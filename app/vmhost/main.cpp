// isr-vmhost: the kiosk's VM host (issue #16, items 3 and 4). Runs the real
// sessions (store, keys, cache, libvirt's embedded driver) as root, so QEMU
// runs as isr-qemu under libvirt's DAC, seccomp and namespaces and the guest
// network filter applies, while the shell the person touches (isr-kiosk
// --vm-host, cage, QML) runs as the unprivileged isr-kiosk user and reaches
// sessions only through this process's socket (ui/sessionhost.h). No GUI.
#include "kioskshutdown.h"
#include "session/kioskconfig.h"
#include "sessioncontroller.h"
#include "sessionhost.h"
#include "sessionoptions.h"
#include "shutdownsignals.h"
#include "util/hardening.h"
#include "util/log.h"
#include "util/version.h"

#include <QCommandLineParser>
#include <QCoreApplication>
#include <csignal>
#include <cstdio>
#include <grp.h>
#include <memory>
#include <pwd.h>
#include <unistd.h>

namespace {

constexpr const char* kDefaultSocket = "/run/isr/vmhost.sock";
constexpr const char* kDefaultShellUser = "isr-kiosk";
// As isr-kiosk's: below the unit's TimeoutStopSec (packaging/README.md).
constexpr int kDefaultStopTimeoutSeconds = 90;

int runHost(int argc, char** argv) {
    isr::session::KioskFile file = isr::ui::loadKioskConfig("isr-vmhost", argc, argv);
    QCoreApplication app(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("isr-vmhost"));
    QCoreApplication::setApplicationVersion(QString::fromLatin1(isr::kVersion));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral(
        "Internet Suspend/Resume VM host: runs the kiosk's sessions as root for the kiosk shell "
        "(isr-kiosk --vm-host) that connects to its socket."));
    parser.addHelpOption();
    parser.addVersionOption();
    const isr::ui::SessionOptions sessionOptions;
    sessionOptions.addTo(parser);
    QCommandLineOption socketPath(QStringLiteral("socket"),
                                  QStringLiteral("The socket the shell connects to (default %1).")
                                      .arg(QString::fromLatin1(kDefaultSocket)),
                                  QStringLiteral("path"), QString::fromLatin1(kDefaultSocket));
    QCommandLineOption shellUser(
        QStringLiteral("client-user"),
        QStringLiteral("The only user besides root whose shell may connect; the socket belongs "
                       "to its group (default %1).")
            .arg(QString::fromLatin1(kDefaultShellUser)),
        QStringLiteral("user"), QString::fromLatin1(kDefaultShellUser));
    QCommandLineOption stopTimeout(
        QStringLiteral("stop-timeout"),
        QStringLiteral("Seconds a stop signal may take to save the session before the host ends "
                       "hard (default %1).")
            .arg(kDefaultStopTimeoutSeconds),
        QStringLiteral("seconds"));
    parser.addOptions({socketPath, shellUser, stopTimeout});
    parser.process(app);

    int stopTimeoutSeconds = kDefaultStopTimeoutSeconds;
    if (parser.isSet(stopTimeout)) {
        bool ok = false;
        stopTimeoutSeconds = parser.value(stopTimeout).toInt(&ok);
        if (!ok || stopTimeoutSeconds <= 0) {
            std::fprintf(stderr, "isr-vmhost: --stop-timeout needs a positive number of seconds\n");
            return 2;
        }
    }
    const QByteArray userName = parser.value(shellUser).toLocal8Bit();
    const passwd* pw = ::getpwnam(userName.constData());
    if (!pw) {
        std::fprintf(stderr, "isr-vmhost: --client-user: no user '%s' on this machine\n",
                     userName.constData());
        return 2;
    }
    const uid_t shellUid = pw->pw_uid;
    const gid_t shellGid = pw->pw_gid;
    if (::geteuid() != 0)
        std::fprintf(stderr, "isr-vmhost: not running as root: QEMU will run as this user, with "
                             "no guest network filter (issue #16, items 3 and 4)\n");

    sessionOptions.apply(parser, false, file);
    if (file.session.storeUrl.empty()) {
        std::fprintf(stderr, "isr-vmhost: no store: use --store URL, ISR_STORE or store_url in "
                             "kiosk.conf\n");
        return 2;
    }
    const bool screenFromConfig = file.has("screen_size");
    // Declared first: the stop signals stay handled (a second one ends it
    // hard) while the controller tears the session down.
    isr::ui::KioskShutdown shutdown(QString::fromStdString(file.session.stateDir),
                                    stopTimeoutSeconds);
    isr::ui::SessionController controller(file.session, QString::fromStdString(file.ui.parcel));
    isr::ui::SessionHost host(&controller,
                              {[&controller](bool on) { controller.kioskStopping(on); },
                               [&controller, screenFromConfig](int w, int h) {
                                   // A desktop parcel's display prefers the shell's
                                   // screen unless kiosk.conf says screen_size.
                                   if (!screenFromConfig && w >= 320 && h >= 200)
                                       controller.setScreenSize(std::uint32_t(w), std::uint32_t(h));
                               }});
    shutdown.attach(
        &controller,
        [&] {
            host.setHostStopping();
            controller.kioskStopping(true);
        },
        [&controller] { controller.kioskStopping(false); });
    if (auto listening = host.listen(parser.value(socketPath).toStdString(), shellUid, shellGid);
        !listening.ok()) {
        std::fprintf(stderr, "isr-vmhost: %s\n", listening.error().message.c_str());
        return 1;
    }
    return QCoreApplication::exec();
}

} // namespace

// As isr-kiosk: a stop signal ends the host after the session is saved (or
// cancelled), then the process dies of that same signal.
int main(int argc, char** argv) {
    (void)isr::hardening::disableCoreDumps(); // keys and plaintext: no core file, no ptrace
    return isr::ui::ShutdownSignals::endWithFirstSignal(runHost(argc, argv));
}
