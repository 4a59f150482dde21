#pragma once
// core/vm internal: this process's libvirt, shared by every Hypervisor.
//
// Owns the process-wide state libvirt's embedded driver needs and nothing
// else: the error handler and the errno-like mapping of libvirt's errors,
// the default event loop and its thread (registered before the first
// connection, run until exit), and the one embedded root a process may bind
// (libvirt 9.0: qemu:///embed?root= is fixed for the life of the process),
// with the qemu.conf written into it. Thread-safe: every function may be
// called from any thread.

#include "util/result.h"
#include "vm/confinement.h"

#include <optional>
#include <string>
#include <string_view>

namespace isr::vm {

// libvirt's log lines (its file output, one line at a time) reduced to what
// an operator needs: warnings and errors, without the errors that are no
// errors for isr (lookups of absent domains, host probes that fail in
// containers). Returns the text to log (the part after the level) or
// nothing. Keeps state across lines: a message's continuation lines follow
// its first line's fate. Exposed for tests.
class LibvirtLogFilter {
public:
    std::optional<std::string> feed(std::string_view line);

private:
    bool keeping_ = false;
};

// libvirt's last error on this thread as a typed Error "<what>: <message>"
// (NotFound, Unsupported, InvalidArgument, AccessDenied, Io, Transient,
// NoSpace for a full save target, else Internal), and resets it.
Error libvirtError(std::string_view what);

// Registers libvirt's default event loop and starts its thread, once per
// process; later calls return the first call's outcome.
Status ensureEventLoop();

// Binds this process to `root` for the embedded driver: Unsupported if an
// earlier call bound another one.
Status bindEmbeddedRoot(const std::string& root);

// Writes <root>/etc/qemu.conf, where the embedded driver reads it. As root,
// `account` is who QEMU and swtpm run as (qemuAccount(); required).
Status writeQemuConf(const std::string& root, const std::optional<QemuAccount>& account);

} // namespace isr::vm
