import QtQuick
import QtTest
import Isr.Ui

// Issue #16 item 12, the lock screen, in the kiosk window itself (Main.qml
// over the fake backend): after lockTimeoutSeconds of quiet a running
// computer is hidden behind the lock screen (no display, no input to it);
// the signed-in user's password unlocks it, a wrong one (or one that could
// not be checked) says so; Suspend & Leave works from it; and the session
// still ends at idleTimeoutSeconds however much is typed on the lock screen.
Item {
    id: root
    width: 1024
    height: 640

    FakeSessionBackend {
        id: fake
        Component.onCompleted: addUser("dana", "pw")
    }

    Component {
        id: mainComponent
        Main {}
    }

    TestCase {
        name: "LockScreen"
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

        // Back to SignedOut, then dana's computer Running.
        function reachRunning() {
            while (fake.stage !== SessionBackend.SignedOut) {
                if (fake.stage === SessionBackend.Failed)
                    fake.acknowledge()
                else if (fake.stage === SessionBackend.Running)
                    fake.suspendAndLeave()
                else
                    fake.stepToNextStage()
            }
            fake.failPasswordCheck(SessionBackend.None)
            fake.signIn("dana", "pw")
            while (fake.stage !== SessionBackend.Running && fake.stage !== SessionBackend.Failed)
                fake.stepToNextStage()
            compare(fake.stage, SessionBackend.Running)
        }

        function makeWindow(props) {
            var all = { backend: fake, fullScreenWanted: false, lockTimeoutSeconds: 1,
                        idleTimeoutSeconds: 600, leaveNoticeSeconds: 1 }
            for (const k in props)
                all[k] = props[k]
            var w = createTemporaryObject(mainComponent, root, all)
            verify(w)
            return w
        }

        function unlockWith(w, password) {
            findByName(w, "unlockPasswordField").text = password
            findByName(w, "unlockButton").clicked()
        }

        function test_locksAfterIdleAndUnlocksWithThePassword() {
            var w = makeWindow({})
            reachRunning()
            compare(w.currentPage, "running")
            var display = findByName(w, "vncDisplay")
            // Nobody touches it: the lock screen covers the computer.
            tryCompare(w, "currentPage", "locked", 5000)
            var lock = findByName(w, "lockScreen")
            verify(lock.visible)
            compare(findByName(w, "runningPage").visible, false)
            compare(display.activeFocus, false)
            verify(findByName(w, "lockUser").text.indexOf("dana") >= 0)
            var image = grabImage(w.contentItem)
            image.save(artifactDir + "/qml-lock-screen.png")

            // An empty field cannot be sent; a wrong password says so.
            compare(findByName(w, "unlockButton").enabled, false)
            unlockWith(w, "wrong")
            compare(findByName(w, "unlockPasswordField").text, "") // not kept
            tryVerify(function() { return findByName(w, "unlockRefused").text.indexOf("not right") >= 0 },
                      5000, "a wrong password is refused")
            compare(w.currentPage, "locked")
            compare(fake.stage, SessionBackend.Running)

            // A password that could not be checked says that instead.
            fake.failPasswordCheck(SessionBackend.StoreUnreachable)
            unlockWith(w, "pw")
            tryVerify(function() { return findByName(w, "unlockRefused").text.indexOf("could not be checked") >= 0 },
                      5000, "an unchecked password does not unlock")
            compare(w.currentPage, "locked")
            fake.failPasswordCheck(SessionBackend.None)

            // The right one: back to the computer, the display focused.
            unlockWith(w, "pw")
            tryCompare(w, "currentPage", "running", 5000)
            tryCompare(display, "activeFocus", true, 5000)
            compare(fake.stage, SessionBackend.Running)
            // And it locks again after the next quiet spell.
            tryCompare(w, "currentPage", "locked", 5000)
            compare(findByName(w, "unlockRefused").text, "")
        }

        function test_suspendAndLeaveFromTheLock() {
            var w = makeWindow({})
            reachRunning()
            tryCompare(w, "currentPage", "locked", 5000)
            findByName(w, "lockSuspendButton").clicked()
            compare(fake.stage, SessionBackend.Suspending)
            compare(w.currentPage, "leaving")
            compare(w.locked, false)
        }

        // idle_timeout still ends the session from the lock screen, and
        // typing there (the next person trying passwords) does not push it
        // back: the keys below arrive every 200 ms, well inside the 3 s left.
        function test_lockedSessionEndsAtTheIdleTimeout() {
            var w = makeWindow({ idleTimeoutSeconds: 4, idleWarningSeconds: 2 })
            reachRunning()
            tryCompare(w, "currentPage", "locked", 5000)
            var countdown = findByName(w, "lockCountdown")
            var sawCountdown = false
            for (var i = 0; i < 100 && fake.stage === SessionBackend.Running; ++i) {
                keyClick(Qt.Key_X)
                wait(200)
                sawCountdown = sawCountdown || countdown.visible
            }
            compare(fake.stage, SessionBackend.Suspending)
            verify(sawCountdown, "the lock screen showed the countdown")
        }

        // With lock_timeout at or above idle_timeout there is no lock screen.
        // The session ends by the idle timeout (its warning over the
        // computer) without the lock screen ever showing.
        function test_noLockWhenTheIdleTimeoutComesFirst() {
            var w = makeWindow({ lockTimeoutSeconds: 2, idleTimeoutSeconds: 2,
                                 idleWarningSeconds: 1 })
            var sawLock = false
            w.currentPageChanged.connect(function() {
                sawLock = sawLock || w.currentPage === "locked"
            })
            reachRunning()
            tryCompare(fake, "stage", SessionBackend.Suspending, 10000)
            verify(!sawLock, "the lock screen showed")
        }
    }
}
