// Fuzzes the account object parser (parcel::parseAccountObject), the part of
// sign-in that reads the store's clear text before any key derivation.
// Invariants:
//  - parse ok => the KDF parameters pass validateKdfParams (a tampered
//    account can never make sign-in run Argon2 with absurd limits), and
//    encode(parse(x)) parses to an equal object;
//  - errors are Corrupt or Unsupported only (never Internal, never a crash);
//  - a valid object built from fuzzed fields parses back to those fields, and
//    changing any single byte of its text either fails or (a whitespace byte)
//    gives the same object: the checksum catches every real change.
#include "fuzz_check.h"
#include "parcel/parcel.h"

#include <sodium.h>

namespace {

using namespace isr;

bool sameAccount(const parcel::AccountObject& a, const parcel::AccountObject& b) {
    return a.user == b.user && a.kdf.opsLimit == b.kdf.opsLimit &&
           a.kdf.memLimit == b.kdf.memLimit && a.kdf.salt == b.kdf.salt && a.sealed == b.sealed;
}

void checkParsed(const Result<parcel::AccountObject>& parsed) {
    if (!parsed.ok()) {
        FUZZ_CHECK(parsed.error().code == Errc::Corrupt ||
                   parsed.error().code == Errc::Unsupported);
        return;
    }
    FUZZ_CHECK(crypto::validateKdfParams(parsed->kdf).ok());
    std::string text = parcel::encodeAccountObject(*parsed);
    auto again = parcel::parseAccountObject(asBytes(text));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(sameAccount(*parsed, *again));
}

// An account built from fuzzed fields, then one byte of its text changed.
void fuzzBuilt(fuzz::FieldReader& in) {
    parcel::AccountObject account;
    account.kdf.opsLimit = crypto_pwhash_argon2id_OPSLIMIT_MIN + in.u8() % 8;
    account.kdf.memLimit = crypto_pwhash_argon2id_MEMLIMIT_MIN + std::uint64_t(in.u16()) * 1024;
    account.kdf.salt.resize(crypto::kSaltSize);
    in.bytes(account.kdf.salt.data(), account.kdf.salt.size());
    std::size_t userLength = in.u8() % 65;
    std::uint32_t flipAt = in.u32();
    std::uint8_t flipWith = in.u8();
    ByteView rest = in.rest();
    account.user.assign(asString(rest.first(std::min(userLength, rest.size()))));
    rest = rest.subspan(std::min(userLength, rest.size()));
    account.sealed.assign(rest.begin(), rest.end());

    std::string text = parcel::encodeAccountObject(account);
    auto parsed = parcel::parseAccountObject(asBytes(text));
    FUZZ_CHECK(parsed.ok());
    FUZZ_CHECK(sameAccount(account, *parsed));

    if (flipWith == 0)
        return;
    text[flipAt % text.size()] ^= char(flipWith);
    auto changed = parcel::parseAccountObject(asBytes(text));
    checkParsed(changed);
    if (changed.ok())
        FUZZ_CHECK(sameAccount(account, *changed));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // A real account object starts with '{'; anything else (first byte 0x01)
    // drives the built-object mode.
    if (size > 0 && data[0] == 0x01) {
        fuzz::FieldReader in(data + 1, size - 1);
        fuzzBuilt(in);
        return 0;
    }
    checkParsed(parcel::parseAccountObject(ByteView(data, size)));
    return 0;
}
