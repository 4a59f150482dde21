#pragma once
// ParcelDisk: the BlockDevice behind a user's VM disk.
//
//   read:  session overlay  ->  chunk cache  ->  store (demand fetch)
//   write: copy-on-write, whole chunks, into the session overlay
//
// The disk is an array of fixed-size chunks (128 KiB by default; the last one
// may be shorter). The base chunk table comes from the parcel's manifest;
// nullopt entries are all-zero chunks that are not stored.
//
// Overlay: one sparse file in overlayDirectory with one fixed-size slot per
// chunk. A dirty chunk's slot holds crypto::seal(sessionKey, plaintext,
// AD = "isr-overlay-v1" || index) with a fresh random nonce per write. The
// session key is random, lives only in memory (crypto::Secret) and dies with
// the ParcelDisk, so no plaintext of the user's disk ever reaches the kiosk's
// disk, and the overlay is unreadable after the process ends (a kiosk crash
// loses the session's unsaved writes, as a crash of the VM would).
//
// Hoard: worker threads pull every base chunk the cache lacks into the cache,
// the working set first, then the rest in disk order. A full cache disk or an
// unreachable store stalls the hoard (HoardProgress::stalled) and it retries
// with backoff instead of running through the queue failing every chunk. A demand miss is
// fetched by the request thread itself (it never queues behind the hoard);
// the hoard pauses while demand fetches are running, and a demand read and a
// hoard fetch of the same chunk share one download.
//
// Threading: every public method is thread-safe. BlockDevice methods may run
// concurrently (the NBD server calls them from several threads). See
// README.md for the lock order.

#include "cache/cache.h"
#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "disk/nbd_server.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace isr::disk {

using ChunkTable = std::vector<std::optional<chunk::ChunkRef>>;
// Fetches a chunk's ciphertext from the store (e.g. users/<u>/chunks/ab/<hex>).
// Called from several threads at once.
using FetchChunk = std::function<Result<Bytes>(const chunk::ChunkName&)>;
// Uploads an encoded chunk (put-if-absent semantics are the caller's; an
// AlreadyExists from the store should be reported as success).
using UploadChunk = std::function<Status(const chunk::EncodedChunk&)>;

inline constexpr std::uint32_t kDefaultChunkSize = 128 * 1024;

struct ParcelDiskConfig {
    std::uint64_t diskSize = 0;
    std::uint32_t chunkSize = kDefaultChunkSize;
    ChunkTable baseTable; // ceil(diskSize / chunkSize) entries
    FetchChunk fetch;
    cache::ChunkCache* cache = nullptr; // may be null: every miss goes to the store, no hoard
    crypto::Secret convergenceSecret;   // for encoding dirty chunks
    std::string overlayDirectory;       // must exist; gets one overlay file
    // Chunk indexes to hoard first (e.g. the previous session's working set).
    std::vector<std::uint64_t> workingSet;
    int hoardThreads = 4;
    std::uint64_t hoardBandwidthLimit = 0; // bytes/s of ciphertext, 0 = unlimited
    bool startHoard = true;                // false: call startHoard() later
    // Bytes the hoard leaves free on the overlay directory's file system
    // (normally the cache's too): below that it stalls with NoSpace rather
    // than take the room the guest's own writes need (a write that finds no
    // room pauses the VM). 0 = no check; the cache's own failures still stall.
    std::uint64_t hoardFreeSpaceReserve = 0;
    std::size_t plaintextCacheChunks =
        256; // decoded chunks kept in memory (LRU): 32 MiB at 128 KiB
    int zstdLevel = 1;
};

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

struct ParcelDiskStats {
    std::uint64_t demandFetches = 0; // chunks fetched from the store by requests
    std::uint64_t cacheHits = 0;     // base chunks served from the cache
    std::uint64_t overlayChunks = 0; // dirty chunks in the overlay
    std::uint64_t corruptChunks = 0; // chunks that failed verification
};

struct TrickleResult {
    std::uint64_t uploaded = 0; // chunks handed to upload() and accepted
    std::uint64_t bytes = 0;    // their ciphertext bytes
    std::uint64_t pending = 0;  // dirty chunks not uploaded (too recent or failed)
};

struct FinalTable {
    ChunkTable table;                           // base + overlay
    std::vector<chunk::EncodedChunk> newChunks; // not yet uploaded; upload before commit
    std::vector<std::uint64_t> workingSet;      // chunks touched this session, first touch first
};

class ParcelDisk : public BlockDevice {
public:
    // Validates the table (size, lengths), creates the overlay file.
    static Result<std::unique_ptr<ParcelDisk>> open(ParcelDiskConfig config);
    ~ParcelDisk() override; // stops hoard/trickle threads, deletes the overlay file

    // BlockDevice
    std::uint64_t size() const override;
    BlockSizes blockSizes() const override;
    Status read(std::uint64_t offset, MutableByteView out) override;
    Status write(std::uint64_t offset, ByteView data, bool fua) override;
    Status flush() override;
    Status trim(std::uint64_t offset, std::uint64_t length) override;
    Status writeZeroes(std::uint64_t offset, std::uint64_t length) override;

    // Hoard control. start is idempotent; pause lets running fetches finish.
    void startHoard();
    void pauseHoard();
    void resumeHoard();
    HoardProgress hoardProgress() const;
    // Blocks until the hoard has visited every chunk or `timeout` passed.
    bool waitForHoard(std::chrono::milliseconds timeout);
    // Bytes/s for hoard downloads (0 = unlimited); takes effect immediately.
    void setHoardBandwidthLimit(std::uint64_t bytesPerSecond);

    // Trickle-back: encodes dirty chunks whose last write is at least
    // `quietFor` old and not yet uploaded, and hands each to `upload`.
    // A chunk written again later is re-encoded next time.
    TrickleResult trickleOnce(std::chrono::milliseconds quietFor, const UploadChunk& upload);
    // Runs trickleOnce every `interval` on a background thread until
    // stopTrickle() or destruction.
    void startTrickle(std::chrono::milliseconds quietFor, std::chrono::milliseconds interval,
                      UploadChunk upload);
    void stopTrickle();

    // At suspend (after the VM stopped writing): the new chunk table, the
    // chunks that still need uploading (dirty and not trickled since their
    // last write; all-zero chunks become nullopt and are never uploaded),
    // and the session's working set. Does not change the disk; may be
    // called again.
    Result<FinalTable> finalChunkTable();

    ParcelDiskStats stats() const;
    const std::string& overlayPath() const;
    std::uint32_t chunkSize() const;
    std::uint64_t chunkCount() const;

    struct Impl;

private:
    explicit ParcelDisk(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace isr::disk
