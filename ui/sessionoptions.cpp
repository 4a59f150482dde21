#include "sessionoptions.h"

#include "session/kiosk_status.h"

#include <QStandardPaths>
#include <cstdio>
#include <cstdlib>
#include <optional>

namespace isr::ui {

session::KioskFile loadKioskConfig(const char* program, int argc, char** argv) {
    session::KioskConfigLocation where;
    for (int i = 1; i < argc; ++i) {
        if (qstrcmp(argv[i], "--config") == 0 && i + 1 < argc)
            where.explicitPath = argv[i + 1];
        else if (qstrncmp(argv[i], "--config=", 9) == 0)
            where.explicitPath = argv[i] + 9;
        else if (qstrcmp(argv[i], "--vm-host") == 0 || qstrncmp(argv[i], "--vm-host=", 10) == 0)
            where.sessionFiles = false;
    }
    auto file = session::locateAndLoadKioskConfig(where);
    if (!file.ok()) {
        std::fprintf(stderr, "%s: %s\n", program, file.error().message.c_str());
        std::exit(2);
    }
    return std::move(file).value();
}

void SessionOptions::addTo(QCommandLineParser& parser) const {
    parser.addOptions({config, store, stateDir, guestDir, parcel, accel});
}

void SessionOptions::apply(const QCommandLineParser& parser, bool demo,
                           session::KioskFile& file) const {
    const QString data = QStandardPaths::writableLocation(QStandardPaths::GenericDataLocation) +
                         QStringLiteral("/isr");
    session::KioskOverrides overrides;
    auto value = [&](const QCommandLineOption& option) -> std::optional<std::string> {
        if (!parser.isSet(option))
            return std::nullopt;
        return parser.value(option).toStdString();
    };
    overrides.storeUrl = value(store);
    if (demo)
        overrides.fallbackStoreUrl =
            "file://" + (data + QStringLiteral("/demo/store")).toStdString();
    overrides.stateDir = value(stateDir);
    overrides.guestDir = value(guestDir);
    overrides.defaultStateDir = (data + QStringLiteral("/kiosk")).toStdString();
    overrides.defaultGuestDir = (data + QStringLiteral("/demo/guest")).toStdString();
    overrides.accelerator = value(accel);
    overrides.parcel = value(parcel);
    session::applyKioskOverrides(file, overrides);
    // The kiosk always keeps its metrics file, so --status can read it
    // (session/kiosk_status.h): metrics_file, else <state_dir>/metrics.prom.
    file.session.metricsFile = session::metricsPathFor(file.session);
}

} // namespace isr::ui
