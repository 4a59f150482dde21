#include "escapechord.h"

#include <QCoreApplication>
#include <QKeyEvent>

namespace isr::ui {

QKeySequence EscapeChordFilter::defaultChord() {
    return QKeySequence(Qt::CTRL | Qt::ALT | Qt::SHIFT | Qt::Key_Q);
}

EscapeChordFilter::EscapeChordFilter(const QKeySequence& chord, QObject* parent)
    : QObject(parent), chord_(chord.isEmpty() ? defaultChord() : chord) {
    QCoreApplication::instance()->installEventFilter(this);
}

EscapeChordFilter::~EscapeChordFilter() {
    if (QCoreApplication::instance())
        QCoreApplication::instance()->removeEventFilter(this);
}

bool EscapeChordFilter::matches(const QKeyEvent& event) const {
    const Qt::KeyboardModifiers relevant =
        Qt::ControlModifier | Qt::AltModifier | Qt::ShiftModifier | Qt::MetaModifier;
    const QKeyCombination wanted = chord_[0];
    return event.key() == wanted.key() &&
           (event.modifiers() & relevant) == (wanted.keyboardModifiers() & relevant);
}

bool EscapeChordFilter::eventFilter(QObject* watched, QEvent* event) {
    const auto type = event->type();
    if (type == QEvent::KeyPress || type == QEvent::ShortcutOverride ||
        type == QEvent::KeyRelease) {
        auto* key = static_cast<QKeyEvent*>(event);
        if (matches(*key)) {
            if (type == QEvent::KeyPress && !key->isAutoRepeat())
                emit triggered();
            return true; // the guest never sees the operator's chord
        }
    }
    return QObject::eventFilter(watched, event);
}

} // namespace isr::ui
