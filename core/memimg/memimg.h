#pragma once
// memimg: the VM memory image path.
//
// Suspend: libvirt's virDomainSaveFlags writes a save file into a private,
// memory-backed scratch directory (createScratchDir). chunkImage() cuts it
// into content-defined chunks (FastCDC-style gear hash, normalized chunking),
// encodes each with the chunk codec and hands batches to an upload callback
// that skips chunks the store already has. An unchanged region of guest
// memory gives the same chunks even when it moved, so it dedups against the
// previous version.
//
// Resume: streamImage() fetches chunks ahead with a small thread pool,
// verifies and decodes them, and writes them in order into a FIFO that
// virDomainRestoreFlags reads (or into a regular file), so the network and
// the VM load overlap.
//
// The gear table is derived per user from a key (the convergence secret), so
// cut points, which the store can observe through ciphertext sizes, depend on
// the user's secret and are not comparable across users.
//
// Threading contract:
//  - Chunker is immutable after construction; cutPoints()/nextCut() may be
//    called from many threads at once.
//  - StreamingChunker is single-threaded (one per stream).
//  - chunkImage() and streamImage() are blocking calls; several may run at
//    once (on different images). Their callbacks are called as follows:
//      chunkImage: upload from one helper thread at a time (never two
//        concurrently), progress from the calling thread;
//      streamImage: fetch from up to `threads` pool threads concurrently
//        (it must be thread-safe), progress from the calling thread.
//  - The cancel flag may be set from any thread.

#include "chunk/chunk.h"
#include "util/bytes.h"
#include "util/result.h"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace isr::memimg {

// ---- content-defined chunking ------------------------------------------------

struct ChunkerParams {
    std::uint32_t minSize = 16u << 10;
    std::uint32_t avgSize = 64u << 10; // a power of two
    std::uint32_t maxSize = 256u << 10;

    // InvalidArgument unless 64 <= min < avg < max <= chunk::kMaxChunkSize
    // and avg is a power of two.
    Status validate() const;
};

using GearTable = std::array<std::uint64_t, 256>;

// 256 pseudo-random words from keyed BLAKE2b-256 of a domain string and a
// counter. Deterministic: the same key always gives the same table.
GearTable deriveGearTable(ByteView key);

class Chunker {
public:
    // InvalidArgument if params do not validate.
    static Result<Chunker> create(ByteView gearKey, const ChunkerParams& params = {});

    const ChunkerParams& params() const { return params_; }

    // End offsets of every chunk of data, in order; the last is data.size()
    // (empty for empty data). Every chunk is within [minSize, maxSize] except
    // possibly the last, which may be shorter.
    std::vector<std::size_t> cutPoints(ByteView data) const;

    // Length of the first chunk of data (data starts at a chunk boundary and
    // everything after it is known, i.e. this is the last call for it).
    std::size_t nextCut(ByteView data) const;

    // Scans bytes [from, to) of a chunk whose first byte is chunkStart[0],
    // continuing the rolling hash in `hash` (0 at a new chunk). Returns the
    // chunk's length if its cut lies in that range, else 0. Decisions depend
    // only on bytes before the cut, which is what makes streaming exact.
    std::size_t scan(const std::uint8_t* chunkStart, std::size_t from, std::size_t to,
                     std::uint64_t& hash) const;

private:
    Chunker(const GearTable& gear, const ChunkerParams& params);

    GearTable gear_{};
    ChunkerParams params_;
    std::uint64_t maskSmall_ = 0; // harder to match: used before the normal size
    std::uint64_t maskLarge_ = 0; // easier to match: used after it
    std::size_t normalSize_ = 0;
};

// Streaming form: feed buffers of any size, get the same chunks as
// Chunker::cutPoints() on the concatenation. Copies at most one chunk's worth
// of bytes (the incomplete tail); chunks found inside a fed buffer are passed
// to the callback as views into it.
class StreamingChunker {
public:
    // The view passed to onChunk is valid only during the call. A failed
    // Status from onChunk stops feed()/finish() and is returned.
    using ChunkFn = std::function<Status(ByteView)>;

    explicit StreamingChunker(const Chunker& chunker);
    ~StreamingChunker(); // wipes the tail it copied (guest memory)
    StreamingChunker(const StreamingChunker&) = delete;
    StreamingChunker& operator=(const StreamingChunker&) = delete;
    Status feed(ByteView data, const ChunkFn& onChunk);
    // Emits the final (possibly short) chunk and resets for a new stream.
    Status finish(const ChunkFn& onChunk);

private:
    const Chunker& chunker_;
    Bytes pending_;           // bytes of the current chunk seen so far
    std::size_t scanned_ = 0; // how many of pending_ the scan has covered
    std::uint64_t hash_ = 0;  // rolling hash at scanned_
};

// ---- progress and cancellation -------------------------------------------------

struct Progress {
    std::uint64_t done = 0;  // bytes
    std::uint64_t total = 0; // bytes; 0 if unknown
    double bytesPerSecond = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

// ---- suspend: save file -> chunks -> store --------------------------------------

struct Uploaded {
    std::uint64_t chunks = 0; // chunks the store lacked and now has
    std::uint64_t bytes = 0;  // their ciphertext bytes
};
// Stores what the store lacks of a batch (the session passes a wrapper of
// parcel::Parcels::uploadChunks). Must be durable when it returns.
using UploadFn = std::function<Result<Uploaded>(const std::vector<chunk::EncodedChunk>&)>;

struct ChunkImageOptions {
    int zstdLevel = 1;
    unsigned encodeThreads = 2;
    // A batch goes to the upload callback when its ciphertext reaches this;
    // one batch uploads while the next fills, so at most about 2x this plus
    // a few chunks in flight is held in memory.
    std::size_t batchBytes = 16u << 20;
    const std::atomic<bool>* cancel = nullptr;
};

struct ChunkImageResult {
    std::vector<chunk::ChunkRef> recipe; // in image order
    std::uint64_t bytesIn = 0;
    std::uint64_t chunks = 0;
    std::uint64_t newChunks = 0;     // as the upload callback reported
    std::uint64_t bytesUploaded = 0; // ciphertext
};

// Reads fd from its current position to EOF (any readable fd: a regular
// file, a pipe). Io on read errors, Cancelled, or the upload's error.
Result<ChunkImageResult> chunkImage(int fd, ByteView convergenceSecret, const Chunker& chunker,
                                    const UploadFn& upload, const ChunkImageOptions& options = {},
                                    const ProgressFn& progress = {});
Result<ChunkImageResult> chunkImage(const std::string& path, ByteView convergenceSecret,
                                    const Chunker& chunker, const UploadFn& upload,
                                    const ChunkImageOptions& options = {},
                                    const ProgressFn& progress = {});

// ---- resume: store -> chunks -> FIFO ------------------------------------------------

// Ciphertext of a chunk by name (the session tries the kiosk cache, then the
// store, and fills the cache). Called concurrently from pool threads.
using FetchFn = std::function<Result<Bytes>(const chunk::ChunkName&)>;

struct StreamOptions {
    unsigned threads = 4;         // concurrent fetch+decode
    std::size_t chunksAhead = 16; // how far ahead of the writer to fetch
    // A FIFO output waits this long for its reader to open it (libvirt may
    // fail before it does); then Io.
    int fifoOpenTimeoutMs = 60000;
    const std::atomic<bool>* cancel = nullptr;
};

struct StreamStats {
    std::uint64_t bytes = 0;
    std::uint64_t chunks = 0;
};

// Writes the image described by recipe to outputPath: an existing FIFO is
// opened for writing (waiting for the reader), anything else is created or
// truncated as a regular file (mode 0600). Every chunk is verified and
// decoded; the first failure aborts with its error (Corrupt, NotFound, ...)
// naming the chunk. On any failure the output is closed at once, so a FIFO
// reader sees EOF instead of hanging, and a regular output file is removed.
// A FIFO reader that goes away gives Io ("reader closed the pipe"); SIGPIPE
// is blocked for the write and any it raised is consumed.
Result<StreamStats> streamImage(const std::vector<chunk::ChunkRef>& recipe, const FetchFn& fetch,
                                const std::string& outputPath, const StreamOptions& options = {},
                                const ProgressFn& progress = {});

// ---- scratch space for the save file --------------------------------------------------

struct ScratchOptions {
    // Parent directory; empty: /dev/shm if it is tmpfs, else $XDG_RUNTIME_DIR.
    std::string parent;
    // Accept a parent that is not memory-backed. Off by default: the save
    // file is the guest's RAM in clear (keys, documents), and the kiosk
    // promises that no user plaintext touches its disk. Only for tests or
    // machines whose disk is itself encrypted with an ephemeral key.
    bool allowDisk = false;
};

// Creates <parent>/isr-memimg-XXXXXX with mode 0700 and returns its path.
// Unsupported if no memory-backed parent is found (and allowDisk is off).
Result<std::string> createScratchDir(const ScratchOptions& options = {});

// Overwrites every regular file under dir with zeros, then removes the tree
// (symlinks are removed, never followed). On tmpfs this clears the pages
// before they return to the kernel; on a disk it is best effort only.
Status wipeScratchDir(const std::string& dir);

} // namespace isr::memimg
