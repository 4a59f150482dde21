// The display item against a real VM through the real backend: the demo
// parcel (`isrctl demo init`) resumed in this process by SessionController
// over core/session, its display (virDomainOpenGraphicsFD through
// Session::openDisplay, opened before Running is announced) shown by
// VncDisplay bound to the backend's DisplaySource. Keys typed into the item reach
// the guest's tty1 shell (checked over the serial console), the framebuffer
// changes, a pointer click is delivered; Suspend & Leave commits a version
// and leaves no session behind.
//
// In-process on purpose: libvirt's embedded driver allows one root per
// process, so the test cannot open the display of a VM another process owns.
#include "sessioncontroller.h"
#include "testsupport.h"
#include "util/json.h"
#include "vmguest.h"
#include "vncconnection.h"
#include "vncdisplay.h"

#include <QDir>
#include <QQuickWindow>
#include <QSignalSpy>
#include <QTest>
#include <QtQml/qqmlextensionplugin.h>
#include <string>

using namespace std::chrono_literals;
using B = isr::ui::SessionBackend;

namespace {

// Pixels that differ between two images of one size, below `top` (the
// guest's counter ticks in the first text row).
int changedBelow(const QImage& a, const QImage& b, int top) {
    if (a.size() != b.size())
        return -1;
    int n = 0;
    for (int y = top; y < a.height(); ++y)
        for (int x = 0; x < a.width(); ++x)
            n += a.pixel(x, y) != b.pixel(x, y);
    return n;
}

} // namespace

class TestSessionDisplay : public QObject {
    Q_OBJECT
    QString isrctl_;
    std::unique_ptr<isr::test::TempDir> dir_;
    isr::test::GuestImage guest_;
    QString store_;

    QString serialSocket(const QString& stateDir) {
        QDir sessions(stateDir + "/sessions");
        for (const QString& d : sessions.entryList(QDir::Dirs | QDir::NoDotAndDotDot))
            if (QFile::exists(sessions.filePath(d + "/serial.sock")))
                return sessions.filePath(d + "/serial.sock");
        return {};
    }

private slots:
    void initTestCase() {
        isrctl_ = qEnvironmentVariable("ISRCTL");
        QVERIFY(!isrctl_.isEmpty());
        isr::test::requirePrograms({"qemu-system-x86_64", "qemu-img"});
        guest_ = isr::test::requireGuest();
        dir_ = std::make_unique<isr::test::TempDir>();
        store_ = QString::fromStdString("file://" + dir_->file("demo/store"));
        auto init = isr::test::runProcess(isrctl_,
                                          {"demo", "init", "--data-dir",
                                           QString::fromStdString(dir_->file("demo")),
                                           "--guest-dir", QString::fromStdString(guest_.dir)},
                                          {}, 600000);
        QVERIFY2(init.exitCode == 0, (init.out + init.err).c_str());
        QDir().mkpath(QStringLiteral(QT_TESTCASE_BUILDDIR "/screenshots"));
    }

    void typeIntoTheRunningGuest() {
        isr::session::KioskConfig config;
        config.kioskId = "test-kiosk";
        config.stateDir = dir_->file("kiosk");
        config.storeUrl = store_.toStdString();
        config.guestDir = guest_.dir;
        config.serialConsole = true;
        isr::ui::SessionController controller(config, QString());
        // The display is open before Running is announced: when the page
        // would show, a connection already waits in the display source.
        int runningAnnounced = 0, displayWaiting = 0;
        connect(&controller, &B::stageChanged, this, [&](B::Stage s) {
            if (s == B::Running) {
                ++runningAnnounced;
                displayWaiting += controller.display()->hasPendingFd();
            }
        });

        // A wrong password is a typed failure, and the kiosk can go on.
        controller.signIn("demo", "not-the-password");
        QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::Failed, 120000);
        QCOMPARE(controller.errorKind(), B::WrongCredentials);
        QCOMPARE(controller.failedStage(), B::Authenticating);
        controller.acknowledge();
        QTRY_COMPARE_WITH_TIMEOUT(controller.stage(), B::SignedOut, 60000);

        controller.signIn("demo", "demo");
        QTRY_VERIFY_WITH_TIMEOUT(
            controller.stage() == B::Running || controller.stage() == B::Failed, 600000);
        QVERIFY2(controller.stage() == B::Running, qPrintable(controller.errorMessage()));
        QCOMPARE(controller.userName(), QStringLiteral("demo"));
        QCOMPARE(runningAnnounced, 1);
        QCOMPARE(displayWaiting, 1);
        QVERIFY(controller.display()->isAvailable());

        QQuickWindow window;
        window.resize(1024, 768);
        isr::ui::VncDisplay display(window.contentItem());
        display.setSize(QSizeF(1024, 768));
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        // Bound as RunningPage.qml binds it: the fd goes from the source to
        // the item in C++.
        display.setSource(controller.display());
        QVERIFY(!controller.display()->hasPendingFd()); // taken at once
        // QEMU may drop a VNC client while the freshly booted guest switches
        // video modes; the display then asks its source for a new connection
        // by itself (with backoff). Wait until one holds.
        bool stable = false;
        for (int attempt = 0; attempt < 5 && !stable; ++attempt) {
            QTRY_VERIFY_WITH_TIMEOUT(display.isConnected(), 60000);
            QCOMPARE(display.state(), isr::ui::VncDisplay::Connected);
            QTest::qWait(3000);
            stable = display.isConnected();
        }
        QVERIFY2(stable, "the display never stayed connected");

        // The guest's shell answers on ttyS0 once it has booted.
        const QString serial = serialSocket(QString::fromStdString(config.stateDir));
        QVERIFY2(!serial.isEmpty(), "no serial socket under the kiosk's sessions directory");
        auto console = isr::test::SerialConsole::connect(serial.toStdString(), 60s);
        QVERIFY2(console.ok(), console.ok() ? "" : console.error().describe().c_str());
        auto shell = (*console)->waitForShell(300s);
        QVERIFY2(shell.ok(), shell.ok() ? "" : shell.error().describe().c_str());
        QVERIFY((*console)->run("rm -f /tmp/typed", 30s).ok());

        QTRY_VERIFY_WITH_TIMEOUT(display.framebufferUpdates() > 0, 60000);
        QTest::qWait(2000); // let the console settle before the reference image
        const QImage before = display.grabFramebuffer();
        QVERIFY(!before.isNull());
        window.grabWindow().save(
            QStringLiteral(QT_TESTCASE_BUILDDIR "/screenshots/guest-before.png"));

        // Type a command into tty1 through the display item.
        display.forceActiveFocus();
        const auto* conn = display.connection();
        const int keysBefore = conn->keyEventsSent() + conn->extendedKeyEventsSent();
        for (char c : std::string("touch /tmp/typed; echo typed-into-tty1"))
            QTest::keyClick(&window, c); // QTest::keyClicks() takes widgets only
        QTest::keyClick(&window, Qt::Key_Return);
        QTRY_VERIFY(conn->keyEventsSent() + conn->extendedKeyEventsSent() > keysBefore);
        bool arrived = false;
        for (int i = 0; i < 60 && !arrived; ++i) {
            auto ls = (*console)->run("ls /tmp/typed", 30s);
            QVERIFY(ls.ok());
            arrived = ls->exitStatus == 0;
            if (!arrived)
                QTest::qWait(1000);
        }
        QVERIFY2(arrived, "the command typed into the display never ran in the guest");
        // The echoed command and its output are on the screen, below the counter.
        const int top = before.height() / 20;
        QTRY_VERIFY_WITH_TIMEOUT(changedBelow(before, display.grabFramebuffer(), top) > 100, 30000);
        QTest::qWait(500);
        window.grabWindow().save(
            QStringLiteral(QT_TESTCASE_BUILDDIR "/screenshots/guest-typed.png"));

        // A pointer click goes to the VM as a press and a release.
        const int pointerBefore = conn->pointerEventsSent();
        QTest::mouseClick(&window, Qt::LeftButton, {}, QPoint(512, 384));
        QTRY_VERIFY(conn->pointerEventsSent() >= pointerBefore + 2);
        QVERIFY(display.isConnected());
        QCOMPARE(display.lastError(), QString());
        console->reset();

        // Suspend & Leave: a new version, the VM gone, nothing left behind.
        controller.suspendAndLeave();
        QTRY_VERIFY_WITH_TIMEOUT(
            controller.stage() == B::SignedOut || controller.stage() == B::Failed, 900000);
        QVERIFY2(controller.stage() == B::SignedOut, qPrintable(controller.errorMessage()));
        QTRY_VERIFY_WITH_TIMEOUT(!display.isConnected(), 30000);
        QCOMPARE(display.state(), isr::ui::VncDisplay::Idle); // no reconnecting to a gone VM
        QVERIFY(!controller.display()->isAvailable());
        QDir sessions(QString::fromStdString(config.stateDir) + "/sessions");
        QVERIFY(!sessions.exists() ||
                sessions.entryList(QDir::NoDotAndDotDot | QDir::AllEntries).isEmpty());
        auto versions = isr::test::runProcess(
            isrctl_,
            {"parcel", "versions", "demo", "demo", "--json", "--password-stdin", "--store", store_},
            "demo\n", 120000);
        QCOMPARE(versions.exitCode, 0);
        auto list = isr::json::parse(versions.out);
        QVERIFY(list.ok());
        QCOMPARE(list->asArray().size(), std::size_t(2)); // import, this session
        QCOMPARE(list->asArray()[1].getString("kiosk").valueOr(""), std::string("test-kiosk"));
    }
};

QTEST_MAIN(TestSessionDisplay)
#include "test_session_display.moc"
