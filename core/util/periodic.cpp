#include "util/periodic.h"

namespace isr {

void PeriodicThread::start(std::chrono::milliseconds interval, Task task) {
    stop();
    {
        std::lock_guard lock(mutex_);
        stopRequested_ = false;
        active_ = true;
    }
    thread_ = std::thread([this, interval, task = std::move(task)] { loop(interval, task); });
}

void PeriodicThread::stop() {
    {
        std::lock_guard lock(mutex_);
        stopRequested_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable())
        thread_.join();
}

bool PeriodicThread::running() const {
    std::lock_guard lock(mutex_);
    return active_;
}

void PeriodicThread::loop(std::chrono::milliseconds interval, Task task) {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, interval, [this] { return stopRequested_; })) {
        lock.unlock();
        bool again = task();
        lock.lock();
        if (!again)
            break;
    }
    active_ = false;
}

} // namespace isr
