// Tests for core/store: key validation, openStore dispatch and FileStore
// (atomic put, put-if-absent races across threads and processes, listing,
// crash leftovers, errno mapping).
#include "crypto/crypto.h"
#include "store/filestore.h"
#include "store/store.h"
#include "testsupport.h"
#include "util/posix.h"

#include <QTest>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::store;

namespace {
std::unique_ptr<Store> openOrFail(const std::string& url) {
    auto s = openStore(url);
    if (!s.ok())
        qFatal("openStore(%s): %s", url.c_str(), s.error().describe().c_str());
    return std::move(s).value();
}
std::vector<std::string> keysOf(const std::vector<ObjectInfo>& infos) {
    std::vector<std::string> keys;
    for (const auto& i : infos)
        keys.push_back(i.key);
    return keys;
}
} // namespace

class TestFileStore : public QObject {
    Q_OBJECT
private slots:
    void validKeys() {
        for (const char* k : {"a", "isr-store.json", "users/alice/chunks/ab/ab12", "A.b_c-d/e",
                              "x/..y", "..a", "a.."})
            QVERIFY2(validateKey(k).ok(), k);
        QVERIFY(validateKey(std::string(1024, 'a')).ok());
    }
    void invalidKeys_data() {
        QTest::addColumn<QByteArray>("key");
        QTest::newRow("empty") << QByteArray("");
        QTest::newRow("dotdot") << QByteArray("..");
        QTest::newRow("dotdot segment") << QByteArray("users/../etc");
        QTest::newRow("dotdot end") << QByteArray("users/..");
        QTest::newRow("dot segment") << QByteArray("users/./a");
        QTest::newRow("leading slash") << QByteArray("/etc/passwd");
        QTest::newRow("trailing slash") << QByteArray("users/");
        QTest::newRow("empty segment") << QByteArray("users//a");
        QTest::newRow("nul") << QByteArray("users/a\0b", 9);
        QTest::newRow("non-ascii") << QByteArray("users/\xc3\xa9t\xc3\xa9");
        QTest::newRow("space") << QByteArray("a b");
        QTest::newRow("backslash") << QByteArray("a\\b");
        QTest::newRow("too long") << QByteArray(1025, 'a');
    }
    void invalidKeys() {
        QFETCH(QByteArray, key);
        const std::string k(key.constData(), std::size_t(key.size()));
        auto st = validateKey(k);
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::InvalidArgument);
        // Every FileStore entry point refuses it too, and nothing escapes the root.
        test::TempDir dir;
        auto s = openOrFail(dir.path() + "/");
        QCOMPARE(s->put(k, asBytes("x")).error().code, Errc::InvalidArgument);
        QCOMPARE(s->putIfAbsent(k, asBytes("x")).error().code, Errc::InvalidArgument);
        QCOMPARE(s->get(k).error().code, Errc::InvalidArgument);
        QCOMPARE(s->getRange(k, 0, 1).error().code, Errc::InvalidArgument);
        QCOMPARE(s->remove(k).error().code, Errc::InvalidArgument);
        QCOMPARE(s->exists(k).error().code, Errc::InvalidArgument);
    }
    void reservedTmpPrefix() {
        test::TempDir dir;
        auto s = openOrFail(dir.path());
        QCOMPARE(s->put("tmp/x", asBytes("x")).error().code, Errc::InvalidArgument);
        QCOMPARE(s->put("tmp", asBytes("x")).error().code, Errc::InvalidArgument);
        QVERIFY(s->put("tmpx", asBytes("x")).ok());
    }

    void openStoreDispatch() {
        test::TempDir dir;
        auto a = openStore("file://" + dir.path());
        QVERIFY(a.ok());
        QCOMPARE((*a)->url(), "file://" + dir.path());
        auto b = openStore(dir.path() + "//");
        QVERIFY(b.ok());
        QCOMPARE((*b)->url(), "file://" + dir.path());
        QVERIFY(openStore("file://localhost" + dir.path()).ok());
        QCOMPARE(openStore(dir.path() + "/missing").error().code, Errc::NotFound);
        QCOMPARE(openStore("file://" + dir.path() + "/missing").error().code, Errc::NotFound);
        { std::ofstream(dir.file("plain")) << "x"; }
        QCOMPARE(openStore(dir.file("plain")).error().code, Errc::NotFound);
        QCOMPARE(openStore("relative/path").error().code, Errc::InvalidArgument);
        QCOMPARE(openStore("file://otherhost/x").error().code, Errc::InvalidArgument);
        QCOMPARE(openStore("ftp://x/y").error().code, Errc::InvalidArgument);
        QCOMPARE(openStore("").error().code, Errc::InvalidArgument);
    }

    void putGetRangeRemove() {
        test::TempDir dir;
        auto s = openOrFail(dir.path());
        QCOMPARE(s->get("users/a/obj").error().code, Errc::NotFound);
        QCOMPARE(*s->exists("users/a/obj"), false);
        Bytes data = crypto::randomBytes(100000);
        QVERIFY(s->put("users/a/obj", data).ok());
        QCOMPARE(*s->exists("users/a/obj"), true);
        QVERIFY(*s->get("users/a/obj") == data);
        // Directories are not objects.
        QCOMPARE(*s->exists("users/a"), false);
        QCOMPARE(s->get("users/a").error().code, Errc::NotFound);
        QCOMPARE(s->get("users/a/obj/below").error().code, Errc::NotFound);

        auto r = s->getRange("users/a/obj", 1000, 10);
        QVERIFY(r.ok());
        QVERIFY(*r == Bytes(data.begin() + 1000, data.begin() + 1010));
        r = s->getRange("users/a/obj", 99990, 100); // clipped
        QVERIFY(*r == Bytes(data.end() - 10, data.end()));
        r = s->getRange("users/a/obj", 100000, 5); // at the end: empty
        QVERIFY(r.ok() && r->empty());
        QCOMPARE(s->getRange("users/a/obj", 100001, 5).error().code, Errc::InvalidArgument);
        QCOMPARE(s->getRange("users/a/none", 0, 5).error().code, Errc::NotFound);

        // Replace.
        QVERIFY(s->put("users/a/obj", asBytes("short")).ok());
        QVERIFY(*s->get("users/a/obj") == toBytes("short"));
        QVERIFY(s->put("empty", {}).ok());
        QVERIFY(s->get("empty")->empty());

        QVERIFY(s->remove("users/a/obj").ok());
        QCOMPARE(*s->exists("users/a/obj"), false);
        QVERIFY(s->remove("users/a/obj").ok()); // idempotent
        QVERIFY(s->remove("never/was").ok());
        // Nothing left in tmp/.
        QVERIFY(std::filesystem::is_empty(dir.path() + "/tmp"));
    }

    void putIfAbsentBasics() {
        test::TempDir dir;
        auto s = openOrFail(dir.path());
        QVERIFY(s->putIfAbsent("users/a/versions/1", asBytes("one")).ok());
        auto again = s->putIfAbsent("users/a/versions/1", asBytes("other"));
        QCOMPARE(again.error().code, Errc::AlreadyExists);
        QVERIFY(*s->get("users/a/versions/1") == toBytes("one"));
        QVERIFY(std::filesystem::is_empty(dir.path() + "/tmp"));
    }

    void putIfAbsentThreadRace() {
        test::TempDir dir;
        auto s = openOrFail(dir.path());
        constexpr int kThreads = 16;
        constexpr int kKeys = 40;
        std::atomic<int> wins[kKeys] = {};
        std::atomic<int> lost{0}, other{0};
        std::atomic<int> ready{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                ready.fetch_add(1);
                while (ready.load() < kThreads) {
                }
                for (int k = 0; k < kKeys; ++k) {
                    auto st = s->putIfAbsent("race/" + std::to_string(k),
                                             asBytes("thread-" + std::to_string(t)));
                    if (st.ok())
                        wins[k].fetch_add(1);
                    else if (st.error().code == Errc::AlreadyExists)
                        lost.fetch_add(1);
                    else
                        other.fetch_add(1);
                }
            });
        for (auto& th : threads)
            th.join();
        QCOMPARE(other.load(), 0);
        QCOMPARE(lost.load(), kKeys * (kThreads - 1));
        for (int k = 0; k < kKeys; ++k)
            QCOMPARE(wins[k].load(), 1);
        QCOMPARE(s->list("race/")->size(), std::size_t(kKeys));
    }

    void putIfAbsentProcessRace() {
        // Two processes (as two kiosks would be) race for the same keys; for
        // every key exactly one wins and the object holds the winner's bytes.
        test::TempDir dir;
        constexpr int kKeys = 200;
        int startPipe[2];
        QVERIFY(::pipe(startPipe) == 0);
        int resultPipes[2][2];
        pid_t pids[2];
        for (int c = 0; c < 2; ++c) {
            QVERIFY(::pipe(resultPipes[c]) == 0);
            pids[c] = ::fork();
            QVERIFY(pids[c] >= 0);
            if (pids[c] == 0) {
                ::close(startPipe[1]);
                char go;
                if (::read(startPipe[0], &go, 1) != 1)
                    ::_exit(2);
                auto s = FileStore::open(dir.path());
                if (!s.ok())
                    ::_exit(3);
                std::string results(kKeys, '?');
                for (int k = 0; k < kKeys; ++k) {
                    auto st = (*s)->putIfAbsent("proc/" + std::to_string(k),
                                                asBytes("child-" + std::to_string(c)));
                    results[std::size_t(k)] = st.ok()                                  ? 'W'
                                              : st.error().code == Errc::AlreadyExists ? 'L'
                                                                                       : 'E';
                }
                if (::write(resultPipes[c][1], results.data(), results.size()) != kKeys)
                    ::_exit(4);
                ::_exit(0);
            }
            ::close(resultPipes[c][1]);
        }
        ::close(startPipe[0]);
        // One byte per child releases both at once.
        QCOMPARE(::write(startPipe[1], "gg", 2), ssize_t(2));
        ::close(startPipe[1]);
        std::string results[2];
        for (int c = 0; c < 2; ++c) {
            char buf[kKeys];
            std::size_t got = 0;
            while (got < kKeys) {
                ssize_t n = ::read(resultPipes[c][0], buf + got, kKeys - got);
                if (n <= 0)
                    break;
                got += std::size_t(n);
            }
            ::close(resultPipes[c][0]);
            results[c].assign(buf, got);
            int status = 0;
            QCOMPARE(::waitpid(pids[c], &status, 0), pids[c]);
            QVERIFY(WIFEXITED(status));
            QCOMPARE(WEXITSTATUS(status), 0);
            QCOMPARE(results[c].size(), std::size_t(kKeys));
        }
        auto s = openOrFail(dir.path());
        for (int k = 0; k < kKeys; ++k) {
            const char a = results[0][std::size_t(k)], b = results[1][std::size_t(k)];
            QVERIFY2((a == 'W' && b == 'L') || (a == 'L' && b == 'W'),
                     qPrintable(QString("key %1: %2 %3").arg(k).arg(a).arg(b)));
            const int winner = a == 'W' ? 0 : 1;
            QVERIFY(*s->get("proc/" + std::to_string(k)) ==
                    toBytes("child-" + std::to_string(winner)));
        }
    }

    void listSortedWithPrefix() {
        test::TempDir dir;
        auto s = openOrFail(dir.path());
        for (const char* k :
             {"users/bob/x", "users/alice/chunks/ab/ab01", "users/alice/chunks/ab/ab00",
              "users/alice/chunks/cd/cd00", "users/alice/versions/1", "isr-store.json",
              "users/alicia/y", "users-b"})
            QVERIFY(s->put(k, asBytes(k)).ok());
        auto all = s->list("");
        QVERIFY(all.ok());
        QCOMPARE(keysOf(*all), (std::vector<std::string>{
                                   "isr-store.json", "users-b", "users/alice/chunks/ab/ab00",
                                   "users/alice/chunks/ab/ab01", "users/alice/chunks/cd/cd00",
                                   "users/alice/versions/1", "users/alicia/y", "users/bob/x"}));
        QCOMPARE((*all)[0].size, std::uint64_t(strlen("isr-store.json")));
        QCOMPARE(
            keysOf(*s->list("users/alice/")),
            (std::vector<std::string>{"users/alice/chunks/ab/ab00", "users/alice/chunks/ab/ab01",
                                      "users/alice/chunks/cd/cd00", "users/alice/versions/1"}));
        QCOMPARE(keysOf(*s->list("users/ali")),
                 (std::vector<std::string>{
                     "users/alice/chunks/ab/ab00", "users/alice/chunks/ab/ab01",
                     "users/alice/chunks/cd/cd00", "users/alice/versions/1", "users/alicia/y"}));
        QCOMPARE(
            keysOf(*s->list("users/alice/chunks/ab/ab0")),
            (std::vector<std::string>{"users/alice/chunks/ab/ab00", "users/alice/chunks/ab/ab01"}));
        QCOMPARE(keysOf(*s->list("users/alice/versions/1")),
                 (std::vector<std::string>{"users/alice/versions/1"}));
        QVERIFY(s->list("nothing/here")->empty());
        QVERIFY(s->list("users/alice/versions/1/")->empty());
        QCOMPARE(s->list("../").error().code, Errc::InvalidArgument);
        QCOMPARE(s->list("/etc").error().code, Errc::InvalidArgument);
    }

    void leftoverTempFilesAreNeverListed() {
        // A crash between writing the temp file and renaming it leaves a file
        // in tmp/; it must never appear as an object, and the real name stays
        // absent.
        test::TempDir dir;
        auto s = openOrFail(dir.path());
        QVERIFY(s->put("users/a/x", asBytes("x")).ok());
        QVERIFY(::mkdir((dir.path() + "/tmp").c_str(), 0755) == 0 || errno == EEXIST);
        { std::ofstream(dir.path() + "/tmp/1234-0-deadbeef") << "half a chunk"; }
        QCOMPARE(keysOf(*s->list("")), (std::vector<std::string>{"users/a/x"}));
        QVERIFY(s->list("tmp")->empty());
        QVERIFY(s->list("tmp/")->empty());
        // A stray file with an invalid name is not reported either.
        { std::ofstream(dir.path() + "/users/a/bad name") << "?"; }
        QCOMPARE(keysOf(*s->list("users/")), (std::vector<std::string>{"users/a/x"}));
    }

    void batchesKeepOrder() {
        test::TempDir dir;
        auto s = openOrFail(dir.path());
        std::vector<PutItem> items{{"b/1", toBytes("one"), false},
                                   {"b/2", toBytes("two"), true},
                                   {"b/2", toBytes("again"), true},
                                   {"b/../x", toBytes("bad"), false}};
        auto statuses = s->putMany(items);
        QCOMPARE(statuses.size(), std::size_t(4));
        QVERIFY(statuses[0].ok());
        QVERIFY(statuses[1].ok());
        QCOMPARE(statuses[2].error().code, Errc::AlreadyExists);
        QCOMPARE(statuses[3].error().code, Errc::InvalidArgument);
        auto got = s->getMany({"b/2", "b/missing", "b/1"});
        QCOMPARE(got.size(), std::size_t(3));
        QVERIFY(*got[0] == toBytes("two"));
        QCOMPARE(got[1].error().code, Errc::NotFound);
        QVERIFY(*got[2] == toBytes("one"));
    }

    // Issue #16 item 9: a symlink planted in a file store (as an object or a
    // folder) is refused, never followed; objects 0600, folders 0700.
    void plantedSymlinksAreRefusedNotFollowed() {
        test::TempDir dir;
        const std::string root = dir.path() + "/store";
        const std::string outside = dir.path() + "/outside";
        QVERIFY(::mkdir(root.c_str(), 0700) == 0);
        QVERIFY(::mkdir(outside.c_str(), 0700) == 0);
        {
            std::ofstream secret(outside + "/secret");
            secret << "the admin host's secret";
        }
        auto s = openOrFail(root);
        QVERIFY(s->put("users/a/parcels/p/head", asBytes("1")).ok());
        // Modes of what FileStore made.
        struct stat st {};
        QVERIFY(::stat((root + "/users/a/parcels/p/head").c_str(), &st) == 0);
        QCOMPARE(st.st_mode & 07777, mode_t(0600));
        for (const char* d :
             {"/users", "/users/a", "/users/a/parcels", "/users/a/parcels/p", "/tmp"}) {
            QVERIFY(::stat((root + d).c_str(), &st) == 0);
            QVERIFY2((st.st_mode & 07777) == 0700, d);
        }

        // An object that is a symlink to a file of the host.
        const std::string account = root + "/users/a/account";
        QVERIFY(::symlink((outside + "/secret").c_str(), account.c_str()) == 0);
        auto got = s->get("users/a/account");
        QVERIFY(!got.ok());
        QCOMPARE(got.error().code, Errc::Corrupt);
        QVERIFY2(got.error().message.find("symbolic link") != std::string::npos,
                 got.error().message.c_str());
        QCOMPARE(s->getRange("users/a/account", 0, 4).error().code, Errc::Corrupt);
        QCOMPARE(s->exists("users/a/account").error().code, Errc::Corrupt);
        // put-if-absent does not write through it; put replaces the link itself.
        QCOMPARE(s->putIfAbsent("users/a/account", asBytes("x")).error().code, Errc::AlreadyExists);
        QVERIFY(s->put("users/a/account", asBytes("mine")).ok());
        QVERIFY(*s->get("users/a/account") == toBytes("mine"));
        QVERIFY(::symlink((outside + "/secret").c_str(), (root + "/users/a/lnk").c_str()) == 0);
        QVERIFY(s->remove("users/a/lnk").ok()); // the link goes, not its target
        std::ifstream still(outside + "/secret");
        std::string text;
        std::getline(still, text);
        QCOMPARE(text, std::string("the admin host's secret"));

        // A folder that is a symlink to a directory of the host.
        QVERIFY(::symlink(outside.c_str(), (root + "/users/b").c_str()) == 0);
        QCOMPARE(s->get("users/b/secret").error().code, Errc::Corrupt);
        QCOMPARE(s->exists("users/b/secret").error().code, Errc::Corrupt);
        QCOMPARE(s->put("users/b/planted", asBytes("x")).error().code, Errc::Corrupt);
        QCOMPARE(s->putIfAbsent("users/b/c/planted", asBytes("x")).error().code, Errc::Corrupt);
        QVERIFY(!std::filesystem::exists(outside + "/planted"));
        QVERIFY(!std::filesystem::exists(outside + "/c"));
        QCOMPARE(s->list("users/b/").error().code, Errc::Corrupt);
        // A walk from above skips it: nothing of outside/ is listed.
        for (const auto& k : keysOf(*s->list("")))
            QVERIFY2(k.rfind("users/b/", 0) != 0, k.c_str());

        // The in-flight folder as a symlink: writes refuse to go there.
        std::filesystem::remove_all(root + "/tmp");
        QVERIFY(::symlink(outside.c_str(), (root + "/tmp").c_str()) == 0);
        QCOMPARE(s->put("users/a/x", asBytes("x")).error().code, Errc::Corrupt);
        QCOMPARE(std::distance(std::filesystem::directory_iterator(outside),
                               std::filesystem::directory_iterator{}),
                 1);
        QVERIFY(::unlink((root + "/tmp").c_str()) == 0);

        // A FIFO planted as an object cannot hang a reader.
        QVERIFY(::mkfifo((root + "/users/a/parcels/p/lock").c_str(), 0600) == 0);
        QCOMPARE(s->get("users/a/parcels/p/lock").error().code, Errc::NotFound);
    }

    // Issue #16 item 12: no object is read past the size its kind may have.
    void oversizedObjectsAreRefusedBeforeReading() {
        QCOMPARE(maxObjectSize("users/a/parcels/p/head"), std::uint64_t(4096));
        QCOMPARE(maxObjectSize("users/a/account"), std::uint64_t(64 << 10));
        QCOMPARE(maxObjectSize("isr-store.json"), std::uint64_t(64 << 10));
        QCOMPARE(maxObjectSize("users/a/parcels/p/lock"), std::uint64_t(64 << 10));
        QCOMPARE(maxObjectSize("users/a/parcels/p/versions/7"), std::uint64_t(512) << 20);
        QCOMPARE(maxObjectSize("users/a/parcels/p/refs/7"), std::uint64_t(512) << 20);
        QCOMPARE(maxObjectSize("users/a/chunks/ab/abcd"), kMaxChunkObjectSize);
        QCOMPARE(maxObjectSize("users/chunks/account"), std::uint64_t(64 << 10));
        QCOMPARE(maxObjectSize("some/test/key"), UINT64_MAX);

        test::TempDir dir;
        auto s = openOrFail(dir.path());
        QVERIFY(s->put("users/a/parcels/p/head", asBytes("12")).ok());
        // A 128 MiB head, sparse: made without writing it, refused without reading it.
        const std::string head = dir.path() + "/users/a/parcels/p/head";
        QVERIFY(::truncate(head.c_str(), 128 << 20) == 0);
        auto r = s->get("users/a/parcels/p/head");
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
        QVERIFY2(r.error().message.find("134217728") != std::string::npos,
                 r.error().message.c_str());
        // A range within the limit still reads.
        QVERIFY(s->getRange("users/a/parcels/p/head", 0, 2).ok());
        QVERIFY(s->put("isr-store.json", Bytes((64 << 10) + 1, '{')).ok());
        QCOMPARE(s->get("isr-store.json").error().code, Errc::Corrupt);
    }

    void errnoMapping() {
        QCOMPARE(errnoError(ENOENT, "x").code, Errc::NotFound);
        QCOMPARE(errnoError(ENOSPC, "x").code, Errc::NoSpace);
        QCOMPARE(errnoError(EDQUOT, "x").code, Errc::NoSpace);
        QCOMPARE(errnoError(EACCES, "x").code, Errc::AccessDenied);
        QCOMPARE(errnoError(EPERM, "x").code, Errc::AccessDenied);
        QCOMPARE(errnoError(EIO, "x").code, Errc::Io);
        QVERIFY(errnoError(EIO, "put k").message.rfind("put k: ", 0) == 0);
    }

    void fullDiskIsNoSpace() {
        test::TempDir dir;
        const std::string mnt = dir.path() + "/small";
        QVERIFY(::mkdir(mnt.c_str(), 0755) == 0);
        if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0)
            QSKIP(qPrintable(QString("cannot mount a 1 MiB tmpfs (needs root/CAP_SYS_ADMIN): %1")
                                 .arg(strerror(errno))));
        struct Unmount {
            std::string path;
            ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
        } unmount{mnt};
        auto s = openOrFail(mnt);
        QVERIFY(s->put("small", Bytes(100000, 1)).ok());
        auto st = s->put("big", Bytes(2 << 20, 2));
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::NoSpace);
        auto st2 = s->putIfAbsent("big2", Bytes(2 << 20, 2));
        QCOMPARE(st2.error().code, Errc::NoSpace);
        // The failed writes left neither an object nor a temp file behind.
        QCOMPARE(keysOf(*s->list("")), (std::vector<std::string>{"small"}));
        QVERIFY(std::filesystem::is_empty(mnt + "/tmp"));
    }
};

QTEST_GUILESS_MAIN(TestFileStore)
#include "test_filestore.moc"
