#pragma once
// `isr-kiosk --status`: what staff at the machine (or a fleet script over
// ssh) need to know about one kiosk, without a display and without touching
// a running session (issue #18).
//
// Everything comes from files the running kiosk already keeps: its
// configuration (kiosk.conf), the metrics file it rewrites after every event
// and on its periodic cache refresh (session/metrics.h), and the host's own
// state (free space, swap). It never opens the store and never reads keys, so
// it is safe to run as any user who can read the metrics file (0644; no user
// or parcel name is in it).
//
// The kiosk always writes that metrics file: to `metrics_file` when
// kiosk.conf names one (node_exporter's textfile folder), else to
// <state_dir>/metrics.prom, so --status works on every kiosk.

#include "session/kioskconfig.h"
#include "util/result.h"

#include <ctime>
#include <map>
#include <string>
#include <string_view>

namespace isr::session {

// metrics_file, or <state_dir>/metrics.prom when it is not set.
std::string metricsPathFor(const KioskConfig& config);

// The Prometheus text format's samples: "name{labels}" exactly as written
// (labels in the writer's order) -> value. Comments and blank lines are
// skipped; a sample line without a value, or with one that is not a
// number, is Corrupt (naming the line).
Result<std::map<std::string, double>> parseMetricsText(std::string_view text);

struct KioskStatusReport {
    std::string text; // lines for a person, each "label: value"
    bool healthy = true; // false: something staff must fix (exit status 1)
};

// `now` is the current time, for the metrics file's age. procSwaps/sysRoot as
// in checkKioskHost (tests point them at fixtures).
KioskStatusReport kioskStatus(const KioskFile& file, std::time_t now,
                              const std::string& procSwaps = "/proc/swaps",
                              const std::string& sysRoot = "/sys");

} // namespace isr::session
