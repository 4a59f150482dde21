#pragma once
// core/vm internal: what the guest's network may reach (issue #16 item 4).
// See README "Guest network".
//
// The guest's NIC is QEMU's user-mode network (slirp): every connection the
// guest makes is a socket QEMU opens on the kiosk, and 10.0.2.2 is the
// kiosk's own loopback. As root, QEMU runs as isr-qemu (confinement.h), so
// its sockets carry that uid: an nftables table of our own, `inet
// isr_guest_egress`, with an output hook matching `meta skuid isr-qemu`
// decides where they may go. In order:
//   1. DNS (udp/tcp 53) to the resolvers in /etc/resolv.conf: accepted
//      (slirp's 10.0.2.3 forwards to them, often a loopback or LAN address);
//   2. the kiosk itself (`fib daddr type local`: every address of the kiosk,
//      so 10.0.2.2 -> 127.0.0.1 too), 127/8, ::1, 0/8, ::, v4-mapped,
//      broadcast and multicast: refused;
//   3. the store's addresses (its host name resolved now): refused unless
//      the policy lets the guest reach the store;
//   4. the operator's allowed networks (kiosk.conf guest_allowed_networks):
//      accepted;
//   5. private and special ranges (10/8, 172.16/12, 192.168/16,
//      169.254/16, 100.64/10, 192.0.0/24, 198.18/15, 224/4, 240/4, fc00::/7,
//      fe80::/10, fec0::/10, ff00::/8, 64:ff9b:1::/48) and the kiosk's own
//      subnets (its LAN, even when public): refused;
//   6. everything else (the internet): accepted.
// "Refused" is a reject (TCP reset, else ICMP administratively prohibited),
// not a silent drop, so the guest fails at once.
//
// The table is replaced in one nft transaction at Hypervisor::open and
// before every boot and restore (resolv.conf, the kiosk's addresses and the
// store's addresses may have changed); it stays when the process exits, so
// a QEMU left behind stays filtered. It only matches isr-qemu's sockets:
// nothing else on the kiosk is affected.
//
// Free functions, no shared state; thread-safe (two processes installing at
// once is fine: each transaction is atomic, the last one wins).

#include "util/result.h"

#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace isr::vm {

struct GuestNetworkPolicy;

inline constexpr const char* kEgressTable = "isr_guest_egress"; // family inet

// An address or a network in CIDR notation, canonical: host bits cleared,
// "10.1.0.0/16", "fd12::/48"; a bare address gets /32 or /128.
struct IpNetwork {
    bool v6 = false;
    std::string text; // canonical "address/prefix"
};
// InvalidArgument naming the text when it is neither.
Result<IpNetwork> parseIpNetwork(std::string_view text);
// (parseNetworkList and storeHostFromUrl are in vm.h: the session uses them.)

// The `nameserver` addresses of a resolv.conf text (scoped IPv6 ones without
// their %zone).
std::vector<IpNetwork> resolversFromResolvConf(std::string_view text);

// Everything the rules are made of, gathered by installGuestEgress.
struct EgressRules {
    uid_t uid = 0;                         // QEMU's account
    std::vector<IpNetwork> resolvers;      // DNS allowed to these
    std::vector<IpNetwork> storeAddresses; // refused (empty when the guest may reach the store)
    std::vector<IpNetwork> allowedNetworks;
    std::vector<IpNetwork> kioskNetworks; // the kiosk's own subnets
};
// The nft script that (re)creates the table atomically (`nft -f`).
std::string egressRuleset(const EgressRules& rules);

// The kiosk's own subnets from getifaddrs (not loopback, not link-local).
std::vector<IpNetwork> kioskSubnets();

// Gathers the rules for `uid` and `policy` and loads them with nft; the
// script is also written to `scriptPath` (for an operator to read). Errors:
// Unsupported when nft is missing or refuses (e.g. a kernel without
// nf_tables), naming what failed.
Status installGuestEgress(uid_t uid, const GuestNetworkPolicy& policy,
                          const std::string& scriptPath);
// Deletes the table (tests: the "policy off" control). Ok if it was absent.
Status removeGuestEgress();
// Whether the table is loaded now.
bool guestEgressInstalled();

} // namespace isr::vm
