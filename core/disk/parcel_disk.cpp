#include "disk/parcel_disk.h"

#include "util/log.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <future>
#include <linux/falloc.h>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sys/statvfs.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>

namespace isr::disk {

namespace {

constexpr const char* kLog = "disk";
constexpr std::size_t kStripes = 1024;
constexpr std::string_view kOverlayAdTag = "isr-overlay-v1";

using Clock = std::chrono::steady_clock;
using PlainPtr = std::shared_ptr<const Bytes>; // null means "all zeroes"

enum class ChunkKind : std::uint8_t {
    Base,  // unmodified: reads come from the base table
    Dirty, // current plaintext is sealed in the overlay slot
    Zero,  // modified to all zeroes (trim, write-zeroes, or zero data)
};

struct ChunkState {
    ChunkKind kind = ChunkKind::Base;
    std::uint64_t generation = 0; // bumped by every modification
    std::uint64_t uploadedGeneration = ~std::uint64_t(0);
    std::optional<chunk::ChunkRef> uploadedRef; // valid if uploadedGeneration == generation
    Clock::time_point lastWrite{};
};

Error ioError(const std::string& what, const std::string& path) {
    int err = errno;
    return Error(err == ENOSPC ? Errc::NoSpace : Errc::Io,
                 what + " " + path + ": " + std::strerror(err));
}

// Decoded chunks kept in memory (never on disk). Keyed by chunk index; an
// entry is always the chunk's current content (updated under the chunk's
// stripe lock).
class PlaintextLru {
public:
    explicit PlaintextLru(std::size_t capacity) : capacity_(capacity) {}
    PlainPtr get(std::uint64_t index) {
        std::lock_guard lock(mutex_);
        auto it = map_.find(index);
        if (it == map_.end())
            return nullptr;
        order_.splice(order_.begin(), order_, it->second);
        return it->second->second;
    }
    void put(std::uint64_t index, PlainPtr plain) {
        if (capacity_ == 0)
            return;
        std::lock_guard lock(mutex_);
        auto it = map_.find(index);
        if (it != map_.end()) {
            it->second->second = std::move(plain);
            order_.splice(order_.begin(), order_, it->second);
            return;
        }
        order_.emplace_front(index, std::move(plain));
        map_[index] = order_.begin();
        if (order_.size() > capacity_) {
            map_.erase(order_.back().first);
            order_.pop_back();
        }
    }
    void erase(std::uint64_t index) {
        std::lock_guard lock(mutex_);
        auto it = map_.find(index);
        if (it != map_.end()) {
            order_.erase(it->second);
            map_.erase(it);
        }
    }

private:
    std::mutex mutex_;
    std::size_t capacity_;
    std::list<std::pair<std::uint64_t, PlainPtr>> order_;
    std::unordered_map<std::uint64_t, std::list<std::pair<std::uint64_t, PlainPtr>>::iterator> map_;
};

} // namespace

struct ParcelDisk::Impl {
    ParcelDiskConfig config;
    std::uint64_t chunkCount = 0;
    std::uint64_t slotSize = 0;
    crypto::Secret overlayKey;
    std::string overlayPath;
    int overlayFd = -1;

    // Lock order: stripe -> (lru, dirtyMutex, touchMutex). inflightMutex,
    // hoardMutex and throttleMutex are leaves and never held while fetching.
    std::vector<ChunkState> states;
    std::unique_ptr<std::mutex[]> stripes;
    PlaintextLru lru;
    std::mutex dirtyMutex;
    std::set<std::uint64_t> dirtyIndexes; // every chunk whose kind != Base

    std::unique_ptr<std::atomic<std::uint8_t>[]> touched;
    std::mutex touchMutex;
    std::vector<std::uint64_t> touchOrder;

    std::mutex inflightMutex;
    std::map<chunk::ChunkName, std::shared_future<Result<Bytes>>> inflight;
    std::atomic<int> demandActive{0};

    std::atomic<std::uint64_t> demandFetches{0}, cacheHits{0}, overlayChunks{0}, corruptChunks{0};

    // Hoard.
    std::mutex hoardMutex;
    std::condition_variable hoardCv; // pause/resume/stop/demand-finished/finished
    std::vector<std::thread> hoardWorkers;
    std::vector<std::uint64_t> hoardOrder; // chunk indexes, distinct names
    std::atomic<std::size_t> hoardCursor{0};
    bool hoardStarted = false;
    bool hoardPaused = false;
    bool stopping = false;
    int hoardRunning = 0;
    bool hoardFinished = false;
    Clock::time_point hoardStart{}, hoardEnd{};
    std::atomic<std::uint64_t> hoardChunksDone{0}, hoardBytesDone{0}, hoardFetched{0},
        hoardFailures{0};
    std::uint64_t hoardChunksTotal = 0, hoardBytesTotal = 0;
    // A stall (see HoardProgress::stalled), under hoardMutex: chunks to try
    // again before the cursor, the error, when the next probe may run, and
    // whether one is running (the other workers wait for its outcome).
    std::deque<std::uint64_t> hoardRetry;
    std::optional<Error> hoardStall;
    Clock::time_point hoardRetryAt{};
    std::chrono::milliseconds hoardBackoff{0};
    bool hoardProbing = false;
    std::atomic<std::uint64_t> bandwidthLimit{0};
    std::mutex throttleMutex;
    Clock::time_point throttleNext{};

    // Trickle.
    std::mutex trickleMutex;
    std::condition_variable trickleCv;
    std::thread trickleThread;
    bool trickleStop = false;

    explicit Impl(ParcelDiskConfig c) : config(std::move(c)), lru(config.plaintextCacheChunks) {}

    std::mutex& stripe(std::uint64_t index) { return stripes[index % kStripes]; }

    std::uint32_t chunkLength(std::uint64_t index) const {
        std::uint64_t start = index * config.chunkSize;
        return std::uint32_t(std::min<std::uint64_t>(config.chunkSize, config.diskSize - start));
    }

    void touch(std::uint64_t index) {
        if (touched[index].exchange(1) == 0) {
            std::lock_guard lock(touchMutex);
            touchOrder.push_back(index);
        }
    }

    // ---- overlay slots ---------------------------------------------------

    Bytes overlayAd(std::uint64_t index) const {
        Bytes ad(kOverlayAdTag.size() + 8);
        std::copy(kOverlayAdTag.begin(), kOverlayAdTag.end(), ad.begin());
        putBe64(ad.data() + kOverlayAdTag.size(), index);
        return ad;
    }

    Status writeSlot(std::uint64_t index, ByteView plain) {
        Bytes sealed = crypto::seal(overlayKey, plain, overlayAd(index));
        std::uint64_t offset = index * slotSize;
        std::size_t done = 0;
        while (done < sealed.size()) {
            ssize_t n = ::pwrite(overlayFd, sealed.data() + done, sealed.size() - done,
                                 off_t(offset + done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return ioError("write overlay", overlayPath);
            done += std::size_t(n);
        }
        return {};
    }

    Result<PlainPtr> readSlot(std::uint64_t index) {
        Bytes sealed(chunkLength(index) + crypto::kNonceSize + crypto::kMacSize);
        std::size_t done = 0;
        while (done < sealed.size()) {
            ssize_t n = ::pread(overlayFd, sealed.data() + done, sealed.size() - done,
                                off_t(index * slotSize + done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return ioError("read overlay", overlayPath);
            done += std::size_t(n);
        }
        auto plain = crypto::open(overlayKey, sealed, overlayAd(index));
        if (!plain.ok()) {
            corruptChunks++;
            ISR_LOG_ERROR(kLog) << "overlay slot of chunk " << index
                                << " failed verification: " << plain.error().describe();
            return std::move(plain).error();
        }
        return std::make_shared<const Bytes>(std::move(*plain));
    }

    void punchSlot(std::uint64_t index) {
        // Space only; a stale slot is never read once the chunk is Zero.
        ::fallocate(overlayFd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(index * slotSize),
                    off_t(slotSize));
    }

    // ---- base chunks -----------------------------------------------------

    // Ciphertext of `name` from the cache or the store. One download per name
    // at a time: concurrent callers share it. Stores what it downloads in the
    // cache (the cache checks the name).
    // `cached`, if given, gets the outcome of storing the download in the
    // cache (ok when the download was shared with another caller).
    Result<Bytes> fetchCiphertext(const chunk::ChunkName& name, bool demand, bool tryCache,
                                  Status* cached = nullptr) {
        if (tryCache && config.cache) {
            auto cached = config.cache->get(name);
            if (cached.ok()) {
                cacheHits++;
                return cached;
            }
        }
        std::promise<Result<Bytes>> promise;
        std::shared_future<Result<Bytes>> future;
        {
            std::lock_guard lock(inflightMutex);
            auto it = inflight.find(name);
            if (it != inflight.end()) {
                future = it->second;
            } else {
                inflight.emplace(name, promise.get_future().share());
            }
        }
        if (future.valid())
            return future.get();

        if (demand) {
            demandActive++;
            demandFetches++;
        }
        Result<Bytes> result = config.fetch(name);
        if (result.ok() && chunk::nameOf(*result) != name) {
            corruptChunks++;
            ISR_LOG_ERROR(kLog) << "CORRUPT chunk from store: " << chunk::nameHex(name)
                                << " hashes to " << chunk::nameHex(chunk::nameOf(*result))
                                << "; refusing it";
            result = Error(Errc::Corrupt, "chunk " + chunk::nameHex(name) +
                                              " from the store does not match its name");
        }
        if (result.ok() && config.cache) {
            Status put = config.cache->put(name, *result);
            if (cached)
                *cached = put;
            if (!put.ok()) {
                ISR_LOG_WARN(kLog)
                    << "cache put " << chunk::nameHex(name) << ": " << put.error().describe();
            }
        }
        if (!result.ok() && result.error().code != Errc::Corrupt) {
            ISR_LOG_WARN(kLog) << "fetch of chunk " << chunk::nameHex(name)
                               << " failed: " << result.error().describe();
        }
        promise.set_value(result);
        {
            std::lock_guard lock(inflightMutex);
            inflight.erase(name);
        }
        if (demand && --demandActive == 0)
            hoardCv.notify_all();
        return result;
    }

    Result<PlainPtr> loadBase(std::uint64_t index) {
        const chunk::ChunkRef& ref = *config.baseTable[index];
        ISR_TRY_ASSIGN(Bytes ciphertext, fetchCiphertext(ref.name, true, true));
        auto plain = chunk::decode(ref, ciphertext);
        if (!plain.ok()) {
            corruptChunks++;
            ISR_LOG_ERROR(kLog) << "CORRUPT chunk " << index << " (" << chunk::nameHex(ref.name)
                                << ") failed verification: " << plain.error().describe()
                                << "; the guest gets an I/O error";
            return std::move(plain).error();
        }
        return std::make_shared<const Bytes>(std::move(*plain));
    }

    // The chunk's current content if it can be had without fetching (caller
    // holds the stripe lock): a PlainPtr (null = zeroes), or nullopt if the
    // base chunk must be loaded first.
    Result<std::optional<PlainPtr>> currentLocked(std::uint64_t index) {
        if (PlainPtr cached = lru.get(index))
            return std::optional<PlainPtr>(cached);
        const ChunkState& st = states[index];
        switch (st.kind) {
        case ChunkKind::Zero:
            return std::optional<PlainPtr>(PlainPtr());
        case ChunkKind::Dirty: {
            ISR_TRY_ASSIGN(PlainPtr plain, readSlot(index));
            lru.put(index, plain);
            return std::optional<PlainPtr>(plain);
        }
        case ChunkKind::Base:
            if (!config.baseTable[index])
                return std::optional<PlainPtr>(PlainPtr());
            return std::optional<PlainPtr>();
        }
        return Error(Errc::Internal, "bad chunk state");
    }

    Result<PlainPtr> chunkForRead(std::uint64_t index) {
        {
            std::lock_guard lock(stripe(index));
            ISR_TRY_ASSIGN(auto current, currentLocked(index));
            if (current)
                return *current;
        }
        // Fetch without holding the stripe: other chunks stay readable.
        ISR_TRY_ASSIGN(PlainPtr plain, loadBase(index));
        std::lock_guard lock(stripe(index));
        if (states[index].kind == ChunkKind::Base) // else a write won the race; don't cache stale
            lru.put(index, plain);
        return plain;
    }

    // Under the stripe lock: make `plain` the chunk's content.
    Status commitLocked(std::uint64_t index, Bytes plain) {
        ChunkState& st = states[index];
        if (isAllZero(plain)) {
            if (st.kind == ChunkKind::Dirty)
                overlayChunks--;
            st.kind = ChunkKind::Zero;
            lru.erase(index);
            punchSlot(index);
        } else {
            ISR_TRY_STATUS(writeSlot(index, plain));
            if (st.kind != ChunkKind::Dirty)
                overlayChunks++;
            st.kind = ChunkKind::Dirty;
            lru.put(index, std::make_shared<const Bytes>(std::move(plain)));
        }
        st.generation++;
        st.lastWrite = Clock::now();
        std::lock_guard lock(dirtyMutex);
        dirtyIndexes.insert(index);
        return {};
    }

    // Writes src at `inChunk` inside chunk `index` (src == nullopt: zeroes).
    Status writeChunkRange(std::uint64_t index, std::uint32_t inChunk, std::uint32_t length,
                           const std::uint8_t* src) {
        const std::uint32_t chunkLen = chunkLength(index);
        const bool whole = inChunk == 0 && length == chunkLen;
        PlainPtr prefetched;
        bool havePrefetched = false;
        for (;;) {
            std::unique_lock lock(stripe(index));
            Bytes plain;
            if (whole) {
                plain = src ? Bytes(src, src + length) : Bytes(length, 0);
            } else {
                ISR_TRY_ASSIGN(auto current, currentLocked(index));
                if (!current && havePrefetched)
                    current = prefetched; // still Base, so the prefetch is current
                if (!current) {
                    lock.unlock();
                    ISR_TRY_ASSIGN(prefetched, loadBase(index));
                    havePrefetched = true;
                    continue;
                }
                // A write that changes nothing (ext4's lazy inode-table init
                // zeroing zeros, a rewrite of the same data) leaves the chunk
                // as it is: no overlay slot, nothing to upload, and no need
                // for room on the kiosk's disk.
                const std::uint8_t* now = *current ? (*current)->data() + inChunk : nullptr;
                if (now ? (src ? std::memcmp(now, src, length) == 0 : isAllZero({now, length}))
                        : (src == nullptr || isAllZero({src, length})))
                    return {};
                plain = *current ? Bytes(**current) : Bytes(chunkLen, 0);
                if (src)
                    std::memcpy(plain.data() + inChunk, src, length);
                else
                    std::memset(plain.data() + inChunk, 0, length);
            }
            return commitLocked(index, std::move(plain));
        }
    }

    // Calls fn(index, offsetInChunk, length, positionInRange) for each chunk piece.
    template <typename Fn>
    Status forEachPiece(std::uint64_t offset, std::uint64_t length, Fn&& fn) {
        std::uint64_t pos = 0;
        while (pos < length) {
            std::uint64_t at = offset + pos;
            std::uint64_t index = at / config.chunkSize;
            std::uint32_t inChunk = std::uint32_t(at % config.chunkSize);
            std::uint32_t n =
                std::uint32_t(std::min<std::uint64_t>(chunkLength(index) - inChunk, length - pos));
            touch(index);
            ISR_TRY_STATUS(fn(index, inChunk, n, pos));
            pos += n;
        }
        return {};
    }

    Status zeroRange(std::uint64_t offset, std::uint64_t length) {
        return forEachPiece(offset, length,
                            [&](std::uint64_t index, std::uint32_t inChunk, std::uint32_t n,
                                std::uint64_t) -> Status {
                                if (n == chunkLength(index)) {
                                    std::lock_guard lock(stripe(index));
                                    ChunkState& st = states[index];
                                    if (st.kind == ChunkKind::Zero ||
                                        (st.kind == ChunkKind::Base && !config.baseTable[index]))
                                        return {}; // already zero
                                    return commitLocked(index, Bytes(n, 0));
                                }
                                return writeChunkRange(index, inChunk, n, nullptr);
                            });
    }

    // ---- hoard ------------------------------------------------------------

    void throttle(std::uint64_t bytes) {
        std::uint64_t limit = bandwidthLimit.load();
        if (limit == 0)
            return;
        Clock::time_point until;
        {
            std::lock_guard lock(throttleMutex);
            auto now = Clock::now();
            if (throttleNext < now)
                throttleNext = now;
            until = throttleNext;
            throttleNext += std::chrono::duration_cast<Clock::duration>(
                std::chrono::duration<double>(double(bytes) / double(limit)));
        }
        std::unique_lock lock(hoardMutex);
        hoardCv.wait_until(lock, until, [&] { return stopping; });
    }

    // Kinds of failure that are not the chunk's fault: stall and retry.
    // From the cache: NoSpace, Io (the kiosk's disk); from the store:
    // Transient, Io (unreachable).
    static bool stallsHoard(const Error& e) {
        return e.code == Errc::NoSpace || e.code == Errc::Transient || e.code == Errc::Io;
    }

    // Called with hoardMutex held after a probe or a chunk failed for a
    // stalling reason: the chunk goes back in the queue, the next try waits.
    void stallLocked(std::uint64_t index, const Error& why) {
        hoardRetry.push_back(index);
        hoardBackoff = std::clamp(hoardBackoff * 2, std::chrono::milliseconds(1000),
                                  std::chrono::milliseconds(30000));
        hoardRetryAt = Clock::now() + hoardBackoff;
        if (!hoardStall || hoardStall->code != why.code) {
            ISR_LOG_WARN(kLog) << "hoard stalled, retrying with backoff: " << why.describe();
        }
        hoardStall = why;
    }

    // NoSpace when storing `bytes` more would eat into the reserve.
    Status checkHoardRoom(std::uint64_t bytes) const {
        if (config.hoardFreeSpaceReserve == 0)
            return {};
        struct statvfs vfs {};
        if (::statvfs(config.overlayDirectory.c_str(), &vfs) != 0)
            return {}; // cannot tell: let the cache's own write decide
        std::uint64_t free = std::uint64_t(vfs.f_bavail) * vfs.f_frsize;
        if (free >= config.hoardFreeSpaceReserve + bytes)
            return {};
        return Error(Errc::NoSpace, std::to_string(free >> 20) + " MiB free on the kiosk's disk (" +
                                        config.overlayDirectory + "), the hoard leaves " +
                                        std::to_string(config.hoardFreeSpaceReserve >> 20) +
                                        " MiB for the session's writes");
    }

    void hoardWorker() {
        for (;;) {
            std::uint64_t index = 0;
            bool probe = false;
            {
                std::unique_lock lock(hoardMutex);
                for (;;) {
                    if (stopping)
                        break;
                    if (hoardPaused) {
                        hoardCv.wait(lock);
                        continue;
                    }
                    if (hoardStall && (hoardProbing || Clock::now() < hoardRetryAt)) {
                        if (hoardProbing)
                            hoardCv.wait(lock);
                        else
                            hoardCv.wait_until(lock, hoardRetryAt);
                        continue;
                    }
                    if (demandActive.load() > 0) { // demand misses go first
                        hoardCv.wait_for(lock, std::chrono::milliseconds(20));
                        continue;
                    }
                    break;
                }
                if (stopping)
                    break;
                if (!hoardRetry.empty()) {
                    index = hoardRetry.front();
                    hoardRetry.pop_front();
                } else {
                    std::size_t k = hoardCursor++;
                    if (k >= hoardOrder.size())
                        break;
                    index = hoardOrder[k];
                }
                if (hoardStall) {
                    probe = true;
                    hoardProbing = true;
                }
            }
            const chunk::ChunkRef& ref = *config.baseTable[index];
            std::optional<Error> stalledBy;
            bool failed = false;
            bool stored = false; // fetched and kept: proof the stall is over
            if (!config.cache->contains(ref.name)) {
                throttle(ref.length);
                if (auto room = checkHoardRoom(ref.length); !room.ok()) {
                    std::lock_guard lock(hoardMutex);
                    if (probe)
                        hoardProbing = false;
                    stallLocked(index, room.error());
                    hoardCv.notify_all();
                    continue;
                }
                Status cached;
                auto ciphertext = fetchCiphertext(ref.name, false, false, &cached);
                if (ciphertext.ok()) {
                    hoardFetched += ciphertext->size();
                    if (!cached.ok() && stallsHoard(cached.error()))
                        stalledBy = cached.error();
                    else
                        stored = cached.ok();
                } else if (stallsHoard(ciphertext.error())) {
                    // Io here is the store's (e.g. a file store's mount gone):
                    // report it as unreachable, not as this kiosk's disk.
                    stalledBy = ciphertext.error();
                    if (stalledBy->code == Errc::Io)
                        stalledBy->code = Errc::Transient;
                } else {
                    failed = true; // missing or corrupt: a demand read retries and reports
                }
            }
            {
                std::lock_guard lock(hoardMutex);
                if (probe)
                    hoardProbing = false;
                if (stalledBy) {
                    stallLocked(index, *stalledBy);
                } else if (hoardStall && stored) {
                    ISR_LOG_INFO(kLog) << "hoard going again after: " << hoardStall->describe();
                    hoardStall.reset();
                    hoardBackoff = std::chrono::milliseconds(0);
                }
            }
            if (probe)
                hoardCv.notify_all();
            if (stalledBy)
                continue;
            if (failed) {
                hoardFailures++;
                continue;
            }
            hoardChunksDone++;
            hoardBytesDone += ref.length;
        }
        std::lock_guard lock(hoardMutex);
        if (--hoardRunning == 0) {
            hoardEnd = Clock::now();
            hoardFinished = hoardCursor.load() >= hoardOrder.size() && hoardRetry.empty();
            hoardCv.notify_all();
        }
    }

    void stopThreads() {
        {
            std::lock_guard lock(hoardMutex);
            stopping = true;
        }
        hoardCv.notify_all();
        for (auto& t : hoardWorkers)
            t.join();
        hoardWorkers.clear();
        {
            std::lock_guard lock(trickleMutex);
            trickleStop = true;
        }
        trickleCv.notify_all();
        if (trickleThread.joinable())
            trickleThread.join();
    }
};

Result<std::unique_ptr<ParcelDisk>> ParcelDisk::open(ParcelDiskConfig config) {
    // QEMU's block layer works in 512-byte sectors: its NBD client reads a
    // rounded-up tail past an unaligned export's end and fails.
    if (config.diskSize == 0 || config.diskSize % 512 != 0)
        return Error(Errc::InvalidArgument, "disk size " + std::to_string(config.diskSize) +
                                                " is not a positive multiple of 512");
    if (config.chunkSize == 0 || config.chunkSize > chunk::kMaxChunkSize)
        return Error(Errc::InvalidArgument,
                     "chunk size " + std::to_string(config.chunkSize) + " out of range");
    if (!config.fetch)
        return Error(Errc::InvalidArgument, "no fetch function");
    if (config.convergenceSecret.empty())
        return Error(Errc::InvalidArgument, "no convergence secret");
    std::uint64_t count = (config.diskSize + config.chunkSize - 1) / config.chunkSize;
    if (config.baseTable.size() != count)
        return Error(Errc::Corrupt, "chunk table has " + std::to_string(config.baseTable.size()) +
                                        " entries, disk needs " + std::to_string(count));
    auto impl = std::make_unique<Impl>(std::move(config));
    impl->chunkCount = count;
    for (std::uint64_t i = 0; i < count; ++i) {
        const auto& ref = impl->config.baseTable[i];
        if (ref && ref->length != impl->chunkLength(i))
            return Error(Errc::Corrupt, "chunk " + std::to_string(i) + " has length " +
                                            std::to_string(ref->length) + ", expected " +
                                            std::to_string(impl->chunkLength(i)));
    }
    ISR_TRY_STATUS(crypto::initialize());
    impl->slotSize =
        (std::uint64_t(impl->config.chunkSize) + crypto::kNonceSize + crypto::kMacSize + 4095) /
        4096 * 4096;
    impl->overlayKey = crypto::Secret::random(crypto::kKeySize);
    impl->overlayPath =
        impl->config.overlayDirectory + "/overlay-" + toHex(crypto::randomBytes(8)) + ".sealed";
    impl->overlayFd =
        ::open(impl->overlayPath.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (impl->overlayFd < 0)
        return ioError("create overlay", impl->overlayPath);
    if (::ftruncate(impl->overlayFd, off_t(impl->slotSize * count)) != 0) {
        Error e = ioError("size overlay", impl->overlayPath);
        ::close(impl->overlayFd);
        ::unlink(impl->overlayPath.c_str());
        return e;
    }
    impl->states.resize(count);
    impl->stripes = std::make_unique<std::mutex[]>(kStripes);
    impl->touched = std::make_unique<std::atomic<std::uint8_t>[]>(count);
    impl->bandwidthLimit = impl->config.hoardBandwidthLimit;

    // Hoard order: working set first, then disk order; each distinct
    // non-zero chunk once.
    std::set<chunk::ChunkName> seen;
    auto consider = [&](std::uint64_t index) {
        if (index >= count || !impl->config.baseTable[index])
            return;
        const auto& ref = *impl->config.baseTable[index];
        if (!seen.insert(ref.name).second)
            return;
        impl->hoardOrder.push_back(index);
        impl->hoardChunksTotal++;
        impl->hoardBytesTotal += ref.length;
    };
    for (std::uint64_t index : impl->config.workingSet)
        consider(index);
    for (std::uint64_t i = 0; i < count; ++i)
        consider(i);

    bool start = impl->config.startHoard;
    auto disk = std::unique_ptr<ParcelDisk>(new ParcelDisk(std::move(impl)));
    if (start)
        disk->startHoard();
    return disk;
}

ParcelDisk::ParcelDisk(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ParcelDisk::~ParcelDisk() {
    impl_->stopThreads();
    ::close(impl_->overlayFd);
    ::unlink(impl_->overlayPath.c_str());
}

std::uint64_t ParcelDisk::size() const {
    return impl_->config.diskSize;
}

BlockSizes ParcelDisk::blockSizes() const {
    return {1, 4096, 32u << 20};
}

Status ParcelDisk::read(std::uint64_t offset, MutableByteView out) {
    return impl_->forEachPiece(offset, out.size(),
                               [&](std::uint64_t index, std::uint32_t inChunk, std::uint32_t n,
                                   std::uint64_t pos) -> Status {
                                   ISR_TRY_ASSIGN(PlainPtr plain, impl_->chunkForRead(index));
                                   if (plain)
                                       std::memcpy(out.data() + pos, plain->data() + inChunk, n);
                                   else
                                       std::memset(out.data() + pos, 0, n);
                                   return {};
                               });
}

Status ParcelDisk::write(std::uint64_t offset, ByteView data, bool fua) {
    ISR_TRY_STATUS(impl_->forEachPiece(
        offset, data.size(),
        [&](std::uint64_t index, std::uint32_t inChunk, std::uint32_t n, std::uint64_t pos) {
            return impl_->writeChunkRange(index, inChunk, n, data.data() + pos);
        }));
    return fua ? flush() : Status{};
}

Status ParcelDisk::flush() {
    if (::fdatasync(impl_->overlayFd) != 0)
        return ioError("fdatasync", impl_->overlayPath);
    return {};
}

Status ParcelDisk::trim(std::uint64_t offset, std::uint64_t length) {
    return impl_->zeroRange(offset, length);
}

Status ParcelDisk::writeZeroes(std::uint64_t offset, std::uint64_t length) {
    return impl_->zeroRange(offset, length);
}

void ParcelDisk::startHoard() {
    std::lock_guard lock(impl_->hoardMutex);
    if (impl_->hoardStarted || impl_->stopping)
        return;
    impl_->hoardStarted = true;
    impl_->hoardStart = Clock::now();
    if (!impl_->config.cache || impl_->hoardOrder.empty()) {
        // Nothing to keep: without a cache every read goes to the store.
        impl_->hoardFinished = true;
        impl_->hoardEnd = impl_->hoardStart;
        impl_->hoardCv.notify_all();
        return;
    }
    int threads = std::max(1, impl_->config.hoardThreads);
    impl_->hoardRunning = threads;
    for (int i = 0; i < threads; ++i)
        impl_->hoardWorkers.emplace_back([this] { impl_->hoardWorker(); });
}

void ParcelDisk::pauseHoard() {
    std::lock_guard lock(impl_->hoardMutex);
    impl_->hoardPaused = true;
}

void ParcelDisk::resumeHoard() {
    {
        std::lock_guard lock(impl_->hoardMutex);
        impl_->hoardPaused = false;
    }
    impl_->hoardCv.notify_all();
}

void ParcelDisk::setHoardBandwidthLimit(std::uint64_t bytesPerSecond) {
    impl_->bandwidthLimit = bytesPerSecond;
}

HoardProgress ParcelDisk::hoardProgress() const {
    std::lock_guard lock(impl_->hoardMutex);
    HoardProgress p;
    p.chunksTotal = impl_->hoardChunksTotal;
    p.bytesTotal = impl_->hoardBytesTotal;
    p.chunksDone = impl_->hoardChunksDone.load();
    p.bytesDone = impl_->hoardBytesDone.load();
    p.bytesFetched = impl_->hoardFetched.load();
    p.failures = impl_->hoardFailures.load();
    p.running = impl_->hoardRunning > 0 && !impl_->hoardPaused;
    p.finished = impl_->hoardFinished;
    p.stalled = impl_->hoardStall;
    if (impl_->hoardStarted) {
        auto end = impl_->hoardRunning > 0 ? Clock::now() : impl_->hoardEnd;
        double seconds = std::chrono::duration<double>(end - impl_->hoardStart).count();
        if (seconds > 0)
            p.bytesPerSecond = double(p.bytesFetched) / seconds;
    }
    return p;
}

bool ParcelDisk::waitForHoard(std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->hoardMutex);
    return impl_->hoardCv.wait_for(lock, timeout, [&] { return impl_->hoardFinished; });
}

TrickleResult ParcelDisk::trickleOnce(std::chrono::milliseconds quietFor,
                                      const UploadChunk& upload) {
    Impl& d = *impl_;
    TrickleResult result;
    std::vector<std::uint64_t> dirty;
    {
        std::lock_guard lock(d.dirtyMutex);
        dirty.assign(d.dirtyIndexes.begin(), d.dirtyIndexes.end());
    }
    for (std::uint64_t index : dirty) {
        std::uint64_t generation = 0;
        PlainPtr plain;
        {
            std::lock_guard lock(d.stripe(index));
            ChunkState& st = d.states[index];
            if (st.uploadedGeneration == st.generation)
                continue;
            if (Clock::now() - st.lastWrite < quietFor) {
                result.pending++;
                continue;
            }
            generation = st.generation;
            if (st.kind == ChunkKind::Zero) { // nothing to upload: a zero chunk is not stored
                st.uploadedGeneration = generation;
                st.uploadedRef.reset();
                continue;
            }
            auto current = d.currentLocked(index);
            if (!current.ok() || !*current) {
                result.pending++;
                continue;
            }
            plain = **current;
            if (!plain || isAllZero(*plain)) {
                st.uploadedGeneration = generation;
                st.uploadedRef.reset();
                continue;
            }
        }
        chunk::EncodedChunk encoded =
            chunk::encode(d.config.convergenceSecret.view(), *plain, d.config.zstdLevel);
        Status status = upload(encoded);
        if (!status.ok()) {
            ISR_LOG_WARN(kLog) << "trickle upload of chunk " << index
                               << " failed: " << status.error().describe();
            result.pending++;
            continue;
        }
        result.uploaded++;
        result.bytes += encoded.ciphertext.size();
        std::lock_guard lock(d.stripe(index));
        ChunkState& st = d.states[index];
        if (st.generation == generation) {
            st.uploadedGeneration = generation;
            st.uploadedRef = encoded.ref;
        } else {
            result.pending++; // written again meanwhile: next round re-encodes it
        }
    }
    return result;
}

void ParcelDisk::startTrickle(std::chrono::milliseconds quietFor,
                              std::chrono::milliseconds interval, UploadChunk upload) {
    std::lock_guard lock(impl_->trickleMutex);
    if (impl_->trickleThread.joinable())
        return;
    impl_->trickleStop = false;
    impl_->trickleThread = std::thread([this, quietFor, interval, upload = std::move(upload)] {
        std::unique_lock lock(impl_->trickleMutex);
        while (!impl_->trickleStop) {
            lock.unlock();
            trickleOnce(quietFor, upload);
            lock.lock();
            impl_->trickleCv.wait_for(lock, interval, [&] { return impl_->trickleStop; });
        }
    });
}

void ParcelDisk::stopTrickle() {
    std::thread thread;
    {
        std::lock_guard lock(impl_->trickleMutex);
        impl_->trickleStop = true;
        thread = std::move(impl_->trickleThread);
    }
    impl_->trickleCv.notify_all();
    if (thread.joinable())
        thread.join();
}

Result<FinalTable> ParcelDisk::finalChunkTable() {
    Impl& d = *impl_;
    FinalTable final;
    final.table = d.config.baseTable;
    std::vector<std::uint64_t> dirty;
    {
        std::lock_guard lock(d.dirtyMutex);
        dirty.assign(d.dirtyIndexes.begin(), d.dirtyIndexes.end());
    }
    std::set<chunk::ChunkName> added;
    for (std::uint64_t index : dirty) {
        PlainPtr plain;
        {
            std::lock_guard lock(d.stripe(index));
            ChunkState& st = d.states[index];
            if (st.kind == ChunkKind::Zero) {
                final.table[index].reset();
                continue;
            }
            if (st.uploadedGeneration == st.generation) {
                final.table[index] = st.uploadedRef;
                continue;
            }
            ISR_TRY_ASSIGN(auto current, d.currentLocked(index));
            if (!current)
                return Error(Errc::Internal, "dirty chunk without content");
            plain = *current;
        }
        if (!plain || isAllZero(*plain)) {
            final.table[index].reset();
            continue;
        }
        chunk::EncodedChunk encoded =
            chunk::encode(d.config.convergenceSecret.view(), *plain, d.config.zstdLevel);
        final.table[index] = encoded.ref;
        if (added.insert(encoded.ref.name).second)
            final.newChunks.push_back(std::move(encoded));
    }
    {
        std::lock_guard lock(d.touchMutex);
        final.workingSet = d.touchOrder;
    }
    return final;
}

ParcelDiskStats ParcelDisk::stats() const {
    return {impl_->demandFetches.load(), impl_->cacheHits.load(), impl_->overlayChunks.load(),
            impl_->corruptChunks.load()};
}

const std::string& ParcelDisk::overlayPath() const {
    return impl_->overlayPath;
}
std::uint32_t ParcelDisk::chunkSize() const {
    return impl_->config.chunkSize;
}
std::uint64_t ParcelDisk::chunkCount() const {
    return impl_->chunkCount;
}

} // namespace isr::disk
