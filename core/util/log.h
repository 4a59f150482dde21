#pragma once
// Minimal logging with one category per module ("store", "disk", "vm"...).
// The level comes from ISR_LOG (error|warn|info|debug, default warn).
// Thread-safe: the sink is called under a mutex.
//
// Where lines go: to a sink if one is set (tests), else to journald with
// its native protocol when our stderr is the journal (systemd sets
// JOURNAL_STREAM to stderr's "device:inode" for a unit's process, and the
// kiosk's unit is one), else to stderr as "isr.<category>: <level>: text".
// Under journald every line has its PRIORITY (err, warning, info, debug),
// SYSLOG_IDENTIFIER (the program) and ISR_CATEGORY, and event() lines carry
// their fields as journal fields (`journalctl ISR_EVENT=resumed -o json`);
// if the journal socket refuses a datagram the line goes to stderr instead.

#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace isr::log {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3 };

using Sink = std::function<void(Level, std::string_view category, std::string_view message)>;

void setSink(Sink sink);
void setLevel(Level level);
bool enabled(Level level);
void write(Level level, std::string_view category, std::string_view message);

// A structured field: NAME is upper case letters, digits and '_', starting
// with a letter (journald's rule); the value any text.
struct Field {
    std::string name;
    std::string value;
};
// One line for people plus fields for machines (issue #18: stage, hashed
// user and parcel, durations, bytes, error kind). Under journald the fields
// are journal fields, sent whatever ISR_LOG says (journalctl -p filters);
// elsewhere (and to a sink) they follow the message as " NAME=value" and
// ISR_LOG applies. Fields with a bad name are dropped (a bug, never a crash).
void event(Level level, std::string_view category, std::string_view message,
           const std::vector<Field>& fields);

// The journal's native datagram for one line (exposed for tests):
// "NAME=value\n" per field, or NAME\n<64-bit little-endian length><value>\n
// for a value with a newline.
std::string journalDatagram(Level level, std::string_view identifier, std::string_view category,
                            std::string_view message, const std::vector<Field>& fields);
// Whether lines go to journald (decided once, at the first line).
bool toJournal();

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
