#include "vncdisplay.h"

#include "vnckeymap.h"

#include <QCursor>
#include <QPainter>
#include <QTouchEvent>

namespace isr::ui {

namespace {
constexpr int kButtonLeft = 1, kButtonMiddle = 2, kButtonRight = 4;
constexpr int kWheelUp = 8, kWheelDown = 16, kWheelLeft = 32, kWheelRight = 64;
constexpr int kFirstBackoffMs = 250;
constexpr int kMaxBackoffMs = 8000;
constexpr qint64 kHeldConnectionMs = 10000; // a connection this old resets the backoff
} // namespace

VncDisplay::VncDisplay(QQuickItem* parent)
    : QQuickPaintedItem(parent), backoffMs_(kFirstBackoffMs) {
    reconnectTimer_.setSingleShot(true);
    connect(&reconnectTimer_, &QTimer::timeout, this, [this] {
        if (!source_ || !source_->isAvailable())
            return;
        ++reconnects_;
        setState(Connecting);
        source_->request();
    });
    setFlag(ItemIsFocusScope, false);
    setFlag(ItemAcceptsInputMethod, false);
    setAcceptedMouseButtons(Qt::AllButtons);
    setAcceptHoverEvents(true);
    setAcceptTouchEvents(true);
    setActiveFocusOnTab(true);
    setFillColor(Qt::black);
    setOpaquePainting(true);
}

VncDisplay::~VncDisplay() {
    detach();
}

void VncDisplay::setState(ConnectionState state) {
    if (state == state_)
        return;
    state_ = state;
    emit stateChanged();
}

void VncDisplay::setSource(DisplaySource* source) {
    if (source == source_)
        return;
    if (source_)
        disconnect(source_, nullptr, this, nullptr);
    source_ = source;
    reconnectTimer_.stop();
    detach();
    setState(Idle);
    if (source_) {
        connect(source_, &DisplaySource::availableChanged, this, &VncDisplay::onSourceAvailability);
        connect(source_, &DisplaySource::ready, this, &VncDisplay::onSourceReady);
        connect(source_, &DisplaySource::failed, this, &VncDisplay::onSourceFailed);
        onSourceAvailability();
    }
    emit sourceChanged();
}

void VncDisplay::onSourceAvailability() {
    reconnectTimer_.stop();
    backoffMs_ = kFirstBackoffMs;
    if (!source_ || !source_->isAvailable()) {
        detach();
        lastError_.clear();
        setState(Idle);
        return;
    }
    setState(Connecting);
    // The backend usually opened one before it announced Running.
    if (source_->hasPendingFd())
        onSourceReady();
    else
        source_->request();
}

void VncDisplay::onSourceReady() {
    if (!source_ || !source_->hasPendingFd())
        return;
    reconnectTimer_.stop();
    attach(source_->takeFd());
}

void VncDisplay::onSourceFailed(const QString& reason) {
    if (!source_ || !source_->isAvailable() || state_ != Connecting)
        return;
    lastError_ = reason;
    emit connectedChanged();
    scheduleReconnect();
}

void VncDisplay::onDisconnected(const QString& reason) {
    lastError_ = reason;
    connected_ = false;
    emit connectedChanged();
    // The dead connection stays until the next attach(): its last frame
    // stays on screen while a fresh one is asked for.
    if (source_ && source_->isAvailable()) {
        if (connectedFor_.isValid() && connectedFor_.elapsed() >= kHeldConnectionMs)
            backoffMs_ = kFirstBackoffMs;
        scheduleReconnect();
    } else {
        setState(Idle);
    }
}

void VncDisplay::scheduleReconnect() {
    setState(Reconnecting);
    reconnectTimer_.start(backoffMs_);
    backoffMs_ = std::min(backoffMs_ * 2, kMaxBackoffMs);
}

void VncDisplay::attach(int socketFd) {
    detach();
    if (socketFd < 0)
        return;
    connection_ = std::make_unique<VncConnection>(socketFd);
    pointerSent_ = false;
    connectedFor_.invalidate();
    setState(Connecting);
    VncConnection* conn = connection_.get();
    // Queued: the signals come from the VNC thread; `conn` is checked against
    // the current connection so late signals from a replaced one are dropped.
    connect(
        conn, &VncConnection::connected, this,
        [this, conn](QSize size) {
            if (conn != connection_.get())
                return;
            connected_ = true;
            lastError_.clear();
            fbSize_ = size;
            connectedFor_.start();
            setState(Connected);
            emit framebufferSizeChanged();
            emit connectedChanged();
        },
        Qt::QueuedConnection);
    connect(
        conn, &VncConnection::framebufferResized, this,
        [this, conn](QSize size) {
            if (conn != connection_.get() || size == fbSize_)
                return;
            fbSize_ = size;
            emit framebufferSizeChanged();
            update();
        },
        Qt::QueuedConnection);
    connect(
        conn, &VncConnection::framebufferUpdated, this,
        [this, conn](QRect rect) {
            if (conn != connection_.get() || fbSize_.isEmpty())
                return;
            ++updates_;
            const QRectF target = displayRect();
            const qreal sx = target.width() / fbSize_.width();
            const qreal sy = target.height() / fbSize_.height();
            const QRectF mapped(target.x() + rect.x() * sx, target.y() + rect.y() * sy,
                                rect.width() * sx, rect.height() * sy);
            update(mapped.toAlignedRect().adjusted(-1, -1, 1, 1));
            emit framebufferUpdated();
        },
        Qt::QueuedConnection);
    connect(
        conn, &VncConnection::disconnected, this,
        [this, conn](const QString& reason) {
            if (conn != connection_.get())
                return;
            onDisconnected(reason);
        },
        Qt::QueuedConnection);
    conn->start();
}

void VncDisplay::detach() {
    releaseHeldKeys();
    if (!connection_)
        return;
    connection_.reset(); // stops and joins the thread
    const bool was = connected_;
    connected_ = false;
    if (was)
        emit connectedChanged();
    if (!source_)
        setState(Idle);
}

QRectF VncDisplay::displayRect() const {
    if (fbSize_.isEmpty() || width() <= 0 || height() <= 0)
        return {};
    const qreal scale = std::min(width() / fbSize_.width(), height() / fbSize_.height());
    const QSizeF size(fbSize_.width() * scale, fbSize_.height() * scale);
    return QRectF(QPointF((width() - size.width()) / 2, (height() - size.height()) / 2), size);
}

QPoint VncDisplay::mapToFramebuffer(const QPointF& itemPos) const {
    const QRectF target = displayRect();
    if (target.isEmpty())
        return {};
    const qreal x = (itemPos.x() - target.x()) * fbSize_.width() / target.width();
    const qreal y = (itemPos.y() - target.y()) * fbSize_.height() / target.height();
    return QPoint(std::clamp(int(x), 0, fbSize_.width() - 1),
                  std::clamp(int(y), 0, fbSize_.height() - 1));
}

QImage VncDisplay::grabFramebuffer() const {
    QImage copy;
    if (connection_)
        connection_->withFramebuffer([&copy](const QImage& image) { copy = image.copy(); });
    return copy;
}

void VncDisplay::paint(QPainter* painter) {
    if (!connection_ || fbSize_.isEmpty())
        return;
    const QRectF target = displayRect();
    // Only the exposed part: map the painter's clip back to guest pixels.
    QRectF exposed = target;
    if (painter->hasClipping())
        exposed &= painter->clipBoundingRect();
    if (exposed.isEmpty())
        return;
    const qreal sx = fbSize_.width() / target.width();
    const qreal sy = fbSize_.height() / target.height();
    const QRectF source((exposed.x() - target.x()) * sx, (exposed.y() - target.y()) * sy,
                        exposed.width() * sx, exposed.height() * sy);
    painter->setRenderHint(QPainter::SmoothPixmapTransform, target.size() != QSizeF(fbSize_));
    connection_->withFramebuffer([&](const QImage& image) {
        if (image.size() == fbSize_)
            painter->drawImage(exposed, image, source);
    });
}

bool VncDisplay::event(QEvent* event) {
    // Claim every shortcut while we have focus: Alt+Tab, Ctrl+W and friends
    // belong to the guest. The operator escape chord is handled by the
    // kiosk's application-wide filter before it gets here.
    if (event->type() == QEvent::ShortcutOverride) {
        event->accept();
        return true;
    }
    return QQuickPaintedItem::event(event);
}

void VncDisplay::sendKeyEvent(QKeyEvent* event, bool down) {
    event->accept();
    if (!connection_)
        return;
    const quint32 keysym = keysymForKeyEvent(*event);
    const quint32 scancode = xtScancodeForKeyEvent(*event);
    if (keysym == 0 && scancode == 0)
        return;
    const QPair<quint32, quint32> key(keysym, scancode);
    if (down)
        heldKeys_.insert(key);
    else
        heldKeys_.remove(key);
    connection_->sendKey(keysym, scancode, down);
}

void VncDisplay::keyPressEvent(QKeyEvent* event) {
    sendKeyEvent(event, true);
}

void VncDisplay::keyReleaseEvent(QKeyEvent* event) {
    if (event->isAutoRepeat()) { // the guest does its own repeat from the press
        event->accept();
        return;
    }
    sendKeyEvent(event, false);
}

void VncDisplay::releaseHeldKeys() {
    if (connection_)
        for (const auto& key : std::as_const(heldKeys_))
            connection_->sendKey(key.first, key.second, false);
    heldKeys_.clear();
    if (connection_ && buttons_ != 0)
        connection_->sendPointer(lastPointer_.x(), lastPointer_.y(), 0);
    buttons_ = 0;
}

void VncDisplay::focusOutEvent(QFocusEvent* event) {
    releaseHeldKeys();
    QQuickPaintedItem::focusOutEvent(event);
}

int VncDisplay::buttonMask(Qt::MouseButtons buttons) {
    int mask = 0;
    if (buttons & Qt::LeftButton)
        mask |= kButtonLeft;
    if (buttons & Qt::MiddleButton)
        mask |= kButtonMiddle;
    if (buttons & Qt::RightButton)
        mask |= kButtonRight;
    return mask;
}

void VncDisplay::sendPointer(const QPointF& itemPos, int buttons) {
    if (!connection_ || fbSize_.isEmpty())
        return;
    const QPoint pos = mapToFramebuffer(itemPos);
    // Qt Quick re-delivers hover events on every frame; each repaint of the
    // guest screen would otherwise echo a pointer event back to the guest.
    if (pos == lastPointer_ && buttons == buttons_ && pointerSent_)
        return;
    lastPointer_ = pos;
    buttons_ = buttons;
    pointerSent_ = true;
    connection_->sendPointer(pos.x(), pos.y(), buttons);
}

void VncDisplay::mousePressEvent(QMouseEvent* event) {
    forceActiveFocus(Qt::MouseFocusReason);
    sendPointer(event->position(), buttonMask(event->buttons()));
    event->accept();
}

void VncDisplay::mouseReleaseEvent(QMouseEvent* event) {
    sendPointer(event->position(), buttonMask(event->buttons()));
    event->accept();
}

void VncDisplay::mouseMoveEvent(QMouseEvent* event) {
    sendPointer(event->position(), buttonMask(event->buttons()));
    event->accept();
}

void VncDisplay::hoverMoveEvent(QHoverEvent* event) {
    sendPointer(event->position(), buttons_);
    event->accept();
}

void VncDisplay::wheelEvent(QWheelEvent* event) {
    // RFB has no wheel: a click of buttons 4/5 (6/7 sideways) per notch.
    const QPoint delta = event->angleDelta();
    int bit = 0;
    if (delta.y() != 0)
        bit = delta.y() > 0 ? kWheelUp : kWheelDown;
    else if (delta.x() != 0)
        bit = delta.x() > 0 ? kWheelLeft : kWheelRight;
    if (bit != 0) {
        const int notches = std::max(1, std::abs(delta.y() != 0 ? delta.y() : delta.x()) / 120);
        const int held = buttonMask(event->buttons());
        for (int i = 0; i < notches; ++i) {
            sendPointer(event->position(), held | bit);
            sendPointer(event->position(), held);
        }
    }
    event->accept();
}

void VncDisplay::touchEvent(QTouchEvent* event) {
    // One finger is the pointer with the left button held.
    if (event->points().isEmpty()) {
        event->accept();
        return;
    }
    const QEventPoint& point = event->points().constFirst();
    const bool released = point.state() == QEventPoint::Released ||
                          event->type() == QEvent::TouchEnd || event->type() == QEvent::TouchCancel;
    if (point.state() == QEventPoint::Pressed)
        forceActiveFocus(Qt::MouseFocusReason);
    if (point.state() == QEventPoint::Pressed) // move first, so the click lands there
        sendPointer(point.position(), 0);
    sendPointer(point.position(), released ? 0 : kButtonLeft);
    event->accept();
}

} // namespace isr::ui
