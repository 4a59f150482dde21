// FileStore: see filestore.h for the on-disk protocol.
#include "store/filestore.h"

#include "crypto/crypto.h"
#include "util/fault.h"
#include "util/log.h"
#include "util/posix.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace isr::store {

namespace {

constexpr const char* kLog = "store";

// Unlinks `name` in the directory open at `dir` on scope exit, unless
// release()d (the temp file became the object by rename).
class UnlinkAtExit {
public:
    UnlinkAtExit(int dir, const std::string& name) : dir_(dir), name_(&name) {}
    ~UnlinkAtExit() {
        if (name_)
            ::unlinkat(dir_, name_->c_str(), 0);
    }
    UnlinkAtExit(const UnlinkAtExit&) = delete;
    UnlinkAtExit& operator=(const UnlinkAtExit&) = delete;
    void release() { name_ = nullptr; }

private:
    int dir_;
    const std::string* name_;
};

Status writeAll(int fd, ByteView data, const std::string& path) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errnoError(errno, "write " + path);
        }
        done += std::size_t(n);
    }
    return {};
}

Result<Bytes> readAt(int fd, std::uint64_t offset, std::uint64_t length, const std::string& path) {
    Bytes out(length);
    // Shorter than fstat said: objects are replaced, never truncated in
    // place, so a short read is the old object's end.
    ISR_TRY_ASSIGN(std::size_t done, preadAll(fd, out, offset, "read " + path));
    out.resize(done);
    return out;
}

// "a/b/c" -> {"a/b", "c"}; "c" -> {"", "c"}.
std::pair<std::string, std::string> splitKey(const std::string& key) {
    auto slash = key.rfind('/');
    if (slash == std::string::npos)
        return {"", key};
    return {key.substr(0, slash), key.substr(slash + 1)};
}

Error symlinkRefused(const std::string& what) {
    return Error(Errc::Corrupt, what + " is a symbolic link in the store: refused, not followed "
                                       "(a file store holds only directories and files)");
}

// The first segment "tmp" belongs to FileStore's in-flight writes.
Status checkKey(const std::string& key) {
    ISR_TRY_STATUS(validateKey(key));
    if (key == FileStore::kTmpDir || key.rfind(std::string(FileStore::kTmpDir) + "/", 0) == 0)
        return Error(Errc::InvalidArgument,
                     "store key \"" + key + "\" uses the reserved prefix \"tmp/\"");
    return {};
}

} // namespace

Result<std::unique_ptr<FileStore>> FileStore::open(const std::string& rootIn) {
    if (rootIn.empty() || rootIn.front() != '/')
        return Error(Errc::InvalidArgument, "file store root \"" + rootIn + "\" is not absolute");
    std::string root = rootIn;
    while (root.size() > 1 && root.back() == '/')
        root.pop_back();
    struct stat st {};
    if (::stat(root.c_str(), &st) != 0)
        return errnoError(errno, "file store root " + root);
    if (!S_ISDIR(st.st_mode))
        return Error(Errc::NotFound, "file store root " + root + " is not a directory");
    return std::unique_ptr<FileStore>(new FileStore(root));
}

std::string FileStore::url() const {
    return "file://" + root_;
}

Result<Bytes> FileStore::get(const std::string& key) {
    return getRange(key, 0, UINT64_MAX);
}

Result<Bytes> FileStore::getRange(const std::string& key, std::uint64_t offset,
                                  std::uint64_t length) {
    ISR_TRY_STATUS(checkKey(key));
    ISR_TRY_ASSIGN(UniqueFd fd, openObject(key, "get " + key));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errnoError(errno, "stat " + key);
    if (!S_ISREG(st.st_mode))
        return Error(Errc::NotFound, "get " + key + ": not an object");
    const std::uint64_t size = std::uint64_t(st.st_size);
    if (offset > size)
        return Error(Errc::InvalidArgument, "get " + key + ": offset " + std::to_string(offset) +
                                                " past the end (" + std::to_string(size) + ")");
    const std::uint64_t want = std::min(length, size - offset);
    // Before allocating: a hostile store must not choose how much we read.
    ISR_TRY_STATUS(checkObjectSize(key, want));
    return readAt(fd.get(), offset, want, key);
}

Result<UniqueFd> FileStore::openDirBeneath(const std::string& relDir, bool create) const {
    // The root itself is the administrator's choice (it may be a symlink);
    // below it, no component may be one.
    UniqueFd dir(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir.valid()) {
        // The store itself is gone (an unmounted share, a renamed folder):
        // that is an unreachable store, not a missing object -- a lock
        // heartbeat must not read "nobody holds it" into it.
        if (errno == ENOENT)
            return Error(Errc::Transient, "store root " + root_ + " is gone");
        return errnoError(errno, "open store root " + root_);
    }
    std::size_t start = 0;
    while (start < relDir.size()) {
        std::size_t end = relDir.find('/', start);
        if (end == std::string::npos)
            end = relDir.size();
        const std::string name = relDir.substr(start, end - start);
        const std::string sofar = relDir.substr(0, end);
        int fd = ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && create) {
            if (::mkdirat(dir.get(), name.c_str(), 0700) == 0) {
                // The new directory's own name must survive a crash too.
                if (::fsync(dir.get()) != 0 && errno != EINVAL)
                    return errnoError(errno, "fsync directory of " + sofar);
            } else if (errno != EEXIST) {
                return errnoError(errno, "create directory " + root_ + "/" + sofar);
            }
            fd = ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0) {
            const int err = errno;
            struct stat st {};
            if ((err == ELOOP || err == ENOTDIR) &&
                ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISLNK(st.st_mode))
                return symlinkRefused(sofar);
            // A file where a directory would be ("a" exists, asked for "a/b").
            return errnoError(err == ENOTDIR ? ENOENT : err, "open directory " + sofar);
        }
        dir = UniqueFd(fd);
        start = end + 1;
    }
    return dir;
}

Result<UniqueFd> FileStore::openObject(const std::string& key, const std::string& what) const {
    auto [parent, leaf] = splitKey(key);
    auto dir = openDirBeneath(parent, /*create=*/false);
    if (!dir.ok())
        return std::move(dir).error().context(what);
    // O_NOFOLLOW: a symlink planted as an object is refused; O_NONBLOCK: a
    // FIFO planted as one cannot hang the reader (S_ISREG is checked next).
    int fd = ::openat(dir->get(), leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP)
            return symlinkRefused(key);
        return errnoError(errno == ENOTDIR ? ENOENT : errno, what);
    }
    return UniqueFd(fd);
}

Result<std::string> FileStore::writeTempIn(int tmpDirFd, ByteView data) {
    static std::atomic<std::uint64_t> counter{0};
    // pid + counter make it unique within a host, random bytes across hosts.
    const std::string name = std::to_string(::getpid()) + "-" +
                             std::to_string(counter.fetch_add(1)) + "-" +
                             toHex(crypto::randomBytes(8));
    const std::string path = root_ + "/" + kTmpDir + "/" + name;
    // 0600: objects are ciphertext, but their sizes and presence are still
    // nobody else's business on this host.
    int raw = ::openat(tmpDirFd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       0600);
    if (raw < 0)
        return errnoError(errno, "create temp file in " + root_ + "/" + kTmpDir);
    UniqueFd fd(raw);
    UnlinkAtExit cleanup(tmpDirFd, name);
    ISR_TRY_STATUS(writeAll(fd.get(), data, path));
    if (::fsync(fd.get()) != 0)
        return errnoError(errno, "fsync " + path);
    if (fd.close() != 0)
        return errnoError(errno, "close " + path);
    cleanup.release();
    return name;
}

Status FileStore::put(const std::string& key, ByteView data) {
    ISR_TRY_STATUS(checkKey(key));
    auto [parent, leaf] = splitKey(key);
    ISR_TRY_ASSIGN(UniqueFd dir, openDirBeneath(parent, /*create=*/true));
    ISR_TRY_ASSIGN(UniqueFd tmpDir, openDirBeneath(kTmpDir, /*create=*/true));
    ISR_TRY_ASSIGN(std::string tempName, writeTempIn(tmpDir.get(), data));
    UnlinkAtExit temp(tmpDir.get(), tempName);
    ISR_TRY_STATUS(ISR_FAULT_POINT("store.file.before-rename"));
    // renameat replaces whatever is at the name (a planted symlink
    // included) without following it.
    if (::renameat(tmpDir.get(), tempName.c_str(), dir.get(), leaf.c_str()) != 0)
        return errnoError(errno, "put " + key);
    temp.release();
    if (::fsync(dir.get()) != 0 && errno != EINVAL)
        return errnoError(errno, "fsync directory of " + key);
    return {};
}

Status FileStore::putIfAbsent(const std::string& key, ByteView data) {
    ISR_TRY_STATUS(checkKey(key));
    auto [parent, leaf] = splitKey(key);
    ISR_TRY_ASSIGN(UniqueFd dir, openDirBeneath(parent, /*create=*/true));
    ISR_TRY_ASSIGN(UniqueFd tmpDir, openDirBeneath(kTmpDir, /*create=*/true));
    ISR_TRY_ASSIGN(std::string tempName, writeTempIn(tmpDir.get(), data));
    // Unlinked in every case: the object keeps its own link.
    UnlinkAtExit temp(tmpDir.get(), tempName);
    ISR_TRY_STATUS(ISR_FAULT_POINT("store.file.before-rename"));
    // linkat without AT_SYMLINK_FOLLOW; a name that exists (a planted
    // symlink too) is EEXIST.
    if (::linkat(tmpDir.get(), tempName.c_str(), dir.get(), leaf.c_str(), 0) != 0) {
        const int err = errno;
        // NFS: a retransmitted LINK can report failure (even EEXIST) although
        // the first attempt succeeded. The temp file's link count tells the
        // truth (the recipe in open(2)).
        struct stat st {};
        if (::fstatat(tmpDir.get(), tempName.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            st.st_nlink != 2) {
            if (err == EEXIST)
                return Error(Errc::AlreadyExists, "put-if-absent " + key + ": already exists");
            return errnoError(err, "put-if-absent " + key);
        }
        ISR_LOG_INFO(kLog) << "link reported " << std::strerror(err) << " for " << key
                           << " but succeeded";
    }
    if (::fsync(dir.get()) != 0 && errno != EINVAL)
        return errnoError(errno, "fsync directory of " + key);
    return {};
}

Status FileStore::remove(const std::string& key) {
    ISR_TRY_STATUS(checkKey(key));
    auto [parent, leaf] = splitKey(key);
    auto dir = openDirBeneath(parent, /*create=*/false);
    if (!dir.ok()) {
        if (dir.error().code == Errc::NotFound)
            return {};
        return std::move(dir).error().context("remove " + key);
    }
    // unlinkat removes a planted symlink itself, never what it points to.
    if (::unlinkat(dir->get(), leaf.c_str(), 0) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return {};
        if (errno == EISDIR)
            return Error(Errc::InvalidArgument,
                         "remove " + key + ": is a directory, not an object");
        return errnoError(errno, "remove " + key);
    }
    // Empty parent directories stay: removing them would race with a
    // concurrent put that just created them.
    if (::fsync(dir->get()) != 0 && errno != EINVAL)
        return errnoError(errno, "fsync directory of " + key);
    return {};
}

Result<bool> FileStore::exists(const std::string& key) {
    ISR_TRY_STATUS(checkKey(key));
    auto [parent, leaf] = splitKey(key);
    auto dir = openDirBeneath(parent, /*create=*/false);
    if (!dir.ok()) {
        if (dir.error().code == Errc::NotFound)
            return false;
        return std::move(dir).error().context("exists " + key);
    }
    struct stat st {};
    if (::fstatat(dir->get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return false;
        return errnoError(errno, "stat " + key);
    }
    if (S_ISLNK(st.st_mode))
        return symlinkRefused(key);
    return S_ISREG(st.st_mode);
}

Result<std::vector<ObjectInfo>> FileStore::list(const std::string& prefix) {
    // The prefix may end in the middle of a segment ("users/alice/chunks/a").
    // Walk from the deepest directory it names completely.
    std::string dirKey;
    ISR_TRY_STATUS(validatePrefix(prefix));
    if (!prefix.empty()) {
        auto slash = prefix.rfind('/');
        if (slash != std::string::npos)
            dirKey = prefix.substr(0, slash);
        if (dirKey == kTmpDir || dirKey.rfind(std::string(kTmpDir) + "/", 0) == 0)
            return std::vector<ObjectInfo>{}; // in-flight writes are never objects
    }

    std::vector<ObjectInfo> out;
    // Iterative walk; each entry is a directory key relative to the root.
    std::vector<std::string> pending{dirKey};
    while (!pending.empty()) {
        const std::string rel = std::move(pending.back());
        pending.pop_back();
        const std::string dirPath = rel.empty() ? root_ : root_ + "/" + rel;
        auto dirFd = openDirBeneath(rel, /*create=*/false);
        if (!dirFd.ok()) {
            if (dirFd.error().code == Errc::NotFound)
                continue; // nothing under this prefix, or removed meanwhile
            return std::move(dirFd).error().context("list " + dirPath);
        }
        DIR* dir = ::fdopendir(dirFd->get());
        if (!dir)
            return errnoError(errno, "list " + dirPath);
        dirFd->release(); // closedir closes it
        struct Closer {
            DIR* d;
            ~Closer() { ::closedir(d); }
        } closer{dir};
        const int dfd = ::dirfd(dir);
        for (;;) {
            // readdir signals errors only through errno, and only on NULL.
            errno = 0;
            struct dirent* entry = ::readdir(dir);
            if (!entry) {
                if (errno != 0)
                    return errnoError(errno, "list " + dirPath);
                break;
            }
            const std::string name = entry->d_name;
            if (name == "." || name == "..")
                continue;
            const std::string key = rel.empty() ? name : rel + "/" + name;
            if (rel.empty() && name == kTmpDir)
                continue; // in-flight writes are never objects
            // Only descend into directories that can hold matching keys.
            struct stat st {};
            if (::fstatat(dfd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT)
                    continue;
                return errnoError(errno, "stat " + dirPath + "/" + name);
            }
            if (S_ISDIR(st.st_mode)) {
                const std::string asDir = key + "/";
                if (asDir.compare(0, std::min(asDir.size(), prefix.size()), prefix, 0,
                                  std::min(asDir.size(), prefix.size())) == 0)
                    pending.push_back(key);
            } else if (S_ISREG(st.st_mode) && key.compare(0, prefix.size(), prefix) == 0 &&
                       validateKey(key).ok()) {
                out.push_back({key, std::uint64_t(st.st_size), std::int64_t(st.st_mtime)});
            }
        }
    }
    std::sort(out.begin(), out.end(),
              [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
}

// ---- conditional writes (the parcel lock) -------------------------------------
// See filestore.h for why flock on the object's own file plus a re-check of
// the name makes these atomic against each other and against putIfAbsent.

static std::string contentTag(ByteView data) {
    crypto::Hash h = crypto::hash(data);
    return toHex(ByteView(h.data(), 16));
}

// The object, opened and read through one descriptor (E's openObject: no
// symlink anywhere below the root): the content and its tag belong to the
// same file even if the name is replaced meanwhile.
Result<std::pair<UniqueFd, Bytes>> FileStore::readHeld(const std::string& key) const {
    ISR_TRY_ASSIGN(UniqueFd fd, openObject(key, "get " + key));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errnoError(errno, "stat " + key);
    if (!S_ISREG(st.st_mode))
        return Error(Errc::NotFound, "get " + key + ": not an object");
    ISR_TRY_STATUS(checkObjectSize(key, std::uint64_t(st.st_size)));
    ISR_TRY_ASSIGN(Bytes data, readAt(fd.get(), 0, std::uint64_t(st.st_size), key));
    return std::make_pair(std::move(fd), std::move(data));
}

Result<TaggedObject> FileStore::getTagged(const std::string& key) {
    ISR_TRY_STATUS(checkKey(key));
    ISR_TRY_ASSIGN(auto opened, readHeld(key));
    TaggedObject out;
    out.tag = contentTag(opened.second);
    out.data = std::move(opened.second);
    return out;
}

Result<std::string> FileStore::putIfMatch(const std::string& key, ByteView data,
                                          const std::string& expectedTag) {
    ISR_TRY_STATUS(checkKey(key));
    const std::string what = "put-if-match " + key;
    auto [parent, leaf] = splitKey(key);
    auto dirOpened = openDirBeneath(parent, /*create=*/false);
    if (!dirOpened.ok()) {
        if (dirOpened.error().code == Errc::NotFound)
            return Error(Errc::Conflict, what + ": the object is gone");
        return std::move(dirOpened).error();
    }
    UniqueFd dir = std::move(*dirOpened);
    // The new content is written (and fsynced) before the flock is taken,
    // so the lock is held only for the check and the rename.
    ISR_TRY_ASSIGN(UniqueFd tmpDir, openDirBeneath(kTmpDir, /*create=*/true));
    ISR_TRY_ASSIGN(std::string tempName, writeTempIn(tmpDir.get(), data));
    UnlinkAtExit temp(tmpDir.get(), tempName);
    for (;;) {
        auto opened = readHeld(key);
        if (!opened.ok()) {
            if (opened.error().code == Errc::NotFound)
                return Error(Errc::Conflict, what + ": the object is gone");
            return std::move(opened).error();
        }
        int fd = opened->first.get();
        while (::flock(fd, LOCK_EX) != 0) {
            if (errno != EINTR)
                return errnoError(errno, "flock " + key);
        }
        // Did another writer replace or remove the name while we waited?
        // Then the file we hold is history: look again.
        struct stat held {
        }, now{};
        if (::fstat(fd, &held) != 0)
            return errnoError(errno, "stat " + key);
        if (::fstatat(dir.get(), leaf.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue; // removed: the next open says so
            return errnoError(errno, "stat " + key);
        }
        if (held.st_dev != now.st_dev || held.st_ino != now.st_ino)
            continue;
        // The file we hold is the object; what we read before the flock is
        // its content (objects are replaced, never written in place).
        if (contentTag(opened->second) != expectedTag)
            return Error(Errc::Conflict, what + ": the object was changed by another writer");
        ISR_TRY_STATUS(ISR_FAULT_POINT("store.file.before-rename"));
        if (::renameat(tmpDir.get(), tempName.c_str(), dir.get(), leaf.c_str()) != 0)
            return errnoError(errno, what);
        temp.release();
        if (::fsync(dir.get()) != 0 && errno != EINVAL)
            return errnoError(errno, "fsync directory of " + key);
        return contentTag(data); // the flock goes with the old file's descriptor
    }
}

} // namespace isr::store
