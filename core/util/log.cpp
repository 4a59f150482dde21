#include "util/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

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

} // namespace

void setSink(Sink sink) {
    std::lock_guard lock(sinkMutex());
    currentSink() = std::move(sink);
}

void setLevel(Level level) { currentLevel() = int(level); }

bool enabled(Level level) { return int(level) <= currentLevel().load(std::memory_order_relaxed); }

void write(Level level, std::string_view category, std::string_view message) {
    std::lock_guard lock(sinkMutex());
    if (currentSink()) {
        currentSink()(level, category, message);
        return;
    }
    std::fprintf(stderr, "isr.%.*s: %s: %.*s\n", int(category.size()), category.data(),
                 levelName(level), int(message.size()), message.data());
}

} // namespace isr::log
