#pragma once
// What a kiosk tells the people who run it: a metrics file in the Prometheus
// text format (version 0.0.4) that node_exporter's textfile collector reads.
//
// One KioskMetrics per kiosk process. It counts what happened since the
// process started (counters reset on restart; Prometheus handles resets) and
// rewrites the file atomically (temporary file + rename in the same folder,
// mode 0644: the figures are not secret, no user or parcel name is in it)
// after every event. An empty path turns the file off; the figures are still
// kept for `render()` (status displays, tests).
//
// Thread-safe: the session's callbacks arrive on its worker thread, the
// kiosk's periodic cache/hoard refresh on another.

#include "session/session.h"
#include "util/result.h"

#include <array>
#include <cstdint>
#include <ctime>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace isr::session {

// Names for machines (metric labels, journal fields): "store unreachable" ->
// "store_unreachable", "checking out" -> "checking_out".
std::string snakeCase(std::string_view words);

class KioskMetrics {
public:
    explicit KioskMetrics(std::string path);

    // A resume reached Running: seconds from sign-in, bytes from the store.
    void resumed(double seconds, std::uint64_t bytesDown);
    // Suspend & Leave committed a version: seconds, bytes to the store.
    void suspended(double seconds, std::uint64_t bytesUp);
    // A session failed (any stage). Suspend & Leave failures are counted
    // apart: they are the ones that can cost a user work.
    void failed(Stage stage, ErrorKind kind);
    // The kiosk's chunk cache: bytes held, its cap, hits and misses so far.
    void cache(std::uint64_t bytes, std::uint64_t capBytes, std::uint64_t hits,
               std::uint64_t misses);
    void hoard(const HoardStatus& status);
    // 1 while a computer is resumed at this kiosk.
    void sessionActive(bool active);

    std::string render() const;
    const std::string& path() const { return path_; }

private:
    struct Histogram {
        static constexpr std::array<double, 10> kBounds = {1, 2, 5, 10, 20, 30, 60, 120, 300, 600};
        std::array<std::uint64_t, 10> buckets{}; // cumulative counts are made at render
        std::uint64_t count = 0;
        double sum = 0;
        void observe(double v);
    };
    void writeLocked() const;
    std::string renderLocked() const;

    std::string path_;
    mutable std::mutex mutex_;
    Histogram resume_, suspend_;
    std::uint64_t bytesDown_ = 0, bytesUp_ = 0;
    std::map<std::pair<std::string, std::string>, std::uint64_t> failures_; // (stage, kind)
    std::uint64_t cacheBytes_ = 0, cacheCap_ = 0, cacheHits_ = 0, cacheMisses_ = 0;
    HoardStatus hoard_;
    bool active_ = false;
    std::int64_t startTime_ = 0; // the process's start, Unix seconds (restarts show)
};

} // namespace isr::session
