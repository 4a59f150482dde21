#include "testsupport.h"

#include <QProcess>
#include <QStandardPaths>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <stdexcept>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace isr::test {

void skipAll(const std::string& reason) {
    std::fprintf(stdout, "SKIP: %s\n", reason.c_str());
    std::fflush(stdout);
    std::_Exit(kSkipExitCode);
}

bool haveProgram(const std::string& program) {
    return !QStandardPaths::findExecutable(QString::fromStdString(program)).isEmpty();
}

void requirePrograms(std::initializer_list<const char*> programs) {
    for (const char* p : programs)
        if (!haveProgram(p))
            skipAll(std::string("required program not installed: ") + p +
                    " (run packaging/install-deps.sh)");
}

TempDir::TempDir() {
    std::string base = std::filesystem::temp_directory_path().string() + "/isr-test-XXXXXX";
    if (!mkdtemp(base.data()))
        throw std::runtime_error("mkdtemp failed");
    // As root, core/vm runs QEMU as isr-qemu, which must pass through to the
    // sockets a test's state directory holds: searchable, not listable.
    if (::geteuid() == 0)
        ::chmod(base.c_str(), 0711);
    path_ = base;
}

TempDir::~TempDir() {
    if (std::getenv("ISR_KEEP_TEST_DIRS"))
        return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

ProcessResult runProcess(const QString& program, const QStringList& args,
                         const QByteArray& stdinData, int timeoutMs) {
    QProcess proc;
    proc.start(program, args);
    ProcessResult result;
    if (!proc.waitForStarted(10000)) {
        result.err = "failed to start " + program.toStdString();
        return result;
    }
    if (!stdinData.isEmpty())
        proc.write(stdinData);
    proc.closeWriteChannel();
    if (!proc.waitForFinished(timeoutMs)) {
        proc.kill();
        proc.waitForFinished();
        result.err = "timed out";
        return result;
    }
    result.out = proc.readAllStandardOutput().toStdString();
    result.err = proc.readAllStandardError().toStdString();
    result.exitCode = proc.exitStatus() == QProcess::NormalExit ? proc.exitCode() : -1;
    return result;
}

ShmDir::ShmDir(const std::string& prefix) {
    std::string t = "/dev/shm/" + prefix + "-XXXXXX";
    if (!mkdtemp(t.data()))
        throw std::runtime_error("mkdtemp in /dev/shm failed");
    path = t;
}

ShmDir::~ShmDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
}

TmpfsMount::TmpfsMount(std::string path, const std::string& size) : path_(std::move(path)) {
    if (::geteuid() != 0)
        skipAll("mounting a small tmpfs needs root");
    std::filesystem::create_directories(path_);
    // 0711 as TempDir: QEMU (isr-qemu when root) passes through to sockets.
    std::string options = "size=" + size + ",mode=0711";
    if (::mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0)
        skipAll(std::string("cannot mount a tmpfs: ") + std::strerror(errno));
}

TmpfsMount::~TmpfsMount() {
    ::umount2(path_.c_str(), MNT_DETACH);
}

void fill(const std::string& dir, std::uint64_t leave) {
    std::string path = dir + "/filler";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        throw std::runtime_error("filler: " + std::string(std::strerror(errno)));
    std::vector<char> block(1 << 20, 'f');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    // The last partial block: fill in small writes up to the very end.
    std::vector<char> small(4096, 'f');
    while (::write(fd, small.data(), small.size()) > 0) {
    }
    ::close(fd);
    if (leave > 0) {
        auto size = std::filesystem::file_size(path);
        if (::truncate(path.c_str(), off_t(size > leave ? size - leave : 0)) != 0)
            throw std::runtime_error("truncate filler: " + std::string(std::strerror(errno)));
    }
}

void unfill(const std::string& dir) {
    ::unlink((dir + "/filler").c_str());
}

} // namespace isr::test
