#include "vnckeymap.h"

#include <QKeyEvent>

namespace isr::ui {

namespace {

struct KeyPair {
    int qtKey;
    quint32 keysym;
};

// X keysyms from X11/keysymdef.h for keys that carry no text.
constexpr KeyPair kSpecialKeys[] = {
    {Qt::Key_Escape, 0xff1b},    {Qt::Key_Tab, 0xff09},     {Qt::Key_Backtab, 0xfe20},
    {Qt::Key_Backspace, 0xff08}, {Qt::Key_Return, 0xff0d},  {Qt::Key_Enter, 0xff8d},
    {Qt::Key_Insert, 0xff63},    {Qt::Key_Delete, 0xffff},  {Qt::Key_Pause, 0xff13},
    {Qt::Key_Print, 0xff61},     {Qt::Key_SysReq, 0xff15},  {Qt::Key_Home, 0xff50},
    {Qt::Key_End, 0xff57},       {Qt::Key_Left, 0xff51},    {Qt::Key_Up, 0xff52},
    {Qt::Key_Right, 0xff53},     {Qt::Key_Down, 0xff54},    {Qt::Key_PageUp, 0xff55},
    {Qt::Key_PageDown, 0xff56},  {Qt::Key_Shift, 0xffe1},   {Qt::Key_Control, 0xffe3},
    {Qt::Key_Meta, 0xffeb},      {Qt::Key_Alt, 0xffe9},     {Qt::Key_AltGr, 0xfe03},
    {Qt::Key_CapsLock, 0xffe5},  {Qt::Key_NumLock, 0xff7f}, {Qt::Key_ScrollLock, 0xff14},
    {Qt::Key_Menu, 0xff67},      {Qt::Key_Super_L, 0xffeb}, {Qt::Key_Super_R, 0xffec},
    {Qt::Key_Space, 0x0020},
};

// Linux evdev codes whose XT set 1 code is not the evdev code itself
// (codes 1..83 coincide: the evdev numbering was taken from XT).
struct CodePair {
    quint32 evdev;
    quint32 xt;
};
constexpr CodePair kEvdevToXt[] = {
    {85, 0x76},  // ZENKAKUHANKAKU
    {86, 0x56},  // 102ND (ISO key left of Z)
    {87, 0x57},  // F11
    {88, 0x58},  // F12
    {89, 0x73},  // RO
    {96, 0x9c},  // KPENTER
    {97, 0x9d},  // RIGHTCTRL
    {98, 0xb5},  // KPSLASH
    {99, 0xb7},  // SYSRQ
    {100, 0xb8}, // RIGHTALT
    {102, 0xc7}, // HOME
    {103, 0xc8}, // UP
    {104, 0xc9}, // PAGEUP
    {105, 0xcb}, // LEFT
    {106, 0xcd}, // RIGHT
    {107, 0xcf}, // END
    {108, 0xd0}, // DOWN
    {109, 0xd1}, // PAGEDOWN
    {110, 0xd2}, // INSERT
    {111, 0xd3}, // DELETE
    {113, 0xa0}, // MUTE
    {114, 0xae}, // VOLUMEDOWN
    {115, 0xb0}, // VOLUMEUP
    {116, 0xde}, // POWER
    {117, 0x59}, // KPEQUAL
    {119, 0xc6}, // PAUSE
    {121, 0x7e}, // KPCOMMA
    {124, 0x7d}, // YEN
    {125, 0xdb}, // LEFTMETA
    {126, 0xdc}, // RIGHTMETA
    {127, 0xdd}, // COMPOSE
};

} // namespace

quint32 keysymForKeyEvent(const QKeyEvent& event) {
    if (event.nativeVirtualKey() != 0)
        return event.nativeVirtualKey();
    const int key = event.key();
    if (key >= Qt::Key_F1 && key <= Qt::Key_F35)
        return 0xffbe + quint32(key - Qt::Key_F1);
    for (const auto& pair : kSpecialKeys)
        if (pair.qtKey == key)
            return pair.keysym;
    const QString text = event.text();
    if (!text.isEmpty() && text.at(0).isPrint()) {
        const char32_t cp = text.toUcs4().value(0);
        // Latin-1 keysyms equal their code point; everything else uses the
        // Unicode keysym range.
        return cp < 0x100 ? quint32(cp) : 0x01000000u | quint32(cp);
    }
    if (key >= Qt::Key_A && key <= Qt::Key_Z)
        return (event.modifiers() & Qt::ShiftModifier) ? quint32(key) : quint32(key) + 0x20;
    if (key >= 0x20 && key < 0x7f)
        return quint32(key);
    return 0;
}

quint32 xtScancodeForEvdev(quint32 evdevCode) {
    if (evdevCode >= 1 && evdevCode <= 83)
        return evdevCode;
    for (const auto& pair : kEvdevToXt)
        if (pair.evdev == evdevCode)
            return pair.xt;
    return 0;
}

quint32 xtScancodeForKeyEvent(const QKeyEvent& event) {
    const quint32 native = event.nativeScanCode();
    return native > 8 ? xtScancodeForEvdev(native - 8) : 0;
}

} // namespace isr::ui
