// FileStore: see filestore.h for the on-disk protocol.
#include "util/posix.h"
#include "store/filestore.h"

#include "crypto/crypto.h"
#include "util/fault.h"
#include "util/log.h"

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


// Unlinks a temp file on scope exit unless released.
class TempFile {
public:
    explicit TempFile(std::string path) : path_(std::move(path)) {}
    ~TempFile() {
        if (!path_.empty())
            ::unlink(path_.c_str());
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    const std::string& path() const { return path_; }
    void release() { path_.clear(); }

private:
    std::string path_;
};

std::string parentOf(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

// Makes a directory entry durable. Some file systems refuse fsync on a
// directory (EINVAL); there is nothing more we can do there.
Status fsyncDir(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid())
        return errnoError(errno, "open directory " + dir);
    if (::fsync(fd.get()) != 0 && errno != EINVAL)
        return errnoError(errno, "fsync directory " + dir);
    return {};
}

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
    const std::string path = pathOf(key);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        // A file where a directory would be ("a" exists, asked for "a/b").
        int err = errno == ENOTDIR ? ENOENT : errno;
        return errnoError(err, "get " + key);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errnoError(errno, "stat " + key);
    if (!S_ISREG(st.st_mode))
        return Error(Errc::NotFound, "get " + key + ": not an object");
    const std::uint64_t size = std::uint64_t(st.st_size);
    if (offset > size)
        return Error(Errc::InvalidArgument, "get " + key + ": offset " + std::to_string(offset) +
                                                " past the end (" + std::to_string(size) + ")");
    return readAt(fd.get(), offset, std::min(length, size - offset), key);
}

Result<std::string> FileStore::writeTemp(ByteView data) {
    static std::atomic<std::uint64_t> counter{0};
    const std::string tmpDir = root_ + "/" + kTmpDir;
    // pid + counter make it unique within a host, random bytes across hosts.
    const std::string path = tmpDir + "/" + std::to_string(::getpid()) + "-" +
                             std::to_string(counter.fetch_add(1)) + "-" +
                             toHex(crypto::randomBytes(8));
    int raw = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (raw < 0 && errno == ENOENT) {
        if (::mkdir(tmpDir.c_str(), 0755) != 0 && errno != EEXIST)
            return errnoError(errno, "create " + tmpDir);
        raw = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (raw < 0)
        return errnoError(errno, "create temp file in " + tmpDir);
    UniqueFd fd(raw);
    TempFile temp(path);
    ISR_TRY_STATUS(writeAll(fd.get(), data, path));
    if (::fsync(fd.get()) != 0)
        return errnoError(errno, "fsync " + path);
    if (fd.close() != 0)
        return errnoError(errno, "close " + path);
    temp.release();
    return path;
}

Status FileStore::makeParents(const std::string& key) {
    std::size_t pos = 0;
    while ((pos = key.find('/', pos)) != std::string::npos) {
        const std::string dir = root_ + "/" + key.substr(0, pos);
        if (::mkdir(dir.c_str(), 0755) == 0) {
            // The new directory's own name must survive a crash too.
            ISR_TRY_STATUS(fsyncDir(parentOf(dir)));
        } else if (errno != EEXIST) {
            return errnoError(errno, "create directory " + dir);
        }
        ++pos;
    }
    return {};
}

Status FileStore::put(const std::string& key, ByteView data) {
    ISR_TRY_STATUS(checkKey(key));
    ISR_TRY_STATUS(makeParents(key));
    ISR_TRY_ASSIGN(std::string tempPath, writeTemp(data));
    TempFile temp(tempPath);
    ISR_TRY_STATUS(ISR_FAULT_POINT("store.file.before-rename"));
    const std::string path = pathOf(key);
    if (::rename(tempPath.c_str(), path.c_str()) != 0)
        return errnoError(errno, "put " + key);
    temp.release();
    return fsyncDir(parentOf(path));
}

Status FileStore::putIfAbsent(const std::string& key, ByteView data) {
    ISR_TRY_STATUS(checkKey(key));
    ISR_TRY_STATUS(makeParents(key));
    ISR_TRY_ASSIGN(std::string tempPath, writeTemp(data));
    TempFile temp(tempPath); // unlinked in every case: the object keeps its own link
    ISR_TRY_STATUS(ISR_FAULT_POINT("store.file.before-rename"));
    const std::string path = pathOf(key);
    if (::link(tempPath.c_str(), path.c_str()) != 0) {
        const int err = errno;
        // NFS: a retransmitted LINK can report failure (even EEXIST) although
        // the first attempt succeeded. The temp file's link count tells the
        // truth (the recipe in open(2)).
        struct stat st {};
        if (::stat(tempPath.c_str(), &st) != 0 || st.st_nlink != 2) {
            if (err == EEXIST)
                return Error(Errc::AlreadyExists, "put-if-absent " + key + ": already exists");
            return errnoError(err, "put-if-absent " + key);
        }
        ISR_LOG_INFO(kLog) << "link reported " << std::strerror(err) << " for " << key
                           << " but succeeded";
    }
    return fsyncDir(parentOf(path));
}

Status FileStore::remove(const std::string& key) {
    ISR_TRY_STATUS(checkKey(key));
    const std::string path = pathOf(key);
    if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return {};
        if (errno == EISDIR)
            return Error(Errc::InvalidArgument,
                         "remove " + key + ": is a directory, not an object");
        return errnoError(errno, "remove " + key);
    }
    // Empty parent directories stay: removing them would race with a
    // concurrent put that just created them.
    return fsyncDir(parentOf(path));
}

Result<bool> FileStore::exists(const std::string& key) {
    ISR_TRY_STATUS(checkKey(key));
    struct stat st {};
    if (::stat(pathOf(key).c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return false;
        return errnoError(errno, "stat " + key);
    }
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
        DIR* dir = ::opendir(dirPath.c_str());
        if (!dir) {
            if (errno == ENOENT || errno == ENOTDIR)
                continue; // nothing under this prefix, or removed meanwhile
            return errnoError(errno, "list " + dirPath);
        }
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

// The object at path, opened and read through one descriptor: the content
// and its tag belong to the same file even if the name is replaced meanwhile.
static Result<std::pair<UniqueFd, Bytes>> openObject(const std::string& path,
                                                     const std::string& key) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) {
        int err = errno == ENOTDIR ? ENOENT : errno;
        return errnoError(err, "get " + key);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errnoError(errno, "stat " + key);
    if (!S_ISREG(st.st_mode))
        return Error(Errc::NotFound, "get " + key + ": not an object");
    ISR_TRY_ASSIGN(Bytes data, readAt(fd.get(), 0, std::uint64_t(st.st_size), key));
    return std::make_pair(std::move(fd), std::move(data));
}

Result<TaggedObject> FileStore::getTagged(const std::string& key) {
    ISR_TRY_STATUS(checkKey(key));
    ISR_TRY_ASSIGN(auto opened, openObject(pathOf(key), key));
    TaggedObject out;
    out.tag = contentTag(opened.second);
    out.data = std::move(opened.second);
    return out;
}

Result<std::string> FileStore::putIfMatch(const std::string& key, ByteView data,
                                          const std::string& expectedTag) {
    ISR_TRY_STATUS(checkKey(key));
    const std::string path = pathOf(key);
    const std::string what = "put-if-match " + key;
    // The new content is written (and fsynced) before the flock is taken,
    // so the lock is held only for the check and the rename.
    ISR_TRY_ASSIGN(std::string tempPath, writeTemp(data));
    TempFile temp(tempPath);
    for (;;) {
        auto opened = openObject(path, key);
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
        struct stat held {}, now {};
        if (::fstat(fd, &held) != 0)
            return errnoError(errno, "stat " + key);
        if (::lstat(path.c_str(), &now) != 0) {
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
        if (::rename(temp.path().c_str(), path.c_str()) != 0)
            return errnoError(errno, what);
        temp.release();
        ISR_TRY_STATUS(fsyncDir(parentOf(path)));
        return contentTag(data); // the flock goes with the old file's descriptor
    }
}

} // namespace isr::store
