// What this kiosk has seen of each parcel (seen_versions.h).
#include "session/seen_versions.h"

#include "util/json.h"
#include "util/log.h"
#include "util/posix.h"

#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace isr::session {

namespace {

crypto::Secret secretOf(crypto::Hash& k) {
    crypto::Secret key = crypto::Secret::copyOf(ByteView(k.data(), k.size()));
    crypto::wipe(MutableByteView(k.data(), k.size()));
    return key;
}

// One key for the record's name and its seal, derived from the user's
// convergence secret, which a password change keeps (seen_versions.h).
// Unkeyed BLAKE2b over label and secret: never equal to a chunk key
// (BLAKE2b keyed with the secret over the chunk's body).
crypto::Secret recordKey(const parcel::UserSecrets& secrets) {
    crypto::Hasher h;
    h.update(asBytes(std::string("isr-kiosk-seen-key-v2:")));
    h.update(secrets.convergence.view());
    crypto::Hash k = h.finish();
    return secretOf(k);
}

// Before v2: derived from the master key, which a password change rotates.
crypto::Secret legacyRecordKey(const crypto::Secret& master) {
    crypto::Hash k =
        crypto::keyedHash(master.view(), asBytes(std::string("isr-kiosk-seen-key-v1")));
    return secretOf(k);
}

std::string associatedData(const std::string& user, const std::string& parcel) {
    return "isr-kiosk-seen-v1:" + user + "/" + parcel;
}

std::string fileName(const crypto::Secret& key, const std::string& user,
                     const std::string& parcel) {
    crypto::Hash h = crypto::keyedHash(key.view(), asBytes(user + "/" + parcel));
    return toHex(ByteView(h.data(), h.size()));
}

} // namespace

std::string SeenVersions::pathFor(const parcel::UserSecrets& secrets,
                                  const std::string& parcel) const {
    return dir_ + "/" + fileName(recordKey(secrets), secrets.user, parcel);
}

std::string SeenVersions::legacyPathFor(const crypto::Secret& master, const std::string& user,
                                        const std::string& parcel) const {
    return dir_ + "/" + fileName(legacyRecordKey(master), user, parcel);
}

namespace {

enum class Read { Missing, Unreadable, Ok };

Read readRecord(const std::string& path, const crypto::Secret& key, const std::string& user,
                const std::string& parcel, SeenVersion& seen) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) {
        if (errno == ENOENT)
            return Read::Missing;
        ISR_LOG_WARN("session") << "cannot read the seen-version record " << path << ": "
                                << std::strerror(errno);
        return Read::Unreadable;
    }
    Bytes sealed(4096);
    auto n = preadAll(fd.get(), MutableByteView(sealed.data(), sealed.size()), 0, path);
    if (!n.ok()) {
        ISR_LOG_WARN("session") << n.error().describe();
        return Read::Unreadable;
    }
    sealed.resize(*n);
    auto plain = crypto::open(key, sealed, asBytes(associatedData(user, parcel)));
    auto doc = plain.ok() ? json::parse(asString(*plain)) : Result<json::Value>(plain.error());
    if (doc.ok()) {
        auto version = doc->getInt("version");
        auto digest = doc->getString("digest");
        auto created = doc->getInt("created");
        auto kiosk = doc->getString("kiosk");
        auto raw = digest.ok() ? fromHex(*digest) : Result<Bytes>(digest.error());
        if (version.ok() && *version > 0 && raw.ok() && raw->size() == seen.digest.size() &&
            created.ok() && kiosk.ok()) {
            seen.version = std::uint64_t(*version);
            std::memcpy(seen.digest.data(), raw->data(), seen.digest.size());
            seen.created = *created;
            seen.kiosk = *kiosk;
            return Read::Ok;
        }
    }
    // Damaged (or replaced by someone without the key): this kiosk checks
    // as one that never saw the parcel, and records afresh.
    ISR_LOG_WARN("session") << "ignoring an unreadable seen-version record " << path;
    return Read::Unreadable;
}

} // namespace

std::optional<SeenVersion> SeenVersions::load(const parcel::UserSecrets& secrets,
                                              const std::string& parcel) const {
    SeenVersion seen;
    const Read current =
        readRecord(pathFor(secrets, parcel), recordKey(secrets), secrets.user, parcel, seen);
    if (current == Read::Ok)
        return seen;
    if (current == Read::Unreadable)
        return std::nullopt;
    // No record under the current name: one an older kiosk wrote under
    // the master (or a master the account still lists as previous).
    const crypto::Secret* masters[1 + 32] = {&secrets.master};
    std::size_t count = 1;
    for (const auto& m : secrets.previousMasters)
        if (count < std::size(masters))
            masters[count++] = &m;
    for (std::size_t i = 0; i < count; ++i) {
        if (masters[i]->empty())
            continue;
        const std::string path = legacyPathFor(*masters[i], secrets.user, parcel);
        if (readRecord(path, legacyRecordKey(*masters[i]), secrets.user, parcel, seen) == Read::Ok)
            return seen;
    }
    return std::nullopt;
}

Status SeenVersions::record(const parcel::UserSecrets& secrets, const std::string& parcel,
                            const SeenVersion& seen) const {
    ISR_TRY_STATUS(write(recordKey(secrets), secrets.user, parcel, seen));
    // The record under its old name, if an older kiosk left one.
    if (!secrets.master.empty())
        ::unlink(legacyPathFor(secrets.master, secrets.user, parcel).c_str());
    for (const auto& m : secrets.previousMasters)
        ::unlink(legacyPathFor(m, secrets.user, parcel).c_str());
    return {};
}

Status SeenVersions::recordLegacy(const crypto::Secret& master, const std::string& user,
                                  const std::string& parcel, const SeenVersion& seen) const {
    return write(legacyRecordKey(master), user, parcel, seen);
}

Status SeenVersions::write(const crypto::Secret& key, const std::string& user,
                           const std::string& parcel, const SeenVersion& seen) const {
    if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
        return errnoError(errno, "mkdir " + dir_);
    json::Value doc(
        json::Object{{"version", seen.version},
                     {"digest", toHex(ByteView(seen.digest.data(), seen.digest.size()))},
                     {"created", seen.created},
                     {"kiosk", seen.kiosk}});
    Bytes sealed = crypto::seal(key, asBytes(doc.dump()), asBytes(associatedData(user, parcel)));
    const std::string path = dir_ + "/" + fileName(key, user, parcel);
    const std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str()); // a leftover of a crash
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid())
        return errnoError(errno, "create " + tmp);
    ISR_TRY_STATUS(pwriteAll(fd.get(), sealed, 0, tmp));
    if (::fsync(fd.get()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return errnoError(err, "fsync " + tmp);
    }
    if (fd.close() != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return errnoError(err, "close " + tmp);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return errnoError(err, "rename " + tmp);
    }
    return {};
}

} // namespace isr::session
