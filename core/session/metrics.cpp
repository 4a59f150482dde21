// The kiosk's metrics file (Prometheus text format 0.0.4).
#include "session/metrics.h"

#include "util/log.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sstream>
#include <unistd.h>

namespace isr::session {
namespace {

// Prometheus floats: shortest round-trip form is not needed; %.17g is exact.
std::string num(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

void header(std::ostringstream& out, const char* name, const char* type, const char* help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

} // namespace

std::string snakeCase(std::string_view words) {
    std::string v(words);
    for (char& c : v)
        if (c == ' ' || c == '-')
            c = '_';
    return v;
}

void KioskMetrics::Histogram::observe(double v) {
    for (std::size_t i = 0; i < kBounds.size(); ++i)
        if (v <= kBounds[i]) {
            ++buckets[i];
            break;
        }
    ++count;
    sum += v;
}

KioskMetrics::KioskMetrics(std::string path)
    : path_(std::move(path)), startTime_(std::int64_t(std::time(nullptr))) {
    std::lock_guard lock(mutex_);
    writeLocked(); // the file exists (all zeros) from the kiosk's start
}

void KioskMetrics::resumed(double seconds, std::uint64_t bytesDown) {
    std::lock_guard lock(mutex_);
    resume_.observe(seconds);
    bytesDown_ += bytesDown;
    writeLocked();
}

void KioskMetrics::suspended(double seconds, std::uint64_t bytesUp) {
    std::lock_guard lock(mutex_);
    suspend_.observe(seconds);
    bytesUp_ += bytesUp;
    writeLocked();
}

void KioskMetrics::failed(Stage stage, ErrorKind kind) {
    std::lock_guard lock(mutex_);
    ++failures_[{snakeCase(stageName(stage)), snakeCase(errorKindName(kind))}];
    writeLocked();
}

void KioskMetrics::cache(std::uint64_t bytes, std::uint64_t capBytes, std::uint64_t hits,
                         std::uint64_t misses) {
    std::lock_guard lock(mutex_);
    cacheBytes_ = bytes;
    cacheCap_ = capBytes;
    cacheHits_ = hits;
    cacheMisses_ = misses;
    writeLocked();
}

void KioskMetrics::hoard(const HoardStatus& status) {
    std::lock_guard lock(mutex_);
    hoard_ = status;
    writeLocked();
}

void KioskMetrics::sessionActive(bool active) {
    std::lock_guard lock(mutex_);
    active_ = active;
    writeLocked();
}

std::string KioskMetrics::render() const {
    std::lock_guard lock(mutex_);
    return renderLocked();
}

std::string KioskMetrics::renderLocked() const {
    std::ostringstream out;
    auto histogram = [&](const char* name, const char* help, const Histogram& h) {
        header(out, name, "histogram", help);
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
            cumulative += h.buckets[i];
            out << name << "_bucket{le=\"" << num(Histogram::kBounds[i]) << "\"} " << cumulative
                << '\n';
        }
        out << name << "_bucket{le=\"+Inf\"} " << h.count << '\n';
        out << name << "_sum " << num(h.sum) << '\n' << name << "_count " << h.count << '\n';
    };
    histogram("isr_resume_seconds", "Time from sign-in until the computer runs.", resume_);
    histogram("isr_suspend_seconds", "Time Suspend & Leave took until the version was committed.",
              suspend_);
    header(out, "isr_store_bytes_total", "counter", "Bytes moved to and from the parcel store.");
    out << "isr_store_bytes_total{direction=\"down\"} " << bytesDown_ << '\n';
    out << "isr_store_bytes_total{direction=\"up\"} " << bytesUp_ << '\n';
    header(out, "isr_session_failures_total", "counter",
           "Sessions that failed, by the stage that failed and the kind of error.");
    for (const auto& [key, n] : failures_)
        out << "isr_session_failures_total{stage=\"" << key.first << "\",kind=\"" << key.second
            << "\"} " << n << '\n';
    header(out, "isr_kiosk_start_time_seconds", "gauge",
           "When this kiosk process started, in Unix seconds (a restart shows here).");
    out << "isr_kiosk_start_time_seconds " << startTime_ << '\n';
    header(out, "isr_session_active", "gauge", "1 while a computer is resumed at this kiosk.");
    out << "isr_session_active " << (active_ ? 1 : 0) << '\n';
    header(out, "isr_cache_bytes", "gauge", "Bytes in the kiosk's encrypted chunk cache.");
    out << "isr_cache_bytes " << cacheBytes_ << '\n';
    header(out, "isr_cache_capacity_bytes", "gauge", "The chunk cache's configured cap.");
    out << "isr_cache_capacity_bytes " << cacheCap_ << '\n';
    header(out, "isr_cache_requests_total", "counter", "Chunk reads by where they were served.");
    out << "isr_cache_requests_total{result=\"hit\"} " << cacheHits_ << '\n';
    out << "isr_cache_requests_total{result=\"miss\"} " << cacheMisses_ << '\n';
    header(out, "isr_hoard_bytes", "gauge",
           "The running session's disk hoard: bytes fetched and bytes in all.");
    out << "isr_hoard_bytes{state=\"done\"} " << hoard_.bytesDone << '\n';
    out << "isr_hoard_bytes{state=\"total\"} " << hoard_.bytesTotal << '\n';
    header(out, "isr_hoard_problem", "gauge",
           "1 while the hoard is stalled (store unreachable, no space...).");
    out << "isr_hoard_problem " << (hoard_.problem != ErrorKind::None ? 1 : 0) << '\n';
    return out.str();
}

void KioskMetrics::writeLocked() const {
    if (path_.empty())
        return;
    const std::string text = renderLocked();
    const std::string tmp = path_ + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    bool ok = fd >= 0;
    if (ok) {
        std::size_t off = 0;
        while (ok && off < text.size()) {
            ssize_t n = ::write(fd, text.data() + off, text.size() - off);
            if (n < 0 && errno == EINTR)
                continue;
            ok = n > 0;
            off += ok ? std::size_t(n) : 0;
        }
        ok = ::close(fd) == 0 && ok;
    }
    // The collector must never read half a file: rename, never rewrite.
    if (ok && ::rename(tmp.c_str(), path_.c_str()) != 0)
        ok = false;
    if (!ok) {
        // Metrics are for the operators; a kiosk keeps working without them.
        ISR_LOG_WARN("metrics") << "cannot write " << path_ << ": " << std::strerror(errno);
        ::unlink(tmp.c_str());
    }
}

} // namespace isr::session
