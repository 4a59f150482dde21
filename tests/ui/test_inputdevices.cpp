// The hardware-keyboard probe behind `virtual_keyboard = auto`, on listings
// shaped like /proc/bus/input/devices of real machines: a laptop (keyboard,
// power button, lid switch, touchpad), a touch-only terminal (touch screen,
// power button, a remote's "keyboard" without letters), QEMU's PS/2 devices.
#include "inputdevices.h"
#include "testsupport.h"

#include <QTest>
#include <fstream>

using namespace isr::ui;

namespace {

const char* const kPowerButton = "I: Bus=0019 Vendor=0000 Product=0001 Version=0000\n"
                                 "N: Name=\"Power Button\"\n"
                                 "P: Phys=PNP0C0C/button/input0\n"
                                 "H: Handlers=kbd event0 \n"
                                 "B: PROP=0\n"
                                 "B: EV=3\n"
                                 "B: KEY=10000000000000 0\n"
                                 "\n";
const char* const kLid = "I: Bus=0019 Vendor=0000 Product=0005 Version=0000\n"
                         "N: Name=\"Lid Switch\"\n"
                         "H: Handlers=event1 \n"
                         "B: PROP=0\n"
                         "B: EV=21\n"
                         "B: SW=1\n"
                         "\n";
// Letters set in the lowest KEY word, EV_KEY|EV_REP|EV_MSC|EV_LED|EV_SYN.
const char* const kAtKeyboard =
    "I: Bus=0011 Vendor=0001 Product=0001 Version=ab41\n"
    "N: Name=\"AT Translated Set 2 keyboard\"\n"
    "P: Phys=isa0060/serio0/input0\n"
    "H: Handlers=sysrq kbd event2 leds \n"
    "B: PROP=0\n"
    "B: EV=120013\n"
    "B: KEY=402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe\n"
    "B: MSC=10\n"
    "B: LED=7\n"
    "\n";
const char* const kTouchpad = "I: Bus=0018 Vendor=06cb Product=cd8b Version=0100\n"
                              "N: Name=\"SYNA3602:00 06CB:CD8B Touchpad\"\n"
                              "H: Handlers=mouse0 event3 \n"
                              "B: PROP=5\n"
                              "B: EV=1b\n"
                              "B: KEY=e520 10000 0 0 0 0\n"
                              "B: ABS=2e0800000000003\n"
                              "\n";
const char* const kTouchscreen = "I: Bus=0003 Vendor=0eef Product=c002 Version=0111\n"
                                 "N: Name=\"eGalax Inc. eGalaxTouch EXC3000\"\n"
                                 "H: Handlers=mouse1 event4 \n"
                                 "B: PROP=2\n"
                                 "B: EV=1b\n"
                                 "B: KEY=400 0 0 0 0 0\n"
                                 "B: ABS=260800000000003\n"
                                 "\n";
// Media keys with autorepeat but no letters (a remote, a headset).
const char* const kRemote =
    "I: Bus=0003 Vendor=046d Product=c52b Version=0111\n"
    "N: Name=\"Consumer Control\"\n"
    "H: Handlers=kbd event5 \n"
    "B: PROP=0\n"
    "B: EV=13\n"
    "B: KEY=3f00033fff 0 0 483ffff17aff32d bfd4444600000000 1 130ff38b17d000 "
    "677bfad941dfed 9ed68000004400 10000002\n"
    "B: MSC=10\n"
    "\n";
// A numeric keypad: repeats, but has no letter rows.
const char* const kKeypad = "I: Bus=0003 Vendor=1234 Product=0001 Version=0100\n"
                            "N: Name=\"Numeric keypad\"\n"
                            "H: Handlers=kbd event6 \n"
                            "B: EV=120013\n"
                            "B: KEY=7fe000 0 0 0\n"
                            "\n";

} // namespace

class TestInputDevices : public QObject {
    Q_OBJECT

private slots:
    void laptopHasKeyboard() {
        std::string text = std::string(kPowerButton) + kLid + kAtKeyboard + kTouchpad;
        QVERIFY(listsHardwareKeyboard(text));
        // The keyboard as the last block, without the trailing blank line.
        std::string last = std::string(kPowerButton) + kAtKeyboard;
        last.pop_back();
        QVERIFY(listsHardwareKeyboard(last));
    }

    void touchOnlyTerminalHasNone() {
        QVERIFY(!listsHardwareKeyboard(std::string(kPowerButton) + kTouchscreen + kRemote));
        QVERIFY(!listsHardwareKeyboard(std::string(kLid) + kTouchpad + kKeypad));
        QVERIFY(!listsHardwareKeyboard(""));
        QVERIFY(!listsHardwareKeyboard("B: EV=zz\nB: KEY=fffffffffffffffe\n\n"));
    }

    // EV_REP missing: a device that sends letters but never repeats is a
    // barcode scanner or similar, not a keyboard for a person.
    void lettersWithoutRepeatAreNotAKeyboard() {
        QVERIFY(!listsHardwareKeyboard("B: EV=13\nB: KEY=fffffffffffffffe\n\n"));
        QVERIFY(listsHardwareKeyboard("B: EV=100003\nB: KEY=fffffffffffffffe\n\n"));
    }

    void readsTheFile() {
        isr::test::TempDir dir;
        const std::string path = dir.file("devices");
        std::ofstream(path) << kPowerButton << kAtKeyboard;
        QVERIFY(hasHardwareKeyboard(path));
        std::ofstream(path, std::ios::trunc) << kTouchscreen;
        QVERIFY(!hasHardwareKeyboard(path));
        QVERIFY(!hasHardwareKeyboard(dir.file("missing")));
    }
};

QTEST_GUILESS_MAIN(TestInputDevices)
#include "test_inputdevices.moc"
