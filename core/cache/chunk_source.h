#pragma once
// ChunkSource: the one road for chunk reads on a kiosk. The virtual disk's
// demand reads, its hoard and the memory-image streamer all get ciphertext
// through one of these (one per signed-in user), so that:
//
//  - the cache is asked first, then the store (`fetch`, e.g.
//    Parcels::fetchChunk); the cache may be null (every miss goes to the store);
//  - one chunk name is downloaded once however many readers ask at the same
//    time: later callers join the download in flight (demand vs hoard,
//    streamer vs demand) — desync's DedupQueue; one that comes just after a
//    download ended finds the chunk in the cache (a download's owner looks
//    there again once registered, before it goes to the store);
//  - a download is checked against its name (chunk::nameOf) before it goes
//    near the cache: a mismatch is Corrupt, counted, logged and never cached;
//  - a cache that cannot keep a download (NoSpace, Io) does not fail the
//    read: the caller gets the bytes, the cache's error is logged and
//    reported (Fetched::cached) so the hoard can stall on it;
//  - demand reads never wait behind background work: there is no queue, each
//    caller downloads on its own thread; and the source counts the demand
//    reads waiting for the store (demandWaiting / waitForNoDemand) so the
//    hoard can step aside while any run.
//
// ChunkSource knows nothing of disks, memory images or sessions (core/cache
// depends only on chunk, crypto and util; the store is behind `fetch`). It
// returns ciphertext: decoding (MAC, length) is the caller's, with the key.
//
// Thread safety: every method may be called from many threads at once.
// Locking: one mutex (mutex_) guards the in-flight map and the demand count;
// it is a leaf, never held while calling the cache or `fetch`.

#include "cache/cache.h"
#include "chunk/chunk.h"
#include "util/bytes.h"
#include "util/result.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>

namespace isr::cache {

// Downloads a chunk's ciphertext from the store. Called from many threads at once.
using FetchCiphertext = std::function<Result<Bytes>(const chunk::ChunkName&)>;

// Where a read found its chunk.
enum class Origin : std::uint8_t {
    Cache,  // the cache had it
    Store,  // this caller downloaded it
    Shared, // this caller joined a download another caller had started
};

struct Fetched {
    Bytes ciphertext; // verified against its name
    Origin origin = Origin::Cache;
    // The cache's verdict on keeping the download (also for a joined one):
    // ok for a hit or when it was kept; an error (NoSpace, Io...) when the
    // cache could not keep it; ok without a cache.
    Status cached;
};

struct ChunkSourceStats {
    std::uint64_t cacheHits = 0;       // reads the cache answered
    std::uint64_t storeFetches = 0;    // downloads started (at most one per name at a time)
    std::uint64_t sharedDownloads = 0; // reads that joined a download in flight
    std::uint64_t corrupt = 0;         // downloads that did not hash to their name
    std::uint64_t cacheFailures = 0;   // downloads the cache could not keep
    std::uint64_t bytesFetched = 0;    // ciphertext bytes downloaded
};

class ChunkSource {
public:
    // `cache` may be null and must outlive the source.
    ChunkSource(ChunkCache* cache, FetchCiphertext fetch);
    ~ChunkSource();
    ChunkSource(const ChunkSource&) = delete;
    ChunkSource& operator=(const ChunkSource&) = delete;

    // A demand read: the cache, else the store (downloading or joining the
    // download in flight). While it waits for the store it counts in
    // demandWaiting(). Errors: the store's (NotFound, Transient...), or
    // Corrupt if the download does not hash to `name`.
    Result<Fetched> read(const chunk::ChunkName& name);
    // read() for callers that only want the bytes (the memory streamer).
    Result<Bytes> get(const chunk::ChunkName& name);

    // Background (the hoard): makes sure the cache holds `name`. Nothing to
    // do if it already does (origin Cache, empty ciphertext); else downloads
    // or joins a download without counting as demand. The result's `cached`
    // says whether the cache kept it. InvalidArgument without a cache.
    Result<Fetched> prefetch(const chunk::ChunkName& name);

    // True if the cache holds `name` (false without a cache). Cheap: an
    // index lookup, no read of the chunk.
    bool isCached(const chunk::ChunkName& name);

    // Demand reads waiting for the store right now. The hoard holds back
    // while this is above zero.
    int demandWaiting() const { return demandWaiting_.load(); }
    // Blocks until no demand read waits for the store, or `timeout`.
    // Returns true if none waits.
    bool waitForNoDemand(std::chrono::milliseconds timeout);
    // Whether a demand read went to the store within `window` (waiting or
    // done since).
    bool demandWithin(std::chrono::milliseconds window) const;
    // Background downloads take a slot first: refused while `burstSlots`
    // others hold one and a demand read came within `burst` -- demand reads
    // come in bursts (a guest faulting in memory), and theirs must not
    // queue on the link behind several background downloads. Each slot
    // claimed is released once. Atomic: two claims cannot both pass the
    // check.
    bool claimPrefetch(std::chrono::milliseconds burst, int burstSlots = 1);
    void releasePrefetch() { prefetchesInFlight_--; }
    int prefetchesInFlight() const { return prefetchesInFlight_.load(); }

    ChunkCache* cache() const { return cache_; }
    ChunkSourceStats stats() const;

private:
    struct Download {
        Result<Bytes> data = Error(Errc::Internal, "download not finished");
        Status cached;
    };
    // The cache's copy of `name`, counted as a hit; nullopt without a cache
    // or on a miss.
    std::optional<Bytes> fromCache(const chunk::ChunkName& name);
    Result<Fetched> fromStore(const chunk::ChunkName& name);
    Download download(const chunk::ChunkName& name);

    ChunkCache* cache_;
    FetchCiphertext fetch_;

    mutable std::mutex mutex_;
    std::condition_variable noDemand_;
    std::map<chunk::ChunkName, std::shared_future<Download>> inflight_;
    std::atomic<int> demandWaiting_{0};
    std::atomic<std::int64_t> lastDemandNs_{0}; // steady_clock, 0: never
    std::atomic<int> prefetchesInFlight_{0};

    std::atomic<std::uint64_t> cacheHits_{0}, storeFetches_{0}, sharedDownloads_{0}, corrupt_{0},
        cacheFailures_{0}, bytesFetched_{0};
};

} // namespace isr::cache
