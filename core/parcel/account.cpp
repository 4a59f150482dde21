// Names, store marker and accounts.
#include "crypto/crypto.h"
#include "parcel/account_internal.h"
#include "parcel/parcel.h"
#include "util/fault.h"
#include "util/log.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <set>

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
std::optional<std::uint64_t> parseVersionNumber(std::string_view s) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || s.empty() || v == 0)
        return std::nullopt;
    return v;
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
    if (!s.previousMasters.empty()) {
        json::Array previous;
        for (const auto& m : s.previousMasters)
            previous.emplace_back(toHex(m.view()));
        inner["previous_masters"] = std::move(previous);
    }
    if (s.previousConvergence)
        inner["previous_convergence"] = toHex(s.previousConvergence->view());
    std::string plain = json::Value(std::move(inner)).dump();
    WipeOnExit wipe{plain};
    return crypto::seal(kek, asBytes(plain), asBytes(accountAd(user)));
}

AccountObject accountObjectFor(const std::string& user, const crypto::KdfParams& params,
                               ByteView sealed, const UserSecrets& secrets) {
    AccountObject a;
    a.user = user;
    a.kdf = params;
    a.sealed.assign(sealed.begin(), sealed.end());
    a.masterId = masterId(secrets.master);
    for (const auto& m : secrets.previousMasters)
        a.previousMasterIds.push_back(masterId(m));
    return a;
}

Status createAccountObject(store::Store& store, const AccountObject& account) {
    std::string text = encodeAccountObject(account);
    auto st = store.putIfAbsent(accountKey(account.user), asBytes(text));
    if (!st.ok() && st.error().code == Errc::AlreadyExists)
        return Error(Errc::AlreadyExists, "user '" + account.user + "' already exists");
    return st;
}

// Every rewrite of an existing account is conditional on the tag it was
// read with: two password changes (or a change and a rotation's last step)
// cannot clobber each other -- the second gets Conflict and writes nothing.
Result<std::string> replaceAccountObject(store::Store& store, const AccountObject& account,
                                         const std::string& tag) {
    std::string text = encodeAccountObject(account);
    auto newTag = store.putIfMatch(accountKey(account.user), asBytes(text), tag);
    if (!newTag.ok() && newTag.error().code == Errc::Conflict)
        return Error(Errc::Conflict, "the account of '" + account.user +
                                         "' changed while it was being rewritten (another "
                                         "password change?); nothing was written by this one");
    return newTag;
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
    return createAccountObject(store, accountObjectFor(user, params, sealed, secrets));
}

std::string masterId(const crypto::Secret& master) {
    crypto::Hash h = crypto::keyedHash(master.view(), asBytes(std::string("isr-master-id-v1")));
    return toHex(ByteView(h.data(), 16));
}

// Format 1, or 2 while previous masters exist (an unfinished rotation):
// an older isr, which would sign in and then find versions it cannot open,
// refuses a format-2 account instead ("account format 2"). A finished
// rotation writes format 1 again.
static constexpr int kAccountFormatRotating = 2;
using detail::kMaxPreviousMasters;

std::string encodeAccountObject(const AccountObject& account) {
    json::Object fields{
        {"format", account.previousMasterIds.empty() ? kFormatVersion : kAccountFormatRotating},
        {"user", account.user},
        {"kdf", kdfToJson(account.kdf)},
        {"sealed", toHex(account.sealed)}};
    if (!account.masterId.empty())
        fields["master_id"] = account.masterId;
    if (!account.previousMasterIds.empty()) {
        json::Array ids;
        for (const auto& id : account.previousMasterIds)
            ids.emplace_back(id);
        fields["previous_master_ids"] = std::move(ids);
    }
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
    if (format != kFormatVersion && format != kAccountFormatRotating)
        return Error(Errc::Unsupported, "account format " + std::to_string(format));
    AccountObject account;
    ISR_TRY_ASSIGN(account.user, doc->getString("user"));
    ISR_TRY_ASSIGN(account.kdf, kdfFromJson(doc->find("kdf")));
    ISR_TRY_ASSIGN(std::string sealedHex, doc->getString("sealed"));
    auto sealed = fromHex(sealedHex);
    if (!sealed.ok())
        return Error(Errc::Corrupt, "sealed secrets are not hex");
    account.sealed = std::move(*sealed);
    auto isId = [](const json::Value& v) {
        return v.isString() && v.asString().size() == 32 && fromHex(v.asString()).ok();
    };
    if (const json::Value* id = doc->find("master_id")) {
        if (!isId(*id))
            return Error(Errc::Corrupt, "bad master_id");
        account.masterId = id->asString();
    }
    if (const json::Value* ids = doc->find("previous_master_ids")) {
        if (!ids->isArray() || ids->asArray().empty() ||
            ids->asArray().size() > kMaxPreviousMasters)
            return Error(Errc::Corrupt, "bad previous_master_ids");
        for (const auto& id : ids->asArray()) {
            if (!isId(id))
                return Error(Errc::Corrupt, "bad previous_master_ids");
            account.previousMasterIds.push_back(id.asString());
        }
    }
    // Format 2 exactly when previous masters are named, and both need the
    // current master's name.
    if ((format == kAccountFormatRotating) != !account.previousMasterIds.empty() ||
        (!account.previousMasterIds.empty() && account.masterId.empty()))
        return Error(Errc::Corrupt, "account format " + std::to_string(format) +
                                        " does not match its previous_master_ids");
    return account;
}

namespace {
struct TaggedAccount {
    AccountObject doc;
    std::string tag;
};

Result<TaggedAccount> readAccountDoc(store::Store& store, const std::string& user) {
    ISR_TRY_ASSIGN(store::TaggedObject raw, store.getTagged(accountKey(user)));
    auto account = parseAccountObject(raw.data);
    if (!account.ok())
        return std::move(account).error().context("account of '" + user + "'");
    if (account->user != user)
        return Error(Errc::Corrupt, "account belongs to '" + account->user + "'")
            .context("account of '" + user + "'");
    return TaggedAccount{std::move(*account), std::move(raw.tag)};
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
    if (const json::Value* previous = doc->find("previous_masters")) {
        if (!previous->isArray() || previous->asArray().size() > kMaxPreviousMasters)
            return Error(Errc::Corrupt, "bad previous_masters in the account of '" + user + "'");
        for (const auto& hex : previous->asArray()) {
            auto bytes = hex.isString() ? fromHex(hex.asString())
                                        : Result<Bytes>(Error(Errc::Corrupt, "not a string"));
            if (!bytes.ok() || bytes->size() != crypto::kKeySize)
                return Error(Errc::Corrupt, "bad previous master key in account");
            s.previousMasters.push_back(crypto::Secret::copyOf(*bytes));
            crypto::wipe(*bytes);
        }
    }
    if (auto hex = doc->getString("previous_convergence"); hex.ok()) {
        auto bytes = fromHex(*hex);
        if (!bytes.ok() || bytes->size() != crypto::kKeySize)
            return Error(Errc::Corrupt, "bad previous convergence secret in account");
        s.previousConvergence = crypto::Secret::copyOf(*bytes);
        crypto::wipe(*bytes);
    } else if (doc->find("previous_convergence")) {
        return Error(Errc::Corrupt, "bad previous convergence secret in account");
    }
    return s;
}

// The account as read (with its tag), its secrets and the key that seals
// them: what a rewrite of the account needs without a second Argon2id run.
struct OpenedAccount {
    TaggedAccount account;
    UserSecrets secrets;
    crypto::Secret kek;
};

Result<OpenedAccount> openAccount(store::Store& store, const std::string& user,
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
    ISR_TRY_ASSIGN(crypto::Secret kek, crypto::deriveKey(password, doc->doc.kdf));
    ISR_TRY_ASSIGN(UserSecrets secrets, unsealSecrets(kek, user, doc->doc.sealed));
    // The clear names must be the sealed keys' names (or absent: an account
    // from before rotation). A store that edits them can only make kiosks
    // refuse (a denial it can have anyway); a mismatch says so.
    if (!doc->doc.masterId.empty()) {
        bool match = doc->doc.masterId == masterId(secrets.master) &&
                     doc->doc.previousMasterIds.size() == secrets.previousMasters.size();
        for (std::size_t i = 0; match && i < secrets.previousMasters.size(); ++i)
            match = doc->doc.previousMasterIds[i] == masterId(secrets.previousMasters[i]);
        if (!match)
            return Error(Errc::Corrupt,
                         "the account of '" + user + "' names other keys in clear than it seals");
    }
    return OpenedAccount{std::move(*doc), std::move(secrets), std::move(kek)};
}
} // namespace

Result<UserSecrets> signIn(store::Store& store, const std::string& user,
                           std::string_view password) {
    ISR_TRY_ASSIGN(OpenedAccount opened, openAccount(store, user, password));
    return std::move(opened.secrets);
}

// ---- password change and key rotation -------------------------------------
//
// Issue #16 item 7. A password change rotates the master key, so that the
// old account object with the old password opens nothing the store holds
// once the rotation is finished. Decisions (FORMAT.md, "Key rotation"):
//
//  - The account is rewritten first, in one conditional write (put-if-match
//    on the tag read at sign-in): sealed under the new password, a fresh
//    random master, the old master(s) kept as previous_masters. From then
//    on the new password opens everything and the old one nothing (no
//    window in which neither works), and every reader tries master, then
//    each previous master (Parcels::openVersion).
//  - Then each version object is re-sealed under the new master: opened
//    with whichever known master opens it, sealed anew, written over the
//    object with put-if-match on the tag it was read with (a version gc
//    removed meanwhile is not brought back), read back and checked. The
//    plaintext does not change, so parent_digest chains, kiosks' records of
//    the versions they saw and chunk keys stay valid. A version that no
//    known master opens is left alone and reported (damaged: fsck).
//  - A parcel whose lock is held is skipped: the kiosk holding it signed in
//    before the change and commits under the master it has, which stays a
//    previous master until the parcel is done. A kiosk that signed in
//    before the change and locks later is refused at lock ("sign in
//    again", Parcels::lock), so skipping by the lock is enough for kiosks.
//  - Only when every version of every parcel is under the new master is the
//    account rewritten without previous_masters (put-if-match again, with
//    the key derived at the start: no second Argon2id run). A kill anywhere
//    leaves an account the new password opens with every master still
//    needed; finishKeyRotation (isrctl user passwd --finish) redoes what is
//    left (versions already under the new master are only read).
//  - The convergence secret, the chunks and their keys do not change:
//    rotating it means re-encrypting and re-chunking every version (not
//    built; FORMAT.md says what it would take).

namespace {

UserSecrets cloneSecrets(const UserSecrets& s) {
    UserSecrets c;
    c.user = s.user;
    c.master = s.master.clone();
    c.convergence = s.convergence.clone();
    c.s3 = s.s3;
    for (const auto& m : s.previousMasters)
        c.previousMasters.push_back(m.clone());
    if (s.previousConvergence)
        c.previousConvergence = s.previousConvergence->clone();
    return c;
}

struct ResealCounts {
    std::uint64_t resealed = 0, alreadyNew = 0;
};

// One version: re-sealed under the master if a previous master seals it.
Status resealVersion(store::Store& store, Parcels& parcels, const std::string& parcel,
                     std::uint64_t n, ResealCounts& counts, std::vector<std::string>& unreadable) {
    const std::string key = versionKey(parcels.user(), parcel, n);
    auto raw = store.getTagged(key);
    if (!raw.ok()) {
        if (raw.error().code == Errc::NotFound)
            return {}; // removed since listed (gc retention): nothing to re-seal
        return std::move(raw).error().context("reading " + key);
    }
    bool usedPrevious = false;
    auto plain = parcels.openVersion(parcel, n, raw->data, &usedPrevious);
    if (!plain.ok()) {
        ISR_LOG_WARN("parcel") << "key rotation leaves " << key
                               << " alone: no key of the account opens it";
        unreadable.push_back(key);
        return {};
    }
    if (!usedPrevious) {
        crypto::wipe(*plain);
        counts.alreadyNew++;
        return {};
    }
    const crypto::Hash want = crypto::hash(*plain);
    Bytes sealed = parcels.sealPlaintext(parcel, n, *plain);
    crypto::wipe(*plain);
    auto tag = store.putIfMatch(key, sealed, raw->tag);
    if (!tag.ok()) {
        if (tag.error().code == Errc::Conflict)
            return {}; // removed or replaced meanwhile (gc); a rerun looks again
        return std::move(tag).error().context("re-sealing " + key);
    }
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.rotate.reseal"));
    // The same plaintext under the new master, or the old object goes back
    // (the account still holds the master that seals it).
    ISR_TRY_STATUS(detail::checkRewrittenVersion(store, parcels, parcel, n, key, want, raw->data,
                                                 "re-sealing"));
    counts.resealed++;
    return {};
}

// Re-seals every version still under a previous master and, if nothing is
// left, drops the previous masters from the account. `opened` is the
// account as last written (tag, key, secrets).
Result<RotationReport> completeRotation(store::Store& store, OpenedAccount& opened,
                                        const ProgressFn& progress) {
    RotationReport report;
    if (opened.secrets.previousMasters.empty()) {
        report.finished = true;
        return report;
    }
    const std::string user = opened.secrets.user;
    Parcels parcels(store, cloneSecrets(opened.secrets));
    // Progress counts versions; the total is what the first listing shows
    // and grows with what later listings add.
    std::uint64_t total = 0, done = 0;
    ISR_TRY_STATUS(
        detail::forEachParcelUntilNoneNew(parcels, total, [&](const std::string& name) -> Status {
            // The lock first, then the versions: a session that held the
            // lock committed before it released it, so its version is
            // listed below; a session that locks the parcel later signed
            // in after the account changed (Parcels::lock refuses the
            // others) and commits under the new master.
            ISR_TRY_ASSIGN(std::optional<LockInfo> holder, parcels.readLock(name));
            if (holder) {
                report.locked.emplace_back(name, *holder);
                return {};
            }
            auto versions = parcels.versions(name);
            if (!versions.ok()) {
                if (versions.error().code == Errc::NotFound)
                    return {}; // removed since listed
                return std::move(versions).error();
            }
            total = std::max(total, done + versions->size());
            ResealCounts counts;
            const std::size_t unreadableBefore = report.unreadable.size();
            for (std::uint64_t n : *versions) {
                ISR_TRY_STATUS(resealVersion(store, parcels, name, n, counts, report.unreadable));
                if (progress)
                    progress("reseal", ++done, total);
            }
            report.versionsResealed += counts.resealed;
            report.versionsAlreadyNew += counts.alreadyNew;
            if (report.unreadable.size() == unreadableBefore)
                report.parcels++;
            return {};
        }));
    if (!report.locked.empty() || !report.unreadable.empty())
        return report; // previous masters stay: something may still need them
    ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.rotate.before-finish"));
    UserSecrets finished = cloneSecrets(opened.secrets);
    finished.previousMasters.clear();
    Bytes sealed = sealSecrets(opened.kek, user, finished);
    AccountObject account = accountObjectFor(user, opened.account.doc.kdf, sealed, finished);
    ISR_TRY_ASSIGN(std::string tag, replaceAccountObject(store, account, opened.account.tag));
    opened.account = TaggedAccount{std::move(account), std::move(tag)};
    opened.secrets = std::move(finished);
    report.finished = true;
    return report;
}

} // namespace

Result<RotationReport> changePassword(store::Store& store, const std::string& user,
                                      std::string_view oldPassword, std::string_view newPassword,
                                      const PasswordChangeOptions& options,
                                      const ProgressFn& progress) {
    if (newPassword.empty())
        return Error(Errc::InvalidArgument, "the new password must not be empty");
    if (options.s3 && (options.s3->accessKey.empty() || options.s3->secretKey.empty()))
        return Error(Errc::InvalidArgument, "new S3 credentials need both keys");
    ISR_TRY_ASSIGN(crypto::KdfParams newParams, storeDefaultKdf(store));
    ISR_TRY_ASSIGN(OpenedAccount opened, openAccount(store, user, oldPassword));
    UserSecrets next;
    next.user = user;
    next.master = crypto::Secret::random(crypto::kKeySize);
    next.convergence = opened.secrets.convergence.clone();
    if (opened.secrets.previousConvergence) // an unfinished rekey stays unfinished
        next.previousConvergence = opened.secrets.previousConvergence->clone();
    next.s3 = options.s3 ? *options.s3 : opened.secrets.s3;
    next.previousMasters.push_back(opened.secrets.master.clone());
    for (const auto& m : opened.secrets.previousMasters) {
        bool known = false;
        for (const auto& k : next.previousMasters)
            known = known || crypto::equalConstantTime(k.view(), m.view());
        if (!known)
            next.previousMasters.push_back(m.clone());
    }
    if (next.previousMasters.size() > kMaxPreviousMasters)
        return Error(Errc::Locked, "the account of '" + user + "' has " +
                                       std::to_string(kMaxPreviousMasters) +
                                       " unfinished key rotations; finish them first "
                                       "('isrctl user passwd --finish " +
                                       user + "' once its parcels are closed)");
    ISR_TRY_ASSIGN(crypto::Secret kek, crypto::deriveKey(newPassword, newParams));
    Bytes sealed = sealSecrets(kek, user, next);
    AccountObject account = accountObjectFor(user, newParams, sealed, next);
    ISR_TRY_ASSIGN(std::string tag, replaceAccountObject(store, account, opened.account.tag));
    ISR_LOG_INFO("parcel") << "account of " << user
                           << " sealed under the new password with a new master key";
    OpenedAccount now{TaggedAccount{std::move(account), std::move(tag)}, std::move(next),
                      std::move(kek)};
    auto report = [&]() -> Result<RotationReport> {
        ISR_TRY_STATUS(ISR_FAULT_POINT("parcel.rotate.after-account"));
        return completeRotation(store, now, progress);
    }();
    if (!report.ok())
        return Error(report.error().code,
                     report.error().message +
                         " -- the new password is in effect (the old one no longer opens the "
                         "account); re-sealing the versions under the new key stopped: finish it "
                         "with 'isrctl user passwd --finish " +
                         user + "'");
    return report;
}

Result<RotationReport> finishKeyRotation(store::Store& store, const std::string& user,
                                         std::string_view password, const ProgressFn& progress) {
    ISR_TRY_ASSIGN(OpenedAccount opened, openAccount(store, user, password));
    return completeRotation(store, opened, progress);
}

namespace detail {

Result<AccountForRewrite> openAccountForRewrite(store::Store& store, const std::string& user,
                                                std::string_view password) {
    ISR_TRY_ASSIGN(OpenedAccount opened, openAccount(store, user, password));
    return AccountForRewrite{std::move(opened.secrets), std::move(opened.kek),
                             opened.account.doc.kdf, std::move(opened.account.tag)};
}

Status rewriteAccount(store::Store& store, AccountForRewrite& opened, UserSecrets next) {
    if (next.previousMasters.size() > kMaxPreviousMasters)
        return Error(Errc::Locked, "the account of '" + next.user + "' has " +
                                       std::to_string(kMaxPreviousMasters) +
                                       " unfinished key rotations; finish them first");
    Bytes sealed = sealSecrets(opened.kek, next.user, next);
    AccountObject account = accountObjectFor(next.user, opened.kdf, sealed, next);
    ISR_TRY_ASSIGN(std::string tag, replaceAccountObject(store, account, opened.tag));
    opened.tag = std::move(tag);
    opened.secrets = std::move(next);
    return {};
}

Status forEachParcelUntilNoneNew(Parcels& parcels, std::uint64_t& total,
                                 const std::function<Status(const std::string&)>& each) {
    std::set<std::string> seen;
    for (;;) {
        ISR_TRY_ASSIGN(std::vector<std::string> names, parcels.list());
        std::vector<std::string> fresh;
        for (auto& name : names)
            if (seen.insert(name).second)
                fresh.push_back(std::move(name));
        if (fresh.empty())
            return {};
        for (const auto& name : fresh)
            if (auto listed = parcels.versions(name); listed.ok())
                total += listed->size();
        for (const auto& name : fresh)
            ISR_TRY_STATUS(each(name));
    }
}

Status checkRewrittenVersion(store::Store& store, Parcels& parcels, const std::string& parcel,
                             std::uint64_t n, const std::string& key, const crypto::Hash& want,
                             const Bytes& previous, std::string_view step) {
    auto back = store.get(key);
    bool backPrevious = true;
    auto again = back.ok() ? parcels.openVersion(parcel, n, *back, &backPrevious)
                           : Result<Bytes>(back.error());
    const bool good = again.ok() && !backPrevious && crypto::hash(*again) == want;
    if (again.ok())
        crypto::wipe(*again);
    if (good)
        return {};
    (void)store.put(key, previous);
    return Error(Errc::Corrupt, key + " did not read back as written after " + std::string(step) +
                                    "; the old object was put back");
}

UserSecrets copySecrets(const UserSecrets& s) {
    return cloneSecrets(s);
}

} // namespace detail

} // namespace isr::parcel
