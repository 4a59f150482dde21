#include "disk/sector_cache.h"

#include "util/log.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

namespace isr::disk {

namespace {

constexpr const char* kLog = "disk";

void sectorNonce(std::uint64_t index, std::uint32_t sector,
                 std::uint8_t (&nonce)[crypto::kSectorNonceSize]) {
    putBe64(nonce, index);
    for (int b = 0; b < 4; ++b)
        nonce[8 + b] = std::uint8_t(sector >> (24 - 8 * b));
}

std::uint64_t roundUp(std::uint64_t n, std::uint64_t to) {
    return (n + to - 1) / to * to;
}

} // namespace

Result<std::unique_ptr<SectorCache>> SectorCache::create(const std::string& directory,
                                                         std::uint64_t chunkCount,
                                                         std::uint32_t chunkSize,
                                                         std::uint32_t lastChunkLength) {
    ISR_TRY_STATUS(crypto::initialize());
    if (chunkCount == 0 || chunkSize == 0 || lastChunkLength == 0 || lastChunkLength > chunkSize)
        return Error(Errc::InvalidArgument, "sector cache: bad geometry");
    std::string path = directory + "/sectors-" + toHex(crypto::randomBytes(8)) + ".sealed";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid())
        return errnoError(errno, "create sector cache " + path);
    // Sparse: nothing is allocated until a chunk is filled. The size is set
    // when slots are written, so a full disk costs nothing at open.
    return std::unique_ptr<SectorCache>(
        new SectorCache(std::move(path), std::move(fd), chunkCount, chunkSize, lastChunkLength));
}

SectorCache::SectorCache(std::string path, UniqueFd fd, std::uint64_t chunkCount,
                         std::uint32_t chunkSize, std::uint32_t lastChunkLength)
    : path_(std::move(path)), fd_(std::move(fd)), chunkCount_(chunkCount), chunkSize_(chunkSize),
      lastChunkLength_(lastChunkLength),
      sectorsPerChunk_((chunkSize + kSectorSize - 1) / kSectorSize),
      slotSize_(roundUp(chunkSize, kSectorSize)), tagBase_(chunkCount * slotSize_),
      key_(crypto::Secret::random(crypto::kKeySize)),
      state_(std::make_unique<std::atomic<std::uint8_t>[]>(chunkCount)) {}

SectorCache::~SectorCache() {
    fd_.reset();
    ::unlink(path_.c_str());
}

Status SectorCache::fill(std::uint64_t index, ByteView plain) {
    const std::uint32_t length = chunkLength(index);
    if (index >= chunkCount_ || plain.size() != length)
        return Error(Errc::InvalidArgument,
                     "sector cache fill: bad chunk " + std::to_string(index));
    std::uint8_t expected = kEmpty;
    if (!state_[index].compare_exchange_strong(expected, kFilling, std::memory_order_acq_rel))
        return {}; // filled, or another thread is filling it with the same bytes
    const std::uint32_t sectors = (length + kSectorSize - 1) / kSectorSize;
    Bytes sealed(length);
    Bytes tags(std::size_t(sectors) * crypto::kMacSize);
    for (std::uint32_t s = 0; s < sectors; ++s) {
        std::uint8_t nonce[crypto::kSectorNonceSize];
        sectorNonce(index, s, nonce);
        std::size_t at = std::size_t(s) * kSectorSize;
        std::size_t n = std::min<std::size_t>(kSectorSize, length - at);
        crypto::encryptDetached(key_, nonce, plain.subspan(at, n), sealed.data() + at,
                                tags.data() + std::size_t(s) * crypto::kMacSize);
    }
    Status written = pwriteAll(fd_.get(), sealed, dataOffset(index), "write " + path_);
    if (written.ok())
        written = pwriteAll(fd_.get(), tags, tagOffset(index, 0), "write " + path_);
    if (!written.ok()) {
        // Give back what a partial write took; the slot stays empty.
        ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(dataOffset(index)),
                    off_t(slotSize_));
        fillFailures_++;
        state_[index].store(kEmpty, std::memory_order_release);
        return written;
    }
    filledChunks_++;
    state_[index].store(kFilled, std::memory_order_release);
    return {};
}

Status SectorCache::read(std::uint64_t index, std::uint32_t inChunk, std::uint32_t length,
                         std::uint8_t* out) {
    if (!filled(index))
        return Error(Errc::NotFound, "chunk not in the sector cache");
    const std::uint32_t chunkLen = chunkLength(index);
    if (length == 0 || inChunk + std::uint64_t(length) > chunkLen)
        return Error(Errc::InvalidArgument, "sector cache read out of range");
    const std::uint32_t first = inChunk / kSectorSize;
    const std::uint32_t last = (inChunk + length - 1) / kSectorSize;
    const std::uint32_t begin = first * kSectorSize;
    const std::uint32_t end = std::min<std::uint32_t>((last + 1) * kSectorSize, chunkLen);
    // Whole sectors go straight into `out` and are decrypted in place;
    // otherwise through a buffer that is wiped afterwards (it held plaintext).
    const bool direct = begin == inChunk && end == inChunk + length;
    Bytes buffer;
    crypto::WipeOnExit wipeBuffer(buffer);
    std::uint8_t* data = out;
    if (!direct) {
        buffer.resize(end - begin);
        data = buffer.data();
    }
    std::uint8_t tags[crypto::kMacSize * 256];
    const std::uint32_t sectors = last - first + 1;
    Bytes bigTags;
    std::uint8_t* tagData = tags;
    if (sectors > 256) {
        bigTags.resize(std::size_t(sectors) * crypto::kMacSize);
        tagData = bigTags.data();
    }
    ISR_TRY_ASSIGN(std::size_t got, preadAll(fd_.get(), {data, std::size_t(end - begin)},
                                             dataOffset(index) + begin, "read " + path_));
    ISR_TRY_ASSIGN(std::size_t gotTags,
                   preadAll(fd_.get(), {tagData, std::size_t(sectors) * crypto::kMacSize},
                            tagOffset(index, first), "read " + path_));
    bool good = got == end - begin && gotTags == std::size_t(sectors) * crypto::kMacSize;
    for (std::uint32_t s = first; good && s <= last; ++s) {
        std::uint8_t nonce[crypto::kSectorNonceSize];
        sectorNonce(index, s, nonce);
        std::size_t at = std::size_t(s - first) * kSectorSize;
        std::size_t n = std::min<std::size_t>(kSectorSize, end - begin - at);
        good =
            crypto::decryptDetached(key_, nonce, {data + at, n},
                                    tagData + std::size_t(s - first) * crypto::kMacSize, data + at);
    }
    if (!good) {
        corruptSectors_++;
        std::uint8_t expected = kFilled;
        if (state_[index].compare_exchange_strong(expected, kEmpty, std::memory_order_acq_rel))
            filledChunks_--;
        ISR_LOG_ERROR(kLog) << "sector cache slot of chunk " << index
                            << " failed verification; reading the chunk from the cache instead";
        return Error(Errc::Corrupt, "sector cache slot of chunk " + std::to_string(index) +
                                        " failed verification");
    }
    if (!direct)
        std::copy_n(data + (inChunk - begin), length, out);
    return {};
}

SectorCacheStats SectorCache::stats() const {
    return {filledChunks_.load(), fillFailures_.load(), corruptSectors_.load()};
}

} // namespace isr::disk
