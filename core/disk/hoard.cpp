#include "disk/hoard.h"

#include "util/log.h"

#include <algorithm>
#include <sys/statvfs.h>

namespace isr::disk {

namespace {

constexpr const char* kLog = "disk";
// How long a worker sleeps at most while demand reads run before it looks
// at stop/pause again.
constexpr std::chrono::milliseconds kDemandPoll{20};

// Kinds of failure that are not the chunk's fault: stall and retry.
// From the cache: NoSpace, Io (the kiosk's disk); from the store:
// Transient, Io (unreachable).
bool stallsHoard(const Error& e) {
    return e.code == Errc::NoSpace || e.code == Errc::Transient || e.code == Errc::Io;
}

} // namespace

Hoard::Hoard(cache::ChunkSource& source, std::vector<chunk::ChunkRef> chunks, HoardOptions options)
    : source_(source), chunks_(std::move(chunks)), options_(std::move(options)) {
    for (const auto& ref : chunks_)
        bytesTotal_ += ref.length;
    bandwidthLimit_ = options_.bandwidthLimit;
}

Hoard::~Hoard() {
    stop();
}

void Hoard::start() {
    std::lock_guard lock(mutex_);
    if (started_ || stopping_)
        return;
    started_ = true;
    startedAt_ = Clock::now();
    if (!source_.cache() || chunks_.empty()) {
        // Nothing to keep: without a cache every read goes to the store.
        finished_ = true;
        endedAt_ = startedAt_;
        cv_.notify_all();
        return;
    }
    int threads = std::max(1, options_.threads);
    running_ = threads;
    for (int i = 0; i < threads; ++i)
        workers_.emplace_back([this] { worker(); });
}

void Hoard::pause() {
    std::lock_guard lock(mutex_);
    paused_ = true;
}

void Hoard::resume() {
    {
        std::lock_guard lock(mutex_);
        paused_ = false;
    }
    cv_.notify_all();
}

void Hoard::stop() {
    std::vector<std::thread> workers;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        workers = std::move(workers_);
        workers_.clear();
    }
    cv_.notify_all();
    for (auto& t : workers)
        t.join();
}

void Hoard::setBandwidthLimit(std::uint64_t bytesPerSecond) {
    bandwidthLimit_ = bytesPerSecond;
}

HoardProgress Hoard::progress() const {
    std::lock_guard lock(mutex_);
    HoardProgress p;
    p.chunksTotal = chunks_.size();
    p.bytesTotal = bytesTotal_;
    p.chunksDone = chunksDone_.load();
    p.bytesDone = bytesDone_.load();
    p.bytesFetched = bytesFetched_.load();
    p.failures = failures_.load();
    p.running = running_ > 0 && !paused_;
    p.finished = finished_;
    p.stalled = stall_;
    if (started_) {
        auto end = running_ > 0 ? Clock::now() : endedAt_;
        double seconds = std::chrono::duration<double>(end - startedAt_).count();
        if (seconds > 0)
            p.bytesPerSecond = double(p.bytesFetched) / seconds;
    }
    return p;
}

bool Hoard::wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return finished_; });
}

void Hoard::throttle(std::uint64_t bytes) {
    std::uint64_t limit = bandwidthLimit_.load();
    if (limit == 0)
        return;
    Clock::time_point until;
    {
        std::lock_guard lock(throttleMutex_);
        auto now = Clock::now();
        if (throttleNext_ < now)
            throttleNext_ = now;
        until = throttleNext_;
        throttleNext_ += std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(double(bytes) / double(limit)));
    }
    std::unique_lock lock(mutex_);
    cv_.wait_until(lock, until, [&] { return stopping_; });
}

// Called with mutex_ held after a probe or a chunk failed for a stalling
// reason: the chunk goes back in the queue, the next try waits.
void Hoard::stallLocked(std::size_t item, const Error& why) {
    retry_.push_back(item);
    backoff_ =
        std::clamp(backoff_ * 2, std::chrono::milliseconds(1000), std::chrono::milliseconds(30000));
    retryAt_ = Clock::now() + backoff_;
    if (!stall_ || stall_->code != why.code) {
        ISR_LOG_WARN(kLog) << "hoard stalled, retrying with backoff: " << why.describe();
    }
    stall_ = why;
}

// NoSpace when storing `bytes` more would eat into the reserve.
Status Hoard::checkRoom(std::uint64_t bytes) const {
    if (options_.freeSpaceReserve == 0)
        return {};
    struct statvfs vfs {};
    if (::statvfs(options_.reserveDirectory.c_str(), &vfs) != 0)
        return {}; // cannot tell: let the cache's own write decide
    std::uint64_t free = std::uint64_t(vfs.f_bavail) * vfs.f_frsize;
    if (free >= options_.freeSpaceReserve + bytes)
        return {};
    return Error(Errc::NoSpace, std::to_string(free >> 20) + " MiB free on the kiosk's disk (" +
                                    options_.reserveDirectory + "), the hoard leaves " +
                                    std::to_string(options_.freeSpaceReserve >> 20) +
                                    " MiB for the session's writes");
}

void Hoard::worker() {
    // The source's background slot this iteration holds (see below).
    struct Slot {
        cache::ChunkSource* source = nullptr;
        ~Slot() {
            if (source)
                source->releasePrefetch();
        }
    };
    for (;;) {
        std::size_t item = 0;
        bool probe = false;
        Slot slot;
        {
            std::unique_lock lock(mutex_);
            for (;;) {
                if (stopping_)
                    break;
                if (paused_) {
                    cv_.wait(lock);
                    continue;
                }
                if (stall_ && (probing_ || Clock::now() < retryAt_)) {
                    if (probing_)
                        cv_.wait(lock);
                    else
                        cv_.wait_until(lock, retryAt_);
                    continue;
                }
                if (source_.demandWaiting() > 0) { // demand reads go first
                    lock.unlock();
                    source_.waitForNoDemand(kDemandPoll);
                    lock.lock();
                    continue;
                }
                // Demand reads coming in bursts (a guest faulting in
                // memory or a disk's working set): one hoard download at a
                // time, or burstDownloads for small chunks (both hoards of
                // a session share the source), so the next fault does not
                // queue on the link behind several.
                // The slot is claimed here and released after the fetch (a
                // cached chunk or a stall releases it at once).
                if (!source_.claimPrefetch(options_.demandBurst, options_.burstDownloads)) {
                    lock.unlock();
                    std::this_thread::sleep_for(kDemandPoll);
                    lock.lock();
                    continue;
                }
                slot.source = &source_;
                break;
            }
            if (stopping_)
                break;
            if (!retry_.empty()) {
                item = retry_.front();
                retry_.pop_front();
            } else {
                if (cursor_ >= chunks_.size())
                    break;
                item = cursor_++;
            }
            if (stall_) {
                probe = true;
                probing_ = true;
            }
        }
        const chunk::ChunkRef& ref = chunks_[item];
        std::optional<Error> stalledBy;
        bool failed = false;
        bool stored = false; // fetched and kept: proof the stall is over
        Bytes ciphertext;    // for options_.settled, if downloaded now
        if (!source_.isCached(ref.name)) {
            throttle(ref.length);
            if (auto room = checkRoom(ref.length); !room.ok()) {
                std::lock_guard lock(mutex_);
                if (probe)
                    probing_ = false;
                stallLocked(item, room.error());
                cv_.notify_all();
                continue;
            }
            auto fetched = source_.prefetch(ref.name);
            if (fetched.ok()) {
                bytesFetched_ += fetched->ciphertext.size(); // empty if the cache had it
                ciphertext = std::move(fetched->ciphertext);
                if (!fetched->cached.ok() && stallsHoard(fetched->cached.error()))
                    stalledBy = fetched->cached.error();
                else
                    stored = fetched->cached.ok();
            } else if (stallsHoard(fetched.error())) {
                // Io here is the store's (e.g. a file store's mount gone):
                // report it as unreachable, not as this kiosk's disk.
                stalledBy = fetched.error();
                if (stalledBy->code == Errc::Io)
                    stalledBy->code = Errc::Transient;
            } else {
                failed = true; // missing or corrupt: a demand read retries and reports
            }
        }
        {
            std::lock_guard lock(mutex_);
            if (probe)
                probing_ = false;
            if (stalledBy) {
                stallLocked(item, *stalledBy);
            } else if (stall_ && stored) {
                ISR_LOG_INFO(kLog) << "hoard going again after: " << stall_->describe();
                stall_.reset();
                backoff_ = std::chrono::milliseconds(0);
            }
        }
        if (probe)
            cv_.notify_all();
        if (stalledBy)
            continue;
        if (failed) {
            failures_++;
            continue;
        }
        if (options_.settled)
            options_.settled(ref, ciphertext);
        chunksDone_++;
        bytesDone_ += ref.length;
    }
    std::lock_guard lock(mutex_);
    if (--running_ == 0) {
        endedAt_ = Clock::now();
        finished_ = cursor_ >= chunks_.size() && retry_.empty();
        cv_.notify_all();
    }
}

} // namespace isr::disk
