// hardening: see hardening.h.
#include "util/hardening.h"

#include "util/posix.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace isr::hardening {

Status disableCoreDumps() {
    struct rlimit none {};
    if (::setrlimit(RLIMIT_CORE, &none) != 0)
        return errnoError(errno, "setrlimit(RLIMIT_CORE, 0)");
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return errnoError(errno, "prctl(PR_SET_DUMPABLE, 0)");
    return {};
}

namespace {

// /proc/swaps escapes blanks and backslashes in names as \ooo (octal).
std::string unescapeOctal(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7' &&
            s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out += char((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::string readFirstLine(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

// True if the block device `name` (as under /sys/block: "dm-3", "sda2" is
// not one) is a dm-crypt mapping or sits on one. `depth` stops a loop.
bool onDmCrypt(const std::string& sysRoot, const std::string& name, int depth = 0) {
    if (depth > 8 || name.rfind("dm-", 0) != 0)
        return false;
    const std::string dev = sysRoot + "/block/" + name;
    if (readFirstLine(dev + "/dm/uuid").rfind("CRYPT-", 0) == 0)
        return true;
    // LVM (or another mapping) over LUKS: look at the devices below.
    const std::string slaves = dev + "/slaves";
    std::vector<std::string> below;
    if (auto* d = ::opendir(slaves.c_str())) {
        while (auto* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n != "." && n != "..")
                below.push_back(n);
        }
        ::closedir(d);
    }
    for (const auto& n : below)
        if (onDmCrypt(sysRoot, n, depth + 1))
            return true;
    return false;
}

std::string baseName(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The /sys/block name of a device node path: /dev/mapper/x and other links
// are resolved on the real file system when they exist.
std::string blockName(const std::string& path) {
    char real[PATH_MAX];
    if (::realpath(path.c_str(), real))
        return baseName(real);
    return baseName(path);
}

void judge(SwapArea& area, const std::string& sysRoot) {
    if (area.type == "partition") {
        const std::string name = blockName(area.path);
        if (name.rfind("zram", 0) == 0) {
            area.safe = true;
            area.reason = "zram (compressed RAM, never on disk)";
        } else if (onDmCrypt(sysRoot, name)) {
            area.safe = true;
            area.reason = name + " is on a dm-crypt mapping";
        } else {
            area.reason = name + " is not encrypted (no dm-crypt mapping below it)";
        }
        return;
    }
    if (area.type == "file") {
        struct stat st {};
        if (::stat(area.path.c_str(), &st) == 0) {
            // The file system's device, e.g. /sys/dev/block/254:1 -> dm-1.
            const std::string link = sysRoot + "/dev/block/" + std::to_string(major(st.st_dev)) +
                                     ":" + std::to_string(minor(st.st_dev));
            char real[PATH_MAX];
            if (::realpath(link.c_str(), real) && onDmCrypt(sysRoot, baseName(real))) {
                area.safe = true;
                area.reason = "a file on a dm-crypt file system";
                return;
            }
        }
        area.reason = "a swap file on a file system that is not encrypted";
        return;
    }
    area.reason = "swap of type '" + area.type + "'";
}

} // namespace

Result<std::vector<SwapArea>> activeSwap(const std::string& procSwaps, const std::string& sysRoot) {
    std::ifstream in(procSwaps);
    if (!in)
        return errnoError(errno ? errno : ENOENT, "reading " + procSwaps);
    std::vector<SwapArea> out;
    std::string line;
    bool header = true;
    while (std::getline(in, line)) {
        if (header) { // "Filename Type Size Used Priority"
            header = false;
            if (line.rfind("Filename", 0) == 0)
                continue;
        }
        std::istringstream fields(line);
        SwapArea area;
        std::string path;
        if (!(fields >> path >> area.type))
            continue;
        area.path = unescapeOctal(path);
        judge(area, sysRoot);
        out.push_back(std::move(area));
    }
    return out;
}

Status checkSwapEncrypted(const std::string& procSwaps, const std::string& sysRoot) {
    ISR_TRY_ASSIGN(std::vector<SwapArea> areas, activeSwap(procSwaps, sysRoot));
    std::string unsafe;
    for (const auto& a : areas)
        if (!a.safe)
            unsafe += (unsafe.empty() ? "" : "; ") + a.path + " (" + a.reason + ")";
    if (unsafe.empty())
        return {};
    return Error(Errc::Unsupported,
                 "unencrypted swap is active: " + unsafe +
                     ". A user's memory, keys or password could be written to this kiosk's "
                     "disk. Encrypt the swap (dm-crypt), use zram, turn swap off (swapoff -a), "
                     "or set allow_unencrypted_swap = yes in kiosk.conf to accept the risk");
}

Status checkPrivateDirectory(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return errnoError(errno, path);
    if (S_ISLNK(st.st_mode))
        return Error(Errc::AccessDenied, path + " is a symbolic link, not a private directory");
    if (!S_ISDIR(st.st_mode))
        return Error(Errc::AccessDenied, path + " is not a directory");
    if (st.st_uid != ::geteuid())
        return Error(Errc::AccessDenied, path + " belongs to uid " + std::to_string(st.st_uid) +
                                             ", not to this process (uid " +
                                             std::to_string(::geteuid()) + "): refused");
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return Error(Errc::AccessDenied,
                     path + " is writable by its group or by everyone: refused");
    return {};
}

Status ensurePrivateDirectory(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        return errnoError(errno, "creating " + path);
    return checkPrivateDirectory(path);
}

Result<std::string> makePrivateTempDirectory(const std::string& parent, const std::string& prefix) {
    std::string templ = parent + "/" + prefix + "XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
        return errnoError(errno, "creating a private directory in " + parent);
    return std::string(buf.data());
}

} // namespace isr::hardening
