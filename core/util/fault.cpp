// Fault points: see fault.h.
#include "util/fault.h"

#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unistd.h>

namespace isr::fault {

namespace {

struct Armed {
    Mode mode = Mode::Kill;
    std::uint64_t onHit = 1;
    std::atomic<std::uint64_t> hits{0};
};

std::mutex gMutex; // guards gArmed's replacement, not the counters
// One slot per point; null = not armed. Replaced only by arm()/loadState().
std::unique_ptr<Armed> gArmed[kFaultPointCount];
// Entries replaced by arm() stay allocated: a thread inside hit() may still use one.
std::vector<std::unique_ptr<Armed>> gRetired;

std::size_t findPoint(std::string_view name) {
    for (std::size_t i = 0; i < kFaultPointCount; ++i)
        if (name == kFaultPoints[i].name)
            return i;
    return kFaultPointCount;
}

void writeStderr(const std::string& line) {
    // write(2) directly: stdio may be buffered and a kill must not lose it.
    std::size_t done = 0;
    while (done < line.size()) {
        ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
        if (n <= 0)
            break;
        done += std::size_t(n);
    }
}

Status install(std::string_view spec) {
    ISR_TRY_ASSIGN(auto arms, parseSpec(spec));
    std::lock_guard lock(gMutex);
    for (auto& slot : gArmed)
        if (slot)
            gRetired.push_back(std::move(slot));
    for (const auto& a : arms) {
        auto armed = std::make_unique<Armed>();
        armed->mode = a.mode;
        armed->onHit = a.onHit;
        gArmed[findPoint(a.point)] = std::move(armed);
    }
    detail::gState.store(arms.empty() ? 0 : 1, std::memory_order_release);
    return {};
}

} // namespace

namespace detail {

std::atomic<int> gState{-1};

int loadState() {
    static std::once_flag once;
    std::call_once(once, [] {
        const char* env = std::getenv("ISR_FAULT");
        if (auto st = install(env ? env : ""); !st.ok()) {
            writeStderr("isr-fault: bad ISR_FAULT: " + st.error().message + "\n");
            std::_Exit(70);
        }
    });
    return gState.load(std::memory_order_acquire);
}

Status hit(std::size_t index) {
    Armed* armed = nullptr;
    {
        std::lock_guard lock(gMutex);
        armed = gArmed[index].get();
    }
    if (!armed)
        return {};
    std::uint64_t n = armed->hits.fetch_add(1) + 1;
    if (n != armed->onHit)
        return {};
    const char* name = kFaultPoints[index].name;
    writeStderr(std::string("isr-fault: fired ") + name + " " + modeName(armed->mode) + " hit " +
                std::to_string(n) + "\n");
    if (armed->mode == Mode::Kill) {
        ::kill(::getpid(), SIGKILL);
        std::_Exit(137); // not reached
    }
    return Error(Errc::Io, std::string("injected fault at ") + name);
}

} // namespace detail

const char* modeName(Mode mode) {
    return mode == Mode::Kill ? "kill" : "fail";
}

Result<std::vector<Arm>> parseSpec(std::string_view spec) {
    std::vector<Arm> out;
    while (!spec.empty()) {
        auto comma = spec.find(',');
        std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
        if (item.empty())
            continue;
        Arm a;
        if (auto at = item.find('@'); at != std::string_view::npos) {
            std::string_view count = item.substr(at + 1);
            auto [ptr, ec] = std::from_chars(count.data(), count.data() + count.size(), a.onHit);
            if (ec != std::errc() || ptr != count.data() + count.size() || a.onHit == 0)
                return Error(Errc::InvalidArgument, "fault hit count must be a positive number: '" +
                                                        std::string(item) + "'");
            item = item.substr(0, at);
        }
        if (auto colon = item.find(':'); colon != std::string_view::npos) {
            std::string_view mode = item.substr(colon + 1);
            if (mode == "kill")
                a.mode = Mode::Kill;
            else if (mode == "fail")
                a.mode = Mode::Fail;
            else
                return Error(Errc::InvalidArgument,
                             "fault mode must be kill or fail: '" + std::string(mode) + "'");
            item = item.substr(0, colon);
        }
        if (findPoint(item) == kFaultPointCount)
            return Error(Errc::InvalidArgument, "unknown fault point '" + std::string(item) +
                                                    "' (isrctl debug fault-points lists them)");
        for (const auto& other : out)
            if (other.point == item)
                return Error(Errc::InvalidArgument,
                             "fault point armed twice: '" + std::string(item) + "'");
        a.point = std::string(item);
        out.push_back(std::move(a));
    }
    return out;
}

Status arm(std::string_view spec) {
    detail::loadState(); // the environment first, so it cannot override this later
    return install(spec);
}

std::uint64_t hits(std::string_view point) {
    std::size_t i = findPoint(point);
    if (i == kFaultPointCount)
        return 0;
    std::lock_guard lock(gMutex);
    return gArmed[i] ? gArmed[i]->hits.load() : 0;
}

} // namespace isr::fault
