#pragma once
// crypto: every cryptographic primitive isr uses, on libsodium.
//
//  - Argon2id password KDF (crypto_pwhash) with per-account parameters,
//  - XChaCha20-Poly1305 AEAD (random-nonce "seal" and fixed-nonce for
//    convergent chunks only),
//  - BLAKE2b-256 hashing, keyed and unkeyed, one-shot and incremental,
//  - SHA-256, only because S3's SigV4 signs the payload's SHA-256,
//  - secure random,
//  - Secret: key material in sodium_malloc'ed (guarded, mlocked) memory that
//    is wiped on destruction.
//
// Thread safety: all free functions are thread-safe after initialize().
// A Secret is not synchronised; share it read-only or copy it.

#include "util/bytes.h"
#include "util/result.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace isr::crypto {

inline constexpr std::size_t kKeySize = 32;   // XChaCha20-Poly1305 and BLAKE2b keys
inline constexpr std::size_t kHashSize = 32;  // BLAKE2b-256
inline constexpr std::size_t kSaltSize = 16;  // crypto_pwhash_SALTBYTES
inline constexpr std::size_t kNonceSize = 24; // XChaCha20
inline constexpr std::size_t kMacSize = 16;   // Poly1305

// Calls sodium_init once; safe to call from many threads. Every other
// function calls it too, so calling it explicitly only surfaces the error early.
Status initialize();

using Hash = std::array<std::uint8_t, kHashSize>;

// Key material. Move-only; memory comes from sodium_malloc (guard pages,
// mlock) and is zeroed by sodium_free.
class Secret {
public:
    Secret() = default;
    explicit Secret(std::size_t size); // zero-filled
    static Secret random(std::size_t size);
    static Secret copyOf(ByteView bytes);
    ~Secret();
    Secret(Secret&& other) noexcept;
    Secret& operator=(Secret&& other) noexcept;
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;

    Secret clone() const;
    std::uint8_t* data() { return data_; }
    const std::uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    ByteView view() const { return {data_, size_}; }

private:
    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

// Argon2id parameters, stored in clear next to each account.
struct KdfParams {
    std::uint64_t opsLimit = 0;
    std::uint64_t memLimit = 0; // bytes
    Bytes salt;                 // kSaltSize random bytes

    // libsodium's MODERATE limits (3 passes, 256 MiB): the default for
    // accounts, whose blobs an attacker may copy off the store.
    static KdfParams moderate();
    // INTERACTIVE limits (2 passes, 64 MiB).
    static KdfParams interactive();
    // The minimum libsodium accepts; only for tests, never for real accounts.
    static KdfParams minimal();
};

// Refuses parameters below libsodium's minimums or absurdly high (a tampered
// account asking for 1 TiB of memory): InvalidArgument/Corrupt.
Status validateKdfParams(const KdfParams& params);

// Argon2id(password, salt) -> 32-byte key. NoSpace if the memory limit cannot
// be allocated.
Result<Secret> deriveKey(std::string_view password, const KdfParams& params);

void randomFill(MutableByteView out);
Bytes randomBytes(std::size_t n);

Hash hash(ByteView data);
Hash keyedHash(ByteView key, ByteView data);

// SHA-256. Not for isr's own names or checksums (those are BLAKE2b): S3's
// SigV4 signs the request payload's SHA-256 (x-amz-content-sha256), so the
// store needs it.
inline constexpr std::size_t kSha256Size = 32;
using Sha256 = std::array<std::uint8_t, kSha256Size>;
Sha256 sha256(ByteView data);

// Incremental BLAKE2b-256 (optionally keyed).
class Hasher {
public:
    explicit Hasher(ByteView key = {});
    void update(ByteView data);
    Hash finish();

private:
    alignas(64) std::uint8_t state_[384];
};

// Random-nonce AEAD for small objects (accounts, manifests, overlay blocks).
// Output: nonce(24) || ciphertext || mac(16).
Bytes seal(const Secret& key, ByteView plaintext, ByteView associatedData);
// Corrupt if the MAC does not verify (wrong key, tampering, wrong AD,
// truncation).
Result<Bytes> open(const Secret& key, ByteView sealed, ByteView associatedData);

// Fixed-nonce AEAD. ONLY for convergent encryption, where each key is derived
// from the plaintext it encrypts and therefore never encrypts two different
// messages. Output: ciphertext || mac(16).
Bytes encryptConvergent(ByteView key, ByteView plaintext, ByteView associatedData);
Result<Bytes> decryptConvergent(ByteView key, ByteView ciphertext, ByteView associatedData);

bool equalConstantTime(ByteView a, ByteView b);

// Zeroes memory that held secrets (a decrypted blob, a hex key) in a way the
// compiler may not optimise away, unlike a memset before a free.
void wipe(MutableByteView bytes);

} // namespace isr::crypto
