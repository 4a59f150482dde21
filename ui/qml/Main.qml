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
    // Quiet time in a running session before Suspend & Leave, counted from
    // the last input (the lock screen's minutes included).
    property int idleTimeoutSeconds: 300
    property int idleWarningSeconds: 30
    // Quiet time in a running session before the lock screen covers it; at
    // or above idleTimeoutSeconds there is no lock screen.
    property int lockTimeoutSeconds: 120
    property int leaveNoticeSeconds: 8
    // Quiet time on a failure (the error page, the take-over dialog, a
    // refused sign-in) before the kiosk wipes and returns to an empty
    // sign-in page: the next person must not find the last one's way back.
    property int failureIdleSeconds: 60
    property bool virtualKeyboard: false

    // True from Suspending until the "You can leave now" notice is gone:
    // SignedOut then still shows the leaving page.
    property bool leaving: false
    // The running session is behind the lock screen (only while Running).
    property bool locked: false

    readonly property int stage: backend ? backend.stage : SessionBackend.SignedOut
    readonly property string currentPage: pageFor(stage, backend ? backend.errorKind
                                                                  : SessionBackend.None, leaving,
                                                  locked)

    function pageFor(stage, errorKind, leaving, locked) {
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
            return locked ? "locked" : "running"
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
            if (window.backend.stage !== SessionBackend.Running)
                window.locked = false
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
        // Not visible while locked: the display item then has no focus and
        // gets no input, and nothing of the computer's screen shows.
        visible: window.currentPage === "running"
        backend: window.backend
    }

    LockScreen {
        objectName: "lockScreen"
        anchors.fill: parent
        visible: window.currentPage === "locked"
        backend: window.backend
        warning: lockedIdle.warning
        remainingSeconds: lockedIdle.remainingSeconds
        onUnlocked: window.locked = false
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
        active: window.stage === SessionBackend.Running && !window.locked
        timeoutMs: window.idleTimeoutSeconds * 1000
        warningMs: Math.min(window.idleWarningSeconds, window.idleTimeoutSeconds) * 1000
        onTimedOut: window.backend.suspendAndLeave()
    }

    // The lock: after lockTimeoutSeconds of quiet the running page gives way
    // to the lock screen (before the idle warning, which then never shows
    // over the computer itself).
    IdleWatcher {
        id: lockIdle
        objectName: "lockIdleWatcher"
        active: window.stage === SessionBackend.Running && !window.locked
                && window.lockTimeoutSeconds < window.idleTimeoutSeconds
        timeoutMs: window.lockTimeoutSeconds * 1000
        warningMs: 0
        onTimedOut: window.locked = true
    }

    // Behind the lock the rest of idleTimeoutSeconds runs out whatever is
    // typed (resetByInput false: wrong passwords do not keep the session
    // here); only the right password (unlocked) starts the counts again.
    IdleWatcher {
        id: lockedIdle
        objectName: "lockedIdleWatcher"
        readonly property int seconds: Math.max(1, window.idleTimeoutSeconds
                                                   - window.lockTimeoutSeconds)
        active: window.stage === SessionBackend.Running && window.locked
        resetByInput: false
        timeoutMs: seconds * 1000
        warningMs: Math.min(window.idleWarningSeconds, seconds) * 1000
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

    // On the sign-in page: whatever was typed (a user name, a password not
    // yet sent) is cleared after failureIdleSeconds of quiet, so the next
    // person finds an empty page. A refused sign-in is a failure (Failed,
    // WrongCredentials): failureIdle above clears it, the error included.
    IdleWatcher {
        id: signInIdle
        objectName: "signInIdleWatcher"
        active: window.currentPage === "signIn" && window.stage === SessionBackend.SignedOut
                && signIn.hasInput
        timeoutMs: window.failureIdleSeconds * 1000
        warningMs: 0
        onTimedOut: signIn.reset(false)
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
