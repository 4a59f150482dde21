#pragma once
// The command-line options that choose a real session's configuration, for
// the two programs that run sessions: isr-kiosk (in process) and isr-vmhost
// (the root VM host behind `isr-kiosk --vm-host`). kiosk.conf is read first
// (--config FILE, else $ISR_KIOSK_CONFIG, else /etc/isr/kiosk.conf:
// core/session/kioskconfig.h), the command line is laid over it.

#include "session/kioskconfig.h"

#include <QCommandLineOption>
#include <QCommandLineParser>
#include <QString>

namespace isr::ui {

// Reads the configuration file named by --config in argv (before any Qt
// application exists). Exits 2 with the file's error on stderr. A shell
// that runs no sessions (--vm-host in argv) does not read the files the
// configuration names for sessions (KioskConfigLocation::sessionFiles).
session::KioskFile loadKioskConfig(const char* program, int argc, char** argv);

struct SessionOptions {
    QCommandLineOption config{QStringLiteral("config"),
                              QStringLiteral("Configuration file (default %1); options given "
                                             "here override it.")
                                  .arg(QString::fromLatin1(session::kDefaultKioskConfigPath)),
                              QStringLiteral("file")};
    QCommandLineOption store{QStringLiteral("store"),
                             QStringLiteral("Parcel store URL (default $ISR_STORE; with --demo "
                                            "the demo store)."),
                             QStringLiteral("url")};
    QCommandLineOption stateDir{QStringLiteral("state-dir"),
                                QStringLiteral("Kiosk state directory: chunk cache, VM sockets."),
                                QStringLiteral("dir")};
    QCommandLineOption guestDir{QStringLiteral("guest-dir"),
                                QStringLiteral("Where the demo-guest boot profile's kernel lives."),
                                QStringLiteral("dir")};
    QCommandLineOption parcel{QStringLiteral("parcel"),
                              QStringLiteral("Parcel to open (default: the user's only one, or "
                                             "\"default\")."),
                              QStringLiteral("name")};
    QCommandLineOption accel{QStringLiteral("accel"),
                             QStringLiteral("kvm or tcg (default: probe)."),
                             QStringLiteral("accel")};

    void addTo(QCommandLineParser& parser) const;
    // Lays the parsed options over `file`; demo: --demo's fallbacks (the
    // store and guest `isrctl demo init` made under the user's data
    // directory). Also points metrics_file at its default.
    void apply(const QCommandLineParser& parser, bool demo, session::KioskFile& file) const;
};

} // namespace isr::ui
