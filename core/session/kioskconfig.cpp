#include "session/kioskconfig.h"

#include "parcel/parcel.h"
#include "util/hardening.h"
#include "util/size.h"
#include "vm/vm.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace isr::session {

namespace {

std::string_view trim(std::string_view s) {
    const char* blanks = " \t\r";
    const auto b = s.find_first_not_of(blanks);
    if (b == std::string_view::npos)
        return {};
    const auto e = s.find_last_not_of(blanks);
    return s.substr(b, e - b + 1);
}

Result<int> parseSeconds(std::string_view v) {
    int value = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
    if (ec != std::errc() || p != v.data() + v.size() || value <= 0)
        return Error(Errc::InvalidArgument, "needs a positive whole number of seconds");
    return value;
}

Result<bool> parseYesNo(std::string_view v) {
    if (v == "yes")
        return true;
    if (v == "no")
        return false;
    return Error(Errc::InvalidArgument, "must be yes or no");
}

Status checkAbsolutePath(std::string_view v) {
    if (v.empty() || v.front() != '/')
        return Error(Errc::InvalidArgument, "must be an absolute path");
    return {};
}

Status checkStoreUrl(std::string_view v) {
    for (std::string_view scheme : {"file:///", "s3://", "s3s://"})
        if (v.substr(0, scheme.size()) == scheme && v.size() > scheme.size())
            return {};
    if (!v.empty() && v.front() == '/')
        return {};
    return Error(Errc::InvalidArgument,
                 "must be file:///path, /path, s3://host/bucket or s3s://host/bucket");
}

} // namespace

const std::vector<std::string_view>& kioskConfigKeys() {
    // Keep in step with apply() below: a key missing here is refused as
    // unknown, and test_kioskconfig checks that each one is documented in
    // packaging/kiosk.conf.example.
    static const std::vector<std::string_view> keys = {
        "store",
        "store_read_credentials",
        "allow_plain_http_store",
        "allow_unencrypted_swap",
        "state_dir",
        "scratch_dir",
        "cache_size",
        "metrics_file",
        "guest_dir",
        "lock_timeout",
        "idle_timeout",
        "idle_warning",
        "failure_idle_timeout",
        "escape_chord",
        "accelerator",
        "screen_size",
        "audio",
        "device_allow_list",
        "hoard_bandwidth",
        "virtual_keyboard",
        "kiosk_id",
        "parcel",
        "guest_may_reach_store",
        "guest_allowed_networks",
        "allow_unfiltered_guest_network",
        "lazy_memory",
        "first_boot_timeout",
    };
    return keys;
}

namespace {

// Applies one key; the error message is completed with file, line and key by the caller.
Status apply(KioskFile& f, const std::string& key, std::string_view v) {
    KioskConfig& c = f.session;
    if (key == "store") {
        ISR_TRY_STATUS(checkStoreUrl(v));
        c.storeUrl = std::string(v);
    } else if (key == "store_read_credentials") {
        ISR_TRY_STATUS(checkAbsolutePath(v));
        f.readCredentialsPath = std::string(v);
    } else if (key == "state_dir") {
        ISR_TRY_STATUS(checkAbsolutePath(v));
        c.stateDir = std::string(v);
    } else if (key == "scratch_dir") {
        ISR_TRY_STATUS(checkAbsolutePath(v));
        c.scratchDir = std::string(v);
    } else if (key == "metrics_file") {
        ISR_TRY_STATUS(checkAbsolutePath(v));
        c.metricsFile = std::string(v);
    } else if (key == "guest_dir") {
        ISR_TRY_STATUS(checkAbsolutePath(v));
        c.guestDir = std::string(v);
    } else if (key == "cache_size") {
        ISR_TRY_ASSIGN(auto bytes, parseSize(v));
        if (bytes == 0)
            return Error(Errc::InvalidArgument, "must be more than 0");
        c.cacheCapBytes = bytes;
    } else if (key == "hoard_bandwidth") {
        ISR_TRY_ASSIGN(auto bytes, parseSize(v));
        c.hoardBandwidth = bytes;
    } else if (key == "idle_timeout") {
        ISR_TRY_ASSIGN(f.ui.idleTimeoutSeconds, parseSeconds(v));
    } else if (key == "idle_warning") {
        ISR_TRY_ASSIGN(f.ui.idleWarningSeconds, parseSeconds(v));
    } else if (key == "failure_idle_timeout") {
        ISR_TRY_ASSIGN(f.ui.failureIdleSeconds, parseSeconds(v));
    } else if (key == "lock_timeout") {
        ISR_TRY_ASSIGN(f.ui.lockTimeoutSeconds, parseSeconds(v));
    } else if (key == "escape_chord") {
        if (v.empty())
            return Error(Errc::InvalidArgument,
                         "must name a key chord, e.g. Ctrl+Alt+Shift+Q, or none");
        // "none" is the default spelled out: the shell has no way out.
        f.ui.escapeChord = v == "none" ? std::string() : std::string(v);
    } else if (key == "accelerator") {
        if (v == "auto")
            c.accelerator.clear();
        else if (v == "kvm" || v == "tcg")
            c.accelerator = std::string(v);
        else
            return Error(Errc::InvalidArgument, "must be auto, kvm or tcg");
    } else if (key == "device_allow_list") {
        if (!v.empty())
            return Error(Errc::Unsupported,
                         "device pass-through is not supported yet: leave it empty");
    } else if (key == "virtual_keyboard") {
        using K = KioskUiOptions::OnScreenKeyboard;
        if (v == "auto")
            f.ui.virtualKeyboard = K::Auto;
        else if (v == "yes")
            f.ui.virtualKeyboard = K::Always;
        else if (v == "no")
            f.ui.virtualKeyboard = K::Never;
        else
            return Error(Errc::InvalidArgument, "must be yes, no or auto");
    } else if (key == "screen_size") {
        // WIDTHxHEIGHT: the preferred display mode desktop parcels see.
        unsigned w = 0, h = 0;
        char x = 0, extra = 0;
        std::string t(v);
        if (std::sscanf(t.c_str(), "%u%c%u%c", &w, &x, &h, &extra) != 3 || x != 'x' || w < 320 ||
            h < 200 || w > 8192 || h > 8192)
            return Error(Errc::InvalidArgument, "must be WIDTHxHEIGHT, e.g. 1920x1080");
        c.desktop.screenWidth = w;
        c.desktop.screenHeight = h;
    } else if (key == "audio") {
        if (v != "none" && v != "pulseaudio" && v != "alsa")
            return Error(Errc::InvalidArgument, "must be none, pulseaudio or alsa");
        c.desktop.audio = std::string(v);
    } else if (key == "kiosk_id") {
        if (v.empty())
            return Error(Errc::InvalidArgument, "must not be empty");
        c.kioskId = std::string(v);
    } else if (key == "allow_plain_http_store") {
        ISR_TRY_ASSIGN(f.policy.allowPlainHttpStore, parseYesNo(v));
    } else if (key == "allow_unencrypted_swap") {
        ISR_TRY_ASSIGN(c.allowUnencryptedSwap, parseYesNo(v));
    } else if (key == "guest_may_reach_store") {
        ISR_TRY_ASSIGN(c.guestMayReachStore, parseYesNo(v));
    } else if (key == "allow_unfiltered_guest_network") {
        ISR_TRY_ASSIGN(c.allowUnfilteredGuestNetwork, parseYesNo(v));
    } else if (key == "lazy_memory") {
        ISR_TRY_ASSIGN(c.lazyMemory, parseYesNo(v));
    } else if (key == "first_boot_timeout") {
        // "auto" (the accelerator's default), "off", or seconds.
        if (v == "auto")
            c.firstBootTimeout.reset();
        else if (v == "off")
            c.firstBootTimeout = std::chrono::seconds(0);
        else {
            ISR_TRY_ASSIGN(int seconds, parseSeconds(v));
            c.firstBootTimeout = std::chrono::seconds(seconds);
        }
    } else if (key == "guest_allowed_networks") {
        ISR_TRY_ASSIGN(c.guestAllowedNetworks, vm::parseNetworkList(v));
    } else if (key == "parcel") {
        ISR_TRY_STATUS(parcel::validateName("parcel name", v));
        f.ui.parcel = std::string(v);
    } else {
        return Error(Errc::Internal, "listed in kioskConfigKeys() but not handled");
    }
    return {};
}

} // namespace

Result<KioskFile> parseKioskConfig(std::string_view text, const std::string& origin) {
    KioskFile f;
    int lineNo = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        ++lineNo;
        const std::string where = origin + ":" + std::to_string(lineNo);
        line = trim(line);
        if (line.empty() || line.front() == '#')
            continue;
        const auto eq = line.find('=');
        if (eq == std::string_view::npos)
            return Error(Errc::InvalidArgument, where + ": expected 'key = value'");
        const std::string key(trim(line.substr(0, eq)));
        const std::string_view value = trim(line.substr(eq + 1));
        if (key.empty())
            return Error(Errc::InvalidArgument, where + ": missing key before '='");
        if (f.keys.count(key))
            return Error(Errc::InvalidArgument, where + ": " + key + ": set twice");
        const auto& known = kioskConfigKeys();
        if (std::find(known.begin(), known.end(), key) == known.end())
            return Error(Errc::InvalidArgument, where + ": " + key + ": unknown key");
        if (auto st = apply(f, key, value); !st.ok())
            return Error(st.error().code, where + ": " + key + ": " + st.error().message);
        if (key == "escape_chord")
            f.ui.escapeChordOrigin = where;
        f.keys.insert(key);
    }
    return f;
}

Result<store::Credentials> readCredentialsFile(const std::string& path) {
    std::ifstream in(path);
    if (!in)
        return Error(Errc::Io, "cannot read " + path);
    std::string access, secret;
    std::getline(in, access);
    std::getline(in, secret);
    store::Credentials c{std::string(trim(access)), std::string(trim(secret))};
    if (c.accessKey.empty() || c.secretKey.empty())
        return Error(Errc::InvalidArgument,
                     path + ": needs the access key on line 1 and the secret key on line 2");
    return c;
}

Result<KioskFile> loadKioskConfig(const std::string& path, bool sessionFiles) {
    std::ifstream in(path);
    if (!in)
        return Error(Errc::Io, "cannot read the kiosk configuration " + path);
    std::stringstream text;
    text << in.rdbuf();
    ISR_TRY_ASSIGN(auto f, parseKioskConfig(text.str(), path));
    f.path = path;
    if (sessionFiles && !f.readCredentialsPath.empty()) {
        auto creds = readCredentialsFile(f.readCredentialsPath);
        if (!creds.ok())
            return Error(creds.error().code,
                         path + ": store_read_credentials: " + creds.error().message);
        f.session.storeOptions.readCredentials = std::move(creds).value();
    }
    return f;
}

Result<KioskFile> locateAndLoadKioskConfig(const KioskConfigLocation& where) {
    if (where.explicitPath)
        return loadKioskConfig(*where.explicitPath, where.sessionFiles);
    if (const char* env = std::getenv(kKioskConfigEnv); env && *env) {
        auto f = loadKioskConfig(env, where.sessionFiles);
        if (!f.ok())
            return Error(f.error().code, std::string(kKioskConfigEnv) + ": " + f.error().message);
        return f;
    }
    std::error_code ec;
    if (where.defaultPath.empty() || !std::filesystem::exists(where.defaultPath, ec))
        return KioskFile{};
    return loadKioskConfig(where.defaultPath, where.sessionFiles);
}

void applyKioskOverrides(KioskFile& file, const KioskOverrides& o) {
    KioskConfig& c = file.session;
    auto absolute = [](const std::string& p) {
        std::error_code ec;
        auto abs = std::filesystem::absolute(p, ec);
        return ec ? p : abs.lexically_normal().string();
    };
    if (o.storeUrl && !o.storeUrl->empty())
        c.storeUrl = *o.storeUrl;
    if (c.storeUrl.empty())
        if (const char* env = std::getenv("ISR_STORE"); env && *env)
            c.storeUrl = env;
    if (c.storeUrl.empty())
        c.storeUrl = o.fallbackStoreUrl;
    if (o.stateDir)
        c.stateDir = absolute(*o.stateDir);
    else if (!file.has("state_dir") && !o.defaultStateDir.empty())
        c.stateDir = absolute(o.defaultStateDir);
    if (o.guestDir)
        c.guestDir = absolute(*o.guestDir);
    else if (!file.has("guest_dir") && !o.defaultGuestDir.empty())
        c.guestDir = absolute(o.defaultGuestDir);
    if (o.accelerator)
        c.accelerator = *o.accelerator;
    if (o.kioskId)
        c.kioskId = *o.kioskId;
    if (o.cacheCapBytes)
        c.cacheCapBytes = *o.cacheCapBytes;
    if (o.parcel)
        file.ui.parcel = *o.parcel;
}

Result<KioskFile> resolveKioskConfig(const KioskConfigLocation& where,
                                     const KioskOverrides& overrides) {
    ISR_TRY_ASSIGN(auto file, locateAndLoadKioskConfig(where));
    applyKioskOverrides(file, overrides);
    ISR_TRY_STATUS(checkStoreTransport(file.session.storeUrl, file.policy));
    return file;
}

Status checkStoreTransport(const std::string& storeUrl, const KioskHostPolicy& policy) {
    if (storeUrl.rfind("s3://", 0) == 0 && !policy.allowPlainHttpStore)
        return Error(Errc::InvalidArgument,
                     "the store " + storeUrl +
                         " is plain HTTP: a kiosk needs TLS (s3s://...), or "
                         "allow_plain_http_store = yes in kiosk.conf for a trusted network");
    return {};
}

std::string unsafeSwapAreas(const std::string& procSwaps, const std::string& sysRoot) {
    std::string out;
    auto areas = hardening::activeSwap(procSwaps, sysRoot);
    if (!areas.ok())
        return out;
    for (const auto& a : *areas)
        if (!a.safe)
            out += (out.empty() ? "" : ", ") + a.path;
    return out;
}

Status checkKioskHost(const KioskConfig& config, const std::string& procSwaps,
                      const std::string& sysRoot) {
    if (config.allowUnencryptedSwap)
        return {};
    return hardening::checkSwapEncrypted(procSwaps, sysRoot);
}

} // namespace isr::session
