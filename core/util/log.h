#pragma once
// Minimal logging with one category per module ("store", "disk", "vm"...).
// The level comes from ISR_LOG (error|warn|info|debug, default warn). The
// kiosk installs a sink that forwards to Qt's logging; isrctl writes stderr.
// Thread-safe: the sink is called under a mutex.

#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace isr::log {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3 };

using Sink = std::function<void(Level, std::string_view category, std::string_view message)>;

void setSink(Sink sink);
void setLevel(Level level);
bool enabled(Level level);
void write(Level level, std::string_view category, std::string_view message);

// Stream-style line builder: ISR_LOG_WARN("store") << "retrying " << key;
class Line {
public:
    Line(Level level, std::string_view category) : level_(level), category_(category) {}
    ~Line() { write(level_, category_, stream_.str()); }
    Line(const Line&) = delete;
    Line& operator=(const Line&) = delete;
    template <typename T>
    Line& operator<<(const T& v) {
        stream_ << v;
        return *this;
    }

private:
    Level level_;
    std::string_view category_;
    std::ostringstream stream_;
};

} // namespace isr::log

#define ISR_LOG_AT_(lvl, cat)                                                                      \
    if (!::isr::log::enabled(lvl)) {                                                               \
    } else                                                                                         \
        ::isr::log::Line(lvl, cat)
#define ISR_LOG_ERROR(cat) ISR_LOG_AT_(::isr::log::Level::Error, cat)
#define ISR_LOG_WARN(cat) ISR_LOG_AT_(::isr::log::Level::Warn, cat)
#define ISR_LOG_INFO(cat) ISR_LOG_AT_(::isr::log::Level::Info, cat)
#define ISR_LOG_DEBUG(cat) ISR_LOG_AT_(::isr::log::Level::Debug, cat)
