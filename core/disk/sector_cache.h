#pragma once
// SectorCache: the session's local at-rest form of decoded base chunks, so
// that a 4 KiB read of a chunk already decoded once costs one pread and a
// 4 KiB decrypt instead of a cache look-up, a 128 KiB file read, a hash of
// it, a whole-chunk decrypt and a decompress (issue #17: the cached disk
// path at local-disk speed).
//
// One sparse file `sectors-<random>.sealed` beside the overlay. Chunk `i`'s
// plaintext sits at `i * roundup(chunkSize, 4096)`, cut into 4 KiB sectors
// (the last one of a short chunk is shorter); sector `s` of chunk `i` is
// ChaCha20-Poly1305(key, nonce = be64(i) || be32(s)), its 16-byte tag in a
// packed tag area after the data (tagOffset + (i * sectorsPerChunk + s) * 16).
// The key is random, in memory only (mlocked crypto::Secret), and dies with
// the SectorCache; the file is deleted with it. So it is the sealed overlay's
// model (plaintext never at rest on the kiosk), at sector granularity.
//
// Why a fixed nonce per (chunk, sector) is safe: slot `i` only ever holds the
// BASE content of chunk `i`, which does not change while the key lives (the
// base table is fixed for the ParcelDisk's life; a guest write makes the
// chunk Dirty and the overlay serves it from then on, never this slot). So a
// (key, nonce) pair only ever encrypts one plaintext: filling a slot twice
// (two threads, or a refill after a failed check) writes the same bytes.
//
// Why tags (unlike dm-crypt): the project's rule is "never wrong data". The
// one who can write this file during a session (the kiosk's own user, or
// root) could read QEMU's memory anyway, so the tags do not stop an
// adversary; they turn bit rot or a stray write into a refill from the chunk
// cache instead of wrong bytes in the guest, for ~1.4 us of Poly1305 per
// 4 KiB (measured: AEAD open 4.4 us vs ChaCha20 alone 3.0 us, libsodium on
// this run's 2-core box) plus one 16-byte pread, next to an NBD round trip
// of tens of us. A sector that fails its tag empties the slot; the caller
// reads the chunk the slow way (decode), which also refills it.
//
// A fill that cannot be written (ENOSPC, EFBIG, I/O) leaves the slot empty
// and returns the error; the caller serves the read from the decoded chunk
// anyway and counts it. Nothing here ever fails a guest read.
//
// Thread safety: every method may be called from many threads. Per slot an
// atomic state (Empty -> Filling -> Filled) lets one thread fill a slot;
// readers read only Filled slots, which are never written again (except a
// refill of the same bytes after a failed check).

#include "crypto/crypto.h"
#include "util/bytes.h"
#include "util/posix.h"
#include "util/result.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace isr::disk {

struct SectorCacheStats {
    std::uint64_t filledChunks = 0;   // slots that hold their chunk
    std::uint64_t fillFailures = 0;   // fills that could not be written (disk full, I/O)
    std::uint64_t corruptSectors = 0; // reads whose tag did not verify (slot emptied)
};

class SectorCache {
public:
    static constexpr std::uint32_t kSectorSize = 4096;

    // Creates the file in `directory` (which must exist) for `chunkCount`
    // chunks of `chunkSize` bytes; the last chunk is `lastChunkLength` long.
    static Result<std::unique_ptr<SectorCache>> create(const std::string& directory,
                                                       std::uint64_t chunkCount,
                                                       std::uint32_t chunkSize,
                                                       std::uint32_t lastChunkLength);
    ~SectorCache(); // closes and deletes the file
    SectorCache(const SectorCache&) = delete;
    SectorCache& operator=(const SectorCache&) = delete;

    bool filled(std::uint64_t index) const {
        return state_[index].load(std::memory_order_acquire) == kFilled;
    }
    // Writes chunk `index`'s base plaintext (its full length) into its slot.
    // Ok if it was already filled or another thread is filling it. An error
    // (NoSpace, Io...) leaves the slot empty.
    Status fill(std::uint64_t index, ByteView plain);
    // Reads `length` bytes at `inChunk` of a filled chunk into `out`.
    // NotFound if the slot is not filled; Corrupt if a sector fails its tag
    // (the slot is emptied); Io. On error `out` holds garbage: the caller
    // must serve the read another way.
    Status read(std::uint64_t index, std::uint32_t inChunk, std::uint32_t length,
                std::uint8_t* out);

    SectorCacheStats stats() const;
    const std::string& path() const { return path_; }

private:
    enum : std::uint8_t { kEmpty = 0, kFilling = 1, kFilled = 2 };
    SectorCache(std::string path, UniqueFd fd, std::uint64_t chunkCount, std::uint32_t chunkSize,
                std::uint32_t lastChunkLength);
    std::uint32_t chunkLength(std::uint64_t index) const {
        return index + 1 == chunkCount_ ? lastChunkLength_ : chunkSize_;
    }
    std::uint64_t dataOffset(std::uint64_t index) const { return index * slotSize_; }
    std::uint64_t tagOffset(std::uint64_t index, std::uint32_t sector) const {
        return tagBase_ + (index * sectorsPerChunk_ + sector) * crypto::kMacSize;
    }

    std::string path_;
    UniqueFd fd_;
    std::uint64_t chunkCount_;
    std::uint32_t chunkSize_, lastChunkLength_, sectorsPerChunk_;
    std::uint64_t slotSize_, tagBase_;
    crypto::Secret key_;
    std::unique_ptr<std::atomic<std::uint8_t>[]> state_;
    std::atomic<std::uint64_t> filledChunks_{0}, fillFailures_{0}, corruptSectors_{0};
};

} // namespace isr::disk
