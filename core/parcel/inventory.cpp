// Keyless views of a store for operators: users, parcels, locks, sizes.
#include "parcel/inventory.h"

#include "util/log.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>

namespace isr::parcel {
namespace {

// Splits "a/b/c" at '/'.
std::vector<std::string_view> split(std::string_view key) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        auto slash = key.find('/', start);
        out.push_back(key.substr(start, slash == std::string_view::npos ? slash : slash - start));
        if (slash == std::string_view::npos)
            return out;
        start = slash + 1;
    }
}

// The lock, read the way a signed-in kiosk reads it (Parcels::readLock needs
// no keys: the lock is clear).
Result<std::optional<LockInfo>> readLockKeyless(store::Store& store, const std::string& user,
                                                const std::string& parcel) {
    Parcels keyless(store, UserSecrets{user, {}, {}, {}, {}, {}});
    return keyless.readLock(parcel);
}

std::optional<std::uint64_t> readHead(store::Store& store, const std::string& user,
                                      const std::string& parcel) {
    auto head = store.get(headKey(user, parcel));
    if (!head.ok())
        return std::nullopt;
    std::string text(asString(*head));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    return parseVersionNumber(text);
}

// Everything a user's objects say, from one listing of users/<user>/.
struct Listing {
    bool account = false;
    std::uint64_t accountBytes = 0;
    std::map<std::string, ParcelInventory> parcels;
    std::map<std::string, bool> hasLock;
    std::uint64_t chunks = 0, chunkBytes = 0, otherBytes = 0;
    std::vector<store::ObjectInfo> objects;
};

Result<Listing> listUser(store::Store& store, const std::string& user) {
    ISR_TRY_STATUS(validateName("user name", user));
    const std::string prefix = "users/" + user + "/";
    Listing l;
    ISR_TRY_ASSIGN(l.objects, store.list(prefix));
    for (const auto& o : l.objects) {
        auto parts = split(std::string_view(o.key).substr(prefix.size()));
        if (parts.size() == 1 && parts[0] == "account") {
            l.account = true;
            l.otherBytes += o.size;
        } else if (parts.size() == 3 && parts[0] == "chunks") {
            ++l.chunks;
            l.chunkBytes += o.size;
        } else if (parts.size() >= 3 && parts[0] == "parcels") {
            std::string name(parts[1]);
            auto& p = l.parcels[name];
            p.name = name;
            l.otherBytes += o.size;
            if (parts.size() == 4 && parts[2] == "versions") {
                if (auto n = parseVersionNumber(parts[3])) {
                    p.versions.push_back(*n);
                    p.manifestBytes += o.size;
                }
            } else if (parts.size() == 3 && parts[2] == "lock") {
                l.hasLock[name] = true;
            }
        } else {
            l.otherBytes += o.size; // not ours to interpret; counted, never removed silently
        }
    }
    for (auto& [name, p] : l.parcels)
        std::sort(p.versions.begin(), p.versions.end());
    return l;
}

Status fillParcel(store::Store& store, const std::string& user, ParcelInventory& p, bool hasLock) {
    p.head = readHead(store, user, p.name);
    if (hasLock) {
        ISR_TRY_ASSIGN(p.lock, readLockKeyless(store, user, p.name));
    }
    return {};
}

bool liveLock(const std::optional<LockInfo>& lock) {
    return lock && !lock->stale(std::time(nullptr));
}

Error lockedError(const std::string& user, const std::string& parcel, const LockInfo& lock) {
    return Error(Errc::Locked, "parcel '" + parcel + "' of user '" + user + "' is open at " +
                                   lock.holderLabel() + " (heartbeat " +
                                   std::to_string(std::time(nullptr) - lock.heartbeat) + " s ago)");
}

// Removes `objects` in order; NotFound (another remover, a retry) is fine.
Status removeAll(store::Store& store, const std::vector<store::ObjectInfo>& objects,
                 RemoveReport& report) {
    for (const auto& o : objects) {
        auto st = store.remove(o.key);
        if (!st.ok() && st.error().code != Errc::NotFound)
            return std::move(st).error().context("removing " + o.key);
        ++report.objects;
        report.bytes += o.size;
    }
    return {};
}

} // namespace

Result<std::vector<std::string>> listUsers(store::Store& store) {
    ISR_TRY_ASSIGN(auto objects, store.list("users/"));
    std::set<std::string> users;
    for (const auto& o : objects) {
        auto parts = split(std::string_view(o.key).substr(6));
        if (parts.size() == 2 && parts[1] == "account" && validateName("user name", parts[0]).ok())
            users.insert(std::string(parts[0]));
    }
    return std::vector<std::string>(users.begin(), users.end());
}

Result<UserInventory> userInventory(store::Store& store, const std::string& user) {
    ISR_TRY_ASSIGN(auto l, listUser(store, user));
    if (l.objects.empty())
        return Error(Errc::NotFound, "no user '" + user + "' in this store");
    UserInventory inv;
    inv.user = user;
    inv.chunks = l.chunks;
    inv.chunkBytes = l.chunkBytes;
    inv.otherBytes = l.otherBytes;
    for (auto& [name, p] : l.parcels) {
        ISR_TRY_STATUS(fillParcel(store, user, p, l.hasLock[name]));
        inv.parcels.push_back(std::move(p));
    }
    return inv;
}

Result<ParcelInventory> parcelInventory(store::Store& store, const std::string& user,
                                        const std::string& parcel) {
    ISR_TRY_STATUS(validateName("user name", user));
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    ParcelInventory p;
    p.name = parcel;
    ISR_TRY_ASSIGN(auto objects, store.list(parcelPrefix(user, parcel)));
    bool hasLock = false;
    for (const auto& o : objects) {
        std::string_view rest = std::string_view(o.key).substr(parcelPrefix(user, parcel).size());
        if (rest.rfind("versions/", 0) == 0) {
            if (auto n = parseVersionNumber(rest.substr(9))) {
                p.versions.push_back(*n);
                p.manifestBytes += o.size;
            }
        } else if (rest == "lock") {
            hasLock = true;
        }
    }
    if (p.versions.empty() && !hasLock)
        return Error(Errc::NotFound,
                     "parcel '" + parcel + "' of user '" + user + "' does not exist");
    std::sort(p.versions.begin(), p.versions.end());
    ISR_TRY_STATUS(fillParcel(store, user, p, hasLock));
    return p;
}

Result<StoreStats> storeStats(store::Store& store) {
    StoreStats s;
    ISR_TRY_ASSIGN(auto all, store.list(""));
    std::set<std::string> users, parcels;
    std::vector<std::pair<std::string, std::string>> lockObjects; // user, parcel
    for (const auto& o : all) {
        s.totalBytes += o.size;
        if (o.key.rfind("users/", 0) != 0)
            continue;
        auto parts = split(std::string_view(o.key).substr(6));
        if (parts.size() == 2 && parts[1] == "account") {
            users.insert(std::string(parts[0]));
        } else if (parts.size() == 4 && parts[1] == "chunks") {
            ++s.chunks;
            s.chunkBytes += o.size;
        } else if (parts.size() == 5 && parts[1] == "parcels" && parts[3] == "versions") {
            if (parseVersionNumber(parts[4])) {
                ++s.versions;
                parcels.insert(std::string(parts[0]) + "/" + std::string(parts[2]));
            }
        } else if (parts.size() == 4 && parts[1] == "parcels" && parts[3] == "lock") {
            lockObjects.emplace_back(parts[0], parts[2]);
        }
    }
    // A lock object stays after check-in, saying "released" (FORMAT.md,
    // Lock): only one that is held counts.
    for (const auto& [user, parcel] : lockObjects) {
        ISR_TRY_ASSIGN(auto lock, readLockKeyless(store, user, parcel));
        if (lock)
            ++s.lockedParcels;
    }
    s.users = users.size();
    s.parcels = parcels.size();
    return s;
}

Result<RemoveReport> removeParcel(store::Store& store, const std::string& user,
                                  const std::string& parcel, bool evenIfLocked) {
    ISR_TRY_ASSIGN(auto p, parcelInventory(store, user, parcel));
    if (!evenIfLocked && liveLock(p.lock))
        return lockedError(user, parcel, *p.lock);
    ISR_TRY_ASSIGN(auto objects, store.list(parcelPrefix(user, parcel)));
    // Newest version first and version 1 last: a parcel stays a parcel
    // (Parcels::list counts versions) until its last object goes; the lock
    // goes at the very end so no kiosk checks out a half-removed parcel.
    auto rank = [&](const store::ObjectInfo& o) -> std::pair<int, std::uint64_t> {
        std::string_view rest = std::string_view(o.key).substr(parcelPrefix(user, parcel).size());
        if (rest == "lock")
            return {3, 0};
        if (rest.rfind("versions/", 0) == 0)
            if (auto n = parseVersionNumber(rest.substr(9)))
                return {1, ~*n}; // descending
        return {0, 0};
    };
    std::stable_sort(objects.begin(), objects.end(),
                     [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
    RemoveReport report;
    ISR_TRY_STATUS(removeAll(store, objects, report));
    ISR_LOG_INFO("parcel") << "removed parcel " << parcel << " of " << user << ": "
                           << report.objects << " objects";
    return report;
}

Result<RemoveReport> removeUser(store::Store& store, const std::string& user, bool evenIfLocked) {
    ISR_TRY_ASSIGN(auto inv, userInventory(store, user));
    if (!evenIfLocked)
        for (const auto& p : inv.parcels)
            if (liveLock(p.lock))
                return lockedError(user, p.name, *p.lock);
    RemoveReport report;
    for (const auto& p : inv.parcels) {
        ISR_TRY_ASSIGN(auto r, removeParcel(store, user, p.name, true));
        report.objects += r.objects;
        report.bytes += r.bytes;
    }
    // Then the chunks and anything else, the account last: until it goes the
    // user is listed and the removal can be repeated.
    ISR_TRY_ASSIGN(auto objects, store.list("users/" + user + "/"));
    std::stable_partition(objects.begin(), objects.end(),
                          [&](const auto& o) { return o.key != accountKey(user); });
    ISR_TRY_STATUS(removeAll(store, objects, report));
    ISR_LOG_INFO("parcel") << "removed user " << user << ": " << report.objects << " objects";
    return report;
}

Result<std::optional<LockInfo>> releaseLock(store::Store& store, const std::string& user,
                                            const std::string& parcel, bool evenIfFresh) {
    ISR_TRY_STATUS(validateName("user name", user));
    ISR_TRY_ASSIGN(auto lock, readLockKeyless(store, user, parcel));
    if (!lock)
        return lock;
    if (!evenIfFresh && liveLock(lock))
        return lockedError(user, parcel, *lock);
    auto st = store.remove(lockKey(user, parcel));
    if (!st.ok() && st.error().code != Errc::NotFound)
        return std::move(st).error();
    ISR_LOG_INFO("parcel") << "released the lock of " << user << "/" << parcel << " held by "
                           << lock->holderLabel();
    return lock;
}

} // namespace isr::parcel
