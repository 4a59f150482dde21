#include "util/log.h"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace isr::log {
namespace {

Level levelFromEnv() {
    const char* v = std::getenv("ISR_LOG");
    if (!v)
        return Level::Warn;
    if (!std::strcmp(v, "error"))
        return Level::Error;
    if (!std::strcmp(v, "info"))
        return Level::Info;
    if (!std::strcmp(v, "debug"))
        return Level::Debug;
    return Level::Warn;
}

std::atomic<int>& currentLevel() {
    static std::atomic<int> level{int(levelFromEnv())};
    return level;
}

std::mutex& sinkMutex() {
    static std::mutex m;
    return m;
}

Sink& currentSink() {
    static Sink sink;
    return sink;
}

const char* levelName(Level level) {
    switch (level) {
    case Level::Error: return "error";
    case Level::Warn: return "warning";
    case Level::Info: return "info";
    case Level::Debug: return "debug";
    }
    return "?";
}

int syslogPriority(Level level) {
    switch (level) {
    case Level::Error: return 3;
    case Level::Warn: return 4;
    case Level::Info: return 6;
    case Level::Debug: return 7;
    }
    return 6;
}

bool validFieldName(std::string_view name) {
    if (name.empty() || name.size() > 64 || !(name[0] >= 'A' && name[0] <= 'Z'))
        return false;
    for (char c : name)
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    return true;
}

// The journal's socket: an unbound datagram socket we send to, opened once.
struct Journal {
    bool enabled = false;
    int fd = -1;
    sockaddr_un addr{};
    socklen_t addrLen = 0;
    std::string identifier;

    Journal() {
        // systemd's rule: JOURNAL_STREAM is "<dev>:<ino>" of the stream it
        // connected; only if stderr is still that stream is the journal ours.
        const char* stream = std::getenv("JOURNAL_STREAM");
        struct stat st {};
        unsigned long long dev = 0, ino = 0;
        if (!stream || std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2 ||
            ::fstat(STDERR_FILENO, &st) != 0 || st.st_dev != dev || st.st_ino != ino)
            return;
        const char* path = "/run/systemd/journal/socket";
        fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return;
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, path);
        addrLen = socklen_t(offsetof(sockaddr_un, sun_path) + std::strlen(path) + 1);
        char exe[256] = {};
        ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
        std::string_view name = n > 0 ? std::string_view(exe, std::size_t(n)) : "isr";
        identifier = std::string(name.substr(name.rfind('/') + 1));
        enabled = true;
    }
    // False if the datagram could not be sent (the caller prints instead).
    // A busy journald makes this wait, as sd_journal_send does: journald's
    // backpressure is meant to reach the logger (tried MSG_DONTWAIT: a burst
    // of lines then overflowed a standalone journald's queue and fell back
    // to stderr, out of order and without fields).
    bool send(const std::string& datagram) const {
        ssize_t n = ::sendto(fd, datagram.data(), datagram.size(), MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&addr), addrLen);
        return n == ssize_t(datagram.size());
    }
};

const Journal& journal() {
    static const Journal j;
    return j;
}

void emit(Level level, std::string_view category, std::string_view message,
          const std::vector<Field>& fields) {
    std::lock_guard lock(sinkMutex());
    if (currentSink() || !journal().enabled ||
        !journal().send(journalDatagram(level, journal().identifier, category, message, fields))) {
        std::string text(message);
        for (const auto& f : fields)
            if (validFieldName(f.name))
                text += " " + f.name + "=" + f.value;
        if (currentSink()) {
            currentSink()(level, category, text);
            return;
        }
        std::fprintf(stderr, "isr.%.*s: %s: %s\n", int(category.size()), category.data(),
                     levelName(level), text.c_str());
    }
}

} // namespace

std::string journalDatagram(Level level, std::string_view identifier, std::string_view category,
                            std::string_view message, const std::vector<Field>& fields) {
    std::string out;
    auto add = [&](std::string_view name, std::string_view value) {
        if (value.find('\n') == std::string_view::npos) {
            out.append(name).append("=").append(value).append("\n");
            return;
        }
        out.append(name).append("\n");
        std::uint64_t len = value.size();
        for (int i = 0; i < 8; ++i)
            out.push_back(char((len >> (8 * i)) & 0xff));
        out.append(value).append("\n");
    };
    add("MESSAGE", message);
    add("PRIORITY", std::to_string(syslogPriority(level)));
    add("SYSLOG_IDENTIFIER", identifier);
    add("ISR_CATEGORY", category);
    for (const auto& f : fields)
        if (validFieldName(f.name) && f.name != "MESSAGE" && f.name != "PRIORITY")
            add(f.name, f.value);
    return out;
}

bool toJournal() {
    return journal().enabled;
}

void event(Level level, std::string_view category, std::string_view message,
           const std::vector<Field>& fields) {
    // Events are what operators search the journal for: under journald they
    // are sent at any level (journalctl -p filters by PRIORITY); on a
    // terminal they follow ISR_LOG like every line.
    if (enabled(level) || journal().enabled)
        emit(level, category, message, fields);
}

void setSink(Sink sink) {
    std::lock_guard lock(sinkMutex());
    currentSink() = std::move(sink);
}

void setLevel(Level level) { currentLevel() = int(level); }

bool enabled(Level level) { return int(level) <= currentLevel().load(std::memory_order_relaxed); }

void write(Level level, std::string_view category, std::string_view message) {
    emit(level, category, message, {});
}

} // namespace isr::log
