// What the guest's network reaches, tried from inside the guest (issue #16
// item 4). As root, QEMU runs as isr-qemu and the Hypervisor loads the
// guest network filter (core/vm/egress.h). This process serves HTTP on every
// address of this host; the demo guest configures its user-mode NIC over
// its serial shell and connects (busybox nc) to 10.0.2.2 and fec0::2
// (slirp's names for this host's 127.0.0.1 and ::1), to this host's own
// LAN addresses (IPv4 and IPv6, when it has them) and to another host on a
// private LAN (a network namespace behind a veth pair, 10.213.N.2, when
// `ip netns` works): all refused at once, and nothing reaches the servers.
// Control: with the table deleted, the same connections from the same
// running guest arrive, so the filter is what stopped them. A filter that
// cannot be loaded makes Hypervisor::open fail unless allowUnfiltered.
// (The store's addresses, the other ranges and the rules' order are
// checked in test_guest_egress.)
//
// Skips unless root, with nft, QEMU and libvirt's QEMU driver. Runs alone
// (RUN_SERIAL): the control deletes the machine-wide table that a VM boot in
// another test would load again (another test run on the same machine can
// still do that: the control then deletes it again and retries).
#include "testsupport.h"
#include "vm/egress.h"
#include "vm/vm.h"
#include "vmguest.h"

#include <QTest>
#include <arpa/inet.h>
#include <atomic>
#include <fcntl.h>
#include <filesystem>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kMarker = "isr-host-reached";

// A tiny HTTP server on [::]:<port>, dual-stack (every IPv4 and IPv6
// address of this host, loopback included; IPv4 only when the host has no
// IPv6), answering kMarker; counts the requests it answered.
class MarkerServer {
public:
    MarkerServer() {
        fd_ = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ >= 0) {
            int off = 0, one = 1;
            ::setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
            ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            sockaddr_in6 addr{};
            addr.sin6_family = AF_INET6;
            addr.sin6_addr = in6addr_any;
            if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                ::listen(fd_, 16) == 0) {
                socklen_t len = sizeof addr;
                ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
                port_ = ntohs(addr.sin6_port);
                ipv6_ = true;
            } else {
                ::close(fd_);
                fd_ = -1;
            }
        }
        if (fd_ < 0) {
            fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int one = 1;
            ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            sockaddr_in addr{};
            addr.sin_family = AF_INET;
            addr.sin_addr.s_addr = htonl(INADDR_ANY);
            if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
                ::listen(fd_, 16) != 0)
                return;
            socklen_t len = sizeof addr;
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
            port_ = ntohs(addr.sin_port);
        }
        thread_ = std::thread([this] { serve(); });
    }
    ~MarkerServer() {
        stop_ = true;
        if (thread_.joinable())
            thread_.join();
        if (fd_ >= 0)
            ::close(fd_);
    }
    int port() const { return port_; }
    bool ipv6() const { return ipv6_; }
    int answered() const { return answered_; }

private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0)
                continue;
            const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0)
                continue;
            // Read the request's head (or whatever comes within a second).
            std::string request;
            char buf[1024];
            while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
                pollfd q{c, POLLIN, 0};
                if (::poll(&q, 1, 1000) <= 0)
                    break;
                const ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0)
                    break;
                request.append(buf, std::size_t(n));
            }
            const std::string body = std::string(kMarker) + "\n";
            const std::string reply =
                "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n\r\n" + body;
            if (::write(c, reply.data(), reply.size()) == ssize_t(reply.size()))
                ++answered_;
            ::close(c);
        }
    }
    int fd_ = -1;
    int port_ = 0;
    bool ipv6_ = false;
    std::atomic<bool> stop_{false};
    std::atomic<int> answered_{0};
    std::thread thread_;
};

// This host's first address of `family` that is not loopback or link-local
// (its LAN address), or "".
std::string lanAddress(int family) {
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0)
        return {};
    std::string found;
    for (ifaddrs* i = list; i && found.empty(); i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != family || (i->ifa_flags & IFF_LOOPBACK) ||
            !(i->ifa_flags & IFF_UP))
            continue;
        char text[INET6_ADDRSTRLEN] = {};
        if (family == AF_INET) {
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text,
                        sizeof text);
        } else {
            const auto* a = &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr;
            if (IN6_IS_ADDR_LINKLOCAL(a))
                continue;
            ::inet_ntop(AF_INET6, a, text, sizeof text);
        }
        found = text;
    }
    ::freeifaddrs(list);
    return found;
}

// A host on the kiosk's LAN that is not the kiosk: a network namespace
// joined to ours by a veth pair (10.213.N.1 on our side, 10.213.N.2 in
// there) with a MarkerServer inside. Removed at destruction; one a crashed
// run left behind (its pid gone) is removed by the next create().
class LanPeer {
public:
    static std::unique_ptr<LanPeer> create(std::string* why) {
        removeStale();
        std::unique_ptr<LanPeer> peer(new LanPeer);
        const std::string id = std::to_string(::getpid());
        peer->ns_ = "isrgn" + id;
        peer->hostDev_ = "gnh" + id;
        const QString ns = QString::fromStdString(peer->ns_),
                      host = QString::fromStdString(peer->hostDev_),
                      there = QString::fromStdString("gnn" + id);
        const QString net = QString("10.213.%1.").arg(::getpid() % 250);
        peer->address = (net + "2").toStdString();
        for (const QStringList& args : std::vector<QStringList>{
                 {"netns", "add", ns},
                 {"link", "add", host, "type", "veth", "peer", "name", there, "netns", ns},
                 {"addr", "add", net + "1/30", "dev", host},
                 {"link", "set", host, "up"},
                 {"-n", ns, "link", "set", "lo", "up"},
                 {"-n", ns, "addr", "add", net + "2/30", "dev", there},
                 {"-n", ns, "link", "set", there, "up"}}) {
            auto r = runProcess("ip", args);
            if (r.exitCode != 0) {
                *why = "ip " + args.join(' ').toStdString() + ": " + r.err;
                return nullptr;
            }
        }
        // The server's socket is made inside the namespace (setns applies
        // to the calling thread only, so a thread of its own).
        const int nsFd = ::open(("/run/netns/" + peer->ns_).c_str(), O_RDONLY | O_CLOEXEC);
        std::thread([&] {
            if (nsFd >= 0 && ::setns(nsFd, CLONE_NEWNET) == 0)
                peer->server_ = std::make_unique<MarkerServer>();
        }).join();
        if (nsFd >= 0)
            ::close(nsFd);
        if (!peer->server_ || peer->server_->port() <= 0) {
            *why = "cannot listen inside network namespace " + peer->ns_;
            return nullptr;
        }
        return peer;
    }
    ~LanPeer() {
        server_.reset();
        runProcess("ip", {"link", "del", QString::fromStdString(hostDev_)});
        runProcess("ip", {"netns", "del", QString::fromStdString(ns_)});
    }
    MarkerServer& server() { return *server_; }
    std::string address;

private:
    LanPeer() = default;
    static void removeStale() {
        std::istringstream list(runProcess("ip", {"netns", "list"}).out);
        for (std::string line; std::getline(list, line);) {
            const std::string name = line.substr(0, line.find(' '));
            if (name.rfind("isrgn", 0) != 0 || name.size() == 5 ||
                name.find_first_not_of("0123456789", 5) != std::string::npos)
                continue;
            const std::string pid = name.substr(5);
            if (::access(("/proc/" + pid).c_str(), F_OK) == 0)
                continue;
            runProcess("ip", {"link", "del", QString::fromStdString("gnh" + pid)});
            runProcess("ip", {"netns", "del", QString::fromStdString(name)});
        }
    }
    std::string ns_, hostDev_;
    std::unique_ptr<MarkerServer> server_;
};

} // namespace

class TestGuestNetwork : public QObject {
    Q_OBJECT

    TempDir tmp_;
    GuestImage guest_;
    std::string state_;
    std::unique_ptr<LanPeer> peer_;

private slots:
    void initTestCase() {
        if (::geteuid() != 0)
            skipAll("not root: QEMU runs as the calling user and the guest network cannot be "
                    "filtered (README, security model)");
        if (::access("/usr/sbin/nft", X_OK) != 0)
            skipAll("no /usr/sbin/nft (package nftables)");
        requirePrograms({"qemu-system-x86_64", "qemu-nbd"});
        if (!std::filesystem::exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/"
                                     "libvirt_driver_qemu.so"))
            skipAll("libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)");
        if (!::getpwnam("isr-qemu"))
            skipAll("no isr-qemu account (run packaging/install-deps.sh)");
        guest_ = requireGuest();
        state_ = tmp_.file("state");
        std::filesystem::create_directories(state_);
        std::filesystem::copy_file(guest_.homeImage, tmp_.file("home.ext4"));
        std::string why;
        if (haveProgram("ip"))
            peer_ = LanPeer::create(&why);
        else
            why = "no ip (iproute2)";
        if (!peer_)
            qInfo("no other host on a LAN to try: %s", why.c_str());
    }

    void cleanupTestCase() { peer_.reset(); }

    void guestReachesNeitherTheKioskNorItsLan() {
        MarkerServer server;
        QVERIFY(server.port() > 0);
        vm::HostConfig host;
        host.stateDir = state_;
        host.bootDirs = {guest_.dir};
        auto hv = vm::Hypervisor::open(host);
        QVERIFY2(hv.ok(), hv.ok() ? "" : hv.error().describe().c_str());
        vm::VmSpec spec = test::demoGuestSpec(guest_, "isr-guest-net", state_);
        auto nbd = NbdServer::start(tmp_.file("home.ext4"), spec.diskSocketPath);
        QVERIFY2(nbd.ok(), nbd.ok() ? "" : nbd.error().describe().c_str());

        auto booted = (*hv)->boot(spec);
        QVERIFY2(booted.ok(), booted.ok() ? "" : booted.error().describe().c_str());
        QVERIFY((*hv)->guestNetworkFiltered());
        QVERIFY(vm::guestEgressInstalled());

        auto console = SerialConsole::connect(spec.serialSocketPath, 30s);
        QVERIFY2(console.ok(), console.ok() ? "" : console.error().describe().c_str());
        auto& shell = **console;
        auto ready = shell.waitForShell(120s);
        QVERIFY2(ready.ok(), ready.ok() ? "" : ready.error().describe().c_str());
        // slirp's defaults: the guest is 10.0.2.15/24, the gateway 10.0.2.2.
        auto up = shell.run("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && "
                            "ip route add default via 10.0.2.2",
                            30s);
        QVERIFY2(up.ok() && up->exitStatus == 0, up.ok() ? up->text.c_str() : "no answer");

        // The guest's view of the kiosk: slirp's gateway 10.0.2.2 is the
        // kiosk's 127.0.0.1 (and fec0::2 its ::1); the kiosk's own LAN
        // addresses; another host on the kiosk's LAN (a private address).
        struct Target {
            std::string address;
            MarkerServer* server;
        };
        std::vector<Target> targets{{"10.0.2.2", &server}};
        if (const std::string lan = lanAddress(AF_INET); !lan.empty())
            targets.push_back({lan, &server});
        else
            qInfo("this host has no non-loopback IPv4 address");
        if (server.ipv6()) {
            // No duplicate address detection: the address is usable at once.
            auto up6 = shell.run("echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad && "
                                 "ip -6 addr add fec0::15/64 dev eth0 && "
                                 "ip -6 route add default via fec0::2",
                                 30s);
            if (up6.ok() && up6->exitStatus == 0) {
                targets.push_back({"fec0::2", &server});
                if (const std::string lan6 = lanAddress(AF_INET6); !lan6.empty())
                    targets.push_back({lan6, &server});
            } else {
                qInfo("the guest has no IPv6: only IPv4 is tried (%s)",
                      up6.ok() ? up6->text.c_str() : "no answer");
            }
        }
        if (peer_)
            targets.push_back({peer_->address, &peer_->server()});
        // busybox nc, not wget: the static busybox's wget crashes in this
        // guest (no NSS files), nc takes the numeric address as it is.
        auto fetch = [&](const Target& target) {
            return shell.run("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 20 nc " +
                                 target.address + " " + std::to_string(target.server->port()) +
                                 " 2>&1",
                             60s);
        };
        auto answered = [&] {
            return server.answered() + (peer_ ? peer_->server().answered() : 0);
        };

        // The filter is loaded: refused at once (a TCP reset, not a timeout).
        for (const auto& target : targets) {
            auto r = fetch(target);
            QVERIFY2(r.ok(), r.ok() ? "" : r.error().describe().c_str());
            qInfo("with the filter, %s: status %d, %s", target.address.c_str(), r->exitStatus,
                  r->text.c_str());
            QVERIFY2(r->exitStatus != 0, target.address.c_str());
            QVERIFY2(r->text.find(kMarker) == std::string::npos, r->text.c_str());
            QVERIFY2(r->text.find("refused") != std::string::npos, r->text.c_str());
        }
        QCOMPARE(answered(), 0);

        // Control: without the table the same guest gets through. A VM
        // started meanwhile by another process on this machine (another
        // test run) loads the table again: then delete it and try again.
        for (const auto& target : targets) {
            Result<SerialConsole::Output> r = Error(Errc::Internal, "not tried");
            for (int attempt = 0; attempt < 3; ++attempt) {
                auto removed = vm::removeGuestEgress();
                QVERIFY2(removed.ok(), removed.ok() ? "" : removed.error().describe().c_str());
                r = fetch(target);
                if (!r.ok() || r->exitStatus == 0 || !vm::guestEgressInstalled())
                    break;
                qInfo("another process loaded the table again during the control; again");
            }
            QVERIFY2(r.ok(), r.ok() ? "" : r.error().describe().c_str());
            qInfo("without the filter, %s: status %d, %s", target.address.c_str(), r->exitStatus,
                  r->text.c_str());
            QVERIFY2(r->exitStatus == 0 && r->text.find(kMarker) != std::string::npos,
                     r->text.c_str());
        }
        QCOMPARE(answered(), int(targets.size()));
        QVERIFY(booted->destroy().ok());
    }

    // A filter that cannot be loaded stops the hypervisor (and so the
    // kiosk) unless the configuration accepts an unfiltered guest; a bad
    // allowed network is the caller's error. The failure is made real by
    // a directory where the script file goes.
    void unloadableFilterStopsVms() {
        vm::HostConfig host;
        host.stateDir = state_;
        host.bootDirs = {guest_.dir};
        auto root = vm::embeddedRootFor(state_);
        QVERIFY(root.ok());
        const std::string script = *root + "/etc/guest-egress.nft";
        std::filesystem::remove(script);
        std::filesystem::create_directories(script);

        auto refused = vm::Hypervisor::open(host);
        QVERIFY(!refused.ok());
        QCOMPARE(refused.error().code, Errc::Unsupported);
        qInfo("%s", refused.error().message.c_str());
        QVERIFY(refused.error().message.find("allow_unfiltered_guest_network") !=
                std::string::npos);

        host.guestNetwork.allowUnfiltered = true;
        auto accepted = vm::Hypervisor::open(host);
        QVERIFY2(accepted.ok(), accepted.ok() ? "" : accepted.error().describe().c_str());
        QVERIFY(!(*accepted)->guestNetworkFiltered());
        accepted->reset();

        std::filesystem::remove(script);
        host.guestNetwork.allowUnfiltered = false;
        host.guestNetwork.allowedNetworks = {"printer.lan"};
        auto bad = vm::Hypervisor::open(host);
        QVERIFY(!bad.ok());
        QCOMPARE(bad.error().code, Errc::InvalidArgument);

        host.guestNetwork.allowedNetworks = {"10.20.0.0/16"};
        auto good = vm::Hypervisor::open(host);
        QVERIFY2(good.ok(), good.ok() ? "" : good.error().describe().c_str());
        QVERIFY((*good)->guestNetworkFiltered());
    }
};

QTEST_GUILESS_MAIN(TestGuestNetwork)
#include "test_guest_network.moc"
