#pragma once
// Does this kiosk have a hardware keyboard? Decides whether the on-screen
// keyboard is shown when the configuration says `virtual_keyboard = auto`
// (the default): a touch-only terminal or an in-seat screen has none.
//
// Linux lists input devices in /proc/bus/input/devices, one block per device
// with "B: EV=<hex>" (the event types it sends) and "B: KEY=<hex words>" (the
// keys it has). A device counts as a keyboard when it sends key events with
// autorepeat (EV_KEY and EV_REP) and has the letter keys Q..P, A..L and Z..M.
// That excludes power and sleep buttons, lid switches, remote controls,
// touch screens and mice, which all report a "kbd" handler or EV_KEY too.
// The check is a snapshot at start: a keyboard plugged in later does not
// hide the on-screen one (it stays usable alongside).

#include <string>
#include <string_view>

namespace isr::ui {

// From the text of /proc/bus/input/devices.
bool listsHardwareKeyboard(std::string_view procBusInputDevices);
// Reads the file; false when it cannot be read (no keyboard we can see).
bool hasHardwareKeyboard(const std::string& path = "/proc/bus/input/devices");

} // namespace isr::ui
