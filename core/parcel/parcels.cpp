// A signed-in user's parcels: versions, commit, rollback, chunks, locks.
#include "parcel/parcel.h"
#include "util/fault.h"
#include "util/log.h"

#include <algorithm>
#include <ctime>
#include <set>

namespace isr::parcel {

Parcels::Parcels(store::Store& store, UserSecrets secrets)
    : store_(store), secrets_(std::move(secrets)),
      masterId_(secrets_.master.empty() ? std::string() : masterId(secrets_.master)) {}

Result<std::vector<std::string>> Parcels::list() {
    std::string prefix = "users/" + user() + "/parcels/";
    ISR_TRY_ASSIGN(auto objects, store_.list(prefix));
    std::set<std::string> names;
    for (const auto& o : objects) {
        std::string rest = o.key.substr(prefix.size());
        auto slash = rest.find('/');
        if (slash == std::string::npos)
            continue;
        // Only parcels with at least one version count; a lone lock does not.
        if (rest.compare(slash, 10, "/versions/") == 0)
            names.insert(rest.substr(0, slash));
    }
    return std::vector<std::string>(names.begin(), names.end());
}

Result<std::vector<std::uint64_t>> Parcels::versions(const std::string& parcel) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    std::string prefix = parcelPrefix(user(), parcel) + "versions/";
    ISR_TRY_ASSIGN(auto objects, store_.list(prefix));
    std::vector<std::uint64_t> out;
    for (const auto& o : objects)
        if (auto n = parseVersionNumber(std::string_view(o.key).substr(prefix.size())))
            out.push_back(*n);
    std::sort(out.begin(), out.end());
    if (out.empty())
        return Error(Errc::NotFound,
                     "parcel '" + parcel + "' of user '" + user() + "' does not exist");
    return out;
}

Result<std::uint64_t> Parcels::latest(const std::string& parcel) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    std::uint64_t n = 0;
    if (auto head = store_.get(headKey(user(), parcel)); head.ok()) {
        std::string text(asString(*head));
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
            text.pop_back();
        if (auto v = parseVersionNumber(text)) {
            n = *v;
        } else {
            ISR_LOG_WARN("parcel") << "ignoring unparsable head of " << parcel;
        }
    }
    // head is only a hint: confirm version n exists, then probe forward.
    if (n > 0) {
        ISR_TRY_ASSIGN(bool present, store_.exists(versionKey(user(), parcel, n)));
        if (!present)
            n = 0;
    }
    if (n == 0) {
        // No usable hint (missing, damaged or pointing at nothing): list.
        auto all = versions(parcel);
        if (!all.ok())
            return std::move(all).error();
        n = all->back();
    }
    for (;;) {
        ISR_TRY_ASSIGN(bool next, store_.exists(versionKey(user(), parcel, n + 1)));
        if (!next)
            return n;
        ++n;
    }
}

Bytes Parcels::seal(const std::string& parcel, std::uint64_t n, const Manifest& m) const {
    return sealPlaintext(parcel, n, encodeManifest(m));
}

Bytes Parcels::sealPlaintext(const std::string& parcel, std::uint64_t n, ByteView plaintext) const {
    return crypto::seal(secrets_.master, plaintext,
                        asBytes(manifestAssociatedData(user(), parcel, n)));
}

// The master first; then, while a key rotation is unfinished (FORMAT.md,
// "Key rotation"), each previous master: versions not re-sealed yet, and
// those a kiosk that signed in before the change committed since. A failed
// open costs one MAC check, so trying a few keys is cheap.
Result<Bytes> Parcels::openVersion(const std::string& parcel, std::uint64_t n, ByteView sealed,
                                   bool* usedPrevious) const {
    const std::string ad = manifestAssociatedData(user(), parcel, n);
    if (usedPrevious)
        *usedPrevious = false;
    auto plain = crypto::open(secrets_.master, sealed, asBytes(ad));
    if (plain.ok())
        return plain;
    for (const auto& previous : secrets_.previousMasters) {
        auto old = crypto::open(previous, sealed, asBytes(ad));
        if (old.ok()) {
            if (usedPrevious)
                *usedPrevious = true;
            return old;
        }
    }
    return Error(Errc::Corrupt, "manifest " + versionKey(user(), parcel, n) +
                                    " failed verification (damaged, or not this parcel's "
                                    "version " +
                                    std::to_string(n) + ")");
}

Status Parcels::checkKeysCurrent(bool allowPrevious) {
    if (masterId_.empty())
        return {};
    auto raw = store_.get(accountKey(user()));
    if (!raw.ok()) {
        if (raw.error().code == Errc::NotFound)
            return {};
        return std::move(raw).error().context("reading the account of '" + user() + "'");
    }
    auto account = parseAccountObject(*raw);
    if (!account.ok() || account->masterId.empty() || account->masterId == masterId_)
        return {};
    if (allowPrevious)
        for (const auto& id : account->previousMasterIds)
            if (id == masterId_)
                return {};
    return Error(Errc::AuthFailed,
                 "the password of '" + user() +
                     "' was changed (and its keys rotated) after this sign-in: sign in again");
}

Result<Manifest> Parcels::manifest(const std::string& parcel, std::uint64_t n) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    std::string key = versionKey(user(), parcel, n);
    auto sealed = store_.get(key);
    if (!sealed.ok())
        return std::move(sealed).error().context("manifest " + key);
    auto plain = openVersion(parcel, n, *sealed);
    if (!plain.ok())
        return Error(Errc::Corrupt, "manifest " + key +
                                        " failed verification (damaged, or not this parcel's "
                                        "version " +
                                        std::to_string(n) + ")");
    auto m = decodeManifest(*plain);
    if (!m.ok())
        return std::move(m).error().context(key);
    if (m->version != n)
        return Error(Errc::Corrupt,
                     "manifest " + key + " claims version " + std::to_string(m->version));
    return m;
}

Result<std::vector<Parcels::ChainLink>> Parcels::verifyChain(const std::string& parcel,
                                                             const Manifest& top,
                                                             std::uint64_t downTo,
                                                             unsigned maxReads) {
    if (!top.digest)
        return Error(Errc::InvalidArgument,
                     "verifyChain: the manifest was not read from the store");
    std::vector<ChainLink> links{{top.version, *top.digest, top.rekeyedFrom}};
    Manifest child = top;
    for (unsigned reads = 0; reads < maxReads && child.version > downTo && child.parent > 0;
         ++reads) {
        if (!child.parentDigest)
            break; // written before the chain existed: nothing to check further down
        auto parent = manifest(parcel, child.parent);
        if (!parent.ok()) {
            // Pruned (gc retention), or damaged: the chain is checked as far
            // as it goes. A store that hides or garbles a parent hides it;
            // it cannot put another valid one in its place.
            if (parent.error().code == Errc::NotFound)
                break;
            if (parent.error().code == Errc::Corrupt) {
                ISR_LOG_WARN("parcel") << "chain check stops at " << parent.error().describe();
                break;
            }
            return std::move(parent).error();
        }
        // A child that still binds what its parent was before rekey
        // rewrote the parent (rekey interrupted between the two): the
        // parent names that plaintext in rekeyed_from, under the user's seal.
        const bool rekeyedParent = parent->rekeyedFrom && parent->rekeyedFrom == child.parentDigest;
        if (parent->digest != child.parentDigest && !rekeyedParent)
            return Error(Errc::Corrupt, "the store's version " + std::to_string(child.parent) +
                                            " of parcel '" + parcel + "' is not the one version " +
                                            std::to_string(child.version) +
                                            " was saved from (the store forked or replaced it)");
        links.push_back({parent->version, *parent->digest, parent->rekeyedFrom});
        child = std::move(*parent);
    }
    return links;
}

Result<Manifest> Parcels::create(const std::string& parcel, const VmSpec& vm,
                                 std::uint64_t diskSize, std::uint32_t chunkSize,
                                 const std::string& kiosk) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    ISR_TRY_STATUS(vm.validate());
    if (chunkSize < 4096 || chunkSize > chunk::kMaxChunkSize || (chunkSize & (chunkSize - 1)))
        return Error(Errc::InvalidArgument, "chunk size must be a power of two, 4 KiB..16 MiB");
    if (diskSize == 0 || diskSize % 512 != 0 || diskSize > (16ull << 40))
        return Error(Errc::InvalidArgument, "disk size must be a multiple of 512, at most 16 TiB");
    Manifest m;
    m.kiosk = kiosk;
    m.created = std::time(nullptr);
    m.diskSize = diskSize;
    m.chunkSize = chunkSize;
    m.vm = vm;
    m.disk.resize(m.chunkCount());
    auto committed = commit(parcel, m, {});
    if (!committed.ok()) {
        if (committed.error().code == Errc::Conflict)
            return Error(Errc::AlreadyExists, "parcel '" + parcel + "' already exists");
        return std::move(committed).error();
    }
    return m;
}

Result<Parcels::UploadStats> Parcels::uploadChunks(const std::vector<chunk::EncodedChunk>& chunks,
                                                   const ProgressFn& progress) {
    return uploadChunks(chunks, UploadOptions{}, progress);
}

Result<Parcels::UploadStats> Parcels::uploadChunks(const std::vector<chunk::EncodedChunk>& chunks,
                                                   const UploadOptions& options,
                                                   const ProgressFn& progress) {
    // Pick what to send (dedup within the call, and against what the
    // caller knows the store holds), then, a batch at a time, ask the store
    // which of the batch it has (many HEADs in flight; one at a time made a
    // lazy Suspend & Leave spend 11 s of 16 here for 400 chunks on a 20 ms
    // link, measured) and send the rest, many in flight.
    std::vector<std::size_t> candidates;
    std::set<chunk::ChunkName> seen;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
        const auto& name = chunks[i].ref.name;
        if (options.dedup) {
            if (!seen.insert(name).second)
                continue;
            if (options.knownPresent && options.knownPresent->count(name))
                continue;
        }
        candidates.push_back(i);
    }
    const bool ask = options.dedup && options.askStore;
    // Progress counts what was handled; the stats only what was sent.
    std::uint64_t totalBytes = 0, doneBytes = 0, sentChunks = 0, sentBytes = 0;
    for (auto i : candidates)
        totalBytes += chunks[i].ciphertext.size();
    constexpr std::size_t kBatch = 64;
    for (std::size_t start = 0; start < candidates.size(); start += kBatch) {
        const std::size_t end = std::min(candidates.size(), start + kBatch);
        std::vector<std::size_t> send;
        if (ask) {
            std::vector<std::string> keys;
            for (std::size_t j = start; j < end; ++j)
                keys.push_back(chunkKey(user(), chunks[candidates[j]].ref.name));
            auto present = store_.existsMany(keys);
            for (std::size_t j = start; j < end; ++j) {
                auto& there = present[j - start];
                if (!there.ok())
                    return std::move(there).error();
                if (*there)
                    doneBytes += chunks[candidates[j]].ciphertext.size();
                else
                    send.push_back(candidates[j]);
            }
        } else {
            send.assign(candidates.begin() + std::ptrdiff_t(start),
                        candidates.begin() + std::ptrdiff_t(end));
        }
        std::vector<store::PutItem> batch;
        for (auto i : send) {
            const auto& c = chunks[i];
            batch.push_back({chunkKey(user(), c.ref.name), c.ciphertext, options.dedup});
        }
        auto results = store_.putMany(batch);
        for (std::size_t j = 0; j < results.size(); ++j) {
            // AlreadyExists: another writer (or a lost reply to our own
            // earlier attempt) stored the same content; the store keeps its copy.
            if (!results[j].ok() && results[j].error().code != Errc::AlreadyExists)
                return std::move(results[j]).error().context("uploading chunk " + batch[j].key);
            doneBytes += batch[j].data.size();
            if (results[j].ok()) {
                sentChunks++;
                sentBytes += batch[j].data.size();
            }
        }
        ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.upload.batch"));
        if (progress)
            progress("upload", doneBytes, totalBytes);
    }
    return UploadStats{sentChunks, sentBytes};
}

// The same version content apart from when it was created: how a retried
// commit recognises the version its own earlier attempt wrote. Another
// kiosk's version differs at least in its memory image and kiosk id.
static bool sameContent(const Manifest& stored, const Manifest& ours) {
    Manifest a = stored;
    a.created = ours.created;
    return encodeManifest(a) == encodeManifest(ours);
}

Result<std::uint64_t> Parcels::commit(const std::string& parcel, Manifest& m,
                                      const std::vector<chunk::EncodedChunk>& newChunks,
                                      const ProgressFn& progress) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    ISR_TRY_STATUS(m.vm.validate());
    if (m.disk.size() != m.chunkCount())
        return Error(Errc::InvalidArgument, "disk table does not match the disk size");
    ISR_TRY_STATUS(uploadChunks(newChunks, progress));
    std::uint64_t n = m.parent + 1;
    // A copy of a version rekey rewrote carries its rekey marks; the new
    // version is not rekey's output (its chunks may be under any secret).
    m.rekeyedFrom.reset();
    m.rekeyedUnder.clear();
    // Bind the parent (FORMAT.md, "Chain"). A copy of the parent's manifest
    // as read carries the digest of exactly what the caller worked from (a
    // session's base, verified at resume); anything else (a rollback's old
    // version, an import) binds the parent the store has now.
    if (m.parent == 0) {
        m.parentDigest.reset();
    } else if (m.version == m.parent && m.digest) {
        m.parentDigest = m.digest;
    } else {
        ISR_TRY_ASSIGN(Manifest parentManifest, manifest(parcel, m.parent));
        m.parentDigest = parentManifest.digest;
    }
    m.version = n;
    if (m.created == 0)
        m.created = std::time(nullptr);
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.commit.before-version"));
    // Not under a master the account no longer has (a rotation finished
    // after this sign-in): that version would open with no key the user
    // has. Under a previous master of an unfinished rotation it may: the
    // rotation re-seals it later.
    ISR_TRY_STATUS(checkKeysCurrent(/*allowPrevious=*/true));
    Bytes sealed = seal(parcel, n, m);
    std::uint64_t sealedLength = sealed.size();
    auto st = store_.putIfAbsent(versionKey(user(), parcel, n), sealed);
    if (!st.ok()) {
        if (st.error().code == Errc::AlreadyExists) {
            // Our own earlier attempt may have created it and lost the
            // answer (a dropped connection after the PUT landed, a retry
            // after a failure past this point): then it is committed.
            if (auto existing = manifest(parcel, n); existing.ok() && sameContent(*existing, m)) {
                ISR_LOG_INFO("parcel") << "version " << n << " of " << parcel
                                       << " was already committed by this session";
                m.created = existing->created;
                // The stored object: our plaintext now, sealed (a seal's
                // length depends on the plaintext's only).
                sealedLength = seal(parcel, n, m).size();
            } else {
                return Error(Errc::Conflict, "version " + std::to_string(n) + " of parcel '" +
                                                 parcel +
                                                 "' was created by another writer first; nothing "
                                                 "was overwritten");
            }
        } else {
            return std::move(st).error().context("committing version " + std::to_string(n));
        }
    }
    m.digest = crypto::hash(encodeManifest(m));
    // The clear reference list (FORMAT.md, "Reference list"), written only
    // by the writer whose version this is (a loser returned Conflict above).
    // The version is committed whatever happens here: a failure only means
    // keyless gc (gc --all) skips this user until gc --user backfills it.
    if (auto r = store_.put(refsKey(user(), parcel, n),
                            encodeReferenceList(referenceListOf(m, sealedLength)));
        !r.ok()) {
        ISR_LOG_WARN("parcel") << "version " << n << " of " << parcel
                               << " committed but its reference list not written: "
                               << r.error().describe();
    }
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.commit.after-version"));
    // The version exists now; head is only a hint, so a failure here loses nothing.
    if (auto h = store_.put(headKey(user(), parcel), asBytes(std::to_string(n) + "\n")); !h.ok()) {
        ISR_LOG_WARN("parcel") << "version " << n
                               << " committed but head not updated: " << h.error().describe();
    }
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.commit.after-head"));
    if (progress)
        progress("commit", n, n);
    return n;
}

Result<std::uint64_t> Parcels::rollback(const std::string& parcel, std::uint64_t n,
                                        const std::string& kiosk) {
    ISR_TRY_ASSIGN(Manifest old, manifest(parcel, n));
    ISR_TRY_ASSIGN(std::uint64_t current, latest(parcel));
    old.parent = current;
    old.created = std::time(nullptr);
    old.kiosk = kiosk;
    return commit(parcel, old, {});
}

Result<Bytes> Parcels::fetchChunk(const chunk::ChunkName& name) {
    auto data = store_.get(chunkKey(user(), name));
    if (!data.ok())
        return std::move(data).error().context("chunk " + chunk::nameHex(name));
    return data;
}

Result<Bytes> Parcels::readChunk(const chunk::ChunkRef& ref) {
    ISR_TRY_ASSIGN(Bytes ciphertext, fetchChunk(ref.name));
    auto plain = chunk::decode(ref, ciphertext);
    if (!plain.ok())
        return std::move(plain).error().context("chunk " + chunk::nameHex(ref.name));
    return plain;
}

// ---- locks -------------------------------------------------------------------
// Every write is conditional: putIfAbsent for a lock never taken, putIfMatch
// on the tag just read for everything else (take a released lock, take
// over, heartbeat, confirm, release). Of any number of writers that read the
// same tag, exactly one succeeds (store.h), so two kiosks can never both
// believe they hold a parcel.

// Format 2 (FORMAT.md "Lock"; issue #16 item 12): the store sees the random
// session token and the times, not which kiosk holds the parcel. The kiosk
// id is sealed under the user's master key, bound to user, parcel and
// session (the store cannot move it to another lock), so a kiosk signed in
// as the user (the take-over page) and `isrctl parcel status --sign-in`
// still say where the computer is open. Format 1 locks (kiosk id in clear,
// no "format") are still read.
static constexpr std::int64_t kLockFormat = 2;

static std::string holderAd(const std::string& user, const std::string& parcel,
                            const std::string& session) {
    return "isr-lock-holder:" + user + "/" + parcel + "/" + session;
}

static std::string lockBody(const UserSecrets& secrets, const std::string& parcel,
                            const LockInfo& l) {
    json::Object o{{"format", kLockFormat},
                   {"session", l.session},
                   {"since", l.since},
                   {"heartbeat", l.heartbeat}};
    // Only a keyless Parcels (isrctl's operator commands) lacks the master,
    // and those never take a lock.
    if (!secrets.master.empty())
        o["holder"] = toHex(crypto::seal(secrets.master, asBytes(l.kiosk),
                                         asBytes(holderAd(secrets.user, parcel, l.session))));
    return json::Value(std::move(o)).dump() + "\n";
}

// A released lock: the session that released it and when, for the curious.
static std::string releasedBody(const LockInfo& l) {
    return json::Value(json::Object{{"format", kLockFormat},
                                    {"released", std::int64_t(std::time(nullptr))},
                                    {"session", l.session}})
               .dump() +
           "\n";
}

// The kiosk id of a format 2 lock, opened with the master or a previous
// one (an unfinished key rotation); "" when no key we have opens it (a
// keyless reader, another master, a damaged field).
static std::string openHolder(const UserSecrets& secrets, const std::string& parcel,
                              const std::string& session, const std::string& sealedHex) {
    auto sealed = fromHex(sealedHex);
    if (!sealed.ok() || sealedHex.empty())
        return {};
    const std::string ad = holderAd(secrets.user, parcel, session);
    auto tryKey = [&](const crypto::Secret& key) -> std::optional<std::string> {
        if (key.empty())
            return std::nullopt;
        auto plain = crypto::open(key, *sealed, asBytes(ad));
        if (!plain.ok())
            return std::nullopt;
        return std::string(asString(*plain));
    };
    if (auto kiosk = tryKey(secrets.master))
        return *kiosk;
    for (const auto& previous : secrets.previousMasters)
        if (auto kiosk = tryKey(previous))
            return *kiosk;
    return {};
}

namespace {
// The lock object as read: absent, released, or held (maybe unreadably).
struct ReadLock {
    bool present = false;  // the object exists (tag is valid)
    bool released = false; // it says "released": nobody holds the parcel
    LockInfo holder;       // when present and not released; tag = the object's
    std::string tag;
};
} // namespace

static Result<ReadLock> readLockObject(store::Store& store, const UserSecrets& secrets,
                                       const std::string& parcel) {
    ReadLock out;
    auto raw = store.getTagged(lockKey(secrets.user, parcel));
    if (!raw.ok()) {
        if (raw.error().code == Errc::NotFound)
            return out;
        return std::move(raw).error();
    }
    out.present = true;
    out.tag = raw->tag;
    auto doc = json::parse(asString(raw->data));
    if (doc.ok() && doc->getInt("released").ok()) {
        out.released = true;
        return out;
    }
    LockInfo& l = out.holder;
    if (doc.ok()) {
        auto format = doc->getInt("format");
        auto session = doc->getString("session");
        auto since = doc->getInt("since");
        auto beat = doc->getInt("heartbeat");
        if (!format.ok()) { // format 1: the kiosk id in clear
            auto kiosk = doc->getString("kiosk");
            if (kiosk.ok() && session.ok() && since.ok() && beat.ok()) {
                l = {*kiosk, *session, *since, *beat, raw->tag};
                return out;
            }
        } else if (*format == kLockFormat && session.ok() && since.ok() && beat.ok()) {
            l = {openHolder(secrets, parcel, *session, doc->getString("holder").valueOr("")),
                 *session, *since, *beat, raw->tag};
            return out;
        } else if (session.ok()) {
            // A newer format: someone holds it; its session still tells
            // holders apart for a take-over.
            l.session = *session;
        }
    }
    // A damaged lock still means "someone may hold this": report it as held
    // by an unknown kiosk so the user can take it over explicitly.
    l.kiosk = "(unreadable lock)";
    l.tag = raw->tag;
    return out;
}

std::string LockInfo::holderLabel() const {
    if (!kiosk.empty())
        return kiosk;
    return "holder " + session.substr(0, 12);
}

Result<std::optional<LockInfo>> Parcels::readLock(const std::string& parcel) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    ISR_TRY_ASSIGN(ReadLock l, readLockObject(store_, secrets_, parcel));
    if (!l.present || l.released)
        return std::optional<LockInfo>();
    return std::optional<LockInfo>(l.holder);
}

Result<LockAttempt> Parcels::lock(const std::string& parcel, const std::string& kiosk,
                                  bool takeOver) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    LockInfo mine;
    mine.kiosk = kiosk;
    mine.session = toHex(crypto::randomBytes(16));
    mine.since = mine.heartbeat = std::time(nullptr);
    const std::string body = lockBody(secrets_, parcel, mine);
    const std::string key = lockKey(user(), parcel);
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.lock.before"));
    // A kiosk that signed in before the user's keys were rotated would
    // commit under a master the rotation is retiring: sign in again. Before
    // (no take-over for nothing) and after taking the lock (FORMAT.md, "Key
    // rotation": a rotation skips parcels locked when it reaches them, so
    // a lock taken after it read this parcel's lock is checked against the
    // account it had already written).
    ISR_TRY_STATUS(checkKeysCurrent(/*allowPrevious=*/false));
    // A few rounds: a lock released or created between our read and our
    // write sends us round again; a holder that won a race is reported.
    std::optional<std::string> seenHolderSession;
    for (int round = 0; round < 4; ++round) {
        ISR_TRY_ASSIGN(ReadLock current, readLockObject(store_, secrets_, parcel));
        if (current.present && !current.released) {
            // Take over only the holder the caller saw (or the first one we
            // see): a kiosk that took it meanwhile is reported, not replaced.
            bool sameHolder = !seenHolderSession || *seenHolderSession == current.holder.session;
            if (!takeOver || !sameHolder)
                return LockAttempt{false, current.holder};
            seenHolderSession = current.holder.session;
        }
        Result<std::string> tag = current.present
                                      ? store_.putIfMatch(key, asBytes(body), current.tag)
                                      : [&]() -> Result<std::string> {
            ISR_TRY_STATUS(store_.putIfAbsent(key, asBytes(body)));
            // Our own object's tag: read back (FileStore and S3 alike).
            ISR_TRY_ASSIGN(ReadLock now, readLockObject(store_, secrets_, parcel));
            if (!now.present || now.released || now.holder.session != mine.session)
                return Error(Errc::Conflict, "the lock changed right after we took it");
            return now.tag;
        }();
        if (tag.ok()) {
            mine.tag = *tag;
            if (auto keys = checkKeysCurrent(/*allowPrevious=*/false); !keys.ok()) {
                (void)unlock(parcel, mine);
                return std::move(keys).error();
            }
            ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.lock.after"));
            return LockAttempt{true, mine};
        }
        const Errc code = tag.error().code;
        if (code != Errc::Conflict && code != Errc::AlreadyExists)
            return std::move(tag).error().context("locking parcel '" + parcel + "'");
    }
    ISR_TRY_ASSIGN(ReadLock last, readLockObject(store_, secrets_, parcel));
    if (last.present && !last.released)
        return LockAttempt{false, last.holder};
    return Error(Errc::Transient, "locking parcel '" + parcel + "': the lock kept changing");
}

Status Parcels::heartbeat(const std::string& parcel, LockInfo& mine) {
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.heartbeat.before"));
    LockInfo next = mine;
    next.heartbeat = std::time(nullptr);
    const std::string key = lockKey(user(), parcel);
    auto tag = store_.putIfMatch(key, asBytes(lockBody(secrets_, parcel, next)), mine.tag);
    if (tag.ok()) {
        next.tag = *tag;
        mine = next;
        return {};
    }
    if (tag.error().code != Errc::Conflict)
        return std::move(tag).error();
    auto current = readLock(parcel);
    std::string by = current.ok() && current->has_value() ? (*current)->holderLabel() : "nobody";
    if (current.ok() && current->has_value() && (*current)->session == mine.session) {
        // Our own lock under another tag (a retried write we lost the answer
        // to): adopt it and beat again next time.
        mine.tag = (*current)->tag;
        return {};
    }
    return Error(Errc::Locked, "parcel '" + parcel + "' was taken over by " + by);
}

Status Parcels::confirmLock(const std::string& parcel, LockInfo& mine) {
    return heartbeat(parcel, mine);
}

Status Parcels::unlock(const std::string& parcel, const LockInfo& mine) {
    const std::string key = lockKey(user(), parcel);
    ISR_TRY_ASSIGN(ReadLock current, readLockObject(store_, secrets_, parcel));
    if (!current.present || current.released)
        return {};
    if (current.holder.session != mine.session) {
        ISR_LOG_WARN("parcel") << "not releasing lock of " << parcel << ": now held by "
                               << current.holder.holderLabel();
        return {};
    }
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.unlock.before-remove"));
    auto st = store_.putIfMatch(key, asBytes(releasedBody(mine)), current.tag);
    if (!st.ok() && st.error().code == Errc::Conflict) {
        ISR_LOG_WARN("parcel") << "not releasing lock of " << parcel
                               << ": it changed while we released it";
        return {};
    }
    if (!st.ok())
        return std::move(st).error();
    return {};
}

} // namespace isr::parcel
