// `isr-kiosk --status` (kiosk_status.h).
#include "session/kiosk_status.h"

#include "util/size.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace isr::session {

std::string metricsPathFor(const KioskConfig& config) {
    if (!config.metricsFile.empty())
        return config.metricsFile;
    return config.stateDir + "/metrics.prom";
}

Result<std::map<std::string, double>> parseMetricsText(std::string_view text) {
    std::map<std::string, double> out;
    std::size_t lineNo = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        ++lineNo;
        if (line.empty() || line.front() == '#')
            continue;
        // "name{labels} value": label values are ours and hold no blanks.
        const auto sp = line.rfind(' ');
        if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size())
            return Error(Errc::Corrupt, "metrics line " + std::to_string(lineNo) + " has no value");
        const std::string value(line.substr(sp + 1));
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(value.c_str(), &end);
        if (errno != 0 || end != value.c_str() + value.size())
            return Error(Errc::Corrupt,
                         "metrics line " + std::to_string(lineNo) + ": '" + value + "' is not a number");
        out[std::string(line.substr(0, sp))] = v;
    }
    return out;
}

namespace {

std::string ago(std::int64_t seconds) {
    if (seconds < 0)
        seconds = 0;
    char buf[64];
    if (seconds < 120)
        std::snprintf(buf, sizeof buf, "%lld s ago", (long long)seconds);
    else if (seconds < 2 * 3600)
        std::snprintf(buf, sizeof buf, "%lld min ago", (long long)(seconds / 60));
    else if (seconds < 2 * 86400)
        std::snprintf(buf, sizeof buf, "%lld h %lld min ago", (long long)(seconds / 3600),
                      (long long)(seconds % 3600 / 60));
    else
        std::snprintf(buf, sizeof buf, "%lld days ago", (long long)(seconds / 86400));
    return buf;
}

std::string freeSpace(const std::string& dir) {
    struct statvfs v {};
    if (::statvfs(dir.c_str(), &v) != 0)
        return dir + " (" + std::strerror(errno) + ")";
    return dir + ", " + formatBytes(std::uint64_t(v.f_bavail) * v.f_frsize) + " free";
}

} // namespace

KioskStatusReport kioskStatus(const KioskFile& file, std::time_t now, const std::string& procSwaps,
                              const std::string& sysRoot) {
    const KioskConfig& c = file.session;
    KioskStatusReport report;
    std::ostringstream out;
    auto row = [&](const char* label, const std::string& value) {
        char pad[24];
        std::snprintf(pad, sizeof pad, "%-15s", label);
        out << pad << value << '\n';
    };

    row("configuration", file.path.empty() ? "none (built-in defaults)" : file.path);
    if (!c.kioskId.empty()) {
        row("kiosk id", c.kioskId);
    } else {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        row("kiosk id", std::string(host) + " (the host name; kiosk_id is not set)");
    }
    if (c.storeUrl.empty()) {
        row("store", "NOT SET: sessions cannot start (store = ... in kiosk.conf)");
        report.healthy = false;
    } else if (auto st = checkStoreTransport(c.storeUrl, file.policy); !st.ok()) {
        row("store", "REFUSED: " + st.error().message);
        report.healthy = false;
    } else {
        row("store", c.storeUrl);
    }
    row("state dir", freeSpace(c.stateDir));
    row("scratch dir", freeSpace(c.scratchDir.empty() ? "/dev/shm" : c.scratchDir));
    if (auto st = checkKioskHost(c, procSwaps, sysRoot); st.ok()) {
        row("swap", c.allowUnencryptedSwap ? "not checked (allow_unencrypted_swap = yes)"
                                           : "no unencrypted swap");
    } else {
        row("swap", "REFUSED: " + st.error().message);
        report.healthy = false;
    }

    const std::string path = metricsPathFor(c);
    struct stat sb {};
    if (::stat(path.c_str(), &sb) != 0) {
        if (errno == ENOENT) {
            row("metrics", path + ": not written yet (the kiosk has not started with this "
                                  "configuration)");
        } else {
            row("metrics", path + ": " + std::strerror(errno));
            report.healthy = false;
        }
        report.text = out.str();
        return report;
    }
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    auto samples = in ? parseMetricsText(text)
                      : Result<std::map<std::string, double>>(
                            Error(Errc::Io, "cannot read: " + std::string(std::strerror(errno))));
    if (!samples.ok()) {
        row("metrics", path + ": " + samples.error().message);
        report.healthy = false;
        report.text = out.str();
        return report;
    }
    row("metrics", path + ", written " + ago(std::int64_t(now - sb.st_mtime)));
    auto get = [&](const std::string& key) {
        auto it = samples->find(key);
        return it == samples->end() ? 0.0 : it->second;
    };
    char buf[160];
    if (const double started = get("isr_kiosk_start_time_seconds"); started > 0)
        row("kiosk started", ago(std::int64_t(now) - std::int64_t(started)));
    row("session", get("isr_session_active") > 0 ? "a computer is running here" : "none");
    auto histogram = [&](const char* label, const std::string& family) {
        const double n = get(family + "_count");
        if (n <= 0) {
            row(label, "none yet");
            return;
        }
        std::snprintf(buf, sizeof buf, "%.0f, mean %.1f s, %.0f within 10 s, %.0f within 60 s", n,
                      get(family + "_sum") / n, get(family + "_bucket{le=\"10\"}"),
                      get(family + "_bucket{le=\"60\"}"));
        row(label, buf);
    };
    histogram("resumes", "isr_resume_seconds");
    histogram("suspends", "isr_suspend_seconds");
    // Failures: "isr_session_failures_total{stage=\"x\",kind=\"y\"}".
    std::string failures;
    double failed = 0;
    const std::string prefix = "isr_session_failures_total{stage=\"";
    for (const auto& [key, value] : *samples) {
        if (key.rfind(prefix, 0) != 0 || value <= 0)
            continue;
        const auto stageEnd = key.find('"', prefix.size());
        const auto kindAt = key.find("kind=\"");
        if (stageEnd == std::string::npos || kindAt == std::string::npos)
            continue;
        const auto kindEnd = key.find('"', kindAt + 6);
        failed += value;
        std::snprintf(buf, sizeof buf, "%s%s/%s %.0f", failures.empty() ? "" : ", ",
                      key.substr(prefix.size(), stageEnd - prefix.size()).c_str(),
                      key.substr(kindAt + 6, kindEnd - kindAt - 6).c_str(), value);
        failures += buf;
    }
    if (failed > 0) {
        std::snprintf(buf, sizeof buf, "%.0f (", failed);
        row("failures", buf + failures + ")");
    } else {
        row("failures", "none");
    }
    row("store traffic",
        formatBytes(std::uint64_t(get("isr_store_bytes_total{direction=\"down\"}"))) + " down, " +
            formatBytes(std::uint64_t(get("isr_store_bytes_total{direction=\"up\"}"))) + " up");
    const double hits = get("isr_cache_requests_total{result=\"hit\"}");
    const double misses = get("isr_cache_requests_total{result=\"miss\"}");
    std::string cache = formatBytes(std::uint64_t(get("isr_cache_bytes"))) + " of " +
                        formatBytes(std::uint64_t(get("isr_cache_capacity_bytes")));
    if (hits + misses > 0) {
        std::snprintf(buf, sizeof buf, ", %.0f %% of %.0f reads were hits",
                      std::floor(100 * hits / (hits + misses)), hits + misses);
        cache += buf;
    }
    row("cache", cache);
    if (get("isr_session_active") > 0) {
        const double total = get("isr_hoard_bytes{state=\"total\"}");
        const double done = get("isr_hoard_bytes{state=\"done\"}");
        std::string hoard = formatBytes(std::uint64_t(done)) + " of " +
                            formatBytes(std::uint64_t(total)) + " fetched";
        if (get("isr_hoard_problem") > 0)
            hoard += "; HELD BACK (store unreachable or the disk is nearly full; the computer "
                     "keeps running)";
        row("hoard", hoard);
    }
    report.text = out.str();
    return report;
}

} // namespace isr::session
