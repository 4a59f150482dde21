#include "session/vm_watcher.h"

#include "util/log.h"

namespace isr::session {

void VmWatcher::start(const vm::Vm& vm, Ended ended, std::chrono::milliseconds interval) {
    stop();
    // Set before the thread starts (PeriodicThread::start publishes them to it).
    vm_ = &vm;
    ended_ = std::move(ended);
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
        return true;
    if (ended_)
        ended_(vm_->lastStopReason(), st->reason);
    return false;
}

} // namespace isr::session
