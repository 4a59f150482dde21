#pragma once
// Shared helpers for isr tests.

#include <QString>
#include <cstdint>
#include <string>

namespace isr::test {

// CTest's SKIP_RETURN_CODE. A test that cannot run because a prerequisite is
// missing calls skipAll(): it prints the reason and exits 77, so CTest shows
// "Skipped" with the reason in the log, never a silent pass.
inline constexpr int kSkipExitCode = 77;
[[noreturn]] void skipAll(const std::string& reason);

// True if `program` is found on PATH.
bool haveProgram(const std::string& program);
// skipAll() unless every program is on PATH.
void requirePrograms(std::initializer_list<const char*> programs);

// A fresh directory under $TMPDIR removed at destruction (unless
// ISR_KEEP_TEST_DIRS is set, for debugging).
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// A fresh directory in /dev/shm (memory, like a kiosk's scratch), named
// /dev/shm/<prefix>-XXXXXX, removed at destruction.
class ShmDir {
public:
    explicit ShmDir(const std::string& prefix);
    ~ShmDir();
    ShmDir(const ShmDir&) = delete;
    ShmDir& operator=(const ShmDir&) = delete;
    std::string path;
};

// A small tmpfs mounted at `path` (created if missing) for this object's
// lifetime, so a test can fill a kiosk directory without filling the host.
// skipAll() if not root or the mount fails.
class TmpfsMount {
public:
    TmpfsMount(std::string path, const std::string& size);
    ~TmpfsMount();
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// Writes <dir>/filler until dir's file system is full, then gives `leave`
// bytes back; unfill() removes the filler.
void fill(const std::string& dir, std::uint64_t leave = 0);
void unfill(const std::string& dir);

// Runs a program, waits, returns exit status; captures stdout/stderr.
struct ProcessResult {
    int exitCode = -1;
    std::string out;
    std::string err;
};
ProcessResult runProcess(const QString& program, const QStringList& args,
                         const QByteArray& stdinData = {}, int timeoutMs = 120000);

} // namespace isr::test
