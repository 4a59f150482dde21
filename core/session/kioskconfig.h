#pragma once
// The kiosk configuration file (/etc/isr/kiosk.conf by default).
//
// Format: one `key = value` per line; blank lines and lines whose first
// non-blank character is '#' are ignored; spaces around key and value are
// trimmed; no quoting, no continuation lines. Every key at most once.
// Keys (all optional; see packaging/kiosk.conf.example):
//   store                   file:///path, /path, s3://host[:port]/bucket[/prefix], s3s://...
//   store_read_credentials  file: line 1 access key, line 2 secret key
//   state_dir, scratch_dir, guest_dir   absolute paths
//   cache_size              a size (isr::parseSize, util/size.h: 8G, 8GiB, 512M...), > 0
//   hoard_bandwidth         bytes/s, same size syntax; 0 = unlimited
//   idle_timeout, idle_warning          positive whole seconds
//   lock_timeout, failure_idle_timeout  positive whole seconds
//   escape_chord            a key chord, checked by the UI (Qt key sequence
//                           syntax), or none (the default: no way out)
//   accelerator             auto | kvm | tcg
//   device_allow_list       reserved: must be empty (no device pass-through yet)
//   virtual_keyboard        yes | no | auto (default: shown when no hardware keyboard)
//   screen_size             WIDTHxHEIGHT: desktop parcels' preferred display mode
//   audio                   none | pulseaudio | alsa: desktop parcels' sound output
//   kiosk_id, parcel        names
//   allow_plain_http_store  yes | no (default no): accept an s3:// (plain HTTP)
//                           store; without it only s3s:// (TLS) and file stores
//   allow_unencrypted_swap  yes | no (default no): start sessions although
//                           swap that is not encrypted is active
//   guest_may_reach_store   yes | no (default no): the guest's network may
//                           reach the store's host (core/vm, egress.h)
//   guest_allowed_networks  IP networks the guest may reach although private
//                           (10.1.0.0/16, fd12::/48; commas or blanks)
//   allow_unfiltered_guest_network  yes | no (default no): as root, start VMs
//                           although the guest network filter cannot be loaded
//   lazy_memory             yes | no (default no): the guest's RAM served from
//                           chunks over FUSE and saved as a chunk table (#17)
//   first_boot_timeout      auto | off | positive whole seconds: how long a
//                           firmware parcel's first boot may show no sign of
//                           its OS before the session stops it (#15)
// Anything else (unknown key, bad value, duplicate, missing '=') is refused
// with an InvalidArgument error naming the file, line and key.
#include "session/session.h"
#include "util/result.h"

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace isr::session {

inline constexpr const char* kDefaultKioskConfigPath = "/etc/isr/kiosk.conf";
// Names the configuration file when no --config does.
inline constexpr const char* kKioskConfigEnv = "ISR_KIOSK_CONFIG";

// What the shell needs besides the session settings (no Qt here).
struct KioskUiOptions {
    // Quiet time in a running session before Suspend & Leave
    // (`idle_timeout`): 5 minutes, counted from the last input, the lock
    // screen's minutes included; the last idleWarningSeconds show a
    // countdown. Short because until then the computer is someone's to
    // find (locked, after lockTimeoutSeconds).
    int idleTimeoutSeconds = 300;
    int idleWarningSeconds = 30;
    // Quiet time in a running session before the lock screen covers it
    // (`lock_timeout`); at or above idleTimeoutSeconds: no lock screen.
    int lockTimeoutSeconds = 120;
    // Quiet time on a failure page (error, take-over) before the kiosk
    // wipes and returns to an empty sign-in page (`failure_idle_timeout`).
    int failureIdleSeconds = 60;
    // The operator's chord that stops the shell; empty (the default, or
    // `escape_chord = none`): there is none.
    std::string escapeChord;
    std::string escapeChordOrigin; // "file:line" for the UI's error message
    // The on-screen keyboard: Auto shows it when no hardware keyboard is
    // found at start (touch-only kiosks, in-seat screens).
    enum class OnScreenKeyboard { Auto, Always, Never };
    OnScreenKeyboard virtualKeyboard = OnScreenKeyboard::Auto;
    std::string parcel; // empty: the user's only parcel, or "default"
};

// Risks a kiosk refuses unless its configuration accepts them (issue #16).
struct KioskHostPolicy {
    bool allowPlainHttpStore = false; // s3:// sends credentials' signatures and
                                      // ciphertext in clear, and a network attacker
                                      // can answer for the store
    // allow_unencrypted_swap is KioskConfig::allowUnencryptedSwap: Session
    // checks it itself.
};

struct KioskFile {
    KioskConfig session;
    KioskUiOptions ui;
    KioskHostPolicy policy;
    std::string readCredentialsPath;
    std::set<std::string> keys; // the keys the file set
    std::string path;           // the file read; empty when there was none
    bool has(const std::string& key) const { return keys.count(key) != 0; }
};

// Parses the text; `origin` names it in errors. Does not read the credentials file.
Result<KioskFile> parseKioskConfig(std::string_view text, const std::string& origin);

// Every key kiosk.conf may set (packaging/kiosk.conf.example documents each).
const std::vector<std::string_view>& kioskConfigKeys();
// Reads and parses the file, then loads store_read_credentials if set
// (and sessionFiles: see KioskConfigLocation).
Result<KioskFile> loadKioskConfig(const std::string& path, bool sessionFiles = true);

// ---- Resolving the configuration: isr-kiosk and `isrctl session resume` ----
// Both programs find the file and lay their command line over it here, so a
// kiosk.conf and a flag mean the same in both.

// Which file. The first that applies:
//   1. `explicitPath` (--config FILE): must exist;
//   2. $ISR_KIOSK_CONFIG, if set and not empty: must exist;
//   3. `defaultPath` (empty: none), read only if it exists: a kiosk without
//      /etc/isr/kiosk.conf runs on its command line alone.
struct KioskConfigLocation {
    std::optional<std::string> explicitPath;
    std::string defaultPath = kDefaultKioskConfigPath;
    // False for a process that runs no sessions (the shell in front of
    // isr-vmhost): files the configuration only names for sessions, such as
    // store_read_credentials, are not read (root's alone in a packaged
    // kiosk; the shell has no business with them).
    bool sessionFiles = true;
};

// What the command line says over the file. Unset fields leave the file's
// value (or the built-in default) alone.
struct KioskOverrides {
    std::optional<std::string> storeUrl; // --store (empty counts as not given)
    // Only when neither --store, the file's `store` nor $ISR_STORE names a
    // store (the kiosk's --demo store). Empty: the result has no store, and
    // the caller says how to give one.
    std::string fallbackStoreUrl;
    // Paths given on the command line may be relative: they are made
    // absolute against the current directory.
    std::optional<std::string> stateDir; // --state-dir, --kiosk-dir
    std::optional<std::string> guestDir; // --guest-dir
    // When neither the command line nor the file sets the directory.
    std::string defaultStateDir;
    std::string defaultGuestDir;
    std::optional<std::string> accelerator;     // --accel: "kvm", "tcg", "" = probe
    std::optional<std::string> kioskId;         // --kiosk-id
    std::optional<std::uint64_t> cacheCapBytes; // --cache-size
    std::optional<std::string> parcel;          // --parcel (KioskUiOptions::parcel)
};

// Step 1: finds and loads the file (see KioskConfigLocation); no file gives
// the defaults with `path` empty. A named file that is missing or bad is an
// error (Io, InvalidArgument or Unsupported) naming it.
Result<KioskFile> locateAndLoadKioskConfig(const KioskConfigLocation& where);
// Step 2: lays the command line over a loaded file. Precedence, highest
// first: the command line, the file, the environment ($ISR_STORE for the
// store), the fallbacks in `overrides`.
void applyKioskOverrides(KioskFile& file, const KioskOverrides& overrides);
// Both steps. isr-kiosk does them apart: it needs the file's
// virtual_keyboard before Qt parses its command line.
Result<KioskFile> resolveKioskConfig(const KioskConfigLocation& where,
                                     const KioskOverrides& overrides);

// The store's transport: InvalidArgument for an s3:// (plain HTTP) store
// unless policy.allowPlainHttpStore. resolveKioskConfig applies it, so
// isr-kiosk and `isrctl session resume` both refuse one.
Status checkStoreTransport(const std::string& storeUrl, const KioskHostPolicy& policy);
// The kiosk host itself, before a session can start (Session::create calls
// it): Unsupported when unencrypted swap is active
// (hardening::checkSwapEncrypted) unless config.allowUnencryptedSwap.
// procSwaps/sysRoot are for tests.
Status checkKioskHost(const KioskConfig& config, const std::string& procSwaps = "/proc/swaps",
                      const std::string& sysRoot = "/sys");

// The unsafe swap areas' paths, ", "-separated (empty: none, or unreadable):
// what the kiosk's error page names (FailureCause::UnsafeKiosk, Failure::where).
std::string unsafeSwapAreas(const std::string& procSwaps = "/proc/swaps",
                            const std::string& sysRoot = "/sys");

// Line 1: access key, line 2: secret key (trailing CR/LF and blanks trimmed).
Result<store::Credentials> readCredentialsFile(const std::string& path);

} // namespace isr::session
