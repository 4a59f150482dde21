// S3Store against a real radosgw when things go wrong: bad credentials, a
// missing bucket, objects deleted behind its back, racing writers, and the
// server stalling (SIGSTOP) or dying (SIGKILL) in the middle of a batch.
#include "ceph_rgw.h"
#include "parcel/parcel.h"
#include "store/store.h"
#include "testsupport.h"
#include "util/log.h"

#include <QTest>
#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <mutex>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::store;
using namespace std::chrono_literals;

namespace {
Bytes pattern(std::size_t n, unsigned seed) {
    Bytes b(n);
    std::uint32_t x = seed * 2654435761u + 7;
    for (auto& c : b) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = std::uint8_t(x);
    }
    return b;
}
template <typename R> std::string describe(const R& r) {
    return r.ok() ? "ok" : r.error().describe();
}

// Collects the store's log lines (retries are logged as warnings).
class LogCapture {
public:
    LogCapture() {
        log::setLevel(log::Level::Warn);
        log::setSink([this](log::Level, std::string_view cat, std::string_view msg) {
            std::lock_guard lock(mutex_);
            lines_.push_back(std::string(cat) + ": " + std::string(msg));
        });
    }
    ~LogCapture() { log::setSink(nullptr); }
    int count(const std::string& needle) {
        std::lock_guard lock(mutex_);
        int n = 0;
        for (const auto& l : lines_)
            n += l.find(needle) != std::string::npos;
        return n;
    }

private:
    std::mutex mutex_;
    std::vector<std::string> lines_;
};

// SIGCONT on scope exit, so a failed check never leaves radosgw stopped.
struct ResumeGuard {
    ~ResumeGuard() { test::resumeRadosgw(); }
};
struct RestartGuard {
    ~RestartGuard() { test::restartRadosgw(); }
};
} // namespace

class TestS3Faults : public QObject {
    Q_OBJECT
    const test::S3TestEnv* rgw_ = nullptr;
    std::string run_;
    int n_ = 0;

    std::string freshUrl() { return rgw_->url(run_ + "/t" + std::to_string(n_++)); }
    std::unique_ptr<Store> open(const std::string& url, const StoreOptions& options) {
        auto s = openStore(url, options);
        if (!s.ok())
            qFatal("%s", s.error().describe().c_str());
        return std::move(s).value();
    }

private slots:
    void initTestCase() {
        rgw_ = &test::cephRgw();
        run_ = "faults-" + std::to_string(::getpid()) + "-" + std::to_string(std::time(nullptr));
    }

    void wrongSecretIsAccessDeniedWithoutRetries() {
        LogCapture logs;
        StoreOptions o = rgw_->options();
        o.readCredentials.secretKey = "not-the-secret";
        auto store = open(freshUrl(), o);
        auto got = store->get("any");
        QVERIFY(!got.ok());
        QCOMPARE(got.error().code, Errc::AccessDenied);
        QVERIFY2(got.error().message.find("SignatureDoesNotMatch") != std::string::npos,
                 got.error().message.c_str());
        QVERIFY2(got.error().message.find("attempts") == std::string::npos,
                 got.error().message.c_str());
        auto put = store->put("any", asBytes("x"));
        QCOMPARE(put.error().code, Errc::AccessDenied);
        auto many =
            store->putMany({PutItem{"a", toBytes("1"), false}, PutItem{"b", toBytes("2"), false}});
        for (const auto& st : many)
            QCOMPARE(st.error().code, Errc::AccessDenied);
        QCOMPARE(logs.count("retry"), 0);
        // Unknown access key, and anonymous: denied too.
        o.readCredentials.accessKey = "NOSUCHKEY";
        QCOMPARE(open(freshUrl(), o)->get("any").error().code, Errc::AccessDenied);
        QCOMPARE(open(freshUrl(), StoreOptions())->put("any", asBytes("x")).error().code,
                 Errc::AccessDenied);
    }

    void otherUsersKeysAreDenied() {
        auto store = open(freshUrl(), rgw_->options());
        QVERIFY(store->put("mine", asBytes("1")).ok());
        // User 2 owns nothing in user 1's bucket: reads and writes refused.
        StoreOptions o2 = rgw_->options();
        o2.readCredentials = rgw_->user2;
        auto other = open(store->url(), o2);
        QCOMPARE(other->get("mine").error().code, Errc::AccessDenied);
        QCOMPARE(other->put("theirs", asBytes("1")).error().code, Errc::AccessDenied);
        // setWriteCredentials switches the keys a store signs with.
        store->setWriteCredentials(rgw_->user2);
        QCOMPARE(store->put("mine2", asBytes("1")).error().code, Errc::AccessDenied);
        store->setWriteCredentials(rgw_->user1);
        QVERIFY(store->put("mine2", asBytes("1")).ok());
    }

    void missingBucketIsNotFound() {
        auto store = open("s3://" + rgw_->hostPort + "/no-such-bucket-isr", rgw_->options());
        auto got = store->get("k");
        QCOMPARE(got.error().code, Errc::NotFound);
        QVERIFY2(got.error().message.find("bucket \"no-such-bucket-isr\" does not exist") !=
                     std::string::npos,
                 got.error().message.c_str());
        auto listed = store->list("");
        QCOMPARE(listed.error().code, Errc::NotFound);
        // remove of a key is idempotent, but not when the whole bucket is gone.
        QCOMPARE(store->remove("k").error().code, Errc::NotFound);
        QCOMPARE(store->put("k", asBytes("x")).error().code, Errc::NotFound);
    }

    void deletedBehindTheClientsBack() {
        const std::string url = freshUrl();
        auto a = open(url, rgw_->options());
        auto b = open(url, rgw_->options());
        QVERIFY(a->put("gone", asBytes("here")).ok());
        QVERIFY(a->get("gone").ok()); // connection now cached in a
        QVERIFY(b->remove("gone").ok());
        QCOMPARE(a->get("gone").error().code, Errc::NotFound);
        QCOMPARE(a->getRange("gone", 1, 2).error().code, Errc::NotFound);
        QVERIFY(!*a->exists("gone"));
        auto many = a->getMany({"gone"});
        QCOMPARE(many[0].error().code, Errc::NotFound);
    }

    void racingPutIfAbsentHasOneWinner() {
        const std::string url = freshUrl();
        constexpr int kWriters = 8, kKeys = 10;
        std::vector<std::unique_ptr<Store>> stores;
        for (int w = 0; w < kWriters; ++w)
            stores.push_back(open(url, rgw_->options()));
        std::vector<std::vector<Status>> results(kWriters);
        std::vector<std::thread> threads;
        std::atomic<bool> go{false};
        for (int w = 0; w < kWriters; ++w) {
            threads.emplace_back([&, w] {
                while (!go.load())
                    std::this_thread::yield();
                for (int k = 0; k < kKeys; ++k)
                    results[std::size_t(w)].push_back(stores[std::size_t(w)]->putIfAbsent(
                        "versions/" + std::to_string(k), asBytes("writer " + std::to_string(w))));
            });
        }
        go = true;
        for (auto& t : threads)
            t.join();
        for (int k = 0; k < kKeys; ++k) {
            int winners = 0, winner = -1;
            for (int w = 0; w < kWriters; ++w) {
                const Status& st = results[std::size_t(w)][std::size_t(k)];
                if (st.ok()) {
                    ++winners;
                    winner = w;
                } else {
                    QVERIFY2(st.error().code == Errc::AlreadyExists, describe(st).c_str());
                }
            }
            QCOMPARE(winners, 1);
            auto got = stores[0]->get("versions/" + std::to_string(k));
            QVERIFY(got.ok());
            QCOMPARE(std::string(asString(*got)), "writer " + std::to_string(winner));
        }
    }

    // The per-user prefix policy of packaging/S3-DEPLOYMENT.md, on the real
    // radosgw: user 2 plays "bob", the bucket owner (user 1) the admin.
    void perUserPrefixPolicy() {
        if (!test::haveProgram("curl"))
            QSKIP("curl not installed (needed to set the bucket policy)");
        const std::string root = run_ + "/pol";
        const std::string b = rgw_->bucket;
        // ROOT stands for the store prefix, BUCKET for the bucket.
        std::string policy =
            "{'Version':'2012-10-17','Statement':["
            "{'Sid':'BobOwnPrefix','Effect':'Allow','Principal':{'AWS':['arn:aws:iam:::user/"
            "isr-test2']},"
            "'Action':['s3:GetObject','s3:PutObject','s3:DeleteObject'],"
            "'Resource':['arn:aws:s3:::BUCKET/ROOT/users/bob/*']},"
            "{'Sid':'BobList','Effect':'Allow','Principal':{'AWS':['arn:aws:iam:::user/"
            "isr-test2']},"
            "'Action':['s3:ListBucket'],'Resource':['arn:aws:s3:::BUCKET'],"
            "'Condition':{'StringLike':{'s3:prefix':['ROOT/users/bob/*']}}},"
            "{'Sid':'Accounts','Effect':'Allow','Principal':{'AWS':['arn:aws:iam:::user/"
            "isr-test2']},"
            "'Action':['s3:GetObject'],'Resource':['arn:aws:s3:::BUCKET/ROOT/users/*/account']}]}";
        std::replace(policy.begin(), policy.end(), '\'', '"');
        for (const auto& [from, to] :
             {std::pair<std::string, std::string>{"BUCKET", b}, {"ROOT", root}})
            for (auto at = policy.find(from); at != std::string::npos; at = policy.find(from, at))
                policy.replace(at, from.size(), to);
        auto policyRequest = [&](const char* method, const QByteArray& body) {
            QStringList args{
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                method,
                "--aws-sigv4",
                QString::fromStdString("aws:amz:" + rgw_->region + ":s3"),
                "--user",
                QString::fromStdString(rgw_->user1.accessKey + ":" + rgw_->user1.secretKey),
                "-H",
                "x-amz-content-sha256: UNSIGNED-PAYLOAD"};
            if (!body.isEmpty())
                args << "--data-binary"
                     << "@-";
            args << QString::fromStdString(rgw_->endpoint + "/" + b + "?policy=");
            return test::runProcess("curl", args, body).out;
        };
        QCOMPARE(policyRequest("PUT", QByteArray::fromStdString(policy)), std::string("204"));
        struct DropPolicy {
            std::function<void()> f;
            ~DropPolicy() { f(); }
        } drop{[&] { policyRequest("DELETE", {}); }};

        auto admin = open(rgw_->url(root), rgw_->options());
        QVERIFY(admin->put("users/alice/account", asBytes("sealed")).ok());
        QVERIFY(admin->put("users/alice/chunks/ab/ab01", asBytes("chunk")).ok());
        StoreOptions o = rgw_->options();
        o.readCredentials = rgw_->user2;
        auto bob = open(rgw_->url(root), o);
        QVERIFY(bob->put("users/bob/account", asBytes("b")).ok());
        QVERIFY(bob->putIfAbsent("users/bob/parcels/p/versions/1", asBytes("v1")).ok());
        QCOMPARE(bob->putIfAbsent("users/bob/parcels/p/versions/1", asBytes("v1")).error().code,
                 Errc::AlreadyExists);
        auto mine = bob->list("users/bob/");
        QVERIFY2(mine.ok(), describe(mine).c_str());
        QCOMPARE(mine->size(), std::size_t(2));
        QVERIFY(bob->get("users/alice/account").ok()); // accounts are readable
        QCOMPARE(bob->get("users/alice/chunks/ab/ab01").error().code, Errc::AccessDenied);
        QCOMPARE(bob->put("users/alice/account", asBytes("evil")).error().code, Errc::AccessDenied);
        QCOMPARE(bob->remove("users/alice/account").error().code, Errc::AccessDenied);
        QCOMPARE(bob->list("users/alice/").error().code, Errc::AccessDenied);
        QVERIFY(bob->remove("users/bob/account").ok());
        QCOMPARE(std::string(asString(*admin->get("users/alice/account"))), std::string("sealed"));

        // A missing account where bob may read accounts but not list: S3
        // answers 403, not 404. Sign-in must still answer as for a wrong
        // password (the decoy work included), never "store unreachable"
        // (issue #16, item 12).
        auto missing = bob->get("users/carol/account");
        QVERIFY(!missing.ok());
        if (missing.error().code == Errc::NotFound) {
            qInfo("this radosgw answers 404 for a hidden missing object: the 403 branch is "
                  "not exercised here");
        } else {
            QCOMPARE(missing.error().code, Errc::AccessDenied);
            QVERIFY2(isDeniedOrMissing(missing.error()), missing.error().message.c_str());
        }
        auto carol = parcel::signIn(*bob, "carol", "any password");
        QVERIFY(!carol.ok());
        QCOMPARE(carol.error().code, Errc::AuthFailed);
        // Wrong credentials are an error staff must see, not an unknown user.
        StoreOptions wrong = rgw_->options();
        wrong.readCredentials = rgw_->user2;
        wrong.readCredentials.secretKey = "not-the-secret";
        auto stranger = open(rgw_->url(root), wrong)->get("users/alice/account");
        QVERIFY(!stranger.ok());
        QCOMPARE(stranger.error().code, Errc::AccessDenied);
        QVERIFY2(!isDeniedOrMissing(stranger.error()), stranger.error().message.c_str());
    }

    void tlsVerifiesCertificates() {
        if (rgw_->tlsHostPort.empty())
            QSKIP("radosgw has no HTTPS endpoint (openssl missing when it was started)");
        const std::string path = "/" + rgw_->bucket + "/" + run_ + "/tls";
        StoreOptions o = rgw_->options();
        o.caBundle = rgw_->caBundle;
        auto trusted = open("s3s://" + rgw_->tlsHostPort + path, o);
        QVERIFY2(trusted->put("k", asBytes("secret")).ok(),
                 describe(trusted->put("k", asBytes("secret"))).c_str());
        QCOMPARE(std::string(asString(*trusted->get("k"))), std::string("secret"));
        // useTls on an s3:// URL is the same as s3s://.
        StoreOptions viaOption = o;
        viaOption.useTls = true;
        QVERIFY(open("s3://" + rgw_->tlsHostPort + path, viaOption)->get("k").ok());
        // The self-signed certificate is not in the system store: refused,
        // once, as a trust failure.
        auto untrusted = open("s3s://" + rgw_->tlsHostPort + path, rgw_->options());
        auto got = untrusted->get("k");
        QVERIFY(!got.ok());
        QCOMPARE(got.error().code, Errc::AccessDenied);
        QVERIFY2(got.error().message.find("not trusted") != std::string::npos,
                 got.error().message.c_str());
        QVERIFY2(got.error().message.find("attempts") == std::string::npos,
                 got.error().message.c_str());
        // Verification off (lab setups only) accepts it.
        StoreOptions insecure = rgw_->options();
        insecure.verifyTls = false;
        QVERIFY(open("s3s://" + rgw_->tlsHostPort + path, insecure)->get("k").ok());
    }

    void stallTriggersRetry() {
        if (!test::canControlRadosgw())
            QSKIP("radosgw given by ISR_TEST_S3_ENDPOINT without ISR_TEST_S3_CEPH_DIR");
        StoreOptions o = rgw_->options();
        o.stallTimeoutMs = 1000;
        o.maxRetries = 8;
        auto store = open(freshUrl(), o);
        QVERIFY(store->put("k", asBytes("value")).ok());
        LogCapture logs;
        Result<Bytes> got = Error();
        {
            ResumeGuard resume;
            test::stopRadosgw();
            std::thread reader([&] { got = store->get("k"); });
            // Resume once the client has given up on a stalled attempt.
            for (int i = 0; i < 300 && logs.count("retry") == 0; ++i)
                std::this_thread::sleep_for(100ms);
            test::resumeRadosgw();
            reader.join();
        }
        QVERIFY2(logs.count("Timeout was reached") + logs.count("retry") > 0, "no retry logged");
        QVERIFY2(got.ok(), describe(got).c_str());
        QCOMPARE(std::string(asString(*got)), std::string("value"));
    }

    void stallOutlastingRetriesIsTransient() {
        if (!test::canControlRadosgw())
            QSKIP("radosgw given by ISR_TEST_S3_ENDPOINT without ISR_TEST_S3_CEPH_DIR");
        StoreOptions o = rgw_->options();
        o.stallTimeoutMs = 1000;
        o.maxRetries = 1;
        auto store = open(freshUrl(), o);
        ResumeGuard resume;
        test::stopRadosgw();
        auto got = store->get("k");
        test::resumeRadosgw();
        QVERIFY(!got.ok());
        QCOMPARE(got.error().code, Errc::Transient);
        QVERIFY2(got.error().message.find("after 2 attempts") != std::string::npos,
                 got.error().message.c_str());
    }

    // A batch against a store that refuses every connection: once the first
    // request has used up its retries, the rest give up with it instead of
    // each spending its own retry budget (tests/reliability/
    // test_network_faults does the same with a cut link).
    void deadStoreFailsTheBatchAfterOneRetryBudget() {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        QVERIFY(fd >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        QVERIFY(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
        QVERIFY(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        ::close(fd); // nothing listens there now
        StoreOptions o = rgw_->options();
        o.maxInFlight = 2;
        o.maxRetries = 3;
        auto store = open("s3://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/b", o);
        std::vector<PutItem> items;
        for (int i = 0; i < 20; ++i)
            items.push_back(PutItem{"k" + std::to_string(i), pattern(1024, unsigned(i)), false});
        auto statuses = store->putMany(items);
        int exhausted = 0, gaveUp = 0;
        for (const auto& st : statuses) {
            QVERIFY(!st.ok());
            QCOMPARE(st.error().code, Errc::Transient);
            exhausted += st.error().message.find("(after 4 attempts)") != std::string::npos;
            gaveUp +=
                st.error().message.find("gave up: the store is unreachable") != std::string::npos;
        }
        // One request used up its retries; the one in flight with it, if
        // any, then failed without a retry; the rest (at least 18 queued or
        // waiting for a retry) gave up with them. Without the rule every one
        // would have spent its own four attempts.
        QVERIFY2(exhausted >= 1, statuses.front().error().describe().c_str());
        QVERIFY2(gaveUp >= 18, std::to_string(gaveUp).c_str());
    }

    // Each item of a batch interrupted by a server fault either succeeds or
    // fails Transient, and everything reported ok is really there.
    void putManyThroughFault_data() {
        QTest::addColumn<bool>("kill");
        QTest::newRow("SIGSTOP stall") << false;
        QTest::newRow("SIGKILL and restart") << true;
    }
    void putManyThroughFault() {
        QFETCH(bool, kill);
        if (!test::canControlRadosgw())
            QSKIP("radosgw given by ISR_TEST_S3_ENDPOINT without ISR_TEST_S3_CEPH_DIR");
        StoreOptions o = rgw_->options();
        o.stallTimeoutMs = 1000;
        o.maxRetries = 3;
        o.maxInFlight = 8;
        const std::string url = freshUrl();
        auto store = open(url, o);
        std::vector<PutItem> items;
        for (int i = 0; i < 300; ++i)
            items.push_back(PutItem{"chunks/" + std::to_string(i), pattern(128 * 1024, unsigned(i)),
                                    i % 2 == 0});
        LogCapture logs;
        std::vector<Status> statuses;
        {
            ResumeGuard resume;
            RestartGuard restart;
            std::thread writer([&] { statuses = store->putMany(items); });
            // Strike in the middle: once the first items have landed (the
            // batch starts them in order), with most of it still to go.
            auto probe = open(url, rgw_->options());
            for (int i = 0; i < 600; ++i) {
                auto there = probe->exists("chunks/20");
                if (there.ok() && *there)
                    break;
                std::this_thread::sleep_for(10ms);
            }
            if (kill) {
                test::killRadosgw();
                std::this_thread::sleep_for(500ms);
                test::restartRadosgw();
            } else {
                test::stopRadosgw();
                std::this_thread::sleep_for(2500ms);
                test::resumeRadosgw();
            }
            writer.join();
        }
        QCOMPARE(statuses.size(), items.size());
        int ok = 0, transient = 0;
        for (const auto& st : statuses) {
            if (st.ok())
                ++ok;
            else if (st.error().code == Errc::Transient)
                ++transient;
            else
                QFAIL(("unexpected error: " + st.error().describe()).c_str());
        }
        qInfo("%d ok, %d transient, %d retries logged", ok, transient, logs.count("retry"));
        QVERIFY(logs.count("retry") > 0); // the fault really hit the batch
        auto reader = open(url, rgw_->options());
        std::vector<std::string> okKeys;
        std::vector<const Bytes*> expected;
        for (std::size_t i = 0; i < items.size(); ++i)
            if (statuses[i].ok()) {
                okKeys.push_back(items[i].key);
                expected.push_back(&items[i].data);
            }
        auto got = reader->getMany(okKeys);
        for (std::size_t i = 0; i < okKeys.size(); ++i) {
            QVERIFY2(got[i].ok(), (okKeys[i] + ": " + describe(got[i])).c_str());
            QVERIFY2(*got[i] == *expected[i], okKeys[i].c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestS3Faults)
#include "test_s3_faults.moc"
