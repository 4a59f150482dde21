import QtQuick
import QtQuick.Controls

// The kiosk's single window. Pages are swapped inside it; nothing opens a
// second toplevel.
ApplicationWindow {
    id: window
    objectName: "kioskWindow"

    property bool fullScreenWanted: true
    property bool demoMode: false

    width: 1280
    height: 800
    visible: true
    visibility: fullScreenWanted ? Window.FullScreen : Window.Windowed
    title: qsTr("isr kiosk")
    color: Theme.background

    SignInPage {
        id: signIn
        objectName: "signInPage"
        anchors.fill: parent
        demoMode: window.demoMode
    }
}
