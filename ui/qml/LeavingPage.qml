import QtQuick
import Isr.Ui
import QtQuick.Controls
import QtQuick.Layouts
import "Format.js" as Format

// Suspend & Leave: saving and uploading with progress, cleaning the kiosk,
// then "You can leave now" — back to sign-in after noticeSeconds or a tap.
// When the kiosk is shutting down the title says so while it saves.
Rectangle {
    id: page
    color: Theme.background

    property SessionBackend backend
    property bool done: false
    property int noticeSeconds: 8
    readonly property int stage: backend ? backend.stage : SessionBackend.SignedOut
    readonly property bool haveBytes: backend && backend.bytesTotal > 0
    // The kiosk was told to stop (a stop signal, a shutdown): say why.
    readonly property bool shuttingDown: backend ? backend.shuttingDown : false

    signal finished()

    onDoneChanged: if (done) noticeTimer.restart()
    onVisibleChanged: if (visible) page.forceActiveFocus()

    Timer {
        id: noticeTimer
        interval: page.noticeSeconds * 1000
        onTriggered: page.finished()
    }

    // Any tap or key once done.
    TapHandler {
        enabled: page.done
        onTapped: page.finished()
    }
    Keys.onPressed: (event) => {
        if (page.done) {
            event.accepted = true
            page.finished()
        }
    }

    ColumnLayout {
        anchors.centerIn: parent
        width: Math.min(parent.width * 0.8, 640)
        spacing: Theme.spacing

        Label {
            objectName: "leavingTitle"
            text: page.done ? qsTr("You can leave now")
                            : page.stage === SessionBackend.Wiping ? qsTr("Clearing this kiosk…")
                            : page.shuttingDown ? qsTr("This kiosk is shutting down — saving your computer")
                                                : qsTr("Saving your computer…")
            color: page.done ? Theme.success : Theme.text
            font.pixelSize: Theme.titleSize
            font.bold: true
            wrapMode: Text.WordWrap // the shutting-down title is two lines
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
            Layout.alignment: Qt.AlignHCenter
        }
        Label {
            objectName: "leavingDetail"
            text: page.done ? qsTr("Your computer is saved. It will be just as you left it at any kiosk.")
                            : page.stage === SessionBackend.Wiping
                              ? qsTr("Removing your data from this kiosk.")
                              : qsTr("Please wait: your changes are being sent to safe storage.")
            color: Theme.mutedText
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
        ProgressBar {
            objectName: "uploadBar"
            visible: !page.done
            from: 0
            to: 1
            value: page.haveBytes ? page.backend.bytesDone / page.backend.bytesTotal : 0
            indeterminate: !page.haveBytes
            Layout.fillWidth: true
            Accessible.name: qsTr("Saving progress")
        }
        Label {
            objectName: "uploadBytesLabel"
            visible: !page.done && page.haveBytes
            text: page.haveBytes ? qsTr("%1 of %2 sent").arg(Format.bytes(page.backend.bytesDone))
                                                         .arg(Format.bytes(page.backend.bytesTotal))
                                   + (page.backend.rate > 0 ? qsTr(", %1/s").arg(Format.bytes(page.backend.rate)) : "")
                                 : ""
            color: Theme.mutedText
            font.pixelSize: Theme.smallSize + 2
            Layout.alignment: Qt.AlignHCenter
        }
        Label {
            visible: page.done
            text: qsTr("Tap anywhere to sign in again")
            color: Theme.mutedText
            font.pixelSize: Theme.smallSize + 2
            Layout.alignment: Qt.AlignHCenter
            Layout.topMargin: Theme.spacing * 2
        }
    }
}
