// QEMU's confinement when the kiosk runs as root (issue #16 item 3): the demo
// guest booted and restored through the Vm API runs as isr-qemu, not root,
// with no capabilities, under QEMU's seccomp sandbox and no_new_privs, in
// its own mount namespace; it reaches the NBD socket the kiosk serves but
// cannot list the state directory or read a root-only file in it; nobody
// else can connect to the socket; the shared kernel stays root-owned while
// the VM runs.
#include "testsupport.h"
#include "vm/vm.h"
#include "vmguest.h"

#include <QTest>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <pwd.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace isr;
using namespace isr::test;

namespace {

// "Uid:", "Gid:", "CapEff:", "Seccomp:", "NoNewPrivs:" of /proc/<pid>/status.
std::string statusField(pid_t pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field + ":", 0) == 0) {
            std::string v = line.substr(field.size() + 1);
            while (!v.empty() && (v[0] == '\t' || v[0] == ' '))
                v.erase(0, 1);
            return v;
        }
    return "";
}

// What `uid`:`gid` (no supplementary groups) gets from `op`, run in a child:
// 0 on success, else the errno. Only syscalls after the fork.
enum class Op { OpenDir, ReadFile, ConnectSocket };
int asUser(uid_t uid, gid_t gid, Op op, const std::string& path) {
    pid_t child = ::fork();
    if (child == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)
            ::_exit(250);
        int fd = -1;
        if (op == Op::OpenDir) {
            fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
        } else if (op == Op::ReadFile) {
            fd = ::open(path.c_str(), O_RDONLY);
        } else {
            fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
            if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
                ::_exit(errno);
        }
        ::_exit(fd >= 0 ? 0 : errno);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

} // namespace

class TestVmConfinement : public QObject {
    Q_OBJECT

    TempDir tmp_;
    GuestImage guest_;
    std::string state_;
    uid_t qemuUid_ = 0;
    gid_t qemuGid_ = 0;

    pid_t qemuPid(const std::string& name) { return qemuPidOf(state_, name); }

    void checkConfined(pid_t pid) {
        QVERIFY2(pid > 0, "no QEMU pid file");
        const std::string uid = std::to_string(qemuUid_), gid = std::to_string(qemuGid_);
        // real, effective, saved, filesystem
        QCOMPARE(statusField(pid, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
        QCOMPARE(statusField(pid, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
        QCOMPARE(statusField(pid, "CapEff"), std::string("0000000000000000"));
        QCOMPARE(statusField(pid, "CapPrm"), std::string("0000000000000000"));
        // 2 = filter mode: QEMU's -sandbox (qemu.conf seccomp_sandbox = 1).
        QCOMPARE(statusField(pid, "Seccomp"), std::string("2"));
        // Set by QEMU's sandbox (libvirt's clear_emulator_capabilities does
        // not set it by itself): measured 1 with libvirt 9.0 / QEMU 7.2.
        QCOMPARE(statusField(pid, "NoNewPrivs"), std::string("1"));
        // libvirt's default mount namespace: QEMU has its own, with a
        // private /dev of only the nodes it needs.
        std::error_code ec;
        const std::string own = std::filesystem::read_symlink("/proc/self/ns/mnt", ec).string();
        const std::string qemus =
            std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/ns/mnt", ec).string();
        QVERIFY2(!qemus.empty() && qemus != own, qemus.c_str());
    }

private slots:
    void initTestCase() {
        if (::geteuid() != 0)
            skipAll("not root: QEMU runs as the calling user (no uid to switch to)");
        requirePrograms({"qemu-system-x86_64", "qemu-nbd"});
        if (!std::filesystem::exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/"
                                     "libvirt_driver_qemu.so"))
            skipAll("libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)");
        const struct passwd* pw = ::getpwnam("isr-qemu");
        if (!pw)
            skipAll("no isr-qemu account (run packaging/install-deps.sh)");
        qemuUid_ = pw->pw_uid;
        qemuGid_ = pw->pw_gid;
        guest_ = requireGuest();
        state_ = tmp_.file("state");
        std::filesystem::create_directories(state_ + "/sess");
        ::chmod(state_.c_str(), 0700);
        ::chmod((state_ + "/sess").c_str(), 0700);
        std::filesystem::copy_file(guest_.homeImage, tmp_.file("home.ext4"));
        // A root-only file in the state directory, as the kiosk's keys are.
        std::ofstream(state_ + "/secret") << "root only\n";
        ::chmod((state_ + "/secret").c_str(), 0600);
    }

    void qemuRunsConfined() {
        vm::HostConfig host;
        host.stateDir = state_;
        host.bootDirs = {guest_.dir};
        auto hv = vm::Hypervisor::open(host);
        QVERIFY2(hv.ok(), hv.ok() ? "" : hv.error().describe().c_str());
        vm::VmSpec spec = test::demoGuestSpec(guest_, "isr-confined", state_ + "/sess");
        auto nbd = NbdServer::start(tmp_.file("home.ext4"), spec.diskSocketPath);
        QVERIFY2(nbd.ok(), nbd.ok() ? "" : nbd.error().describe().c_str());

        auto booted = (*hv)->boot(spec);
        QVERIFY2(booted.ok(), booted.ok() ? "" : booted.error().describe().c_str());
        checkConfined(qemuPid(spec.name));

        // The shared kernel is not handed to QEMU (no relabelling).
        struct stat kst {};
        QCOMPARE(::stat(guest_.kernel.c_str(), &kst), 0);
        QCOMPARE(kst.st_uid, uid_t(0));

        // What QEMU's uid may and may not do in the kiosk's state directory.
        QCOMPARE(asUser(qemuUid_, qemuGid_, Op::OpenDir, state_), EACCES);
        QCOMPARE(asUser(qemuUid_, qemuGid_, Op::ReadFile, state_ + "/secret"), EACCES);
        QCOMPARE(asUser(qemuUid_, qemuGid_, Op::OpenDir, state_ + "/sess"), EACCES);
        QCOMPARE(asUser(qemuUid_, qemuGid_, Op::ConnectSocket, spec.diskSocketPath), 0);
        // Another local user reaches none of it.
        QCOMPARE(asUser(65534, 65534, Op::ConnectSocket, spec.diskSocketPath), EACCES);
        QCOMPARE(asUser(65534, 65534, Op::ConnectSocket, spec.serialSocketPath), EACCES);

        // Save and restore: libvirt opens the file, the restored QEMU is
        // confined the same way.
        ShmDir shm("isr-test-conf");
        auto st = booted->save(shm.path + "/vm.save");
        QVERIFY2(st.ok(), st.ok() ? "" : st.error().describe().c_str());
        struct stat sst {};
        QCOMPARE(::stat((shm.path + "/vm.save").c_str(), &sst), 0);
        QCOMPARE(sst.st_uid, uid_t(0));
        auto restored = (*hv)->restore(shm.path + "/vm.save", spec);
        QVERIFY2(restored.ok(), restored.ok() ? "" : restored.error().describe().c_str());
        checkConfined(qemuPid(spec.name));
        QVERIFY(restored->destroy().ok());
    }
};

QTEST_GUILESS_MAIN(TestVmConfinement)
#include "test_vm_confinement.moc"
