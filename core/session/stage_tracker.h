#pragma once
// StageTracker: where the session is (its Stage), why it failed (its
// Failure), how long each stage took and what it moved (its timeline), and
// the Listener all of that is announced to.
//
// Every transition goes through enter(): it checks the transition against
// isLegalTransition (an illegal one is logged as the bug it is, and still
// taken), closes the timeline row of the stage it leaves with the seconds
// spent and the bytes that crossed to and from the store meanwhile (the
// counters a store::CountingStore adds to), and announces the stage.
//
// Threads: enter(), fail() and progress() are called by the controlling
// thread, by the VM watcher's thread (the VM ended while Running) and, for
// progress(), by worker threads; the session makes sure two transitions never
// race (it stops the watcher before it changes the stage). State is guarded
// by the tracker's own mutex; Listener callbacks run outside it, on the
// calling thread. stage(), failure() and timeline() are safe from any thread.

#include "session/metrics.h"
#include "session/session.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace isr::session {

class StageTracker {
public:
    using Clock = std::chrono::steady_clock;

    explicit StageTracker(Listener listener) : listener_(std::move(listener)) {}

    // Leaves the current stage for `next`; any stage but Failed clears the
    // failure.
    void enter(Stage next);
    // Records the failure and announces it, then enters Failed: the failure
    // first, so a UI switching to its error page on the stage change finds
    // it there.
    void fail(const Failure& failure);
    // Announces progress in the current stage; bytesPerSecond is done over
    // the time since `since`.
    void progress(const std::string& what, std::uint64_t done, std::uint64_t total,
                  Clock::time_point since);

    Stage stage() const;
    std::optional<Failure> failure() const;
    std::vector<TimelineEntry> timeline() const;

    // Bytes from and to the store, ever: what a store::CountingStore counts
    // into. They outlive every store, so a row can span a sign-in.
    std::atomic<std::uint64_t>& bytesDown() { return down_; }
    std::atomic<std::uint64_t>& bytesUp() { return up_; }

    // Who the events in the log are about: tags (keyed hashes, never names;
    // session.cpp) of the signed-in user and the parcel, "" for none yet.
    void setSubject(std::string userTag, std::string parcelTag);

    // Resumes, saves and failures are counted into `metrics` (may be null;
    // set once, before the first transition).
    void setMetrics(KioskMetrics* metrics) { metrics_ = metrics; }
    // Announces the version a resume opens (Listener::resuming).
    void resuming(const SavedVersion& saved) const {
        if (listener_.resuming)
            listener_.resuming(saved);
    }

private:
    void closeTimelineRow(); // under mutex_

    const Listener listener_;
    std::atomic<std::uint64_t> down_{0}, up_{0};

    mutable std::mutex mutex_; // guards everything below
    Stage stage_ = Stage::SignedOut;
    std::optional<Failure> failure_;
    std::vector<TimelineEntry> timeline_;
    Clock::time_point stageStart_ = Clock::now();
    std::uint64_t stageDown_ = 0, stageUp_ = 0; // the counters when the stage began
    KioskMetrics* metrics_ = nullptr;
    std::string userTag_, parcelTag_; // guarded by mutex_
    // Where the resume (sign-in or retry) and the save began, for metrics_.
    Clock::time_point resumeStart_, suspendStart_;
    std::uint64_t resumeDown_ = 0, suspendUp_ = 0;
};

} // namespace isr::session
