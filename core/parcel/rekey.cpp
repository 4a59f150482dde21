// Rotating a user's convergence secret (issue #16 item 7; rekey.h).
//
// Decisions (FORMAT.md, "Key rotation -- convergence secret"):
//
//  - The master key rotates too. A convergence secret is lost together with
//    the master (both come out of one account seal), and whoever holds the
//    old master reads the new chunk keys out of any manifest sealed under
//    it. So the first step is changePassword's, with the same password: the
//    account is rewritten (put-if-match on its tag) with a fresh master and
//    a fresh convergence secret, the old master a previous master and the
//    old secret `previous_convergence`. That also makes every kiosk that
//    signed in before the rekey "sign in again" at its next lock
//    (Parcels::lock compares master names), so nothing new is written under
//    the old secret by a kiosk after rekey has passed its parcel.
//  - Versions are rewritten in place, not appended as new versions: a
//    version keeps its number, time, kiosk and VM; only its chunk tables
//    (and so its parent_digest, re-chained in order) change. New versions
//    would shuffle the history (the newest number holding the oldest
//    content until the run ends, a kiosk resuming in between would resume
//    old work) and renumber what users refer to. Each rewrite is a
//    put-if-match on the tag read, read back and checked (as the master
//    rotation does), then its refs/<n> is rewritten (its sealed length
//    changed).
//  - Readable at every point: a reader needs no convergence secret (a
//    chunk's key is in the manifest referencing it), so a version opens
//    whether it was rewritten or not, under the current master or a
//    previous one. A rewritten version says so in its header:
//    `rekeyed_under` (convergenceId of the secret its chunks are under: how
//    a later run skips it) and `rekeyed_from` (the digest of the plaintext
//    it replaced). A child not yet rewritten still binds that old plaintext;
//    verifyChain accepts a parent whose rekeyed_from is what the child
//    binds, so an interrupted rekey never reads as a fork.
//  - Re-chaining checks before it binds: a version whose parent_digest
//    names neither its parent as read nor the plaintext that parent
//    replaced is a fork the store made; rekey stops (Corrupt) rather than
//    launder it into a valid chain.
//  - Disk, RAM, NVRAM and TPM chunks are fixed: decrypted with the key in
//    the manifest, encrypted under the new secret (a new name), uploaded
//    once (put-if-absent; a name seen this run is not sent twice), and the
//    old name -> new reference kept for the run, so a chunk shared by many
//    versions is converted once. Memory images (the `memory` recipe) are
//    re-chunked: the plaintext streams through a StreamingChunker with the
//    new secret's gear table, one chunk in memory at a time, so that later
//    saves (chunked with the new gear table) dedup against it.
//  - Each parcel is converted holding its lock (LockLease, kiosk
//    "isrctl-rekey", heartbeat on): no kiosk resumes it half-converted, and
//    gc refuses while it runs. Before each version is written the lease is
//    confirmed (a conditional write). A parcel a kiosk holds is skipped and
//    reported; so is one taken over during the run. A lock left by an
//    interrupted rekey (our kiosk id) is taken over by the next run.
//  - Only when no parcel was skipped is the account rewritten without the
//    previous masters and previous_convergence (put-if-match again; the
//    key derived at sign-in, no second Argon2id run).
//  - The old chunks are then unreferenced; the caller may run gc at once
//    (RekeyOptions::collectGarbageGrace; `isrctl user rekey` does, with the
//    usual 24 h grace, unless --no-gc) so that the store stops holding
//    anything under the old secret.
#include "parcel/rekey.h"

#include "memimg/memimg.h"
#include "parcel/account_internal.h"
#include "parcel/lock_lease.h"
#include "util/fault.h"
#include "util/log.h"

#include <map>
#include <set>

namespace isr::parcel {

std::string convergenceId(const crypto::Secret& convergence) {
    crypto::Hash h =
        crypto::keyedHash(convergence.view(), asBytes(std::string("isr-convergence-id-v1")));
    return toHex(ByteView(h.data(), 16));
}

namespace {

// Encrypts chunks under the new secret and uploads what is new, in batches.
class ChunkConverter {
public:
    ChunkConverter(Parcels& parcels, memimg::Chunker chunker, const RekeyOptions& options,
                   RekeyReport& report)
        : parcels_(parcels), chunker_(std::move(chunker)), options_(options), report_(report) {}

    // Disk, RAM, NVRAM and TPM tables and refs; the memory image re-chunked.
    Status convert(Manifest& m) {
        for (auto* table : {&m.disk, &m.ram})
            for (auto& entry : *table)
                if (entry) {
                    ISR_TRY_ASSIGN(*entry, fixed(*entry));
                }
        for (auto* single : {&m.nvram, &m.tpmState})
            if (*single) {
                ISR_TRY_ASSIGN(**single, fixed(**single));
            }
        ISR_TRY_ASSIGN(m.memory, rechunk(m.memory));
        return flush();
    }

    Status flush() {
        if (pending_.empty())
            return {};
        Parcels::UploadOptions upload;
        upload.askStore = false; // mostly new names: put-if-absent straight away
        ISR_TRY_ASSIGN(auto sent, parcels_.uploadChunks(pending_, upload));
        report_.chunksUploaded += sent.chunks;
        report_.bytesUploaded += sent.bytes;
        pending_.clear();
        pendingBytes_ = 0;
        return {};
    }

private:
    ByteView secret() const { return parcels_.secrets().convergence.view(); }

    Result<chunk::ChunkRef> fixed(const chunk::ChunkRef& old) {
        if (auto it = converted_.find(old.name); it != converted_.end())
            return it->second;
        ISR_TRY_ASSIGN(Bytes plain, parcels_.readChunk(old));
        crypto::WipeOnExit wipe(plain);
        chunk::EncodedChunk enc = chunk::encode(secret(), plain);
        const chunk::ChunkRef ref = enc.ref;
        ISR_TRY_STATUS(queue(std::move(enc)));
        converted_.emplace(old.name, ref);
        return ref;
    }

    // The plaintext of `recipe` cut again with the new secret's gear table,
    // streamed: one source chunk and the chunker's tail in memory at a time.
    Result<std::vector<chunk::ChunkRef>> rechunk(const std::vector<chunk::ChunkRef>& recipe) {
        std::vector<chunk::ChunkRef> out;
        if (recipe.empty())
            return out;
        memimg::StreamingChunker stream(chunker_);
        auto onChunk = [&](ByteView piece) -> Status {
            chunk::EncodedChunk enc = chunk::encode(secret(), piece);
            out.push_back(enc.ref);
            return queue(std::move(enc));
        };
        for (const auto& ref : recipe) {
            ISR_TRY_ASSIGN(Bytes plain, parcels_.readChunk(ref));
            crypto::WipeOnExit wipe(plain);
            report_.memoryBytes += plain.size();
            ISR_TRY_STATUS(stream.feed(plain, onChunk));
        }
        ISR_TRY_STATUS(stream.finish(onChunk));
        return out;
    }

    Status queue(chunk::EncodedChunk enc) {
        report_.chunksEncoded++;
        if (!sent_.insert(enc.ref.name).second)
            return {}; // already uploaded (or queued) by this run
        pendingBytes_ += enc.ciphertext.size();
        pending_.push_back(std::move(enc));
        if (pendingBytes_ >= options_.batchBytes)
            return flush();
        return {};
    }

    Parcels& parcels_;
    memimg::Chunker chunker_;
    const RekeyOptions& options_;
    RekeyReport& report_;
    std::map<chunk::ChunkName, chunk::ChunkRef> converted_; // old name -> new ref
    std::set<chunk::ChunkName> sent_;                       // new names queued or uploaded
    std::vector<chunk::EncodedChunk> pending_;
    std::size_t pendingBytes_ = 0;
};

// What a version was and is, for re-binding its children.
struct ChainEntry {
    crypto::Hash asRead{};
    std::optional<crypto::Hash> rekeyedFrom; // as read
    crypto::Hash now{};                      // after this run
};

class Rekey {
public:
    Rekey(store::Store& store, detail::AccountForRewrite& opened, memimg::Chunker chunker,
          const RekeyOptions& options, RekeyReport& report, const ProgressFn& progress)
        : store_(store), opened_(opened), parcels_(store, detail::copySecrets(opened.secrets)),
          newId_(convergenceId(opened.secrets.convergence)), options_(options), report_(report),
          progress_(progress), converter_(parcels_, std::move(chunker), options, report) {}

    Status run() {
        // A parcel created meanwhile is converted too.
        ISR_TRY_STATUS(detail::forEachParcelUntilNoneNew(
            parcels_, total_, [this](const std::string& name) { return parcel(name); }));
        if (!report_.locked.empty())
            return {}; // the old secret stays: those parcels still need it
        ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.rekey.before-finish"));
        UserSecrets done = detail::copySecrets(opened_.secrets);
        done.previousMasters.clear();
        done.previousConvergence.reset();
        ISR_TRY_STATUS(detail::rewriteAccount(store_, opened_, std::move(done)));
        report_.finished = true;
        return {};
    }

private:
    Status parcel(const std::string& name) {
        LockLease lease(parcels_, name, options_.kiosk);
        ISR_TRY_ASSIGN(LockAttempt attempt, lease.acquire(false));
        if (!attempt.acquired && attempt.lock.kiosk == options_.kiosk) {
            ISR_LOG_INFO("parcel")
                << "rekey takes over the lock of " << name << " left by an interrupted rekey";
            ISR_TRY_ASSIGN(attempt, lease.acquire(true));
        }
        if (!attempt.acquired) {
            report_.locked.emplace_back(name, attempt.lock);
            return {};
        }
        lease.startHeartbeat(options_.heartbeatInterval);
        Status converted = versions(name, lease);
        lease.stopHeartbeat();
        if (!converted.ok() && converted.error().code == Errc::Locked) {
            // Taken over by a kiosk during the run: what was written stays
            // (every version reads), the rest waits for --finish.
            auto holder = parcels_.readLock(name);
            LockInfo info;
            if (holder.ok() && *holder)
                info = **holder;
            report_.locked.emplace_back(name, info);
            return {};
        }
        if (auto released = lease.release(); !released.ok()) {
            ISR_LOG_WARN("parcel")
                << "rekey could not release the lock of " << name << ": "
                << released.error().describe() << " (the next rekey takes it over)";
        }
        if (!converted.ok())
            return std::move(converted).error().context("parcel '" + name + "'");
        report_.parcels++;
        return {};
    }

    Status versions(const std::string& name, LockLease& lease) {
        // Listed after the lock is ours: a session that held it committed
        // before releasing it.
        auto listed = parcels_.versions(name);
        if (!listed.ok()) {
            if (listed.error().code == Errc::NotFound)
                return {}; // removed since listed
            return std::move(listed).error();
        }
        total_ = std::max(total_, done_ + listed->size());
        std::map<std::uint64_t, ChainEntry> chain;
        for (std::uint64_t n : *listed) {
            ISR_TRY_STATUS(version(name, n, lease, chain));
            if (progress_)
                progress_("rekey", ++done_, total_);
        }
        return {};
    }

    // refs/<n> describing `m` sealed into `sealedLength` bytes, written if
    // missing or different. A write failure is only a warning (gc --user
    // backfills).
    Status ensureReferenceList(const std::string& name, const Manifest& m,
                               std::uint64_t sealedLength) {
        const std::string key = refsKey(parcels_.user(), name, m.version);
        const ReferenceList want = referenceListOf(m, sealedLength);
        auto have = store_.get(key);
        if (have.ok()) {
            auto list = decodeReferenceList(*have);
            if (list.ok() && *list == want)
                return {};
        } else if (have.error().code != Errc::NotFound) {
            return std::move(have).error().context("reading " + key);
        }
        if (auto r = store_.put(key, encodeReferenceList(want)); !r.ok()) {
            ISR_LOG_WARN("parcel") << key << " not written: " << r.error().describe();
        }
        return {};
    }

    Status version(const std::string& name, std::uint64_t n, LockLease& lease,
                   std::map<std::uint64_t, ChainEntry>& chain) {
        const std::string key = versionKey(parcels_.user(), name, n);
        auto raw = store_.getTagged(key);
        if (!raw.ok()) {
            if (raw.error().code == Errc::NotFound)
                return {}; // pruned since listed
            return std::move(raw).error().context("reading " + key);
        }
        bool usedPrevious = false;
        auto plain = parcels_.openVersion(name, n, raw->data, &usedPrevious);
        if (!plain.ok())
            return Error(Errc::Corrupt, key + " opens with no key of the account (damaged); "
                                              "rekey stops before it (see 'isrctl fsck --user')");
        crypto::WipeOnExit wipePlain(*plain);
        auto decoded = decodeManifest(*plain);
        if (!decoded.ok())
            return std::move(decoded).error().context(key);
        if (decoded->version != n)
            return Error(Errc::Corrupt,
                         key + " claims version " + std::to_string(decoded->version));
        const Manifest& m = *decoded;
        ChainEntry entry{*m.digest, m.rekeyedFrom, *m.digest};

        Manifest next = m;
        if (m.rekeyedUnder != newId_) {
            if (m.parentDigest) {
                if (auto it = chain.find(m.parent); it != chain.end()) {
                    const ChainEntry& parent = it->second;
                    if (*m.parentDigest != parent.asRead && parent.rekeyedFrom != m.parentDigest)
                        return Error(Errc::Corrupt,
                                     "version " + std::to_string(n) +
                                         " does not descend from the store's version " +
                                         std::to_string(m.parent) +
                                         " (forked); rekey stops before it, nothing of it "
                                         "was changed");
                    next.parentDigest = parent.now;
                }
                // A parent gone (gc retention) binds nothing readable: kept.
            }
            auto converted = converter_.convert(next);
            if (!converted.ok())
                return std::move(converted).error().context("rekey of " + key);
            ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.rekey.chunks"));
        }
        // (A version rekeyed under this secret by an earlier run keeps its
        // plaintext; it is written again only if a previous master seals it.)
        Bytes newPlain = encodeManifest(next);
        crypto::WipeOnExit wipeNew(newPlain);
        if (newPlain == *plain) {
            if (!usedPrevious) {
                // Under the new secret already: rewritten by an earlier run, or
                // saved by a kiosk that signed in after the rekey started.
                report_.versionsAlreadyNew++;
                chain[n] = entry;
                // An earlier run killed between the rewrite and its list.
                return ensureReferenceList(name, m, raw->data.size());
            }
        } else {
            next.rekeyedFrom = m.digest;
            next.rekeyedUnder = newId_;
            crypto::wipe(newPlain);
            newPlain = encodeManifest(next);
        }
        const crypto::Hash newDigest = crypto::hash(newPlain);
        const Bytes sealed = parcels_.sealPlaintext(name, n, newPlain);

        // Still ours? (a conditional write of the lock, heartbeat paused)
        lease.stopHeartbeat();
        Status confirmed = lease.confirm();
        lease.startHeartbeat(options_.heartbeatInterval);
        ISR_TRY_STATUS(std::move(confirmed));
        auto tag = store_.putIfMatch(key, sealed, raw->tag);
        if (!tag.ok()) {
            if (tag.error().code == Errc::Conflict)
                return Error(Errc::Conflict, key + " changed while rekey converted it; nothing "
                                                   "of it was overwritten (run rekey again)");
            return std::move(tag).error().context("rewriting " + key);
        }
        ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.rekey.version"));
        // The plaintext written, under the current master, or the old
        // object goes back and rekey stops.
        ISR_TRY_STATUS(detail::checkRewrittenVersion(store_, parcels_, name, n, key, newDigest,
                                                     raw->data, "rekey"));
        // Its sealed length changed: the clear reference list must follow
        // (keyless gc believes a list only for an object of its length). A
        // failure only makes gc --all skip the user until gc --user.
        if (auto r = store_.put(refsKey(parcels_.user(), name, n),
                                encodeReferenceList(referenceListOf(next, sealed.size())));
            !r.ok()) {
            ISR_LOG_WARN("parcel")
                << key << " rekeyed but its reference list not written: " << r.error().describe();
        }
        entry.now = newDigest;
        chain[n] = entry;
        report_.versionsRewritten++;
        return {};
    }

    store::Store& store_;
    detail::AccountForRewrite& opened_;
    Parcels parcels_;
    const std::string newId_;
    const RekeyOptions& options_;
    RekeyReport& report_;
    const ProgressFn& progress_;
    ChunkConverter converter_;
    std::uint64_t total_ = 0, done_ = 0;
};

Result<RekeyReport> runRekey(store::Store& store, const std::string& user,
                             std::string_view password, bool finishOnly,
                             const RekeyOptions& options, const ProgressFn& progress) {
    ISR_TRY_ASSIGN(detail::AccountForRewrite opened,
                   detail::openAccountForRewrite(store, user, password));
    RekeyReport report;
    if (!opened.secrets.previousConvergence) {
        if (finishOnly) {
            report.finished = true;
            return report;
        }
        UserSecrets next;
        next.user = user;
        next.master = crypto::Secret::random(crypto::kKeySize);
        next.convergence = crypto::Secret::random(crypto::kKeySize);
        next.s3 = opened.secrets.s3;
        next.previousMasters.push_back(opened.secrets.master.clone());
        for (const auto& m : opened.secrets.previousMasters)
            next.previousMasters.push_back(m.clone());
        next.previousConvergence = opened.secrets.convergence.clone();
        ISR_TRY_STATUS(detail::rewriteAccount(store, opened, std::move(next)));
        report.started = true;
        ISR_LOG_INFO("parcel") << "account of " << user
                               << " holds a new convergence secret and master key";
    }
    auto stopped = [&](const Error& e) {
        return Error(e.code, e.message +
                                 " -- the account holds the new secret; every version "
                                 "still opens; finish with 'isrctl user rekey --finish " +
                                 user + "'");
    };
    if (auto st = ISR_FAULT_POINT("parcel.rekey.after-account"); !st.ok())
        return stopped(st.error());
    ISR_TRY_ASSIGN(memimg::Chunker chunker,
                   memimg::Chunker::create(opened.secrets.convergence.view()));
    Rekey rekey(store, opened, std::move(chunker), options, report, progress);
    if (auto st = rekey.run(); !st.ok())
        return stopped(st.error());
    if (report.finished && options.collectGarbageGrace) {
        // Parcels with the final secrets (no previous masters).
        Parcels parcels(store, detail::copySecrets(opened.secrets));
        auto gc = collectGarbage(parcels, *options.collectGarbageGrace, /*dryRun=*/false);
        if (gc.ok())
            report.gc = *gc;
        else
            report.gcError = gc.error().describe();
    }
    return report;
}

} // namespace

Result<RekeyReport> rekeyUser(store::Store& store, const std::string& user,
                              std::string_view password, const RekeyOptions& options,
                              const ProgressFn& progress) {
    return runRekey(store, user, password, /*finishOnly=*/false, options, progress);
}

Result<RekeyReport> finishRekey(store::Store& store, const std::string& user,
                                std::string_view password, const RekeyOptions& options,
                                const ProgressFn& progress) {
    return runRekey(store, user, password, /*finishOnly=*/true, options, progress);
}

} // namespace isr::parcel
