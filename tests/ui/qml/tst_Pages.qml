import QtQuick
import QtTest
import Isr.Ui

// Each page on its own, bound to a FakeSessionBackend driven step by step:
// what it shows and which buttons are enabled, per stage.
Item {
    id: root
    width: 1024
    height: 640

    FakeSessionBackend {
        id: fake
        Component.onCompleted: {
            addUser("bob", "pw")
            addUser("carol", "pw")
            lockParcel("carol", "kiosk-2", new Date(2026, 0, 5, 9, 30))
            addUser("dave", "pw")
            failAt("dave", SessionBackend.Suspending, SessionBackend.NoSpace)
            addUser("fran", "pw")
            failAt("fran", SessionBackend.Running, SessionBackend.VmFailed)
            addUser("erin", "pw")
            failAt("erin", SessionBackend.Authenticating, SessionBackend.StoreUnreachable)
        }
    }

    ProgressPage { id: progress; anchors.fill: parent; backend: fake; visible: false }
    ErrorPage { id: error; anchors.fill: parent; backend: fake; visible: false }
    RunningPage { id: running; anchors.fill: parent; backend: fake; visible: false }
    LeavingPage { id: leaving; anchors.fill: parent; backend: fake; visible: false }
    TakeOverDialog { id: takeOver; anchors.fill: parent; backend: fake; visible: false }

    SignalSpy { id: finishedSpy; target: leaving; signalName: "finished" }

    TestCase {
        name: "Pages"
        when: windowShown

        function findByName(item, name) {
            if (item.objectName === name)
                return item
            for (var i = 0; i < item.children.length; ++i) {
                var found = findByName(item.children[i], name)
                if (found)
                    return found
            }
            return null
        }

        function show(page) {
            for (const p of [progress, error, running, leaving, takeOver])
                p.visible = (p === page)
        }

        function save(page, name) {
            var image = grabImage(page)
            verify(image.width > 0)
            image.save(artifactDir + "/qml-" + name + ".png")
        }

        // Drive the fake to `stage` for `user` from wherever it is.
        function reach(user, stage) {
            // A previous test may have left it anywhere, e.g. CheckingOut
            // after a take-over, which steps on to Running and stays there.
            while (fake.stage !== SessionBackend.SignedOut) {
                if (fake.stage === SessionBackend.Failed)
                    fake.acknowledge()
                else if (fake.stage === SessionBackend.Running)
                    fake.suspendAndLeave()
                else
                    fake.stepToNextStage()
            }
            fake.signIn(user, "pw")
            while (fake.stage !== stage && fake.stage !== SessionBackend.Failed)
                fake.stepToNextStage()
            compare(fake.stage, stage)
        }

        function test_progressShowsStagesAndBytes() {
            reach("bob", SessionBackend.Fetching)
            show(progress)
            fake.step()
            var bytes = findByName(progress, "bytesLabel")
            verify(bytes.text.indexOf("192 MiB of 768 MiB") === 0, bytes.text)
            var current = findByName(progress, "step_" + SessionBackend.Fetching)
            verify(current.current)
            verify(findByName(progress, "step_" + SessionBackend.CheckingOut).finished)
            verify(findByName(progress, "timeLeftLabel").visible)
            verify(findByName(progress, "cancelButton").enabled)
            save(progress, "progress")
            mouseClick(findByName(progress, "cancelButton"))
            compare(fake.stage, SessionBackend.Wiping)
        }

        // Once the version is checked, the page says what it resumes, in
        // local time and with the kiosk that saved it: the person who knows
        // when and where they last saved would see an older copy here.
        function test_progressSaysWhatItResumes() {
            var saved = new Date()
            saved.setDate(saved.getDate() - 2)
            saved.setHours(14, 2, 0, 0)
            fake.addUser("gina", "pw")
            fake.setLastSave("gina", 3, saved, "gate-23")
            reach("gina", SessionBackend.CheckingOut)
            show(progress)
            var label = findByName(progress, "resumingFromLabel")
            compare(label.visible, false) // not checked yet
            compare(fake.stepToNextStage(), SessionBackend.Fetching)
            verify(label.visible)
            verify(label.text.indexOf("Saved ") === 0, label.text)
            verify(label.text.indexOf("14:02 at kiosk gate-23") > 0, label.text)
            save(progress, "progress-resuming-from")
            mouseClick(findByName(progress, "cancelButton"))
            compare(fake.stage, SessionBackend.Wiping)
            fake.stepToNextStage()
            compare(fake.stage, SessionBackend.SignedOut)
            compare(fake.resumingFrom, "")
        }

        function test_takeOverDialogText() {
            reach("carol", SessionBackend.Failed)
            compare(fake.errorKind, SessionBackend.LockedElsewhere)
            show(takeOver)
            var title = findByName(takeOver, "takeOverTitle")
            verify(title.text.indexOf("Your computer is open at another kiosk since") === 0)
            verify(title.text.indexOf("2026") >= 0 || title.text.indexOf("26") >= 0, title.text)
            verify(findByName(takeOver, "takeOverHolder").text.indexOf("kiosk-2") >= 0)
            save(takeOver, "take-over")
            // Take over asks for the password: no password, no take-over.
            var button = findByName(takeOver, "takeOverButton")
            compare(button.enabled, false)
            mouseClick(button)
            compare(fake.stage, SessionBackend.Failed)
            findByName(takeOver, "takeOverPasswordField").text = "pw"
            verify(button.enabled)
            mouseClick(button)
            // A fresh sign-in, the password checked before the lock.
            compare(fake.stage, SessionBackend.Authenticating)
            compare(fake.stepToNextStage(), SessionBackend.CheckingOut)
            compare(findByName(takeOver, "takeOverPasswordField").text, "")
        }

        function test_runningHandleOpensBarAndSuspends() {
            reach("bob", SessionBackend.Running)
            show(running)
            fake.step()
            var bar = findByName(running, "sessionBar")
            compare(bar.visible, false)
            verify(findByName(running, "handleHoardLabel").text.indexOf("% local") > 0)
            mouseClick(findByName(running, "barHandle"))
            tryCompare(bar, "visible", true)
            save(running, "running-bar")
            // Keyboard: the suspend button has focus; Enter activates it.
            keyClick(Qt.Key_Return)
            compare(fake.stage, SessionBackend.Suspending)
        }

        function test_errorDuringSuspendOffersRetry() {
            reach("dave", SessionBackend.Running)
            fake.suspendAndLeave()
            fake.step()
            compare(fake.stage, SessionBackend.Failed)
            compare(fake.failedStage, SessionBackend.Suspending)
            show(error)
            compare(findByName(error, "errorTitle").text, "Your computer could not be saved")
            verify(findByName(error, "errorMessage").text.length > 20)
            var retry = findByName(error, "retryButton")
            var password = findByName(error, "retryPasswordField")
            verify(password.visible)
            compare(retry.enabled, false) // the password first
            password.text = "wrong"
            verify(retry.enabled)
            save(error, "error")
            mouseClick(retry)
            // Refused: nothing changed, the page says so.
            compare(fake.stage, SessionBackend.Failed)
            verify(findByName(error, "retryRefused").visible)
            compare(password.text, "")
            password.text = "pw"
            mouseClick(retry)
            compare(fake.stage, SessionBackend.Suspending)
        }

        // The VM ended while running (QEMU died, the guest powered off): the
        // display gives way to the error page, whose way on says it resumes
        // the last save.
        function test_vmEndedWhileRunningOffersTheLastSave() {
            reach("fran", SessionBackend.Running)
            fake.step()
            compare(fake.stage, SessionBackend.Failed)
            compare(fake.failedStage, SessionBackend.Running)
            compare(fake.errorKind, SessionBackend.VmFailed)
            show(error)
            compare(findByName(error, "errorTitle").text, "Your computer stopped")
            // The renderer's words for the facts: the last save is named.
            compare(fake.failureCause, "vm-stopped")
            compare(fake.lastSavedVersion, 1)
            compare(fake.lastSavedKiosk, "kiosk-1")
            var message = findByName(error, "errorMessage").text
            verify(message.indexOf("Your last saved version (version 1, saved ") >= 0, message)
            verify(message.indexOf("at kiosk-1) is safe.") >= 0, message)
            var retry = findByName(error, "retryButton")
            compare(retry.enabled, false) // the kiosk holds no keys: the password first
            findByName(error, "retryPasswordField").text = "pw"
            verify(retry.enabled)
            compare(retry.text, "Start again from your last save")
            compare(findByName(error, "backButton").text, "Back to sign-in")
            save(error, "error-vm-ended")
            mouseClick(retry)
            // A fresh sign-in, then the stages up to the VM again.
            compare(fake.stage, SessionBackend.Authenticating)
            compare(fake.stepToNextStage(), SessionBackend.CheckingOut)
            compare(fake.stepToNextStage(), SessionBackend.Fetching)
            compare(fake.stepToNextStage(), SessionBackend.Restoring)
            // Running again (the injected failure fired once), which the
            // next test's reach() can leave.
            compare(fake.stepToNextStage(), SessionBackend.Running)
        }

        // The store is unreachable at sign-in: the kiosk keeps no password,
        // so "Try again" cannot help; "Back to sign-in" has the focus.
        function test_storeUnreachableAtSignInGoesBack() {
            reach("erin", SessionBackend.Failed)
            compare(fake.failedStage, SessionBackend.Authenticating)
            compare(fake.errorKind, SessionBackend.StoreUnreachable)
            show(error)
            compare(findByName(error, "retryButton").enabled, false)
            verify(findByName(error, "backButton").activeFocus)
            keyClick(Qt.Key_Return)
            compare(fake.stage, SessionBackend.SignedOut)
        }

        // The hoard held back: one quiet line on the running page, which
        // goes away when the hoard gets through again.
        function test_hoardProblemIsAQuietLine() {
            reach("bob", SessionBackend.Running)
            show(running)
            var notice = findByName(running, "hoardNotice")
            compare(notice.visible, false)
            fake.holdHoard(SessionBackend.NoSpace)
            compare(fake.hoardProblemKind, SessionBackend.NoSpace)
            verify(notice.visible)
            var line = findByName(running, "hoardProblemLabel").text
            verify(line.indexOf("disk is nearly full") >= 0, line)
            verify(line.indexOf("keeps running") >= 0, line)
            // Held back: the hoard does not move.
            var cached = fake.hoardChunksCached
            fake.step()
            compare(fake.hoardChunksCached, cached)
            compare(fake.stage, SessionBackend.Running)
            save(running, "running-hoard-problem")
            fake.holdHoard(SessionBackend.StoreUnreachable)
            verify(findByName(running, "hoardProblemLabel").text.indexOf("store") >= 0)
            fake.holdHoard(SessionBackend.None)
            compare(notice.visible, false)
            fake.step()
            verify(fake.hoardChunksCached > cached)
        }

        function test_leavingDoneFinishesOnTap() {
            reach("bob", SessionBackend.Running)
            fake.suspendAndLeave()
            show(leaving)
            fake.step()
            verify(findByName(leaving, "uploadBytesLabel").text.indexOf("sent") > 0)
            while (fake.stage !== SessionBackend.SignedOut)
                fake.stepToNextStage()
            finishedSpy.clear()
            leaving.noticeSeconds = 60
            leaving.done = true
            compare(findByName(leaving, "leavingTitle").text, "You can leave now")
            save(leaving, "leave-now")
            mouseClick(leaving)
            compare(finishedSpy.count, 1)
            leaving.done = false
        }

        function test_leavingDoneFinishesByItself() {
            finishedSpy.clear()
            leaving.noticeSeconds = 1
            leaving.done = true
            finishedSpy.wait(3000)
            compare(finishedSpy.count, 1)
            leaving.done = false
        }
    }
}
