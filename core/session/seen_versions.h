#pragma once
// SeenVersions: what this kiosk has seen of each parcel it opened or saved,
// so a store that later serves an older copy (a rollback) or a different
// one (a fork) is refused instead of resumed (issue #16, item 5).
//
//   <stateDir>/seen/           mode 0700
//   <stateDir>/seen/<64 hex>   mode 0600, one per user and parcel
//
// The file name is a keyed BLAKE2b-256 of "user/parcel" under a key derived
// from the user's convergence secret, so the kiosk's disk names no user or
// parcel and a name cannot be confirmed by guessing without the user's keys.
// The content -- the version number, the BLAKE2b-256 of its manifest's
// plaintext (parcel::Manifest::digest), when and where it was saved -- is
// sealed (XChaCha20-Poly1305) under the same derived key, bound to the user
// and parcel.
//
// Why the convergence secret and not the master key: a password change
// rotates the master key (FORMAT.md, "Key rotation") and keeps the
// convergence secret, so a record keyed by the master would be forgotten
// at every password change -- a kiosk that saw version 3 would then accept
// a store's rollback to version 2. Records written before this change
// (named and sealed under a key derived from the master) are still read:
// load() falls back to the master and each previous master the account
// still has, and the next record() writes the new name and removes the old
// file. The derivation is unkeyed BLAKE2b over a label and the secret, so
// it cannot meet the chunk keys (BLAKE2b keyed with the secret). Rotating
// the convergence secret (not built) would need the same kind of fallback.
//
// Who can do what: the next person at the kiosk (no root) cannot read
// seen/ (0700, owned by the kiosk's user). Someone with the kiosk's disk
// learns how many user/parcel pairs this kiosk has opened and when each
// record last changed, nothing else; they can delete or replay a record
// (this kiosk then checks against less, as a kiosk that never saw the
// parcel does) but not forge one. A record that does not open (damaged)
// is logged and read as none. The store and the guest never see it. Whoever
// holds the user's convergence secret (the user; after a password change
// also the holder of the old password and a copy of the old account
// object, as the secret is not rotated) and the kiosk's disk can read the
// user's records there: which version was seen, when and where saved.
//
// Threads: one owner (the session's controlling thread).

#include "crypto/crypto.h"
#include "parcel/parcel.h"
#include "util/result.h"

#include <cstdint>
#include <optional>
#include <string>

namespace isr::session {

struct SeenVersion {
    std::uint64_t version = 0;
    crypto::Hash digest{}; // BLAKE2b-256 of the manifest's plaintext
    std::int64_t created = 0;
    std::string kiosk;
};

class SeenVersions {
public:
    // `directory`: <stateDir>/seen (made on the first record()).
    explicit SeenVersions(std::string directory) : dir_(std::move(directory)) {}

    // nullopt if this kiosk has no (readable) record of the parcel.
    std::optional<SeenVersion> load(const parcel::UserSecrets& secrets,
                                    const std::string& parcel) const;
    // Replaces the record (atomically: a temporary file renamed over it),
    // and removes a record of the parcel under the old (master-keyed) name.
    Status record(const parcel::UserSecrets& secrets, const std::string& parcel,
                  const SeenVersion& seen) const;
    // The record's path (tests; the name depends on the user's keys).
    std::string pathFor(const parcel::UserSecrets& secrets, const std::string& parcel) const;
    // Where a record written before records were keyed by the convergence
    // secret lives (tests: records of older kiosks are still honoured).
    std::string legacyPathFor(const crypto::Secret& master, const std::string& user,
                              const std::string& parcel) const;
    Status recordLegacy(const crypto::Secret& master, const std::string& user,
                        const std::string& parcel, const SeenVersion& seen) const;

private:
    Status write(const crypto::Secret& key, const std::string& user, const std::string& parcel,
                 const SeenVersion& seen) const;

    std::string dir_;
};

} // namespace isr::session
