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
//   escape_chord            a key chord, checked by the UI (Qt key sequence syntax)
//   accelerator             auto | kvm | tcg
//   device_allow_list       reserved: must be empty (no device pass-through yet)
//   virtual_keyboard        yes | no | auto (default: shown when no hardware keyboard)
//   kiosk_id, parcel        names
// Anything else (unknown key, bad value, duplicate, missing '=') is refused
// with an InvalidArgument error naming the file, line and key.
#include "session/session.h"
#include "util/result.h"

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace isr::session {

inline constexpr const char* kDefaultKioskConfigPath = "/etc/isr/kiosk.conf";

// What the shell needs besides the session settings (no Qt here).
struct KioskUiOptions {
    int idleTimeoutSeconds = 600;
    int idleWarningSeconds = 30;
    std::string escapeChord;       // empty: the UI's default
    std::string escapeChordOrigin; // "file:line" for the UI's error message
    // The on-screen keyboard: Auto shows it when no hardware keyboard is
    // found at start (touch-only kiosks, in-seat screens).
    enum class OnScreenKeyboard { Auto, Always, Never };
    OnScreenKeyboard virtualKeyboard = OnScreenKeyboard::Auto;
    std::string parcel; // empty: the user's only parcel, or "default"
};

struct KioskFile {
    KioskConfig session;
    KioskUiOptions ui;
    std::string readCredentialsPath;
    std::set<std::string> keys; // the keys the file set
    bool has(const std::string& key) const { return keys.count(key) != 0; }
};

// Parses the text; `origin` names it in errors. Does not read the credentials file.
Result<KioskFile> parseKioskConfig(std::string_view text, const std::string& origin);
// Reads and parses the file, then loads store_read_credentials if set.
Result<KioskFile> loadKioskConfig(const std::string& path);

// Line 1: access key, line 2: secret key (trailing CR/LF and blanks trimmed).
Result<store::Credentials> readCredentialsFile(const std::string& path);

} // namespace isr::session
