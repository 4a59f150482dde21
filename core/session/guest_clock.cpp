#include "session/guest_clock.h"

#include "util/log.h"

namespace isr::session {

void GuestClock::start(vm::Vm& vm, std::chrono::milliseconds bound,
                       std::chrono::milliseconds interval) {
    stop();
    vm_ = &vm;
    deadline_ = std::chrono::steady_clock::now() + bound;
    result_ = Result::Pending;
    thread_.start(interval, [this] {
        auto st = vm_->syncGuestTime();
        if (st.ok()) {
            ISR_LOG_INFO("session") << "guest clock set to the host's";
            result_ = Result::Synced;
            return false;
        }
        if (std::chrono::steady_clock::now() >= deadline_) {
            ISR_LOG_INFO("session")
                << "guest clock not set (no guest agent answered): " << st.error().describe();
            result_ = Result::NoAgent;
            return false;
        }
        return true;
    });
}

void GuestClock::stop() {
    thread_.stop();
}

} // namespace isr::session
