// Unit tests for S3Store's own canonicalisation (what libcurl signs verbatim)
// and its ListObjectsV2 / error XML parsing.
#include "store/s3store.h"
#include "testsupport.h"

#include <QTest>

using namespace isr;
using namespace isr::store;

class TestS3Unit : public QObject {
    Q_OBJECT
private slots:
    void uriEncodeUnreservedKept() {
        QCOMPARE(s3::uriEncode("AZaz09-._~", false), std::string("AZaz09-._~"));
    }
    void uriEncodeEverythingElse() {
        QCOMPARE(s3::uriEncode("a b+c=d&e/f", false), std::string("a%20b%2Bc%3Dd%26e%2Ff"));
        QCOMPARE(s3::uriEncode("a b/c", true), std::string("a%20b/c"));
        QCOMPARE(s3::uriEncode("\xc3\xa9*", false), std::string("%C3%A9%2A"));
        QCOMPARE(s3::uriEncode(std::string("\0", 1), false), std::string("%00"));
    }
    void canonicalQuerySortsByEncodedName() {
        // Continuation tokens carry '=', '/', '+': they must be encoded, and
        // pairs sorted by encoded name (AWS's canonical request rules).
        std::string q = s3::canonicalQuery(
            {{"prefix", "users/a b"}, {"list-type", "2"}, {"continuation-token", "x+y/z=="}});
        QCOMPARE(
            q, std::string("continuation-token=x%2By%2Fz%3D%3D&list-type=2&prefix=users%2Fa%20b"));
        QCOMPARE(s3::canonicalQuery({}), std::string());
        // Same name twice: sorted by value.
        QCOMPARE(s3::canonicalQuery({{"a", "2"}, {"a", "1"}}), std::string("a=1&a=2"));
        // Upper case sorts before lower case (byte order).
        QCOMPARE(s3::canonicalQuery({{"b", ""}, {"B", ""}}), std::string("B=&b="));
    }

    void parseUrlForms() {
        auto e = s3::parseUrl("s3://127.0.0.1:7480/bucket/users/pre/");
        QVERIFY2(e.ok(), e.ok() ? "" : e.error().describe().c_str());
        QCOMPARE(e->host, std::string("127.0.0.1"));
        QCOMPARE(e->port, 7480);
        QCOMPARE(e->bucket, std::string("bucket"));
        QCOMPARE(e->prefix, std::string("users/pre"));
        QVERIFY(!e->tls);
        e = s3::parseUrl("s3s://s3.example.org/b");
        QVERIFY(e.ok());
        QVERIFY(e->tls);
        QCOMPARE(e->port, 0);
        QCOMPARE(e->prefix, std::string());
        e = s3::parseUrl("s3://[::1]:9000/b/p");
        QVERIFY(e.ok());
        QCOMPARE(e->host, std::string("[::1]"));
        QCOMPARE(e->port, 9000);
    }
    void parseUrlRejects_data() {
        QTest::addColumn<QString>("url");
        for (const char* u :
             {"http://h/b", "s3://", "s3://h", "s3://h/", "s3://h:/b", "s3://h:99999/b",
              "s3://h:x/b", "s3://key:secret@h/b", "s3://h/b?x=1", "s3://h/b/../x", "s3://h/b//x",
              "s3://h/b a", "s3://h_x/b", "s3://[::1/b"})
            QTest::newRow(u) << QString(u);
    }
    void parseUrlRejects() {
        QFETCH(QString, url);
        auto e = s3::parseUrl(url.toStdString());
        QVERIFY(!e.ok());
        QCOMPARE(e.error().code, Errc::InvalidArgument);
    }
    void openStoreDispatchesS3() {
        auto s = openStore("s3://127.0.0.1:1/bucket/pre");
        QVERIFY(s.ok());
        QCOMPARE((*s)->url(), std::string("s3://127.0.0.1:1/bucket/pre"));
        StoreOptions tls;
        tls.useTls = true;
        s = openStore("s3://h/b", tls);
        QVERIFY(s.ok());
        QCOMPARE((*s)->url(), std::string("s3s://h/b"));
        StoreOptions badRegion;
        badRegion.region = "";
        QCOMPARE(openStore("s3://h/b", badRegion).error().code, Errc::InvalidArgument);
    }
    void invalidKeysNeverReachTheNetwork() {
        // Port 1 on loopback refuses; an invalid key must fail before that.
        auto s = openStore("s3://127.0.0.1:1/bucket");
        QVERIFY(s.ok());
        QCOMPARE((*s)->get("../x").error().code, Errc::InvalidArgument);
        QCOMPARE((*s)->put("a//b", asBytes("x")).error().code, Errc::InvalidArgument);
        auto many = (*s)->getMany({"/abs"});
        QCOMPARE(many.size(), std::size_t(1));
        QCOMPARE(many[0].error().code, Errc::InvalidArgument);
    }

    void xmlDecodeEntities() {
        auto d = s3::xmlDecode("a&amp;b&lt;c&gt;d&quot;e&apos;f&#65;&#x42;&#xe9;");
        QVERIFY(d.ok());
        QCOMPARE(*d, std::string("a&b<c>d\"e'fAB\xc3\xa9"));
        for (const char* bad :
             {"&", "&foo;", "&#;", "&#x;", "&#xZZ;", "&#0;", "&#xD800;", "&#x110000;", "&amp"})
            QVERIFY2(!s3::xmlDecode(bad).ok(), bad);
        QCOMPARE(s3::xmlDecode("&#0;").error().code, Errc::Corrupt);
    }
    void isoTime() {
        auto t = s3::parseIsoTime("2026-11-25T22:57:25.824Z");
        QVERIFY(t.ok());
        QCOMPARE(*t, std::int64_t(1795647445));
        QCOMPARE(*s3::parseIsoTime("1970-01-01T00:00:00Z"), std::int64_t(0));
        QVERIFY(!s3::parseIsoTime("yesterday").ok());
        QVERIFY(!s3::parseIsoTime("2026-13-01T00:00:00Z").ok());
    }

    void listPage() {
        // As Ceph RGW sends it, plus an escaped key and a KeyCount element
        // (whose name starts with "Key").
        const char* xml =
            R"(<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;1+/=</NextContinuationToken><Contents><Key>p/a&amp;b</Key><LastModified>2026-11-25T22:57:25.824Z</LastModified><ETag>&quot;5d41&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>p/z</Key><LastModified>1970-01-01T00:00:01.000Z</LastModified><Size>18446744073709551615</Size></Contents></ListBucketResult>)";
        auto page = s3::parseListObjectsV2(xml);
        QVERIFY2(page.ok(), page.ok() ? "" : page.error().describe().c_str());
        QCOMPARE(page->objects.size(), std::size_t(2));
        QCOMPARE(page->objects[0].key, std::string("p/a&b"));
        QCOMPARE(page->objects[0].size, std::uint64_t(5));
        QCOMPARE(page->objects[0].modified, std::int64_t(1795647445));
        QCOMPARE(page->objects[1].key, std::string("p/z"));
        QCOMPARE(page->objects[1].size, UINT64_MAX);
        QCOMPARE(page->objects[1].modified, std::int64_t(1));
        QVERIFY(page->truncated);
        QCOMPARE(page->nextToken, std::string("tok&1+/="));
    }
    void listPageEmptyAndLast() {
        auto page =
            s3::parseListObjectsV2("<ListBucketResult><Name>b</Name><KeyCount>0</"
                                   "KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>");
        QVERIFY(page.ok());
        QVERIFY(page->objects.empty());
        QVERIFY(!page->truncated);
        // Self-closing empty element before the real one does not confuse it.
        page = s3::parseListObjectsV2(
            "<ListBucketResult><Prefix/><IsTruncated>false</IsTruncated><Contents><Key>k</"
            "Key><Size>0</Size></Contents></ListBucketResult>");
        QVERIFY(page.ok());
        QCOMPARE(page->objects.size(), std::size_t(1));
        QCOMPARE(page->objects[0].key, std::string("k"));
    }
    void listPageCorrupt_data() {
        QTest::addColumn<QByteArray>("xml");
        QTest::newRow("error body") << QByteArray("<Error><Code>AccessDenied</Code></Error>");
        QTest::newRow("empty") << QByteArray("");
        QTest::newRow("no IsTruncated") << QByteArray(
            "<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>");
        QTest::newRow("bad IsTruncated")
            << QByteArray("<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>");
        QTest::newRow("truncated without token")
            << QByteArray("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>");
        QTest::newRow("no size") << QByteArray(
            "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></"
            "ListBucketResult>");
        QTest::newRow("size not a number")
            << QByteArray("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</"
                          "Key><Size>-1</Size></Contents></ListBucketResult>");
        QTest::newRow("size overflow")
            << QByteArray("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</"
                          "Key><Size>18446744073709551616</Size></Contents></ListBucketResult>");
        QTest::newRow("key split across Contents")
            << QByteArray("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</"
                          "Size></Contents><Key>k</Key></ListBucketResult>");
        QTest::newRow("bad entity in key") << QByteArray(
            "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&bogus;</"
            "Key><Size>1</Size></Contents></ListBucketResult>");
        QTest::newRow("unterminated")
            << QByteArray("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</"
                          "Key><Size>1</Size>");
    }
    void listPageCorrupt() {
        QFETCH(QByteArray, xml);
        auto page =
            s3::parseListObjectsV2(std::string_view(xml.constData(), std::size_t(xml.size())));
        QVERIFY(!page.ok());
        QCOMPARE(page.error().code, Errc::Corrupt);
    }
    void errorCodes() {
        QCOMPARE(
            s3::errorCode(
                "<?xml "
                "version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message></Message></Error>"),
            std::string("NoSuchBucket"));
        QCOMPARE(s3::errorCode(""), std::string());
        QCOMPARE(s3::errorCode("<html>bad gateway</html>"), std::string());
    }
};

QTEST_GUILESS_MAIN(TestS3Unit)
#include "test_s3_unit.moc"
