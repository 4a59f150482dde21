import QtQuick
import Isr.Ui
import QtQuick.Controls
import QtQuick.Layouts

// A failure: what happened, what to do, and the ways on — Retry (when it can
// help) or Back to sign-in. The kiosk holds no keys after a failure, so
// Retry asks for the password again, on this page: the person who was just
// using the computer types it and goes on; the next person at the kiosk
// cannot. Main.qml returns to sign-in after a short idle time.
Rectangle {
    id: page
    color: Theme.background

    property SessionBackend backend
    readonly property int failedStage: backend ? backend.failedStage : SessionBackend.SignedOut
    // Finishing a failed wipe reaches nothing of the user: no password.
    readonly property bool needsPassword: failedStage !== SessionBackend.Wiping
    readonly property bool canSubmit: backend && backend.canRetry
                                      && (!needsPassword || passwordField.text.length > 0)
    property string refusedText: ""

    function submitRetry() {
        if (!canSubmit)
            return
        const password = passwordField.text
        passwordField.text = ""
        refusedText = ""
        backend.retry(password)
    }

    // Back to an empty page: called when the page shows and when it leaves.
    function reset() {
        passwordField.text = ""
        refusedText = ""
    }

    Connections {
        target: page.backend
        function onPasswordRefused() {
            page.refusedText = qsTr("That password is not right. Type it again.")
            passwordField.forceActiveFocus()
        }
    }

    function titleFor(stage) {
        switch (stage) {
        case SessionBackend.Authenticating: return qsTr("Signing in did not work")
        case SessionBackend.CheckingOut: return qsTr("Your computer could not be opened")
        case SessionBackend.Fetching: return qsTr("Your computer could not be fetched")
        case SessionBackend.Restoring: return qsTr("Your computer could not be resumed")
        case SessionBackend.Running: return qsTr("Your computer stopped")
        case SessionBackend.Suspending: return qsTr("Your computer could not be saved")
        case SessionBackend.Wiping: return qsTr("This kiosk could not be cleared")
        }
        return qsTr("Something went wrong")
    }

    onVisibleChanged: {
        reset()
        if (visible)
            (passwordField.visible ? passwordField : backButton).forceActiveFocus()
    }

    ColumnLayout {
        anchors.centerIn: parent
        width: Math.min(parent.width * 0.8, 640)
        spacing: Theme.spacing

        Label {
            objectName: "errorTitle"
            text: page.titleFor(page.failedStage)
            color: Theme.error
            font.pixelSize: Theme.titleSize
            font.bold: true
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
        Label {
            objectName: "errorMessage"
            text: page.backend ? page.backend.errorMessage : ""
            color: Theme.text
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
        TextField {
            id: passwordField
            objectName: "retryPasswordField"
            visible: page.backend && page.backend.canRetry && page.needsPassword
            placeholderText: qsTr("Your password, to try again")
            Accessible.name: qsTr("Password")
            echoMode: TextInput.Password
            font.pixelSize: Theme.bodySize
            inputMethodHints: Qt.ImhSensitiveData | Qt.ImhNoPredictiveText
            Layout.fillWidth: true
            Layout.preferredHeight: Theme.touchTarget
            Layout.topMargin: Theme.spacing
            KeyNavigation.tab: retryButton
            onAccepted: page.submitRetry()
            onActiveFocusChanged: if (activeFocus) Qt.inputMethod.show()
        }
        Label {
            objectName: "retryRefused"
            text: page.refusedText
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
                id: backButton
                objectName: "backButton"
                text: qsTr("Back to sign-in")
                Accessible.name: qsTr("Back to sign-in")
                font.pixelSize: Theme.bodySize
                Layout.fillWidth: true
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.right: retryButton
                KeyNavigation.tab: retryButton
                onClicked: page.backend.acknowledge()
                Keys.onReturnPressed: clicked()
            }
            Button {
                id: retryButton
                objectName: "retryButton"
                // The VM ended while running: what "Try again" does is
                // resume the last save, and the person should know that.
                readonly property bool restart: page.failedStage === SessionBackend.Running
                text: restart ? qsTr("Start again from your last save") : qsTr("Try again")
                Accessible.name: text
                highlighted: enabled
                enabled: page.canSubmit
                font.pixelSize: Theme.bodySize
                Layout.fillWidth: true
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.left: backButton
                KeyNavigation.tab: backButton
                onClicked: page.submitRetry()
                Keys.onReturnPressed: clicked()
            }
        }
    }
}
