// SessionController without a VM: when core cannot create a session (here a
// state directory that is not absolute), the kiosk shows a typed failure and
// acknowledging it returns to sign-in instead of leaving the error page up
// for good. And the real backend's failures — a real core Session against a
// FileStore: a wrong password, a user with no computer, the store gone — are
// shown in the words of ui/text, through tr(): a translator installed here
// marks every sentence it translates, and errorMessage carries the marks.
// The kiosk told to stop (issue #19) on the pages without a VM: an error
// page is left for SignedOut at once, sign-in is refused while stopping; a
// real SIGTERM reaches the controller through KioskShutdown.
// The lock screen's checkPassword() outside Running answers "not checked"
// and changes nothing (the Running case: core's test_session_security).
// The VM paths are in test_session_display and tests/e2e/kiosk-sigterm.sh.
#include "failuretext.h"
#include "kioskshutdown.h"
#include "parcel/parcel.h"
#include "sessioncontroller.h"
#include "store/store.h"
#include "testsupport.h"

#include <QCoreApplication>
#include <QSignalSpy>
#include <QTest>
#include <QTranslator>
#include <csignal>
#include <filesystem>

using B = isr::ui::SessionBackend;
namespace fs = std::filesystem;

namespace {

// Translates the FailureText context into "«xx»" + the English source, so a
// test can see that a string went through tr() with this translator.
class MarkingTranslator : public QTranslator {
public:
    QString translate(const char* context, const char* source, const char* /*disambiguation*/,
                      int /*n*/) const override {
        if (qstrcmp(context, "FailureText") != 0)
            return {};
        return QStringLiteral("\u00abxx\u00bb") + QString::fromUtf8(source);
    }
    bool isEmpty() const override { return false; }
};

const QString kMark = QStringLiteral("\u00abxx\u00bb");

} // namespace

class TestSessionController : public QObject {
    Q_OBJECT

private slots:
    void sessionThatCannotStartIsAcknowledged() {
        isr::session::KioskConfig config;
        config.stateDir = "not/absolute";
        config.storeUrl = "file:///nonexistent/store";
        isr::ui::SessionController controller(config, QString());
        QList<B::Stage> stages;
        connect(&controller, &B::stageChanged, this, [&](B::Stage s) { stages.append(s); });

        controller.signIn("demo", "demo");
        QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::Failed, 30000);
        QCOMPARE(controller.errorKind(), B::Internal);
        QCOMPARE(controller.failedStage(), B::Authenticating);
        QVERIFY(controller.errorMessage().contains("not/absolute") ||
                controller.errorMessage().contains("cannot start sessions"));
        QCOMPARE(controller.userName(), QStringLiteral("demo"));
        // Every step the UI saw is a legal one.
        B::Stage from = B::SignedOut;
        for (B::Stage to : stages) {
            QVERIFY2(B::isLegalTransition(from, to),
                     qPrintable(B::stageName(from) + " -> " + B::stageName(to)));
            from = to;
        }

        controller.acknowledge();
        QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::SignedOut, 30000);
        QCOMPARE(controller.errorKind(), B::None);
        QVERIFY(B::isLegalTransition(B::Failed, B::SignedOut));
    }

    void realFailuresAreShownTranslated() {
        isr::test::requirePrograms({"qemu-system-x86_64"});
        isr::test::TempDir dir;
        const std::string storeDir = dir.file("store");
        fs::create_directories(storeDir);
        {
            auto store = isr::store::openStore("file://" + storeDir);
            QVERIFY(store.ok());
            QVERIFY(isr::parcel::initStore(**store, isr::crypto::KdfParams::minimal()).ok());
            QVERIFY(isr::parcel::createAccount(**store, "nobox", "right").ok());
        }
        MarkingTranslator marks;
        QVERIFY(QCoreApplication::installTranslator(&marks));

        isr::session::KioskConfig config;
        config.kioskId = "test-kiosk";
        config.stateDir = dir.file("kiosk");
        config.storeUrl = "file://" + storeDir;
        isr::ui::SessionController controller(config, QString());
        auto failWith = [&](const QString& user, const QString& password) {
            controller.signIn(user, password);
            QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::Failed, 120000);
            QVERIFY(controller.failure().has_value());
            // The backend's words are the renderer's for the core's facts,
            // translated: never the core's own English sentence.
            QCOMPARE(controller.errorMessage(), isr::ui::text::failure(*controller.failure()));
            QVERIFY2(controller.errorMessage().startsWith(kMark),
                     qPrintable(controller.errorMessage()));
            QVERIFY(!controller.errorDetail().isEmpty());
        };
        auto backToSignIn = [&] {
            controller.acknowledge();
            QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::SignedOut, 60000);
        };

        failWith("nobox", "wrong");
        if (QTest::currentTestFailed())
            return;
        QCOMPARE(controller.errorKind(), B::WrongCredentials);
        QCOMPARE(controller.failedStage(), B::Authenticating);
        QVERIFY2(controller.errorMessage().contains("password"),
                 qPrintable(controller.errorMessage()));
        // The lock screen's check answers only for a running computer: even
        // the right password unlocks nothing here, and nothing changes.
        {
            QSignalSpy checked(&controller, &B::passwordChecked);
            controller.checkPassword("right");
            QVERIFY(checked.wait(30000));
            QCOMPARE(checked.at(0).at(0).toBool(), false);
            QCOMPARE(checked.at(0).at(1).value<B::ErrorKind>(), B::Internal);
            QCOMPARE(controller.stage(), B::Failed);
            QCOMPARE(controller.errorKind(), B::WrongCredentials);
        }
        backToSignIn();

        // Signed in, but there is no computer to open.
        failWith("nobox", "right");
        if (QTest::currentTestFailed())
            return;
        QCOMPARE(controller.failedStage(), B::CheckingOut);
        QVERIFY(controller.errorKind() != B::None);
        backToSignIn();

        // The store's directory is gone (an unmounted share): unreachable.
        fs::rename(storeDir, storeDir + ".away");
        failWith("nobox", "right");
        if (QTest::currentTestFailed())
            return;
        QCOMPARE(controller.errorKind(), B::StoreUnreachable);
        QVERIFY2(controller.errorMessage().contains("cannot reach"),
                 qPrintable(controller.errorMessage()));
        backToSignIn();

        QCoreApplication::removeTranslator(&marks);
    }
    // kioskStopping() on the error page abandons (keys wiped) and ends at
    // SignedOut; sign-in is refused until the stop is withdrawn. Then a real
    // SIGTERM through KioskShutdown: the controller is told to stop, and the
    // signal is remembered for main() to re-raise.
    void kioskStoppingWithoutAVm() {
        // A kiosk that cannot create sessions (one libvirt root per process:
        // the tests above own it): its error page is the one without a VM.
        isr::session::KioskConfig config;
        config.stateDir = "not/absolute";
        config.storeUrl = "file:///nonexistent/store";
        isr::ui::SessionController controller(config, QString());
        QSignalSpy shutdownChanges(&controller, &B::shuttingDownChanged);

        controller.signIn("demo", "demo");
        QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::Failed, 30000);
        controller.kioskStopping(true);
        QVERIFY(controller.shuttingDown());
        QCOMPARE(shutdownChanges.count(), 1);
        QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::SignedOut, 60000);
        QCOMPARE(controller.errorKind(), B::None);

        // Going away: no new session.
        controller.signIn("demo", "demo");
        QTest::qWait(1500);
        QCOMPARE(controller.stage(), B::SignedOut);

        // The announced shutdown did not happen: sign-in works again.
        controller.kioskStopping(false);
        QVERIFY(!controller.shuttingDown());
        controller.signIn("demo", "demo");
        QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::Failed, 30000);
        QCOMPARE(controller.errorKind(), B::Internal);

        // A real SIGTERM: the handler, the watchdog thread, the GUI thread.
        // (The stop timeout is far away: no hard end in this test.)
        {
            isr::ui::KioskShutdown shutdown(QString(), 3600);
            shutdown.attach(&controller, [&] { controller.kioskStopping(true); });
            QVERIFY(!shutdown.quitting());
            QCOMPARE(std::raise(SIGTERM), 0);
            QTRY_VERIFY_WITH_TIMEOUT(shutdown.quitting(), 10000);
            QVERIFY(controller.shuttingDown());
            QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::SignedOut, 60000);
            QCOMPARE(isr::ui::ShutdownSignals::firstSignal(), SIGTERM);
            // No system bus here: no inhibitor, and no harm done.
            QVERIFY(!shutdown.inhibitor().held());
        }
    }
};

QTEST_GUILESS_MAIN(TestSessionController)
#include "test_session_controller.moc"
