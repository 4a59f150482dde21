import QtQuick
import Isr.Ui
import QtQuick.Controls
import QtQuick.Layouts

// The user's computer: the VM display fills the page (aspect kept, black
// bars). A small handle at the top edge opens a bar with "Suspend & Leave"
// and the background download's progress; it stays out of the way until
// touched.
Rectangle {
    id: page
    color: "black"

    property SessionBackend backend
    property bool barOpen: false
    readonly property real hoardFraction: backend && backend.hoardChunksTotal > 0
                                          ? backend.hoardChunksCached / backend.hoardChunksTotal : 0

    onVisibleChanged: {
        barOpen = false
        if (visible)
            display.forceActiveFocus()
    }

    // The screen comes from the backend's display source: the fd is handed
    // over in C++, and the item reconnects by itself (with backoff) when
    // QEMU drops it, e.g. while a booting guest switches video modes.
    VncDisplay {
        id: display
        objectName: "vncDisplay"
        anchors.fill: parent
        focus: true
        source: page.backend ? page.backend.display : null
        Accessible.name: qsTr("Your computer's screen")
    }

    Label {
        objectName: "noDisplayLabel"
        anchors.centerIn: parent
        visible: !display.connected
        text: display.lastError.length > 0
              ? (display.state === VncDisplay.Reconnecting || display.state === VncDisplay.Connecting
                 ? qsTr("Reconnecting to the screen of your computer (%1)…").arg(display.lastError)
                 : qsTr("The screen of your computer is not reachable (%1).").arg(display.lastError))
              : qsTr("Your computer is running. Its screen appears here.")
        color: Theme.mutedText
        font.pixelSize: Theme.bodySize
    }

    // The handle: a small tab at the top edge, always there.
    Rectangle {
        id: handle
        objectName: "barHandle"
        anchors.top: parent.top
        anchors.horizontalCenter: parent.horizontalCenter
        width: handleRow.implicitWidth + 2 * Theme.spacing
        height: Theme.handleHeight
        radius: height / 2
        color: Theme.panel
        opacity: page.barOpen ? 0 : 0.85
        visible: opacity > 0
        border.color: Theme.panelBorder
        Accessible.role: Accessible.Button
        Accessible.name: qsTr("Open the kiosk menu")
        Accessible.onPressAction: page.barOpen = true

        RowLayout {
            id: handleRow
            anchors.centerIn: parent
            spacing: 8
            Label {
                text: "▾ " + qsTr("Suspend & Leave")
                color: Theme.text
                font.pixelSize: Theme.smallSize
            }
            Label {
                objectName: "handleHoardLabel"
                visible: page.backend && page.backend.hoardChunksTotal > 0
                         && page.hoardFraction < 1
                text: qsTr("%1% local").arg(Math.floor(page.hoardFraction * 100))
                color: Theme.mutedText
                font.pixelSize: Theme.smallSize - 2
            }
        }
        // The tab is small to look at but large to hit.
        MouseArea {
            anchors.fill: parent
            anchors.margins: -12
            onClicked: page.barOpen = true
        }
    }

    Rectangle {
        id: bar
        objectName: "sessionBar"
        anchors.left: parent.left
        anchors.right: parent.right
        y: page.barOpen ? 0 : -height
        height: Theme.touchTarget + 2 * Theme.spacing
        color: Theme.panel
        border.color: Theme.panelBorder
        visible: page.barOpen
        Behavior on y { NumberAnimation { duration: 120 } }

        RowLayout {
            anchors.fill: parent
            anchors.leftMargin: Theme.spacing
            anchors.rightMargin: Theme.spacing
            spacing: Theme.spacing

            Label {
                text: page.backend && page.backend.userName.length > 0
                      ? qsTr("Signed in as %1").arg(page.backend.userName) : ""
                color: Theme.text
                font.pixelSize: Theme.bodySize
            }
            ColumnLayout {
                Layout.fillWidth: true
                spacing: 2
                visible: page.backend && page.backend.hoardChunksTotal > 0
                Label {
                    objectName: "hoardLabel"
                    text: page.hoardFraction >= 1
                          ? qsTr("Your whole computer is on this kiosk.")
                          : qsTr("Bringing the rest of your computer here: %1%")
                                .arg(Math.floor(page.hoardFraction * 100))
                    color: Theme.mutedText
                    font.pixelSize: Theme.smallSize
                }
                ProgressBar {
                    objectName: "hoardBar"
                    from: 0
                    to: 1
                    value: page.hoardFraction
                    Layout.fillWidth: true
                    Layout.maximumWidth: 320
                    Accessible.name: qsTr("Background download")
                }
            }
            Button {
                id: closeBarButton
                objectName: "closeBarButton"
                text: qsTr("Back to my computer")
                Accessible.name: qsTr("Close the kiosk menu")
                font.pixelSize: Theme.bodySize
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.tab: suspendButton
                onClicked: {
                    page.barOpen = false
                    display.forceActiveFocus()
                }
            }
            Button {
                id: suspendButton
                objectName: "suspendButton"
                // "&&": a single "&" would make "L" a mnemonic.
                text: qsTr("Suspend && Leave")
                Accessible.name: qsTr("Suspend and leave")
                highlighted: true
                font.pixelSize: Theme.bodySize
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.tab: closeBarButton
                onClicked: page.backend.suspendAndLeave()
                Keys.onReturnPressed: clicked()
            }
        }
    }
    // The background download is held back (the kiosk's disk nearly full, the
    // store unreachable): one quiet line under the handle or the bar. The
    // computer keeps running; nothing for the person to do.
    Rectangle {
        id: hoardNotice
        objectName: "hoardNotice"
        anchors.top: page.barOpen ? bar.bottom : handle.bottom
        anchors.topMargin: 6
        anchors.horizontalCenter: parent.horizontalCenter
        width: Math.min(page.width - 2 * Theme.spacing,
                        hoardProblemLabel.implicitWidth + 2 * Theme.spacing)
        height: hoardProblemLabel.implicitHeight + 8
        radius: height / 2
        color: Theme.panel
        opacity: 0.85
        border.color: Theme.panelBorder
        visible: page.backend !== null && page.backend.hoardProblem.length > 0

        Label {
            id: hoardProblemLabel
            objectName: "hoardProblemLabel"
            anchors.centerIn: parent
            width: Math.min(implicitWidth, parent.width - 2 * Theme.spacing)
            elide: Text.ElideRight
            text: page.backend ? page.backend.hoardProblem : ""
            color: Theme.mutedText
            font.pixelSize: Theme.smallSize
        }
    }

    onBarOpenChanged: if (barOpen) suspendButton.forceActiveFocus()
}
