#pragma once
// Hoard: background workers that pull a parcel's chunks into the kiosk's
// cache while the VM runs, so the disk keeps working when the store goes
// away. It fetches through the same cache::ChunkSource as the disk's demand
// reads (one download per chunk name: a demand read and the hoard share it)
// and steps aside while any demand read waits for the store
// (ChunkSource::demandWaiting), so a guest miss never queues behind it; for
// a quarter second after a demand read it keeps to one download in flight
// (ChunkSource::claimPrefetch), as misses come in bursts and the link's
// queue would otherwise hold several hoard chunks ahead of the next one.
//
// Order: as given (ParcelDisk passes the previous session's working set
// first, then disk order), each chunk name once. A chunk the cache already
// holds costs an index lookup. The bandwidth limit throttles the hoard only,
// charging each chunk's plaintext length before fetching it (an upper bound
// of its ciphertext for compressible data, close for the rest).
//
// Failures: a chunk that is missing or corrupt is counted in `failures` and
// left for demand reads (which report it). A failure that is not the
// chunk's own — the cache cannot keep it (NoSpace/Io: the kiosk's disk) or
// the store cannot be reached (Transient; a store's Io counts as Transient)
// — *stalls* the hoard instead: the chunk goes back in a retry queue,
// HoardProgress::stalled holds the error, and after a backoff (1 s doubling
// to 30 s) one worker probes with one chunk while the others wait; the first
// chunk that gets through clears the stall. `freeSpaceReserve` makes the
// hoard stall with NoSpace before it eats the room the guest's own writes
// need. Without a cache the hoard finishes at once (nothing to keep).
//
// Thread safety: every method may be called from any thread. Locking: one
// mutex (mutex_) guards the scheduler state; throttleMutex_ is a leaf. No
// lock is held while calling the ChunkSource.

#include "cache/chunk_source.h"
#include "chunk/chunk.h"
#include "util/result.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace isr::disk {

struct HoardProgress {
    std::uint64_t chunksTotal = 0; // distinct non-zero base chunks
    std::uint64_t chunksDone = 0;  // in the cache (or no longer needed)
    std::uint64_t bytesTotal = 0;  // plaintext bytes of those chunks
    std::uint64_t bytesDone = 0;
    std::uint64_t bytesFetched = 0; // ciphertext downloaded by the hoard
    double bytesPerSecond = 0;      // hoard download rate since it started
    std::uint64_t failures = 0;     // chunks the hoard could not fetch (retried on demand)
    bool running = false;
    bool finished = false; // every chunk visited
    // Set while the hoard is held back by a problem that is not the chunk's
    // own, and retries with backoff (1 s doubling to 30 s, one probe chunk at
    // a time): NoSpace or Io = the cache could not store a chunk (the
    // kiosk's disk is full or failing), Transient = the store could not be
    // reached (a store's Io is reported as Transient). The chunk goes
    // back in the queue; cleared when a chunk gets through. Demand reads are
    // not held back: they still fetch from the store.
    std::optional<Error> stalled;
};

struct HoardOptions {
    int threads = 4;
    std::uint64_t bandwidthLimit = 0; // bytes/s, 0 = unlimited
    // After a demand read, this long with one download in flight at most
    // (ChunkSource::claimPrefetch).
    std::chrono::milliseconds demandBurst{250};
    // How many downloads in flight that burst allows (this hoard's and any
    // other on the same source together): as many as make one disk chunk's
    // bytes, so a hoard of smaller chunks (the RAM's) keeps the same bytes in
    // flight rather than a quarter of them.
    int burstDownloads = 1;
    // Bytes left free on reserveDirectory's file system (0 = no check).
    std::uint64_t freeSpaceReserve = 0;
    std::string reserveDirectory;
    // Called on the worker's thread after a chunk is in the cache (fetched
    // now: its ciphertext; already cached: empty), not for failures or
    // stalls. The disk decodes it into its sector form here.
    std::function<void(const chunk::ChunkRef&, ByteView ciphertext)> settled;
};

class Hoard {
public:
    // `chunks`: what to fetch, in order, each name once. `source` must
    // outlive the Hoard.
    Hoard(cache::ChunkSource& source, std::vector<chunk::ChunkRef> chunks, HoardOptions options);
    ~Hoard(); // stop()
    Hoard(const Hoard&) = delete;
    Hoard& operator=(const Hoard&) = delete;

    // Starts the workers; idempotent, and a no-op after stop().
    void start();
    // Lets running fetches finish, then holds the workers.
    void pause();
    void resume();
    // Stops and joins the workers. Idempotent; the hoard cannot be restarted.
    void stop();

    HoardProgress progress() const;
    // Blocks until every chunk was visited or `timeout` passed.
    bool wait(std::chrono::milliseconds timeout);
    // Takes effect immediately.
    void setBandwidthLimit(std::uint64_t bytesPerSecond);

private:
    using Clock = std::chrono::steady_clock;

    void worker();
    void throttle(std::uint64_t bytes);
    Status checkRoom(std::uint64_t bytes) const;
    void stallLocked(std::size_t item, const Error& why);

    cache::ChunkSource& source_;
    const std::vector<chunk::ChunkRef> chunks_;
    const HoardOptions options_;
    std::uint64_t bytesTotal_ = 0;

    mutable std::mutex mutex_;
    std::condition_variable cv_; // pause/resume/stop/probe outcome/finished
    std::vector<std::thread> workers_;
    std::size_t cursor_ = 0; // next item of chunks_
    bool started_ = false;
    bool paused_ = false;
    bool stopping_ = false;
    int running_ = 0;
    bool finished_ = false;
    Clock::time_point startedAt_{}, endedAt_{};
    // A stall (see HoardProgress::stalled): items to try again before the
    // cursor, the error, when the next probe may run, and whether one is
    // running (the other workers wait for its outcome).
    std::deque<std::size_t> retry_;
    std::optional<Error> stall_;
    Clock::time_point retryAt_{};
    std::chrono::milliseconds backoff_{0};
    bool probing_ = false;

    std::atomic<std::uint64_t> chunksDone_{0}, bytesDone_{0}, bytesFetched_{0}, failures_{0};
    std::atomic<std::uint64_t> bandwidthLimit_{0};
    std::mutex throttleMutex_;
    Clock::time_point throttleNext_{};
};

} // namespace isr::disk
