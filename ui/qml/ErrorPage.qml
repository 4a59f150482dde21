import QtQuick
import Isr.Ui
import QtQuick.Controls
import QtQuick.Layouts

// A failure: what happened, what to do, and the ways on — Retry (when it can
// help) or Back to sign-in.
Rectangle {
    id: page
    color: Theme.background

    property SessionBackend backend
    readonly property int failedStage: backend ? backend.failedStage : SessionBackend.SignedOut

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

    onVisibleChanged: if (visible) (retryButton.enabled ? retryButton : backButton).forceActiveFocus()

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
                enabled: page.backend && page.backend.canRetry
                font.pixelSize: Theme.bodySize
                Layout.fillWidth: true
                Layout.preferredHeight: Theme.touchTarget
                KeyNavigation.left: backButton
                KeyNavigation.tab: backButton
                onClicked: page.backend.retry()
                Keys.onReturnPressed: clicked()
            }
        }
    }
}
