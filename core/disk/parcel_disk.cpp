#include "disk/parcel_disk.h"

#include "disk/plaintext_lru.h"
#include "disk/sealed_overlay.h"
#include "disk/sector_cache.h"
#include "util/log.h"
#include "util/periodic.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sys/statvfs.h>
#include <system_error>

namespace isr::disk {

namespace {

constexpr const char* kLog = "disk";
constexpr std::size_t kStripes = 1024;

using Clock = std::chrono::steady_clock;

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

// Set by loadBase when the calling thread's read() needed the store (the
// latency window's local/remote split); read() clears it first.
thread_local bool readWentRemote = false;

} // namespace

struct ParcelDisk::Impl {
    ParcelDiskConfig config;
    std::uint64_t chunkCount = 0;
    // Declared before everything that uses it, so it is destroyed last.
    std::shared_ptr<cache::ChunkSource> source;
    std::unique_ptr<SealedOverlay> overlay;
    std::unique_ptr<SectorCache> sectors; // null if config.sectorCache is off

    // Lock order: stripe -> (lru, dirtyMutex, touchMutex). The hoard's,
    // the ChunkSource's and the trickle's mutexes are never held together
    // with these, and no lock is held while fetching.
    std::vector<ChunkState> states;
    std::unique_ptr<std::mutex[]> stripes;
    PlaintextLru lru;
    std::mutex dirtyMutex;
    std::set<std::uint64_t> dirtyIndexes; // every chunk whose kind != Base

    std::unique_ptr<std::atomic<std::uint8_t>[]> touched;
    std::mutex touchMutex;
    std::vector<std::uint64_t> touchOrder;

    std::atomic<std::uint64_t> demandFetches{0}, cacheHits{0}, overlayChunks{0}, corruptChunks{0};
    std::atomic<std::uint64_t> sectorReads{0}, sectorFillsSkipped{0};
    std::atomic<bool> sectorFillWarned{false};
    // Base chunk indexes by name, for the hoard's sector fills (a name may
    // stand for several indexes: dedup).
    std::map<chunk::ChunkName, std::vector<std::uint64_t>> indexesByName;

    std::unique_ptr<Hoard> hoard;

    // startReadLatencyWindow: `latencyOn` is the cheap test every read
    // makes; the rest is under latencyMutex.
    std::atomic<bool> latencyOn{false};
    mutable std::mutex latencyMutex;
    std::chrono::steady_clock::time_point latencyEnd;
    std::size_t latencyMax = 0;
    ReadLatencies latencies;

    std::mutex trickleMutex; // serialises startTrickle/stopTrickle
    PeriodicThread trickle;

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

    Result<PlainPtr> readSlot(std::uint64_t index) {
        auto plain = overlay->read(index, chunkLength(index));
        if (!plain.ok()) {
            if (plain.error().code == Errc::Corrupt) {
                corruptChunks++;
                ISR_LOG_ERROR(kLog) << "overlay slot of chunk " << index
                                    << " failed verification: " << plain.error().describe();
            } else {
                ISR_LOG_ERROR(kLog) << "overlay slot of chunk " << index
                                    << " unreadable: " << plain.error().describe();
            }
            return std::move(plain).error();
        }
        return makePlain(std::move(*plain));
    }

    // The base chunk's plaintext: ciphertext through the ChunkSource (cache,
    // else the store, sharing a download in flight), then decoded here
    // (MAC and length; the source already checked the name).
    Result<PlainPtr> loadBase(std::uint64_t index) {
        const chunk::ChunkRef& ref = *config.baseTable[index];
        auto fetched = source->read(ref.name);
        if (!fetched.ok()) {
            if (fetched.error().code == Errc::Corrupt)
                corruptChunks++;
            return std::move(fetched).error();
        }
        if (fetched->origin == cache::Origin::Cache)
            cacheHits++;
        else if (fetched->origin == cache::Origin::Store)
            demandFetches++;
        if (fetched->origin != cache::Origin::Cache)
            readWentRemote = true;
        auto plain = chunk::decode(ref, fetched->ciphertext);
        if (!plain.ok()) {
            corruptChunks++;
            ISR_LOG_ERROR(kLog) << "CORRUPT chunk " << index << " (" << chunk::nameHex(ref.name)
                                << ") failed verification: " << plain.error().describe()
                                << "; the guest gets an I/O error";
            return std::move(plain).error();
        }
        return makePlain(std::move(*plain));
    }

    // Puts a decoded base chunk into the sector form, unless the kiosk's
    // disk is short of room. The sector form comes last in line for room:
    // after the guest's writes (the hoard's free-space reserve) and after
    // the ciphertext the hoard has still to put in the cache (its remaining
    // bytes, plaintext lengths: an upper bound), since a chunk missing from
    // the cache costs a download, a chunk missing here only a decode. Never
    // fails the caller: a fill that cannot be written is counted
    // (SectorCache::stats) and the chunk is read the slow way next time.
    void fillSectors(std::uint64_t index, const Bytes& plain) {
        if (!sectors || sectors->filled(index))
            return;
        std::uint64_t needed = config.hoardFreeSpaceReserve + plain.size();
        if (hoard && source->cache()) {
            HoardProgress progress = hoard->progress();
            if (!progress.finished)
                needed += progress.bytesTotal - std::min(progress.bytesDone, progress.bytesTotal);
        }
        struct statvfs vfs {};
        if (::statvfs(config.overlayDirectory.c_str(), &vfs) == 0 &&
            std::uint64_t(vfs.f_bavail) * vfs.f_frsize < needed) {
            sectorFillsSkipped++;
            return;
        }
        Status filled = sectors->fill(index, plain);
        if (!filled.ok() && !sectorFillWarned.exchange(true)) {
            ISR_LOG_WARN(kLog) << "sector cache: cannot write chunk " << index << " ("
                               << filled.error().describe()
                               << "); reads of such chunks decode them each time (counted, "
                                  "logged once)";
        }
    }

    // loadBase, but from the sector form if the chunk is there (a decrypt of
    // its sectors instead of cache read + hash + decrypt + decompress), and
    // filling the sector form otherwise.
    Result<PlainPtr> loadBaseFast(std::uint64_t index) {
        if (sectors && sectors->filled(index)) {
            Bytes plain(chunkLength(index));
            if (sectors->read(index, 0, std::uint32_t(plain.size()), plain.data()).ok()) {
                sectorReads++;
                return makePlain(std::move(plain));
            }
            crypto::wipe(plain);
        }
        ISR_TRY_ASSIGN(PlainPtr plain, loadBase(index));
        fillSectors(index, *plain);
        return plain;
    }

    // The hoard's hook: chunk `ref` is in the cache (`ciphertext` if it just
    // came from the store, else empty); decode it once and fill the sector
    // form of every still-Base index that has it. Costs the hoard's thread
    // one decode per distinct chunk (see README: measured).
    void hoardFill(const chunk::ChunkRef& ref, ByteView ciphertext) {
        auto it = indexesByName.find(ref.name);
        if (it == indexesByName.end())
            return;
        bool needed = false;
        for (std::uint64_t index : it->second) {
            std::lock_guard lock(stripe(index));
            needed = needed || (!sectors->filled(index) && states[index].kind == ChunkKind::Base);
        }
        if (!needed)
            return;
        Bytes fetched;
        if (ciphertext.empty()) {
            // From the cache (a hit does not count as demand). Evicted
            // meanwhile: leave it to a demand read.
            if (!source->isCached(ref.name))
                return;
            auto read = source->read(ref.name);
            if (!read.ok())
                return;
            fetched = std::move(read->ciphertext);
            ciphertext = fetched;
        }
        auto plain = chunk::decode(ref, ciphertext);
        if (!plain.ok())
            return; // a demand read reports it
        crypto::WipeOnExit wipePlain(*plain);
        for (std::uint64_t index : it->second)
            fillSectors(index, *plain);
    }

    // Reads one piece of one chunk into `out`: the LRU, the chunk's state,
    // then the sector form, then the base chunk (decoded, and put into the
    // LRU and the sector form).
    Status readPiece(std::uint64_t index, std::uint32_t inChunk, std::uint32_t n,
                     std::uint8_t* out) {
        {
            std::lock_guard lock(stripe(index));
            ISR_TRY_ASSIGN(auto current, currentLocked(index));
            if (current) {
                if (*current)
                    std::memcpy(out, (*current)->data() + inChunk, n);
                else
                    std::memset(out, 0, n);
                return {};
            }
        }
        // Base and not in memory. The sector form of a base chunk never
        // changes, so reading it without the stripe returns the content the
        // chunk had when we looked (a write racing with this read may win
        // or lose, as NBD allows for overlapping requests).
        if (sectors && sectors->filled(index) && sectors->read(index, inChunk, n, out).ok()) {
            sectorReads++;
            return {};
        }
        ISR_TRY_ASSIGN(PlainPtr plain, chunkForRead(index));
        if (plain)
            std::memcpy(out, plain->data() + inChunk, n);
        else
            std::memset(out, 0, n);
        return {};
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
        ISR_TRY_ASSIGN(PlainPtr plain, loadBaseFast(index));
        std::lock_guard lock(stripe(index));
        if (states[index].kind == ChunkKind::Base) // else a write won the race; don't cache stale
            lru.put(index, plain);
        return plain;
    }

    // Under the stripe lock: make `plain` the chunk's content.
    Status commitLocked(std::uint64_t index, Bytes plain) {
        crypto::WipeOnExit wipePlain(plain); // empty once moved into the LRU
        ChunkState& st = states[index];
        if (isAllZero(plain)) {
            if (st.kind == ChunkKind::Dirty)
                overlayChunks--;
            st.kind = ChunkKind::Zero;
            lru.erase(index);
            overlay->discard(index);
        } else {
            ISR_TRY_STATUS(overlay->write(index, plain));
            if (st.kind != ChunkKind::Dirty)
                overlayChunks++;
            st.kind = ChunkKind::Dirty;
            lru.put(index, makePlain(std::move(plain)));
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
                    ISR_TRY_ASSIGN(prefetched, loadBaseFast(index));
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

    // True if reading chunk `index` now would wait for the store: a base
    // chunk not decoded in memory, not in the sector form, not in the cache.
    bool needsStore(std::uint64_t index) {
        {
            std::lock_guard lock(stripe(index));
            if (states[index].kind != ChunkKind::Base || !config.baseTable[index] ||
                lru.get(index))
                return false;
        }
        if (sectors && sectors->filled(index))
            return false;
        return !source->isCached(config.baseTable[index]->name);
    }

    // A read over several chunks the store must supply (a RAM fault's
    // 128 KiB of readahead over 32 KiB RAM chunks) would otherwise wait one
    // round trip per chunk, one after another: every such chunk but the
    // first is loaded on a thread of its own while the caller reads the
    // first, and the caller then finds it decoded or joins its download in
    // flight (ChunkSource: one download per name). Their errors are the
    // caller's to find (it reads those chunks itself). At most kMaxAhead
    // threads (a disk read can span 256 chunks; the rest come in turn).
    // Wait on the result before returning.
    std::vector<std::future<void>> loadAhead(std::uint64_t offset, std::uint64_t length) {
        constexpr std::size_t kMaxAhead = 7;
        std::vector<std::future<void>> ahead;
        if (length == 0)
            return ahead;
        const std::uint64_t first = offset / config.chunkSize;
        const std::uint64_t last = std::min(chunkCount - 1, (offset + length - 1) / config.chunkSize);
        bool callersOwn = true;
        for (std::uint64_t index = first;
             index <= last && first != last && ahead.size() < kMaxAhead; ++index) {
            if (!needsStore(index))
                continue;
            if (std::exchange(callersOwn, false))
                continue;
            try {
                ahead.push_back(
                    std::async(std::launch::async, [this, index] { (void)chunkForRead(index); }));
            } catch (const std::system_error&) {
                break; // no thread to be had: the caller reads them in turn
            }
        }
        return ahead;
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
    if (!config.source && !config.fetch)
        return Error(Errc::InvalidArgument, "no chunk source and no fetch function");
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
    impl->source = impl->config.source;
    if (!impl->source)
        impl->source =
            std::make_shared<cache::ChunkSource>(impl->config.cache, std::move(impl->config.fetch));
    ISR_TRY_ASSIGN(impl->overlay, SealedOverlay::create(impl->config.overlayDirectory, count,
                                                        impl->config.chunkSize));
    if (impl->config.sectorCache) {
        ISR_TRY_ASSIGN(impl->sectors,
                       SectorCache::create(impl->config.overlayDirectory, count,
                                           impl->config.chunkSize, impl->chunkLength(count - 1)));
    }
    impl->states.resize(count);
    impl->stripes = std::make_unique<std::mutex[]>(kStripes);
    impl->touched = std::make_unique<std::atomic<std::uint8_t>[]>(count);

    // Hoard order: working set first, then disk order; each distinct
    // non-zero chunk once.
    std::vector<chunk::ChunkRef> hoardChunks;
    std::set<chunk::ChunkName> seen;
    auto consider = [&](std::uint64_t index) {
        if (index >= count || !impl->config.baseTable[index])
            return;
        const auto& ref = *impl->config.baseTable[index];
        if (seen.insert(ref.name).second)
            hoardChunks.push_back(ref);
    };
    if (impl->sectors && impl->config.hoardFillsSectors)
        for (std::uint64_t i = 0; i < count; ++i)
            if (impl->config.baseTable[i])
                impl->indexesByName[impl->config.baseTable[i]->name].push_back(i);
    for (std::uint64_t index : impl->config.workingSet)
        consider(index);
    for (std::uint64_t i = 0; i < count; ++i)
        consider(i);
    HoardOptions hoardOptions;
    hoardOptions.threads = impl->config.hoardThreads;
    hoardOptions.burstDownloads = impl->config.hoardBurstDownloads;
    hoardOptions.bandwidthLimit = impl->config.hoardBandwidthLimit;
    hoardOptions.freeSpaceReserve = impl->config.hoardFreeSpaceReserve;
    hoardOptions.reserveDirectory = impl->config.overlayDirectory;
    if (!impl->indexesByName.empty()) {
        Impl* d = impl.get(); // the hoard is stopped before impl goes
        hoardOptions.settled = [d](const chunk::ChunkRef& ref, ByteView ciphertext) {
            d->hoardFill(ref, ciphertext);
        };
    }
    impl->hoard =
        std::make_unique<Hoard>(*impl->source, std::move(hoardChunks), std::move(hoardOptions));

    bool start = impl->config.startHoard;
    auto disk = std::unique_ptr<ParcelDisk>(new ParcelDisk(std::move(impl)));
    if (start)
        disk->startHoard();
    return disk;
}

ParcelDisk::ParcelDisk(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ParcelDisk::~ParcelDisk() {
    stopTrickle();
    impl_->hoard->stop();
    // The overlay file goes with impl_->overlay.
}

std::uint64_t ParcelDisk::size() const {
    return impl_->config.diskSize;
}

BlockSizes ParcelDisk::blockSizes() const {
    return {1, 4096, 32u << 20};
}

Status ParcelDisk::read(std::uint64_t offset, MutableByteView out) {
    auto once = [&] {
        auto ahead = impl_->loadAhead(offset, out.size());
        Status st = impl_->forEachPiece(offset, out.size(),
                                   [&](std::uint64_t index, std::uint32_t inChunk, std::uint32_t n,
                                       std::uint64_t pos) -> Status {
                                       return impl_->readPiece(index, inChunk, n, out.data() + pos);
                                   });
        for (auto& f : ahead)
            f.wait();
        return st;
    };
    if (!impl_->latencyOn.load(std::memory_order_relaxed))
        return once();
    readWentRemote = false;
    auto started = std::chrono::steady_clock::now();
    Status st = once();
    auto ended = std::chrono::steady_clock::now();
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(ended - started).count();
    std::lock_guard lock(impl_->latencyMutex);
    if (ended >= impl_->latencyEnd) {
        impl_->latencyOn = false;
        impl_->latencies.windowOpen = false;
        return st;
    }
    auto& v = readWentRemote ? impl_->latencies.remoteMicros : impl_->latencies.localMicros;
    if (v.size() < impl_->latencyMax)
        v.push_back(std::uint32_t(std::min<long long>(micros, UINT32_MAX)));
    else
        impl_->latencies.dropped++;
    return st;
}

void ParcelDisk::startReadLatencyWindow(std::chrono::milliseconds length, std::size_t maxEntries) {
    std::lock_guard lock(impl_->latencyMutex);
    impl_->latencies = {};
    impl_->latencies.windowOpen = true;
    impl_->latencyMax = maxEntries;
    impl_->latencyEnd = std::chrono::steady_clock::now() + length;
    impl_->latencyOn = true;
}

ReadLatencies ParcelDisk::readLatencies() const {
    std::lock_guard lock(impl_->latencyMutex);
    ReadLatencies r = impl_->latencies;
    if (r.windowOpen && std::chrono::steady_clock::now() >= impl_->latencyEnd)
        r.windowOpen = false;
    return r;
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
    return impl_->overlay->flush();
}

Status ParcelDisk::trim(std::uint64_t offset, std::uint64_t length) {
    return impl_->zeroRange(offset, length);
}

Status ParcelDisk::writeZeroes(std::uint64_t offset, std::uint64_t length) {
    return impl_->zeroRange(offset, length);
}

void ParcelDisk::startHoard() {
    impl_->hoard->start();
}

void ParcelDisk::pauseHoard() {
    impl_->hoard->pause();
}

void ParcelDisk::resumeHoard() {
    impl_->hoard->resume();
}

void ParcelDisk::setHoardBandwidthLimit(std::uint64_t bytesPerSecond) {
    impl_->hoard->setBandwidthLimit(bytesPerSecond);
}

HoardProgress ParcelDisk::hoardProgress() const {
    return impl_->hoard->progress();
}

bool ParcelDisk::waitForHoard(std::chrono::milliseconds timeout) {
    return impl_->hoard->wait(timeout);
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
    if (impl_->trickle.running())
        return;
    impl_->trickle.start(interval, [this, quietFor, upload = std::move(upload)] {
        trickleOnce(quietFor, upload);
        return true;
    });
}

void ParcelDisk::stopTrickle() {
    std::lock_guard lock(impl_->trickleMutex);
    impl_->trickle.stop();
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
    ParcelDiskStats stats{impl_->demandFetches.load(), impl_->cacheHits.load(),
                          impl_->overlayChunks.load(), impl_->corruptChunks.load()};
    stats.sectorReads = impl_->sectorReads.load();
    stats.sectorFillsSkipped = impl_->sectorFillsSkipped.load();
    if (impl_->sectors) {
        SectorCacheStats sectorStats = impl_->sectors->stats();
        stats.sectorChunks = sectorStats.filledChunks;
        stats.sectorFillFailures = sectorStats.fillFailures;
        stats.sectorCorrupt = sectorStats.corruptSectors;
    }
    return stats;
}

const std::string& ParcelDisk::overlayPath() const {
    return impl_->overlay->path();
}
std::string ParcelDisk::sectorCachePath() const {
    return impl_->sectors ? impl_->sectors->path() : std::string();
}
std::uint32_t ParcelDisk::chunkSize() const {
    return impl_->config.chunkSize;
}
std::uint64_t ParcelDisk::chunkCount() const {
    return impl_->chunkCount;
}
cache::ChunkSource& ParcelDisk::chunkSource() const {
    return *impl_->source;
}

} // namespace isr::disk
