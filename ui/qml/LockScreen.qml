import QtQuick
import Isr.Ui
import QtQuick.Controls
import QtQuick.Layouts

// The lock screen (issue #16, item 12): after lockTimeoutSeconds of quiet in
// a running session, Main.qml shows this page instead of the running page.
// The computer's screen is hidden and gets no input (the running page is
// not visible, so its display item has neither focus nor events); the
// signed-in user's password unlocks it (checked by the backend off the GUI
// thread), a wrong one says so. "Suspend & Leave" stays here. The session
// still ends by itself at idle_timeout (counted from the last input before
// the lock; typing here does not push it back): the countdown shows in its
// last seconds.
Rectangle {
    id: page
    color: Theme.background

    property SessionBackend backend
    // The lock's deadline (Main.qml's lockedIdle watcher).
    property bool warning: false
    property int remainingSeconds: 0
    property bool checking: false
    property string refusedText: ""
    readonly property bool canSubmit: !checking && passwordField.text.length > 0

    signal unlocked()

    function submit() {
        if (!canSubmit)
            return
        const password = passwordField.text
        passwordField.text = ""
        refusedText = ""
        checking = true
        backend.checkPassword(password)
    }

    // Back to an empty page: whenever it shows or hides.
    function reset() {
        passwordField.text = ""
        refusedText = ""
        checking = false
    }

    onVisibleChanged: {
        reset()
        if (visible)
            passwordField.forceActiveFocus()
    }

    Connections {
        target: page.backend
        function onPasswordChecked(right, problem) {
            if (!page.visible || !page.checking)
                return // an answer for a page that has moved on
            page.checking = false
            if (right) {
                page.unlocked()
                return
            }
            page.refusedText = problem === SessionBackend.None
                    ? qsTr("That password is not right. Type it again.")
                    : problem === SessionBackend.StoreUnreachable
                      ? qsTr("The password could not be checked: the store did not answer. Try again in a moment.")
                      : qsTr("The password could not be checked. Try again.")
            passwordField.forceActiveFocus()
        }
    }

    // Nothing below this page gets a touch.
    MouseArea { anchors.fill: parent }

    ColumnLayout {
        anchors.centerIn: parent
        width: Math.min(parent.width * 0.8, 560)
        spacing: Theme.spacing

        Label {
            objectName: "lockTitle"
            text: qsTr("This computer is locked")
            color: Theme.text
            font.pixelSize: Theme.titleSize
            font.bold: true
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
        Label {
            objectName: "lockUser"
            text: page.backend && page.backend.userName.length > 0
                  ? qsTr("Signed in as %1. Type the password to go on.").arg(page.backend.userName)
                  : qsTr("Type the password to go on.")
            color: Theme.mutedText
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
        TextField {
            id: passwordField
            objectName: "unlockPasswordField"
            placeholderText: qsTr("Password")
            Accessible.name: qsTr("Password")
            echoMode: TextInput.Password
            font.pixelSize: Theme.bodySize
            inputMethodHints: Qt.ImhSensitiveData | Qt.ImhNoPredictiveText
            enabled: !page.checking
            Layout.fillWidth: true
            Layout.preferredHeight: Theme.touchTarget
            Layout.topMargin: Theme.spacing
            KeyNavigation.tab: unlockButton
            onAccepted: page.submit()
            onActiveFocusChanged: if (activeFocus) Qt.inputMethod.show()
        }
        Label {
            objectName: "unlockRefused"
            text: page.refusedText
            visible: text.length > 0
            color: Theme.error
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            Layout.fillWidth: true
        }
        BusyIndicator {
            objectName: "unlockBusy"
            running: page.checking
            visible: page.checking
            Layout.alignment: Qt.AlignHCenter
            Accessible.name: qsTr("Checking the password")
        }
        RowLayout {
            spacing: Theme.spacing
            Layout.fillWidth: true
            Layout.topMargin: Theme.spacing
            Button {
                id: leaveButton
                objectName: "lockSuspendButton"
                // "&&": a single "&" would make "L" a mnemonic.
                text: qsTr("Suspend && Leave")
                Accessible.name: qsTr("Suspend and leave")
                font.pixelSize: Theme.bodySize
                Layout.fillWidth: true
                Layout.preferredWidth: 1 // the two buttons share the row equally
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.right: unlockButton
                KeyNavigation.tab: passwordField
                onClicked: page.backend.suspendAndLeave()
                Keys.onReturnPressed: clicked()
            }
            Button {
                id: unlockButton
                objectName: "unlockButton"
                text: page.checking ? qsTr("Checking…") : qsTr("Unlock")
                Accessible.name: qsTr("Unlock")
                highlighted: enabled
                enabled: page.canSubmit
                font.pixelSize: Theme.bodySize
                Layout.fillWidth: true
                Layout.preferredWidth: 1
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.left: leaveButton
                KeyNavigation.tab: leaveButton
                onClicked: page.submit()
                Keys.onReturnPressed: clicked()
            }
        }
        Label {
            objectName: "lockCountdown"
            visible: page.warning
            text: qsTr("Unless it is unlocked, your computer will be saved and this kiosk cleared in %1 s.")
                  .arg(page.remainingSeconds)
            color: Theme.mutedText
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
    }
}
