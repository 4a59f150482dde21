#pragma once
// Private to memimg: a fixed pool of threads that runs tasks in any order and
// hands their results back in submission order.
//
// Contract: one owner thread calls submit()/takeNext()/full(); tasks run on
// the pool threads. The owner must call takeNext() while full() is true
// before it submits more (submit never blocks), which bounds memory to
// maxInFlight results. Destruction stops unstarted tasks and joins.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace isr::memimg::detail {

template <typename Out> class OrderedPool {
public:
    OrderedPool(unsigned threads, std::size_t maxInFlight)
        : maxInFlight_(maxInFlight < 1 ? 1 : maxInFlight) {
        if (threads < 1)
            threads = 1;
        for (unsigned i = 0; i < threads; ++i)
            workers_.emplace_back([this] { run(); });
    }
    ~OrderedPool() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        workAvailable_.notify_all();
        for (auto& t : workers_)
            t.join();
    }
    OrderedPool(const OrderedPool&) = delete;
    OrderedPool& operator=(const OrderedPool&) = delete;

    bool full() const {
        std::lock_guard lock(mutex_);
        return slots_.size() >= maxInFlight_;
    }
    bool empty() const {
        std::lock_guard lock(mutex_);
        return slots_.empty();
    }
    void submit(std::function<Out()> task) {
        {
            std::lock_guard lock(mutex_);
            slots_.push_back(Slot{std::move(task), std::nullopt});
        }
        workAvailable_.notify_one();
    }
    // Waits for the oldest task. Precondition: !empty().
    Out takeNext() {
        std::unique_lock lock(mutex_);
        resultReady_.wait(lock, [&] { return slots_.front().result.has_value(); });
        Out out = std::move(*slots_.front().result);
        slots_.pop_front();
        ++taken_;
        return out;
    }

private:
    struct Slot {
        std::function<Out()> task;
        std::optional<Out> result;
    };

    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            workAvailable_.wait(lock, [&] { return stop_ || started_ < taken_ + slots_.size(); });
            if (stop_)
                return;
            const std::size_t seq = started_++;
            std::function<Out()> task = std::move(slots_[seq - taken_].task);
            lock.unlock();
            Out out = task();
            lock.lock();
            // slots_ only shrinks from the front once a result is there, so
            // this task's slot is still at seq - taken_.
            slots_[seq - taken_].result.emplace(std::move(out));
            resultReady_.notify_all();
        }
    }

    const std::size_t maxInFlight_;
    mutable std::mutex mutex_;
    std::condition_variable workAvailable_;
    std::condition_variable resultReady_;
    std::deque<Slot> slots_;  // submitted and not yet taken, oldest first
    std::size_t started_ = 0; // sequence number of the next task to start
    std::size_t taken_ = 0;   // results handed back so far
    bool stop_ = false;
    std::vector<std::thread> workers_;
};

} // namespace isr::memimg::detail
