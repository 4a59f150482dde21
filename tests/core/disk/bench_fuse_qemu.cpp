// Measurements for issue #17 with a real QEMU 7.2 (TCG, no libvirt) whose
// guest RAM is a file served by FuseExport (share=on, as the libvirt domain
// will have it). Label bench: not in CI (a TCG boot and two restores take
// about 30 s); run it by hand:
//   build/default/tests/core/disk/bench_fuse_qemu [measureQemuRestore|measureQemuBoot]
// Figures are printed (qInfo); the assertions are correctness only (the
// restored guest's blob keeps its md5; QEMU dies of SIGBUS when reads fail).
#include "chunk/chunk.h"
#include "disk/file_block_device.h"
#include "disk/fuse_export.h"
#include "disk/parcel_disk.h"
#include "probe_device.h"
#include "testsupport.h"
#include "vmguest.h"

#include <QProcess>
#include <QTest>
#include <chrono>
#include <filesystem>
#include <map>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::disk;
using isr::test::ProbeDevice;

namespace {

// A blocking QMP client on QEMU's UNIX socket, for the opt-in measurement.
class Qmp {
public:
    explicit Qmp(const std::string& path) {
        for (int attempt = 0; attempt < 300 && fd_ < 0; ++attempt) {
            int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un address{};
            address.sun_family = AF_UNIX;
            path.copy(address.sun_path, sizeof address.sun_path - 1);
            if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0)
                fd_ = fd;
            else {
                ::close(fd);
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        }
        if (fd_ >= 0) {
            line(); // greeting
            command(R"({"execute":"qmp_capabilities"})");
        }
    }
    ~Qmp() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    bool ok() const { return fd_ >= 0; }
    // Sends one command; returns its "return" or "error" line (events skipped).
    std::string command(const std::string& json) {
        std::string out = json + "\n";
        if (::write(fd_, out.data(), out.size()) != ssize_t(out.size()))
            return {};
        for (;;) {
            std::string reply = line();
            if (reply.empty() || reply.find("\"return\"") != std::string::npos ||
                reply.find("\"error\"") != std::string::npos)
                return reply;
        }
    }

private:
    std::string line() {
        for (;;) {
            auto end = buffer_.find('\n');
            if (end != std::string::npos) {
                std::string text = buffer_.substr(0, end);
                buffer_.erase(0, end + 1);
                return text;
            }
            char chunk[4096];
            ssize_t n = ::read(fd_, chunk, sizeof chunk);
            if (n <= 0)
                return {};
            buffer_.append(chunk, std::size_t(n));
        }
    }
    int fd_ = -1;
    std::string buffer_;
};

} // namespace

class BenchFuseQemu : public QObject {
    Q_OBJECT

    std::unique_ptr<isr::test::TempDir> dir_;
    crypto::Secret secret_;
    int serial_ = 0;

    std::string freshDir(const std::string& what) {
        std::string path = dir_->file(what + std::to_string(++serial_));
        std::filesystem::create_directories(path);
        return path;
    }

    std::unique_ptr<FuseExport> serve(BlockDevice& device) {
        FuseExportOptions options;
        options.mountDir = freshDir("mnt");
        auto exported = FuseExport::start(device, options);
        if (!exported.ok())
            qFatal("%s", exported.error().describe().c_str());
        return std::move(*exported);
    }

private slots:
    void initTestCase() {
        if (::access("/dev/fuse", R_OK | W_OK) != 0)
            isr::test::skipAll("/dev/fuse is missing or not usable");
        isr::test::requirePrograms({"fusermount3", "qemu-system-x86_64"});
        QVERIFY(crypto::initialize().ok());
        dir_ = std::make_unique<isr::test::TempDir>();
        secret_ = crypto::Secret::random(32);
    }

    // The measurement that matters for #17:
    // boot, put 32 MiB of random data in guest RAM, save with x-ignore-shared
    // (RAM stays in the file), then restore from a copy of that RAM served
    // through a fresh FUSE mount, with and without the nohugepage library:
    // what FUSE served before the restored guest's shell answered, and the
    // blob's md5 after (must not change).
    void measureQemuRestore() {
        if (!isr::test::haveProgram("qemu-system-x86_64"))
            QSKIP("qemu-system-x86_64 is not installed");
        auto guest = isr::test::requireGuest();
        constexpr std::uint64_t kRamMiB = 256;
        const std::string run = freshDir("restore");
        std::filesystem::copy_file(guest.homeImage, run + "/home.raw");
        auto qemuArgs = [&](const std::string& ramFile, bool incoming) {
            QStringList args = {
                "-accel",
                "tcg",
                "-m",
                QString("%1M").arg(kRamMiB),
                "-object",
                QString("memory-backend-file,id=pc.ram,size=%1M,mem-path=%2,share=on")
                    .arg(kRamMiB)
                    .arg(QString::fromStdString(ramFile)),
                "-machine",
                "q35,memory-backend=pc.ram",
                "-kernel",
                QString::fromStdString(guest.kernel),
                "-initrd",
                QString::fromStdString(guest.initrd),
                "-append",
                "console=ttyS0 quiet",
                "-drive",
                QString::fromStdString("file=" + run + "/home.raw,if=virtio,format=raw"),
                "-display",
                "none",
                "-vga",
                "none",
                "-no-reboot",
                "-serial",
                QString::fromStdString("unix:" + run + "/serial.sock,server=on,wait=off"),
                "-qmp",
                QString::fromStdString("unix:" + run + "/qmp.sock,server=on,wait=off")};
            if (incoming)
                args << "-incoming"
                     << "defer";
            return args;
        };
        auto waitMigrated = [](Qmp& qmp, const char* query, const char* doneWord) {
            for (int i = 0; i < 6000; ++i) {
                std::string reply = qmp.command(query);
                if (reply.find(doneWord) != std::string::npos)
                    return reply;
                if (reply.empty() || reply.find("failed") != std::string::npos)
                    return reply;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            return std::string();
        };

        // 1. Boot with RAM in a plain file (tmpfs-like: this is the source).
        const std::string sourceRam = run + "/source.ram";
        {
            auto created = FileBlockDevice::create(sourceRam, kRamMiB << 20);
            QVERIFY(created.ok());
        }
        std::string md5Before;
        {
            QProcess qemu;
            qemu.start("qemu-system-x86_64", qemuArgs(sourceRam, false));
            QVERIFY(qemu.waitForStarted());
            auto console =
                isr::test::SerialConsole::connect(run + "/serial.sock", std::chrono::seconds(30));
            QVERIFY(console.ok());
            QVERIFY((*console)->waitForShell(std::chrono::minutes(3)).ok());
            auto blob =
                (*console)->run("head -c 33554432 /dev/urandom > /run/blob && md5sum /run/blob",
                                std::chrono::minutes(2));
            QVERIFY(blob.ok());
            md5Before = blob->text.substr(0, 32);
            Qmp qmp(run + "/qmp.sock");
            QVERIFY(qmp.ok());
            qmp.command(R"({"execute":"stop"})");
            qmp.command(
                R"({"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]}})");
            qmp.command(R"({"execute":"migrate","arguments":{"uri":"exec:cat > )" + run +
                        R"(/state.bin"}})");
            std::string done = waitMigrated(qmp, R"({"execute":"query-migrate"})", "completed");
            QVERIFY2(done.find("completed") != std::string::npos, done.c_str());
            qmp.command(R"({"execute":"quit"})");
            qemu.waitForFinished();
            std::filesystem::remove(run + "/serial.sock");
            std::filesystem::remove(run + "/qmp.sock");
        }
        qInfo("saved: state %llu bytes (RAM stays in the file)",
              (unsigned long long)std::filesystem::file_size(run + "/state.bin"));

        // 2. Restore from a copy, served through FUSE, twice.
        for (int runIndex = 0; runIndex < 3; ++runIndex) {
            const bool preload = runIndex > 0;
            const bool storeVanishes = runIndex == 2;
            const std::string copy = run + "/restore.ram";
            std::filesystem::copy_file(sourceRam, copy,
                                       std::filesystem::copy_options::overwrite_existing);
            auto device = FileBlockDevice::open(copy);
            QVERIFY(device.ok());
            ProbeDevice probe(**device);
            auto exported = serve(probe);
            QProcess qemu;
            const QString library = ISR_BINARY_DIR "/packaging/libisr-qemu-nohugepage.so";
            if (preload) {
                auto env = QProcessEnvironment::systemEnvironment();
                env.insert("LD_PRELOAD", library);
                qemu.setProcessEnvironment(env);
            }
            auto begin = std::chrono::steady_clock::now();
            qemu.start("qemu-system-x86_64", qemuArgs(exported->filePath(), true));
            QVERIFY(qemu.waitForStarted());
            {
                Qmp qmp(run + "/qmp.sock");
                QVERIFY(qmp.ok());
                qmp.command(
                    R"({"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]}})");
                qmp.command(R"({"execute":"migrate-incoming","arguments":{"uri":"exec:cat )" + run +
                            R"(/state.bin"}})");
                for (int i = 0; i < 6000; ++i) {
                    std::string status = qmp.command(R"({"execute":"query-status"})");
                    if (status.find("inmigrate") == std::string::npos)
                        break;
                    std::this_thread::sleep_for(std::chrono::milliseconds(20));
                }
                auto loaded = exported->stats();
                qmp.command(R"({"execute":"cont"})");
                auto console = isr::test::SerialConsole::connect(run + "/serial.sock",
                                                                 std::chrono::seconds(30));
                QVERIFY(console.ok());
                QVERIFY((*console)->waitForShell(std::chrono::minutes(3)).ok());
                double seconds =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
                auto answered = exported->stats();
                std::map<std::uint64_t, int> sizes;
                for (auto& r : probe.reads())
                    sizes[r.length]++;
                std::string sizeText;
                for (auto [size, count] : sizes)
                    sizeText += std::to_string(count) + "x" + std::to_string(size / 1024) + "K ";
                if (storeVanishes) {
                    // Every page not yet read now fails: the guest's next
                    // touch of one kills QEMU (SIGBUS), it never sees data
                    // other than its own.
                    probe.failReads = true;
                    auto md5 = (*console)->run("md5sum /run/blob", std::chrono::seconds(60));
                    QVERIFY(!md5.ok() || md5->text.substr(0, 32) == md5Before);
                    QVERIFY(qemu.waitForFinished(60000));
                    qInfo("store gone after the answer: md5sum %s; QEMU %s, exit status %d, "
                          "stderr: %s",
                          md5.ok() ? "finished (pages were cached)" : "got no answer",
                          qemu.exitStatus() == QProcess::CrashExit ? "crashed" : "exited",
                          qemu.exitCode(), qemu.readAllStandardError().trimmed().constData());
                    QCOMPARE(qemu.exitStatus(), QProcess::CrashExit);
                    break;
                }
                auto md5 = (*console)->run("md5sum /run/blob", std::chrono::minutes(2));
                QVERIFY(md5.ok());
                auto after = exported->stats();
                qInfo("restore%s: shell after %.2f s; FUSE before cont %.1f MiB, before the "
                      "answer %.1f MiB in %llu reads, after md5 of the 32 MiB blob %.1f MiB; "
                      "read sizes %s; md5 %s",
                      preload ? " (nohugepage)" : "", seconds, double(loaded.bytesRead) / (1 << 20),
                      double(answered.bytesRead) / (1 << 20), (unsigned long long)answered.reads,
                      double(after.bytesRead) / (1 << 20), sizeText.c_str(),
                      md5->text.substr(0, 32) == md5Before ? "unchanged" : "CHANGED");
                QCOMPARE(md5->text.substr(0, 32), md5Before);
                qmp.command(R"({"execute":"quit"})");
            }
            qemu.waitForFinished();
            std::filesystem::remove(run + "/serial.sock");
            std::filesystem::remove(run + "/qmp.sock");
        }
    }

    // Boots the demo guest with its RAM on the FUSE
    // file (share=on, as the libvirt domain will) from a device of zeroes,
    // and prints what FUSE served before the guest's shell answered.
    // ISR_FUSE_QEMU_PRELOAD=<lib> runs QEMU with that LD_PRELOAD.
    void measureQemuBoot() {
        if (!isr::test::haveProgram("qemu-system-x86_64"))
            QSKIP("qemu-system-x86_64 is not installed");
        auto guest = isr::test::requireGuest();
        constexpr std::uint64_t kRamMiB = 256;
        constexpr std::uint64_t kRam = kRamMiB << 20;
        ParcelDiskConfig config;
        config.diskSize = kRam;
        config.baseTable.resize(kRam / kDefaultChunkSize); // all zero: nothing to fetch
        config.fetch = [](const chunk::ChunkName&) -> Result<Bytes> {
            return Error(Errc::NotFound, "nothing is stored");
        };
        config.convergenceSecret = secret_.clone();
        config.overlayDirectory = freshDir("overlay");
        auto disk = ParcelDisk::open(std::move(config));
        QVERIFY(disk.ok());
        ProbeDevice probe(**disk);
        auto exported = serve(probe);
        std::string run = freshDir("qemu");
        std::filesystem::copy_file(guest.homeImage, run + "/home.raw");
        QStringList args = {
            "-accel",
            "tcg",
            "-m",
            QString("%1M").arg(kRamMiB),
            "-object",
            QString("memory-backend-file,id=pc.ram,size=%1M,mem-path=%2,share=on")
                .arg(kRamMiB)
                .arg(QString::fromStdString(exported->filePath())),
            "-machine",
            "q35,memory-backend=pc.ram",
            "-kernel",
            QString::fromStdString(guest.kernel),
            "-initrd",
            QString::fromStdString(guest.initrd),
            "-append",
            "console=ttyS0 quiet",
            "-drive",
            QString::fromStdString("file=" + run + "/home.raw,if=virtio,format=raw"),
            "-display",
            "none",
            "-vga",
            "none",
            "-no-reboot",
            "-serial",
            QString::fromStdString("unix:" + run + "/serial.sock,server=on,wait=off")};
        QProcess qemu;
        if (const char* preload = std::getenv("ISR_FUSE_QEMU_PRELOAD")) {
            auto env = QProcessEnvironment::systemEnvironment();
            env.insert("LD_PRELOAD", preload);
            qemu.setProcessEnvironment(env);
        }
        auto begin = std::chrono::steady_clock::now();
        qemu.start("qemu-system-x86_64", args);
        QVERIFY(qemu.waitForStarted());
        auto console =
            isr::test::SerialConsole::connect(run + "/serial.sock", std::chrono::seconds(30));
        QVERIFY2(console.ok(), qPrintable(qemu.readAllStandardError()));
        QVERIFY((*console)->waitForShell(std::chrono::minutes(3)).ok());
        double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
        auto stats = exported->stats();
        auto reads = probe.reads();
        std::map<std::uint64_t, int> sizes;
        for (auto& r : reads)
            sizes[r.length]++;
        std::string sizeText;
        for (auto [size, count] : sizes)
            sizeText += std::to_string(count) + "x" + std::to_string(size / 1024) + "K ";
        qInfo("QEMU boot, %llu MiB RAM on FUSE%s: shell answered after %.2f s; FUSE served "
              "%.1f MiB in %llu reads (%s), %llu writes",
              (unsigned long long)kRamMiB,
              std::getenv("ISR_FUSE_QEMU_PRELOAD") ? " (LD_PRELOAD)" : "", seconds,
              double(stats.bytesRead) / (1 << 20), (unsigned long long)stats.reads,
              sizeText.c_str(), (unsigned long long)stats.writes);
        auto uname = (*console)->run("uname -r; free -m | head -2", std::chrono::seconds(30));
        QVERIFY(uname.ok());
        qInfo("guest: %s", uname->text.c_str());
        qemu.kill();
        qemu.waitForFinished();
    }
};

QTEST_GUILESS_MAIN(BenchFuseQemu)
#include "bench_fuse_qemu.moc"
