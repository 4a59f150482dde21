#pragma once
// Inside core/parcel only: what rekey.cpp needs of account.cpp to rewrite an
// account without a second Argon2id run, and the check both make after
// rewriting a version. Not part of the module's API.
#include "parcel/parcel.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace isr::parcel::detail {

// Most previous masters an account may list (FORMAT.md, "Account").
inline constexpr std::size_t kMaxPreviousMasters = 32;

// An account opened with its password: its secrets, the key that seals
// them, its KDF parameters and the store's tag of the object as read.
struct AccountForRewrite {
    UserSecrets secrets;
    crypto::Secret kek;
    crypto::KdfParams kdf;
    std::string tag;
};

// AuthFailed for an unknown user or a wrong password (signIn's answer).
Result<AccountForRewrite> openAccountForRewrite(store::Store& store, const std::string& user,
                                                std::string_view password);
// Seals `next` under the same password-derived key and KDF parameters and
// writes it with put-if-match on opened.tag (Conflict: the account changed
// since it was read; nothing written). On success `opened` describes the
// account as written.
Status rewriteAccount(store::Store& store, AccountForRewrite& opened, UserSecrets next);

UserSecrets copySecrets(const UserSecrets& s);

// Calls `each` for every parcel of the user, listing again until a listing
// shows none not handled yet (a parcel created meanwhile is handled too),
// and adds each new parcel's version count to `total` before handling it
// (the progress total of a key rotation or rekey). Stops at `each`'s error.
Status forEachParcelUntilNoneNew(Parcels& parcels, std::uint64_t& total,
                                 const std::function<Status(const std::string&)>& each);

// After versions/<n> (`key`) was overwritten by a key rotation or rekey: the
// object read back must open under the current master (not a previous one)
// to the plaintext whose hash is `want`. If not, `previous` (the object it
// replaced; every chunk it references is still in the store) goes back and
// the caller stops with Corrupt ("... after <step>; the old object was put
// back").
Status checkRewrittenVersion(store::Store& store, Parcels& parcels, const std::string& parcel,
                             std::uint64_t n, const std::string& key, const crypto::Hash& want,
                             const Bytes& previous, std::string_view step);

} // namespace isr::parcel::detail
