#pragma once
// VmWatcher: notices that a running VM ended by itself (QEMU killed or
// crashed, or the guest powered itself off) and says so once.
//
// A status poll (virDomainGetState, an in-process call under the embedded
// driver) every half second, not libvirt's lifecycle events: with the
// embedded QEMU driver of libvirt 9.0 a domain lifecycle callback registered
// fine (virConnectDomainEventRegisterAny on the default event loop core/vm
// runs) but was never called, neither for a SIGKILLed QEMU nor for a guest
// power-off, while the poll saw both within a second. A transient domain
// that stopped is gone at once, so the watcher learns *why* from the
// "shutting down, reason=" line libvirt writes to the domain log first
// (Vm::lastStopReason).
//
// What counts as an end: ShutOff or Crashed. A VM paused on a disk error
// (error_policy=stop, e.g. the overlay's file system full) is alive: logged
// once per pause, not an end. A failed status call (a libvirt hiccup) is not
// an end either: the next poll asks again.
//
// Threads: start()/stop() from one owning thread. The callback runs on the
// watcher's own thread, at most once per start(); the thread ends after it.
// stop() joins, so once it returns the callback is not running and will not
// run. The callback must not call stop() (it would join itself).

#include "util/periodic.h"
#include "vm/vm.h"

#include <chrono>
#include <functional>
#include <string>

namespace isr::session {

class VmWatcher {
public:
    // reason: from the domain log; stateReason: libvirt's state reason (logs).
    using Ended = std::function<void(vm::VmStopReason reason, const std::string& stateReason)>;

    static constexpr std::chrono::milliseconds kPollInterval{500};

    VmWatcher() = default;
    ~VmWatcher() { stop(); }
    VmWatcher(const VmWatcher&) = delete;
    VmWatcher& operator=(const VmWatcher&) = delete;

    // Watches `vm` (which must outlive the watch: stop() before dropping it).
    // A watch already running is stopped first.
    void start(const vm::Vm& vm, Ended ended, std::chrono::milliseconds interval = kPollInterval);
    void stop();

private:
    bool poll(); // the periodic task: false once the VM ended

    const vm::Vm* vm_ = nullptr;
    Ended ended_;
    bool pausedSeen_ = false; // only touched by the watcher thread while it runs
    PeriodicThread thread_;
};

} // namespace isr::session
