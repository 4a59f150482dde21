import QtQuick
import QtTest
import Isr.Ui

// Issue #16 item 1, in the kiosk window itself (Main.qml over the fake
// backend): the error page and the take-over dialog ask for the password
// before Retry / Take over do anything, and after failureIdleSeconds of
// quiet the kiosk abandons (wipes) and shows an empty sign-in page, the
// typed user name cleared. The sign-in page itself forgets what was typed
// (and a refused sign-in's error) after the same quiet time.
Item {
    id: root
    width: 1024
    height: 640

    FakeSessionBackend {
        id: fake
        stepIntervalMs: 20
        Component.onCompleted: {
            addUser("carol", "pw")
            lockParcel("carol", "kiosk-2", new Date(2026, 0, 5, 9, 30))
            addUser("gus", "pw")
            addUser("fran", "pw")
            failAt("fran", SessionBackend.Running, SessionBackend.VmFailed)
        }
    }

    Component {
        id: mainComponent
        Main {}
    }

    TestCase {
        name: "FailureIdle"
        when: windowShown

        function findByName(item, name) {
            if (item.objectName === name)
                return item
            const kids = item.contentItem ? [item.contentItem] : []
            const children = item.children ? item.children : []
            for (var i = 0; i < children.length; ++i)
                kids.push(children[i])
            for (const kid of kids) {
                var found = findByName(kid, name)
                if (found)
                    return found
            }
            return null
        }

        function makeWindow() {
            var w = createTemporaryObject(mainComponent, root, {
                backend: fake, failureIdleSeconds: 1, fullScreenWanted: false })
            verify(w)
            return w
        }

        function test_errorPageAsksForThePasswordThenTimesOut() {
            var w = makeWindow()
            var user = findByName(w, "userField")
            user.text = "fran"
            fake.signIn("fran", "pw")
            tryCompare(fake, "stage", SessionBackend.Failed, 5000)
            compare(fake.failedStage, SessionBackend.Running)
            compare(w.currentPage, "error")
            var retry = findByName(w, "retryButton")
            verify(findByName(w, "retryPasswordField").visible)
            compare(retry.enabled, false)
            // Nobody touches it: back to an empty sign-in page, wiped.
            tryCompare(fake, "stage", SessionBackend.SignedOut, 5000)
            tryCompare(w, "currentPage", "signIn", 5000)
            compare(user.text, "")
            compare(fake.userName, "")
        }

        // Issue #16 item 12: a refused sign-in keeps the user name (so the
        // person can type the password again) and the error, but only
        // until failureIdleSeconds of quiet.
        function test_refusedSignInIsClearedAfterIdle() {
            var w = makeWindow()
            var user = findByName(w, "userField")
            var error = findByName(w, "errorLabel")
            user.text = "gus"
            findByName(w, "passwordField").text = "wrong"
            findByName(w, "signInButton").clicked()
            tryCompare(fake, "errorKind", SessionBackend.WrongCredentials, 5000)
            compare(w.currentPage, "signIn")
            compare(user.text, "gus")
            verify(error.visible)
            tryCompare(fake, "stage", SessionBackend.SignedOut, 5000)
            compare(user.text, "")
            compare(findByName(w, "passwordField").text, "")
            compare(error.visible, false)
        }

        // What someone typed and never sent (a user name, even a password)
        // is cleared too.
        function test_typedButNotSentIsClearedAfterIdle() {
            var w = makeWindow()
            var user = findByName(w, "userField")
            var password = findByName(w, "passwordField")
            compare(fake.stage, SessionBackend.SignedOut)
            user.text = "gus"
            password.text = "half a passw"
            // SignedOut throughout: this is the sign-in page's own watcher,
            // not the failure one.
            tryCompare(user, "text", "", 5000)
            compare(password.text, "")
            compare(fake.stage, SessionBackend.SignedOut)
        }

        function test_takeOverDialogAsksForThePasswordThenTimesOut() {
            var w = makeWindow()
            var user = findByName(w, "userField")
            user.text = "carol"
            fake.signIn("carol", "pw")
            tryCompare(fake, "errorKind", SessionBackend.LockedElsewhere, 5000)
            var dialog = findByName(w, "takeOverDialog")
            verify(dialog.visible)
            compare(findByName(w, "takeOverButton").enabled, false)
            tryCompare(fake, "stage", SessionBackend.SignedOut, 5000)
            tryCompare(w, "currentPage", "signIn", 5000)
            compare(dialog.visible, false)
            compare(user.text, "")
        }
    }
}
