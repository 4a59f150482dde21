#pragma once
// store: where parcels live. Untrusted; sees only ciphertext and the clear
// layout described in core/parcel/FORMAT.md.
//
// Keys are relative paths ("users/alice/chunks/ab/ab12..."): ASCII letters,
// digits and "._-/", no empty segment, no "." or ".." segment, no leading or
// trailing "/", at most 1024 bytes. validateKey() enforces this and every
// backend calls it, so a key can never escape the store root.
//
// Every put is durable when it returns (a version can only point at chunks
// that survive a crash). putIfAbsent is the one atomic step of a commit.
//
// Thread safety: a Store is safe to call from many threads at once.

#include "util/bytes.h"
#include "util/result.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace isr::store {

struct ObjectInfo {
    std::string key;
    std::uint64_t size = 0;
    std::int64_t modified = 0; // unix seconds of the last write; gc's grace period uses it
};

struct PutItem {
    std::string key;
    Bytes data;
    bool ifAbsent = false; // put-if-absent semantics; AlreadyExists is then reported
};

// S3 answers a GET of a missing object with 403 AccessDenied, not 404, when
// the caller may not list the bucket there (a kiosk's credentials may read
// every users/*/account but list nothing): a missing object and one the
// policy hides look the same. S3Store ends such an error's message with this
// text; isDeniedOrMissing() tells it from a credential failure
// (InvalidAccessKeyId, SignatureDoesNotMatch, a skewed clock), which it is
// not. Sign-in treats it as an unknown user (parcel::signIn).
inline constexpr std::string_view kDeniedOrMissing =
    " (no such object, or no permission to read it)";
inline bool isDeniedOrMissing(const Error& e) {
    return e.code == Errc::AccessDenied && e.message.size() >= kDeniedOrMissing.size() &&
           std::string_view(e.message).substr(e.message.size() - kDeniedOrMissing.size()) ==
               kDeniedOrMissing;
}

// An object with the tag a conditional write names it by. The tag is
// opaque and compared for equality only: S3Store uses the server's ETag,
// FileStore a digest of the content. Equal tags mean equal content.
struct TaggedObject {
    Bytes data;
    std::string tag;
};

struct Credentials {
    std::string accessKey;
    std::string secretKey;
    // Zeroes the secret's buffer (to its capacity) when a copy goes: a
    // Credentials is ordinary heap, passed around by value. S3Store keeps
    // its own copy in locked memory (curl::SigningKey). Copies only: there
    // is no move, so no moved-from buffer escapes the wipe.
    ~Credentials();
};

class Store {
public:
    virtual ~Store() = default;

    // The canonical URL this store was opened from (no secrets in it).
    virtual std::string url() const = 0;

    // NotFound if missing.
    virtual Result<Bytes> get(const std::string& key) = 0;
    // Bytes [offset, offset+length) clipped to the object; NotFound if missing,
    // InvalidArgument if offset is past the end.
    virtual Result<Bytes> getRange(const std::string& key, std::uint64_t offset,
                                   std::uint64_t length) = 0;
    // Create or replace atomically: readers see the old or the new object,
    // never a mix.
    virtual Status put(const std::string& key, ByteView data) = 0;
    // Create only if absent, atomically across processes and hosts sharing
    // the store. AlreadyExists if it was there.
    virtual Status putIfAbsent(const std::string& key, ByteView data) = 0;
    // Idempotent: removing a missing object succeeds.
    virtual Status remove(const std::string& key) = 0;

    // Conditional writes: what the parcel lock is made of, so that two
    // kiosks can never both believe they hold it. Each is atomic against
    // every other conditional write and putIfAbsent on the same key, across
    // processes and hosts sharing the store (see each backend for why).
    //
    // The object and its tag; NotFound if missing.
    virtual Result<TaggedObject> getTagged(const std::string& key) = 0;
    // Replace the object only if it is there with this tag: the new tag on
    // success, Conflict if it is gone or was changed (nothing is written).
    virtual Result<std::string> putIfMatch(const std::string& key, ByteView data,
                                           const std::string& expectedTag) = 0;
    // There is no remove-if-match: Ceph 16's radosgw ignores If-Match on
    // DELETE (tried: a DELETE with a wrong tag removed the object), so a
    // conditional release is a putIfMatch of a "released" object instead.
    // Every object whose key starts with prefix, sorted by key.
    virtual Result<std::vector<ObjectInfo>> list(const std::string& prefix) = 0;
    virtual Result<bool> exists(const std::string& key) = 0;

    // Batches. The defaults run sequentially; backends with a network
    // (S3Store) run them with many transfers in flight. Results are in the
    // order of the input.
    virtual std::vector<Result<Bytes>> getMany(const std::vector<std::string>& keys);
    virtual std::vector<Status> putMany(const std::vector<PutItem>& items);
    // exists() of each key (a HEAD each on S3, many in flight).
    virtual std::vector<Result<bool>> existsMany(const std::vector<std::string>& keys);

    // Write credentials from the user's sealed account (S3: per-user keys
    // limited to the user's prefix). FileStore ignores them.
    virtual void setWriteCredentials(const Credentials& /*credentials*/) {}
};

struct StoreOptions {
    // S3 only.
    Credentials readCredentials;
    std::string region = "us-east-1";
    std::string caBundle; // empty: system default
    bool verifyTls = true;
    bool pathStyle = true; // path-style addressing (Ceph RGW, MinIO); false: virtual host
    bool useTls = false;   // s3:// is plain HTTP unless set (or s3s://)
    int maxInFlight = 16;  // parallel transfers for getMany/putMany
    int connectTimeoutMs = 10000;
    int stallTimeoutMs = 30000; // abort a transfer that moves nothing for this long
    int maxRetries = 5;
};

Status validateKey(std::string_view key);

// The one table of object size limits, by the kind of object a key names
// (core/parcel/FORMAT.md's layout): every backend refuses to read an object
// larger than this -- FileStore checks fstat before reading, S3Store aborts
// the transfer when the body passes it -- so a hostile store cannot make a
// kiosk or isrctl allocate without bound (a 128 MiB `head` once made isrctl
// use 270 MiB). The refusal is Errc::Corrupt naming the key and both sizes.
//   isr-store.json, users/<u>/account       64 KiB
//   .../head                                 4 KiB
//   .../lock                                64 KiB
//   .../versions/<n> (a sealed manifest)   512 MiB  (a 1 TiB disk at 128 KiB chunks)
//   .../refs/<n> (a reference list)        512 MiB
//   users/<u>/chunks/...                    16 MiB + 64 KiB (the chunk codec's maximum)
//   any other key                           no limit (tests, future kinds)
// For getRange the limit applies to the bytes returned.
inline constexpr std::uint64_t kMaxChunkObjectSize = (16ull << 20) + (64u << 10);
std::uint64_t maxObjectSize(std::string_view key);
// Corrupt if `size` bytes is over maxObjectSize(key).
Status checkObjectSize(std::string_view key, std::uint64_t size);
// A list() prefix: empty, or a valid key optionally followed by "/".
Status validatePrefix(std::string_view prefix);

// "file:///abs/path" (or a plain absolute path) -> FileStore;
// "s3://host[:port]/bucket[/prefix]" -> S3Store.
Result<std::unique_ptr<Store>> openStore(const std::string& url, const StoreOptions& options = {});

} // namespace isr::store
