import QtQuick
import Isr.Ui
import QtQuick.Controls
import QtQuick.Layouts
import "Format.js" as Format

// Getting the user's computer ready: the steps, the current one highlighted,
// bytes done of total, the rate, and (while the memory image comes in) the
// time left.
Rectangle {
    id: page
    color: Theme.background

    property SessionBackend backend
    readonly property int stage: backend ? backend.stage : SessionBackend.SignedOut
    // While Failed (lock held elsewhere) the list stays where it failed.
    readonly property int shownStage: stage === SessionBackend.Failed && backend
                                      ? backend.failedStage : stage
    readonly property var steps: [
        { stage: SessionBackend.Authenticating, label: qsTr("Signing in") },
        { stage: SessionBackend.CheckingOut, label: qsTr("Opening your computer") },
        { stage: SessionBackend.Fetching, label: qsTr("Fetching its memory") },
        { stage: SessionBackend.Restoring, label: qsTr("Resuming where you left off") },
    ]
    readonly property bool haveBytes: backend && backend.bytesTotal > 0
    // The kiosk was told to stop: the resume is being cancelled.
    readonly property bool shuttingDown: backend ? backend.shuttingDown : false
    readonly property real secondsLeft: backend && backend.rate > 0
                                        ? (backend.bytesTotal - backend.bytesDone) / backend.rate : -1

    onVisibleChanged: if (visible) cancelButton.forceActiveFocus()

    ColumnLayout {
        anchors.centerIn: parent
        width: Math.min(parent.width * 0.8, 640)
        spacing: Theme.spacing

        Label {
            text: page.backend && page.backend.userName.length > 0
                  ? qsTr("Welcome back, %1").arg(page.backend.userName) : qsTr("Welcome back")
            color: Theme.text
            font.pixelSize: Theme.titleSize
            font.bold: true
            Layout.alignment: Qt.AlignHCenter
        }
        // "Saved Tuesday 14:02 at kiosk gate-23": the person who knows when
        // and where they last saved sees an older or a foreign copy here.
        Label {
            objectName: "resumingFromLabel"
            visible: text.length > 0
            text: page.backend ? page.backend.resumingFrom : ""
            color: Theme.text
            font.pixelSize: Theme.bodySize
            Layout.alignment: Qt.AlignHCenter
        }

        Repeater {
            model: page.steps
            delegate: RowLayout {
                required property var modelData
                readonly property bool current: modelData.stage === page.shownStage
                readonly property bool finished: modelData.stage < page.shownStage
                objectName: "step_" + modelData.stage
                spacing: Theme.spacing
                Layout.fillWidth: true
                Label {
                    text: finished ? "✓" : current ? "▶" : "•"
                    color: finished ? Theme.success : current ? Theme.accent : Theme.mutedText
                    font.pixelSize: Theme.bodySize
                    Layout.preferredWidth: Theme.bodySize * 1.5
                    horizontalAlignment: Text.AlignHCenter
                }
                Label {
                    text: modelData.label
                    color: current ? Theme.text : Theme.mutedText
                    font.pixelSize: Theme.bodySize
                    font.bold: current
                    Layout.fillWidth: true
                    Accessible.name: text + (current ? qsTr(" (in progress)") : finished ? qsTr(" (done)") : "")
                }
            }
        }

        ProgressBar {
            objectName: "progressBar"
            from: 0
            to: 1
            value: page.haveBytes ? page.backend.bytesDone / page.backend.bytesTotal : 0
            indeterminate: !page.haveBytes
            Layout.fillWidth: true
            Layout.topMargin: Theme.spacing
            Accessible.name: qsTr("Progress")
        }
        RowLayout {
            Layout.fillWidth: true
            Label {
                objectName: "bytesLabel"
                text: page.haveBytes ? qsTr("%1 of %2").arg(Format.bytes(page.backend.bytesDone))
                                                       .arg(Format.bytes(page.backend.bytesTotal))
                                     : " "
                color: Theme.mutedText
                font.pixelSize: Theme.smallSize + 2
                Layout.fillWidth: true
            }
            Label {
                objectName: "rateLabel"
                text: page.haveBytes && page.backend.rate > 0
                      ? qsTr("%1/s").arg(Format.bytes(page.backend.rate)) : ""
                color: Theme.mutedText
                font.pixelSize: Theme.smallSize + 2
            }
        }
        Label {
            objectName: "timeLeftLabel"
            visible: page.shownStage === SessionBackend.Fetching && page.secondsLeft >= 0
            text: qsTr("About %1 left").arg(Format.duration(page.secondsLeft))
            color: Theme.text
            font.pixelSize: Theme.bodySize
            Layout.alignment: Qt.AlignHCenter
        }
        Label {
            objectName: "shuttingDownLabel"
            visible: page.shuttingDown
            text: qsTr("This kiosk is shutting down — your computer stays as you last saved it")
            color: Theme.text
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
        Button {
            id: cancelButton
            objectName: "cancelButton"
            text: qsTr("Cancel")
            Accessible.name: qsTr("Cancel and return to sign-in")
            enabled: !page.shuttingDown
                     && (page.stage === SessionBackend.CheckingOut || page.stage === SessionBackend.Fetching)
            font.pixelSize: Theme.bodySize
            Layout.alignment: Qt.AlignHCenter
            Layout.preferredHeight: Theme.touchTarget
            Layout.preferredWidth: 200
            Layout.topMargin: Theme.spacing
            onClicked: page.backend.cancel()
        }
    }
}
