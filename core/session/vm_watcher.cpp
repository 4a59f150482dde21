#include "session/vm_watcher.h"

#include "util/log.h"

namespace isr::session {

void VmWatcher::start(const vm::Vm& vm, Ended ended, FirstBoot* boot,
                      std::chrono::milliseconds interval) {
    stop();
    // Set before the thread starts (PeriodicThread::start publishes them to it).
    vm_ = &vm;
    ended_ = std::move(ended);
    boot_ = boot;
    nextSign_ = std::chrono::steady_clock::now();
    pausedSeen_ = false;
    thread_.start(interval, [this] { return poll(); });
}

void VmWatcher::stop() {
    thread_.stop();
}

bool VmWatcher::poll() {
    auto st = vm_->status();
    if (!st.ok())
        return true; // a libvirt hiccup is not an end: ask again
    if (st->state == vm::VmState::Paused) {
        if (st->ioError && !pausedSeen_) {
            ISR_LOG_WARN("session") << "the VM paused on a disk error (alive, kept)";
        }
        pausedSeen_ = true;
        return true;
    }
    pausedSeen_ = false;
    if (st->state != vm::VmState::ShutOff && st->state != vm::VmState::Crashed)
        return watchBoot();
    if (ended_)
        ended_(vm_->lastStopReason(), st->reason);
    return false;
}

bool VmWatcher::watchBoot() {
    using Clock = std::chrono::steady_clock;
    if (!boot_ || boot_->settled)
        return true;
    const auto now = Clock::now();
    if (now < nextSign_)
        return true;
    nextSign_ = now + kSignInterval;
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - boot_->since);
    if (std::string sign = boot_->sign ? boot_->sign() : std::string(); !sign.empty()) {
        ISR_LOG_INFO("session") << "the guest's operating system runs (" << sign << ") "
                                << waited.count() / 1000.0 << " s after the firmware started";
        boot_->setSeen(FirstBootSign{std::move(sign), waited});
        boot_->settled = true;
        return true;
    }
    if (waited < boot_->bound)
        return true;
    boot_->settled = true;
    if (boot_->notStarted)
        boot_->notStarted(waited);
    return false;
}

} // namespace isr::session
