// Why a VM stopped, read from the log libvirt keeps for its domain (see
// vm.h: VmStopReason). A transient domain that stopped is gone at once, so
// the "shutting down, reason=" line libvirt writes before dropping it is the
// only record left.
#include "vm/vm.h"

#include <algorithm>
#include <fstream>
#include <string>

namespace isr::vm {

const char* vmStopReasonName(VmStopReason reason) {
    switch (reason) {
    case VmStopReason::Unknown:
        return "unknown";
    case VmStopReason::GuestShutdown:
        return "guest shutdown";
    case VmStopReason::Crashed:
        return "crashed";
    case VmStopReason::Destroyed:
        return "destroyed";
    case VmStopReason::Saved:
        return "saved";
    case VmStopReason::Other:
        return "other";
    }
    return "other";
}

VmStopReason stopReasonFromLog(std::string_view text) {
    // libvirt (qemuProcessStop) writes "<time>: shutting down, reason=<r>"
    // with r one of virDomainShutoffReason's names; each start writes
    // "<time>: starting up libvirt version: ...".
    constexpr std::string_view kStop = "shutting down, reason=";
    auto stop = text.rfind(kStop);
    if (stop == std::string_view::npos)
        return VmStopReason::Unknown;
    auto start = text.rfind("starting up");
    if (start != std::string_view::npos && start > stop)
        return VmStopReason::Unknown; // the stop was an earlier run's
    auto from = stop + kStop.size();
    auto reason = text.substr(from, text.find_first_of("\r\n", from) - from);
    if (reason == "shutdown")
        return VmStopReason::GuestShutdown;
    if (reason == "crashed" || reason == "failed")
        return VmStopReason::Crashed;
    if (reason == "destroyed")
        return VmStopReason::Destroyed;
    if (reason == "saved")
        return VmStopReason::Saved;
    return VmStopReason::Other;
}

VmStopReason stopReasonFromLogFile(const std::string& logPath) {
    std::ifstream in(logPath, std::ios::binary);
    if (!in)
        return VmStopReason::Unknown;
    // The tail is enough: QEMU writes little once running.
    in.seekg(0, std::ios::end);
    std::streamoff size = in.tellg();
    std::streamoff from = std::max<std::streamoff>(0, size - (256 << 10));
    in.seekg(from);
    std::string tail(std::size_t(size - from), '\0');
    in.read(tail.data(), std::streamsize(tail.size()));
    tail.resize(std::size_t(in.gcount()));
    return stopReasonFromLog(tail);
}

} // namespace isr::vm
