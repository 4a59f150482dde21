#pragma once
// Transitional: the core's English advice, word for word as the kiosk showed
// it before failures carried facts. Session::Impl::fail() appends one of
// these to the error's text to fill Failure::message. Readers now render from
// Failure's facts (ui/text/failuretext.h, with tr()); once every reader does,
// Failure::message, this header and the advice argument at each fail() site
// go away together.

#include "session/session.h"

#include <ctime>
#include <string>

namespace isr::session::advice {

inline constexpr const char* kNone = "";
inline constexpr const char* kTryAgain = "Try again";
inline constexpr const char* kTryAgainInAMoment = "Try again in a moment";
inline constexpr const char* kStoreUnreachable = "The store is unreachable; try again";
inline constexpr const char* kStoreUnreachableMoment =
    "The store is unreachable; try again in a moment";
inline constexpr const char* kCheckCredentials = "Check them and try again";
inline constexpr const char* kWhichParcel = "Ask an administrator which one this kiosk should open";
inline constexpr const char* kTakeOver =
    "Take it over to continue here (unsaved work there is lost), or cancel";
inline constexpr const char* kCheckParcelName = "Check the parcel name or ask an administrator";
inline constexpr const char* kDamagedVersion =
    "The store's copy is damaged; an administrator can roll back to an earlier version";
inline constexpr const char* kOtherKiosk = "Use a kiosk with that profile";
inline constexpr const char* kKioskMisconfigured =
    "The kiosk is out of space or misconfigured; tell staff";
inline constexpr const char* kKioskFull = "The kiosk is out of space; tell staff";
inline constexpr const char* kVmStart = "The virtual machine could not start; try again";
inline constexpr const char* kMemoryImageFetch =
    "The saved memory image could not be fetched; try again, or an administrator can roll back";
inline constexpr const char* kVmRestore = "The virtual machine could not be restored; try again";
inline constexpr const char* kResumeLastSave = "Your last saved version is intact: resume it again";
inline constexpr const char* kVmGoneAtSave =
    "The virtual machine stopped unexpectedly and its unsaved work is lost; your last saved "
    "version is intact: resume it again";
inline constexpr const char* kScratchFull = "The kiosk ran out of memory-backed space for your "
                                            "memory image; tell staff, then try again";
inline constexpr const char* kSaveFailed = "The virtual machine could not be saved; try again";
inline constexpr const char* kMemoryUpload =
    "Could not send your memory image; check the network and try again";
inline constexpr const char* kDiskUpload =
    "Could not send your disk changes; check the network and try again";
inline constexpr const char* kCommitConflict = "Another kiosk saved this computer after you took "
                                               "it; your session here cannot be saved over it";
inline constexpr const char* kCommit = "Could not save; check the network and try again";

// "version 3, saved 2026-11-26 05:01 UTC"
inline std::string savedVersionText(const SavedVersion& v) {
    std::string text = "version " + std::to_string(v.version);
    if (v.created > 0) {
        std::time_t t = std::time_t(v.created);
        std::tm tm{};
        char when[64];
        if (::gmtime_r(&t, &tm) && std::strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm))
            text += std::string(", saved ") + when;
    }
    return text;
}

// The VM ended while Running: what happened (the message's first sentence)...
inline std::string vmEnded(bool poweredOff) {
    return poweredOff ? "Your computer was shut down from inside"
                      : "Your computer stopped unexpectedly (its virtual machine ended)";
}
// ...and what it means, naming the version that is safe.
inline std::string vmEndedAdvice(bool poweredOff, const SavedVersion& lastSave) {
    return std::string(poweredOff
                           ? "Changes since your last save were not kept (only Suspend & Leave "
                             "saves)"
                           : "What you did since your last save is lost") +
           ". Your last saved version (" + savedVersionText(lastSave) +
           ") is safe: start again from your last save";
}

} // namespace isr::session::advice
