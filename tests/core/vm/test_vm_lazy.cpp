// Lazy memory on libvirt 9.0 (issue #17; core/vm/README.md "Lazy memory"):
// the demo guest booted with its RAM in a file on /dev/shm, saved with
// saveLazy (device state only), its RAM file copied aside, and restored
// from the copy with restoreLazy: same boot id, its counter goes on, and a
// region of random data it wrote before the save has the same md5. Bad
// input: a RAM file of the wrong size is refused before QEMU starts, a
// truncated device state fails with QEMU's complaint and leaves no domain;
// a lazy save that cannot be written leaves the VM paused and alive. A
// normal save of the lazily restored VM restores into file-backed RAM.
// Run as root (this machine), QEMU runs as isr-qemu and reaches the RAM file
// through its group only.
#include "testsupport.h"
#include "vm/vm.h"
#include "vmguest.h"

#include <QTest>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::test;
using namespace std::chrono_literals;

namespace {

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
        s.pop_back();
    return s;
}

Status makeRamFile(const std::string& path, std::uint64_t bytes) {
    std::ofstream(path, std::ios::trunc).close();
    if (::truncate(path.c_str(), off_t(bytes)) != 0)
        return Error(Errc::Io, "truncate " + path);
    return {};
}

// What uid/gid 65534 (nobody, another local user) gets opening `path`
// read-only: 0 or the errno.
int openAsNobody(const std::string& path) {
    pid_t child = ::fork();
    if (child == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)
            ::_exit(250);
        int fd = ::open(path.c_str(), O_RDONLY);
        ::_exit(fd >= 0 ? 0 : errno);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

std::uint64_t fileSize(const std::string& path) {
    std::error_code ec;
    auto n = std::filesystem::file_size(path, ec);
    return ec ? 0 : n;
}

// packaging/qemu-nohugepage.c as this build made it.
const std::string kRamPreload = ISR_BINARY_DIR "/packaging/libisr-qemu-nohugepage.so";

// Whether process `pid` has a file named like `library` mapped.
bool maps(pid_t pid, const std::string& library) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
    const std::string name = std::filesystem::path(library).filename().string();
    for (std::string line; std::getline(in, line);)
        if (line.find(name) != std::string::npos)
            return true;
    return false;
}

} // namespace

class TestVmLazy : public QObject {
    Q_OBJECT

    TempDir tmp_;
    GuestImage guest_;
    std::string state_;
    std::unique_ptr<vm::Hypervisor> hv_;

private slots:
    void initTestCase() {
        // A FIFO's writer below must see EPIPE, not die of it.
        ::signal(SIGPIPE, SIG_IGN);
        requirePrograms({"qemu-system-x86_64", "qemu-nbd"});
        if (!std::filesystem::exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/"
                                     "libvirt_driver_qemu.so"))
            skipAll("libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)");
        guest_ = requireGuest();
        state_ = tmp_.file("state");
        std::filesystem::create_directories(state_ + "/sess");
        ::chmod(state_.c_str(), 0700);
        ::chmod((state_ + "/sess").c_str(), 0700);
        std::filesystem::copy_file(guest_.homeImage, tmp_.file("home.ext4"));
        vm::HostConfig host;
        host.stateDir = state_;
        host.bootDirs = {guest_.dir};
        QVERIFY2(std::filesystem::exists(kRamPreload), kRamPreload.c_str());
        host.ramPreload = kRamPreload;
        auto hv = vm::Hypervisor::open(host);
        QVERIFY2(hv.ok(), hv.ok() ? "" : hv.error().describe().c_str());
        hv_ = std::move(*hv);
    }

    // A preload library someone else may change is code in QEMU that is not
    // ours: the hypervisor leaves it out (and says so) rather than load it.
    // Runs before any VM: opening a second hypervisor on the same state
    // directory destroys the domains left there.
    void unsafeRamPreloadIsLeftOut() {
        vm::VmSpec spec = demoGuestSpec(guest_, "isr-lazy", state_ + "/sess");
        spec.ramFile = "/dev/shm/isr-test-lazy-none/ram";
        auto xml = hv_->domainXml(spec);
        QVERIFY(xml.ok());
        QVERIFY(xml->find("LD_PRELOAD") != std::string::npos);

        const std::string writable = tmp_.file("group-writable.so");
        std::filesystem::copy_file(kRamPreload, writable);
        QCOMPARE(::chmod(writable.c_str(), 0664), 0);
        vm::HostConfig host = hv_->config();
        host.ramPreload = writable;
        auto other = vm::Hypervisor::open(host);
        QVERIFY2(other.ok(), other.ok() ? "" : other.error().describe().c_str());
        xml = (*other)->domainXml(spec);
        QVERIFY(xml.ok());
        QVERIFY(xml->find("LD_PRELOAD") == std::string::npos);
        QVERIFY(xml->find("<memoryBacking>") != std::string::npos);
    }

    void saveAndRestoreLazily() {
        ShmDir shm("isr-test-lazy");
        vm::VmSpec spec = demoGuestSpec(guest_, "isr-lazy", state_ + "/sess");
        const std::uint64_t ramBytes = std::uint64_t(spec.memoryMiB) << 20;
        spec.ramFile = shm.path + "/ram";
        QVERIFY(makeRamFile(spec.ramFile, ramBytes).ok());

        // Wrong sizes are refused before QEMU starts.
        {
            vm::VmSpec wrong = spec;
            wrong.ramFile = shm.path + "/small";
            QVERIFY(makeRamFile(wrong.ramFile, ramBytes - 4096).ok());
            auto b = hv_->boot(wrong);
            QVERIFY(!b.ok());
            QCOMPARE(b.error().code, Errc::InvalidArgument);
            qInfo("wrong RAM file size: %s", b.error().describe().c_str());
            auto active = hv_->activeDomains();
            QVERIFY(active.ok() && active->empty());
        }

        // A start that fails inside QEMU (no NBD server yet) uses up a
        // libvirt domain id unseen; and links planted where libvirt will
        // look for the RAM (by an escaped QEMU, say) point elsewhere. The
        // lazy boot must still map exactly spec.ramFile.
        {
            auto failed = hv_->boot(demoGuestSpec(guest_, "isr-lazy-nodisk", state_ + "/sess"));
            QVERIFY(!failed.ok());
        }
        const std::string decoy = shm.path + "/decoy";
        QVERIFY(makeRamFile(decoy, ramBytes).ok());
        auto root = vm::embeddedRootFor(state_);
        QVERIFY(root.ok());
        for (int id = 1; id <= 8; ++id) {
            const std::string dir = *root + "/lib/qemu/ram/" + std::to_string(id) + "-isr-lazy";
            std::filesystem::create_directories(dir);
            std::filesystem::create_symlink(decoy, dir + "/pc.ram");
        }

        auto nbd = NbdServer::start(tmp_.file("home.ext4"), spec.diskSocketPath);
        QVERIFY2(nbd.ok(), nbd.ok() ? "" : nbd.error().describe().c_str());
        auto booted = hv_->boot(spec);
        QVERIFY2(booted.ok(), booted.ok() ? "" : booted.error().describe().c_str());
        auto console = SerialConsole::connect(spec.serialSocketPath, 30s);
        QVERIFY(console.ok());
        auto ready = (*console)->waitForShell(240s);
        QVERIFY2(ready.ok(), ready.ok() ? "" : ready.error().describe().c_str());
        // With its RAM in a file, QEMU has the no-MADV_HUGEPAGE library.
        QVERIFY2(maps(qemuPidOf(state_, spec.name), kRamPreload), "RAM preload not in QEMU");
        // QEMU runs as isr-qemu when we are root: the file is its group's
        // only, other users get nothing.
        struct stat rst {};
        QCOMPARE(::stat(spec.ramFile.c_str(), &rst), 0);
        QCOMPARE(int(rst.st_mode & S_IRWXO), 0);
        if (::geteuid() == 0) {
            QCOMPARE(int(rst.st_mode & S_IRWXG), int(S_IRGRP | S_IWGRP));
            QCOMPARE(openAsNobody(spec.ramFile), EACCES);
        }

        // A marker region: random data in guest RAM (/run is tmpfs).
        auto wrote = (*console)->run("dd if=/dev/urandom of=/run/blob bs=1M count=8 2>/dev/null && "
                                     "md5sum /run/blob",
                                     120s);
        QVERIFY(wrote.ok() && wrote->exitStatus == 0);
        const std::string md5 = trim(wrote->text).substr(0, 32);
        QCOMPARE(md5.size(), std::size_t(32));
        GuestCounter before = readCounter(**console, 20s);
        QVERIFY(before.counter >= 0);
        // The guest's RAM is in our file, none of it in the decoy.
        QVERIFY(std::filesystem::space(shm.path).available > 0);
        struct stat dst {};
        QCOMPARE(::stat(decoy.c_str(), &dst), 0);
        QCOMPARE(dst.st_blocks, blkcnt_t(0));
        QCOMPARE(::stat(spec.ramFile.c_str(), &rst), 0);
        QVERIFY(rst.st_blocks > 8 * 2048); // > 8 MiB touched
        console->reset();

        // A save that fails (the state's tmpfs is full) leaves the VM paused
        // and alive, and says so; it then saves fine elsewhere.
        if (::geteuid() == 0) {
            TmpfsMount full(tmp_.file("full"), "64k");
            auto st = booted->saveLazy(tmp_.file("full") + "/device.state");
            QVERIFY(!st.ok());
            qInfo("lazy save to a full tmpfs: %s", st.error().describe().c_str());
            QCOMPARE(st.error().code, Errc::NoSpace);
            QVERIFY(st.error().message.find("paused and still running") != std::string::npos);
            QVERIFY(!std::filesystem::exists(tmp_.file("full") + "/device.state"));
            auto status = booted->status();
            QVERIFY(status.ok());
            QCOMPARE(status->state, vm::VmState::Paused);
        }

        const std::string statePath = shm.path + "/device.state";
        auto t0 = std::chrono::steady_clock::now();
        auto saved = booted->saveLazy(statePath);
        QVERIFY2(saved.ok(), saved.ok() ? "" : saved.error().describe().c_str());
        auto saveMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - t0)
                          .count();
        const std::uint64_t stateBytes = fileSize(statePath);
        qInfo("lazy save: %llu bytes of device state for %llu MiB of RAM, %lld ms",
              (unsigned long long)stateBytes, (unsigned long long)spec.memoryMiB,
              (long long)saveMs);
        QVERIFY(stateBytes > 0 && stateBytes < 4u << 20);
        // Stopped, and libvirt's delete of its RAM directory left our file.
        auto active = hv_->activeDomains();
        QVERIFY(active.ok() && active->empty());
        QCOMPARE(fileSize(spec.ramFile), ramBytes);

        // The RAM file alone carries the RAM: restore from a copy of it.
        vm::VmSpec again = spec;
        again.ramFile = shm.path + "/ram-copy";
        std::filesystem::copy_file(spec.ramFile, again.ramFile);
        std::filesystem::remove(spec.ramFile);
        // Through a FIFO, as a session streams it (Session::restoreFromStream):
        // the writer gets to the end even if QEMU stops reading before it
        // (the session would otherwise see "the reader closed the pipe").
        const std::string fifo = shm.path + "/state.fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        auto feedFifo = [&](const std::string& from, std::atomic<bool>& wroteAll) {
            return std::thread([&, from] {
                std::ifstream in(from, std::ios::binary);
                std::string bytes((std::istreambuf_iterator<char>(in)), {});
                int fd = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC); // waits for the reader
                std::size_t off = 0;
                while (fd >= 0 && off < bytes.size()) {
                    ssize_t w = ::write(fd, bytes.data() + off, bytes.size() - off);
                    if (w <= 0)
                        break;
                    off += std::size_t(w);
                }
                wroteAll = fd >= 0 && off == bytes.size();
                if (fd >= 0)
                    ::close(fd);
            });
        };
        std::atomic<bool> wroteWhole{false};
        std::thread wholeWriter = feedFifo(statePath, wroteWhole);
        auto t1 = std::chrono::steady_clock::now();
        auto restored = hv_->restoreLazy(fifo, again);
        wholeWriter.join();
        QVERIFY2(restored.ok(), restored.ok() ? "" : restored.error().describe().c_str());
        QVERIFY2(wroteWhole, "the FIFO's writer found the reader gone");
        auto restoreMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - t1)
                             .count();
        qInfo("lazy restore: %lld ms to a running VM", (long long)restoreMs);
        auto st = restored->status();
        QVERIFY(st.ok());
        QCOMPARE(st->state, vm::VmState::Running);
        QVERIFY2(maps(qemuPidOf(state_, spec.name), kRamPreload), "RAM preload not in QEMU");
        console = SerialConsole::connect(spec.serialSocketPath, 30s);
        QVERIFY(console.ok());
        GuestCounter after = readCounter(**console, 30s);
        QCOMPARE(after.bootId, before.bootId);
        QVERIFY2(after.counter >= before.counter,
                 (std::to_string(after.counter) + " < " + std::to_string(before.counter)).c_str());
        GuestCounter ticking = after;
        for (int i = 0; i < 60 && ticking.counter <= after.counter; ++i) {
            std::this_thread::sleep_for(500ms);
            ticking = readCounter(**console, 20s);
        }
        QVERIFY(ticking.counter > after.counter);
        auto check = (*console)->run("md5sum /run/blob", 60s);
        QVERIFY(check.ok() && check->exitStatus == 0);
        QCOMPARE(trim(check->text).substr(0, 32), md5);
        console->reset();

        // A normal (full) save of it restores into file-backed RAM too: the
        // RAM block is pc.ram either way. That is how a session's first
        // lazy save can start from an old memory image.
        const std::string fullPath = shm.path + "/full.save";
        auto full = restored->save(fullPath);
        QVERIFY2(full.ok(), full.ok() ? "" : full.error().describe().c_str());
        qInfo("normal save of the same VM: %llu bytes", (unsigned long long)fileSize(fullPath));
        vm::VmSpec third = spec;
        third.ramFile = shm.path + "/ram-3";
        QVERIFY(makeRamFile(third.ramFile, ramBytes).ok());
        auto back = hv_->restore(fullPath, third);
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().describe().c_str());
        std::filesystem::remove(fullPath);
        console = SerialConsole::connect(spec.serialSocketPath, 30s);
        QVERIFY(console.ok());
        check = (*console)->run("md5sum /run/blob", 60s);
        QVERIFY(check.ok() && check->exitStatus == 0);
        QCOMPARE(trim(check->text).substr(0, 32), md5);
        QCOMPARE(::stat(third.ramFile.c_str(), &rst), 0);
        QVERIFY(rst.st_blocks > 8 * 2048);
        console->reset();
        QVERIFY(back->destroy().ok());
        std::filesystem::remove(third.ramFile);

        // A truncated device state: QEMU's load fails, the error says so,
        // and no domain is left.
        const std::string cut = shm.path + "/cut.state";
        {
            std::ifstream in(statePath, std::ios::binary);
            std::string half(stateBytes / 2, '\0');
            in.read(half.data(), std::streamsize(half.size()));
            std::ofstream(cut, std::ios::binary).write(half.data(), std::streamsize(half.size()));
        }
        auto bad = hv_->restoreLazy(cut, again);
        QVERIFY(!bad.ok());
        qInfo("truncated device state: %s", bad.error().describe().c_str());
        QVERIFY(bad.error().message.find(cut) != std::string::npos);
        active = hv_->activeDomains();
        QVERIFY(active.ok() && active->empty());
        QCOMPARE(fileSize(again.ramFile), ramBytes);

        // The same through a FIFO whose writer stops early (a session's
        // stream hitting a chunk it cannot fetch while QEMU loads): QEMU
        // reads it through a socket, sees the end and stops, instead of
        // spinning on the FIFO's hang-up until its migration limit.
        std::atomic<bool> wroteHalf{false};
        std::thread writer = feedFifo(cut, wroteHalf);
        auto t2 = std::chrono::steady_clock::now();
        auto early = hv_->restoreLazy(fifo, again);
        writer.join();
        QVERIFY(!early.ok());
        qInfo("device state ending early in a FIFO: %s after %lld ms",
              early.error().describe().c_str(),
              (long long)std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t2)
                  .count());
        active = hv_->activeDomains();
        QVERIFY(active.ok() && active->empty());
        std::filesystem::remove(fifo);
        nbd->reset();
    }
};

QTEST_GUILESS_MAIN(TestVmLazy)
#include "test_vm_lazy.moc"
