#pragma once
// KioskWindow: the one fullscreen window of the shell. Under a Wayland kiosk
// compositor (cage) every toplevel is fullscreen anyway; on X11/Xvfb we ask
// for it, so dialogs and overlays must live inside this scene.

#include <QKeySequence>
#include <QQmlApplicationEngine>
#include <QString>

namespace isr::ui {

class SessionBackend;

struct KioskOptions {
    bool windowed = false;        // for development only: a normal window instead of fullscreen
    bool demo = false;            // the sign-in page shows the demo credentials
    int idleTimeoutSeconds = 300; // quiet time in a running session before suspend & leave
    int idleWarningSeconds = 30;  // the last part of it shows a countdown
    int lockTimeoutSeconds = 120; // quiet time in a running session before the lock screen
    int leaveNoticeSeconds = 8;   // "You can leave now" before sign-in comes back
    int failureIdleSeconds = 60;  // quiet time on a failure page before wipe and sign-in
    bool virtualKeyboard = false; // show Qt Virtual Keyboard's InputPanel (needs
                                  // QT_IM_MODULE=qtvirtualkeyboard set before the app)
};

// Loads Isr.Ui/Main.qml into `engine` with `backend` as its session and
// shows it. `backend` must outlive the engine's root objects. Returns false
// (with a message on stderr) if QML failed to load.
bool showKioskWindow(QQmlApplicationEngine& engine, SessionBackend* backend,
                     const KioskOptions& options);

} // namespace isr::ui
