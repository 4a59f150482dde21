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
    // The minimum libsodium accepts; only for tests, never for real accounts:
    // below the policy floor, so refused unless weakKdfAllowedForTests().
    static KdfParams minimal();
};

// The built-in KDF policy. No store object (isr-store.json, an account) can
// move these; they are compiled in.
//  - Floor: libsodium's INTERACTIVE limits (2 passes, 64 MiB). Below that an
//    account copied off the store is cheap to guess offline.
//  - Ceiling: 10 passes, 1 GiB. A kiosk signs in with at most this much work
//    (SENSITIVE, 4 x 1 GiB, still fits; 10 x 1 GiB is about 10-20 s on a
//    kiosk-class CPU, the most a person at a sign-in screen should wait). A
//    hostile account asking for 64 passes x 4 GiB is refused before any work.
inline constexpr std::uint64_t kKdfFloorOps = 2;
inline constexpr std::uint64_t kKdfFloorMem = 64ull << 20;
inline constexpr std::uint64_t kKdfCeilingOps = 10;
inline constexpr std::uint64_t kKdfCeilingMem = 1ull << 30;

// The one way to go below the floor: the environment variable
// ISR_INSECURE_TEST_KDF=1 (the test suite sets it for every test so that
// its accounts made with KdfParams::minimal() stay fast). Not a kiosk.conf
// key and not an isrctl flag, so a kiosk configuration cannot set it. Read
// on every call (tests toggle it).
inline constexpr const char* kInsecureTestKdfEnv = "ISR_INSECURE_TEST_KDF";
bool weakKdfAllowedForTests();

// Refuses a salt that is not 16 bytes, parameters below the floor (below
// libsodium's minimums when weakKdfAllowedForTests()) and above the ceiling
// (a tampered account asking for 4 GiB or 1 TiB): InvalidArgument.
Status validateKdfParams(const KdfParams& params);

// For new accounts and password changes: the limits raised to the floor
// and lowered to the ceiling (the salt is kept). `adjusted` says whether
// anything moved, so the caller can say so.
KdfParams clampKdfParams(KdfParams params, bool* adjusted = nullptr);

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

// Deterministic-nonce AEAD with a detached tag, ChaCha20-Poly1305 (IETF,
// 96-bit nonce), in place allowed (out == in). ONLY for callers where one
// (key, nonce) pair only ever encrypts one plaintext: the disk's sector form
// (disk/sector_cache.h), whose nonce is (chunk index, sector) of a base chunk
// that does not change while its key lives.
inline constexpr std::size_t kSectorNonceSize = 12;
void encryptDetached(const Secret& key, const std::uint8_t* nonce, ByteView plaintext,
                     std::uint8_t* out, std::uint8_t* mac);
// False (out unspecified) if the MAC does not verify.
[[nodiscard]] bool decryptDetached(const Secret& key, const std::uint8_t* nonce,
                                   ByteView ciphertext, const std::uint8_t* mac, std::uint8_t* out);

bool equalConstantTime(ByteView a, ByteView b);

// Zeroes memory that held secrets (a decrypted blob, a hex key) in a way the
// compiler may not optimise away, unlike a memset before a free.
void wipe(MutableByteView bytes);
// Zeroes a buffer that held plaintext, to its capacity (what an earlier
// shrink left behind too), then empties it; the allocation stays until the
// vector goes, holding zeroes.
void wipe(Bytes& bytes);
// Owns a buffer of plaintext and wipes it when it goes (every return path).
class WipeOnExit {
public:
    explicit WipeOnExit(Bytes& bytes) : bytes_(bytes) {}
    ~WipeOnExit() { wipe(bytes_); }
    WipeOnExit(const WipeOnExit&) = delete;
    WipeOnExit& operator=(const WipeOnExit&) = delete;

private:
    Bytes& bytes_;
};

} // namespace isr::crypto
