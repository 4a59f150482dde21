import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

// The idle warning: a countdown over the running computer. Any touch or key
// anywhere counts as activity (IdleWatcher sees it first) and hides this.
Item {
    id: overlay

    property int remainingSeconds: 0
    signal stillHere()

    Rectangle {
        anchors.fill: parent
        color: Theme.scrim
        MouseArea {
            anchors.fill: parent
            onClicked: overlay.stillHere()
        }
    }
    Rectangle {
        anchors.centerIn: parent
        width: Math.min(parent.width * 0.9, 560)
        height: column.implicitHeight + 4 * Theme.spacing
        radius: Theme.radius
        color: Theme.panel
        border.color: Theme.panelBorder
        ColumnLayout {
            id: column
            anchors.fill: parent
            anchors.margins: Theme.spacing * 2
            spacing: Theme.spacing
            Label {
                text: qsTr("Are you still there?")
                color: Theme.text
                font.pixelSize: Theme.titleSize - 8
                font.bold: true
                Layout.alignment: Qt.AlignHCenter
            }
            Label {
                objectName: "idleCountdown"
                text: qsTr("Your computer will be saved and this kiosk cleared in %1 s.")
                      .arg(overlay.remainingSeconds)
                color: Theme.mutedText
                font.pixelSize: Theme.bodySize
                wrapMode: Text.WordWrap
                horizontalAlignment: Text.AlignHCenter
                Layout.fillWidth: true
            }
            Button {
                objectName: "stillHereButton"
                text: qsTr("I'm still here")
                Accessible.name: qsTr("I'm still here")
                highlighted: true
                font.pixelSize: Theme.bodySize
                Layout.alignment: Qt.AlignHCenter
                Layout.preferredHeight: Theme.touchTarget
                onClicked: overlay.stillHere()
            }
        }
    }
}
