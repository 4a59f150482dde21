#pragma once
// What an operator can see and do in a store without any user's keys: the
// users, their parcels' versions, locks and sizes, and removing them.
//
// Everything here reads only what the store already shows in clear (object
// names, sizes, times, the clear lock and head objects; FORMAT.md). Nothing
// here can read a manifest: when a version was saved and where, and what it
// references, stay sealed under the user's keys (isrctl asks for the
// password for those, see `parcel status --sign-in`).
//
// Removal order: a user's (or parcel's) objects are removed leaves first and
// the object that makes them visible last (the account; a parcel's first
// version), so an interrupted removal can be run again and never leaves a
// user who signs in to half a computer: at worst unreferenced chunks that
// `gc --user` or a repeated removal reclaims.

#include "parcel/parcel.h"
#include "store/store.h"
#include "util/result.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace isr::parcel {

struct ParcelInventory {
    std::string name;
    std::vector<std::uint64_t> versions; // ascending
    std::uint64_t manifestBytes = 0;     // the sealed manifests' bytes in the store
    std::optional<std::uint64_t> head;   // the clear head hint, if present and readable
    std::optional<LockInfo> lock;        // who has it open, if anyone
};

struct UserInventory {
    std::string user;
    std::vector<ParcelInventory> parcels;
    std::uint64_t chunks = 0; // the user's chunks (shared by all their parcels: dedup)
    std::uint64_t chunkBytes = 0;
    std::uint64_t otherBytes = 0; // account, heads, locks, manifests
    std::uint64_t totalBytes() const { return chunkBytes + otherBytes; }
};

struct StoreStats {
    std::uint64_t users = 0;
    std::uint64_t parcels = 0;
    std::uint64_t versions = 0;
    std::uint64_t chunks = 0;
    std::uint64_t chunkBytes = 0;
    std::uint64_t totalBytes = 0; // every object, isr-store.json included
    std::uint64_t lockedParcels = 0;
};

// Users with an account object, sorted.
Result<std::vector<std::string>> listUsers(store::Store& store);
// One user: NotFound if the user has no account and no objects at all.
Result<UserInventory> userInventory(store::Store& store, const std::string& user);
// One parcel of a user: NotFound if it has no versions and no lock.
Result<ParcelInventory> parcelInventory(store::Store& store, const std::string& user,
                                        const std::string& parcel);
// One listing of the whole store.
Result<StoreStats> storeStats(store::Store& store);

struct RemoveReport {
    std::uint64_t objects = 0;
    std::uint64_t bytes = 0;
};
// Refuses (Locked) while a parcel is held by a live session (heartbeat
// younger than LockInfo::kStaleAfterSeconds), unless `evenIfLocked`.
Result<RemoveReport> removeParcel(store::Store& store, const std::string& user,
                                  const std::string& parcel, bool evenIfLocked);
Result<RemoveReport> removeUser(store::Store& store, const std::string& user, bool evenIfLocked);

// Deletes a parcel's lock whoever holds it. Returns the lock that was
// removed (nullopt: there was none). Refuses (Locked) when its heartbeat is
// fresh unless `evenIfFresh`: a live kiosk would then lose its lock and stop
// (see LockLease).
Result<std::optional<LockInfo>> releaseLock(store::Store& store, const std::string& user,
                                            const std::string& parcel, bool evenIfFresh);

} // namespace isr::parcel
