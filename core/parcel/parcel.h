#pragma once
// parcel: accounts, parcels, versions, manifests (the keyring), locks,
// commit, rollback, import/export, garbage collection and fsck — everything
// a parcel is and how it moves between a kiosk and the store. The exact
// on-store format is in FORMAT.md next to this header.
//
// Invariants:
//  - versions/<n> is created only with put-if-absent, after every chunk it
//    references is durable in the store. Only key rotation (the same
//    plaintext re-sealed) and rekey (rekey.h: the same content under new
//    chunks) replace it, with put-if-match on the tag they read.
//  - Every object read from the store is verified (MAC, name, bounds) before
//    use; a failure is Errc::Corrupt naming the object.
//  - Names are validated before any store access (validateName).
//
// Thread safety: Parcels may be used from several threads at once; it holds
// no mutable state beyond the Store (which is thread-safe) and the secrets
// (read-only after sign-in).

#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/json.h"
#include "util/result.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace isr::parcel {

inline constexpr int kFormatVersion = 1;
// A manifest whose guest RAM is a chunk table (lazy memory, FORMAT.md
// "Manifest"). Manifests without one keep format 1, so kiosks that predate
// lazy memory go on reading them; they refuse format 2 as Unsupported.
inline constexpr int kManifestFormatLazyMemory = 2;
// Format 2 whose RAM chunks are not the disk's size ("ram_chunk_size" in the
// header). Kiosks that only know format 2 refuse it as Unsupported rather
// than misreading its RAM table as corrupt.
inline constexpr int kManifestFormatRamChunkSize = 3;
inline constexpr std::uint32_t kDefaultChunkSize = 128 * 1024;
// The RAM table's chunk size for RAM a kiosk starts a table for (a boot or
// a whole image turning lazy); a table keeps the size it was started with.
// Smaller than the disk's: a session dirties a few scattered pages in many
// RAM chunks, and each changed chunk goes up whole (tests/bench/README.md,
// "RAM chunk size").
inline constexpr std::uint32_t kDefaultRamChunkSize = 32 * 1024;

// ---- names and keys -------------------------------------------------------

// `what` names the thing in the error ("user name", "parcel name").
Status validateName(std::string_view what, std::string_view name);

std::string accountKey(const std::string& user);
std::string parcelPrefix(const std::string& user, const std::string& parcel);
std::string versionKey(const std::string& user, const std::string& parcel, std::uint64_t n);
std::string headKey(const std::string& user, const std::string& parcel);
std::string lockKey(const std::string& user, const std::string& parcel);
// The clear reference list of version n (FORMAT.md, "Reference list").
std::string refsKey(const std::string& user, const std::string& parcel, std::uint64_t n);
std::string chunkPrefix(const std::string& user);
std::string chunkKey(const std::string& user, const chunk::ChunkName& name);
// A version number as it ends a key ("42" of versions/42): decimal digits
// only, at least 1; anything else is not a version.
std::optional<std::uint64_t> parseVersionNumber(std::string_view text);

// ---- the store as a whole ---------------------------------------------------

// Creates isr-store.json (put-if-absent: AlreadyExists on an existing store).
// defaultKdf's limits (not its salt) become the store's default for new
// accounts and for the decoy work done for unknown users.
Status initStore(store::Store& store, const crypto::KdfParams& defaultKdf);
// The store's default KDF limits with a fresh random salt.
Result<crypto::KdfParams> storeDefaultKdf(store::Store& store);
// NotFound with a hint if the location is not an isr store; Unsupported if
// its format is newer than this code.
Status checkStore(store::Store& store);

// ---- accounts ---------------------------------------------------------------

struct UserSecrets {
    std::string user;
    crypto::Secret master;      // seals manifests
    crypto::Secret convergence; // keys the chunk codec and the CDC gear table
    store::Credentials s3;      // the user's own write credentials (S3 stores)
    // While a key rotation is unfinished (FORMAT.md, "Key rotation"): the
    // masters some versions may still be sealed under, newest first.
    // Readers try `master` first, then these; writers seal only under
    // `master`. Empty once every version is re-sealed.
    std::vector<crypto::Secret> previousMasters;
    // While a convergence-secret rotation (`isrctl user rekey`, rekey.h) is
    // unfinished: the secret it replaces. Nothing reads chunks with it (a
    // chunk's key is in the manifest that references it); it marks the
    // rotation as unfinished and is dropped when every version is rekeyed.
    std::optional<crypto::Secret> previousConvergence;
};

// A clear, non-secret name of a master key: 16 bytes of BLAKE2b keyed with
// the key itself over a fixed label, as hex. The account carries the names
// of its masters in clear so that a kiosk can tell, without the password,
// that the user's keys were rotated after it signed in (Parcels::lock,
// Parcels::commit).
std::string masterId(const crypto::Secret& master);

// The account's KDF uses the store's default limits (storeDefaultKdf).
Status createAccount(store::Store& store, const std::string& user, std::string_view password,
                     const store::Credentials& s3 = {});
// AuthFailed for both an unknown user and a wrong password, after the same
// Argon2id work. Corrupt if the account object fails verification in a way
// a wrong password cannot explain (bad JSON, bad parameters).
Result<UserSecrets> signIn(store::Store& store, const std::string& user, std::string_view password);
// The clear-text fields of an account object (users/<u>/account); the
// secrets stay sealed. Pure: no store, no key derivation, so it can be fuzzed.
struct AccountObject {
    std::string user;
    crypto::KdfParams kdf;
    Bytes sealed; // the secrets, sealed under the password-derived key
    // masterId() of the sealed master; empty in accounts written before key
    // rotation existed (nothing to compare then: those never rotated).
    std::string masterId;
    // masterId() of the sealed previous masters (an unfinished rotation).
    // Non-empty makes the object format 2, which older isr refuses
    // ("account format 2") instead of failing on manifests it cannot open.
    std::vector<std::string> previousMasterIds;
};
// Corrupt on bad JSON, a checksum mismatch, a missing or ill-typed field or
// KDF parameters validateKdfParams refuses; Unsupported on another format.
Result<AccountObject> parseAccountObject(ByteView text);
// The object's text as written to the store (with its checksum).
std::string encodeAccountObject(const AccountObject& account);

// changePassword() and finishKeyRotation() are declared after Parcels.

// ---- VM spec and manifests --------------------------------------------------

struct VmSpec {
    std::uint32_t memoryMiB = 1024;
    std::uint32_t vcpus = 1;
    std::string machine = "pc-q35-7.2";
    std::string cpu = "qemu64";
    std::string boot = "firmware"; // boot profile the kiosk provides: "firmware" | "demo-guest"
    // boot "firmware" only (demo-guest keeps its fixed hardware):
    std::string firmware = "bios"; // "bios" (SeaBIOS) | "uefi" (OVMF) | "uefi-secure" (OVMF + SB)
    bool tpm = false;              // an emulated TPM 2.0 (swtpm) whose state travels sealed
    // QEMU's VM generation ID device (vm::VmSpec::genid, issue #16): the
    // guest reseeds its RNG at each resume instead of repeating the saved
    // state. Any boot profile. Hardware of the saved image, so it travels
    // with it: the session sets it when it boots the VM, a restore keeps
    // what the image was saved with. JSON "genid", written only when true
    // (FORMAT.md: a kiosk older than the key refuses such a manifest).
    bool genid = false;

    bool uefi() const { return firmware == "uefi" || firmware == "uefi-secure"; }

    // Refuses anything outside the documented bounds and allow-lists.
    Status validate() const;
    json::Value toJson() const;
    // Unknown keys are refused (a spec must not smuggle in devices or paths).
    static Result<VmSpec> fromJson(const json::Value& value);
};

struct Manifest {
    std::uint64_t version = 0;
    std::uint64_t parent = 0; // 0: none
    // BLAKE2b-256 of version `parent`'s manifest plaintext (FORMAT.md,
    // "Chain"): what this version was made from. nullopt in version 1 and in
    // manifests written before the chain existed. commit() sets it.
    std::optional<crypto::Hash> parentDigest;
    std::int64_t created = 0; // when it was saved, Unix seconds
    std::string kiosk;        // where: the saving kiosk's configured kiosk_id
    std::uint64_t diskSize = 0;
    std::uint32_t chunkSize = kDefaultChunkSize;
    // The RAM table's chunk size (lazy memory only; FORMAT.md): 0 = the
    // disk's (format 2), else its own (format 3). Read it as ramChunk().
    std::uint32_t ramChunkSize = 0;
    VmSpec vm;
    std::vector<std::optional<chunk::ChunkRef>> disk; // nullopt: all-zero chunk
    std::vector<chunk::ChunkRef> memory;              // memory image recipe, in order
    std::vector<std::uint64_t> workingSet;            // disk chunks the last session touched
    // Lazy memory (format 2): the guest's RAM as fixed-size chunks, like the
    // disk (nullopt: all zeroes), fetched on demand when the VM touches them;
    // `memory` is then only QEMU's device state (a migration stream without
    // guest RAM). Empty: `memory` is a whole save image (or none: boot).
    std::vector<std::optional<chunk::ChunkRef>> ram;
    // RAM chunks the last session touched first after its resume, in the
    // order it touched them (distinct): the next resume fetches them first.
    std::vector<std::uint64_t> ramHotSet;
    // Firmware state that travels with the parcel, each one sealed chunk
    // (FORMAT.md): the UEFI variable store, and swtpm's state directory
    // packed as an archive. nullopt: none yet (a new parcel gets the
    // firmware's template; the TPM manufactures itself at first boot).
    std::optional<chunk::ChunkRef> nvram;
    std::optional<chunk::ChunkRef> tpmState;
    // Not encoded: BLAKE2b-256 of the plaintext this manifest was decoded
    // from (decodeManifest) or committed as (commit). Its child's
    // parentDigest; what a kiosk remembers of a version it has seen.
    std::optional<crypto::Hash> digest;
    // Written only by `rekey` (rekey.h; FORMAT.md, "Key rotation --
    // convergence secret"): the digest of the plaintext this version had
    // before rekey rewrote it, and the convergenceId() of the secret every
    // chunk it references is now encrypted under. A child still binding the
    // old plaintext (rekey interrupted between the two) verifies against
    // rekeyedFrom (verifyChain). commit() clears both: a new version is not
    // a rekey's output.
    std::optional<crypto::Hash> rekeyedFrom;
    std::string rekeyedUnder;

    std::uint64_t chunkCount() const { return (diskSize + chunkSize - 1) / chunkSize; }
    std::uint64_t ramSize() const { return std::uint64_t(vm.memoryMiB) << 20; }
    // The RAM table's length for this VM: ceil(memory / ram chunk size).
    std::uint32_t ramChunk() const { return ramChunkSize ? ramChunkSize : chunkSize; }
    std::uint64_t ramChunkCount() const { return (ramSize() + ramChunk() - 1) / ramChunk(); }
    bool lazyMemory() const { return !ram.empty(); }
    // Forgets the saved VM (memory image, RAM table, hot set): the next
    // resume boots. For edits that make the saved memory stale (the disk
    // changed under it, a new VM spec).
    void dropSavedMemory() {
        memory.clear();
        ram.clear();
        ramChunkSize = 0;
        ramHotSet.clear();
    }
};

Bytes encodeManifest(const Manifest& manifest);
// Strict: Corrupt on any inconsistency, before allocating for claimed counts.
Result<Manifest> decodeManifest(ByteView plaintext);
std::string manifestAssociatedData(const std::string& user, const std::string& parcel,
                                   std::uint64_t n);

// Every chunk a manifest references -- disk and lazy RAM (not the all-zero
// ones), memory image, nvram, tpm_state -- once each, sorted by name. The one answer to
// "what does this version need": gc, fsck and the reference list use it.
std::vector<chunk::ChunkRef> referencedChunks(const Manifest& manifest);

// ---- reference lists (FORMAT.md, "Reference list") ---------------------------
// refs/<n>: in clear, the names of the chunks version n references, so that
// an operator without the user's password can collect garbage (gc --all).
// Written by Parcels::commit after versions/<n>, backfilled by gc --user.

struct ReferenceList {
    std::uint64_t version = 0;
    std::int64_t created = 0;             // the manifest's `created` (Unix seconds)
    std::uint64_t sealedLength = 0;       // bytes of the sealed versions/<n> it describes
    std::vector<chunk::ChunkName> chunks; // strictly increasing
    bool operator==(const ReferenceList&) const = default;
};
// The list describing `manifest` sealed into `sealedLength` bytes.
ReferenceList referenceListOf(const Manifest& manifest, std::uint64_t sealedLength);
Bytes encodeReferenceList(const ReferenceList& list);
// Strict: Corrupt on a bad magic or checksum, a truncated or padded object,
// names out of order; Unsupported on another format. Pure (fuzzable).
Result<ReferenceList> decodeReferenceList(ByteView data);

// ---- locks ------------------------------------------------------------------

struct LockInfo {
    // The holder's kiosk id: in clear in a format 1 lock; sealed under the
    // user's master in format 2 (FORMAT.md "Lock"), so "" when read without
    // the user's keys (isrctl's operator commands) or with other keys.
    std::string kiosk;
    std::string session; // random per checkout: the opaque holder token the store sees
    std::int64_t since = 0;
    std::int64_t heartbeat = 0;
    // The store's tag of the lock object as last read or written (not part
    // of the JSON): every change to the lock is a putIfMatch on it, so two
    // kiosks can never both believe they hold the lock.
    std::string tag;

    // A holder that has not refreshed its heartbeat for this long has most
    // likely crashed; the UI offers take-over more prominently then.
    static constexpr std::int64_t kStaleAfterSeconds = 300;
    bool stale(std::int64_t now) const { return now - heartbeat > kStaleAfterSeconds; }
    // The kiosk id when known, else "holder <first 12 hex of session>".
    std::string holderLabel() const;
};

struct LockAttempt {
    bool acquired = false;
    LockInfo lock; // ours if acquired, else the current holder's
};

// ---- progress -----------------------------------------------------------------

// Called with a short stage name ("upload", "encode", "verify"...), units
// done and total (bytes or chunks, as the stage says).
using ProgressFn =
    std::function<void(std::string_view stage, std::uint64_t done, std::uint64_t total)>;

// ---- a signed-in user's parcels ------------------------------------------------

class Parcels {
public:
    Parcels(store::Store& store, UserSecrets secrets);

    store::Store& store() { return store_; }
    const UserSecrets& secrets() const { return secrets_; }
    const std::string& user() const { return secrets_.user; }

    Result<std::vector<std::string>> list();
    // Sorted ascending; empty if the parcel has no versions (NotFound).
    Result<std::vector<std::uint64_t>> versions(const std::string& parcel);
    // head hint, then probing n+1, n+2... NotFound if the parcel does not exist.
    Result<std::uint64_t> latest(const std::string& parcel);
    Result<Manifest> manifest(const std::string& parcel, std::uint64_t n);

    // One version of a parcel's chain as a reader saw it.
    struct ChainLink {
        std::uint64_t version = 0;
        crypto::Hash digest{};
        // The plaintext this version replaced, if rekey rewrote it
        // (Manifest::rekeyedFrom): a kiosk that recorded that digest saw
        // this same version before the rekey, not a fork.
        std::optional<crypto::Hash> rekeyedFrom;
    };
    // Checks that `top` (a manifest of this parcel, read with its digest)
    // and its ancestors bind each other: walks parent by parent, reading
    // each parent from the store (one GET each) and comparing its digest
    // with the parentDigest its child carries, down to version `downTo`
    // (included) or until `maxReads` parents were read. It stops early, with
    // no error, at a parent the store no longer has (pruned by gc) or that
    // fails verification (logged), and at a manifest written before the
    // chain existed (no parentDigest). Returns
    // the links it confirmed, `top` first. Corrupt ("forked") if a parent in
    // the store is not the one its child was made from.
    Result<std::vector<ChainLink>> verifyChain(const std::string& parcel, const Manifest& top,
                                               std::uint64_t downTo, unsigned maxReads);

    // Version 1 of a new parcel: an all-zero disk, no memory image (first
    // resume boots). AlreadyExists if the parcel exists.
    Result<Manifest> create(const std::string& parcel, const VmSpec& vm, std::uint64_t diskSize,
                            std::uint32_t chunkSize, const std::string& kiosk);

    struct UploadStats {
        std::uint64_t chunks = 0; // uploaded because the store lacked them
        std::uint64_t bytes = 0;  // their ciphertext bytes
    };
    struct UploadOptions {
        // Chunks the caller knows the store holds (a committed version
        // names them): skipped without a request.
        const std::set<chunk::ChunkName>* knownPresent = nullptr;
        // true: ask the store which chunks it lacks first, a HEAD a chunk
        // (many in flight, a batch at a time: Store::existsMany) -- right
        // when many may be there (a re-import, a trickled chunk, a RAM or
        // disk chunk another version has). false: send every chunk not known present with
        // put-if-absent straight away -- right when most are new (a fresh
        // memory image), where asking would double the round trips.
        bool askStore = true;
        // false: send every chunk, repeats included, overwriting what the
        // store has. Only the walk-up benchmark's policy-2 anchor (the
        // whole memory image re-uploaded, as OpenISR did) wants this.
        bool dedup = true;
    };
    // Uploads the chunks the store lacks (content addressing makes repeats
    // harmless), in parallel where the store can. Stats count the chunks
    // and ciphertext bytes actually sent.
    Result<UploadStats> uploadChunks(const std::vector<chunk::EncodedChunk>& chunks,
                                     const ProgressFn& progress = {});
    Result<UploadStats> uploadChunks(const std::vector<chunk::EncodedChunk>& chunks,
                                     const UploadOptions& options, const ProgressFn& progress = {});
    // The commit protocol: upload newChunks, then put-if-absent
    // versions/<parent+1>, then head. Sets manifest.version and .digest.
    // Conflict if another writer created that version first (nothing is
    // damaged).
    //
    // Binds the parent (manifest.parentDigest): when `manifest` is a copy of
    // version `parent`'s manifest as read (its version still equals parent,
    // its digest set: the session, `disk serve`), that digest -- the
    // version the caller's work started from; otherwise (rollback, import)
    // the store's versions/<parent> is read for it.
    Result<std::uint64_t> commit(const std::string& parcel, Manifest& manifest,
                                 const std::vector<chunk::EncodedChunk>& newChunks,
                                 const ProgressFn& progress = {});
    // A new version equal to version n (its parent is the current latest).
    Result<std::uint64_t> rollback(const std::string& parcel, std::uint64_t n,
                                   const std::string& kiosk);

    Result<Bytes> fetchChunk(const chunk::ChunkName& name);
    Result<Bytes> readChunk(const chunk::ChunkRef& ref); // fetch + decode + verify

    // Every write of the lock is conditional (put-if-absent, or put-if-match
    // on the tag just read), so of any number of kiosks racing for it exactly
    // one holds it. A released lock is a "released" object, not a deleted
    // one (the S3 stores ignore If-Match on DELETE): readLock() reads it as
    // no lock.
    //
    // Takes a free (absent or released) lock; with takeOver, also replaces
    // the holder's. Not acquired (lock = the holder) if another kiosk holds
    // it or won a race for it.
    Result<LockAttempt> lock(const std::string& parcel, const std::string& kiosk, bool takeOver);
    Result<std::optional<LockInfo>> readLock(const std::string& parcel);
    // Refreshes our heartbeat (mine.tag and heartbeat updated); Locked if
    // someone took the parcel over (or released it) since.
    Status heartbeat(const std::string& parcel, LockInfo& mine);
    // Locked unless the lock is still ours exactly as last written (a
    // conditional write of the same lock with a fresh heartbeat): the check
    // a commit makes just before it writes.
    Status confirmLock(const std::string& parcel, LockInfo& mine);
    // Releases the lock if it is still ours (no-op if another kiosk holds
    // it or it is free).
    Status unlock(const std::string& parcel, const LockInfo& mine);

    // The version object's plaintext, opened with `master` or, failing
    // that, each previous master (an unfinished key rotation). usedPrevious
    // (optional) says which. Corrupt if no key opens it.
    Result<Bytes> openVersion(const std::string& parcel, std::uint64_t n, ByteView sealed,
                              bool* usedPrevious = nullptr) const;
    Bytes seal(const std::string& parcel, std::uint64_t n, const Manifest& m) const;
    Bytes sealPlaintext(const std::string& parcel, std::uint64_t n, ByteView plaintext) const;

    // The account's clear master names against ours: AuthFailed ("sign in
    // again") if the account's master is another one than the one we
    // signed in with -- with allowPrevious, unless ours is one of its
    // previous masters. An account without names (written before key
    // rotation existed) or that is missing passes.
    Status checkKeysCurrent(bool allowPrevious);

private:
    store::Store& store_;
    UserSecrets secrets_;
    std::string masterId_;
};

// ---- password change and key rotation ----------------------------------------
// (FORMAT.md, "Key rotation"; decisions in key_rotation.cpp)

struct PasswordChangeOptions {
    // Replaces the user's S3 write credentials sealed in the account (the
    // operator made the new RGW key first; revokes the old one after).
    std::optional<store::Credentials> s3;
};

struct RotationReport {
    std::uint64_t parcels = 0;            // parcels whose every version is under the new master
    std::uint64_t versionsResealed = 0;   // re-sealed by this run
    std::uint64_t versionsAlreadyNew = 0; // found under the new master already
    // Parcels left as they were because a session holds their lock: the
    // kiosk signed in before the change and commits under the master it
    // has. finishKeyRotation() later.
    std::vector<std::pair<std::string, LockInfo>> locked;
    // Versions no known master opens (damaged): not touched; fsck --user.
    std::vector<std::string> unreadable;
    bool finished = false; // every version re-sealed; the previous masters are gone
};

// Signs in with oldPassword, then seals the account under newPassword
// (fresh salt, the store's default limits) with a fresh random master key,
// the old one kept as a previous master, in one conditional write on the
// account's tag (Conflict if it changed since it was read: another
// password change; nothing written). Then re-seals every version of every
// parcel under the new master (finishing as finishKeyRotation does). The
// convergence secret, and so every chunk, stays. A kill at any point leaves
// everything readable with the new password; finishKeyRotation completes it.
Result<RotationReport> changePassword(store::Store& store, const std::string& user,
                                      std::string_view oldPassword, std::string_view newPassword,
                                      const PasswordChangeOptions& options = {},
                                      const ProgressFn& progress = {});
// Re-seals what an unfinished rotation left (interrupted, or parcels that
// were locked) and, when every version of every parcel is under the current
// master, rewrites the account without the previous masters. finished and
// nothing else set if there was nothing to do.
Result<RotationReport> finishKeyRotation(store::Store& store, const std::string& user,
                                         std::string_view password,
                                         const ProgressFn& progress = {});

// ---- images --------------------------------------------------------------------

struct ImportOptions {
    VmSpec vm; // used when the parcel is created
    std::uint32_t chunkSize = kDefaultChunkSize;
    std::string kiosk = "isrctl";
    std::string scratchDir; // for qemu-img conversion of non-raw images; default $TMPDIR
};

struct ImportStats {
    std::uint64_t version = 0;
    std::uint64_t chunks = 0; // total disk chunks
    std::uint64_t zeroChunks = 0;
    std::uint64_t newChunks = 0; // uploaded (the store lacked them)
    std::uint64_t newBytes = 0;  // ciphertext bytes uploaded
};

// What inspectImportImage found: the format (only "raw" or "qcow2") and the
// size of the disk the image holds.
struct ImportImageInfo {
    std::string format;
    std::uint64_t virtualSize = 0;
};

// The one gate for disk images a user hands an administrator (parcel import,
// parcel create --from-image). A hostile qcow2 or VMDK can name other files
// of the admin's host -- a backing file, an external data file, an extent --
// that qemu-img would read into the parcel. So:
//  - the format is decided here from the file's own first bytes, never by
//    qemu-img's probing: a qcow2 header means qcow2; a header of any other
//    image format (VMDK, VHD(X), VDI, QED, qcow1, LUKS, Parallels) is refused;
//    anything else is raw (raw never refers to another file);
//  - qcow2 is then examined with `qemu-img info -f qcow2` and refused if it
//    has a backing file or an external data file, or does not parse;
//  - callers pass the returned format explicitly (-f) to every qemu-img or
//    qemu-nbd they run on the image.
// InvalidArgument (refused, with the reason) or Io/NotFound (unreadable).
Result<ImportImageInfo> inspectImportImage(const std::string& path);

// Imports a raw or qcow2 image (checked by inspectImportImage first) as a new
// version of the parcel's disk, creating the parcel if it does not exist.
// The memory image is dropped (the new disk needs a fresh boot).
Result<ImportStats> importImage(Parcels& parcels, const std::string& parcel,
                                const std::string& imagePath, const ImportOptions& options,
                                const ProgressFn& progress = {});
// Writes version n's disk as a sparse raw file: first to outPath + ".part",
// created with O_EXCL|O_NOFOLLOW (a symlink planted there is refused, a
// leftover regular file from an interrupted export is replaced), then
// renamed over outPath.
Status exportImage(Parcels& parcels, const std::string& parcel, std::uint64_t n,
                   const std::string& outPath, const ProgressFn& progress = {});

// ---- maintenance ----------------------------------------------------------------

struct FsckReport {
    std::uint64_t objectsChecked = 0;
    std::uint64_t manifestsChecked = 0;
    std::uint64_t chunksChecked = 0;
    std::vector<std::string> problems; // one line per damaged or missing object
    bool clean() const { return problems.empty(); }
};

// Without keys: store marker, account JSON shape, every chunk's name equals
// the hash of its ciphertext.
Result<FsckReport> fsckStore(store::Store& store, const ProgressFn& progress = {});
// With the user's keys: also opens every manifest and decodes every chunk it
// references.
Result<FsckReport> fsckUser(Parcels& parcels, const ProgressFn& progress = {});

struct GcReport {
    std::uint64_t referenced = 0;
    std::uint64_t removed = 0; // unreferenced chunks
    std::uint64_t removedBytes = 0;
    std::uint64_t keptYoung = 0; // unreferenced but inside the grace period
    std::uint64_t versionsRemoved = 0;
    // Bytes of the pruned versions/<n> objects and of their (and orphaned)
    // reference lists.
    std::uint64_t versionBytes = 0;
    std::uint64_t refsWritten = 0; // reference lists written or rewritten (gc with keys)
};

// Which versions of a parcel to keep. A version is kept if any rule keeps
// it; the newest version is always kept. keepLast 0 and keepWithin 0 mean
// "rule off"; with both off nothing is pruned.
struct Retention {
    std::uint64_t keepLast = 0;  // the newest N versions
    std::int64_t keepWithin = 0; // versions created less than this many seconds ago
    bool active() const { return keepLast > 0 || keepWithin > 0; }
};
struct PruneReport {
    std::string parcel;
    std::vector<std::uint64_t> removed; // versions removed (or that would be, dry run)
    std::vector<std::uint64_t> kept;
};

// One garbage collection of one user (maintenance.cpp has the decisions):
//  1. every parcel's lock: a heartbeat younger than graceSeconds refuses
//     (Locked): a live session's trickled chunks are referenced by nothing yet;
//  2. per parcel, newest first, the retention decides which versions stay;
//     what each version references comes from its manifest (with keys) or
//     its reference list (keyless) -- all read before anything is removed;
//  3. pruned versions go oldest first: versions/<n>, then refs/<n>;
//  4. the user's chunks no kept version references and older than
//     graceSeconds go (so do reference lists whose version is gone).
// A dry run reads the same and removes (and writes) nothing. A store error
// stops the run: only pruned versions and unreferenced chunks are ever
// removed, so nothing a kept version needs is lost, and a rerun finishes.

// With the user's keys. Also writes a missing or wrong refs/<n> for every
// kept version (backfill), unless dryRun.
Result<GcReport> collectGarbage(Parcels& parcels, std::int64_t graceSeconds, bool dryRun);
Result<GcReport> collectGarbage(Parcels& parcels, std::int64_t graceSeconds, bool dryRun,
                                const Retention& retention, std::vector<PruneReport>* pruned);

// Without keys, from the reference lists (gc --all).
struct UserGcReport {
    std::string user;
    enum class Skipped {
        No,
        Locked,    // a parcel is open at a kiosk (fresh heartbeat): next run
        References // a version it needs has no usable refs/<n>: gc --user once
    };
    Skipped skipped = Skipped::No;
    std::string reason; // why it was skipped
    GcReport gc;        // all zero when skipped: nothing of the user was touched
    std::vector<PruneReport> pruned;
};
// One user. A version whose list is missing, damaged, names another
// version, or whose recorded sealed length is not the size of the stored
// versions/<n> makes the user Skipped::References when the retention keeps
// that version or needs its time (keepWithin); nothing of the user is then
// removed. Errors: a store failure (the run stops there).
Result<UserGcReport> collectGarbageKeyless(store::Store& store, const std::string& user,
                                           std::int64_t graceSeconds, bool dryRun,
                                           const Retention& retention);
struct StoreGcReport {
    std::vector<UserGcReport> users; // every user (listUsers order)
    GcReport total;                  // the sum over the users collected
    std::uint64_t skippedLocked = 0;
    std::uint64_t skippedReferences = 0;
};
// Every user in the store, one after the other; `onUser` (optional) sees
// each user's report as soon as it is done. A store error stops the run
// (the users before it are done; onUser has seen them).
Result<StoreGcReport>
collectGarbageAll(store::Store& store, std::int64_t graceSeconds, bool dryRun,
                  const Retention& retention,
                  const std::function<void(const UserGcReport&)>& onUser = {});

} // namespace isr::parcel
