import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

// The walk-up sign-in page: user name, password, one button. It only emits
// signInRequested; whoever owns the session decides what happens next.
Rectangle {
    id: page
    color: Theme.background

    property bool busy: false
    property string errorText: ""
    property bool demoMode: false
    property string demoHint: qsTr("Demo: user \"demo\", password \"demo\"")
    // Height of the on-screen keyboard while it is up: the form moves into
    // the space above it (and drops its subtitle) so the fields and the
    // button stay visible while typing on a touch screen.
    property real keyboardHeight: 0

    signal signInRequested(string userName, string password)

    // Something typed that the next person should not find.
    readonly property bool hasInput: userField.text.length > 0 || passwordField.text.length > 0
    readonly property bool canSubmit: !busy && userField.text.length > 0
                                      && passwordField.text.length > 0

    // The field is cleared as the password leaves it, on every path: a
    // sign-in that succeeds would otherwise leave it in this hidden page
    // for the whole session (a refused one also clears it: reset(true)).
    function submit() {
        if (!canSubmit)
            return
        const password = passwordField.text
        passwordField.text = ""
        signInRequested(userField.text, password)
    }

    // Clears the password (and optionally the user name): called after a
    // failed attempt and whenever the kiosk returns to sign-in.
    function reset(keepUser) {
        passwordField.text = ""
        if (!keepUser)
            userField.text = ""
        if (keepUser && userField.text.length > 0)
            passwordField.forceActiveFocus()
        else
            userField.forceActiveFocus()
    }

    Component.onCompleted: userField.forceActiveFocus()

    ColumnLayout {
        objectName: "signInForm"
        anchors.horizontalCenter: parent.horizontalCenter
        y: Math.max(Theme.spacing / 2, (parent.height - page.keyboardHeight - height) / 2)
        width: Math.min(parent.width * 0.8, 520)
        spacing: page.keyboardHeight > 0 ? Theme.spacing / 2 : Theme.spacing
        Behavior on y { NumberAnimation { duration: 150; easing.type: Easing.OutCubic } }

        Label {
            text: qsTr("Welcome")
            color: Theme.text
            font.pixelSize: Theme.titleSize
            font.bold: true
            Layout.alignment: Qt.AlignHCenter
        }
        Label {
            visible: page.keyboardHeight === 0
            text: qsTr("Sign in to resume your computer exactly where you left it.")
            color: Theme.mutedText
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            horizontalAlignment: Text.AlignHCenter
            Layout.fillWidth: true
        }
        TextField {
            id: userField
            objectName: "userField"
            placeholderText: qsTr("User name")
            Accessible.name: qsTr("User name")
            font.pixelSize: Theme.bodySize
            inputMethodHints: Qt.ImhNoAutoUppercase | Qt.ImhNoPredictiveText
            enabled: !page.busy
            Layout.fillWidth: true
            Layout.preferredHeight: Theme.touchTarget
            KeyNavigation.tab: passwordField
            onAccepted: passwordField.forceActiveFocus()
            // Ask for the on-screen keyboard (if one is configured) on focus,
            // not only on touch: a mouse click should bring it up too.
            onActiveFocusChanged: if (activeFocus) Qt.inputMethod.show()
        }
        TextField {
            id: passwordField
            objectName: "passwordField"
            placeholderText: qsTr("Password")
            Accessible.name: qsTr("Password")
            echoMode: TextInput.Password
            font.pixelSize: Theme.bodySize
            inputMethodHints: Qt.ImhSensitiveData | Qt.ImhNoPredictiveText
            enabled: !page.busy
            Layout.fillWidth: true
            Layout.preferredHeight: Theme.touchTarget
            KeyNavigation.tab: signInButton
            onAccepted: page.submit()
            onActiveFocusChanged: if (activeFocus) Qt.inputMethod.show()
        }
        Label {
            objectName: "errorLabel"
            text: page.errorText
            visible: text.length > 0
            color: Theme.error
            font.pixelSize: Theme.bodySize
            wrapMode: Text.WordWrap
            Layout.fillWidth: true
        }
        Button {
            id: signInButton
            objectName: "signInButton"
            text: page.busy ? qsTr("Signing in…") : qsTr("Sign in")
            Accessible.name: qsTr("Sign in")
            enabled: page.canSubmit
            font.pixelSize: Theme.bodySize
            Layout.fillWidth: true
            Layout.preferredHeight: Theme.touchTarget
            onClicked: page.submit()
        }
        BusyIndicator {
            objectName: "signInBusy"
            running: page.busy
            visible: page.busy
            Layout.alignment: Qt.AlignHCenter
            Accessible.name: qsTr("Signing in")
        }
        Label {
            objectName: "demoHint"
            visible: page.demoMode
            text: page.demoHint
            color: Theme.mutedText
            font.pixelSize: Theme.bodySize
            Layout.alignment: Qt.AlignHCenter
        }
    }
}
