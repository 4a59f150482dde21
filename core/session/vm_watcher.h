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
// First boot of a firmware parcel (issue #15): a disk the firmware cannot
// boot after all (an EFI system partition without a loader, a kernel that
// cannot start, an unsigned loader under Secure Boot) leaves OVMF or
// SeaBIOS at a boot menu or network boot for ever while the session says
// Running. With a FirstBoot watch the watcher also asks, every
// kSignInterval, for a sign that the guest's operating system runs (the
// session's: balloon driver, guest agent, writes to the disk); none within
// the bound and it calls notStarted once instead of watching on. A sign
// settles the watch for the rest of the session (a later watcher restart,
// e.g. around the lock screen, does not watch again).
//
// Threads: start()/stop() from one owning thread. The callback runs on the
// watcher's own thread, at most once per start(); the thread ends after it.
// stop() joins, so once it returns the callback is not running and will not
// run. The callback must not call stop() (it would join itself).

#include "session/session.h"
#include "util/periodic.h"
#include "vm/vm.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace isr::session {

// Owned by the session (it outlives the watchers it is given to).
struct FirstBoot {
    std::chrono::steady_clock::time_point since; // the firmware started
    std::chrono::milliseconds bound{0};
    // What shows the OS runs ("balloon driver", ...), empty while nothing.
    std::function<std::string()> sign;
    // On the watcher's thread, at most once; the watch ends after it.
    std::function<void(std::chrono::milliseconds waited)> notStarted;
    // Set by the watcher when a sign came or notStarted was called.
    std::atomic<bool> settled{true};

    // The sign that settled the watch and how long after `since` the
    // watcher saw it (Session::firstBootSign); nullopt while none.
    std::optional<FirstBootSign> seen() const {
        std::lock_guard lk(seenMutex_);
        return seen_;
    }
    void setSeen(std::optional<FirstBootSign> s) {
        std::lock_guard lk(seenMutex_);
        seen_ = std::move(s);
    }

private:
    mutable std::mutex seenMutex_;
    std::optional<FirstBootSign> seen_;
};

class VmWatcher {
public:
    // reason: from the domain log; stateReason: libvirt's state reason (logs).
    using Ended = std::function<void(vm::VmStopReason reason, const std::string& stateReason)>;

    static constexpr std::chrono::milliseconds kPollInterval{500};
    static constexpr std::chrono::milliseconds kSignInterval{2000};

    VmWatcher() = default;
    ~VmWatcher() { stop(); }
    VmWatcher(const VmWatcher&) = delete;
    VmWatcher& operator=(const VmWatcher&) = delete;

    // Watches `vm` (which must outlive the watch: stop() before dropping it).
    // A watch already running is stopped first.
    // `boot`, when given and not settled, is watched too (see above).
    void start(const vm::Vm& vm, Ended ended, FirstBoot* boot = nullptr,
               std::chrono::milliseconds interval = kPollInterval);
    void stop();

private:
    bool poll();      // the periodic task: false once the VM ended
    bool watchBoot(); // false once notStarted was called

    const vm::Vm* vm_ = nullptr;
    Ended ended_;
    FirstBoot* boot_ = nullptr;
    std::chrono::steady_clock::time_point nextSign_;
    bool pausedSeen_ = false; // only touched by the watcher thread while it runs
    PeriodicThread thread_;
};

} // namespace isr::session
