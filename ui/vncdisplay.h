#pragma once
// VncDisplay: the VM's screen as a Qt Quick item. Bind it to a DisplaySource
// (`source: backend.display` in QML), or, in C++, give it a connected RFB
// socket fd (attach()). It scales the guest screen into the item keeping the
// aspect ratio (black bars), repaints only what changed, follows guest
// resolution changes, and sends keyboard, mouse, wheel and touch to the guest.
// Keys go as QEMU extended key events (XT scancode + keysym) when the server
// has them, else as plain keysyms. Every key still held is released when the
// item loses focus. Shortcut overrides are accepted so that system chords
// (Alt+Tab, Ctrl+W…) reach the guest, not the shell.
//
// All protocol work happens on a VncConnection thread; see vncconnection.h.
//
// With a source, the connection has a state (ConnectionState):
//   Idle          the source is not available (the VM is not Running)
//   Connecting    waiting for an fd from the source, or for the RFB handshake
//   Connected     showing the screen
//   Reconnecting  the connection dropped (QEMU may drop a client while a
//                 booting guest switches video modes) or the source could not
//                 open one: after a backoff (250 ms doubling to 8 s; back to
//                 250 ms once a connection has held for 10 s) it asks the
//                 source for a fresh fd.
// Without a source (attach() by hand) a drop ends in Idle.

#include "displaysource.h"
#include "vncconnection.h"

#include <QElapsedTimer>
#include <QPointer>
#include <QQuickPaintedItem>
#include <QSet>
#include <QTimer>
#include <memory>

namespace isr::ui {

class VncDisplay : public QQuickPaintedItem {
    Q_OBJECT
    QML_ELEMENT
    Q_PROPERTY(bool connected READ isConnected NOTIFY connectedChanged)
    Q_PROPERTY(QSize framebufferSize READ framebufferSize NOTIFY framebufferSizeChanged)
    Q_PROPERTY(QString lastError READ lastError NOTIFY connectedChanged)
    Q_PROPERTY(int framebufferUpdates READ framebufferUpdates NOTIFY framebufferUpdated)
    Q_PROPERTY(isr::ui::DisplaySource* source READ source WRITE setSource NOTIFY sourceChanged)
    Q_PROPERTY(ConnectionState state READ state NOTIFY stateChanged)
    Q_PROPERTY(int reconnects READ reconnects NOTIFY stateChanged)

public:
    enum ConnectionState { Idle, Connecting, Connected, Reconnecting };
    Q_ENUM(ConnectionState)

    explicit VncDisplay(QQuickItem* parent = nullptr);
    ~VncDisplay() override;

    DisplaySource* source() const { return source_; }
    void setSource(DisplaySource* source);
    ConnectionState state() const { return state_; }
    // How many times a fresh connection was asked for after a drop or a refusal.
    int reconnects() const { return reconnects_; }

    // Takes ownership of `socketFd` and starts talking RFB over it; a previous
    // connection is closed first. A negative fd just disconnects. C++ only:
    // an fd never passes through QML.
    void attach(int socketFd);
    void detach();

    bool isConnected() const { return connected_; }
    QSize framebufferSize() const { return fbSize_; }
    QString lastError() const { return lastError_; }
    int framebufferUpdates() const { return updates_; }

    // Where the guest screen is drawn inside the item (aspect kept, centred).
    QRectF displayRect() const;
    // Item coordinates to guest pixel coordinates, clamped to the screen.
    Q_INVOKABLE QPoint mapToFramebuffer(const QPointF& itemPos) const;
    // A copy of the guest screen as last received (for tests/screenshots).
    Q_INVOKABLE QImage grabFramebuffer() const;
    const VncConnection* connection() const { return connection_.get(); }

    void paint(QPainter* painter) override;

signals:
    void connectedChanged();
    void framebufferSizeChanged();
    void framebufferUpdated();
    void sourceChanged();
    void stateChanged();

protected:
    bool event(QEvent* event) override;
    void keyPressEvent(QKeyEvent* event) override;
    void keyReleaseEvent(QKeyEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void mouseReleaseEvent(QMouseEvent* event) override;
    void mouseMoveEvent(QMouseEvent* event) override;
    void hoverMoveEvent(QHoverEvent* event) override;
    void wheelEvent(QWheelEvent* event) override;
    void touchEvent(QTouchEvent* event) override;
    void focusOutEvent(QFocusEvent* event) override;

private:
    void setState(ConnectionState state);
    void onSourceAvailability();
    void onSourceReady();
    void onSourceFailed(const QString& reason);
    void onDisconnected(const QString& reason);
    void scheduleReconnect();
    void sendKeyEvent(QKeyEvent* event, bool down);
    void sendPointer(const QPointF& itemPos, int buttons);
    void releaseHeldKeys();
    static int buttonMask(Qt::MouseButtons buttons);

    std::unique_ptr<VncConnection> connection_;
    bool connected_ = false;
    QSize fbSize_;
    QString lastError_;
    int updates_ = 0;
    int buttons_ = 0;
    QPoint lastPointer_;
    bool pointerSent_ = false;
    // Keys pressed and not yet released, as (keysym, scancode), so focus
    // loss can release them (otherwise the guest sees Alt stuck down).
    QSet<QPair<quint32, quint32>> heldKeys_;

    QPointer<DisplaySource> source_;
    ConnectionState state_ = Idle;
    QTimer reconnectTimer_;
    int backoffMs_;
    int reconnects_ = 0;
    QElapsedTimer connectedFor_;
};

} // namespace isr::ui
