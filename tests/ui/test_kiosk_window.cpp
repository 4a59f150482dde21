// The kiosk window with the fake session backend behind it: the real
// Main.qml, every stage shows its page, and the flows a person walks through
// (sign in, take over, errors, idle, Suspend & Leave) end where they should.
// One offscreen screenshot per page lands in <build>/tests/ui/screenshots/.
#include "escapechord.h"
#include "fakesessionbackend.h"
#include "kioskwindow.h"

#include <QDir>
#include <QQmlApplicationEngine>
#include <QQuickItem>
#include <QQuickWindow>
#include <QSignalSpy>
#include <QTest>
#include <QtQml/qqmlextensionplugin.h>

Q_IMPORT_QML_PLUGIN(Isr_UiPlugin)

using isr::ui::FakeSessionBackend;
using isr::ui::SessionBackend;
using Stage = SessionBackend::Stage;

namespace {

const QStringList kPages = {"signInPage", "progressPage", "runningPage", "leavingPage",
                            "errorPage"};

struct Kiosk {
    FakeSessionBackend fake;
    QQmlApplicationEngine engine;
    QQuickWindow* window = nullptr;

    explicit Kiosk(isr::ui::KioskOptions options = windowedOptions()) {
        fake.addUser("alice", "secret");
        if (isr::ui::showKioskWindow(engine, &fake, options))
            window = qobject_cast<QQuickWindow*>(engine.rootObjects().constFirst());
    }
    static isr::ui::KioskOptions windowedOptions() {
        isr::ui::KioskOptions options;
        options.windowed = true;
        return options;
    }
    QQuickItem* item(const char* name) const {
        return window->findChild<QQuickItem*>(QString::fromLatin1(name));
    }
    QString visiblePage() const {
        QStringList shown;
        for (const QString& name : kPages) {
            auto* page = window->findChild<QQuickItem*>(name);
            if (page && page->isVisible())
                shown << name;
        }
        return shown.join(',');
    }
    QString text(const char* name) const {
        auto* it = item(name);
        return it ? it->property("text").toString() : QStringLiteral("<missing %1>").arg(name);
    }
    bool click(const char* name) const {
        auto* it = item(name);
        if (!it || !it->isVisible() || !it->isEnabled())
            return false;
        const QPointF centre = it->mapToScene(QPointF(it->width() / 2, it->height() / 2));
        QTest::mouseClick(window, Qt::LeftButton, {}, centre.toPoint());
        return true;
    }
    void signInWithUi(const QString& user, const QString& password) const {
        item("userField")->setProperty("text", user);
        item("passwordField")->setProperty("text", password);
        QVERIFY(click("signInButton"));
    }
    void shot(const QString& name) const {
        const QString dir = QStringLiteral(QT_TESTCASE_BUILDDIR "/screenshots");
        QDir().mkpath(dir);
        QCoreApplication::processEvents();
        const QImage image = window->grabWindow();
        QVERIFY2(!image.isNull(), "grabWindow gave nothing");
        QVERIFY(image.save(dir + '/' + name + ".png"));
    }
};

} // namespace

class TestKioskWindow : public QObject {
    Q_OBJECT
private slots:
    void opensFullscreenWithSignInPage() {
        Kiosk kiosk{isr::ui::KioskOptions{}};
        QVERIFY(kiosk.window);
        QCOMPARE(kiosk.window->visibility(), QWindow::FullScreen);
        auto* page = kiosk.item("signInPage");
        QVERIFY(page);
        QVERIFY(QTest::qWaitForWindowExposed(kiosk.window));
        QCOMPARE(page->width(), kiosk.window->contentItem()->width());
        QCOMPARE(page->height(), kiosk.window->contentItem()->height());
        QVERIFY(kiosk.item("userField"));
        QVERIFY(kiosk.item("passwordField"));
        QVERIFY(kiosk.item("signInButton"));
        QCOMPARE(page->property("demoMode").toBool(), false);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("signInPage"));
        // One window only: every page and dialog lives in this scene.
        QCOMPARE(QGuiApplication::topLevelWindows().size(), 1);
    }

    void windowedAndDemoOptions() {
        isr::ui::KioskOptions options;
        options.windowed = true;
        options.demo = true;
        Kiosk kiosk(options);
        QVERIFY(kiosk.window);
        QVERIFY(kiosk.window->visibility() != QWindow::FullScreen);
        auto* hint = kiosk.item("demoHint");
        QVERIFY(hint);
        QCOMPARE(hint->isVisible(), true);
    }

    void legalTransitionsAreTheDocumentedOnes() {
        QVERIFY(SessionBackend::isLegalTransition(SessionBackend::SignedOut,
                                                  SessionBackend::Authenticating));
        QVERIFY(
            !SessionBackend::isLegalTransition(SessionBackend::SignedOut, SessionBackend::Running));
        QVERIFY(
            !SessionBackend::isLegalTransition(SessionBackend::Running, SessionBackend::SignedOut));
        QVERIFY(
            !SessionBackend::isLegalTransition(SessionBackend::Failed, SessionBackend::Running));
        // Every way back from a failure signs in again (issue #16): Failed
        // goes to Authenticating, never straight to CheckingOut.
        QVERIFY(SessionBackend::isLegalTransition(SessionBackend::Failed,
                                                  SessionBackend::Authenticating));
        QVERIFY(!SessionBackend::isLegalTransition(SessionBackend::Failed,
                                                   SessionBackend::CheckingOut));
        QVERIFY(!SessionBackend::isLegalTransition(SessionBackend::Suspending,
                                                   SessionBackend::SignedOut));
        // Every stage but SignedOut can fail.
        for (int s = SessionBackend::Authenticating; s < SessionBackend::Failed; ++s)
            QVERIFY(SessionBackend::isLegalTransition(Stage(s), SessionBackend::Failed));
    }

    // The whole happy path, one page per stage, with a screenshot of each.
    void everyStageRendersItsPage() {
        Kiosk kiosk;
        QVERIFY(kiosk.window);
        QVERIFY(QTest::qWaitForWindowExposed(kiosk.window));
        kiosk.shot("01-sign-in");

        kiosk.signInWithUi("alice", "secret");
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Authenticating);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("signInPage"));
        QCOMPARE(kiosk.item("signInButton")->isEnabled(), false);
        QCOMPARE(kiosk.item("signInBusy")->isVisible(), true);
        kiosk.shot("02-signing-in");

        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::CheckingOut);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("progressPage"));
        QCOMPARE(kiosk.item("cancelButton")->isEnabled(), true);

        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Fetching);
        kiosk.fake.step();
        kiosk.fake.step();
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("progressPage"));
        QVERIFY2(kiosk.text("bytesLabel").contains(" of "), qPrintable(kiosk.text("bytesLabel")));
        QVERIFY(kiosk.text("rateLabel").endsWith("/s"));
        QVERIFY(kiosk.item("timeLeftLabel")->isVisible());
        QVERIFY(kiosk.text("timeLeftLabel").startsWith("About "));
        kiosk.shot("03-fetching");

        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Restoring);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("progressPage"));
        QCOMPARE(kiosk.item("cancelButton")->isEnabled(), false);
        QCOMPARE(kiosk.item("timeLeftLabel")->isVisible(), false);

        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Running);
        kiosk.fake.step();
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("runningPage"));
        QVERIFY(kiosk.item("barHandle")->isVisible());
        QCOMPARE(kiosk.item("sessionBar")->isVisible(), false);
        kiosk.shot("04-running");

        QVERIFY(kiosk.click("barHandle"));
        QTRY_VERIFY(kiosk.item("sessionBar")->isVisible());
        QTRY_COMPARE(kiosk.item("sessionBar")->y(), 0.0); // slid in
        QVERIFY(kiosk.text("hoardLabel").contains('%'));
        kiosk.shot("05-running-bar-open");
        QVERIFY(kiosk.click("suspendButton"));
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Suspending);
        kiosk.fake.step();
        kiosk.fake.step();
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("leavingPage"));
        QCOMPARE(kiosk.text("leavingTitle"), QStringLiteral("Saving your computer…"));
        QVERIFY(kiosk.text("uploadBytesLabel").contains(" sent"));
        kiosk.shot("06-saving");

        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Wiping);
        QCOMPARE(kiosk.text("leavingTitle"), QStringLiteral("Clearing this kiosk…"));
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::SignedOut);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("leavingPage"));
        QCOMPARE(kiosk.text("leavingTitle"), QStringLiteral("You can leave now"));
        kiosk.shot("07-leave-now");

        QVERIFY(kiosk.click("leavingTitle")); // a tap anywhere
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("signInPage"));
        QCOMPARE(kiosk.item("passwordField")->property("text").toString(), QString());
        QCOMPARE(kiosk.item("userField")->property("text").toString(), QString());
    }

    void leaveNoticeReturnsToSignInByItself() {
        auto options = Kiosk::windowedOptions();
        options.leaveNoticeSeconds = 1;
        Kiosk kiosk(options);
        kiosk.fake.signIn("alice", "secret");
        while (kiosk.fake.stage() != SessionBackend::Running)
            QVERIFY(kiosk.fake.stepToNextStage() != SessionBackend::Failed);
        kiosk.fake.suspendAndLeave();
        while (kiosk.fake.stage() != SessionBackend::SignedOut)
            kiosk.fake.stepToNextStage();
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("leavingPage"));
        QTRY_COMPARE_WITH_TIMEOUT(kiosk.visiblePage(), QStringLiteral("signInPage"), 5000);
    }

    void wrongPasswordShowsErrorOnSignIn() {
        Kiosk kiosk;
        kiosk.signInWithUi("alice", "wrong");
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Failed);
        QCOMPARE(kiosk.fake.errorKind(), SessionBackend::WrongCredentials);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("signInPage"));
        QVERIFY(kiosk.item("errorLabel")->isVisible());
        QVERIFY(kiosk.text("errorLabel").contains("password"));
        // The user name stays, the password goes.
        QCOMPARE(kiosk.item("userField")->property("text").toString(), QStringLiteral("alice"));
        QCOMPARE(kiosk.item("passwordField")->property("text").toString(), QString());
        QVERIFY(kiosk.item("passwordField")->hasActiveFocus());
        kiosk.shot("08-wrong-password");
        // Signing in again from there works.
        kiosk.item("passwordField")->setProperty("text", "secret");
        QVERIFY(kiosk.click("signInButton"));
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::CheckingOut);
    }

    void takeOverFromAnotherKiosk() {
        Kiosk kiosk;
        const QDateTime since = QDateTime::currentDateTime().addSecs(-3600);
        kiosk.fake.lockParcel("alice", "kiosk-7 (hall B)", since);
        kiosk.signInWithUi("alice", "secret");
        kiosk.fake.stepToNextStage();
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Failed);
        QCOMPARE(kiosk.fake.errorKind(), SessionBackend::LockedElsewhere);
        QVERIFY(kiosk.item("takeOverDialog")->isVisible());
        QVERIFY(
            kiosk.text("takeOverTitle").startsWith("Your computer is open at another kiosk since"));
        QVERIFY(kiosk.text("takeOverHolder").contains("kiosk-7 (hall B)"));
        kiosk.shot("09-take-over");
        // Take over asks for the password (issue #16): without one, nothing.
        QCOMPARE(kiosk.item("takeOverButton")->isEnabled(), false);
        QVERIFY(kiosk.item("takeOverPasswordField")->hasActiveFocus());
        kiosk.item("takeOverPasswordField")->setProperty("text", "secret");
        QVERIFY(kiosk.click("takeOverButton"));
        // A fresh sign-in, the password checked before the lock is touched.
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Authenticating);
        QCOMPARE(kiosk.item("takeOverDialog")->isVisible(), false);
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::CheckingOut);
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Fetching);
    }

    void takeOverCancelled() {
        Kiosk kiosk;
        kiosk.fake.lockParcel("alice", "kiosk-7", QDateTime::currentDateTime());
        kiosk.fake.signIn("alice", "secret");
        kiosk.fake.stepToNextStage();
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Failed);
        // Keyboard: the password field has focus; with nothing typed, Tab
        // goes to Cancel; Enter.
        QTest::keyClick(kiosk.window, Qt::Key_Tab);
        QTest::keyClick(kiosk.window, Qt::Key_Return);
        QCOMPARE(kiosk.fake.stage(), SessionBackend::SignedOut);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("signInPage"));
        QCOMPARE(kiosk.item("takeOverDialog")->isVisible(), false);
    }

    void errorPageRetries() {
        Kiosk kiosk;
        kiosk.fake.failAt("alice", SessionBackend::Fetching, SessionBackend::StoreUnreachable);
        kiosk.fake.signIn("alice", "secret");
        kiosk.fake.stepToNextStage();
        kiosk.fake.stepToNextStage();
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Failed);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("errorPage"));
        QCOMPARE(kiosk.text("errorTitle"), QStringLiteral("Your computer could not be fetched"));
        QVERIFY(kiosk.text("errorMessage").contains("cannot reach"));
        // Try again asks for the password first (issue #16).
        QCOMPARE(kiosk.item("retryButton")->isEnabled(), false);
        QVERIFY(kiosk.item("retryPasswordField")->hasActiveFocus());
        kiosk.item("retryPasswordField")->setProperty("text", "secret");
        QVERIFY(kiosk.item("retryButton")->isEnabled());
        QVERIFY(kiosk.item("backButton")->isEnabled());
        kiosk.shot("10-error-retry");
        QSignalSpy stages(&kiosk.fake, &SessionBackend::stageChanged);
        QVERIFY(kiosk.click("retryButton"));
        // As Session::retry(password) does: sign in again, check out, fetch.
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Authenticating);
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::CheckingOut);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("progressPage"));
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Fetching);
        QCOMPARE(stages.count(), 3);
        QCOMPARE(stages.at(0).at(0).value<Stage>(), SessionBackend::Authenticating);
        QCOMPARE(stages.at(1).at(0).value<Stage>(), SessionBackend::CheckingOut);
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Restoring);
    }

    void vmEndingWhileRunningLeavesTheDisplayForTheErrorPage() {
        // The session's watcher reports the VM gone (Failed(Running,
        // VmFailed)) with no Suspend pressed: the VM display gives way to
        // the error page, whose way on is the last save.
        Kiosk kiosk;
        kiosk.fake.failAt("alice", SessionBackend::Running, SessionBackend::VmFailed);
        kiosk.fake.signIn("alice", "secret");
        while (kiosk.fake.stage() != SessionBackend::Running)
            QVERIFY(kiosk.fake.stepToNextStage() != SessionBackend::Failed);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("runningPage"));
        kiosk.fake.step();
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Failed);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("errorPage"));
        QCOMPARE(kiosk.text("errorTitle"), QStringLiteral("Your computer stopped"));
        QCOMPARE(kiosk.text("retryButton"), QStringLiteral("Start again from your last save"));
        kiosk.shot("12-error-vm-ended");
        QCOMPARE(kiosk.item("retryButton")->isEnabled(), false); // the password first
        kiosk.item("retryPasswordField")->setProperty("text", "secret");
        QVERIFY(kiosk.click("retryButton"));
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Authenticating);
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::CheckingOut);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("progressPage"));
    }

    void errorPageWithoutRetryGoesBack() {
        Kiosk kiosk;
        kiosk.fake.failAt("alice", SessionBackend::Restoring, SessionBackend::Corrupt);
        kiosk.fake.signIn("alice", "secret");
        for (int i = 0; i < 3; ++i)
            kiosk.fake.stepToNextStage();
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::Failed);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("errorPage"));
        QCOMPARE(kiosk.item("retryButton")->isEnabled(), false);
        QVERIFY(kiosk.text("errorMessage").contains("administrator"));
        kiosk.shot("11-error-no-retry");
        QVERIFY(kiosk.click("backButton"));
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Wiping);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("leavingPage"));
        QCOMPARE(kiosk.fake.stepToNextStage(), SessionBackend::SignedOut);
        // Not a Suspend & Leave: straight back to sign-in, no "leave now".
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("signInPage"));
    }

    void idleTimerWarnsThenSuspends() {
        auto options = Kiosk::windowedOptions();
        options.idleTimeoutSeconds = 2;
        options.idleWarningSeconds = 1;
        Kiosk kiosk(options);
        kiosk.fake.signIn("alice", "secret");
        while (kiosk.fake.stage() != SessionBackend::Running)
            kiosk.fake.stepToNextStage();
        auto* overlay = kiosk.item("idleOverlay");
        QVERIFY(overlay);
        QCOMPARE(overlay->isVisible(), false);
        QTRY_VERIFY_WITH_TIMEOUT(overlay->isVisible(), 5000);
        QCOMPARE(kiosk.fake.stage(), SessionBackend::Running);
        QVERIFY2(kiosk.text("idleCountdown").contains("1 s"),
                 qPrintable(kiosk.text("idleCountdown")));
        kiosk.shot("12-idle-warning");
        // Input resets it.
        QTest::mouseMove(kiosk.window, QPoint(10, 300));
        QCOMPARE(overlay->isVisible(), false);
        // Left alone, it warns again and then suspends on its own.
        QTRY_COMPARE_WITH_TIMEOUT(kiosk.fake.stage(), SessionBackend::Suspending, 8000);
        QCOMPARE(kiosk.visiblePage(), QStringLiteral("leavingPage"));
        QCOMPARE(overlay->isVisible(), false);
    }

    void idleTimerSleepsOutsideRunning() {
        auto options = Kiosk::windowedOptions();
        options.idleTimeoutSeconds = 1;
        options.idleWarningSeconds = 1;
        Kiosk kiosk(options);
        auto* watcher = kiosk.window->findChild<QObject*>("idleWatcher");
        QVERIFY(watcher);
        QCOMPARE(watcher->property("active").toBool(), false);
        QSignalSpy fired(watcher, SIGNAL(timedOut()));
        QVERIFY(!fired.wait(1500));
        QCOMPARE(kiosk.fake.stage(), SessionBackend::SignedOut);
    }

    void escapeChordOnlyForTheOperator() {
        Kiosk kiosk;
        QVERIFY(QTest::qWaitForWindowExposed(kiosk.window));
        isr::ui::EscapeChordFilter escape(isr::ui::EscapeChordFilter::defaultChord());
        QSignalSpy triggered(&escape, &isr::ui::EscapeChordFilter::triggered);
        kiosk.fake.signIn("alice", "secret");
        while (kiosk.fake.stage() != SessionBackend::Running)
            kiosk.fake.stepToNextStage();
        auto* display = kiosk.item("vncDisplay");
        QVERIFY(display);
        QTRY_COMPARE(kiosk.window->activeFocusItem(), display);
        QTest::keyClick(kiosk.window, Qt::Key_Tab, Qt::AltModifier);
        QTest::keyClick(kiosk.window, Qt::Key_Q, Qt::ControlModifier | Qt::AltModifier);
        QCOMPARE(triggered.count(), 0);
        // Alt+Tab went to the display, not to focus navigation.
        QCOMPARE(kiosk.window->activeFocusItem(), display);
        QTest::keyClick(kiosk.window, Qt::Key_Q,
                        Qt::ControlModifier | Qt::AltModifier | Qt::ShiftModifier);
        QCOMPARE(triggered.count(), 1);
        isr::ui::EscapeChordFilter custom(QKeySequence::fromString("Ctrl+Alt+End"));
        QSignalSpy customTriggered(&custom, &isr::ui::EscapeChordFilter::triggered);
        QTest::keyClick(kiosk.window, Qt::Key_End, Qt::ControlModifier | Qt::AltModifier);
        QCOMPARE(customTriggered.count(), 1);
    }
};

QTEST_MAIN(TestKioskWindow)
#include "test_kiosk_window.moc"
