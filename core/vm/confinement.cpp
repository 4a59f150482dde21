// Who QEMU and swtpm run as, and the access they get. See confinement.h.
#include "vm/confinement.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace isr::vm {
namespace {

Error errnoError(int err, const std::string& what) {
    return Error(err == ENOENT                   ? Errc::NotFound
                 : err == EACCES || err == EPERM ? Errc::AccessDenied
                                                 : Errc::Io,
                 what + ": " + std::strerror(err));
}

// Ours, group gid, group bits exactly `groupBits`; owner and other bits kept.
Status setGroupAccess(int fd, const struct stat& st, const std::string& path, gid_t gid,
                      mode_t groupBits) {
    if (st.st_uid != ::geteuid())
        return Error(Errc::AccessDenied, path + " belongs to uid " + std::to_string(st.st_uid) +
                                             ", not to this process: not handing it to QEMU");
    if (st.st_gid != gid && ::fchown(fd, uid_t(-1), gid) != 0)
        return errnoError(errno, "giving " + path + " to group " + std::to_string(gid));
    const mode_t mode = (st.st_mode & (07777 & ~S_IRWXG)) | groupBits;
    if ((st.st_mode & 07777) != mode && ::fchmod(fd, mode) != 0)
        return errnoError(errno, "chmod " + path);
    return {};
}

// The permission bits that apply to uid/gid on st (no ACLs).
mode_t bitsFor(const struct stat& st, uid_t uid, gid_t gid) {
    if (st.st_uid == uid)
        return (st.st_mode >> 6) & 7;
    if (st.st_gid == gid)
        return (st.st_mode >> 3) & 7;
    return st.st_mode & 7;
}

} // namespace

Result<std::optional<QemuAccount>> qemuAccount() {
    if (::geteuid() != 0)
        return std::optional<QemuAccount>{};
    const struct passwd* pw = ::getpwnam(kQemuAccountName);
    if (!pw)
        return Error(Errc::Unsupported,
                     std::string("running as root, QEMU runs as the account '") + kQemuAccountName +
                         "', which does not exist (run packaging/install-deps.sh or install the "
                         "isr package)");
    QemuAccount a;
    a.uid = pw->pw_uid;
    a.gid = pw->pw_gid;
    a.swtpmUser = kQemuAccountName;
    a.swtpmUid = a.uid;
    if (a.uid == 0)
        return Error(Errc::Unsupported, std::string("the account '") + kQemuAccountName +
                                            "' is uid 0: refusing to run QEMU as root");
    // swtpm_setup manufactures a new TPM's EK certificate with Debian's local
    // CA (/var/lib/swtpm-localca, owned by tss); libvirt's own default is tss.
    if (const struct passwd* tss = ::getpwnam("tss"); tss && tss->pw_uid != 0) {
        a.swtpmUser = "tss";
        a.swtpmUid = tss->pw_uid;
    }
    return std::optional<QemuAccount>(a);
}

Status grantTraverse(const std::string& dir, gid_t gid) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errnoError(errno, "opening " + dir);
    struct stat st {};
    Status s = ::fstat(fd, &st) == 0 ? setGroupAccess(fd, st, dir, gid, S_IXGRP)
                                     : Status(errnoError(errno, "stat " + dir));
    ::close(fd);
    return s;
}

Status grantPathBelow(const std::string& top, const std::string& path, gid_t gid,
                      mode_t groupBits) {
    namespace fs = std::filesystem;
    const fs::path t = fs::path(top).lexically_normal();
    const fs::path rel = fs::path(path).lexically_normal().lexically_relative(t);
    if (rel.empty() || *rel.begin() == "..")
        return Error(Errc::InvalidArgument, path + " is not below " + top);
    fs::path dir = t;
    ISR_TRY_STATUS(grantTraverse(dir.string(), gid));
    for (auto it = rel.begin(); std::next(it) != rel.end(); ++it) {
        dir /= *it;
        ISR_TRY_STATUS(grantTraverse(dir.string(), gid));
    }
    // The directories are ours and nobody else may write them (checked
    // above: we own them, and their group is now QEMU's with no w), so the
    // name cannot be swapped for a symlink between lstat and chmod.
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return errnoError(errno, path);
    if (S_ISLNK(st.st_mode) || !(S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode)))
        return Error(Errc::AccessDenied, path + " is not a regular file or socket");
    if (st.st_uid != ::geteuid())
        return Error(Errc::AccessDenied, path + " belongs to uid " + std::to_string(st.st_uid) +
                                             ", not to this process: not handing it to QEMU");
    if (st.st_gid != gid && ::lchown(path.c_str(), uid_t(-1), gid) != 0)
        return errnoError(errno, "giving " + path + " to QEMU's group");
    const mode_t mode = (st.st_mode & (07777 & ~S_IRWXG)) | groupBits;
    if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0)
        return errnoError(errno, "chmod " + path);
    return {};
}

bool accountCanAccess(const QemuAccount& account, const std::string& path, int mode,
                      std::string* why) {
    char resolved[PATH_MAX];
    if (!::realpath(path.c_str(), resolved)) {
        if (why)
            *why = path + ": " + std::strerror(errno);
        return false;
    }
    const std::string p = resolved;
    // Every directory on the way needs x: "/", "/a", "/a/b" for "/a/b/c".
    std::string dir = "/";
    std::size_t pos = 1;
    for (;;) {
        struct stat st {};
        if (::stat(dir.c_str(), &st) != 0 || !(bitsFor(st, account.uid, account.gid) & 1)) {
            if (why)
                *why = dir + " is not searchable by " + kQemuAccountName;
            return false;
        }
        const std::size_t next = p.find('/', pos);
        if (next == std::string::npos)
            break;
        dir = p.substr(0, next);
        pos = next + 1;
    }
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {
        if (why)
            *why = p + ": " + std::strerror(errno);
        return false;
    }
    const mode_t bits = bitsFor(st, account.uid, account.gid);
    if (((mode & R_OK) && !(bits & 4)) || ((mode & W_OK) && !(bits & 2))) {
        if (why)
            *why = p + " is not " + ((mode & W_OK) ? "writable" : "readable") + " by " +
                   kQemuAccountName;
        return false;
    }
    return true;
}

Status handTpmStateToSwtpm(const QemuAccount& account, const std::string& uuidDir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(uuidDir, ec)))
        return {}; // no state yet: libvirt makes it (and swtpm_setup fills it)
    // swtpm's primary group is QEMU's (qemu.conf swtpm_group), which may
    // pass through <uuid>; tpm2/ and the state are swtpm's alone.
    ISR_TRY_STATUS(grantTraverse(uuidDir, account.gid));
    const std::string tpm2 = uuidDir + "/tpm2";
    if (!fs::is_directory(fs::symlink_status(tpm2, ec)))
        return {};
    if (::lchown(tpm2.c_str(), account.swtpmUid, account.gid) != 0 || ::chmod(tpm2.c_str(), 0700))
        return errnoError(errno, "handing " + tpm2 + " to " + account.swtpmUser);
    for (const auto& entry : fs::directory_iterator(tpm2, ec)) {
        const std::string f = entry.path().string();
        struct stat st {};
        if (::lstat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (::lchown(f.c_str(), account.swtpmUid, account.gid) != 0 || ::chmod(f.c_str(), 0600))
            return errnoError(errno, "handing " + f + " to " + account.swtpmUser);
    }
    if (ec)
        return Error(Errc::Io, "listing " + tpm2 + ": " + ec.message());
    return {};
}

} // namespace isr::vm
