// Runs the Qt Quick Test cases in tests/ui/qml against the Isr.Ui module.
// QML tests create FakeSessionBackend themselves (it is a QML type); the
// context property `artifactDir` says where screenshots go.
#include <QDir>
#include <QQmlContext>
#include <QQmlEngine>
#include <QtQml/qqmlextensionplugin.h>
#include <QtQuickTest>

Q_IMPORT_QML_PLUGIN(Isr_UiPlugin)

class Setup : public QObject {
    Q_OBJECT
public slots:
    void qmlEngineAvailable(QQmlEngine* engine) {
        engine->addImportPath(QStringLiteral("qrc:/qt/qml"));
        const QString dir = QStringLiteral(ISR_UI_QML_ARTIFACT_DIR);
        QDir().mkpath(dir);
        engine->rootContext()->setContextProperty(QStringLiteral("artifactDir"), dir);
    }
};

QUICK_TEST_MAIN_WITH_SETUP(isr_ui, Setup)
#include "test_ui_qml.moc"
