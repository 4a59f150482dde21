#pragma once
// SeenVersions: what this kiosk has seen of each parcel it opened or saved,
// so a store that later serves an older copy (a rollback) or a different
// one (a fork) is refused instead of resumed (issue #16, item 5).
//
//   <stateDir>/seen/           mode 0700
//   <stateDir>/seen/<64 hex>   mode 0600, one per user and parcel
//
// The file name is a keyed BLAKE2b-256 of "user/parcel" under a key derived
// from the user's master key, so the kiosk's disk names no user or parcel
// and a name cannot be confirmed by guessing without the user's keys. The
// content -- the version number, the BLAKE2b-256 of its manifest's plaintext
// (parcel::Manifest::digest), when and where it was saved -- is sealed
// (XChaCha20-Poly1305) under the same derived key, bound to the user and
// parcel.
//
// Who can do what: the next person at the kiosk (no root) cannot read
// seen/ (0700, owned by the kiosk's user). Someone with the kiosk's disk
// learns how many user/parcel pairs this kiosk has opened and when each
// record last changed, nothing else; they can delete or replay a record
// (this kiosk then checks against less, as a kiosk that never saw the
// parcel does) but not forge one. A record that does not open (damaged,
// or the user's master key changed) is logged and read as none. The store
// and the guest never see it.
//
// Threads: one owner (the session's controlling thread).

#include "crypto/crypto.h"
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
    std::optional<SeenVersion> load(const crypto::Secret& master, const std::string& user,
                                    const std::string& parcel) const;
    // Replaces the record (atomically: a temporary file renamed over it).
    Status record(const crypto::Secret& master, const std::string& user, const std::string& parcel,
                  const SeenVersion& seen) const;
    // The record's path (tests; the name depends on the user's keys).
    std::string pathFor(const crypto::Secret& master, const std::string& user,
                        const std::string& parcel) const;

private:
    std::string dir_;
};

} // namespace isr::session
