#pragma once
// EscapeChordFilter: the operator's way out of the kiosk. Installed on the
// application, it watches every key press for one configured chord (default
// Ctrl+Alt+Shift+Q), swallows it and emits triggered(). Every other key,
// including Alt+Tab and friends, passes on untouched to the focused item
// (in the running session: the VM display).

#include <QKeyEvent>
#include <QKeySequence>
#include <QObject>

namespace isr::ui {

class EscapeChordFilter : public QObject {
    Q_OBJECT
public:
    static QKeySequence defaultChord();
    explicit EscapeChordFilter(const QKeySequence& chord, QObject* parent = nullptr);
    ~EscapeChordFilter() override;
    QKeySequence chord() const { return chord_; }
    bool matches(const QKeyEvent& event) const;

signals:
    void triggered();

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    QKeySequence chord_;
};

} // namespace isr::ui
