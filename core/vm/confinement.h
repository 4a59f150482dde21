#pragma once
// core/vm internal: who QEMU and swtpm run as when this process is root, and
// the narrow access they get to the kiosk's files. See README "Confinement".
//
// A root kiosk (and root isrctl, the tests) must not hand a QEMU escape root:
// libvirt runs QEMU as the dedicated account isr-qemu (qemu.conf user/group)
// and swtpm as tss (the owner of Debian's swtpm local CA). Everything they
// open by path must be reachable by that account and by nobody else: the
// directories from the kiosk's state directory down to a socket or NVRAM
// get group isr-qemu with group bits --x (pass through, never list), the
// NBD socket group rw. Not root: nullopt, QEMU runs as the calling user
// (an unprivileged libvirt cannot switch uid).
//
// Free functions, no shared state; thread-safe.

#include "util/result.h"

#include <optional>
#include <string>
#include <sys/types.h>

namespace isr::vm {

inline constexpr const char* kQemuAccountName = "isr-qemu";

struct QemuAccount {
    uid_t uid = 0;         // isr-qemu
    gid_t gid = 0;         // isr-qemu's group: QEMU's and swtpm's primary group
    std::string swtpmUser; // "tss" when it exists (swtpm-tools), else isr-qemu
    uid_t swtpmUid = 0;    //
};

// The account QEMU runs as: nullopt when this process is not root;
// Unsupported naming packaging/install-deps.sh when root and isr-qemu is
// missing (QEMU never falls back to root).
Result<std::optional<QemuAccount>> qemuAccount();

// Lets group `gid` pass through `dir` (ours, a real directory): group =
// gid, group bits exactly --x; owner and other bits unchanged.
// AccessDenied for a directory that is not ours.
Status grantTraverse(const std::string& dir, gid_t gid);

// grantTraverse on every directory from `top` (inclusive) down to the
// parent of `path` (which must be below `top`), then `path` itself gets
// group gid and group bits `groupBits` (e.g. S_IRGRP|S_IWGRP for a socket
// QEMU connects to).
Status grantPathBelow(const std::string& top, const std::string& path, gid_t gid, mode_t groupBits);

// Whether `account` can reach `path` and open it with `mode` (R_OK, W_OK),
// judged from the owner/group/other bits of every directory on the way
// (after resolving symlinks; ACLs are not read). On false, `why` names the
// component in the way.
bool accountCanAccess(const QemuAccount& account, const std::string& path, int mode,
                      std::string* why);

// Hands a parcel's TPM state (<swtpm storage>/<uuid>, filled by the session
// as root) to swtpm's account as libvirt would have made it: <uuid> group
// gid mode 0710, tpm2/ and its files owned by swtpmUid, 0700/0600.
Status handTpmStateToSwtpm(const QemuAccount& account, const std::string& uuidDir);

} // namespace isr::vm
