import QtQuick
import QtTest
import Isr.Ui

// Issue #16 item 1, in the kiosk window itself (Main.qml over the fake
// backend): the error page and the take-over dialog ask for the password
// before Retry / Take over do anything, and after failureIdleSeconds of
// quiet the kiosk abandons (wipes) and shows an empty sign-in page, the
// typed user name cleared.
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
