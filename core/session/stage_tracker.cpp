#include "session/stage_tracker.h"

#include "util/log.h"

namespace isr::session {

void StageTracker::closeTimelineRow() {
    std::uint64_t down = down_.load();
    std::uint64_t up = up_.load();
    if (stage_ != Stage::SignedOut && stage_ != Stage::Failed) {
        double secs = std::chrono::duration<double>(Clock::now() - stageStart_).count();
        timeline_.push_back({stage_, secs, down - stageDown_, up - stageUp_});
    }
    stageStart_ = Clock::now();
    stageDown_ = down;
    stageUp_ = up;
}

void StageTracker::enter(Stage next) {
    std::optional<std::pair<double, std::uint64_t>> resumed, suspended;
    {
        std::lock_guard lock(mutex_);
        if (!isLegalTransition(stage_, next)) {
            ISR_LOG_ERROR("session")
                << "illegal transition " << stageName(stage_) << " -> " << stageName(next);
        }
        closeTimelineRow();
        const Stage from = stage_;
        const auto now = Clock::now();
        // A resume runs from sign-in (or a retry out of Failed) to Running;
        // a save from Suspending to the wipe after the commit.
        if (next == Stage::Authenticating ||
            (next == Stage::CheckingOut && from == Stage::Failed)) {
            resumeStart_ = now;
            resumeDown_ = down_.load();
        } else if (next == Stage::Running && from == Stage::Restoring) {
            resumed.emplace(std::chrono::duration<double>(now - resumeStart_).count(),
                            down_.load() - resumeDown_);
        } else if (next == Stage::Suspending) {
            suspendStart_ = now;
            suspendUp_ = up_.load();
        } else if (next == Stage::Wiping && from == Stage::Suspending) {
            suspended.emplace(std::chrono::duration<double>(now - suspendStart_).count(),
                              up_.load() - suspendUp_);
        }
        stage_ = next;
        if (next != Stage::Failed)
            failure_.reset();
    }
    if (metrics_) {
        if (resumed)
            metrics_->resumed(resumed->first, resumed->second);
        if (suspended)
            metrics_->suspended(suspended->first, suspended->second);
        if (next == Stage::Running || next == Stage::SignedOut)
            metrics_->sessionActive(next == Stage::Running);
    }
    ISR_LOG_INFO("session") << "stage: " << stageName(next);
    if (listener_.stageChanged)
        listener_.stageChanged(next);
}

void StageTracker::fail(const Failure& failure) {
    {
        std::lock_guard lock(mutex_);
        failure_ = failure;
    }
    ISR_LOG_WARN("session") << stageName(failure.stage) << " failed ("
                            << failureCauseName(failure.cause) << "): " << failure.detail;
    if (metrics_)
        metrics_->failed(failure.stage, failure.kind);
    if (listener_.failed)
        listener_.failed(failure);
    enter(Stage::Failed);
}

void StageTracker::progress(const std::string& what, std::uint64_t done, std::uint64_t total,
                            Clock::time_point since) {
    if (!listener_.progress)
        return;
    double secs = std::chrono::duration<double>(Clock::now() - since).count();
    Progress p;
    p.stage = stage();
    p.what = what;
    p.done = done;
    p.total = total;
    p.bytesPerSecond = secs > 0 ? double(done) / secs : 0;
    listener_.progress(p);
}

Stage StageTracker::stage() const {
    std::lock_guard lock(mutex_);
    return stage_;
}

std::optional<Failure> StageTracker::failure() const {
    std::lock_guard lock(mutex_);
    return failure_;
}

std::vector<TimelineEntry> StageTracker::timeline() const {
    std::lock_guard lock(mutex_);
    return timeline_;
}

} // namespace isr::session
