// VncDisplay against a real VNC server: QEMU with no disk (SeaBIOS shows its
// text screen) exporting VNC on a private UNIX socket. We connect the socket
// ourselves and hand the fd over, the way the session will hand over the fd
// from virDomainOpenGraphicsFD.
//
// Typed text reaching a real guest's console: test_session_display.
#include "displaysource.h"
#include "testsupport.h"
#include "vncdisplay.h"
#include "vnckeymap.h"

#include <QElapsedTimer>
#include <QFile>
#include <QLocalSocket>
#include <QProcess>
#include <QQuickItem>
#include <QQuickWindow>
#include <QSignalSpy>
#include <QTest>
#include <QtQml/qqmlextensionplugin.h>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

int connectUnix(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return -1;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

bool nonUniform(const QImage& image) {
    if (image.isNull())
        return false;
    const QRgb first = image.pixel(0, 0);
    for (int y = 0; y < image.height(); y += 2)
        for (int x = 0; x < image.width(); x += 2)
            if (image.pixel(x, y) != first)
                return true;
    return false;
}

} // namespace

class TestVncDisplay : public QObject {
    Q_OBJECT
    std::unique_ptr<isr::test::TempDir> dir_;
    QProcess qemu_;

    // One HMP command; returns what QEMU answered (empty if it did not
    // answer within 30 s). Waits for the prompt before writing and for the
    // next prompt before closing, so the command is read and done.
    QByteArray monitor(const QByteArray& command) {
        QLocalSocket mon;
        mon.connectToServer(QString::fromStdString(dir_->file("mon.sock")));
        if (!mon.waitForConnected(30000))
            return {};
        const QByteArray prompt = "(qemu) ";
        QByteArray seen;
        QElapsedTimer timer;
        timer.start();
        const auto readUntilPrompt = [&] {
            while (!seen.endsWith(prompt)) {
                if (timer.hasExpired(30000) || mon.state() != QLocalSocket::ConnectedState)
                    return false;
                mon.waitForReadyRead(1000);
                seen += mon.readAll();
            }
            return true;
        };
        if (!readUntilPrompt())
            return {};
        seen.clear();
        mon.write(command + "\n");
        mon.flush();
        const bool answered = readUntilPrompt();
        mon.disconnectFromServer();
        return answered ? seen : QByteArray();
    }

private slots:
    void initTestCase() {
        isr::test::requirePrograms({"qemu-system-x86_64"});
        dir_ = std::make_unique<isr::test::TempDir>();
        // Paused (-S) so the display starts before the BIOS sets a video
        // mode: "cont" then changes the resolution under us.
        qemu_.setProcessChannelMode(QProcess::ForwardedChannels);
        qemu_.start(
            "qemu-system-x86_64",
            {"-nodefaults", "-vga", "std", "-display", "none", "-machine", "q35", "-accel", "tcg",
             "-m", "64", "-S", "-vnc", QString::fromStdString("unix:" + dir_->file("vnc.sock")),
             "-monitor",
             QString::fromStdString("unix:" + dir_->file("mon.sock") + ",server=on,wait=off")});
        QVERIFY(qemu_.waitForStarted());
        QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(QString::fromStdString(dir_->file("vnc.sock"))),
                                 20000);
    }

    void cleanupTestCase() {
        if (qemu_.state() != QProcess::NotRunning) {
            qemu_.kill();
            qemu_.waitForFinished();
        }
    }

    void keymap() {
        QCOMPARE(isr::ui::xtScancodeForEvdev(30), 0x1eu);  // A
        QCOMPARE(isr::ui::xtScancodeForEvdev(97), 0x9du);  // right Ctrl: E0 1D
        QCOMPARE(isr::ui::xtScancodeForEvdev(103), 0xc8u); // Up: E0 48
        QCOMPARE(isr::ui::xtScancodeForEvdev(200), 0u);
        QKeyEvent a(QEvent::KeyPress, Qt::Key_A, Qt::NoModifier, "a");
        QCOMPARE(isr::ui::keysymForKeyEvent(a), 0x61u);
        QKeyEvent esc(QEvent::KeyPress, Qt::Key_Escape, Qt::NoModifier);
        QCOMPARE(isr::ui::keysymForKeyEvent(esc), 0xff1bu);
        QKeyEvent euro(QEvent::KeyPress, Qt::Key_unknown, Qt::NoModifier, QString(QChar(0x20ac)));
        QCOMPARE(isr::ui::keysymForKeyEvent(euro), 0x010020acu);
        // X11: keycode 38 is evdev 30, the A key.
        QKeyEvent x11(QEvent::KeyPress, Qt::Key_A, Qt::NoModifier, 38, 0x61, 0, "a");
        QCOMPARE(isr::ui::xtScancodeForKeyEvent(x11), 0x1eu);
        QCOMPARE(isr::ui::keysymForKeyEvent(x11), 0x61u);
    }

    // Bound to a DisplaySource, the item gets its fd in C++ and reconnects
    // by itself: the first connection the source gives is not RFB at all
    // (it fails), the next is QEMU's; leaving Running (the source no longer
    // available) disconnects and does not reconnect.
    void reconnectsThroughItsSource() {
        isr::ui::DisplaySource source;
        int opened = 0;
        source.setOpener([&] {
            ++opened;
            if (opened == 1) {
                int fds[2];
                QCOMPARE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
                QVERIFY(::write(fds[1], "HTTP/1.1 400 Bad\r\n", 18) == 18);
                ::close(fds[1]);
                source.offer(isr::UniqueFd(fds[0]));
                return;
            }
            const int fd = connectUnix(dir_->file("vnc.sock"));
            if (fd < 0)
                source.refuse(QString::fromLocal8Bit(strerror(errno)));
            else
                source.offer(isr::UniqueFd(fd));
        });
        QQuickWindow window;
        isr::ui::VncDisplay display(window.contentItem());
        display.setSource(&source);
        QCOMPARE(display.state(), isr::ui::VncDisplay::Idle); // not Running yet
        QCOMPARE(opened, 0);

        source.setAvailable(true);
        QTRY_VERIFY_WITH_TIMEOUT(display.isConnected(), 20000);
        QCOMPARE(display.state(), isr::ui::VncDisplay::Connected);
        QCOMPARE(opened, 2);
        QCOMPARE(display.reconnects(), 1);
        QVERIFY(!display.framebufferSize().isEmpty());

        source.setAvailable(false);
        QCOMPARE(display.isConnected(), false);
        QCOMPARE(display.state(), isr::ui::VncDisplay::Idle);
        QTest::qWait(600); // longer than the first backoff: nothing is asked for
        QCOMPARE(opened, 2);
    }

    void showsTheGuestScreenAndSendsInput() {
        QQuickWindow window;
        window.resize(800, 600);
        isr::ui::VncDisplay display(window.contentItem());
        display.setSize(QSizeF(800, 600));
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));

        const int fd = connectUnix(dir_->file("vnc.sock"));
        QVERIFY2(fd >= 0, strerror(errno));
        QSignalSpy resized(&display, &isr::ui::VncDisplay::framebufferSizeChanged);
        display.attach(fd);
        QTRY_VERIFY_WITH_TIMEOUT(display.isConnected(), 20000);
        const QSize before = display.framebufferSize();
        QVERIFY2(!before.isEmpty(), "no framebuffer size");

        // The BIOS sets its text mode: the guest resolution changes.
        QVERIFY(!monitor("cont").isEmpty());
        QTRY_VERIFY_WITH_TIMEOUT(display.framebufferSize() != before, 60000);
        QTRY_COMPARE_WITH_TIMEOUT(display.framebufferSize(), QSize(720, 400), 60000);
        QVERIFY(resized.count() >= 2);
        QCOMPARE(display.grabFramebuffer().size(), QSize(720, 400));
        // SeaBIOS prints its banner: the screen is not one colour.
        QTRY_VERIFY_WITH_TIMEOUT(nonUniform(display.grabFramebuffer()), 60000);
        QVERIFY(display.framebufferUpdates() > 0);

        // Aspect kept: 720x400 in 800x600 is letterboxed top and bottom.
        const QRectF shown = display.displayRect();
        QCOMPARE(shown.width(), 800.0);
        QVERIFY(qAbs(shown.height() - 800.0 * 400 / 720) < 0.01);
        QCOMPARE(display.mapToFramebuffer(QPointF(400, 300)), QPoint(360, 200));
        QCOMPARE(display.mapToFramebuffer(QPointF(0, 0)), QPoint(0, 0)); // in the bar
        QCOMPARE(display.mapToFramebuffer(QPointF(799, 599)), QPoint(719, 399));

        QTest::qWait(0);
        const QImage shot = window.grabWindow();
        QVERIFY(nonUniform(shot));
        shot.save(QStringLiteral(QT_TESTCASE_BUILDDIR "/screenshots/vnc-seabios.png"));

        const auto* conn = display.connection();
        QTRY_VERIFY_WITH_TIMEOUT(conn->serverHasExtendedKeys(), 10000);

        // Keys with an X11 keycode go as QEMU extended key events.
        display.forceActiveFocus();
        QKeyEvent press(QEvent::KeyPress, Qt::Key_A, Qt::NoModifier, 38, 0x61, 0, "a");
        QKeyEvent release(QEvent::KeyRelease, Qt::Key_A, Qt::NoModifier, 38, 0x61, 0, "a");
        QCoreApplication::sendEvent(&display, &press);
        QCoreApplication::sendEvent(&display, &release);
        QTRY_COMPARE(conn->extendedKeyEventsSent(), 2);
        // Without a keycode (offscreen, synthetic): plain keysym events.
        QTest::keyClick(&window, Qt::Key_B);
        QTRY_COMPARE(conn->keyEventsSent(), 4);
        QCOMPARE(conn->extendedKeyEventsSent(), 2);

        // A held modifier is released when focus goes.
        QTest::keyPress(&window, Qt::Key_Shift);
        QTRY_COMPARE(conn->keyEventsSent(), 5);
        display.setFocus(false);
        QTRY_COMPARE(conn->keyEventsSent(), 6);
        display.forceActiveFocus();

        // Pointer: a click is a press and a release; wheel is buttons 4/5.
        const int pointerBefore = conn->pointerEventsSent();
        QTest::mouseClick(&window, Qt::LeftButton, {}, QPoint(400, 300));
        QTRY_VERIFY(conn->pointerEventsSent() >= pointerBefore + 2);
        const int beforeWheel = conn->pointerEventsSent();
        QWheelEvent wheel(QPointF(400, 300), window.mapToGlobal(QPointF(400, 300)), QPoint(),
                          QPoint(0, -120), Qt::NoButton, Qt::NoModifier, Qt::NoScrollPhase, false);
        QCoreApplication::sendEvent(&display, &wheel);
        QTRY_VERIFY(conn->pointerEventsSent() >= beforeWheel + 2); // press + release of button 5

        QVERIFY(display.isConnected());
        QCOMPARE(display.lastError(), QString());

        // The server going away is reported, not hung on.
        qemu_.kill();
        qemu_.waitForFinished();
        QTRY_VERIFY_WITH_TIMEOUT(!display.isConnected(), 10000);
        QVERIFY(!display.lastError().isEmpty());
    }

    void garbageServerIsAnError() {
        int fds[2];
        QCOMPARE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        QVERIFY(::write(fds[1], "HTTP/1.1 400 Bad\r\n", 18) == 18);
        QQuickWindow window;
        isr::ui::VncDisplay display(window.contentItem());
        QSignalSpy changed(&display, &isr::ui::VncDisplay::connectedChanged);
        display.attach(fds[0]);
        QTRY_VERIFY_WITH_TIMEOUT(changed.count() >= 1, 10000);
        QVERIFY(!display.isConnected());
        QVERIFY(!display.lastError().isEmpty());
        ::close(fds[1]);
    }
};

QTEST_MAIN(TestVncDisplay)
#include "test_vnc_display.moc"
