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

// One key for the record's name and its seal, derived from the master key
// (never the master key itself in a second role).
crypto::Secret recordKey(const crypto::Secret& master) {
    crypto::Hash k =
        crypto::keyedHash(master.view(), asBytes(std::string("isr-kiosk-seen-key-v1")));
    crypto::Secret key = crypto::Secret::copyOf(ByteView(k.data(), k.size()));
    crypto::wipe(MutableByteView(k.data(), k.size()));
    return key;
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

std::string SeenVersions::pathFor(const crypto::Secret& master, const std::string& user,
                                  const std::string& parcel) const {
    return dir_ + "/" + fileName(recordKey(master), user, parcel);
}

std::optional<SeenVersion> SeenVersions::load(const crypto::Secret& master, const std::string& user,
                                              const std::string& parcel) const {
    crypto::Secret key = recordKey(master);
    const std::string path = dir_ + "/" + fileName(key, user, parcel);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) {
        if (errno != ENOENT) {
            ISR_LOG_WARN("session")
                << "cannot read the seen-version record " << path << ": " << std::strerror(errno);
        }
        return std::nullopt;
    }
    Bytes sealed(4096);
    auto n = preadAll(fd.get(), MutableByteView(sealed.data(), sealed.size()), 0, path);
    if (!n.ok()) {
        ISR_LOG_WARN("session") << n.error().describe();
        return std::nullopt;
    }
    sealed.resize(*n);
    auto plain = crypto::open(key, sealed, asBytes(associatedData(user, parcel)));
    auto doc = plain.ok() ? json::parse(asString(*plain)) : Result<json::Value>(plain.error());
    SeenVersion seen;
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
            return seen;
        }
    }
    // Damaged, or sealed under a master key this user no longer has: this
    // kiosk checks as one that never saw the parcel (and records afresh).
    ISR_LOG_WARN("session") << "ignoring an unreadable seen-version record " << path;
    return std::nullopt;
}

Status SeenVersions::record(const crypto::Secret& master, const std::string& user,
                            const std::string& parcel, const SeenVersion& seen) const {
    crypto::Secret key = recordKey(master);
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
