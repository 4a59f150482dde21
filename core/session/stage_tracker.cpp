#include "session/stage_tracker.h"

#include "util/log.h"

#include <cstdio>

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

namespace {

std::string seconds(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", s);
    return buf;
}

} // namespace

void StageTracker::setSubject(std::string userTag, std::string parcelTag) {
    std::lock_guard lock(mutex_);
    userTag_ = std::move(userTag);
    parcelTag_ = std::move(parcelTag);
}

void StageTracker::enter(Stage next) {
    std::optional<std::pair<double, std::uint64_t>> resumed, suspended;
    std::vector<log::Field> subject;
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
        if (!userTag_.empty())
            subject.push_back({"ISR_USER", userTag_});
        if (!parcelTag_.empty())
            subject.push_back({"ISR_PARCEL", parcelTag_});
        if (next == Stage::SignedOut) {
            userTag_.clear();
            parcelTag_.clear();
        }
    }
    if (metrics_) {
        if (resumed)
            metrics_->resumed(resumed->first, resumed->second);
        if (suspended)
            metrics_->suspended(suspended->first, suspended->second);
        if (next == Stage::Running || next == Stage::SignedOut)
            metrics_->sessionActive(next == Stage::Running);
    }
    // Structured events for the journal (util/log.h): every stage, and a
    // resume's or a save's duration and bytes.
    auto fields = [&](std::vector<log::Field> f) {
        f.insert(f.end(), subject.begin(), subject.end());
        return f;
    };
    if (resumed)
        log::event(log::Level::Info, "session",
                   "resumed in " + seconds(resumed->first) + " s, " +
                       std::to_string(resumed->second) + " bytes from the store",
                   fields({{"ISR_EVENT", "resumed"},
                           {"ISR_DURATION_S", seconds(resumed->first)},
                           {"ISR_BYTES_DOWN", std::to_string(resumed->second)}}));
    if (suspended)
        log::event(log::Level::Info, "session",
                   "saved in " + seconds(suspended->first) + " s, " +
                       std::to_string(suspended->second) + " bytes to the store",
                   fields({{"ISR_EVENT", "suspended"},
                           {"ISR_DURATION_S", seconds(suspended->first)},
                           {"ISR_BYTES_UP", std::to_string(suspended->second)}}));
    log::event(log::Level::Info, "session", std::string("stage: ") + stageName(next),
               fields({{"ISR_EVENT", "stage"}, {"ISR_STAGE", snakeCase(stageName(next))}}));
    if (listener_.stageChanged)
        listener_.stageChanged(next);
}

void StageTracker::fail(const Failure& failure) {
    {
        std::lock_guard lock(mutex_);
        failure_ = failure;
    }
    std::vector<log::Field> fields = {{"ISR_EVENT", "failed"},
                                      {"ISR_STAGE", snakeCase(stageName(failure.stage))},
                                      {"ISR_ERROR_KIND", snakeCase(errorKindName(failure.kind))},
                                      {"ISR_CAUSE", snakeCase(failureCauseName(failure.cause))}};
    {
        std::lock_guard lock(mutex_);
        if (!userTag_.empty())
            fields.push_back({"ISR_USER", userTag_});
        if (!parcelTag_.empty())
            fields.push_back({"ISR_PARCEL", parcelTag_});
    }
    log::event(log::Level::Warn, "session",
               std::string(stageName(failure.stage)) + " failed (" +
                   failureCauseName(failure.cause) + "): " + failure.detail,
               fields);
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
