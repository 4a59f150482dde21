// The chunk codec; see chunk.h for the format.
#include "chunk/chunk.h"

#include <cstring>
#include <stdexcept>
#include <zstd.h>

namespace isr::chunk {

namespace {

constexpr std::uint8_t kTagRaw = 0x01;
constexpr std::uint8_t kTagZstd = 0x02;
constexpr std::string_view kAdPrefix = "isr-chunk-v1";

Bytes associatedData(std::uint8_t tag) {
    Bytes ad(kAdPrefix.begin(), kAdPrefix.end());
    ad.push_back(tag);
    return ad;
}

// zstd contexts are costly to create; keep one per thread.
ZSTD_CCtx* compressContext() {
    struct Holder {
        ZSTD_CCtx* ctx = ZSTD_createCCtx();
        ~Holder() { ZSTD_freeCCtx(ctx); }
    };
    thread_local Holder holder;
    return holder.ctx;
}
ZSTD_DCtx* decompressContext() {
    struct Holder {
        ZSTD_DCtx* ctx = ZSTD_createDCtx();
        ~Holder() { ZSTD_freeDCtx(ctx); }
    };
    thread_local Holder holder;
    return holder.ctx;
}

std::string hex(ByteView b) {
    return toHex(b);
}

} // namespace

EncodedChunk encode(ByteView convergenceSecret, ByteView plaintext, int zstdLevel) {
    if (plaintext.size() > kMaxChunkSize)
        throw std::invalid_argument("chunk::encode: plaintext larger than kMaxChunkSize");

    // Compress; keep the result only if it is strictly smaller.
    std::uint8_t tag = kTagRaw;
    Bytes compressed;
    // The zstd frame is the plaintext in another form (issue #16 item 8).
    crypto::WipeOnExit wipeCompressed(compressed);
    if (!plaintext.empty()) {
        compressed.resize(ZSTD_compressBound(plaintext.size()));
        size_t n = ZSTD_compressCCtx(compressContext(), compressed.data(), compressed.size(),
                                     plaintext.data(), plaintext.size(), zstdLevel);
        if (!ZSTD_isError(n) && n < plaintext.size()) {
            compressed.resize(n);
            tag = kTagZstd;
        }
    }
    ByteView body = tag == kTagZstd ? ByteView(compressed) : plaintext;

    EncodedChunk out;
    crypto::Hash key = crypto::keyedHash(convergenceSecret, body);
    std::memcpy(out.ref.key.data(), key.data(), key.size());
    out.ref.length = static_cast<std::uint32_t>(plaintext.size());

    Bytes sealed = crypto::encryptConvergent(out.ref.key, body, associatedData(tag));
    out.ciphertext.reserve(1 + sealed.size());
    out.ciphertext.push_back(tag);
    out.ciphertext.insert(out.ciphertext.end(), sealed.begin(), sealed.end());
    out.ref.name = nameOf(out.ciphertext);
    return out;
}

Result<Bytes> decode(const ChunkRef& ref, ByteView ciphertext) {
    if (ref.length > kMaxChunkSize)
        return Error(Errc::Corrupt, "chunk length " + std::to_string(ref.length) +
                                        " exceeds maximum " + std::to_string(kMaxChunkSize));
    ChunkName actualName = nameOf(ciphertext);
    if (!crypto::equalConstantTime(actualName, ref.name))
        return Error(Errc::Corrupt, "chunk name mismatch: expected " + nameHex(ref.name) +
                                        ", actual " + nameHex(actualName));
    if (ciphertext.size() < 1 + crypto::kMacSize)
        return Error(Errc::Corrupt, "chunk " + nameHex(ref.name) + " is " +
                                        std::to_string(ciphertext.size()) +
                                        " bytes, shorter than tag+MAC");
    const std::uint8_t tag = ciphertext[0];
    if (tag != kTagRaw && tag != kTagZstd)
        return Error(Errc::Corrupt, "chunk " + nameHex(ref.name) + ": unknown tag 0x" +
                                        hex(ByteView(&tag, 1)) + ", expected 0x01 or 0x02");
    auto body = crypto::decryptConvergent(ref.key, ciphertext.subspan(1), associatedData(tag));
    if (!body.ok())
        return std::move(body).error().context("chunk " + nameHex(ref.name));

    if (tag == kTagRaw) {
        if (body->size() != ref.length) {
            Error mismatch(Errc::Corrupt, "chunk " + nameHex(ref.name) +
                                              ": length mismatch: expected " +
                                              std::to_string(ref.length) + ", actual " +
                                              std::to_string(body->size()));
            crypto::wipe(*body);
            return mismatch;
        }
        return std::move(body).value();
    }
    // The decrypted frame is the plaintext in another form: wiped on every
    // way out (issue #16 item 8; the caller owns the plaintext it gets).
    crypto::WipeOnExit wipeFrame(*body);

    // The frame header's content size is only a claim: check it against the
    // expected length, then decompress into a buffer of exactly that size, so
    // a frame that expands further fails instead of allocating.
    unsigned long long claimed = ZSTD_getFrameContentSize(body->data(), body->size());
    if (claimed == ZSTD_CONTENTSIZE_ERROR)
        return Error(Errc::Corrupt, "chunk " + nameHex(ref.name) + ": not a zstd frame");
    if (claimed != ZSTD_CONTENTSIZE_UNKNOWN && claimed != ref.length)
        return Error(Errc::Corrupt, "chunk " + nameHex(ref.name) + ": length mismatch: expected " +
                                        std::to_string(ref.length) + ", actual " +
                                        std::to_string(claimed));
    Bytes plain(ref.length);
    size_t n = ZSTD_decompressDCtx(decompressContext(), plain.data(), plain.size(), body->data(),
                                   body->size());
    if (ZSTD_isError(n))
        return Error(Errc::Corrupt, "chunk " + nameHex(ref.name) +
                                        ": zstd: " + ZSTD_getErrorName(n) + " (expected length " +
                                        std::to_string(ref.length) + ")");
    if (n != ref.length)
        return Error(Errc::Corrupt, "chunk " + nameHex(ref.name) + ": length mismatch: expected " +
                                        std::to_string(ref.length) + ", actual " +
                                        std::to_string(n));
    return plain;
}

ChunkName nameOf(ByteView ciphertext) {
    return crypto::hash(ciphertext);
}

std::string nameHex(const ChunkName& name) {
    return toHex(name);
}

Result<ChunkName> nameFromHex(std::string_view text) {
    if (text.size() != 2 * sizeof(ChunkName))
        return Error(Errc::InvalidArgument, "chunk name must be " +
                                                std::to_string(2 * sizeof(ChunkName)) +
                                                " hex digits, got " + std::to_string(text.size()));
    auto bytes = fromHex(text);
    if (!bytes.ok())
        return Error(Errc::InvalidArgument, "chunk name is not hex: " + bytes.error().message);
    ChunkName name{};
    std::memcpy(name.data(), bytes->data(), name.size());
    return name;
}

} // namespace isr::chunk
