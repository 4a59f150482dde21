// fsck and garbage collection.
#include "parcel/parcel.h"
#include "util/log.h"

#include <ctime>
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
    ISR_TRY_ASSIGN(auto names, parcels.list());
    std::map<chunk::ChunkName, chunk::ChunkRef> refs;
    for (const auto& parcel : names) {
        ISR_TRY_ASSIGN(auto versions, parcels.versions(parcel));
        for (auto n : versions) {
            ++report.manifestsChecked;
            auto m = parcels.manifest(parcel, n);
            if (!m.ok()) {
                report.problems.push_back(m.error().describe());
                continue;
            }
            for (const auto& e : m->disk)
                if (e)
                    refs.emplace(e->name, *e);
            for (const auto& r : m->memory)
                refs.emplace(r.name, r);
            for (const auto& r : {m->nvram, m->tpmState})
                if (r)
                    refs.emplace(r->name, *r);
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
    const std::int64_t now = std::time(nullptr);
    GcReport report;
    ISR_TRY_ASSIGN(auto names, parcels.list());
    std::set<chunk::ChunkName> referenced;
    for (const auto& parcel : names) {
        ISR_TRY_ASSIGN(auto lock, parcels.readLock(parcel));
        if (lock && now - lock->heartbeat < graceSeconds)
            return Error(Errc::Locked, "parcel '" + parcel + "' is checked out at " + lock->kiosk +
                                           "; its session's chunks are not committed yet");
        ISR_TRY_ASSIGN(auto versions, parcels.versions(parcel));
        for (auto n : versions) {
            // A manifest we cannot read might reference anything: stop rather
            // than delete chunks it may need.
            ISR_TRY_ASSIGN(Manifest m, parcels.manifest(parcel, n));
            for (const auto& e : m.disk)
                if (e)
                    referenced.insert(e->name);
            for (const auto& r : m.memory)
                referenced.insert(r.name);
            for (const auto& r : {m.nvram, m.tpmState})
                if (r)
                    referenced.insert(r->name);
        }
    }
    report.referenced = referenced.size();
    ISR_TRY_ASSIGN(auto chunks, parcels.store().list(chunkPrefix(parcels.user())));
    for (const auto& o : chunks) {
        auto name = chunkNameFromKey(o.key);
        if (name && referenced.count(*name))
            continue;
        if (o.modified == 0 || now - o.modified < graceSeconds) {
            ++report.keptYoung;
            continue;
        }
        if (!dryRun)
            ISR_TRY_STATUS(parcels.store().remove(o.key));
        ++report.removed;
        report.removedBytes += o.size;
    }
    return report;
}

} // namespace isr::parcel
