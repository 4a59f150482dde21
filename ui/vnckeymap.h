#pragma once
// Key translation for the VM display: Qt key events to X keysyms (what RFB
// key events carry) and to XT scancodes (what QEMU's extended key events
// carry, so the guest's own keyboard layout applies).

#include <QtGlobal>

class QKeyEvent;

namespace isr::ui {

// The X keysym for a key event: the platform's own keysym when it reports
// one (xcb and wayland put it in nativeVirtualKey), else from Qt::Key and the
// event's text. 0 if nothing fits.
quint32 keysymForKeyEvent(const QKeyEvent& event);

// The XT scancode in QEMU's "qnum" form (0xE0-prefixed codes as 0x80|code)
// for a Linux evdev key code, or 0 if unknown.
quint32 xtScancodeForEvdev(quint32 evdevCode);

// The XT scancode for a key event: X11 and wayland keycodes are evdev + 8.
// 0 where the platform gives no keycode (offscreen).
quint32 xtScancodeForKeyEvent(const QKeyEvent& event);

} // namespace isr::ui
