// Private memory-backed scratch space for libvirt's save file, and its wipe.
#include "util/posix.h"
#include "memimg/memimg.h"
#include "util/log.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

namespace isr::memimg {

namespace {

constexpr const char* kLog = "memimg";


bool isMemoryBacked(const std::string& dir) {
    struct statfs fs {};
    if (::statfs(dir.c_str(), &fs) != 0)
        return false;
    return fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC;
}

bool isDirectory(const std::string& dir) {
    struct stat st {};
    return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Zero-fills an open regular file over its length.
Status zeroFill(int fd, const std::string& what) {
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return errnoError(errno, "stat " + what);
    static const Bytes zeros(1u << 20, 0);
    off_t offset = 0;
    while (offset < st.st_size) {
        const std::size_t n =
            std::size_t(std::min<off_t>(st.st_size - offset, off_t(zeros.size())));
        ISR_TRY_STATUS(
            pwriteAll(fd, ByteView(zeros.data(), n), std::uint64_t(offset), "wiping " + what));
        offset += off_t(n);
    }
    if (::fdatasync(fd) != 0 && errno != EINVAL)
        return errnoError(errno, "syncing " + what);
    return {};
}

// Wipes and removes everything inside the directory dirFd (not following
// symlinks), then closes dirFd. `path` is only for messages.
Status wipeContents(int dirFd, const std::string& path) {
    DIR* dir = ::fdopendir(dirFd);
    if (!dir) {
        const int err = errno;
        ::close(dirFd);
        return errnoError(err, "listing " + path);
    }
    Status first;
    auto note = [&](Status s) {
        if (first.ok() && !s.ok())
            first = std::move(s);
    };
    while (dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name == "." || name == "..")
            continue;
        const std::string child = path + "/" + name;
        struct stat st {};
        if (::fstatat(dirfd(dir), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            note(errnoError(errno, "stat " + child));
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            const int sub =
                ::openat(dirfd(dir), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                note(errnoError(errno, "opening " + child));
                continue;
            }
            note(wipeContents(sub, child));
            if (::unlinkat(dirfd(dir), name.c_str(), AT_REMOVEDIR) != 0)
                note(errnoError(errno, "removing " + child));
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            const int fd = ::openat(dirfd(dir), name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                note(errnoError(errno, "opening " + child));
            } else {
                note(zeroFill(fd, child));
                ::close(fd);
            }
        }
        if (::unlinkat(dirfd(dir), name.c_str(), 0) != 0)
            note(errnoError(errno, "removing " + child));
    }
    ::closedir(dir);
    return first;
}

} // namespace

Result<std::string> createScratchDir(const ScratchOptions& options) {
    std::string parent = options.parent;
    if (parent.empty()) {
        if (isDirectory("/dev/shm") && isMemoryBacked("/dev/shm")) {
            parent = "/dev/shm";
        } else if (const char* run = std::getenv("XDG_RUNTIME_DIR"); run && *run) {
            parent = run;
        } else {
            return Error(Errc::Unsupported,
                         "no memory-backed directory for the memory image: /dev/shm is not tmpfs "
                         "and XDG_RUNTIME_DIR is not set");
        }
    }
    if (!isDirectory(parent))
        return Error(Errc::NotFound, "scratch parent " + parent + " is not a directory");
    if (!options.allowDisk && !isMemoryBacked(parent))
        return Error(Errc::Unsupported,
                     "scratch parent " + parent +
                         " is not memory-backed (tmpfs); the memory image holds the guest's RAM "
                         "in clear and must not touch the kiosk's disk");
    std::string templ = parent + "/isr-memimg-XXXXXX";
    if (!::mkdtemp(templ.data()))
        return errnoError(errno, "creating a scratch directory under " + parent);
    // mkdtemp already uses 0700; make it explicit whatever the umask did.
    if (::chmod(templ.c_str(), 0700) != 0) {
        const int err = errno;
        ::rmdir(templ.c_str());
        return errnoError(err, "chmod " + templ);
    }
    ISR_LOG_INFO(kLog) << "scratch directory " << templ;
    return templ;
}

Status wipeScratchDir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return {};
        return errnoError(errno, "opening scratch directory " + dir);
    }
    ISR_TRY_STATUS(wipeContents(fd, dir));
    if (::rmdir(dir.c_str()) != 0)
        return errnoError(errno, "removing scratch directory " + dir);
    return {};
}

} // namespace isr::memimg
