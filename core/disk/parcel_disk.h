#pragma once
// ParcelDisk: the BlockDevice behind a user's VM disk.
//
//   read:  session overlay  ->  sector form  ->  chunk cache  ->  store (demand fetch)
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
// Sector form (disk/sector_cache.h): every base chunk decoded once (by a
// read or by the hoard) is kept on the kiosk's disk sealed per 4 KiB sector
// under a per-session key, so a later small read is a pread + a 4 KiB
// decrypt instead of a whole-chunk decode.
//
// Base chunks come through a cache::ChunkSource (cache, then the store; one
// download per chunk name), the same one the session's memory streamer
// uses. A demand miss is fetched by the request thread itself.
//
// Hoard (disk/hoard.h): worker threads pull every base chunk the cache lacks
// into the cache, the working set first, then the rest in disk order,
// through the same ChunkSource, stepping aside while demand reads wait. A
// full cache disk or an unreachable store stalls it (HoardProgress::stalled).
//
// Trickle: dirty chunks that have been quiet for a while are encoded and
// uploaded in the background (an isr::PeriodicThread), so suspend has less
// to send.
//
// Threading: every public method is thread-safe. BlockDevice methods may run
// concurrently (the NBD server calls them from several threads). See
// README.md for the lock order.

#include "cache/cache.h"
#include "cache/chunk_source.h"
#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "disk/block_device.h"
#include "disk/hoard.h"

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
using FetchChunk = cache::FetchCiphertext;
// Uploads an encoded chunk (put-if-absent semantics are the caller's; an
// AlreadyExists from the store should be reported as success).
using UploadChunk = std::function<Status(const chunk::EncodedChunk&)>;

inline constexpr std::uint32_t kDefaultChunkSize = 128 * 1024;

struct ParcelDiskConfig {
    std::uint64_t diskSize = 0;
    std::uint32_t chunkSize = kDefaultChunkSize;
    ChunkTable baseTable; // ceil(diskSize / chunkSize) entries
    // Where base chunks come from: the cache, then the store, one download
    // per chunk name — shared with the other readers of the same user (the
    // session's memory streamer). Its cache may be null: every miss goes to
    // the store and there is no hoard.
    std::shared_ptr<cache::ChunkSource> source;
    // Without `source`, the disk makes its own from these two (a disk
    // served on its own, e.g. `isrctl disk serve`); `cache` must outlive it.
    FetchChunk fetch;
    cache::ChunkCache* cache = nullptr;
    crypto::Secret convergenceSecret; // for encoding dirty chunks
    std::string overlayDirectory;     // must exist; gets one overlay file
    // Chunk indexes to hoard first (e.g. the previous session's working set).
    std::vector<std::uint64_t> workingSet;
    int hoardThreads = 4;
    // Downloads the hoard keeps in flight while demand reads come in bursts
    // (HoardOptions::burstDownloads): 1 for disk-sized chunks.
    int hoardBurstDownloads = 1;
    std::uint64_t hoardBandwidthLimit = 0; // bytes/s of ciphertext, 0 = unlimited
    bool startHoard = true;                // false: call startHoard() later
    // Bytes the hoard leaves free on the overlay directory's file system
    // (normally the cache's too): below that it stalls with NoSpace rather
    // than take the room the guest's own writes need (a write that finds no
    // room pauses the VM). 0 = no check; the cache's own failures still stall.
    std::uint64_t hoardFreeSpaceReserve = 0;
    // The sector form (disk/sector_cache.h): decoded base chunks kept on the
    // kiosk's disk encrypted per 4 KiB sector under a session key, so a
    // small read of a chunk decoded once is a pread + a 4 KiB decrypt.
    bool sectorCache = true;
    // The hoard decodes each chunk it visits into the sector form (one
    // decode per distinct chunk, on the hoard's threads), so reads are fast
    // from the first touch. Off: only demand decodes fill it.
    bool hoardFillsSectors = true;
    std::size_t plaintextCacheChunks =
        256; // decoded chunks kept in memory (LRU): 32 MiB at 128 KiB
    int zstdLevel = 1;
};

// This disk's own counts; the ChunkSource's stats() count every reader's.
struct ParcelDiskStats {
    std::uint64_t demandFetches = 0; // chunks downloaded from the store by requests
    std::uint64_t cacheHits = 0;     // base chunks served from the cache
    std::uint64_t overlayChunks = 0; // dirty chunks in the overlay
    std::uint64_t corruptChunks = 0; // chunks that failed verification
    std::uint64_t sectorReads = 0;   // reads (pieces) served by the sector form
    std::uint64_t sectorChunks = 0;  // chunks in the sector form now
    std::uint64_t sectorFillFailures =
        0; // fills the kiosk's disk could not take (read still served)
    std::uint64_t sectorFillsSkipped = 0; // fills not tried: below the free-space reserve
    std::uint64_t sectorCorrupt = 0;      // sector-form reads that failed their tag (refetched)
};

// Service times of read() calls inside a window the caller opens (the
// lazy RAM file: the guest's first 30 s of running, issue #17), split by
// whether any piece of the read had to come from the store (a demand
// fetch, or joining one in flight) or was on the kiosk (overlay, plaintext
// LRU, sector form, kiosk cache). Microseconds, in arrival order; at most
// `maxEntries` of each kind are kept, `dropped` counts the rest.
struct ReadLatencies {
    std::vector<std::uint32_t> localMicros;
    std::vector<std::uint32_t> remoteMicros;
    std::uint64_t dropped = 0;
    bool windowOpen = false; // the window has not ended yet
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
    // Runs trickleOnce every `interval` (the first run after one interval)
    // on a background thread until stopTrickle() or destruction. A running
    // trickle is left as it is.
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
    // Starts recording read() service times for `length` from now (a new
    // window drops the old one's figures). Off until called; costs a clock
    // read and, inside the window, a short lock per read.
    void startReadLatencyWindow(std::chrono::milliseconds length,
                                std::size_t maxEntries = std::size_t(1) << 20);
    ReadLatencies readLatencies() const;
    const std::string& overlayPath() const;
    // The sector form's file; empty if it is off.
    std::string sectorCachePath() const;
    std::uint32_t chunkSize() const;
    std::uint64_t chunkCount() const;
    cache::ChunkSource& chunkSource() const;

    struct Impl;

private:
    explicit ParcelDisk(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace isr::disk
