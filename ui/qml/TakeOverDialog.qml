import QtQuick
import Isr.Ui
import QtQuick.Controls
import QtQuick.Layouts

// "Your computer is open at another kiosk since …": take it over here (with
// the password again: the kiosk checks it before it touches the lock), or
// cancel. An overlay inside the kiosk window (modal: it eats input below).
// Main.qml returns to sign-in after a short idle time.
Item {
    id: dialog

    property SessionBackend backend
    readonly property string sinceText: backend && !isNaN(backend.lockSince)
                                        ? backend.lockSince.toLocaleString(Qt.locale(), Locale.ShortFormat)
                                        : qsTr("some time")

    property string refusedText: ""

    function submit() {
        if (passwordField.text.length === 0)
            return
        const password = passwordField.text
        passwordField.text = ""
        refusedText = ""
        backend.takeOver(password)
    }

    Connections {
        target: dialog.backend
        function onPasswordRefused() {
            if (dialog.visible)
                dialog.refusedText = qsTr("That password is not right. Type it again.")
        }
    }

    onVisibleChanged: {
        passwordField.text = ""
        refusedText = ""
        if (visible)
            passwordField.forceActiveFocus()
    }

    Rectangle {
        anchors.fill: parent
        color: Theme.scrim
        MouseArea { anchors.fill: parent } // modal
    }

    Rectangle {
        anchors.centerIn: parent
        width: Math.min(parent.width * 0.9, 600)
        height: content.implicitHeight + 2 * Theme.spacing * 2
        radius: Theme.radius
        color: Theme.panel
        border.color: Theme.panelBorder

        ColumnLayout {
            id: content
            anchors.fill: parent
            anchors.margins: Theme.spacing * 2
            spacing: Theme.spacing

            Label {
                objectName: "takeOverTitle"
                text: qsTr("Your computer is open at another kiosk since %1.").arg(dialog.sinceText)
                color: Theme.text
                font.pixelSize: Theme.bodySize + 4
                font.bold: true
                wrapMode: Text.WordWrap
                Layout.fillWidth: true
            }
            Label {
                objectName: "takeOverHolder"
                visible: dialog.backend && dialog.backend.lockHolder.length > 0
                text: qsTr("Open at: %1").arg(dialog.backend ? dialog.backend.lockHolder : "")
                color: Theme.mutedText
                font.pixelSize: Theme.bodySize
                wrapMode: Text.WordWrap
                Layout.fillWidth: true
            }
            Label {
                text: qsTr("Take it over to use it here. Anything done there since it was last saved will be lost.")
                color: Theme.mutedText
                font.pixelSize: Theme.bodySize
                wrapMode: Text.WordWrap
                Layout.fillWidth: true
            }
            TextField {
                id: passwordField
                objectName: "takeOverPasswordField"
                placeholderText: qsTr("Your password, to take it over")
                Accessible.name: qsTr("Password")
                echoMode: TextInput.Password
                font.pixelSize: Theme.bodySize
                inputMethodHints: Qt.ImhSensitiveData | Qt.ImhNoPredictiveText
                Layout.fillWidth: true
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.tab: takeOverButton.enabled ? takeOverButton : cancelButton
                onAccepted: dialog.submit()
                onActiveFocusChanged: if (activeFocus) Qt.inputMethod.show()
            }
            Label {
                objectName: "takeOverRefused"
                text: dialog.refusedText
                visible: text.length > 0
                color: Theme.error
                font.pixelSize: Theme.bodySize
                wrapMode: Text.WordWrap
                Layout.fillWidth: true
            }
            RowLayout {
                spacing: Theme.spacing
                Layout.fillWidth: true
                Layout.topMargin: Theme.spacing
                Button {
                    id: cancelButton
                    objectName: "takeOverCancelButton"
                    text: qsTr("Cancel")
                    Accessible.name: qsTr("Cancel, leave it at the other kiosk")
                    font.pixelSize: Theme.bodySize
                    Layout.fillWidth: true
                    Layout.preferredHeight: Theme.touchTarget
                    KeyNavigation.right: takeOverButton
                    KeyNavigation.tab: takeOverButton
                    onClicked: dialog.backend.cancel()
                    Keys.onReturnPressed: clicked()
                }
                Button {
                    id: takeOverButton
                    objectName: "takeOverButton"
                    text: qsTr("Take over here")
                    Accessible.name: qsTr("Take over here")
                    highlighted: enabled
                    enabled: passwordField.text.length > 0
                    font.pixelSize: Theme.bodySize
                    Layout.fillWidth: true
                    Layout.preferredHeight: Theme.touchTarget
                    KeyNavigation.left: cancelButton
                    KeyNavigation.tab: cancelButton
                    onClicked: dialog.submit()
                    Keys.onReturnPressed: clicked()
                }
            }
        }
    }
}
