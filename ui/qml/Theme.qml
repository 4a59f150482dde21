pragma Singleton
import QtQuick

// Sizes and colours for a touch kiosk: large targets (at least 48 px high),
// high contrast, one accent colour.
QtObject {
    readonly property color background: "#14181f"
    readonly property color panel: "#1f2530"
    readonly property color panelBorder: "#343c4a"
    readonly property color text: "#f2f4f8"
    readonly property color mutedText: "#a8b0bf"
    readonly property color accent: "#3d8bfd"
    readonly property color success: "#4cc38a"
    readonly property color error: "#ff6b6b"
    readonly property color scrim: "#c0000000"
    readonly property int touchTarget: 56
    readonly property int spacing: 16
    readonly property int radius: 12
    readonly property int titleSize: 40
    readonly property int bodySize: 20
    readonly property int smallSize: 14
    readonly property int handleHeight: 28
}
