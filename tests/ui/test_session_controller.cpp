// SessionController without a VM: when core cannot create a session (here a
// state directory that is not absolute), the kiosk shows a typed failure and
// acknowledging it returns to sign-in instead of leaving the error page up
// for good. The VM paths are in test_session_display.
#include "sessioncontroller.h"

#include <QSignalSpy>
#include <QTest>

using B = isr::ui::SessionBackend;

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
};

QTEST_GUILESS_MAIN(TestSessionController)
#include "test_session_controller.moc"
