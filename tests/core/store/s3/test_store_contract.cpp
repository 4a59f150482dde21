// The Store contract, run against every backend: FileStore on a temp
// directory and S3Store on a real radosgw (tests/support/ceph-rgw.sh). Each
// backend gets the same test class; only how a fresh, empty store is made
// differs.
#include "ceph_rgw.h"
#include "store/store.h"
#include "testsupport.h"

#include <QCoreApplication>
#include <QTest>
#include <algorithm>
#include <atomic>
#include <ctime>
#include <functional>
#include <memory>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::store;

namespace {
Bytes pattern(std::size_t n, unsigned seed) {
    Bytes b(n);
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& c : b) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = std::uint8_t(x);
    }
    return b;
}
std::string describe(const Status& s) {
    return s.ok() ? "ok" : s.error().describe();
}
template <typename T> std::string describe(const Result<T>& r) {
    return r.ok() ? "ok" : r.error().describe();
}
} // namespace

#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        auto r_ = (expr);                                                                          \
        QVERIFY2(r_.ok(), describe(r_).c_str());                                                   \
    } while (0)

class StoreContract : public QObject {
    Q_OBJECT
public:
    // makeStore() returns a fresh, empty store each call.
    StoreContract(std::string backend, std::function<std::unique_ptr<Store>()> makeStore)
        : backend_(std::move(backend)), makeStore_(std::move(makeStore)) {}

private:
    std::string backend_;
    std::function<std::unique_ptr<Store>()> makeStore_;
    std::unique_ptr<Store> store_;

private slots:
    void init() {
        store_ = makeStore_();
        QVERIFY(store_);
    }
    void cleanup() { store_.reset(); }

    void putThenGet() {
        const Bytes data = pattern(1000, 1);
        CHECK_OK(store_->put("a/b/c", data));
        auto got = store_->get("a/b/c");
        CHECK_OK(got);
        QVERIFY(*got == data);
        // put replaces.
        const Bytes other = pattern(10, 2);
        CHECK_OK(store_->put("a/b/c", other));
        QVERIFY(*store_->get("a/b/c") == other);
    }
    void emptyAndLargeObjects() {
        CHECK_OK(store_->put("empty", ByteView()));
        auto got = store_->get("empty");
        CHECK_OK(got);
        QVERIFY(got->empty());
        // Larger than curl's 1 MiB Expect: 100-continue threshold.
        const Bytes big = pattern(3 * 1024 * 1024 + 17, 3);
        CHECK_OK(store_->put("big", big));
        got = store_->get("big");
        CHECK_OK(got);
        QVERIFY(*got == big);
    }
    void getMissing() {
        auto got = store_->get("missing/key");
        QVERIFY(!got.ok());
        QCOMPARE(got.error().code, Errc::NotFound);
        QCOMPARE(store_->getRange("missing/key", 0, 10).error().code, Errc::NotFound);
    }
    void getRange() {
        const Bytes data = pattern(100, 4);
        CHECK_OK(store_->put("r", data));
        auto slice = [&](std::size_t from, std::size_t to) {
            return Bytes(data.begin() + std::ptrdiff_t(from), data.begin() + std::ptrdiff_t(to));
        };
        auto got = store_->getRange("r", 10, 20);
        CHECK_OK(got);
        QVERIFY(*got == slice(10, 30));
        got = store_->getRange("r", 0, 100);
        QVERIFY(*got == data);
        // Clipped at the end.
        got = store_->getRange("r", 90, 1000);
        CHECK_OK(got);
        QVERIFY(*got == slice(90, 100));
        got = store_->getRange("r", 5, UINT64_MAX);
        CHECK_OK(got);
        QVERIFY(*got == slice(5, 100));
        // At the end: empty. Past it: the caller's error.
        got = store_->getRange("r", 100, 10);
        CHECK_OK(got);
        QVERIFY(got->empty());
        got = store_->getRange("r", 101, 10);
        QVERIFY(!got.ok());
        QCOMPARE(got.error().code, Errc::InvalidArgument);
        got = store_->getRange("r", 3, 0);
        CHECK_OK(got);
        QVERIFY(got->empty());
        // An empty object read from 0.
        CHECK_OK(store_->put("r0", ByteView()));
        got = store_->getRange("r0", 0, 10);
        CHECK_OK(got);
        QVERIFY(got->empty());
    }
    void putIfAbsent() {
        CHECK_OK(store_->putIfAbsent("v/1", asBytes("first")));
        auto second = store_->putIfAbsent("v/1", asBytes("second"));
        QVERIFY(!second.ok());
        QCOMPARE(second.error().code, Errc::AlreadyExists);
        QCOMPARE(std::string(asString(*store_->get("v/1"))), std::string("first"));
    }
    void removeIsIdempotent() {
        CHECK_OK(store_->put("x/y", asBytes("1")));
        CHECK_OK(store_->remove("x/y"));
        QCOMPARE(store_->get("x/y").error().code, Errc::NotFound);
        CHECK_OK(store_->remove("x/y"));
        CHECK_OK(store_->remove("never/was"));
        // A removed key can be created again, also with putIfAbsent.
        CHECK_OK(store_->putIfAbsent("x/y", asBytes("2")));
    }
    void exists() {
        auto e = store_->exists("e");
        CHECK_OK(e);
        QVERIFY(!*e);
        CHECK_OK(store_->put("e", asBytes("1")));
        e = store_->exists("e");
        CHECK_OK(e);
        QVERIFY(*e);
        QVERIFY(!*store_->exists("e/sub"));
    }
    void invalidKeys() {
        for (const char* k : {"", "/a", "a/", "a//b", "../x", "a/./b", "a b"}) {
            QCOMPARE(store_->get(k).error().code, Errc::InvalidArgument);
            QCOMPARE(store_->put(k, asBytes("x")).error().code, Errc::InvalidArgument);
            QCOMPARE(store_->exists(k).error().code, Errc::InvalidArgument);
            QCOMPARE(store_->remove(k).error().code, Errc::InvalidArgument);
        }
    }
    void listPrefixSortedWithSizes() {
        CHECK_OK(store_->put("users/bob/b", pattern(3, 1)));
        CHECK_OK(store_->put("users/alice/parcels/p/head", pattern(1, 1)));
        CHECK_OK(store_->put("users/alice/chunks/ab/ab01", pattern(7, 1)));
        CHECK_OK(store_->put("users/alice/chunks/ac/ac02", pattern(9, 1)));
        CHECK_OK(store_->put("users/alicia/x", pattern(2, 1)));
        auto listed = store_->list("users/alice/");
        CHECK_OK(listed);
        QCOMPARE(listed->size(), std::size_t(3));
        QCOMPARE((*listed)[0].key, std::string("users/alice/chunks/ab/ab01"));
        QCOMPARE((*listed)[0].size, std::uint64_t(7));
        QCOMPARE((*listed)[1].key, std::string("users/alice/chunks/ac/ac02"));
        QCOMPARE((*listed)[1].size, std::uint64_t(9));
        QCOMPARE((*listed)[2].key, std::string("users/alice/parcels/p/head"));
        QVERIFY((*listed)[0].modified > 1600000000);
        // A prefix may end inside a segment.
        listed = store_->list("users/alic");
        CHECK_OK(listed);
        QCOMPARE(listed->size(), std::size_t(4));
        listed = store_->list("users/alice/chunks/a");
        CHECK_OK(listed);
        QCOMPARE(listed->size(), std::size_t(2));
        listed = store_->list("");
        CHECK_OK(listed);
        QCOMPARE(listed->size(), std::size_t(5));
        QVERIFY(std::is_sorted(listed->begin(), listed->end(),
                               [](const auto& a, const auto& b) { return a.key < b.key; }));
        listed = store_->list("nothing/here/");
        CHECK_OK(listed);
        QVERIFY(listed->empty());
        QCOMPARE(store_->list("../").error().code, Errc::InvalidArgument);
    }
    void listMoreThanOnePage() {
        // S3 returns at most 1000 keys a page: continuation must work.
        std::vector<PutItem> items;
        for (int i = 0; i < 1234; ++i) {
            char name[32];
            std::snprintf(name, sizeof name, "many/%05d", i);
            items.push_back(PutItem{name, pattern(std::size_t(i % 50), unsigned(i)), false});
        }
        for (const auto& st : store_->putMany(items))
            CHECK_OK(st);
        auto listed = store_->list("many/");
        CHECK_OK(listed);
        QCOMPARE(listed->size(), items.size());
        for (std::size_t i = 0; i < items.size(); ++i) {
            QCOMPARE((*listed)[i].key, items[i].key);
            QCOMPARE((*listed)[i].size, std::uint64_t(items[i].data.size()));
        }
    }
    // A kiosk reads its store from dozens of threads at once (hoards, RAM
    // faults, their helpers): every answer right, nothing torn. S3Store once
    // shared one connection cache between them, which libcurl does not
    // support, and a session aborted with a corrupted heap.
    void manyThreadsAtOnce() {
        constexpr int kThreads = 48, kRounds = 30;
        std::atomic<int> wrong{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                for (int i = 0; i < kRounds; ++i) {
                    const std::string key = "many/" + std::to_string(t) + "/" + std::to_string(i);
                    const Bytes data = pattern(std::size_t(500 + 37 * i), unsigned(t * 1000 + i));
                    if (!store_->put(key, data).ok())
                        wrong++;
                    auto back = store_->get(key);
                    if (!back.ok() || *back != data)
                        wrong++;
                    auto there = store_->exists(key);
                    if (!there.ok() || !*there)
                        wrong++;
                }
            });
        for (auto& t : threads)
            t.join();
        QCOMPARE(wrong.load(), 0);
    }

    void getManyPutManyKeepOrder() {
        std::vector<PutItem> items;
        for (int i = 0; i < 40; ++i)
            items.push_back(PutItem{"batch/" + std::to_string(i),
                                    pattern(std::size_t(1000 + i), unsigned(i)), false});
        CHECK_OK(store_->put("batch/exists", asBytes("old")));
        items.push_back(PutItem{"batch/exists", toBytes("new"), true}); // loses
        items.push_back(PutItem{"bad//key", toBytes("x"), false});
        items.push_back(PutItem{"batch/fresh", toBytes("f"), true}); // wins
        auto statuses = store_->putMany(items);
        QCOMPARE(statuses.size(), items.size());
        for (int i = 0; i < 40; ++i)
            CHECK_OK(statuses[std::size_t(i)]);
        QCOMPARE(statuses[40].error().code, Errc::AlreadyExists);
        QCOMPARE(statuses[41].error().code, Errc::InvalidArgument);
        CHECK_OK(statuses[42]);
        QCOMPARE(std::string(asString(*store_->get("batch/exists"))), std::string("old"));

        std::vector<std::string> keys;
        for (int i = 39; i >= 0; --i)
            keys.push_back("batch/" + std::to_string(i));
        keys.push_back("batch/missing");
        keys.push_back("../bad");
        auto got = store_->getMany(keys);
        QCOMPARE(got.size(), keys.size());
        for (int j = 0; j < 40; ++j) {
            CHECK_OK(got[std::size_t(j)]);
            QVERIFY(*got[std::size_t(j)] == pattern(std::size_t(1000 + 39 - j), unsigned(39 - j)));
        }
        QCOMPARE(got[40].error().code, Errc::NotFound);
        QCOMPARE(got[41].error().code, Errc::InvalidArgument);
        QVERIFY(store_->getMany({}).empty());
        QVERIFY(store_->putMany({}).empty());

        // existsMany: the same answers as exists(), in the input's order,
        // a bad key failing alone.
        keys = {"batch/3", "batch/missing", "bad//key", "batch/exists", "batch/3/sub"};
        auto there = store_->existsMany(keys);
        QCOMPARE(there.size(), keys.size());
        CHECK_OK(there[0]);
        QVERIFY(*there[0]);
        CHECK_OK(there[1]);
        QVERIFY(!*there[1]);
        QCOMPARE(there[2].error().code, Errc::InvalidArgument);
        CHECK_OK(there[3]);
        QVERIFY(*there[3]);
        CHECK_OK(there[4]);
        QVERIFY(!*there[4]);
        QVERIFY(store_->existsMany({}).empty());
    }
};

int main(int argc, char** argv) {
    QCoreApplication app(argc, argv);
    int failures = 0;
    const auto& rgw = test::cephRgw(); // skips (exit 77) if Ceph is missing

    test::TempDir fileRoot;
    int fileCount = 0;
    StoreContract fileContract("file", [&]() -> std::unique_ptr<Store> {
        const std::string dir = fileRoot.file("s" + std::to_string(fileCount++));
        ::mkdir(dir.c_str(), 0755);
        auto s = openStore("file://" + dir);
        if (!s.ok())
            qFatal("%s", s.error().describe().c_str());
        return std::move(s).value();
    });
    qInfo("=== Store contract: FileStore ===");
    failures += QTest::qExec(&fileContract, argc, argv);
    int s3Count = 0;
    const std::string run =
        "contract-" + std::to_string(::getpid()) + "-" + std::to_string(std::time(nullptr));
    StoreContract s3Contract("s3", [&]() -> std::unique_ptr<Store> {
        // A fresh prefix is a fresh, empty store.
        auto s = openStore(rgw.url(run + "/s" + std::to_string(s3Count++)), rgw.options());
        if (!s.ok())
            qFatal("%s", s.error().describe().c_str());
        return std::move(s).value();
    });
    qInfo("=== Store contract: S3Store on radosgw %s ===", rgw.endpoint.c_str());
    failures += QTest::qExec(&s3Contract, argc, argv);
    return failures ? 1 : 0;
}

#include "test_store_contract.moc"
