#pragma once
// cache: the kiosk's chunk cache. Holds only ciphertext (chunk objects as the
// store has them), so one cache is shared by every user of the kiosk.
//
// Layout under the cache directory:
//   index.sqlite            SQLite (WAL): name, size, last_used, per chunk
//   chunks/ab/abcdef...     ciphertext files, fanned out by name prefix
//   tmp/                    in-flight writes; emptied on open
//
// Invariants:
//  - A file under chunks/ is always a complete ciphertext whose hash is its
//    name (written to tmp/, fsynced, renamed).
//  - The index and the files are reconciled on open: index rows without a
//    file are dropped, files without a row are adopted (or deleted if their
//    hash does not match their name).
//  - Total size stays under the cap: put() evicts least-recently-used
//    chunks first. A chunk larger than the cap is refused with NoSpace.
//
// Thread safety: all methods may be called concurrently from many threads.

#include <cstdint>
#include <memory>
#include <string>

#include "chunk/chunk.h"
#include "util/bytes.h"
#include "util/result.h"

namespace isr::cache {

struct CacheStats {
    std::uint64_t bytes = 0;
    std::uint64_t chunks = 0;
    std::uint64_t capBytes = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t evictions = 0;
};

class ChunkCache {
public:
    static Result<std::unique_ptr<ChunkCache>> open(const std::string& directory,
                                                    std::uint64_t capBytes);
    virtual ~ChunkCache() = default;

    // NotFound if absent. A file that fails its hash check is removed and
    // reported as NotFound (and logged), so the caller refetches.
    virtual Result<Bytes> get(const chunk::ChunkName& name) = 0;
    // Verifies nameOf(ciphertext) == name (Corrupt otherwise), then stores.
    virtual Status put(const chunk::ChunkName& name, ByteView ciphertext) = 0;
    virtual bool contains(const chunk::ChunkName& name) = 0;
    virtual Status remove(const chunk::ChunkName& name) = 0;
    virtual Status setCapacity(std::uint64_t capBytes) = 0;
    virtual CacheStats stats() = 0;
};

} // namespace isr::cache
