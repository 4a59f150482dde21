// Names, store marker and accounts.
#include "crypto/crypto.h"
#include "parcel/parcel.h"
#include "util/log.h"

#include <cstring>
#include <ctime>

namespace isr::parcel {

// The store's size table (store.h) must admit the largest chunk the codec
// makes: a tag byte, the plaintext stored raw when zstd does not help, the MAC.
static_assert(chunk::kMaxChunkSize + 1 + crypto::kMacSize <= store::kMaxChunkObjectSize);

Status validateName(std::string_view what, std::string_view name) {
    auto bad = [&](const std::string& why) {
        return Error(Errc::InvalidArgument, std::string(what) + " '" +
                                                std::string(name.substr(0, 64)) + "' " + why +
                                                " (allowed: a-z 0-9 . _ -, starting with a "
                                                "letter or digit, at most 64 characters)");
    };
    if (name.empty())
        return bad("is empty");
    if (name.size() > 64)
        return bad("is too long");
    for (char c : name) {
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok)
            return bad("contains a character that is not allowed");
    }
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
        return bad("must start with a letter or digit");
    if (name.find("..") != std::string_view::npos)
        return bad("contains '..'");
    return {};
}

std::string accountKey(const std::string& user) {
    return "users/" + user + "/account";
}
std::string parcelPrefix(const std::string& user, const std::string& parcel) {
    return "users/" + user + "/parcels/" + parcel + "/";
}
std::string versionKey(const std::string& user, const std::string& parcel, std::uint64_t n) {
    return parcelPrefix(user, parcel) + "versions/" + std::to_string(n);
}
std::string headKey(const std::string& user, const std::string& parcel) {
    return parcelPrefix(user, parcel) + "head";
}
std::string lockKey(const std::string& user, const std::string& parcel) {
    return parcelPrefix(user, parcel) + "lock";
}
std::string chunkPrefix(const std::string& user) {
    return "users/" + user + "/chunks/";
}
std::string chunkKey(const std::string& user, const chunk::ChunkName& name) {
    std::string hex = chunk::nameHex(name);
    return chunkPrefix(user) + hex.substr(0, 2) + "/" + hex;
}

static constexpr const char* kStoreMarker = "isr-store.json";

Status initStore(store::Store& store, const crypto::KdfParams& defaultKdf) {
    crypto::KdfParams check = defaultKdf;
    check.salt.assign(crypto::kSaltSize, 0);
    ISR_TRY_STATUS(crypto::validateKdfParams(check));
    json::Value marker(
        json::Object{{"format", kFormatVersion},
                     {"created", std::int64_t(std::time(nullptr))},
                     {"kdf", json::Object{{"ops", std::int64_t(defaultKdf.opsLimit)},
                                          {"mem", std::int64_t(defaultKdf.memLimit)}}}});
    auto st = store.putIfAbsent(kStoreMarker, asBytes(marker.dump() + "\n"));
    if (!st.ok() && st.error().code == Errc::AlreadyExists)
        return Error(Errc::AlreadyExists, "this location is already an isr store");
    return st;
}

static Result<json::Value> readStoreMarker(store::Store& store) {
    auto raw = store.get(kStoreMarker);
    if (!raw.ok()) {
        if (raw.error().code == Errc::NotFound)
            return Error(Errc::NotFound, store.url() +
                                             " is not an isr store (no isr-store.json); create "
                                             "one with 'isrctl store init'");
        return std::move(raw).error().context("reading isr-store.json");
    }
    auto doc = json::parse(asString(*raw));
    if (!doc.ok())
        return std::move(doc).error().context("isr-store.json");
    auto format = doc->getInt("format");
    if (!format.ok())
        return std::move(format).error().context("isr-store.json");
    if (*format > kFormatVersion || *format < 1)
        return Error(Errc::Unsupported, "store format " + std::to_string(*format) +
                                            " is newer than this isr supports (" +
                                            std::to_string(kFormatVersion) + ")");
    return doc;
}

Status checkStore(store::Store& store) {
    ISR_TRY_STATUS(readStoreMarker(store));
    return {};
}

Result<crypto::KdfParams> storeDefaultKdf(store::Store& store) {
    ISR_TRY_ASSIGN(json::Value marker, readStoreMarker(store));
    crypto::KdfParams p = crypto::KdfParams::moderate();
    if (const json::Value* kdf = marker.find("kdf")) {
        auto ops = kdf->getInt("ops");
        auto mem = kdf->getInt("mem");
        if (!ops.ok() || !mem.ok() || *ops <= 0 || *mem <= 0)
            return Error(Errc::Corrupt, "isr-store.json: bad kdf defaults");
        p.opsLimit = std::uint64_t(*ops);
        p.memLimit = std::uint64_t(*mem);
    }
    p.salt = crypto::randomBytes(crypto::kSaltSize);
    // The store suggests, the built-in policy decides: a store asking for
    // less than the floor (cheap offline guessing of every new account) or
    // more than the ceiling gets the nearest allowed limits, and says so.
    bool adjusted = false;
    const std::uint64_t askedOps = p.opsLimit, askedMem = p.memLimit;
    p = crypto::clampKdfParams(std::move(p), &adjusted);
    if (adjusted) {
        ISR_LOG_WARN("parcel") << "isr-store.json asks for Argon2id " << askedOps << " passes x "
                               << askedMem << " bytes, outside this isr's policy; using "
                               << p.opsLimit << " x " << p.memLimit;
    }
    return p;
}

namespace {

std::string accountAd(const std::string& user) {
    return "isr-account-v1:" + user;
}

// Wipes a std::string holding secret material before it is freed.
struct WipeOnExit {
    std::string& s;
    ~WipeOnExit() {
        crypto::wipe(MutableByteView(reinterpret_cast<std::uint8_t*>(s.data()), s.size()));
    }
};

// An unkeyed checksum over the account's other fields. It cannot stop a
// deliberate edit (that fails the seal's MAC and reads as a wrong password),
// but it lets an accidentally damaged account say so instead of rejecting a
// correct password.
std::string accountChecksum(json::Object fields) {
    fields.erase("check");
    auto h = crypto::hash(asBytes(json::Value(std::move(fields)).dump()));
    return toHex(h);
}

json::Value kdfToJson(const crypto::KdfParams& p) {
    return json::Object{{"alg", "argon2id13"},
                        {"ops", std::int64_t(p.opsLimit)},
                        {"mem", std::int64_t(p.memLimit)},
                        {"salt", toHex(p.salt)}};
}

Result<crypto::KdfParams> kdfFromJson(const json::Value* v) {
    if (!v || !v->isObject())
        return Error(Errc::Corrupt, "account has no kdf parameters");
    ISR_TRY_ASSIGN(std::string alg, v->getString("alg"));
    if (alg != "argon2id13")
        return Error(Errc::Corrupt, "unknown KDF '" + alg + "'");
    crypto::KdfParams p;
    ISR_TRY_ASSIGN(std::int64_t ops, v->getInt("ops"));
    ISR_TRY_ASSIGN(std::int64_t mem, v->getInt("mem"));
    ISR_TRY_ASSIGN(std::string saltHex, v->getString("salt"));
    if (ops <= 0 || mem <= 0)
        return Error(Errc::Corrupt, "KDF parameters out of range");
    p.opsLimit = std::uint64_t(ops);
    p.memLimit = std::uint64_t(mem);
    auto salt = fromHex(saltHex);
    if (!salt.ok())
        return Error(Errc::Corrupt, "KDF salt is not hex");
    p.salt = std::move(*salt);
    auto valid = crypto::validateKdfParams(p);
    if (!valid.ok())
        return Error(Errc::Corrupt, "KDF parameters refused: " + valid.error().message);
    return p;
}

Bytes sealSecrets(const crypto::Secret& kek, const std::string& user, const UserSecrets& s) {
    json::Object inner{{"master", toHex(s.master.view())},
                       {"convergence", toHex(s.convergence.view())}};
    if (!s.s3.accessKey.empty()) {
        inner["s3_access"] = s.s3.accessKey;
        inner["s3_secret"] = s.s3.secretKey;
    }
    std::string plain = json::Value(std::move(inner)).dump();
    WipeOnExit wipe{plain};
    return crypto::seal(kek, asBytes(plain), asBytes(accountAd(user)));
}

Status writeAccount(store::Store& store, const std::string& user, const crypto::KdfParams& params,
                    ByteView sealed, bool create) {
    std::string text =
        encodeAccountObject(AccountObject{user, params, Bytes(sealed.begin(), sealed.end())});
    if (create) {
        auto st = store.putIfAbsent(accountKey(user), asBytes(text));
        if (!st.ok() && st.error().code == Errc::AlreadyExists)
            return Error(Errc::AlreadyExists, "user '" + user + "' already exists");
        return st;
    }
    return store.put(accountKey(user), asBytes(text));
}

// Default-parameter work for an unknown user, so that "no such user" and
// "wrong password" cost the same and look the same.
void burnEquivalentWork(store::Store& store, const std::string& user, std::string_view password) {
    auto defaults = storeDefaultKdf(store);
    crypto::KdfParams p = defaults.ok() ? std::move(*defaults) : crypto::KdfParams::moderate();
    auto h = crypto::hash(asBytes("isr-decoy-salt:" + user));
    p.salt.assign(h.begin(), h.begin() + crypto::kSaltSize);
    (void)crypto::deriveKey(password, p);
}

} // namespace

Status createAccount(store::Store& store, const std::string& user, std::string_view password,
                     const store::Credentials& s3) {
    ISR_TRY_STATUS(validateName("user name", user));
    if (password.empty())
        return Error(Errc::InvalidArgument, "the password must not be empty");
    ISR_TRY_ASSIGN(crypto::KdfParams params, storeDefaultKdf(store));
    UserSecrets secrets;
    secrets.user = user;
    secrets.master = crypto::Secret::random(crypto::kKeySize);
    secrets.convergence = crypto::Secret::random(crypto::kKeySize);
    secrets.s3 = s3;
    ISR_TRY_ASSIGN(crypto::Secret kek, crypto::deriveKey(password, params));
    Bytes sealed = sealSecrets(kek, user, secrets);
    return writeAccount(store, user, params, sealed, /*create=*/true);
}

std::string encodeAccountObject(const AccountObject& account) {
    json::Object fields{{"format", kFormatVersion},
                        {"user", account.user},
                        {"kdf", kdfToJson(account.kdf)},
                        {"sealed", toHex(account.sealed)}};
    fields["check"] = accountChecksum(fields);
    return json::Value(std::move(fields)).dump() + "\n";
}

Result<AccountObject> parseAccountObject(ByteView text) {
    auto doc = json::parse(asString(text));
    if (!doc.ok())
        return std::move(doc).error();
    if (!doc->isObject())
        return Error(Errc::Corrupt, "not a JSON object");
    auto check = doc->getString("check");
    if (!check.ok() || *check != accountChecksum(doc->asObject()))
        return Error(Errc::Corrupt, "account object is damaged (checksum mismatch)");
    ISR_TRY_ASSIGN(std::int64_t format, doc->getInt("format"));
    if (format != kFormatVersion)
        return Error(Errc::Unsupported, "account format " + std::to_string(format));
    AccountObject account;
    ISR_TRY_ASSIGN(account.user, doc->getString("user"));
    ISR_TRY_ASSIGN(account.kdf, kdfFromJson(doc->find("kdf")));
    ISR_TRY_ASSIGN(std::string sealedHex, doc->getString("sealed"));
    auto sealed = fromHex(sealedHex);
    if (!sealed.ok())
        return Error(Errc::Corrupt, "sealed secrets are not hex");
    account.sealed = std::move(*sealed);
    return account;
}

namespace {
Result<AccountObject> readAccountDoc(store::Store& store, const std::string& user) {
    ISR_TRY_ASSIGN(Bytes raw, store.get(accountKey(user)));
    auto account = parseAccountObject(raw);
    if (!account.ok())
        return std::move(account).error().context("account of '" + user + "'");
    if (account->user != user)
        return Error(Errc::Corrupt, "account belongs to '" + account->user + "'")
            .context("account of '" + user + "'");
    return account;
}

Result<UserSecrets> unsealSecrets(const crypto::Secret& kek, const std::string& user,
                                  ByteView sealed) {
    auto plain = crypto::open(kek, sealed, asBytes(accountAd(user)));
    if (!plain.ok())
        return Error(Errc::AuthFailed, "wrong user name or password");
    std::string text(asString(*plain));
    crypto::wipe(*plain);
    WipeOnExit wipe{text};
    auto doc = json::parse(text);
    if (!doc.ok())
        return Error(Errc::Corrupt, "account secrets of '" + user + "' do not parse");
    UserSecrets s;
    s.user = user;
    for (auto [field, target] : {std::pair{"master", &s.master}, {"convergence", &s.convergence}}) {
        auto hex = doc->getString(field);
        if (!hex.ok())
            return Error(Errc::Corrupt, "account secrets of '" + user + "' lack " + field);
        auto bytes = fromHex(*hex);
        if (!bytes.ok() || bytes->size() != crypto::kKeySize)
            return Error(Errc::Corrupt, std::string("bad ") + field + " key in account");
        *target = crypto::Secret::copyOf(*bytes);
        crypto::wipe(*bytes);
    }
    if (auto a = doc->getString("s3_access"); a.ok())
        s.s3.accessKey = *a;
    if (auto k = doc->getString("s3_secret"); k.ok())
        s.s3.secretKey = *k;
    return s;
}
} // namespace

Result<UserSecrets> signIn(store::Store& store, const std::string& user,
                           std::string_view password) {
    if (!validateName("user name", user).ok()) {
        burnEquivalentWork(store, user, password);
        return Error(Errc::AuthFailed, "wrong user name or password");
    }
    auto doc = readAccountDoc(store, user);
    if (!doc.ok()) {
        // On S3 a kiosk that may not list the bucket gets 403 for a missing
        // account (store.h, kDeniedOrMissing): the same decoy work and answer
        // as a 404, so an unknown user still looks like a wrong password
        // (issue #16, item 12). A credential failure stays an error for staff.
        if (doc.error().code == Errc::NotFound || store::isDeniedOrMissing(doc.error())) {
            burnEquivalentWork(store, user, password);
            return Error(Errc::AuthFailed, "wrong user name or password");
        }
        return std::move(doc).error();
    }
    ISR_TRY_ASSIGN(crypto::Secret kek, crypto::deriveKey(password, doc->kdf));
    return unsealSecrets(kek, user, doc->sealed);
}

Status changePassword(store::Store& store, const std::string& user, std::string_view oldPassword,
                      std::string_view newPassword) {
    if (newPassword.empty())
        return Error(Errc::InvalidArgument, "the new password must not be empty");
    ISR_TRY_ASSIGN(crypto::KdfParams newParams, storeDefaultKdf(store));
    ISR_TRY_ASSIGN(UserSecrets secrets, signIn(store, user, oldPassword));
    ISR_TRY_ASSIGN(crypto::Secret kek, crypto::deriveKey(newPassword, newParams));
    Bytes sealed = sealSecrets(kek, user, secrets);
    return writeAccount(store, user, newParams, sealed, /*create=*/false);
}

} // namespace isr::parcel
