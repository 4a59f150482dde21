// The session's tables: stage, error kind and failure cause names, the legal
// transitions (session.h draws them), how a core error is classified, and
// the timeline's text form. Pure functions, no state.
#include "session/session.h"

#include <cstdio>
#include <sstream>

namespace isr::session {

const char* stageName(Stage stage) {
    switch (stage) {
    case Stage::SignedOut:
        return "signed out";
    case Stage::Authenticating:
        return "authenticating";
    case Stage::CheckingOut:
        return "checking out";
    case Stage::Fetching:
        return "fetching";
    case Stage::Restoring:
        return "restoring";
    case Stage::Running:
        return "running";
    case Stage::Suspending:
        return "suspending";
    case Stage::Wiping:
        return "wiping";
    case Stage::Failed:
        return "failed";
    }
    return "?";
}

bool isLegalTransition(Stage from, Stage to) {
    switch (from) {
    case Stage::SignedOut:
        return to == Stage::Authenticating;
    case Stage::Authenticating:
        return to == Stage::CheckingOut || to == Stage::Failed || to == Stage::SignedOut;
    case Stage::CheckingOut:
        return to == Stage::Fetching || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Fetching:
        return to == Stage::Restoring || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Restoring:
        return to == Stage::Running || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Running:
        return to == Stage::Suspending || to == Stage::Failed || to == Stage::Wiping;
    case Stage::Suspending:
        return to == Stage::Wiping || to == Stage::Failed;
    case Stage::Wiping:
        return to == Stage::SignedOut || to == Stage::Failed;
    case Stage::Failed:
        // Not CheckingOut: every way back from a failure signs in again
        // (the keys are gone, or the password is checked first).
        return to == Stage::Suspending || to == Stage::Wiping || to == Stage::Authenticating ||
               to == Stage::SignedOut;
    }
    return false;
}

const char* errorKindName(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::None:
        return "none";
    case ErrorKind::WrongCredentials:
        return "wrong credentials";
    case ErrorKind::StoreUnreachable:
        return "store unreachable";
    case ErrorKind::LockedElsewhere:
        return "locked elsewhere";
    case ErrorKind::Corrupt:
        return "corrupt";
    case ErrorKind::NoSpace:
        return "no space";
    case ErrorKind::VmFailed:
        return "VM failed";
    case ErrorKind::Internal:
        return "internal";
    }
    return "?";
}

const char* failureCauseName(FailureCause cause) {
    switch (cause) {
    case FailureCause::Generic:
        return "generic";
    case FailureCause::StoreUnreachable:
        return "store-unreachable";
    case FailureCause::WrongCredentials:
        return "wrong-credentials";
    case FailureCause::NoParcel:
        return "no-parcel";
    case FailureCause::SeveralParcels:
        return "several-parcels";
    case FailureCause::ParcelNotFound:
        return "parcel-not-found";
    case FailureCause::LockedElsewhere:
        return "locked-elsewhere";
    case FailureCause::DamagedVersion:
        return "damaged-version";
    case FailureCause::BootProfileUnavailable:
        return "boot-profile-unavailable";
    case FailureCause::NoBootLoader:
        return "no-boot-loader";
    case FailureCause::OsDidNotStart:
        return "os-did-not-start";
    case FailureCause::KioskStorage:
        return "kiosk-storage";
    case FailureCause::MemoryImageFetch:
        return "memory-image-fetch";
    case FailureCause::VmStart:
        return "vm-start";
    case FailureCause::VmRestore:
        return "vm-restore";
    case FailureCause::VmStopped:
        return "vm-stopped";
    case FailureCause::GuestPoweredOff:
        return "guest-powered-off";
    case FailureCause::VmGoneAtSave:
        return "vm-gone-at-save";
    case FailureCause::SaveFailed:
        return "save-failed";
    case FailureCause::MemoryUpload:
        return "memory-upload";
    case FailureCause::DiskUpload:
        return "disk-upload";
    case FailureCause::CommitConflict:
        return "commit-conflict";
    case FailureCause::Commit:
        return "commit";
    case FailureCause::UnsafeKiosk:
        return "unsafe-kiosk";
    case FailureCause::LockTakenOver:
        return "lock-taken-over";
    case FailureCause::StoreRolledBack:
        return "store-rolled-back";
    case FailureCause::StoreForked:
        return "store-forked";
    }
    return "?";
}

ErrorKind classify(const Error& error) {
    switch (error.code) {
    case Errc::AuthFailed:
        return ErrorKind::WrongCredentials;
    case Errc::Transient:
    case Errc::AccessDenied:
        return ErrorKind::StoreUnreachable;
    case Errc::Locked:
        return ErrorKind::LockedElsewhere;
    case Errc::Corrupt:
        return ErrorKind::Corrupt;
    case Errc::NoSpace:
        return ErrorKind::NoSpace;
    default:
        return ErrorKind::Internal;
    }
}

std::string formatTimeline(const std::vector<TimelineEntry>& timeline) {
    std::ostringstream out;
    char line[160];
    std::snprintf(line, sizeof line, "%-16s %9s %12s %12s\n", "stage", "seconds", "down", "up");
    out << line;
    double total = 0;
    std::uint64_t down = 0, up = 0;
    for (const auto& e : timeline) {
        std::snprintf(line, sizeof line, "%-16s %9.2f %12llu %12llu\n", stageName(e.stage),
                      e.seconds, (unsigned long long)e.bytesDown, (unsigned long long)e.bytesUp);
        out << line;
        total += e.seconds;
        down += e.bytesDown;
        up += e.bytesUp;
    }
    std::snprintf(line, sizeof line, "%-16s %9.2f %12llu %12llu\n", "total", total,
                  (unsigned long long)down, (unsigned long long)up);
    out << line;
    return out.str();
}

} // namespace isr::session
