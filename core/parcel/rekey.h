#pragma once
// rekey: rotating a user's convergence secret (`isrctl user rekey`, issue #16
// item 7; FORMAT.md, "Key rotation -- convergence secret"; decisions in
// rekey.cpp).
//
// The convergence secret keys every chunk's encryption and the memory
// image's CDC gear table. Rekey gives the user a new one (and a new master
// key), rewrites every version of every parcel in place so that it
// references only chunks encrypted under the new secret (memory images
// re-chunked with the new gear table), and then drops the old secret. The
// old chunks are then unreferenced: garbage collection removes them.
//
// Thread safety: one call at a time per user (a second run of the same user
// takes the first one's parcel locks; the first then stops).

#include "parcel/parcel.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace isr::parcel {

// A clear, non-secret name of a convergence secret (16 bytes of BLAKE2b
// keyed with it over a fixed label, as hex): what a rekeyed manifest's
// rekeyed_under says. Reveals nothing of the secret.
std::string convergenceId(const crypto::Secret& convergence);

struct RekeyOptions {
    // The lock's kiosk field while rekey holds a parcel. A lock with this
    // kiosk id is an interrupted rekey's: a later run takes it over.
    std::string kiosk = "isrctl-rekey";
    std::chrono::milliseconds heartbeatInterval{30000};
    // Re-encrypted chunks are uploaded in batches of about this much
    // ciphertext (several transfers in flight on S3).
    std::size_t batchBytes = 16u << 20;
    // Once finished, collect the user's garbage with this grace period
    // (seconds): the old chunks are unreferenced then. nullopt: leave it to
    // the next gc.
    std::optional<std::int64_t> collectGarbageGrace;
};

struct RekeyReport {
    bool started = false;      // this run put a new secret into the account
    std::uint64_t parcels = 0; // parcels whose every version is now under the new secret
    std::uint64_t versionsRewritten = 0;
    std::uint64_t versionsAlreadyNew = 0; // under the new secret already (an earlier run)
    std::uint64_t chunksEncoded = 0;      // chunks encrypted under the new secret
    std::uint64_t chunksUploaded = 0;     // ...of which the store lacked
    std::uint64_t bytesUploaded = 0;      // their ciphertext
    std::uint64_t memoryBytes = 0;        // memory-image plaintext re-chunked
    // Parcels left as they were because a kiosk holds their lock: it
    // signed in before the rekey and saves under the old secret. A later
    // run (rekey --finish) converts them.
    std::vector<std::pair<std::string, LockInfo>> locked;
    bool finished = false;      // the old secret (and old masters) are gone from the account
    std::optional<GcReport> gc; // collectGarbageGrace set and finished: what gc did
    std::string gcError;        // ...or why it did not (e.g. a parcel opened meanwhile)
};

// Signs in with `password`. If no rekey is unfinished, first writes the
// account (put-if-match on its tag) with a fresh random convergence secret
// and master key, the old ones kept as previous_convergence and a previous
// master. Then, per parcel (holding its lock), rewrites every version not
// yet under the new secret; when none is left (no parcel locked), rewrites
// the account without the old secret and masters. A kill anywhere leaves
// every version readable; a later rekeyUser or finishRekey continues.
// AuthFailed (wrong password) writes nothing. A damaged chunk or manifest
// stops the run with Corrupt naming it; the versions not yet rewritten keep
// their old chunks (readable as before).
Result<RekeyReport> rekeyUser(store::Store& store, const std::string& user,
                              std::string_view password, const RekeyOptions& options = {},
                              const ProgressFn& progress = {});
// Only continues an unfinished rekey: with none, `finished` and nothing else.
Result<RekeyReport> finishRekey(store::Store& store, const std::string& user,
                                std::string_view password, const RekeyOptions& options = {},
                                const ProgressFn& progress = {});

} // namespace isr::parcel
