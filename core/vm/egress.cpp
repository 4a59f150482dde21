// The guest network filter: an nftables table for QEMU's sockets. See
// egress.h for the rules and why they are in this order.
#include "vm/egress.h"

#include "util/log.h"
#include "util/process.h"
#include "vm/vm.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

namespace isr::vm {
namespace {

constexpr const char* kLog = "vm";

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

// Clears the bits of `addr` (len bytes) past `prefix`.
void maskHostBits(unsigned char* addr, std::size_t len, unsigned prefix) {
    for (std::size_t i = 0; i < len; ++i) {
        const unsigned bitsHere = prefix >= 8 * (i + 1) ? 8 : (prefix > 8 * i ? prefix - 8 * i : 0);
        addr[i] &= static_cast<unsigned char>(0xff00u >> bitsHere);
    }
}

IpNetwork networkOf(bool v6, const unsigned char* bytes, unsigned prefix) {
    unsigned char addr[16] = {};
    std::memcpy(addr, bytes, v6 ? 16 : 4);
    maskHostBits(addr, v6 ? 16 : 4, prefix);
    char text[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr, text, sizeof text);
    return IpNetwork{v6, std::string(text) + "/" + std::to_string(prefix)};
}

unsigned prefixOfMask(const unsigned char* mask, std::size_t len) {
    unsigned n = 0;
    for (std::size_t i = 0; i < len; ++i)
        for (int b = 7; b >= 0 && (mask[i] >> b) & 1; --b)
            ++n;
    return n;
}

// Ranges no guest needs: the kiosk's loopback and "this host", and the
// IPv4-mapped form of every IPv4 address (refused before the allow-list).
const char* const kNeverV4[] = {"127.0.0.0/8", "0.0.0.0/8"};
const char* const kNeverV6[] = {"::1/128", "::/128", "::ffff:0:0/96"};
// Private, shared, link-local and special-purpose ranges: a LAN, a carrier
// NAT, cloud metadata (169.254.169.254), multicast, reserved
// (refused after the allow-list).
const char* const kPrivateV4[] = {"10.0.0.0/8",     "172.16.0.0/12", "192.168.0.0/16",
                                  "169.254.0.0/16", "100.64.0.0/10", "192.0.0.0/24",
                                  "198.18.0.0/15",  "224.0.0.0/4",   "240.0.0.0/4"};
const char* const kPrivateV6[] = {"fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
                                  "64:ff9b:1::/48"};

std::string daddr(const IpNetwork& n) {
    return std::string(n.v6 ? "ip6" : "ip") + " daddr " + n.text;
}

Status writeScript(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text;
        if (!out.flush())
            return Error(Errc::Io, "writing " + tmp + ": " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        return Error(Errc::Io, "renaming " + tmp + ": " + std::strerror(errno));
    return {};
}

// nft from Debian's nftables, in /usr/sbin; PATH may lack it (a user's shell).
std::string nftProgram() {
    for (const char* p : {"/usr/sbin/nft", "/sbin/nft"})
        if (::access(p, X_OK) == 0)
            return p;
    return "nft";
}

// The store's addresses now. A name that does not resolve is logged, not an
// error: the store is then unreachable for the kiosk too.
std::vector<IpNetwork> resolveHosts(const std::vector<std::string>& hosts) {
    std::vector<IpNetwork> out;
    for (const std::string& host : hosts) {
        if (host.empty())
            continue;
        if (auto literal = parseIpNetwork(host); literal.ok()) {
            out.push_back(*literal);
            continue;
        }
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0) {
            ISR_LOG_WARN(kLog) << "guest network: cannot resolve the store host " << host << " ("
                               << ::gai_strerror(rc) << "); the guest is not kept from it";
            continue;
        }
        for (addrinfo* a = res; a; a = a->ai_next) {
            if (a->ai_family == AF_INET) {
                const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
                out.push_back(
                    networkOf(false, reinterpret_cast<const unsigned char*>(&sin->sin_addr), 32));
            } else if (a->ai_family == AF_INET6) {
                const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
                out.push_back(
                    networkOf(true, reinterpret_cast<const unsigned char*>(&sin6->sin6_addr), 128));
            }
        }
        ::freeaddrinfo(res);
    }
    return out;
}

void dedupe(std::vector<IpNetwork>& list) {
    std::set<std::string> seen;
    std::vector<IpNetwork> out;
    for (auto& n : list)
        if (seen.insert(n.text).second)
            out.push_back(std::move(n));
    list = std::move(out);
}

} // namespace

Result<IpNetwork> parseIpNetwork(std::string_view text) {
    const std::string t(trim(text));
    const auto slash = t.find('/');
    const std::string addrText = t.substr(0, slash);
    unsigned char bytes[16] = {};
    bool v6 = false;
    if (::inet_pton(AF_INET, addrText.c_str(), bytes) == 1) {
        v6 = false;
    } else if (::inet_pton(AF_INET6, addrText.c_str(), bytes) == 1) {
        v6 = true;
    } else {
        return Error(Errc::InvalidArgument,
                     "'" + t + "' is not an IP address or network (e.g. 10.1.0.0/16, fd12::/48)");
    }
    const unsigned maxPrefix = v6 ? 128 : 32;
    unsigned prefix = maxPrefix;
    if (slash != std::string::npos) {
        const std::string p = t.substr(slash + 1);
        if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos ||
            unsigned(std::stoul(p)) > maxPrefix)
            return Error(Errc::InvalidArgument,
                         "'" + t + "': the prefix length must be 0.." + std::to_string(maxPrefix));
        prefix = unsigned(std::stoul(p));
    }
    return networkOf(v6, bytes, prefix);
}

Result<std::vector<std::string>> parseNetworkList(std::string_view text) {
    std::vector<std::string> out;
    std::string item;
    auto flush = [&]() -> Status {
        if (item.empty())
            return {};
        ISR_TRY_ASSIGN(IpNetwork n, parseIpNetwork(item));
        out.push_back(std::move(n.text));
        item.clear();
        return {};
    };
    for (char c : text) {
        if (c == ',' || c == ' ' || c == '\t') {
            ISR_TRY_STATUS(flush());
        } else {
            item += c;
        }
    }
    ISR_TRY_STATUS(flush());
    return out;
}

std::string storeHostFromUrl(std::string_view url) {
    std::string_view rest;
    if (url.rfind("s3://", 0) == 0)
        rest = url.substr(5);
    else if (url.rfind("s3s://", 0) == 0)
        rest = url.substr(6);
    else
        return {};
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (const auto at = rest.rfind('@'); at != std::string_view::npos)
        rest = rest.substr(at + 1);
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        return close == std::string_view::npos ? std::string()
                                               : std::string(rest.substr(1, close - 1));
    }
    return std::string(rest.substr(0, rest.find(':')));
}

std::vector<IpNetwork> resolversFromResolvConf(std::string_view text) {
    std::vector<IpNetwork> out;
    std::istringstream in{std::string(text)};
    for (std::string line; std::getline(in, line);) {
        std::istringstream words(line);
        std::string key, value;
        if (!(words >> key >> value) || key != "nameserver")
            continue;
        value = value.substr(0, value.find('%')); // fe80::1%eth0
        if (auto n = parseIpNetwork(value); n.ok())
            out.push_back(*n);
    }
    dedupe(out);
    return out;
}

std::string egressRuleset(const EgressRules& rules) {
    std::ostringstream s;
    const std::string table = std::string("inet ") + kEgressTable;
    s << "# isr (core/vm/egress.cpp): where the guests' user-mode network (QEMU's\n"
         "# sockets, uid "
      << rules.uid
      << ") may go. Rewritten at every VM start; edits are lost.\n"
         "table "
      << table << "\ndelete table " << table << "\ntable " << table
      << " {\n"
         "\tchain refuse {\n"
         "\t\tcounter meta l4proto tcp reject with tcp reset\n"
         "\t\tcounter reject with icmpx type admin-prohibited\n"
         "\t}\n"
         "\tchain guest {\n";
    s << "\t\t# 1. DNS to the kiosk's resolvers (slirp's 10.0.2.3 forwards there)\n";
    for (const auto& r : rules.resolvers)
        s << "\t\t" << daddr(r) << " meta l4proto { tcp, udp } th dport 53 accept\n";
    s << "\t\t# 2. the kiosk itself (10.0.2.2 is its loopback), broadcast, multicast\n"
         "\t\tfib daddr type { local, broadcast, multicast } jump refuse\n";
    for (const char* n : kNeverV4)
        s << "\t\tip daddr " << n << " jump refuse\n";
    for (const char* n : kNeverV6)
        s << "\t\tip6 daddr " << n << " jump refuse\n";
    s << "\t\t# 3. the parcel store\n";
    for (const auto& n : rules.storeAddresses)
        s << "\t\t" << daddr(n) << " jump refuse\n";
    s << "\t\t# 4. networks the operator allows (guest_allowed_networks)\n";
    for (const auto& n : rules.allowedNetworks)
        s << "\t\t" << daddr(n) << " accept\n";
    s << "\t\t# 5. private and special ranges, the kiosk's own subnets\n";
    for (const char* n : kPrivateV4)
        s << "\t\tip daddr " << n << " jump refuse\n";
    for (const char* n : kPrivateV6)
        s << "\t\tip6 daddr " << n << " jump refuse\n";
    for (const auto& n : rules.kioskNetworks)
        s << "\t\t" << daddr(n) << " jump refuse\n";
    s << "\t\t# 6. the internet: the base chain's policy (accept)\n"
         "\t}\n"
         // Only sockets of QEMU's uid enter `guest`. Not `meta skuid != uid
         // accept`: a packet without a socket (the TCP reset `refuse` sends
         // back) does not match that, would fall through and be refused
         // itself, and the guest's connect would hang instead of failing.
         "\tchain output {\n"
         "\t\ttype filter hook output priority filter; policy accept;\n"
         "\t\tmeta skuid "
      << rules.uid
      << " jump guest\n"
         "\t}\n"
         "}\n";
    return s.str();
}

std::vector<IpNetwork> kioskSubnets() {
    std::vector<IpNetwork> out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0)
        return out;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || !i->ifa_netmask || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            const auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
            const auto* m = reinterpret_cast<const sockaddr_in*>(i->ifa_netmask);
            const unsigned prefix =
                prefixOfMask(reinterpret_cast<const unsigned char*>(&m->sin_addr), 4);
            out.push_back(
                networkOf(false, reinterpret_cast<const unsigned char*>(&a->sin_addr), prefix));
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            const auto* a = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
            const auto* m = reinterpret_cast<const sockaddr_in6*>(i->ifa_netmask);
            if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr))
                continue; // fe80::/10 is refused as a whole
            const unsigned prefix =
                prefixOfMask(reinterpret_cast<const unsigned char*>(&m->sin6_addr), 16);
            out.push_back(
                networkOf(true, reinterpret_cast<const unsigned char*>(&a->sin6_addr), prefix));
        }
    }
    ::freeifaddrs(list);
    dedupe(out);
    return out;
}

Status installGuestEgress(uid_t uid, const GuestNetworkPolicy& policy,
                          const std::string& scriptPath) {
    EgressRules rules;
    rules.uid = uid;
    {
        std::ifstream in("/etc/resolv.conf");
        std::ostringstream text;
        text << in.rdbuf();
        rules.resolvers = resolversFromResolvConf(text.str());
    }
    if (!policy.mayReachStore) {
        rules.storeAddresses = resolveHosts(policy.storeHosts);
        dedupe(rules.storeAddresses);
    }
    for (const std::string& n : policy.allowedNetworks) {
        ISR_TRY_ASSIGN(IpNetwork net, parseIpNetwork(n));
        rules.allowedNetworks.push_back(std::move(net));
    }
    rules.kioskNetworks = kioskSubnets();
    ISR_TRY_STATUS(writeScript(scriptPath, egressRuleset(rules)));
    auto run = runProgram({nftProgram(), "-f", scriptPath});
    if (!run.ok())
        return Error(Errc::Unsupported,
                     "cannot run nft (install the nftables package): " + run.error().message);
    if (run->exitCode != 0)
        return Error(Errc::Unsupported, "nft refused the guest network rules (" + scriptPath +
                                            "): " + std::string(trim(run->err)));
    ISR_LOG_INFO(kLog) << "guest network: filter loaded (table inet " << kEgressTable << ", "
                       << rules.storeAddresses.size() << " store address(es) refused, "
                       << rules.allowedNetworks.size() << " allowed network(s))";
    return {};
}

bool guestEgressInstalled() {
    auto run = runProgram({nftProgram(), "list", "table", "inet", kEgressTable});
    return run.ok() && run->exitCode == 0;
}

Status removeGuestEgress() {
    if (!guestEgressInstalled())
        return {};
    auto run = runProgram({nftProgram(), "delete", "table", "inet", kEgressTable});
    if (!run.ok())
        return run.error();
    if (run->exitCode != 0)
        return Error(Errc::Io, "nft delete table inet " + std::string(kEgressTable) + ": " +
                                   std::string(trim(run->err)));
    return {};
}

} // namespace isr::vm
