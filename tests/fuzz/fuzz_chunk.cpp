// Fuzzes the chunk decoder (chunk::decode) with hostile ciphertext and refs.
// Modes (first byte % 3):
//  0 ref and ciphertext both from the input: decode ok => the ciphertext
//    hashes to ref.name and the plaintext has ref.length bytes (with a random
//    name that means: never ok for a wrong name);
//  1 a body the fuzzer chooses, sealed correctly under a fuzzed key with the
//    codec's tag, nonce and associated data, so the MAC passes and the zstd
//    and length checks see hostile input: ok => exactly ref.length bytes, and
//    for a raw body the plaintext is the body itself; a zstd body that
//    decodes must match libzstd's own one-shot decompression;
//  2 round trip: encode(plaintext) decodes to the plaintext; the same ref
//    with one ciphertext byte, the key or the length changed never decodes.
#include "chunk/chunk.h"
#include "fuzz_check.h"

#include <cstring>
#include <zstd.h>

namespace {

using namespace isr;

void checkDecoded(const chunk::ChunkRef& ref, ByteView ciphertext, const Result<Bytes>& out) {
    if (!out.ok()) {
        FUZZ_CHECK(out.error().code == Errc::Corrupt);
        return;
    }
    FUZZ_CHECK(chunk::nameOf(ciphertext) == ref.name);
    FUZZ_CHECK(out->size() == ref.length);
}

void fuzzRaw(fuzz::FieldReader& in) {
    chunk::ChunkRef ref;
    in.bytes(ref.name.data(), ref.name.size());
    in.bytes(ref.key.data(), ref.key.size());
    ref.length = in.u32();
    const bool fixName = in.u8() & 1;
    ByteView ciphertext = in.rest();
    if (fixName) // let the name check pass to reach the tag and MAC
        ref.name = chunk::nameOf(ciphertext);
    checkDecoded(ref, ciphertext, chunk::decode(ref, ciphertext));
}

void fuzzSealedBody(fuzz::FieldReader& in) {
    const std::uint8_t tag = (in.u8() & 1) ? 0x02 : 0x01;
    chunk::ChunkRef ref;
    in.bytes(ref.key.data(), ref.key.size());
    // Mostly plausible lengths, sometimes anything.
    std::uint32_t length = in.u32();
    ref.length = (length & 0x80000000u) ? length : length % (1u << 18);
    ByteView body = in.rest();

    Bytes ad = toBytes("isr-chunk-v1");
    ad.push_back(tag);
    Bytes sealed = crypto::encryptConvergent(ref.key, body, ad);
    Bytes ciphertext{tag};
    ciphertext.insert(ciphertext.end(), sealed.begin(), sealed.end());
    ref.name = chunk::nameOf(ciphertext);

    auto out = chunk::decode(ref, ciphertext);
    checkDecoded(ref, ciphertext, out);
    if (tag == 0x01) {
        FUZZ_CHECK(out.ok() == (body.size() == ref.length && ref.length <= chunk::kMaxChunkSize));
        if (out.ok())
            FUZZ_CHECK(std::equal(out->begin(), out->end(), body.begin(), body.end()));
        return;
    }
    if (!out.ok())
        return;
    // Independent check: libzstd's one-shot decompression into a buffer with
    // room to spare must give the same bytes.
    Bytes reference(std::size_t(ref.length) + 64);
    size_t n = ZSTD_decompress(reference.data(), reference.size(), body.data(), body.size());
    FUZZ_CHECK(!ZSTD_isError(n));
    FUZZ_CHECK(n == ref.length);
    FUZZ_CHECK(std::equal(out->begin(), out->end(), reference.begin()));
}

void fuzzRoundTrip(fuzz::FieldReader& in) {
    std::uint8_t secret[32];
    in.bytes(secret, sizeof secret);
    std::uint32_t flipAt = in.u32();
    std::uint8_t flipWith = in.u8();
    std::uint8_t what = in.u8();
    ByteView plaintext = in.rest();

    chunk::EncodedChunk encoded = chunk::encode(ByteView(secret, sizeof secret), plaintext);
    FUZZ_CHECK(encoded.ref.length == plaintext.size());
    FUZZ_CHECK(encoded.ref.name == chunk::nameOf(encoded.ciphertext));
    auto out = chunk::decode(encoded.ref, encoded.ciphertext);
    FUZZ_CHECK(out.ok());
    FUZZ_CHECK(std::equal(out->begin(), out->end(), plaintext.begin(), plaintext.end()));
    // Same data, same secret: same chunk (convergence).
    chunk::EncodedChunk again = chunk::encode(ByteView(secret, sizeof secret), plaintext);
    FUZZ_CHECK(again.ref.name == encoded.ref.name && again.ciphertext == encoded.ciphertext);

    if (flipWith == 0)
        return;
    chunk::ChunkRef ref = encoded.ref;
    Bytes ciphertext = encoded.ciphertext;
    switch (what % 3) {
    case 0: // tampered ciphertext under the right name: the name check must fail
        ciphertext[flipAt % ciphertext.size()] ^= flipWith;
        break;
    case 1: // wrong key: the MAC must fail
        ref.key[flipAt % ref.key.size()] ^= flipWith;
        break;
    case 2: // wrong length
        ref.length ^= std::uint32_t(flipWith) << (8 * (flipAt % 4));
        break;
    }
    FUZZ_CHECK(!chunk::decode(ref, ciphertext).ok());
    // ...and with the name recomputed for the tampered ciphertext, the MAC must fail.
    if (what % 3 == 0) {
        ref.name = chunk::nameOf(ciphertext);
        FUZZ_CHECK(!chunk::decode(ref, ciphertext).ok());
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0)
        return 0;
    fuzz::FieldReader in(data + 1, size - 1);
    switch (data[0] % 3) {
    case 0:
        fuzzRaw(in);
        break;
    case 1:
        fuzzSealedBody(in);
        break;
    case 2:
        if (size - 1 <= chunk::kMaxChunkSize)
            fuzzRoundTrip(in);
        break;
    }
    return 0;
}
