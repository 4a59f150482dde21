#pragma once
// PeriodicThread: one background thread that runs a task every `interval`
// until stopped. The three loops that used to be written by hand (the lock
// heartbeat, the VM watcher, the disk's trickle upload) are each one of these.
//
// The task returns whether to keep going: a watcher that saw the end of its
// VM returns false and the thread ends by itself. stop() wakes the thread at
// once (it does not wait out the interval), joins it and is idempotent; the
// destructor stops. The task never runs concurrently with itself, and never
// after stop() returned.
//
// Threads: start()/stop() from one owning thread. The task must not call
// stop() on its own PeriodicThread (it would join itself); return false.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace isr {

class PeriodicThread {
public:
    using Task = std::function<bool()>; // false: stop after this run

    PeriodicThread() = default;
    ~PeriodicThread() { stop(); }
    PeriodicThread(const PeriodicThread&) = delete;
    PeriodicThread& operator=(const PeriodicThread&) = delete;

    // Runs `task` after each `interval` (the first run after one interval).
    // A running thread is stopped first.
    void start(std::chrono::milliseconds interval, Task task);
    // Wakes the thread, waits for a running task to return, joins.
    void stop();
    bool running() const;

private:
    void loop(std::chrono::milliseconds interval, Task task);

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopRequested_ = false;
    bool active_ = false;
    std::thread thread_;
};

} // namespace isr
