// libsodium-backed implementation of core/crypto/crypto.h.
#include "crypto/crypto.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sodium.h>
#include <stdexcept>
#include <string>
#include <utility>

namespace isr::crypto {

namespace {

// The header fixes the Hasher's storage so that it needs no libsodium include.
static_assert(sizeof(crypto_generichash_state) <= 384,
              "Hasher::state_ too small for crypto_generichash_state");
static_assert(alignof(crypto_generichash_state) <= 64, "Hasher::state_ under-aligned");
static_assert(kKeySize == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kNonceSize == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(kMacSize == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(kSaltSize == crypto_pwhash_SALTBYTES);
static_assert(kSectorNonceSize == crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
static_assert(kHashSize >= crypto_generichash_BYTES_MIN &&
              kHashSize <= crypto_generichash_BYTES_MAX);

static_assert(kKdfFloorOps >= crypto_pwhash_OPSLIMIT_INTERACTIVE);
static_assert(kKdfFloorMem >= crypto_pwhash_MEMLIMIT_INTERACTIVE);
static_assert(kKdfCeilingOps >= crypto_pwhash_OPSLIMIT_MODERATE);
static_assert(kKdfCeilingMem >= crypto_pwhash_MEMLIMIT_MODERATE);

std::uint64_t floorOps() {
    return weakKdfAllowedForTests() ? crypto_pwhash_argon2id_OPSLIMIT_MIN : kKdfFloorOps;
}
std::uint64_t floorMem() {
    return weakKdfAllowedForTests() ? crypto_pwhash_argon2id_MEMLIMIT_MIN : kKdfFloorMem;
}

// The convergent scheme's nonce: all zero. Safe only because each key
// encrypts exactly one message (the key is derived from that message).
constexpr std::uint8_t kFixedNonce[kNonceSize] = {};

void ensureInit() {
    // sodium_init is itself thread-safe and idempotent; a failure here means
    // no entropy source, which nothing in isr can survive.
    static const int rc = sodium_init();
    if (rc < 0)
        throw std::runtime_error("libsodium initialisation failed");
}

} // namespace

Status initialize() {
    if (sodium_init() < 0)
        return Error(Errc::Internal, "sodium_init failed");
    return {};
}

// ---- Secret ----

Secret::Secret(std::size_t size) {
    ensureInit();
    if (size == 0)
        return;
    data_ = static_cast<std::uint8_t*>(sodium_malloc(size));
    if (!data_)
        throw std::bad_alloc();
    std::memset(data_, 0, size);
    size_ = size;
}

Secret Secret::random(std::size_t size) {
    Secret s(size);
    if (size)
        randombytes_buf(s.data_, size);
    return s;
}

Secret Secret::copyOf(ByteView bytes) {
    Secret s(bytes.size());
    if (!bytes.empty())
        std::memcpy(s.data_, bytes.data(), bytes.size());
    return s;
}

Secret::~Secret() {
    if (data_)
        sodium_free(data_); // wipes before unmapping
}

Secret::Secret(Secret&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Secret& Secret::operator=(Secret&& other) noexcept {
    if (this != &other) {
        if (data_)
            sodium_free(data_);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

Secret Secret::clone() const {
    return copyOf(view());
}

// ---- KDF ----

KdfParams KdfParams::moderate() {
    return {crypto_pwhash_OPSLIMIT_MODERATE, crypto_pwhash_MEMLIMIT_MODERATE,
            randomBytes(kSaltSize)};
}
KdfParams KdfParams::interactive() {
    return {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE,
            randomBytes(kSaltSize)};
}
KdfParams KdfParams::minimal() {
    return {crypto_pwhash_argon2id_OPSLIMIT_MIN, crypto_pwhash_argon2id_MEMLIMIT_MIN,
            randomBytes(kSaltSize)};
}

Status validateKdfParams(const KdfParams& params) {
    if (params.salt.size() != kSaltSize)
        return Error(Errc::InvalidArgument, "KDF salt is " + std::to_string(params.salt.size()) +
                                                " bytes, expected " + std::to_string(kSaltSize));
    if (params.opsLimit < floorOps())
        return Error(Errc::InvalidArgument, "KDF opsLimit " + std::to_string(params.opsLimit) +
                                                " below the floor " + std::to_string(floorOps()));
    if (params.memLimit < floorMem())
        return Error(Errc::InvalidArgument, "KDF memLimit " + std::to_string(params.memLimit) +
                                                " below the floor " + std::to_string(floorMem()));
    if (params.opsLimit > kKdfCeilingOps)
        return Error(Errc::InvalidArgument, "KDF opsLimit " + std::to_string(params.opsLimit) +
                                                " above the ceiling " +
                                                std::to_string(kKdfCeilingOps));
    if (params.memLimit > kKdfCeilingMem)
        return Error(Errc::InvalidArgument, "KDF memLimit " + std::to_string(params.memLimit) +
                                                " above the ceiling " +
                                                std::to_string(kKdfCeilingMem));
    return {};
}

bool weakKdfAllowedForTests() {
    const char* v = std::getenv(kInsecureTestKdfEnv);
    return v && std::string_view(v) == "1";
}

KdfParams clampKdfParams(KdfParams params, bool* adjusted) {
    const KdfParams before = params;
    params.opsLimit = std::clamp<std::uint64_t>(params.opsLimit, floorOps(), kKdfCeilingOps);
    params.memLimit = std::clamp<std::uint64_t>(params.memLimit, floorMem(), kKdfCeilingMem);
    if (adjusted)
        *adjusted = params.opsLimit != before.opsLimit || params.memLimit != before.memLimit;
    return params;
}

Result<Secret> deriveKey(std::string_view password, const KdfParams& params) {
    ensureInit();
    ISR_TRY_STATUS(validateKdfParams(params));
    Secret key(kKeySize);
    errno = 0;
    if (crypto_pwhash(key.data(), key.size(), password.data(), password.size(), params.salt.data(),
                      params.opsLimit, static_cast<size_t>(params.memLimit),
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
        // Parameters were validated, so the remaining failure is allocation.
        if (errno == ENOMEM || errno == 0)
            return Error(Errc::NoSpace, "Argon2id could not allocate " +
                                            std::to_string(params.memLimit) + " bytes");
        return Error(Errc::Internal, std::string("crypto_pwhash failed: ") + std::strerror(errno));
    }
    return key;
}

// ---- random, hashing ----

void randomFill(MutableByteView out) {
    ensureInit();
    if (!out.empty())
        randombytes_buf(out.data(), out.size());
}

Bytes randomBytes(std::size_t n) {
    Bytes b(n);
    randomFill(b);
    return b;
}

Hash hash(ByteView data) {
    return keyedHash({}, data);
}

Sha256 sha256(ByteView data) {
    ensureInit();
    Sha256 digest;
    static_assert(kSha256Size == crypto_hash_sha256_BYTES);
    crypto_hash_sha256(digest.data(), data.data(), data.size());
    return digest;
}

Hash keyedHash(ByteView key, ByteView data) {
    Hasher h(key);
    h.update(data);
    return h.finish();
}

Hasher::Hasher(ByteView key) {
    ensureInit();
    // libsodium accepts keys of 16..64 bytes (or none); a key outside that
    // range is a programming error, not a runtime condition.
    if (!key.empty() && (key.size() < crypto_generichash_KEYBYTES_MIN ||
                         key.size() > crypto_generichash_KEYBYTES_MAX))
        throw std::invalid_argument("BLAKE2b key must be 16..64 bytes");
    auto* st = reinterpret_cast<crypto_generichash_state*>(state_);
    crypto_generichash_init(st, key.empty() ? nullptr : key.data(), key.size(), kHashSize);
}

void Hasher::update(ByteView data) {
    auto* st = reinterpret_cast<crypto_generichash_state*>(state_);
    crypto_generichash_update(st, data.data(), data.size());
}

Hash Hasher::finish() {
    Hash out{};
    auto* st = reinterpret_cast<crypto_generichash_state*>(state_);
    crypto_generichash_final(st, out.data(), out.size());
    sodium_memzero(state_, sizeof state_);
    return out;
}

// ---- AEAD ----

Bytes seal(const Secret& key, ByteView plaintext, ByteView associatedData) {
    ensureInit();
    if (key.size() != kKeySize)
        throw std::invalid_argument("seal: key must be 32 bytes");
    Bytes out(kNonceSize + plaintext.size() + kMacSize);
    randombytes_buf(out.data(), kNonceSize);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        out.data() + kNonceSize, &clen, plaintext.data(), plaintext.size(), associatedData.data(),
        associatedData.size(), nullptr, out.data(), key.data());
    out.resize(kNonceSize + clen);
    return out;
}

Result<Bytes> open(const Secret& key, ByteView sealed, ByteView associatedData) {
    ensureInit();
    if (key.size() != kKeySize)
        return Error(Errc::InvalidArgument, "open: key must be 32 bytes");
    if (sealed.size() < kNonceSize + kMacSize)
        return Error(Errc::Corrupt, "sealed object is " + std::to_string(sealed.size()) +
                                        " bytes, shorter than nonce+MAC");
    Bytes out(sealed.size() - kNonceSize - kMacSize);
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            out.data(), &mlen, nullptr, sealed.data() + kNonceSize, sealed.size() - kNonceSize,
            associatedData.data(), associatedData.size(), sealed.data(), key.data()) != 0)
        return Error(Errc::Corrupt, "MAC verification failed (wrong key, tampering or wrong AD)");
    out.resize(mlen);
    return out;
}

void encryptDetached(const Secret& key, const std::uint8_t* nonce, ByteView plaintext,
                     std::uint8_t* out, std::uint8_t* mac) {
    ensureInit();
    if (key.size() != kKeySize)
        throw std::invalid_argument("encryptDetached: key must be 32 bytes");
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, mac, nullptr, plaintext.data(),
                                                       plaintext.size(), nullptr, 0, nullptr, nonce,
                                                       key.data());
}

bool decryptDetached(const Secret& key, const std::uint8_t* nonce, ByteView ciphertext,
                     const std::uint8_t* mac, std::uint8_t* out) {
    ensureInit();
    if (key.size() != kKeySize)
        return false;
    return crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, nullptr, ciphertext.data(),
                                                              ciphertext.size(), mac, nullptr, 0,
                                                              nonce, key.data()) == 0;
}

Bytes encryptConvergent(ByteView key, ByteView plaintext, ByteView associatedData) {
    ensureInit();
    if (key.size() != kKeySize)
        throw std::invalid_argument("encryptConvergent: key must be 32 bytes");
    Bytes out(plaintext.size() + kMacSize);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        out.data(), &clen, plaintext.data(), plaintext.size(), associatedData.data(),
        associatedData.size(), nullptr, kFixedNonce, key.data());
    out.resize(clen);
    return out;
}

Result<Bytes> decryptConvergent(ByteView key, ByteView ciphertext, ByteView associatedData) {
    ensureInit();
    if (key.size() != kKeySize)
        return Error(Errc::InvalidArgument, "decryptConvergent: key must be 32 bytes");
    if (ciphertext.size() < kMacSize)
        return Error(Errc::Corrupt, "ciphertext is " + std::to_string(ciphertext.size()) +
                                        " bytes, shorter than the MAC");
    Bytes out(ciphertext.size() - kMacSize);
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            out.data(), &mlen, nullptr, ciphertext.data(), ciphertext.size(), associatedData.data(),
            associatedData.size(), kFixedNonce, key.data()) != 0)
        return Error(Errc::Corrupt, "MAC verification failed (wrong key, tampering or wrong AD)");
    out.resize(mlen);
    return out;
}

bool equalConstantTime(ByteView a, ByteView b) {
    ensureInit();
    if (a.size() != b.size())
        return false;
    if (a.empty())
        return true;
    return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void wipe(MutableByteView bytes) {
    if (!bytes.empty())
        sodium_memzero(bytes.data(), bytes.size());
}

void wipe(Bytes& bytes) {
    // Up to the capacity: bytes a shrink (clear, erase) left behind hold
    // plaintext too. resize() within the capacity never reallocates.
    bytes.resize(bytes.capacity());
    wipe(MutableByteView(bytes));
    bytes.clear();
}

} // namespace isr::crypto
