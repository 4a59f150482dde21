#pragma once
// KioskWindow: the one fullscreen window of the shell. Under a Wayland kiosk
// compositor (cage) every toplevel is fullscreen anyway; on X11/Xvfb we ask
// for it, so dialogs and overlays must live inside this scene.

#include <QQmlApplicationEngine>
#include <QString>

namespace isr::ui {

struct KioskOptions {
    bool windowed = false;  // for development only: a normal window instead of fullscreen
    bool demo = false;      // the sign-in page shows the demo credentials
};

// Loads Isr.Ui/Main.qml into `engine` and shows it. Returns false (with a
// message on stderr) if QML failed to load.
bool showKioskWindow(QQmlApplicationEngine& engine, const KioskOptions& options);

} // namespace isr::ui
