#include "session/workspace.h"

#include "crypto/crypto.h"
#include "disk/fuse_export.h"
#include "memimg/memimg.h"
#include "util/log.h"

#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <sys/statvfs.h>

namespace isr::session {

namespace fs = std::filesystem;

void Workspace::wipeCrashed(const std::string& stateDir) {
    std::string sessionsDir = stateDir + "/sessions";
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(sessionsDir, ec)) {
        // A lazy-memory session's RAM file (session.cpp openRam): its FUSE
        // mount outlives a killed kiosk, dead, and blocks the removal below
        // (the session's sealed overlay beside it would stay).
        if (auto st = disk::FuseExport::detachLeftover((entry.path() / "ram").string()); !st.ok()) {
            ISR_LOG_WARN("session") << st.error().describe();
        }
        std::ifstream record(entry.path() / "scratch");
        std::string scratch;
        if (!record || !std::getline(record, scratch))
            continue;
        fs::path p(scratch);
        if (!p.is_absolute() || p.filename().string().rfind("isr-memimg-", 0) != 0 ||
            !fs::is_directory(fs::symlink_status(p, ec)))
            continue;
        ISR_LOG_WARN("session") << "wiping the scratch of a crashed session: " << scratch;
        if (auto st = memimg::wipeScratchDir(scratch); !st.ok()) {
            ISR_LOG_WARN("session") << "wiping " << scratch << ": " << st.error().describe();
        }
    }
    fs::remove_all(sessionsDir, ec);
}

Status Workspace::create(const std::string& stateDir, const std::string& scratchParent) {
    failedAt_.clear();
    std::string id = toHex(crypto::randomBytes(6));
    sessionDir_ = stateDir + "/sessions/" + id;
    std::error_code ec;
    fs::create_directories(sessionDir_, ec);
    if (ec) {
        failedAt_ = stateDir;
        std::string dir = sessionDir_;
        sessionDir_.clear();
        return Error(Errc::Io, "cannot create " + dir + ": " + ec.message());
    }
    ::chmod(sessionDir_.c_str(), 0700);
    memimg::ScratchOptions so;
    so.parent = scratchParent;
    auto scratch = memimg::createScratchDir(so);
    if (!scratch.ok()) {
        failedAt_ = scratchParent.empty() ? std::string("/dev/shm") : scratchParent;
        return std::move(scratch).error();
    }
    scratchDir_ = std::move(*scratch);
    savePath_ = scratchDir_ + "/memory.save";
    std::ofstream record(sessionDir_ + "/scratch", std::ios::trunc);
    record << scratchDir_ << "\n";
    record.close();
    if (!record) {
        failedAt_ = stateDir;
        return Error(Errc::NoSpace, "cannot record the scratch directory in " + sessionDir_);
    }
    return {};
}

void Workspace::wipe() {
    if (!scratchDir_.empty()) {
        if (auto st = memimg::wipeScratchDir(scratchDir_); !st.ok()) {
            ISR_LOG_WARN("session") << "wiping scratch: " << st.error().describe();
        }
    }
    scratchDir_.clear();
    savePath_.clear();
    if (!sessionDir_.empty()) {
        std::error_code ec;
        fs::remove_all(sessionDir_, ec);
    }
    sessionDir_.clear();
}

std::optional<std::uint64_t> freeBytesAt(const std::string& path) {
    struct statvfs vfs {};
    if (path.empty() || ::statvfs(path.c_str(), &vfs) != 0)
        return std::nullopt;
    return std::uint64_t(vfs.f_bavail) * vfs.f_frsize;
}

} // namespace isr::session
