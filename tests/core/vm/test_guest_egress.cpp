// The guest network filter's pieces without a VM (core/vm/egress.h): the
// network and URL parsing, the resolvers, and the nft script's rules and
// their order; as root with nft, that nft accepts the script (`nft -c`).
#include "testsupport.h"
#include "util/process.h"
#include "vm/egress.h"
#include "vm/vm.h"

#include <QTest>
#include <fstream>
#include <unistd.h>

using namespace isr;
using namespace isr::test;

class TestGuestEgress : public QObject {
    Q_OBJECT

    static vm::IpNetwork net(const char* text) {
        auto n = vm::parseIpNetwork(text);
        return n.ok() ? *n : vm::IpNetwork{};
    }

    static vm::EgressRules sampleRules() {
        vm::EgressRules r;
        r.uid = 4242;
        r.resolvers = {net("10.255.255.53"), net("fd00::53")};
        r.storeAddresses = {net("203.0.113.80")};
        r.allowedNetworks = {net("10.20.0.0/16")};
        r.kioskNetworks = {net("192.0.2.0/24")};
        return r;
    }

private slots:
    void networksAreCanonical() {
        QCOMPARE(net("10.20.1.7/16").text, std::string("10.20.0.0/16"));
        QVERIFY(!net("10.20.1.7/16").v6);
        QCOMPARE(net("192.0.2.9").text, std::string("192.0.2.9/32"));
        QCOMPARE(net(" fd12:3456::1/48 ").text, std::string("fd12:3456::/48"));
        QVERIFY(net("fd12::/48").v6);
        QCOMPARE(net("::1").text, std::string("::1/128"));
        QCOMPARE(net("10.1.2.3/0").text, std::string("0.0.0.0/0"));
        QCOMPARE(net("10.1.2.3/9").text, std::string("10.0.0.0/9"));
        for (const char* bad : {"", "printer.lan", "10.0.0.0/33", "fd00::/129", "10.0.0.0/",
                                "10.0.0.0/8x", "10.0.0/8", "10.0.0.0/-1"}) {
            auto n = vm::parseIpNetwork(bad);
            QVERIFY2(!n.ok(), bad);
            QCOMPARE(n.error().code, Errc::InvalidArgument);
        }
        auto list = vm::parseNetworkList("10.20.1.7/16, fd12::1/48  192.0.2.9,");
        QVERIFY(list.ok());
        QCOMPARE(*list, (std::vector<std::string>{"10.20.0.0/16", "fd12::/48", "192.0.2.9/32"}));
        QVERIFY(vm::parseNetworkList("").ok() && vm::parseNetworkList("")->empty());
        QVERIFY(!vm::parseNetworkList("10.0.0.0/8, nope").ok());
    }

    void storeHosts() {
        QCOMPARE(vm::storeHostFromUrl("s3://rgw.example.org:7480/bucket/prefix"),
                 std::string("rgw.example.org"));
        QCOMPARE(vm::storeHostFromUrl("s3s://s3.example.org/b"), std::string("s3.example.org"));
        QCOMPARE(vm::storeHostFromUrl("s3://10.1.2.3:9000"), std::string("10.1.2.3"));
        QCOMPARE(vm::storeHostFromUrl("s3s://[fd00::7]:443/b"), std::string("fd00::7"));
        QCOMPARE(vm::storeHostFromUrl("file:///srv/isr"), std::string());
        QCOMPARE(vm::storeHostFromUrl("/srv/isr"), std::string());
    }

    void resolvers() {
        const auto r = vm::resolversFromResolvConf("# comment\n"
                                                   "search example.org\n"
                                                   "nameserver 127.0.0.53\n"
                                                   "nameserver   fe80::1%eth0\n"
                                                   "nameserver 127.0.0.53\n"
                                                   "nameserver bogus\n"
                                                   "options edns0\n");
        QCOMPARE(r.size(), std::size_t(2));
        QCOMPARE(r[0].text, std::string("127.0.0.53/32"));
        QCOMPARE(r[1].text, std::string("fe80::1/128"));
    }

    // Only QEMU's uid enters the rules; the order is the policy (egress.h):
    // DNS, then the kiosk itself, then the store, then the allow-list, then
    // private ranges and the kiosk's subnets; the internet is the default.
    void rulesetOrder() {
        const std::string s = vm::egressRuleset(sampleRules());
        QVERIFY(s.find("meta skuid 4242 jump guest") != std::string::npos);
        // A sockless packet (our own TCP reset) must not enter the rules.
        QVERIFY(s.find("skuid !=") == std::string::npos);
        QVERIFY(s.find("policy accept") != std::string::npos);
        auto at = [&](const std::string& needle) {
            const auto p = s.find(needle);
            if (p == std::string::npos)
                qWarning("missing: %s", needle.c_str());
            return p;
        };
        const auto dns =
            at("ip daddr 10.255.255.53/32 meta l4proto { tcp, udp } th dport 53 accept");
        const auto dns6 = at("ip6 daddr fd00::53/128 meta l4proto { tcp, udp } th dport 53 accept");
        const auto local = at("fib daddr type { local, broadcast, multicast } jump refuse");
        const auto loop = at("ip daddr 127.0.0.0/8 jump refuse");
        const auto loop6 = at("ip6 daddr ::1/128 jump refuse");
        const auto store = at("ip daddr 203.0.113.80/32 jump refuse");
        const auto allowed = at("ip daddr 10.20.0.0/16 accept");
        const auto priv = at("ip daddr 10.0.0.0/8 jump refuse");
        const auto ula = at("ip6 daddr fc00::/7 jump refuse");
        const auto meta = at("ip daddr 169.254.0.0/16 jump refuse");
        const auto lan = at("ip daddr 192.0.2.0/24 jump refuse");
        for (auto p : {dns, dns6, local, loop, loop6, store, allowed, priv, ula, meta, lan})
            QVERIFY(p != std::string::npos);
        QVERIFY(dns < local && dns6 < local);
        QVERIFY(local < store && loop < allowed && loop6 < allowed);
        QVERIFY(store < allowed);
        QVERIFY(allowed < priv && allowed < ula && allowed < lan && allowed < meta);
        QVERIFY(s.find("reject with tcp reset") != std::string::npos);
    }

    // The kernel's nf_tables accepts the script (checked, not loaded).
    void nftAcceptsTheScript() {
        if (::geteuid() != 0)
            QSKIP("nft -c needs root (CAP_NET_ADMIN)");
        if (::access("/usr/sbin/nft", X_OK) != 0)
            QSKIP("no /usr/sbin/nft (package nftables)");
        TempDir dir;
        const std::string path = dir.file("egress.nft");
        std::ofstream(path) << vm::egressRuleset(sampleRules());
        auto r = runProgram({"/usr/sbin/nft", "-c", "-f", path});
        QVERIFY(r.ok());
        QVERIFY2(r->exitCode == 0, r->err.c_str());
    }
};

QTEST_GUILESS_MAIN(TestGuestEgress)
#include "test_guest_egress.moc"
