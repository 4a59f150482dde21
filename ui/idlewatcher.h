#pragma once
// IdleWatcher: notices when nobody has touched the kiosk for a while. Any
// key, mouse, wheel or touch event anywhere in the application restarts the
// count (it filters the application's events; it never consumes them).
// After timeoutMs - warningMs of quiet, `warning` turns true and
// `remainingSeconds` counts down; at timeoutMs it emits timedOut() once and
// stops until activity or re-activation. Inactive watchers do nothing.
// With resetByInput false, input does not restart the count (only poke()
// and re-activation do): the lock screen's deadline, which a person typing
// wrong passwords must not push back.

#include <QElapsedTimer>
#include <QObject>
#include <QTimer>
#include <QtQml/qqmlregistration.h>

namespace isr::ui {

class IdleWatcher : public QObject {
    Q_OBJECT
    QML_ELEMENT
    Q_PROPERTY(bool active READ isActive WRITE setActive NOTIFY activeChanged)
    Q_PROPERTY(int timeoutMs READ timeoutMs WRITE setTimeoutMs NOTIFY configChanged)
    Q_PROPERTY(int warningMs READ warningMs WRITE setWarningMs NOTIFY configChanged)
    Q_PROPERTY(bool warning READ isWarning NOTIFY warningChanged)
    Q_PROPERTY(int remainingSeconds READ remainingSeconds NOTIFY remainingSecondsChanged)
    Q_PROPERTY(bool resetByInput MEMBER resetByInput_ NOTIFY configChanged)

public:
    explicit IdleWatcher(QObject* parent = nullptr);
    ~IdleWatcher() override;

    bool isActive() const { return active_; }
    void setActive(bool active);
    int timeoutMs() const { return timeoutMs_; }
    void setTimeoutMs(int ms);
    int warningMs() const { return warningMs_; }
    void setWarningMs(int ms);
    bool isWarning() const { return warning_; }
    int remainingSeconds() const { return remainingSeconds_; }

    // Counts as user activity (also called by the event filter).
    Q_INVOKABLE void poke();

signals:
    void activeChanged();
    void configChanged();
    void warningChanged();
    void remainingSecondsChanged();
    void timedOut();

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void restart();
    void tick();
    void setWarning(bool warning);

    bool active_ = false;
    bool fired_ = false;
    bool warning_ = false;
    bool resetByInput_ = true;
    int timeoutMs_ = 300000;
    int warningMs_ = 30000;
    int remainingSeconds_ = 0;
    QElapsedTimer quietFor_;
    QTimer deadline_; // next interesting moment: warning start, countdown tick, timeout
};

} // namespace isr::ui
