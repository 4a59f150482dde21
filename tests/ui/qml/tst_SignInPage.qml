import QtQuick
import QtTest
import Isr.Ui

// The sign-in page: the button is enabled only with both fields filled,
// Enter in the password field submits, busy disables input, errors show.
Item {
    id: root
    width: 1024
    height: 768

    SignInPage {
        id: page
        anchors.fill: parent
    }

    SignalSpy {
        id: spy
        target: page
        signalName: "signInRequested"
    }

    TestCase {
        name: "SignInPage"
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

        function init() {
            page.busy = false
            page.errorText = ""
            page.reset(false)
            spy.clear()
        }

        function test_buttonNeedsBothFields() {
            var user = findByName(page, "userField")
            var password = findByName(page, "passwordField")
            var button = findByName(page, "signInButton")
            verify(user && password && button)
            compare(button.enabled, false)
            user.text = "alice"
            compare(button.enabled, false)
            password.text = "secret"
            compare(button.enabled, true)
        }

        function test_typingAndEnterSubmits() {
            var user = findByName(page, "userField")
            user.forceActiveFocus()
            keyClick(Qt.Key_A)
            keyClick(Qt.Key_L)
            keyClick(Qt.Key_Return)  // moves to the password field
            keyClick(Qt.Key_P)
            keyClick(Qt.Key_W)
            keyClick(Qt.Key_Return)
            compare(spy.count, 1)
            compare(spy.signalArguments[0][0], "al")
            compare(spy.signalArguments[0][1], "pw")
        }

        // With the on-screen keyboard up (its height set by Main.qml), the
        // form moves above it: every field and the button stay uncovered.
        function test_formClearsTheOnScreenKeyboard() {
            var form = findByName(page, "signInForm")
            var button = findByName(page, "signInButton")
            verify(form && button)
            page.keyboardHeight = 400
            tryVerify(function() {
                return button.mapToItem(page, 0, button.height).y <= page.height - 400
            }, 1000, "the sign-in button is under the keyboard")
            verify(form.y >= 0)
            page.keyboardHeight = 0
            tryVerify(function() {
                return Math.abs(form.y - (page.height - form.height) / 2) < 1
            }, 1000, "the form is centred again without the keyboard")
        }

        function test_clickSubmits() {
            findByName(page, "userField").text = "bob"
            findByName(page, "passwordField").text = "pw"
            var button = findByName(page, "signInButton")
            mouseClick(button)
            compare(spy.count, 1)
            compare(spy.signalArguments[0][0], "bob")
        }

        function test_busyDisablesInput() {
            findByName(page, "userField").text = "bob"
            findByName(page, "passwordField").text = "pw"
            page.busy = true
            compare(findByName(page, "signInButton").enabled, false)
            compare(findByName(page, "userField").enabled, false)
            page.submit()
            compare(spy.count, 0)
        }

        function test_errorIsShown() {
            var label = findByName(page, "errorLabel")
            compare(label.visible, false)
            page.errorText = "Wrong user name or password"
            compare(label.visible, true)
            compare(label.text, "Wrong user name or password")
        }

        // Regression: Theme.qml must be registered as a singleton, or every
        // size and colour on the page is undefined.
        function test_themeSingletonResolves() {
            compare(Theme.touchTarget, 56)
            var button = findByName(page, "signInButton")
            verify(button.height >= Theme.touchTarget)
            compare(page.color, Theme.background)
        }

        function test_resetClearsPassword() {
            findByName(page, "userField").text = "bob"
            findByName(page, "passwordField").text = "pw"
            page.reset(true)
            compare(findByName(page, "passwordField").text, "")
            compare(findByName(page, "userField").text, "bob")
        }
    }
}
