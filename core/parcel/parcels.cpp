// A signed-in user's parcels: versions, commit, rollback, chunks, locks.
#include "parcel/parcel.h"
#include "util/fault.h"
#include "util/log.h"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <set>

namespace isr::parcel {

Parcels::Parcels(store::Store& store, UserSecrets secrets)
    : store_(store), secrets_(std::move(secrets)) {}

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

static std::optional<std::uint64_t> parseNumber(std::string_view s) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || s.empty() || v == 0)
        return std::nullopt;
    return v;
}

Result<std::vector<std::uint64_t>> Parcels::versions(const std::string& parcel) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    std::string prefix = parcelPrefix(user(), parcel) + "versions/";
    ISR_TRY_ASSIGN(auto objects, store_.list(prefix));
    std::vector<std::uint64_t> out;
    for (const auto& o : objects)
        if (auto n = parseNumber(std::string_view(o.key).substr(prefix.size())))
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
        if (auto v = parseNumber(text)) {
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
    return crypto::seal(secrets_.master, encodeManifest(m),
                        asBytes(manifestAssociatedData(user(), parcel, n)));
}

Result<Manifest> Parcels::manifest(const std::string& parcel, std::uint64_t n) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    std::string key = versionKey(user(), parcel, n);
    auto sealed = store_.get(key);
    if (!sealed.ok())
        return std::move(sealed).error().context("manifest " + key);
    auto plain =
        crypto::open(secrets_.master, *sealed, asBytes(manifestAssociatedData(user(), parcel, n)));
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
    // Pick what to send (dedup across versions and parcels), then send it in
    // batches so S3 can keep many in flight.
    std::vector<std::size_t> send;
    std::set<chunk::ChunkName> seen;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
        const auto& name = chunks[i].ref.name;
        if (options.dedup) {
            if (!seen.insert(name).second)
                continue;
            if (options.knownPresent && options.knownPresent->count(name))
                continue;
            if (options.askStore) {
                ISR_TRY_ASSIGN(bool present, store_.exists(chunkKey(user(), name)));
                if (present)
                    continue;
            }
        }
        send.push_back(i);
    }
    // Progress counts what was handled; the stats only what was sent.
    std::uint64_t totalBytes = 0, doneBytes = 0, sentChunks = 0, sentBytes = 0;
    for (auto i : send)
        totalBytes += chunks[i].ciphertext.size();
    constexpr std::size_t kBatch = 64;
    for (std::size_t start = 0; start < send.size(); start += kBatch) {
        std::vector<store::PutItem> batch;
        for (std::size_t j = start; j < std::min(send.size(), start + kBatch); ++j) {
            const auto& c = chunks[send[j]];
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
    m.version = n;
    if (m.created == 0)
        m.created = std::time(nullptr);
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.commit.before-version"));
    auto st = store_.putIfAbsent(versionKey(user(), parcel, n), seal(parcel, n, m));
    if (!st.ok()) {
        if (st.error().code == Errc::AlreadyExists) {
            // Our own earlier attempt may have created it and lost the
            // answer (a dropped connection after the PUT landed, a retry
            // after a failure past this point): then it is committed.
            if (auto existing = manifest(parcel, n); existing.ok() && sameContent(*existing, m)) {
                ISR_LOG_INFO("parcel") << "version " << n << " of " << parcel
                                       << " was already committed by this session";
                m.created = existing->created;
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

static json::Value lockToJson(const LockInfo& l) {
    return json::Object{
        {"kiosk", l.kiosk}, {"session", l.session}, {"since", l.since}, {"heartbeat", l.heartbeat}};
}

Result<std::optional<LockInfo>> Parcels::readLock(const std::string& parcel) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    auto raw = store_.get(lockKey(user(), parcel));
    if (!raw.ok()) {
        if (raw.error().code == Errc::NotFound)
            return std::optional<LockInfo>();
        return std::move(raw).error();
    }
    auto doc = json::parse(asString(*raw));
    LockInfo l;
    if (doc.ok()) {
        auto kiosk = doc->getString("kiosk");
        auto session = doc->getString("session");
        auto since = doc->getInt("since");
        auto beat = doc->getInt("heartbeat");
        if (kiosk.ok() && session.ok() && since.ok() && beat.ok()) {
            l = {*kiosk, *session, *since, *beat};
            return std::optional<LockInfo>(l);
        }
    }
    // A damaged lock still means "someone may hold this": report it as held
    // by an unknown kiosk so the user can take it over explicitly.
    l.kiosk = "(unreadable lock)";
    return std::optional<LockInfo>(l);
}

Result<LockAttempt> Parcels::lock(const std::string& parcel, const std::string& kiosk,
                                  bool takeOver) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    LockInfo mine;
    mine.kiosk = kiosk;
    mine.session = toHex(crypto::randomBytes(16));
    mine.since = mine.heartbeat = std::time(nullptr);
    std::string body = lockToJson(mine).dump() + "\n";
    std::string key = lockKey(user(), parcel);
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.lock.before"));
    if (takeOver) {
        ISR_TRY_STATUS(store_.put(key, asBytes(body)));
        ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.lock.after"));
        return LockAttempt{true, mine};
    }
    auto st = store_.putIfAbsent(key, asBytes(body));
    if (st.ok()) {
        ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.lock.after"));
        return LockAttempt{true, mine};
    }
    if (st.error().code != Errc::AlreadyExists)
        return std::move(st).error().context("locking parcel '" + parcel + "'");
    ISR_TRY_ASSIGN(auto holder, readLock(parcel));
    if (!holder) // released between our attempt and the read: try once more
        return lock(parcel, kiosk, false);
    return LockAttempt{false, *holder};
}

Status Parcels::heartbeat(const std::string& parcel, LockInfo& mine) {
    ISR_TRY_ASSIGN(auto current, readLock(parcel));
    if (!current || current->session != mine.session)
        return Error(Errc::Locked, "parcel '" + parcel + "' was taken over by " +
                                       (current ? current->kiosk : std::string("nobody")));
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.heartbeat.before"));
    mine.heartbeat = std::time(nullptr);
    return store_.put(lockKey(user(), parcel), asBytes(lockToJson(mine).dump() + "\n"));
}

Status Parcels::unlock(const std::string& parcel, const LockInfo& mine) {
    ISR_TRY_ASSIGN(auto current, readLock(parcel));
    if (!current)
        return {};
    if (current->session != mine.session) {
        ISR_LOG_WARN("parcel") << "not releasing lock of " << parcel << ": now held by "
                               << current->kiosk;
        return {};
    }
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.unlock.before-remove"));
    return store_.remove(lockKey(user(), parcel));
}

} // namespace isr::parcel
