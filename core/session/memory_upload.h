#pragma once
// MemoryImageUpload: Suspend & Leave's memory image, from the saved VM in
// scratch to chunks in the store: content-defined chunking (keyed by the
// user's convergence secret), encoding, and the upload of what the store
// lacks.
//
// Chunks the base version's image names are in the store (that version is
// committed), so they are skipped without asking the store: asking is one
// round trip a chunk, and an image has thousands. The rest is almost always
// new, so it goes with put-if-absent unasked. With dedup off
// (KioskConfig::memoryDedup, only the walk-up benchmark's anchor) every chunk
// is sent, the whole compressed image as OpenISR did.
//
// Threads: one owner; upload() blocks. Its batches go up from one helper
// thread at a time (memimg::chunkImage), progress comes on the calling thread.

#include "chunk/chunk.h"
#include "memimg/memimg.h"
#include "parcel/parcel.h"

#include <set>
#include <string>
#include <vector>

namespace isr::session {

class MemoryImageUpload {
public:
    // Fails only if no chunker can be made from the user's secret.
    static Result<MemoryImageUpload>
    create(parcel::Parcels& parcels, const std::vector<chunk::ChunkRef>& baseImage, bool dedup);

    // Chunks and uploads the image at savePath; the recipe of the image (the
    // new manifest's memory) when every chunk is durable in the store.
    Result<std::vector<chunk::ChunkRef>> upload(const std::string& savePath,
                                                const memimg::ProgressFn& progress);

private:
    MemoryImageUpload(parcel::Parcels& parcels, memimg::Chunker chunker, bool dedup);
    Result<memimg::Uploaded> uploadBatch(const std::vector<chunk::EncodedChunk>& batch);

    parcel::Parcels* parcels_;
    memimg::Chunker chunker_;
    bool dedup_;
    std::set<chunk::ChunkName> knownPresent_; // the base image's chunks
};

} // namespace isr::session
