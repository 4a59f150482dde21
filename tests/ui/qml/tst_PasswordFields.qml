import QtQuick
import QtTest
import Isr.Ui

// Issue #16 item 8, the typed password (Main.qml over the fake backend):
// every password field is empty once its password has left it -- a sign-in
// that succeeds or is refused, a retry, a take-over, an unlock -- and a
// password typed but never sent is gone when a timeout ends the session
// (the lock screen's idle timeout, the error page's and take-over dialog's
// failure timeout). (A successful sign-in used to leave the
// password in the hidden sign-in page for the whole session.)
Item {
    id: root
    width: 1024
    height: 640

    FakeSessionBackend {
        id: fake
        stepIntervalMs: 20
        Component.onCompleted: {
            addUser("hana", "pw")
            addUser("ivan", "pw") // fails where a test says (failAt)
            addUser("jo", "pw")   // held elsewhere where a test says (lockParcel)
        }
    }

    Component {
        id: mainComponent
        Main {}
    }

    TestCase {
        name: "PasswordFields"
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

        function makeWindow(props) {
            var all = { backend: fake, fullScreenWanted: false, failureIdleSeconds: 600,
                        lockTimeoutSeconds: 600, idleTimeoutSeconds: 900, leaveNoticeSeconds: 1 }
            for (const k in props)
                all[k] = props[k]
            var w = createTemporaryObject(mainComponent, root, all)
            verify(w)
            return w
        }

        function signInWith(w, user, password) {
            findByName(w, "userField").text = user
            findByName(w, "passwordField").text = password
            findByName(w, "signInButton").clicked()
        }

        function backToSignIn(w) {
            if (fake.stage === SessionBackend.Running)
                fake.suspendAndLeave()
            else if (fake.stage === SessionBackend.Failed)
                fake.acknowledge()
            tryCompare(fake, "stage", SessionBackend.SignedOut, 5000)
        }

        function test_signInThatSucceeds() {
            var w = makeWindow({})
            signInWith(w, "hana", "pw")
            compare(findByName(w, "passwordField").text, "") // at once
            tryCompare(fake, "stage", SessionBackend.Running, 5000)
            compare(findByName(w, "passwordField").text, "")
            backToSignIn(w)
        }

        function test_signInThatIsRefused() {
            var w = makeWindow({})
            signInWith(w, "hana", "wrong")
            compare(findByName(w, "passwordField").text, "")
            tryCompare(fake, "errorKind", SessionBackend.WrongCredentials, 5000)
            compare(findByName(w, "passwordField").text, "")
            compare(findByName(w, "userField").text, "hana") // kept, to type again
            backToSignIn(w)
        }

        function test_retryAndTakeOver() {
            var w = makeWindow({})
            fake.failAt("ivan", SessionBackend.Running, SessionBackend.VmFailed)
            fake.lockParcel("jo", "kiosk-9", new Date(2026, 0, 5, 9, 30))
            signInWith(w, "ivan", "pw")
            tryCompare(w, "currentPage", "error", 5000)
            var retryField = findByName(w, "retryPasswordField")
            retryField.text = "pw"
            findByName(w, "retryButton").clicked()
            compare(retryField.text, "")
            tryCompare(fake, "stage", SessionBackend.Running, 5000) // failAt fires once
            backToSignIn(w)

            signInWith(w, "jo", "pw")
            tryCompare(fake, "errorKind", SessionBackend.LockedElsewhere, 5000)
            var takeOverField = findByName(w, "takeOverPasswordField")
            takeOverField.text = "pw"
            findByName(w, "takeOverButton").clicked()
            compare(takeOverField.text, "")
            tryCompare(fake, "stage", SessionBackend.Running, 5000)
            backToSignIn(w)
        }

        // Typed on the error page or the take-over dialog and never sent:
        // gone when the failure's idle timeout abandons the session.
        function test_unsentPasswordsGoAtTheFailureTimeout() {
            var w = makeWindow({ failureIdleSeconds: 1 })
            fake.failAt("ivan", SessionBackend.Running, SessionBackend.VmFailed)
            signInWith(w, "ivan", "pw")
            tryCompare(w, "currentPage", "error", 5000)
            var retryField = findByName(w, "retryPasswordField")
            retryField.text = "half a passw"
            tryCompare(fake, "stage", SessionBackend.SignedOut, 5000)
            compare(retryField.text, "")

            fake.lockParcel("jo", "kiosk-9", new Date(2026, 0, 5, 9, 30))
            signInWith(w, "jo", "pw")
            tryCompare(fake, "errorKind", SessionBackend.LockedElsewhere, 5000)
            var takeOverField = findByName(w, "takeOverPasswordField")
            takeOverField.text = "half a passw"
            tryCompare(fake, "stage", SessionBackend.SignedOut, 5000)
            compare(takeOverField.text, "")
            compare(findByName(w, "passwordField").text, "")
        }

        function test_lockScreenUnlockAndIdleTimeout() {
            var w = makeWindow({ lockTimeoutSeconds: 1, idleTimeoutSeconds: 3,
                                 idleWarningSeconds: 1 })
            signInWith(w, "hana", "pw")
            tryCompare(w, "currentPage", "locked", 5000)
            var unlockField = findByName(w, "unlockPasswordField")
            unlockField.text = "pw"
            findByName(w, "unlockButton").clicked()
            compare(unlockField.text, "")
            tryCompare(w, "currentPage", "running", 5000)
            // Locked again; a password typed and never sent when the idle
            // timeout ends the session goes with the lock screen.
            tryCompare(w, "currentPage", "locked", 5000)
            unlockField.text = "half a passw"
            tryVerify(function() { return fake.stage !== SessionBackend.Running }, 8000,
                      "the idle timeout did not end the session")
            compare(unlockField.text, "")
            compare(findByName(w, "passwordField").text, "")
            backToSignIn(w)
        }
    }
}
