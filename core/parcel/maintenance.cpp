// fsck and garbage collection.
//
// gc has one core (collectUser) and two sources of what a version
// references: its manifest (gc --user, the user's keys) or its clear
// reference list (gc --all, no keys; FORMAT.md, "Reference list"). The core
// owns the lock check, the retention, the order of removals and the sweep,
// so both ways decide alike. Decisions:
//  - Everything is read and checked before anything is removed: a keyless
//    run that finds one unusable list for a version it must keep (or whose
//    age it needs) skips the whole user, having removed nothing.
//  - Pruned versions go oldest first, versions/<n> before refs/<n>: a kill
//    leaves the newest versions (which resume) and at worst a list whose
//    version is gone, which the next run removes once it is past the grace
//    period (a list is written just after its version, so a young one may
//    be a commit in progress).
//  - A store error stops the run. Only pruned versions and chunks no kept
//    version references are ever removed, so what is left is consistent
//    (fsck --user clean) and a rerun finishes the job.
#include "parcel/inventory.h"
#include "parcel/parcel.h"
#include "util/fault.h"
#include "util/log.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>

namespace isr::parcel {

namespace {

// "users/<u>/chunks/ab/<64 hex>" -> checks the fan-out prefix and parses the name.
std::optional<chunk::ChunkName> chunkNameFromKey(const std::string& key) {
    auto slash = key.rfind('/');
    if (slash == std::string::npos || slash < 3)
        return std::nullopt;
    std::string hex = key.substr(slash + 1);
    if (key.compare(slash - 2, 2, hex, 0, 2) != 0 || key[slash - 3] != '/')
        return std::nullopt;
    auto name = chunk::nameFromHex(hex);
    if (!name.ok())
        return std::nullopt;
    return *name;
}

bool isChunkKey(const std::string& key) {
    auto pos = key.find("/chunks/");
    return key.rfind("users/", 0) == 0 && pos != std::string::npos && key.find('/', 6) == pos;
}

// "users/<u>/parcels/<p>/refs/<n>" -> n.
std::optional<std::uint64_t> refsKeyNumber(std::string_view key) {
    if (key.rfind("users/", 0) != 0)
        return std::nullopt;
    auto slash = key.rfind('/');
    if (slash == std::string_view::npos || slash < 5 || key.substr(slash - 5, 6) != "/refs/")
        return std::nullopt;
    // users / u / parcels / p / refs / n
    if (std::count(key.begin(), key.end(), '/') != 5 || key.find("/parcels/") == std::string::npos)
        return std::nullopt;
    return parseVersionNumber(key.substr(slash + 1));
}

// One parcel's version objects and reference lists, from one listing.
struct ListedVersion {
    std::uint64_t n = 0;
    std::uint64_t sealedSize = 0;          // of versions/<n>
    std::optional<store::ObjectInfo> refs; // refs/<n>, if present
};
struct ListedParcel {
    std::string name;
    std::vector<ListedVersion> versions;       // ascending
    std::vector<store::ObjectInfo> orphanRefs; // refs/<n> without versions/<n>
};

// A user's parcels (those with a version or a reference list), one listing.
Result<std::vector<ListedParcel>> listParcels(store::Store& store, const std::string& user) {
    const std::string prefix = "users/" + user + "/parcels/";
    ISR_TRY_ASSIGN(auto objects, store.list(prefix));
    struct Found {
        std::map<std::uint64_t, std::uint64_t> versions;
        std::map<std::uint64_t, store::ObjectInfo> refs;
    };
    std::map<std::string, Found> found;
    for (auto& o : objects) {
        std::string_view rest = std::string_view(o.key).substr(prefix.size());
        auto slash = rest.find('/');
        if (slash == std::string_view::npos)
            continue;
        std::string parcel(rest.substr(0, slash));
        std::string_view tail = rest.substr(slash + 1);
        if (tail.rfind("versions/", 0) == 0) {
            if (auto n = parseVersionNumber(tail.substr(9)))
                found[parcel].versions[*n] = o.size;
        } else if (tail.rfind("refs/", 0) == 0) {
            if (auto n = parseVersionNumber(tail.substr(5)))
                found[parcel].refs[*n] = o;
        }
    }
    std::vector<ListedParcel> out;
    for (auto& [name, f] : found) {
        if (!validateName("parcel name", name).ok())
            continue; // not a key isr writes; never touched
        ListedParcel p;
        p.name = name;
        for (const auto& [n, size] : f.versions) {
            ListedVersion v{n, size, std::nullopt};
            if (auto r = f.refs.find(n); r != f.refs.end())
                v.refs = r->second;
            p.versions.push_back(std::move(v));
        }
        for (const auto& [n, info] : f.refs)
            if (!f.versions.count(n))
                p.orphanRefs.push_back(info);
        out.push_back(std::move(p));
    }
    return out;
}

// What gc needs to know of one version it keeps (or whose age it needs).
struct VersionFacts {
    std::int64_t created = 0;
    std::vector<chunk::ChunkName> chunks;
    std::optional<Bytes> backfill; // gc with keys: the refs/<n> to (re)write
};

class FactSource {
public:
    virtual ~FactSource() = default;
    // nullopt: this version's facts cannot be had (keyless: no usable
    // reference list), `why` says so. An error: the store failed.
    virtual Result<std::optional<VersionFacts>> read(const std::string& parcel,
                                                     const ListedVersion& v, std::string& why) = 0;
};

// gc --user: the manifests, opened with the user's keys. A manifest that
// does not open stops the run: it might reference anything.
class ManifestFacts final : public FactSource {
public:
    explicit ManifestFacts(Parcels& parcels) : parcels_(parcels) {}
    Result<std::optional<VersionFacts>> read(const std::string& parcel, const ListedVersion& v,
                                             std::string&) override {
        ISR_TRY_ASSIGN(Manifest m, parcels_.manifest(parcel, v.n));
        ReferenceList want = referenceListOf(m, v.sealedSize);
        VersionFacts facts;
        facts.created = m.created;
        facts.chunks = want.chunks;
        bool good = false;
        if (v.refs) {
            auto raw = parcels_.store().get(refsKey(parcels_.user(), parcel, v.n));
            if (raw.ok()) {
                auto have = decodeReferenceList(*raw);
                good = have.ok() && *have == want;
            } else if (raw.error().code != Errc::NotFound && raw.error().code != Errc::Corrupt) {
                return std::move(raw).error();
            }
        }
        if (!good)
            facts.backfill = encodeReferenceList(want);
        return std::optional<VersionFacts>(std::move(facts));
    }

private:
    Parcels& parcels_;
};

// gc --all: the clear reference lists, believed only if whole (checksum),
// for this version number and for the versions/<n> object the store holds
// now (its sealed length).
class ReferenceListFacts final : public FactSource {
public:
    ReferenceListFacts(store::Store& store, std::string user)
        : store_(store), user_(std::move(user)) {}
    Result<std::optional<VersionFacts>> read(const std::string& parcel, const ListedVersion& v,
                                             std::string& why) override {
        const std::string what = "version " + std::to_string(v.n) + " of parcel '" + parcel + "'";
        if (!v.refs) {
            why = what + " has no reference list";
            return std::optional<VersionFacts>();
        }
        auto raw = store_.get(refsKey(user_, parcel, v.n));
        if (!raw.ok()) {
            if (raw.error().code == Errc::NotFound) {
                why = what + " has no reference list";
                return std::optional<VersionFacts>();
            }
            if (raw.error().code == Errc::Corrupt) { // over the size limit
                why = what + ": reference list damaged (" + raw.error().message + ")";
                return std::optional<VersionFacts>();
            }
            return std::move(raw).error();
        }
        auto list = decodeReferenceList(*raw);
        if (!list.ok()) {
            why = what + ": reference list damaged (" + list.error().message + ")";
            return std::optional<VersionFacts>();
        }
        if (list->version != v.n) {
            why = what + ": reference list is for version " + std::to_string(list->version);
            return std::optional<VersionFacts>();
        }
        if (list->sealedLength != v.sealedSize) {
            why = what + ": reference list was written for another versions/" +
                  std::to_string(v.n) + " object (" + std::to_string(list->sealedLength) +
                  " bytes, the store has " + std::to_string(v.sealedSize) + ")";
            return std::optional<VersionFacts>();
        }
        VersionFacts facts;
        facts.created = list->created;
        facts.chunks = std::move(list->chunks);
        return std::optional<VersionFacts>(std::move(facts));
    }

private:
    store::Store& store_;
    std::string user_;
};

// The one gc (see parcel.h, "One garbage collection of one user"). Locked
// if a parcel is open; with *skipWhy set (and nothing done) if `facts`
// could not say what a version that matters references.
Result<GcReport> collectUser(store::Store& store, const std::string& user,
                             std::int64_t graceSeconds, bool dryRun, const Retention& retention,
                             FactSource& facts, std::vector<PruneReport>* pruned,
                             std::string* skipWhy) {
    const std::int64_t now = std::time(nullptr);
    GcReport report;
    ISR_TRY_ASSIGN(auto parcels, listParcels(store, user));
    // Every lock first: nothing is removed while a session may be writing.
    Parcels keyless(store, UserSecrets{user, {}, {}, {}, {}, {}});
    for (const auto& p : parcels) {
        ISR_TRY_ASSIGN(auto lock, keyless.readLock(p.name));
        if (lock && now - lock->heartbeat < graceSeconds)
            return Error(Errc::Locked, "parcel '" + p.name + "' is checked out at " +
                                           lock->holderLabel() + " (heartbeat " +
                                           std::to_string(now - lock->heartbeat) +
                                           " s ago); its session's chunks are not committed yet");
    }
    // Plan every parcel before removing anything.
    struct Plan {
        PruneReport prune;
        std::vector<ListedVersion> removed;
        std::vector<std::pair<std::uint64_t, Bytes>> backfill;
        std::vector<store::ObjectInfo> orphanRefs;
    };
    std::vector<Plan> plans;
    std::set<chunk::ChunkName> referenced;
    for (const auto& p : parcels) {
        Plan plan;
        plan.prune.parcel = p.name;
        std::uint64_t index = 0;
        // Newest first, so "the newest N" is the first N seen.
        for (auto it = p.versions.rbegin(); it != p.versions.rend(); ++it, ++index) {
            const ListedVersion& v = *it;
            std::optional<VersionFacts> f;
            auto readFacts = [&]() -> Status {
                std::string why;
                ISR_TRY_ASSIGN(f, facts.read(p.name, v, why));
                if (!f && skipWhy)
                    *skipWhy = why;
                return {};
            };
            bool keep = !retention.active() || index == 0 ||
                        (retention.keepLast > 0 && index < retention.keepLast);
            if (!keep && retention.keepWithin > 0) {
                ISR_TRY_STATUS(readFacts());
                if (!f)
                    return GcReport{};
                keep = now - f->created < retention.keepWithin;
            }
            if (!keep) {
                plan.prune.removed.push_back(v.n);
                plan.removed.push_back(v);
                continue;
            }
            if (!f) {
                ISR_TRY_STATUS(readFacts());
                if (!f)
                    return GcReport{};
            }
            plan.prune.kept.push_back(v.n);
            referenced.insert(f->chunks.begin(), f->chunks.end());
            if (f->backfill)
                plan.backfill.emplace_back(v.n, std::move(*f->backfill));
        }
        for (const auto& o : p.orphanRefs)
            if (o.modified != 0 && now - o.modified >= graceSeconds)
                plan.orphanRefs.push_back(o);
        plans.push_back(std::move(plan));
    }
    for (auto& plan : plans) {
        const std::string& parcel = plan.prune.parcel;
        for (const auto& [n, data] : plan.backfill) {
            if (!dryRun)
                ISR_TRY_STATUS(store.put(refsKey(user, parcel, n), data));
            ++report.refsWritten;
        }
        // Oldest first: an interruption leaves the newest versions, which
        // still resume, and the next run finishes the job.
        std::sort(plan.removed.begin(), plan.removed.end(),
                  [](const auto& a, const auto& b) { return a.n < b.n; });
        std::sort(plan.prune.removed.begin(), plan.prune.removed.end());
        for (const auto& v : plan.removed) {
            if (!dryRun) {
                ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.gc.prune"));
                ISR_TRY_STATUS(store.remove(versionKey(user, parcel, v.n)));
                if (v.refs)
                    ISR_TRY_STATUS(store.remove(v.refs->key));
            }
            ++report.versionsRemoved;
            report.versionBytes += v.sealedSize + (v.refs ? v.refs->size : 0);
        }
        for (const auto& o : plan.orphanRefs) {
            if (!dryRun)
                ISR_TRY_STATUS(store.remove(o.key));
            report.versionBytes += o.size;
        }
        if (pruned)
            pruned->push_back(std::move(plan.prune));
    }
    report.referenced = referenced.size();
    ISR_TRY_ASSIGN(auto chunks, store.list(chunkPrefix(user)));
    for (const auto& o : chunks) {
        auto name = chunkNameFromKey(o.key);
        if (name && referenced.count(*name))
            continue;
        if (o.modified == 0 || now - o.modified < graceSeconds) {
            ++report.keptYoung;
            continue;
        }
        if (!dryRun) {
            ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.gc.sweep"));
            ISR_TRY_STATUS(store.remove(o.key));
        }
        ++report.removed;
        report.removedBytes += o.size;
    }
    return report;
}

} // namespace

Result<FsckReport> fsckStore(store::Store& store, const ProgressFn& progress) {
    FsckReport report;
    if (auto st = checkStore(store); !st.ok())
        return std::move(st).error();
    ISR_TRY_ASSIGN(auto objects, store.list("users/"));
    std::uint64_t i = 0;
    for (const auto& o : objects) {
        ++i;
        ++report.objectsChecked;
        if (isChunkKey(o.key)) {
            ++report.chunksChecked;
            auto name = chunkNameFromKey(o.key);
            if (!name) {
                report.problems.push_back(o.key + ": not a valid chunk name");
                continue;
            }
            auto data = store.get(o.key);
            if (!data.ok()) {
                report.problems.push_back(o.key + ": " + data.error().describe());
                continue;
            }
            if (chunk::nameOf(*data) != *name)
                report.problems.push_back(o.key + ": content does not match its name (corrupt)");
        } else if (o.key.size() > 8 && o.key.compare(o.key.size() - 8, 8, "/account") == 0) {
            auto data = store.get(o.key);
            if (!data.ok()) {
                report.problems.push_back(o.key + ": " + data.error().describe());
                continue;
            }
            auto doc = json::parse(asString(*data));
            if (!doc.ok() || !doc->getString("sealed").ok() || !doc->find("kdf"))
                report.problems.push_back(o.key + ": account is damaged");
        } else if (auto n = refsKeyNumber(o.key)) {
            // A damaged list makes gc --all skip its user; gc --user rewrites it.
            auto data = store.get(o.key);
            if (!data.ok()) {
                report.problems.push_back(o.key + ": " + data.error().describe());
                continue;
            }
            auto list = decodeReferenceList(*data);
            if (!list.ok())
                report.problems.push_back(o.key + ": " + list.error().message);
            else if (list->version != *n)
                report.problems.push_back(o.key + ": reference list is for version " +
                                          std::to_string(list->version));
        } else if (o.size == 0 && o.key.find("/versions/") != std::string::npos) {
            report.problems.push_back(o.key + ": empty manifest");
        }
        if (progress && (i % 256 == 0 || i == objects.size()))
            progress("fsck", i, objects.size());
    }
    return report;
}

Result<FsckReport> fsckUser(Parcels& parcels, const ProgressFn& progress) {
    FsckReport report;
    ISR_TRY_ASSIGN(auto listed, listParcels(parcels.store(), parcels.user()));
    std::map<chunk::ChunkName, chunk::ChunkRef> refs;
    for (const auto& parcel : listed) {
        for (const auto& v : parcel.versions) {
            ++report.manifestsChecked;
            auto m = parcels.manifest(parcel.name, v.n);
            if (!m.ok()) {
                report.problems.push_back(m.error().describe());
                continue;
            }
            for (const auto& r : referencedChunks(*m))
                refs.emplace(r.name, r);
            // The clear list must say what the manifest says (a version
            // without one, written before lists existed, is fine: gc --user
            // writes it).
            if (!v.refs)
                continue;
            auto raw = parcels.store().get(v.refs->key);
            if (!raw.ok()) {
                if (raw.error().code != Errc::NotFound)
                    report.problems.push_back(v.refs->key + ": " + raw.error().describe());
                continue;
            }
            auto list = decodeReferenceList(*raw);
            if (!list.ok())
                report.problems.push_back(v.refs->key + ": " + list.error().message);
            else if (*list != referenceListOf(*m, v.sealedSize))
                report.problems.push_back(v.refs->key +
                                          ": reference list does not match its manifest "
                                          "(gc --user rewrites it)");
        }
    }
    std::uint64_t i = 0;
    for (const auto& [name, ref] : refs) {
        ++i;
        ++report.chunksChecked;
        auto data = parcels.readChunk(ref);
        if (!data.ok())
            report.problems.push_back(data.error().describe());
        if (progress && (i % 64 == 0 || i == refs.size()))
            progress("verify", i, refs.size());
    }
    return report;
}

Result<GcReport> collectGarbage(Parcels& parcels, std::int64_t graceSeconds, bool dryRun) {
    return collectGarbage(parcels, graceSeconds, dryRun, Retention{}, nullptr);
}

Result<GcReport> collectGarbage(Parcels& parcels, std::int64_t graceSeconds, bool dryRun,
                                const Retention& retention, std::vector<PruneReport>* pruned) {
    ManifestFacts facts(parcels);
    return collectUser(parcels.store(), parcels.user(), graceSeconds, dryRun, retention, facts,
                       pruned, nullptr);
}

Result<UserGcReport> collectGarbageKeyless(store::Store& store, const std::string& user,
                                           std::int64_t graceSeconds, bool dryRun,
                                           const Retention& retention) {
    ISR_TRY_STATUS(validateName("user name", user));
    UserGcReport out;
    out.user = user;
    ReferenceListFacts facts(store, user);
    std::string why;
    auto report =
        collectUser(store, user, graceSeconds, dryRun, retention, facts, &out.pruned, &why);
    if (!report.ok()) {
        if (report.error().code != Errc::Locked)
            return std::move(report).error().context("user '" + user + "'");
        out.skipped = UserGcReport::Skipped::Locked;
        out.reason = report.error().message;
        out.pruned.clear();
        return out;
    }
    if (!why.empty()) {
        out.skipped = UserGcReport::Skipped::References;
        out.reason = why;
        out.pruned.clear();
        return out;
    }
    out.gc = *report;
    return out;
}

Result<StoreGcReport> collectGarbageAll(store::Store& store, std::int64_t graceSeconds, bool dryRun,
                                        const Retention& retention,
                                        const std::function<void(const UserGcReport&)>& onUser) {
    ISR_TRY_STATUS(checkStore(store));
    ISR_TRY_ASSIGN(auto users, listUsers(store));
    StoreGcReport all;
    for (const auto& user : users) {
        ISR_TRY_ASSIGN(UserGcReport r,
                       collectGarbageKeyless(store, user, graceSeconds, dryRun, retention));
        if (r.skipped == UserGcReport::Skipped::Locked)
            ++all.skippedLocked;
        else if (r.skipped == UserGcReport::Skipped::References)
            ++all.skippedReferences;
        GcReport& t = all.total;
        t.referenced += r.gc.referenced;
        t.removed += r.gc.removed;
        t.removedBytes += r.gc.removedBytes;
        t.keptYoung += r.gc.keptYoung;
        t.versionsRemoved += r.gc.versionsRemoved;
        t.versionBytes += r.gc.versionBytes;
        if (onUser)
            onUser(r);
        all.users.push_back(std::move(r));
    }
    return all;
}

} // namespace isr::parcel
