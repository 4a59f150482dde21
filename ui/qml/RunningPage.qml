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

    function attachDisplay() {
        if (backend && backend.displayFd >= 0)
            display.attach(backend.takeDisplayFd())
    }

    onVisibleChanged: {
        barOpen = false
        if (visible) {
            attachDisplay()
            display.forceActiveFocus()
        }
    }

    Connections {
        target: page.backend
        function onDisplayReady() { page.attachDisplay() }
        function onStageChanged() {
            if (page.backend.stage !== SessionBackend.Running)
                display.detach()
        }
    }

    VncDisplay {
        id: display
        objectName: "vncDisplay"
        anchors.fill: parent
        focus: true
        Accessible.name: qsTr("Your computer's screen")
        // QEMU may drop the client while a booting guest switches video
        // modes: ask for a new connection rather than leave a dead screen.
        onConnectedChanged: {
            if (!connected && page.visible && page.backend
                    && page.backend.stage === SessionBackend.Running)
                reconnectTimer.restart()
        }
    }

    Timer {
        id: reconnectTimer
        interval: 1000
        onTriggered: {
            if (!display.connected && page.backend
                    && page.backend.stage === SessionBackend.Running)
                page.backend.reconnectDisplay()
        }
    }

    Label {
        objectName: "noDisplayLabel"
        anchors.centerIn: parent
        visible: !display.connected
        text: display.lastError.length > 0
              ? qsTr("The screen of your computer is not reachable (%1).").arg(display.lastError)
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
    onBarOpenChanged: if (barOpen) suspendButton.forceActiveFocus()
}
