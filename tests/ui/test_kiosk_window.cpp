// The kiosk window loads the real Main.qml, asks for fullscreen, and hosts
// the sign-in page filling the window.
#include <QQmlApplicationEngine>
#include <QQuickItem>
#include <QQuickWindow>
#include <QTest>
#include <QtQml/qqmlextensionplugin.h>

#include "kioskwindow.h"

Q_IMPORT_QML_PLUGIN(Isr_UiPlugin)

class TestKioskWindow : public QObject {
    Q_OBJECT
private slots:
    void opensFullscreenWithSignInPage() {
        QQmlApplicationEngine engine;
        QVERIFY(isr::ui::showKioskWindow(engine, {}));
        auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().constFirst());
        QVERIFY(window);
        QCOMPARE(window->visibility(), QWindow::FullScreen);
        auto* page = window->findChild<QQuickItem*>(QStringLiteral("signInPage"));
        QVERIFY(page);
        QVERIFY(QTest::qWaitForWindowExposed(window));
        QCOMPARE(page->width(), window->contentItem()->width());
        QCOMPARE(page->height(), window->contentItem()->height());
        QVERIFY(window->findChild<QQuickItem*>(QStringLiteral("userField")));
        QVERIFY(window->findChild<QQuickItem*>(QStringLiteral("passwordField")));
        QVERIFY(window->findChild<QQuickItem*>(QStringLiteral("signInButton")));
        QCOMPARE(page->property("demoMode").toBool(), false);
    }
    void windowedAndDemoOptions() {
        QQmlApplicationEngine engine;
        isr::ui::KioskOptions options;
        options.windowed = true;
        options.demo = true;
        QVERIFY(isr::ui::showKioskWindow(engine, options));
        auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().constFirst());
        QVERIFY(window->visibility() != QWindow::FullScreen);
        auto* hint = window->findChild<QQuickItem*>(QStringLiteral("demoHint"));
        QVERIFY(hint);
        QCOMPARE(hint->isVisible(), true);
    }
};

QTEST_MAIN(TestKioskWindow)
#include "test_kiosk_window.moc"
