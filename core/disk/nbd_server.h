#pragma once
// disk: the virtual disk QEMU attaches. An NBD server (fixed newstyle, simple
// replies) on a UNIX socket inside the kiosk process, serving a BlockDevice.
//
// Threading: each accepted connection gets one reader thread (parses
// requests, reads WRITE payloads, handles the handshake) and a few worker
// threads that call the BlockDevice and send replies (replies may be out of
// order, as NBD allows). So a BlockDevice MUST be safe to call from several
// threads at once; the server never calls it after stop() has returned.

#include "disk/block_device.h"
#include "util/result.h"

#include <cstdint>
#include <memory>
#include <string>

namespace isr::disk {

struct NbdServerOptions {
    // Absolute path of the UNIX socket. Its directory must exist and be
    // traversable (x) by the user QEMU runs as; the socket itself gets
    // socketMode (0660 by default: owner and group, so put QEMU's user in the
    // socket's group or use 0666 in a directory only that user can reach).
    // A stale socket at the path is replaced.
    std::string socketPath;
    unsigned socketMode = 0660;
    // If >= 0, the socket's group is set to this gid (e.g. the group of the
    // user libvirt runs QEMU as, like libvirt-qemu when the kiosk runs as
    // root), so 0660 is enough.
    long socketGroup = -1;
    // The export's name; clients asking for "" get it too (QEMU's
    // nbd+unix:///?socket=... URLs ask for "").
    std::string exportName = "isr";
    std::string description = "isr virtual disk";
    // Worker threads per connection (requests run concurrently, replies may
    // be out of order).
    int workersPerConnection = 4;
    // Bytes of WRITE payload buffered per connection before the reader stops
    // reading the socket (back-pressure).
    std::uint64_t maxQueuedBytes = 64u << 20;
};

struct NbdServerStats {
    std::uint64_t connections = 0; // accepted so far
    std::uint64_t requests = 0;
    std::uint64_t errors = 0; // requests answered with an error
    std::uint64_t bytesRead = 0;
    std::uint64_t bytesWritten = 0;
};

class NbdServer {
public:
    // Binds and listens (the socket is reachable when this returns), then
    // accepts connections on a background thread. `device` must outlive the
    // server (or stop() must be called before it dies).
    static Result<std::unique_ptr<NbdServer>> start(BlockDevice& device, NbdServerOptions options);
    ~NbdServer(); // calls stop()
    NbdServer(const NbdServer&) = delete;
    NbdServer& operator=(const NbdServer&) = delete;

    // Closes the listener and every connection (in-flight requests finish,
    // their replies may be lost), joins all threads, removes the socket file.
    // Idempotent; after it returns the device is never called again.
    void stop();

    const std::string& socketPath() const;
    // "nbd+unix:///?socket=<path>" for qemu-img, qemu-io, nbdinfo.
    std::string uri() const;
    NbdServerStats stats() const;
    // Number of connections currently open.
    int activeConnections() const;

    struct Impl;

private:
    explicit NbdServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace isr::disk
