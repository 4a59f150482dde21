import QtQuick
import Isr.Ui
import QtQuick.Controls

// The kiosk's single window. Pages are swapped inside it by the backend's
// stage; dialogs and overlays live in this scene. Nothing opens a second
// toplevel.
ApplicationWindow {
    id: window
    objectName: "kioskWindow"

    required property SessionBackend backend
    property bool fullScreenWanted: true
    property bool demoMode: false
    property int idleTimeoutSeconds: 600
    property int idleWarningSeconds: 30
    property int leaveNoticeSeconds: 8
    // Quiet time on a failure (the error page, the take-over dialog, a
    // refused sign-in) before the kiosk wipes and returns to an empty
    // sign-in page: the next person must not find the last one's way back.
    property int failureIdleSeconds: 60
    property bool virtualKeyboard: false

    // True from Suspending until the "You can leave now" notice is gone:
    // SignedOut then still shows the leaving page.
    property bool leaving: false

    readonly property int stage: backend ? backend.stage : SessionBackend.SignedOut
    readonly property string currentPage: pageFor(stage, backend ? backend.errorKind
                                                                  : SessionBackend.None, leaving)

    function pageFor(stage, errorKind, leaving) {
        switch (stage) {
        case SessionBackend.SignedOut:
            return leaving ? "leaving" : "signIn"
        case SessionBackend.Authenticating:
            return "signIn"
        case SessionBackend.CheckingOut:
        case SessionBackend.Fetching:
        case SessionBackend.Restoring:
            return "progress"
        case SessionBackend.Running:
            return "running"
        case SessionBackend.Suspending:
        case SessionBackend.Wiping:
            return "leaving"
        case SessionBackend.Failed:
            if (errorKind === SessionBackend.WrongCredentials)
                return "signIn"
            if (errorKind === SessionBackend.LockedElsewhere)
                return "progress"
            return "error"
        }
        return "signIn"
    }

    function finishLeaving() {
        leaving = false
    }

    width: 1280
    height: 800
    visible: true
    visibility: fullScreenWanted ? Window.FullScreen : Window.Windowed
    title: qsTr("isr kiosk")
    color: Theme.background

    // Dark palette for the Basic style's controls, from the Theme.
    palette.window: Theme.background
    palette.windowText: Theme.text
    palette.base: Theme.panel
    palette.text: Theme.text
    palette.placeholderText: Theme.mutedText
    palette.button: Theme.panel
    palette.buttonText: Theme.text
    palette.brightText: "white"
    palette.highlight: Theme.accent
    palette.highlightedText: "white"
    palette.dark: Theme.accent
    palette.mid: Theme.panelBorder
    palette.midlight: Theme.panelBorder
    palette.light: "#2a3240"

    Connections {
        target: window.backend
        function onStageChanged() {
            if (window.backend.stage === SessionBackend.Suspending)
                window.leaving = true
            else if (window.backend.stage === SessionBackend.Failed)
                window.leaving = false
        }
    }

    onCurrentPageChanged: {
        if (currentPage === "signIn" && stage === SessionBackend.SignedOut)
            signIn.reset(false)
    }

    SignInPage {
        id: signIn
        objectName: "signInPage"
        anchors.fill: parent
        visible: window.currentPage === "signIn"
        demoMode: window.demoMode
        keyboardHeight: keyboardLoader.item && keyboardLoader.item.active
                        ? keyboardLoader.item.height : 0
        busy: window.stage === SessionBackend.Authenticating
        errorText: window.stage === SessionBackend.Failed
                   && window.backend.errorKind === SessionBackend.WrongCredentials
                   ? window.backend.errorMessage : ""
        onErrorTextChanged: if (errorText.length > 0) reset(true)
        onSignInRequested: (userName, password) => window.backend.signIn(userName, password)
    }

    ProgressPage {
        objectName: "progressPage"
        anchors.fill: parent
        visible: window.currentPage === "progress"
        backend: window.backend
    }

    RunningPage {
        id: running
        objectName: "runningPage"
        anchors.fill: parent
        visible: window.currentPage === "running"
        backend: window.backend
    }

    LeavingPage {
        objectName: "leavingPage"
        anchors.fill: parent
        visible: window.currentPage === "leaving"
        backend: window.backend
        noticeSeconds: window.leaveNoticeSeconds
        done: window.stage === SessionBackend.SignedOut && window.leaving
        onFinished: window.finishLeaving()
    }

    ErrorPage {
        objectName: "errorPage"
        anchors.fill: parent
        visible: window.currentPage === "error"
        backend: window.backend
    }

    TakeOverDialog {
        objectName: "takeOverDialog"
        anchors.fill: parent
        visible: window.stage === SessionBackend.Failed
                 && window.backend.errorKind === SessionBackend.LockedElsewhere
        backend: window.backend
    }

    IdleWatcher {
        id: idle
        objectName: "idleWatcher"
        active: window.stage === SessionBackend.Running
        timeoutMs: window.idleTimeoutSeconds * 1000
        warningMs: Math.min(window.idleWarningSeconds, window.idleTimeoutSeconds) * 1000
        onTimedOut: window.backend.suspendAndLeave()
    }

    // On any failure: after failureIdleSeconds of quiet, abandon (the core
    // wipes what it still holds and releases the lock) and clear the
    // sign-in page, user name included.
    IdleWatcher {
        id: failureIdle
        objectName: "failureIdleWatcher"
        active: window.stage === SessionBackend.Failed
        timeoutMs: window.failureIdleSeconds * 1000
        warningMs: 0
        onTimedOut: {
            signIn.reset(false)
            window.backend.acknowledge()
        }
    }

    IdleOverlay {
        objectName: "idleOverlay"
        anchors.fill: parent
        visible: idle.warning
        remainingSeconds: idle.remainingSeconds
        onStillHere: idle.poke()
    }

    Loader {
        id: keyboardLoader
        objectName: "virtualKeyboardLoader"
        active: window.virtualKeyboard
        width: parent.width
        anchors.bottom: parent.bottom
        source: "VirtualKeyboardPanel.qml"
    }
}
