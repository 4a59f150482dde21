// Fuzzes the account object parser (parcel::parseAccountObject), the part of
// sign-in that reads the store's clear text before any key derivation.
// Invariants:
//  - parse ok => the KDF parameters pass validateKdfParams (a tampered
//    account can never make sign-in run Argon2 with absurd limits), and
//    encode(parse(x)) parses to an equal object;
//  - errors are Corrupt or Unsupported only (never Internal, never a crash);
//  - a valid object built from fuzzed fields parses back to those fields, and
//    changing any single byte of its text either fails or (a whitespace byte)
//    gives the same object: the checksum catches every real change. JSON
//    text is UTF-8 (RFC 8259): a fuzzed user name that is not comes back
//    with U+FFFD where the bad bytes were (and every other field intact);
//    real user names are validateName()d ASCII.
#include "fuzz_check.h"
#include "parcel/parcel.h"

#include <sodium.h>
#include <string_view>

namespace {

using namespace isr;

bool sameAccount(const parcel::AccountObject& a, const parcel::AccountObject& b) {
    return a.user == b.user && a.kdf.opsLimit == b.kdf.opsLimit &&
           a.kdf.memLimit == b.kdf.memLimit && a.kdf.salt == b.kdf.salt && a.sealed == b.sealed;
}

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool validUtf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n;
        std::uint32_t cp, min;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        for (std::size_t k = 1; k <= n; ++k) {
            if (i + k >= s.size())
                return false;
            const auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
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
    // Inside the built-in policy (floor..ceiling) with or without the test
    // suite's weak-KDF option.
    account.kdf.opsLimit = crypto::kKdfFloorOps + in.u8() % 8;
    account.kdf.memLimit = crypto::kKdfFloorMem + std::uint64_t(in.u16()) * 1024;
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
    if (!validUtf8(account.user)) {
        FUZZ_CHECK(parsed->user != account.user && validUtf8(parsed->user));
        account.user = parsed->user; // what JSON can carry; the rest must match
    }
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
