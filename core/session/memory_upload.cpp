#include "session/memory_upload.h"

#include "util/fault.h"

namespace isr::session {

Result<MemoryImageUpload> MemoryImageUpload::create(parcel::Parcels& parcels,
                                                    const std::vector<chunk::ChunkRef>& baseImage,
                                                    bool dedup) {
    ISR_TRY_ASSIGN(auto chunker, memimg::Chunker::create(parcels.secrets().convergence.view()));
    MemoryImageUpload upload(parcels, std::move(chunker), dedup);
    if (dedup)
        for (const auto& r : baseImage)
            upload.knownPresent_.insert(r.name);
    return upload;
}

MemoryImageUpload::MemoryImageUpload(parcel::Parcels& parcels, memimg::Chunker chunker, bool dedup)
    : parcels_(&parcels), chunker_(std::move(chunker)), dedup_(dedup) {}

Result<std::vector<chunk::ChunkRef>> MemoryImageUpload::upload(const std::string& savePath,
                                                               const memimg::ProgressFn& progress) {
    ISR_TRY_ASSIGN(auto chunked, memimg::chunkImage(
                                     savePath, parcels_->secrets().convergence.view(), chunker_,
                                     [this](const std::vector<chunk::EncodedChunk>& batch) {
                                         return uploadBatch(batch);
                                     },
                                     {}, progress));
    return std::move(chunked.recipe);
}

Result<memimg::Uploaded>
MemoryImageUpload::uploadBatch(const std::vector<chunk::EncodedChunk>& batch) {
    ISR_TRY_STATUS(ISR_FAULT_POINT("session.memimg.batch"));
    parcel::Parcels::UploadOptions options;
    options.askStore = false;
    options.dedup = dedup_;
    if (dedup_)
        options.knownPresent = &knownPresent_;
    ISR_TRY_ASSIGN(auto sent, parcels_->uploadChunks(batch, options));
    return memimg::Uploaded{sent.chunks, sent.bytes};
}

} // namespace isr::session
