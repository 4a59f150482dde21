import QtQuick
import QtQuick.VirtualKeyboard

// Qt Virtual Keyboard for touch-only kiosks. Loaded only when the kiosk is
// started with --virtual-keyboard (which also sets QT_IM_MODULE); it slides
// up while a text field has focus.
InputPanel {
    id: panel
    objectName: "inputPanel"
    visible: active
}
