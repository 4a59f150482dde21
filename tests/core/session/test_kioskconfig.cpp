// Tests for core/session/kioskconfig: the kiosk.conf parser accepts the
// documented example and refuses every kind of bad line with file, line and key.
#include "session/kioskconfig.h"
#include "testsupport.h"
#include "util/size.h"

#include <QTest>
#include <fstream>
#include <set>
#include <sstream>

using namespace isr;
using namespace isr::session;
using isr::test::TempDir;

namespace {
void writeFile(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
}
} // namespace

class TestKioskConfig : public QObject {
    Q_OBJECT
private slots:
    void goodFile() {
        auto f = parseKioskConfig("# a comment\n"
                                  "\n"
                                  "store = s3s://rgw.example.org/isr\n"
                                  "  state_dir=/var/lib/isr  \n"
                                  "cache_size = 8G\n"
                                  "scratch_dir = /dev/shm\n"
                                  "guest_dir = /usr/share/isr/guest\n"
                                  "idle_timeout = 900\n"
                                  "idle_warning = 45\n"
                                  "escape_chord = Ctrl+Alt+Shift+Q\n"
                                  "accelerator = tcg\n"
                                  "device_allow_list =\n"
                                  "hoard_bandwidth = 10M\n"
                                  "virtual_keyboard = yes\n"
                                  "kiosk_id = library-2\n"
                                  "parcel = work\n"
                                  "failure_idle_timeout = 20\n"
                                  "lock_timeout = 90\n",
                                  "kiosk.conf");
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        QCOMPARE(f->session.storeUrl, std::string("s3s://rgw.example.org/isr"));
        QCOMPARE(f->session.stateDir, std::string("/var/lib/isr"));
        QCOMPARE(f->session.cacheCapBytes, std::uint64_t(8) << 30);
        QCOMPARE(f->session.scratchDir, std::string("/dev/shm"));
        QCOMPARE(f->session.guestDir, std::string("/usr/share/isr/guest"));
        QCOMPARE(f->session.accelerator, std::string("tcg"));
        QCOMPARE(f->session.hoardBandwidth, std::uint64_t(10) << 20);
        QCOMPARE(f->session.kioskId, std::string("library-2"));
        QCOMPARE(f->ui.idleTimeoutSeconds, 900);
        QCOMPARE(f->ui.idleWarningSeconds, 45);
        QCOMPARE(f->ui.failureIdleSeconds, 20);
        QCOMPARE(f->ui.lockTimeoutSeconds, 90);
        QCOMPARE(f->ui.escapeChord, std::string("Ctrl+Alt+Shift+Q"));
        QCOMPARE(f->ui.escapeChordOrigin, std::string("kiosk.conf:10"));
        QVERIFY(f->ui.virtualKeyboard == KioskUiOptions::OnScreenKeyboard::Always);
        QCOMPARE(f->ui.parcel, std::string("work"));
        QVERIFY(f->has("store"));
        QVERIFY(!f->has("store_read_credentials"));
    }

    void defaultsWhenEmpty() {
        auto f = parseKioskConfig("", "empty");
        QVERIFY(f.ok());
        QVERIFY(f->keys.empty());
        QCOMPARE(f->ui.idleTimeoutSeconds, 300);
        QCOMPARE(f->ui.idleWarningSeconds, 30);
        QCOMPARE(f->ui.lockTimeoutSeconds, 120);
        QCOMPARE(f->ui.failureIdleSeconds, 60);
        // No way out of the shell unless staff configure a chord.
        QVERIFY(f->ui.escapeChord.empty());
        QVERIFY(parseKioskConfig("escape_chord = none\n", "x")->ui.escapeChord.empty());
        QVERIFY(f->ui.virtualKeyboard == KioskUiOptions::OnScreenKeyboard::Auto);
        QVERIFY(parseKioskConfig("virtual_keyboard = auto\n", "x")->ui.virtualKeyboard ==
                KioskUiOptions::OnScreenKeyboard::Auto);
        QCOMPARE(f->session.cacheCapBytes, std::uint64_t(8) << 30);
        QVERIFY(f->ui.virtualKeyboard == KioskUiOptions::OnScreenKeyboard::Auto);
        QVERIFY(parseKioskConfig("virtual_keyboard = auto\n", "x")->ui.virtualKeyboard ==
                KioskUiOptions::OnScreenKeyboard::Auto);
        auto a = parseKioskConfig("accelerator = auto\nvirtual_keyboard = no\n", "x");
        QVERIFY(a.ok());
        QCOMPARE(a->session.accelerator, std::string());
        QVERIFY(a->ui.virtualKeyboard == KioskUiOptions::OnScreenKeyboard::Never);
    }

    // isr::parseSize (util/size.h), the one size syntax of kiosk.conf and isrctl.
    void sizes() {
        QCOMPARE(*parseSize("0"), std::uint64_t(0));
        QCOMPARE(*parseSize("1234"), std::uint64_t(1234));
        QCOMPARE(*parseSize("4K"), std::uint64_t(4096));
        QCOMPARE(*parseSize("2T"), std::uint64_t(2) << 40);
        // What isrctl accepted besides: B, k and the IEC spellings.
        QCOMPARE(*parseSize("512B"), std::uint64_t(512));
        QCOMPARE(*parseSize("4k"), std::uint64_t(4096));
        QCOMPARE(*parseSize("8KiB"), std::uint64_t(8) << 10);
        QCOMPARE(*parseSize("512MiB"), std::uint64_t(512) << 20);
        QCOMPARE(*parseSize("8GiB"), std::uint64_t(8) << 30);
        QCOMPARE(*parseSize("3TiB"), std::uint64_t(3) << 40);
        QCOMPARE(*parseSize("16777215T"), std::uint64_t(16777215) << 40);
        QCOMPARE(*parseSize("18446744073709551615"), ~std::uint64_t(0));
        for (const char* bad : {"",
                                "G",
                                "8g",
                                "8GB",
                                "-1",
                                "1.5G",
                                " 8G",
                                "99999999999T",
                                "18446744073709551616",
                                "B",
                                "KiB",
                                "8 G",
                                "8G ",
                                "+8G",
                                "8Gi",
                                "8GiBB",
                                "8iB",
                                "8KB",
                                "8kiB",
                                "16777216T",
                                "0x10",
                                "8b"}) {
            auto s = parseSize(bad);
            QVERIFY2(!s.ok(), bad);
            QCOMPARE(s.error().code, Errc::InvalidArgument);
        }
        QVERIFY2(parseSize("99999999999T").error().message.find("too large") != std::string::npos,
                 parseSize("99999999999T").error().message.c_str());
    }

    // kiosk.conf refused "8GiB" while isrctl took it; now both do.
    void iecSizesInTheFile() {
        auto f = parseKioskConfig("cache_size = 8GiB\nhoard_bandwidth = 512KiB\n", "kiosk.conf");
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        QCOMPARE(f->session.cacheCapBytes, std::uint64_t(8) << 30);
        QCOMPARE(f->session.hoardBandwidth, std::uint64_t(512) << 10);
        auto big = parseKioskConfig("cache_size = 99999999999TiB\n", "x.conf");
        QVERIFY(!big.ok());
        QVERIFY2(big.error().message.find("x.conf:1: cache_size: '99999999999TiB' is too large") !=
                     std::string::npos,
                 big.error().message.c_str());
    }

    void badLines_data() {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QString>("expected"); // part of the message
        QTest::newRow("unknown key") << "store = /s\nfrobnicate = 1\n"
                                     << "x.conf:2: frobnicate: unknown key";
        QTest::newRow("no equals") << "# c\nstore /s\n"
                                   << "x.conf:2: expected 'key = value'";
        QTest::newRow("no key") << "= 3\n"
                                << "x.conf:1: missing key";
        QTest::newRow("duplicate") << "idle_timeout = 5\nidle_timeout = 6\n"
                                   << "x.conf:2: idle_timeout: set twice";
        QTest::newRow("bad store") << "store = http://x/y\n"
                                   << "x.conf:1: store: must be";
        QTest::newRow("empty store") << "store =\n"
                                     << "x.conf:1: store: must be";
        QTest::newRow("relative state_dir") << "state_dir = var/lib\n"
                                            << "x.conf:1: state_dir: must be an absolute path";
        QTest::newRow("relative scratch_dir") << "scratch_dir = shm\n"
                                              << "x.conf:1: scratch_dir: must be an absolute";
        QTest::newRow("empty guest_dir") << "guest_dir =\n"
                                         << "x.conf:1: guest_dir: must be an absolute";
        QTest::newRow("relative creds") << "store_read_credentials = keys\n"
                                        << "x.conf:1: store_read_credentials: must be an absolute";
        QTest::newRow("bad size") << "\ncache_size = 8 GB\n"
                                  << "x.conf:2: cache_size: '8 GB' is not a size";
        QTest::newRow("zero cache") << "cache_size = 0\n"
                                    << "x.conf:1: cache_size: must be more than 0";
        QTest::newRow("bad bandwidth") << "hoard_bandwidth = fast\n"
                                       << "x.conf:1: hoard_bandwidth: 'fast' is not a size";
        QTest::newRow("zero idle") << "idle_timeout = 0\n"
                                   << "x.conf:1: idle_timeout: needs a positive";
        QTest::newRow("zero lock") << "lock_timeout = 0\n"
                                   << "x.conf:1: lock_timeout: needs a positive";
        QTest::newRow("text idle") << "idle_warning = soon\n"
                                   << "x.conf:1: idle_warning: needs a positive";
        QTest::newRow("idle suffix") << "idle_timeout = 10m\n"
                                     << "x.conf:1: idle_timeout: needs a positive";
        QTest::newRow("empty chord") << "escape_chord =\n"
                                     << "x.conf:1: escape_chord: must name";
        QTest::newRow("bad accel") << "accelerator = xen\n"
                                   << "x.conf:1: accelerator: must be auto, kvm or tcg";
        QTest::newRow("devices")
            << "device_allow_list = usb:1234:5678\n"
            << "x.conf:1: device_allow_list: device pass-through is not supported";
        QTest::newRow("bad yes/no") << "virtual_keyboard = true\n"
                                    << "x.conf:1: virtual_keyboard: must be yes, no or auto";
        QTest::newRow("empty kiosk_id") << "kiosk_id =\n"
                                        << "x.conf:1: kiosk_id: must not be empty";
        QTest::newRow("bad parcel") << "parcel = ../etc\n"
                                    << "x.conf:1: parcel:";
    }
    void badLines() {
        QFETCH(QString, text);
        QFETCH(QString, expected);
        auto f = parseKioskConfig(text.toStdString(), "x.conf");
        QVERIFY(!f.ok());
        QVERIFY(f.error().code == Errc::InvalidArgument || f.error().code == Errc::Unsupported);
        QVERIFY2(f.error().message.find(expected.toStdString()) != std::string::npos,
                 f.error().message.c_str());
    }

    void loadWithCredentials() {
        TempDir dir;
        const std::string creds = dir.path() + "/read.keys";
        const std::string conf = dir.path() + "/kiosk.conf";
        writeFile(creds, "AKIAREAD\nsecret/with+chars\n");
        writeFile(conf, "store = s3://rgw:8000/isr\nstore_read_credentials = " + creds + "\n");
        auto f = loadKioskConfig(conf);
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        QCOMPARE(f->session.storeOptions.readCredentials.accessKey, std::string("AKIAREAD"));
        QCOMPARE(f->session.storeOptions.readCredentials.secretKey,
                 std::string("secret/with+chars"));

        writeFile(creds, "AKIAONLY\n");
        auto half = loadKioskConfig(conf);
        QVERIFY(!half.ok());
        QVERIFY2(half.error().message.find("store_read_credentials") != std::string::npos,
                 half.error().message.c_str());

        writeFile(conf, "store_read_credentials = " + dir.path() + "/missing\n");
        auto missing = loadKioskConfig(conf);
        QVERIFY(!missing.ok());
        QCOMPARE(missing.error().code, Errc::Io);
        // The shell in front of isr-vmhost reads no credentials: the file
        // is root's alone in a packaged kiosk, and a missing one is the
        // host's problem, not the shell's.
        auto shell = loadKioskConfig(conf, /*sessionFiles=*/false);
        QVERIFY2(shell.ok(), shell.ok() ? "" : shell.error().message.c_str());
        QVERIFY(shell->session.storeOptions.readCredentials.accessKey.empty());

        auto none = loadKioskConfig(dir.path() + "/nope.conf");
        QVERIFY(!none.ok());
        QCOMPARE(none.error().code, Errc::Io);
    }

    // Which file: --config, else $ISR_KIOSK_CONFIG, else the default if it
    // exists. A named file that is missing is an error; a missing default is not.
    void locateTheFile() {
        TempDir dir;
        const std::string explicitConf = dir.path() + "/explicit.conf";
        const std::string envConf = dir.path() + "/env.conf";
        const std::string defaultConf = dir.path() + "/default.conf";
        writeFile(explicitConf, "kiosk_id = from-explicit\n");
        writeFile(envConf, "kiosk_id = from-env\n");
        writeFile(defaultConf, "kiosk_id = from-default\n");
        qunsetenv(kKioskConfigEnv);

        KioskConfigLocation where;
        where.defaultPath = defaultConf;
        auto f = locateAndLoadKioskConfig(where);
        QVERIFY(f.ok());
        QCOMPARE(f->session.kioskId, std::string("from-default"));
        QCOMPARE(f->path, defaultConf);

        qputenv(kKioskConfigEnv, QByteArray::fromStdString(envConf));
        f = locateAndLoadKioskConfig(where);
        QVERIFY(f.ok());
        QCOMPARE(f->session.kioskId, std::string("from-env"));

        where.explicitPath = explicitConf;
        f = locateAndLoadKioskConfig(where);
        QVERIFY(f.ok());
        QCOMPARE(f->session.kioskId, std::string("from-explicit"));
        QCOMPARE(f->path, explicitConf);

        // A named file that is missing stops; the env's error says where it came from.
        where.explicitPath = dir.path() + "/absent.conf";
        f = locateAndLoadKioskConfig(where);
        QVERIFY(!f.ok());
        QCOMPARE(f.error().code, Errc::Io);
        where.explicitPath.reset();
        qputenv(kKioskConfigEnv, QByteArray::fromStdString(dir.path() + "/absent.conf"));
        f = locateAndLoadKioskConfig(where);
        QVERIFY(!f.ok());
        QVERIFY2(f.error().message.find("ISR_KIOSK_CONFIG") != std::string::npos,
                 f.error().message.c_str());
        qunsetenv(kKioskConfigEnv);

        // A missing default, or none at all, is the built-in defaults.
        where.defaultPath = dir.path() + "/absent.conf";
        f = locateAndLoadKioskConfig(where);
        QVERIFY(f.ok());
        QVERIFY(f->keys.empty());
        QVERIFY(f->path.empty());
        where.defaultPath.clear();
        QVERIFY(locateAndLoadKioskConfig(where)->path.empty());

        // A default that exists but is bad is an error too.
        writeFile(defaultConf, "frobnicate = 1\n");
        where.defaultPath = defaultConf;
        f = locateAndLoadKioskConfig(where);
        QVERIFY(!f.ok());
        QCOMPARE(f.error().code, Errc::InvalidArgument);
    }

    // The command line over the file over the environment over the fallbacks.
    void overridesOverTheFile() {
        qunsetenv("ISR_STORE");
        auto file = parseKioskConfig("store = /srv/file-store\n"
                                     "state_dir = /var/lib/isr\n"
                                     "accelerator = tcg\n"
                                     "kiosk_id = gate-23\n"
                                     "cache_size = 2G\n"
                                     "parcel = work\n",
                                     "kiosk.conf");
        QVERIFY(file.ok());

        // Nothing on the command line: the file, then the fallbacks.
        KioskOverrides none;
        none.defaultStateDir = "/default/state";
        none.defaultGuestDir = "/default/guest";
        none.fallbackStoreUrl = "file:///demo";
        KioskFile a = *file;
        applyKioskOverrides(a, none);
        QCOMPARE(a.session.storeUrl, std::string("/srv/file-store"));
        QCOMPARE(a.session.stateDir, std::string("/var/lib/isr"));
        QCOMPARE(a.session.guestDir, std::string("/default/guest")); // the file has none
        QCOMPARE(a.session.accelerator, std::string("tcg"));
        QCOMPARE(a.session.kioskId, std::string("gate-23"));
        QCOMPARE(a.session.cacheCapBytes, std::uint64_t(2) << 30);
        QCOMPARE(a.ui.parcel, std::string("work"));

        // Everything on the command line wins; relative paths become absolute.
        KioskOverrides all = none;
        all.storeUrl = "s3://rgw/isr";
        all.stateDir = "rel/state";
        all.guestDir = "/cli/guest";
        all.accelerator = "kvm";
        all.kioskId = "desk-1";
        all.cacheCapBytes = 1u << 20;
        all.parcel = "play";
        KioskFile b = *file;
        applyKioskOverrides(b, all);
        QCOMPARE(b.session.storeUrl, std::string("s3://rgw/isr"));
        QVERIFY2(b.session.stateDir.front() == '/' && b.session.stateDir.ends_with("/rel/state"),
                 b.session.stateDir.c_str());
        QCOMPARE(b.session.guestDir, std::string("/cli/guest"));
        QCOMPARE(b.session.accelerator, std::string("kvm"));
        QCOMPARE(b.session.kioskId, std::string("desk-1"));
        QCOMPARE(b.session.cacheCapBytes, std::uint64_t(1) << 20);
        QCOMPARE(b.ui.parcel, std::string("play"));

        // The store: --store > the file > $ISR_STORE > the fallback; an
        // empty --store counts as not given.
        qputenv("ISR_STORE", "file:///from-env");
        KioskFile c = *file;
        KioskOverrides emptyStore = none;
        emptyStore.storeUrl = "";
        applyKioskOverrides(c, emptyStore);
        QCOMPARE(c.session.storeUrl, std::string("/srv/file-store"));
        KioskFile d; // no file
        applyKioskOverrides(d, none);
        QCOMPARE(d.session.storeUrl, std::string("file:///from-env"));
        QCOMPARE(d.session.stateDir, std::string("/default/state"));
        qunsetenv("ISR_STORE");
        KioskFile e;
        applyKioskOverrides(e, none);
        QCOMPARE(e.session.storeUrl, std::string("file:///demo"));
        KioskFile g;
        applyKioskOverrides(g, KioskOverrides{});
        QVERIFY(g.session.storeUrl.empty()); // the caller says how to name one
    }

    // Both steps in one, as `isrctl session resume` does.
    void resolveInOneCall() {
        TempDir dir;
        const std::string conf = dir.path() + "/kiosk.conf";
        writeFile(conf, "store = /srv/s\ncache_size = 8GiB\n");
        KioskConfigLocation where;
        where.explicitPath = conf;
        where.defaultPath.clear();
        KioskOverrides o;
        o.kioskId = "k";
        auto f = resolveKioskConfig(where, o);
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        QCOMPARE(f->session.storeUrl, std::string("/srv/s"));
        QCOMPARE(f->session.cacheCapBytes, std::uint64_t(8) << 30);
        QCOMPARE(f->session.kioskId, std::string("k"));
        where.explicitPath = conf + ".absent";
        QVERIFY(!resolveKioskConfig(where, o).ok());
    }

    // Issue #16 item 12: a kiosk refuses a plain-HTTP store unless told.
    void plainHttpStoreNeedsTheOption() {
        TempDir dir;
        const std::string conf = dir.path() + "/kiosk.conf";
        KioskConfigLocation where;
        where.explicitPath = conf;
        where.defaultPath.clear();
        writeFile(conf, "store = s3://rgw:8000/isr\n");
        auto f = resolveKioskConfig(where, {});
        QVERIFY(!f.ok());
        QCOMPARE(f.error().code, Errc::InvalidArgument);
        QVERIFY2(f.error().message.find("allow_plain_http_store") != std::string::npos,
                 f.error().message.c_str());
        // Given on the command line: the same rule.
        writeFile(conf, "kiosk_id = k\n");
        KioskOverrides o;
        o.storeUrl = "s3://rgw:8000/isr";
        QVERIFY(!resolveKioskConfig(where, o).ok());
        writeFile(conf, "allow_plain_http_store = yes\n");
        QVERIFY(resolveKioskConfig(where, o).ok());
        writeFile(conf, "store = s3s://rgw/isr\n");
        QVERIFY(resolveKioskConfig(where, {}).ok());
        writeFile(conf, "allow_plain_http_store = maybe\n");
        QCOMPARE(resolveKioskConfig(where, {}).error().code, Errc::InvalidArgument);
    }

    // Issue #16 item 8: unencrypted swap stops a kiosk unless accepted.
    void unencryptedSwapNeedsTheOption() {
        TempDir dir;
        const std::string swaps = dir.path() + "/swaps";
        const std::string sys = dir.path() + "/sys";
        writeFile(swaps, "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                         "/dev/nonexistent-sda3                   partition\t1000\t0\t-2\n");
        auto f = parseKioskConfig("", "kiosk.conf");
        QVERIFY(f.ok());
        auto st = checkKioskHost(f->session, swaps, sys);
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::Unsupported);
        QVERIFY2(st.error().message.find("/dev/nonexistent-sda3") != std::string::npos,
                 st.error().message.c_str());
        QCOMPARE(unsafeSwapAreas(swaps, sys), std::string("/dev/nonexistent-sda3"));
        f = parseKioskConfig("allow_unencrypted_swap = yes\n", "kiosk.conf");
        QVERIFY(f.ok() && f->session.allowUnencryptedSwap);
        QVERIFY(checkKioskHost(f->session, swaps, sys).ok());
    }

    // Issue #16 item 4: the guest network keys.
    void guestNetworkKeys() {
        auto f = parseKioskConfig("", "kiosk.conf");
        QVERIFY(f.ok());
        QVERIFY(!f->session.guestMayReachStore);
        QVERIFY(!f->session.allowUnfilteredGuestNetwork);
        QVERIFY(f->session.guestAllowedNetworks.empty());
        f = parseKioskConfig("guest_may_reach_store = yes\n"
                             "allow_unfiltered_guest_network = yes\n"
                             "guest_allowed_networks = 10.20.1.7/16, fd12:3456::1/48 192.0.2.9\n",
                             "kiosk.conf");
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        QVERIFY(f->session.guestMayReachStore);
        QVERIFY(f->session.allowUnfilteredGuestNetwork);
        // Canonical: host bits cleared, a bare address is one host.
        const std::vector<std::string> want{"10.20.0.0/16", "fd12:3456::/48", "192.0.2.9/32"};
        QCOMPARE(f->session.guestAllowedNetworks, want);
        for (const char* bad :
             {"guest_allowed_networks = 10.0.0.0/33\n", "guest_allowed_networks = printer.lan\n",
              "guest_allowed_networks = 10.0.0.0/\n", "guest_may_reach_store = maybe\n",
              "allow_unfiltered_guest_network = 1\n"}) {
            auto r = parseKioskConfig(bad, "kiosk.conf");
            QVERIFY2(!r.ok(), bad);
            QCOMPARE(r.error().code, Errc::InvalidArgument);
            QVERIFY2(r.error().message.find("kiosk.conf:1: ") == 0, r.error().message.c_str());
        }
    }

    // Issue #15: the bound on a firmware parcel's first boot.
    void firstBootTimeout() {
        auto f = parseKioskConfig("", "kiosk.conf");
        QVERIFY(f.ok());
        QVERIFY(!f->session.firstBootTimeout); // auto: by the accelerator
        f = parseKioskConfig("first_boot_timeout = 45\n", "kiosk.conf");
        QVERIFY(f.ok());
        QCOMPARE(f->session.firstBootTimeout->count(), 45);
        f = parseKioskConfig("first_boot_timeout = off\n", "kiosk.conf");
        QVERIFY(f.ok());
        QCOMPARE(f->session.firstBootTimeout->count(), 0);
        f = parseKioskConfig("first_boot_timeout = auto\n", "kiosk.conf");
        QVERIFY(f.ok());
        QVERIFY(!f->session.firstBootTimeout);
        for (const char* bad : {"first_boot_timeout = 0\n", "first_boot_timeout = -5\n",
                                "first_boot_timeout = 3m\n", "first_boot_timeout = never\n"}) {
            auto r = parseKioskConfig(bad, "kiosk.conf");
            QVERIFY2(!r.ok(), bad);
            QVERIFY2(r.error().message.find("kiosk.conf:1: first_boot_timeout") == 0,
                     r.error().message.c_str());
        }
    }

    void exampleFileParses() {
        auto f = parseKioskConfig(
            [] {
                std::ifstream in(ISR_SOURCE_DIR "/packaging/kiosk.conf.example");
                return std::string(std::istreambuf_iterator<char>(in), {});
            }(),
            "kiosk.conf.example");
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        QVERIFY(f->has("state_dir"));
        QVERIFY(!f->has("store")); // each kiosk names its own store
    }

    // The example documents every key (issue #18: "lists every key with its
    // default"), and every key it shows commented out is a real key whose
    // example value parses.
    void exampleFileListsEveryKey() {
        std::ifstream in(ISR_SOURCE_DIR "/packaging/kiosk.conf.example");
        const std::string text(std::istreambuf_iterator<char>(in), {});
        std::set<std::string> documented;
        std::string uncommented;
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);) {
            const bool commented = line.rfind('#', 0) == 0;
            const std::string body = commented ? line.substr(1) : line;
            const auto eq = body.find(" =");
            if (eq == std::string::npos || eq == 0 || body.find(' ') < eq)
                continue; // prose
            const std::string key = body.substr(0, eq);
            if (!documented.insert(key).second)
                continue; // the first mention is the one that counts
            uncommented += body + "\n";
        }
        for (std::string_view key : kioskConfigKeys())
            QVERIFY2(documented.count(std::string(key)),
                     (std::string(key) + " is not in kiosk.conf.example").c_str());
        auto all = parseKioskConfig(uncommented, "kiosk.conf.example (all keys set)");
        QVERIFY2(all.ok(), all.ok() ? "" : all.error().message.c_str());
        QCOMPARE(all->keys.size(), documented.size());

        auto unknown = parseKioskConfig("no_such_key = 1\n", "kiosk.conf");
        QVERIFY(!unknown.ok());
        QVERIFY2(unknown.error().message.find("no_such_key: unknown key") != std::string::npos,
                 unknown.error().message.c_str());
    }
};

QTEST_GUILESS_MAIN(TestKioskConfig)
#include "test_kioskconfig.moc"
