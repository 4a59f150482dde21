// Picking the accelerator: KVM only when it really works (see vm.h).
#include "util/log.h"
#include "vm/vm.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace isr::vm {
namespace {

constexpr const char* kLog = "vm";

std::string findProgram(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos)
            end = dirs.size();
        std::string candidate = dirs.substr(start, end - start) + "/" + name;
        if (access(candidate.c_str(), X_OK) == 0)
            return candidate;
        start = end + 1;
    }
    return {};
}

} // namespace

Accelerator probeAccelerator() {
    if (const char* forced = std::getenv("ISR_VM_ACCEL")) {
        if (std::string_view(forced) == "tcg")
            return Accelerator::Tcg;
        if (std::string_view(forced) == "kvm")
            return Accelerator::Kvm;
    }
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        ISR_LOG_INFO(kLog) << "no usable /dev/kvm (" << std::strerror(errno) << "), using TCG";
        return Accelerator::Tcg;
    }
    ::close(fd);
    std::string qemu = findProgram("qemu-system-x86_64");
    if (qemu.empty())
        return Accelerator::Tcg;
    // Run the firmware under KVM for a moment with no boot device: broken
    // nested setups abort while loading the vCPU (MSR writes) right away,
    // a working KVM keeps running until we stop it.
    std::vector<std::string> args = {qemu,       "-accel",    "kvm",      "-machine", "q35",
                                     "-cpu",     "qemu64",    "-m",       "32",       "-nodefaults",
                                     "-display", "none",      "-monitor", "none",     "-serial",
                                     "none",     "-no-reboot"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, qemu.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        return Accelerator::Tcg;
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + std::chrono::milliseconds(1500);
    int wstatus = 0;
    while (Clock::now() < deadline) {
        pid_t r = waitpid(pid, &wstatus, WNOHANG);
        if (r == pid) {
            ISR_LOG_WARN(kLog) << "/dev/kvm exists but QEMU under KVM exits at once; using TCG";
            return Accelerator::Tcg;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &wstatus, 0);
    return Accelerator::Kvm;
}

} // namespace isr::vm
