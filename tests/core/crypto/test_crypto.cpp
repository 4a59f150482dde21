// Tests for core/crypto: KDF, AEAD (random and fixed nonce), BLAKE2b, Secret.
#include "crypto/crypto.h"

#include <QTest>
#include <algorithm>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace isr;
using namespace isr::crypto;

namespace {
Bytes flipped(ByteView in, std::size_t index) {
    Bytes out(in.begin(), in.end());
    out.at(index) ^= 0x01;
    return out;
}
} // namespace

class TestCrypto : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QVERIFY(initialize().ok()); }

    void kdfIsDeterministic() {
        KdfParams p = KdfParams::minimal();
        auto a = deriveKey("correct horse", p);
        auto b = deriveKey("correct horse", p);
        QVERIFY(a.ok());
        QVERIFY(b.ok());
        QCOMPARE(a->size(), kKeySize);
        QVERIFY(equalConstantTime(a->view(), b->view()));
    }
    void kdfDependsOnSaltAndPassword() {
        KdfParams p = KdfParams::minimal();
        KdfParams q = p;
        q.salt = randomBytes(kSaltSize);
        auto a = deriveKey("pw", p);
        auto b = deriveKey("pw", q);
        auto c = deriveKey("pW", p);
        QVERIFY(a.ok() && b.ok() && c.ok());
        QVERIFY(!equalConstantTime(a->view(), b->view()));
        QVERIFY(!equalConstantTime(a->view(), c->view()));
        KdfParams r = p;
        r.opsLimit += 1;
        auto d = deriveKey("pw", r);
        QVERIFY(d.ok());
        QVERIFY(!equalConstantTime(a->view(), d->view()));
    }
    void kdfPresetsAreValid() {
        QVERIFY(validateKdfParams(KdfParams::minimal()).ok());
        QVERIFY(validateKdfParams(KdfParams::interactive()).ok());
        QVERIFY(validateKdfParams(KdfParams::moderate()).ok());
        QVERIFY(KdfParams::moderate().salt != KdfParams::moderate().salt);
    }
    void kdfRefusesBadParams_data() {
        QTest::addColumn<quint64>("ops");
        QTest::addColumn<quint64>("mem");
        QTest::addColumn<int>("saltSize");
        KdfParams m = KdfParams::minimal();
        QTest::newRow("ops below min") << quint64(0) << quint64(m.memLimit) << int(kSaltSize);
        QTest::newRow("mem below min")
            << quint64(m.opsLimit) << quint64(m.memLimit - 1) << int(kSaltSize);
        QTest::newRow("mem 1 TiB") << quint64(m.opsLimit) << (quint64(1) << 40) << int(kSaltSize);
        QTest::newRow("mem just over 4 GiB")
            << quint64(m.opsLimit) << ((quint64(4) << 30) + 1) << int(kSaltSize);
        QTest::newRow("ops 65") << quint64(65) << quint64(m.memLimit) << int(kSaltSize);
        QTest::newRow("short salt") << quint64(m.opsLimit) << quint64(m.memLimit) << 15;
        QTest::newRow("long salt") << quint64(m.opsLimit) << quint64(m.memLimit) << 17;
        QTest::newRow("no salt") << quint64(m.opsLimit) << quint64(m.memLimit) << 0;
    }
    void kdfRefusesBadParams() {
        QFETCH(quint64, ops);
        QFETCH(quint64, mem);
        QFETCH(int, saltSize);
        KdfParams p{ops, mem, randomBytes(std::size_t(saltSize))};
        auto st = validateKdfParams(p);
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::InvalidArgument);
        auto key = deriveKey("pw", p);
        QVERIFY(!key.ok());
        QCOMPARE(key.error().code, Errc::InvalidArgument);
    }

    void kdfOutOfMemoryIsNoSpace() {
#if defined(__SANITIZE_ADDRESS__)
        QSKIP("ASan reserves terabytes of shadow address space, so RLIMIT_AS cannot be used");
#else
        // In a child limited to 256 MiB of address space, a 1 GiB Argon2id
        // cannot allocate its memory and must report NoSpace.
        KdfParams p = KdfParams::minimal();
        p.memLimit = 1ull << 30;
        pid_t pid = ::fork();
        QVERIFY(pid >= 0);
        if (pid == 0) {
            struct rlimit lim {};
            lim.rlim_cur = lim.rlim_max = 256ull << 20;
            if (::setrlimit(RLIMIT_AS, &lim) != 0)
                ::_exit(2);
            auto key = deriveKey("pw", p);
            ::_exit(key.ok() ? 3 : key.error().code == Errc::NoSpace ? 0 : 4);
        }
        int status = 0;
        QCOMPARE(::waitpid(pid, &status, 0), pid);
        QVERIFY(WIFEXITED(status));
        QCOMPARE(WEXITSTATUS(status), 0);
#endif
    }

    void hashMatchesKnownVector() {
        // BLAKE2b-256("abc"), from the BLAKE2 reference test vectors.
        QCOMPARE(QByteArray::fromStdString(toHex(hash(asBytes("abc")))),
                 QByteArray("bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"));
    }
    void incrementalHashMatchesOneShot() {
        Bytes data = randomBytes(100000);
        Bytes key = randomBytes(kKeySize);
        Hasher h;
        Hasher hk(key);
        for (std::size_t off = 0; off < data.size(); off += 777) {
            auto part = ByteView(data).subspan(off, std::min<std::size_t>(777, data.size() - off));
            h.update(part);
            hk.update(part);
        }
        QVERIFY(h.finish() == hash(data));
        QVERIFY(hk.finish() == keyedHash(key, data));
        QVERIFY(keyedHash(key, data) != hash(data));
        QVERIFY(keyedHash(randomBytes(kKeySize), data) != keyedHash(key, data));
    }

    void secretBasics() {
        Secret z(32);
        QCOMPARE(z.size(), std::size_t(32));
        QVERIFY(isAllZero(z.view()));
        Secret r = Secret::random(32);
        QVERIFY(!isAllZero(r.view()));
        Secret c = r.clone();
        QVERIFY(equalConstantTime(c.view(), r.view()));
        QVERIFY(c.data() != r.data());
        Secret m = std::move(r);
        QVERIFY(r.empty());
        QVERIFY(equalConstantTime(m.view(), c.view()));
        Secret e;
        QVERIFY(e.empty());
        e = std::move(m);
        QCOMPARE(e.size(), std::size_t(32));
        Bytes src = randomBytes(40);
        QVERIFY(equalConstantTime(Secret::copyOf(src).view(), src));
    }

    void sealRoundTrip() {
        Secret key = Secret::random(kKeySize);
        for (std::size_t n : {0, 1, 100, 70000}) {
            Bytes pt = randomBytes(n);
            Bytes sealed = seal(key, pt, asBytes("ad"));
            QCOMPARE(sealed.size(), n + kNonceSize + kMacSize);
            auto back = open(key, sealed, asBytes("ad"));
            QVERIFY(back.ok());
            QVERIFY(*back == pt);
        }
        // Random nonce: sealing twice differs.
        QVERIFY(seal(key, asBytes("x"), {}) != seal(key, asBytes("x"), {}));
    }
    void sealTamperIsCorrupt() {
        Secret key = Secret::random(kKeySize);
        Bytes pt = toBytes("the user's master key and more");
        Bytes sealed = seal(key, pt, asBytes("user/alice"));
        auto expectCorrupt = [&](const Secret& k, ByteView s, ByteView ad, const char* what) {
            auto r = open(k, s, ad);
            QVERIFY2(!r.ok(), what);
            QVERIFY2(r.error().code == Errc::Corrupt, what);
        };
        expectCorrupt(key, flipped(sealed, 0), asBytes("user/alice"), "nonce");
        expectCorrupt(key, flipped(sealed, kNonceSize + 3), asBytes("user/alice"), "ciphertext");
        expectCorrupt(key, flipped(sealed, sealed.size() - 1), asBytes("user/alice"), "mac");
        expectCorrupt(key, sealed, asBytes("user/bob"), "wrong AD");
        expectCorrupt(key, sealed, {}, "missing AD");
        expectCorrupt(Secret::random(kKeySize), sealed, asBytes("user/alice"), "wrong key");
        expectCorrupt(key, ByteView(sealed).first(sealed.size() - 1), asBytes("user/alice"),
                      "truncated");
        expectCorrupt(key, ByteView(sealed).first(kNonceSize + kMacSize - 1), asBytes("user/alice"),
                      "shorter than nonce+mac");
        expectCorrupt(key, {}, asBytes("user/alice"), "empty");
        Bytes extended = sealed;
        extended.push_back(0);
        expectCorrupt(key, extended, asBytes("user/alice"), "extended");
    }

    void convergentRoundTripAndTamper() {
        Bytes key = randomBytes(kKeySize);
        Bytes pt = randomBytes(5000);
        Bytes ct = encryptConvergent(key, pt, asBytes("ad"));
        QCOMPARE(ct.size(), pt.size() + kMacSize);
        QVERIFY(ct == encryptConvergent(key, pt, asBytes("ad"))); // deterministic
        auto back = decryptConvergent(key, ct, asBytes("ad"));
        QVERIFY(back.ok());
        QVERIFY(*back == pt);
        auto expectCorrupt = [](Result<Bytes> r, const char* what) {
            QVERIFY2(!r.ok(), what);
            QVERIFY2(r.error().code == Errc::Corrupt, what);
        };
        expectCorrupt(decryptConvergent(key, flipped(ct, 0), asBytes("ad")), "ciphertext");
        expectCorrupt(decryptConvergent(key, flipped(ct, ct.size() - 1), asBytes("ad")), "mac");
        expectCorrupt(decryptConvergent(key, ct, asBytes("ae")), "wrong AD");
        expectCorrupt(decryptConvergent(randomBytes(kKeySize), ct, asBytes("ad")), "wrong key");
        expectCorrupt(decryptConvergent(key, ByteView(ct).first(ct.size() - 1), asBytes("ad")),
                      "truncated");
        expectCorrupt(decryptConvergent(key, {}, asBytes("ad")), "empty");
        auto shortKey = decryptConvergent(ByteView(key).first(16), ct, asBytes("ad"));
        QVERIFY(!shortKey.ok());
        QCOMPARE(shortKey.error().code, Errc::InvalidArgument);
    }

    void constantTimeCompare() {
        Bytes a = randomBytes(32);
        QVERIFY(equalConstantTime(a, a));
        QVERIFY(!equalConstantTime(a, flipped(a, 31)));
        QVERIFY(!equalConstantTime(a, ByteView(a).first(31)));
        QVERIFY(equalConstantTime({}, {}));
    }

    void sha256MatchesKnownVectors() {
        // FIPS 180-2 test vectors; the empty one is the x-amz-content-sha256
        // of every GET, HEAD and DELETE.
        QCOMPARE(QByteArray::fromStdString(toHex(sha256(asBytes("abc")))),
                 QByteArray("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        QCOMPARE(QByteArray::fromStdString(toHex(sha256({}))),
                 QByteArray("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    }

    void wipeZeroes() {
        Bytes a = randomBytes(64);
        a[0] = 1; // at least one non-zero byte
        wipe(MutableByteView(a));
        QCOMPARE(a.size(), std::size_t(64));
        QVERIFY(std::all_of(a.begin(), a.end(), [](std::uint8_t b) { return b == 0; }));
        wipe(MutableByteView{}); // an empty view is fine
    }

    // A buffer that shrank still holds plaintext past its size: wipe(Bytes&)
    // zeroes up to the capacity, in place (the same allocation), and
    // empties the vector. The allocation is read through a raw pointer (the
    // vector's elements past its size are plain bytes of that allocation).
    void wipeBytesReachesTheCapacity() {
        Bytes a(256, 0xAB);
        a.resize(16); // 240 bytes of 0xAB left behind the size
        const volatile std::uint8_t* storage = a.data();
        const std::size_t capacity = a.capacity();
        QVERIFY(capacity >= 256);
        QCOMPARE(int(storage[200]), 0xAB); // what a plain clear() would leave
        wipe(a);
        QVERIFY(a.empty());
        QCOMPARE(a.capacity(), capacity);
        QCOMPARE(static_cast<const void*>(a.data()), const_cast<const std::uint8_t*>(storage));
        for (std::size_t k = 0; k < capacity; ++k)
            QCOMPARE(int(storage[k]), 0);
        Bytes empty;
        wipe(empty); // no allocation at all is fine
        QVERIFY(empty.empty());
    }
};

QTEST_GUILESS_MAIN(TestCrypto)
#include "test_crypto.moc"
