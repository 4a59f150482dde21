#pragma once
// chunk: the chunk codec.
//
//   plaintext --zstd (kept only if smaller)--> body
//   key        = BLAKE2b-256(keyed by the user's convergence secret, body)
//   ciphertext = tag(1) || XChaCha20-Poly1305(key, fixed nonce, AD = "isr-chunk-v1"||tag)(body)
//   name       = BLAKE2b-256(ciphertext)
//
// tag is 0x01 (stored raw) or 0x02 (zstd). The same data under one user
// always yields the same name, so it dedups across versions and parcels; the
// store cannot confirm a guess without the user's convergence secret.
//
// Decoding verifies, in order: the name (hash of the ciphertext), the tag,
// the MAC, and the plaintext length; any failure is Errc::Corrupt with a
// message naming expected and actual values.
//
// Thread safety: stateless, all functions are thread-safe.

#include <array>
#include <cstdint>
#include <string>

#include "crypto/crypto.h"
#include "util/bytes.h"
#include "util/result.h"

namespace isr::chunk {

using ChunkName = crypto::Hash;
using ChunkKey = std::array<std::uint8_t, crypto::kKeySize>;

// Hard upper bound on a chunk's plaintext: refuses absurd lengths from a
// tampered manifest before allocating anything.
inline constexpr std::uint32_t kMaxChunkSize = 16u << 20;

struct ChunkRef {
    ChunkName name{};
    ChunkKey key{};
    std::uint32_t length = 0; // plaintext length
};

struct EncodedChunk {
    ChunkRef ref;
    Bytes ciphertext;
};

// zstd level: 1 by default, chosen for throughput (the link is the
// bottleneck only on slow networks; the CPU is on every resume).
EncodedChunk encode(ByteView convergenceSecret, ByteView plaintext, int zstdLevel = 1);
Result<Bytes> decode(const ChunkRef& ref, ByteView ciphertext);

ChunkName nameOf(ByteView ciphertext);
std::string nameHex(const ChunkName& name);
Result<ChunkName> nameFromHex(std::string_view hex);

} // namespace isr::chunk
