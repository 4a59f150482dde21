// Content-defined chunking: a gear hash rolled over the bytes, with
// normalized chunking (two masks), after FastCDC (Xia et al., 2016).
#include "crypto/crypto.h"
#include "memimg/memimg.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace isr::memimg {

namespace {
constexpr std::string_view kGearDomain = "isr-memimg-gear-v1";

// A mask of `bits` ones at the top of the word. The gear hash shifts left by
// one per byte, so bit k depends on the last k+1 bytes: the top bits see a
// window of ~50-64 bytes, the low bits almost none.
std::uint64_t topMask(unsigned bits) {
    return bits == 0 ? 0 : ~std::uint64_t(0) << (64 - bits);
}
} // namespace

Status ChunkerParams::validate() const {
    auto bad = [&](const char* why) {
        return Error(Errc::InvalidArgument,
                     std::string("chunker parameters ") + std::to_string(minSize) + "/" +
                         std::to_string(avgSize) + "/" + std::to_string(maxSize) + ": " + why);
    };
    if (minSize < 64)
        return bad("minimum below 64 bytes");
    if (!(minSize < avgSize && avgSize < maxSize))
        return bad("need min < avg < max");
    if (!std::has_single_bit(avgSize))
        return bad("average is not a power of two");
    if (avgSize < 256)
        return bad("average below 256 bytes");
    if (maxSize > chunk::kMaxChunkSize)
        return bad("maximum above the chunk codec's limit");
    return {};
}

GearTable deriveGearTable(ByteView key) {
    // BLAKE2b wants a 16..64-byte key; reduce any key to 32 bytes first under
    // the domain string, then expand with a counter.
    crypto::Hasher reduce;
    reduce.update(asBytes(kGearDomain));
    reduce.update(key);
    const crypto::Hash subkey = reduce.finish();

    GearTable table{};
    constexpr std::size_t kPerBlock = crypto::kHashSize / sizeof(std::uint64_t);
    for (std::size_t block = 0; block < table.size() / kPerBlock; ++block) {
        std::uint8_t input[kGearDomain.size() + 4];
        std::memcpy(input, kGearDomain.data(), kGearDomain.size());
        putBe32(input + kGearDomain.size(), std::uint32_t(block));
        const crypto::Hash h = crypto::keyedHash(subkey, ByteView(input, sizeof input));
        for (std::size_t i = 0; i < kPerBlock; ++i)
            table[block * kPerBlock + i] = getBe64(h.data() + 8 * i);
    }
    return table;
}

Chunker::Chunker(const GearTable& gear, const ChunkerParams& params)
    : gear_(gear), params_(params) {
    // Normalized chunking, level 2: before the normal size a cut needs two
    // more zero bits than the average would, after it two fewer. That
    // concentrates sizes around the average. The normal size sits a quarter
    // below the average so the mean (min skipped, the easy mask's ~avg/4 tail
    // after it) lands near avgSize.
    const unsigned bits = unsigned(std::countr_zero(params.avgSize));
    maskSmall_ = topMask(bits + 2);
    maskLarge_ = topMask(bits - 2);
    normalSize_ = params.avgSize - params.avgSize / 4;
    normalSize_ = std::max<std::size_t>(normalSize_, params.minSize);
}

Result<Chunker> Chunker::create(ByteView gearKey, const ChunkerParams& params) {
    ISR_TRY_STATUS(params.validate());
    return Chunker(deriveGearTable(gearKey), params);
}

std::size_t Chunker::scan(const std::uint8_t* chunkStart, std::size_t from, std::size_t to,
                          std::uint64_t& hash) const {
    // Bytes before minSize are never cut points and are not hashed (the
    // FastCDC "skip"): the hash starts at zero at minSize.
    to = std::min<std::size_t>(to, params_.maxSize);
    std::size_t i = std::max<std::size_t>(from, params_.minSize);
    std::uint64_t h = hash;
    const std::size_t smallEnd = std::min(to, normalSize_);
    for (; i < smallEnd; ++i) {
        h = (h << 1) + gear_[chunkStart[i]];
        if ((h & maskSmall_) == 0) {
            hash = h;
            return i + 1;
        }
    }
    for (; i < to; ++i) {
        h = (h << 1) + gear_[chunkStart[i]];
        if ((h & maskLarge_) == 0) {
            hash = h;
            return i + 1;
        }
    }
    hash = h;
    if (to == params_.maxSize)
        return to;
    return 0;
}

std::size_t Chunker::nextCut(ByteView data) const {
    std::uint64_t hash = 0;
    const std::size_t cut = scan(data.data(), 0, data.size(), hash);
    return cut == 0 ? data.size() : cut;
}

std::vector<std::size_t> Chunker::cutPoints(ByteView data) const {
    std::vector<std::size_t> cuts;
    cuts.reserve(data.size() / params_.avgSize + 1);
    std::size_t pos = 0;
    while (pos < data.size()) {
        pos += nextCut(data.subspan(pos));
        cuts.push_back(pos);
    }
    return cuts;
}

StreamingChunker::StreamingChunker(const Chunker& chunker) : chunker_(chunker) {
    pending_.reserve(chunker.params().maxSize);
}

StreamingChunker::~StreamingChunker() {
    crypto::wipe(pending_);
}

Status StreamingChunker::feed(ByteView data, const ChunkFn& onChunk) {
    while (!data.empty()) {
        if (pending_.empty()) {
            // Fast path: the chunk starts inside the caller's buffer; cut
            // there without copying.
            const std::size_t cut = chunker_.scan(data.data(), 0, data.size(), hash_);
            if (cut != 0) {
                ISR_TRY_STATUS(onChunk(data.first(cut)));
                data = data.subspan(cut);
                hash_ = 0;
                continue;
            }
            // No cut yet (data is shorter than maxSize): keep it and the
            // hash state for the next buffer.
            pending_.assign(data.begin(), data.end());
            scanned_ = pending_.size();
            return {};
        }
        // A chunk is pending: append at most up to maxSize and resume the scan.
        const std::size_t room = chunker_.params().maxSize - pending_.size();
        const std::size_t take = std::min(room, data.size());
        pending_.insert(pending_.end(), data.begin(), data.begin() + std::ptrdiff_t(take));
        const std::size_t cut = chunker_.scan(pending_.data(), scanned_, pending_.size(), hash_);
        if (cut == 0) {
            scanned_ = pending_.size();
            data = data.subspan(take);
            continue; // data is now empty (else the scan reached maxSize and cut)
        }
        // Bytes appended past the cut belong to the next chunk: give them
        // back to `data` instead of shifting pending_.
        const std::size_t giveBack = pending_.size() - cut;
        pending_.resize(cut);
        ISR_TRY_STATUS(onChunk(pending_));
        data = data.subspan(take - giveBack);
        pending_.clear();
        scanned_ = 0;
        hash_ = 0;
    }
    return {};
}

Status StreamingChunker::finish(const ChunkFn& onChunk) {
    Status status;
    if (!pending_.empty())
        status = onChunk(pending_);
    pending_.clear();
    scanned_ = 0;
    hash_ = 0;
    return status;
}

} // namespace isr::memimg
