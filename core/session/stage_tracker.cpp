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
    {
        std::lock_guard lock(mutex_);
        if (!isLegalTransition(stage_, next)) {
            ISR_LOG_ERROR("session")
                << "illegal transition " << stageName(stage_) << " -> " << stageName(next);
        }
        closeTimelineRow();
        stage_ = next;
        if (next != Stage::Failed)
            failure_.reset();
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
