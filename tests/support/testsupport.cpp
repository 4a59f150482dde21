#include "testsupport.h"

#include <QProcess>
#include <QStandardPaths>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

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

} // namespace isr::test
