#pragma once
// VncDisplay: the VM's screen as a Qt Quick item. Give it a connected RFB
// socket fd (attach()); it scales the guest screen into the item keeping the
// aspect ratio (black bars), repaints only what changed, follows guest
// resolution changes, and sends keyboard, mouse, wheel and touch to the guest.
// Keys go as QEMU extended key events (XT scancode + keysym) when the server
// has them, else as plain keysyms. Every key still held is released when the
// item loses focus. Shortcut overrides are accepted so that system chords
// (Alt+Tab, Ctrl+W…) reach the guest, not the shell.
//
// All protocol work happens on a VncConnection thread; see vncconnection.h.

#include "vncconnection.h"

#include <QQuickPaintedItem>
#include <QSet>
#include <memory>

namespace isr::ui {

class VncDisplay : public QQuickPaintedItem {
    Q_OBJECT
    QML_ELEMENT
    Q_PROPERTY(bool connected READ isConnected NOTIFY connectedChanged)
    Q_PROPERTY(QSize framebufferSize READ framebufferSize NOTIFY framebufferSizeChanged)
    Q_PROPERTY(QString lastError READ lastError NOTIFY connectedChanged)
    Q_PROPERTY(int framebufferUpdates READ framebufferUpdates NOTIFY framebufferUpdated)

public:
    explicit VncDisplay(QQuickItem* parent = nullptr);
    ~VncDisplay() override;

    // Takes ownership of `socketFd` and starts talking RFB over it; a previous
    // connection is closed first. A negative fd just disconnects.
    Q_INVOKABLE void attach(int socketFd);
    Q_INVOKABLE void detach();

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
};

} // namespace isr::ui
