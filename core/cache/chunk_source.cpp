#include "cache/chunk_source.h"

#include "util/log.h"

#include <algorithm>

namespace isr::cache {

namespace {
constexpr const char* kLog = "cache";
} // namespace

ChunkSource::ChunkSource(ChunkCache* cache, FetchCiphertext fetch)
    : cache_(cache), fetch_(std::move(fetch)) {}

ChunkSource::~ChunkSource() = default;

std::optional<Bytes> ChunkSource::fromCache(const chunk::ChunkName& name) {
    if (!cache_)
        return std::nullopt;
    auto hit = cache_->get(name);
    if (!hit.ok())
        return std::nullopt;
    cacheHits_++;
    return std::move(*hit);
}

Result<Fetched> ChunkSource::read(const chunk::ChunkName& name) {
    if (auto hit = fromCache(name))
        return Fetched{std::move(*hit), Origin::Cache, {}};
    demandWaiting_++;
    Result<Fetched> result = fromStore(name);
    lastDemandNs_ = std::chrono::steady_clock::now().time_since_epoch().count();
    {
        // Under the mutex, so that waitForNoDemand cannot miss the wake-up.
        std::lock_guard lock(mutex_);
        if (--demandWaiting_ == 0)
            noDemand_.notify_all();
    }
    return result;
}

Result<Bytes> ChunkSource::get(const chunk::ChunkName& name) {
    ISR_TRY_ASSIGN(Fetched fetched, read(name));
    return std::move(fetched.ciphertext);
}

Result<Fetched> ChunkSource::prefetch(const chunk::ChunkName& name) {
    if (!cache_)
        return Error(Errc::InvalidArgument, "no cache to prefetch into");
    // A demand read may have brought it in since the caller last looked.
    if (cache_->contains(name))
        return Fetched{{}, Origin::Cache, {}};
    return fromStore(name);
}

bool ChunkSource::demandWithin(std::chrono::milliseconds window) const {
    if (demandWaiting_.load() > 0)
        return true;
    const std::int64_t last = lastDemandNs_.load();
    if (last == 0)
        return false;
    const auto since = std::chrono::steady_clock::now().time_since_epoch() -
                       std::chrono::steady_clock::duration(last);
    return since < window;
}

bool ChunkSource::claimPrefetch(std::chrono::milliseconds burst, int burstSlots) {
    int n = prefetchesInFlight_.load();
    for (;;) {
        if (n >= std::max(1, burstSlots) && demandWithin(burst))
            return false;
        if (prefetchesInFlight_.compare_exchange_weak(n, n + 1))
            return true;
    }
}

bool ChunkSource::isCached(const chunk::ChunkName& name) {
    return cache_ && cache_->contains(name);
}

bool ChunkSource::waitForNoDemand(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return noDemand_.wait_for(lock, timeout, [&] { return demandWaiting_.load() == 0; });
}

ChunkSourceStats ChunkSource::stats() const {
    return {cacheHits_.load(), storeFetches_.load(),  sharedDownloads_.load(),
            corrupt_.load(),   cacheFailures_.load(), bytesFetched_.load()};
}

Result<Fetched> ChunkSource::fromStore(const chunk::ChunkName& name) {
    std::promise<Download> promise;
    std::shared_future<Download> joined;
    {
        std::lock_guard lock(mutex_);
        auto it = inflight_.find(name);
        if (it != inflight_.end())
            joined = it->second;
        else
            inflight_.emplace(name, promise.get_future().share());
    }
    if (joined.valid()) {
        sharedDownloads_++;
        const Download& shared = joined.get();
        if (!shared.data.ok())
            return shared.data.error();
        return Fetched{*shared.data, Origin::Shared, shared.cached};
    }

    // This caller owns the download. The entry leaves the map however this
    // ends (an exception leaves a broken promise for the joiners, not an
    // entry that every later reader would join).
    struct Unregister {
        ChunkSource& source;
        const chunk::ChunkName& name;
        ~Unregister() {
            std::lock_guard lock(source.mutex_);
            source.inflight_.erase(name);
        }
    } unregister{*this, name};
    // Another reader of the same name may have finished its download (and
    // left the map) between this reader's cache miss and its look-up above:
    // the cache has the chunk then, and a second download would be waste.
    if (auto hit = fromCache(name)) {
        Download cached;
        cached.data = *hit;
        promise.set_value(cached);
        return Fetched{std::move(*hit), Origin::Cache, {}};
    }
    Download done = download(name);
    promise.set_value(done);
    if (!done.data.ok())
        return std::move(done.data).error();
    return Fetched{std::move(*done.data), Origin::Store, std::move(done.cached)};
}

ChunkSource::Download ChunkSource::download(const chunk::ChunkName& name) {
    storeFetches_++;
    Download done;
    done.data = fetch_(name);
    if (done.data.ok()) {
        bytesFetched_ += done.data->size();
        chunk::ChunkName actual = chunk::nameOf(*done.data);
        if (actual != name) {
            corrupt_++;
            ISR_LOG_ERROR(kLog) << "CORRUPT chunk from store: " << chunk::nameHex(name)
                                << " hashes to " << chunk::nameHex(actual) << "; refusing it";
            done.data = Error(Errc::Corrupt, "chunk " + chunk::nameHex(name) +
                                                 " from the store does not match its name");
            return done;
        }
        if (cache_) {
            done.cached = cache_->put(name, *done.data);
            if (!done.cached.ok()) {
                // The reader still gets its chunk; only keeping it failed.
                cacheFailures_++;
                ISR_LOG_WARN(kLog) << "cache put " << chunk::nameHex(name) << ": "
                                   << done.cached.error().describe();
            }
        }
        return done;
    }
    ISR_LOG_WARN(kLog) << "fetch of chunk " << chunk::nameHex(name)
                       << " failed: " << done.data.error().describe();
    return done;
}

} // namespace isr::cache
