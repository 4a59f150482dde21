#pragma once
// GuestClock: sets a restored guest's clock to the host's, in the background.
//
// A restored VM wakes up with the clock it had when it was saved, hours or
// days behind. With qemu-guest-agent in the guest, virDomainSetTime sets its
// system clock. The agent needs a moment after the restore to answer, so
// this tries once a second for at most `bound` and stops at the first
// success; Running never waits for it. Without an agent every attempt fails
// at once (libvirt: "agent is not connected") and the guest's clock stays
// behind until its own NTP fixes it. The session starts it only for domains
// with an agent channel (firmware boots); the demo guest re-reads its RTC.
//
// Threads: start()/stop() from the owning thread; stop() waits for an
// attempt in flight (libvirt bounds an agent command to 5 s) and must be
// called before the Vm is saved, destroyed or dropped.

#include "util/periodic.h"
#include "vm/vm.h"

#include <atomic>
#include <chrono>

namespace isr::session {

class GuestClock {
public:
    enum class Result { Pending, Synced, NoAgent };
    static constexpr std::chrono::seconds kDefaultBound{120};

    GuestClock() = default;
    ~GuestClock() { stop(); }
    GuestClock(const GuestClock&) = delete;
    GuestClock& operator=(const GuestClock&) = delete;

    void start(vm::Vm& vm, std::chrono::milliseconds bound = kDefaultBound,
               std::chrono::milliseconds interval = std::chrono::milliseconds(1000));
    void stop();
    // Pending while trying; NoAgent after the bound passed without an answer.
    Result result() const { return result_.load(); }

private:
    vm::Vm* vm_ = nullptr;
    std::chrono::steady_clock::time_point deadline_;
    std::atomic<Result> result_{Result::Pending};
    PeriodicThread thread_;
};

} // namespace isr::session
