#pragma once
// Helpers for tests that run the demo guest (resources/guest/build-guest.sh):
// building/locating it, serving its disk with qemu-nbd on a UNIX socket, and
// talking to its serial console. No Qt in the interfaces; plain POSIX inside.

#include "store/store.h"
#include "util/result.h"
#include "vm/vm.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace isr::test {

struct GuestImage {
    std::string dir;
    std::string kernel;
    std::string initrd;
    std::string homeImage; // pristine; copy it before serving it read-write
};

// Builds the guest into the cache (ISR_GUEST_DIR, else
// $XDG_CACHE_HOME/isr/guest, else ~/.cache/isr/guest) or reuses it when its
// inputs are unchanged. skipAll() if the kernel, busybox-static or mke2fs are
// missing.
GuestImage requireGuest();

// A fresh FileStore under `storeDir` (created; minimal KDF limits) with one
// account and one parcel imported from the guest's home image, booting the
// "demo-guest" profile with `memoryMiB` of RAM: version 1, never run.
Status createGuestParcel(const std::string& storeDir, const GuestImage& guest,
                         const std::string& user, const std::string& password,
                         const std::string& parcel, std::uint32_t memoryMiB);
// The same in an existing store of any backend (an S3 prefix, say): the
// store is initialised here, so it must be empty.
Status createGuestParcel(store::Store& store, const GuestImage& guest, const std::string& user,
                         const std::string& password, const std::string& parcel,
                         std::uint32_t memoryMiB);

// The demo guest as a directly booted VM named `name` (a fresh UUID, 256
// MiB): its kernel and initrd, its disk on `dir`/disk.sock and ttyS0 on
// `dir`/serial.sock, as test_vm_confinement and test_guest_network boot it.
vm::VmSpec demoGuestSpec(const GuestImage& guest, const std::string& name, const std::string& dir);

// The pid of the QEMU running domain `name` of the embedded driver under
// `stateDir` (the pid file libvirt keeps under its root), or -1.
pid_t qemuPidOf(const std::string& stateDir, const std::string& name);

// qemu-nbd serving a raw image on a UNIX socket (a real NBD server), killed
// at destruction.
class NbdServer {
public:
    static Result<std::unique_ptr<NbdServer>> start(const std::string& image,
                                                    const std::string& socketPath);
    ~NbdServer();
    NbdServer(const NbdServer&) = delete;
    NbdServer& operator=(const NbdServer&) = delete;
    const std::string& socketPath() const { return socket_; }
    // Stops the server and waits for it (the image is then safe to copy).
    void stop();

private:
    NbdServer() = default;
    int pid_ = -1;
    std::string socket_;
};

// The guest's ttyS0 shell on the UNIX socket QEMU listens on.
class SerialConsole {
public:
    struct Output {
        int exitStatus = -1;
        std::string text; // command output, "\r\n" turned into "\n"
    };

    // Connects, retrying until the socket accepts or the timeout passes.
    static Result<std::unique_ptr<SerialConsole>> connect(const std::string& socketPath,
                                                          std::chrono::milliseconds timeout);
    ~SerialConsole();
    SerialConsole(const SerialConsole&) = delete;
    SerialConsole& operator=(const SerialConsole&) = delete;

    // Runs a shell command in the guest and returns its output and status.
    // Markers around the output are built so the terminal's echo of the typed
    // line never matches them.
    Result<Output> run(const std::string& command, std::chrono::milliseconds timeout);
    // Retries `cat /run/ready` until the shell answers (the guest has
    // finished booting). It types: on a firmware parcel's first boot call
    // waitForText first.
    Status waitForShell(std::chrono::milliseconds timeout);
    // Reads without typing until the guest prints `marker` (e.g. getty's
    // "login:"), or `elsewhere` (called between reads, at least every
    // 200 ms) returns true. For a first boot through firmware: the console
    // is also the firmware's and the boot loader's, and a key typed before
    // Linux runs opens systemd-boot's menu (its timeout is 0) or OVMF's
    // setup pages, and the guest never boots. Transient with what the guest
    // printed last after `timeout`; Io if QEMU closed the socket.
    Status waitForText(const std::string& marker, std::chrono::milliseconds timeout,
                       const std::function<bool()>& elsewhere = {});
    // True once the peer closed the socket (QEMU went away).
    bool closedByPeer(std::chrono::milliseconds timeout);

private:
    explicit SerialConsole(int fd) : fd_(fd) {}
    Status sendAll(const std::string& data);
    // Waits up to 200 ms (less if `deadline` is nearer) for output and keeps
    // it; Io when QEMU closed the socket.
    Status receiveSome(std::chrono::steady_clock::time_point deadline);
    void received(const char* data, std::size_t n);
    // The last lines the guest printed, printable, for a failure message.
    std::string recentOutput() const;
    int fd_ = -1;
    unsigned next_ = 1;
    std::string buffer_;
    std::string tail_; // the last few KiB received, across commands
};

// The demo guest's counter and boot id (/run/counter holds "<n> <boot id>"),
// read over its serial console; counter -1 if the guest did not answer.
struct GuestCounter {
    long counter = -1;
    std::string bootId;
};
GuestCounter readCounter(SerialConsole& console, std::chrono::milliseconds timeout);

} // namespace isr::test
