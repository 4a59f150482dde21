// A second "kiosk" process for test_vm. libvirt's embedded driver binds a
// process to one root for good, so a test that restores under another kiosk's
// state directory needs another process. It also dies without destroying its
// VM, like a crashed kiosk, which the next open of the same root must reap.
//
//   vm_kiosk_helper restore STATE BOOTDIR SAVEFILE NAME UUID MEMMIB KERNEL INITRD DISKSOCK
//   SERIALSOCK vm_kiosk_helper reap STATE
//
// Prints key=value lines; exit status 0 on success.
#include "vm/vm.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace isr;

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: see source\n");
        return 2;
    }
    std::string command = argv[1];
    vm::HostConfig host;
    host.stateDir = argv[2];
    if (command == "restore") {
        if (argc != 12)
            return 2;
        host.bootDirs.push_back(argv[3]);
    }
    auto hv = vm::Hypervisor::open(host);
    if (!hv) {
        std::printf("error=%s\n", hv.error().describe().c_str());
        return 1;
    }
    std::printf("reaped=%d\naccel=%s\n", (*hv)->reapedAtOpen(),
                vm::acceleratorName((*hv)->accelerator()));
    if (command == "reap")
        return 0;
    if (command != "restore")
        return 2;

    vm::VmSpec spec;
    std::string save = argv[4];
    spec.name = argv[5];
    spec.uuid = argv[6];
    spec.memoryMiB = std::uint32_t(std::strtoul(argv[7], nullptr, 10));
    spec.kernelPath = argv[8];
    spec.initrdPath = argv[9];
    spec.diskSocketPath = argv[10];
    spec.serialSocketPath = argv[11];
    auto start = std::chrono::steady_clock::now();
    auto restored = (*hv)->restore(save, spec);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    if (!restored) {
        std::printf("error=%s\n", restored.error().describe().c_str());
        return 1;
    }
    std::printf("restore_ms=%lld\n", static_cast<long long>(ms));
    std::fflush(stdout);
    // Leave without destroying: the VM outlives this "kiosk".
    std::_Exit(0);
}
