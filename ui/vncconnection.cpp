#include "vncconnection.h"

#include <QLoggingCategory>
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <rfb/rfbclient.h>
#include <sys/eventfd.h>
#include <unistd.h>

Q_LOGGING_CATEGORY(lcVnc, "isr.ui.vnc")

namespace isr::ui {

char VncConnection::tag_ = 0;

VncConnection::VncConnection(int socketFd, QObject* parent) : QThread(parent), socketFd_(socketFd) {
    wakeFd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

VncConnection::~VncConnection() {
    requestStop();
    wait();
    if (socketFd_ >= 0) // never handed to a client (thread never ran)
        ::close(socketFd_);
    if (wakeFd_ >= 0)
        ::close(wakeFd_);
}

void VncConnection::wake() {
    const uint64_t one = 1;
    if (wakeFd_ >= 0)
        (void)!::write(wakeFd_, &one, sizeof one);
}

void VncConnection::requestStop() {
    stop_.store(true);
    wake();
}

void VncConnection::sendKey(quint32 keysym, quint32 xtScancode, bool down) {
    {
        QMutexLocker lock(&inputMutex_);
        InputEvent ev{InputEvent::Key};
        ev.keysym = keysym;
        ev.scancode = xtScancode;
        ev.down = down;
        inputQueue_.push_back(ev);
    }
    wake();
}

void VncConnection::sendPointer(int x, int y, int buttonMask) {
    {
        QMutexLocker lock(&inputMutex_);
        InputEvent ev{InputEvent::Pointer};
        ev.x = x;
        ev.y = y;
        ev.buttons = buttonMask;
        inputQueue_.push_back(ev);
    }
    wake();
}

void VncConnection::withFramebuffer(const std::function<void(const QImage&)>& fn) const {
    QMutexLocker lock(&frontMutex_);
    fn(front_);
}

QSize VncConnection::framebufferSize() const {
    QMutexLocker lock(&frontMutex_);
    return front_.size();
}

VncConnection* VncConnection::self(rfbClient* client) {
    return static_cast<VncConnection*>(rfbClientGetClientData(client, &tag_));
}

rfbBool VncConnection::mallocFrameBuffer(rfbClient* client) {
    VncConnection* conn = self(client);
    const QSize size(client->width, client->height);
    if (size.isEmpty() || size.width() > 16384 || size.height() > 16384)
        return FALSE;
    // rfbGetClient(8, 3, 4) on a little-endian host asks for red in the low
    // byte: bytes R, G, B, X — QImage's RGBX8888.
    conn->backBuffer_ = QImage(size, QImage::Format_RGBX8888);
    if (conn->backBuffer_.isNull())
        return FALSE;
    conn->backBuffer_.fill(Qt::black);
    client->frameBuffer = conn->backBuffer_.bits();
    conn->dirty_ = {};
    {
        QMutexLocker lock(&conn->frontMutex_);
        conn->front_ = QImage(size, QImage::Format_RGBX8888);
        conn->front_.fill(Qt::black);
    }
    emit conn->framebufferResized(size);
    return TRUE;
}

void VncConnection::gotFrameBufferUpdate(rfbClient* client, int x, int y, int w, int h) {
    VncConnection* conn = self(client);
    conn->dirty_ |= QRect(x, y, w, h) & conn->backBuffer_.rect();
}

void VncConnection::finishedFrameBufferUpdate(rfbClient* client) {
    VncConnection* conn = self(client);
    if (SupportsClient2Server(client, rfbQemuEvent))
        conn->extendedKeys_.store(true);
    conn->publishDirty();
}

void VncConnection::publishDirty() {
    if (dirty_.isEmpty())
        return;
    const QRect rect = dirty_;
    dirty_ = {};
    {
        QMutexLocker lock(&frontMutex_);
        if (front_.size() != backBuffer_.size())
            return;
        const int bytes = rect.width() * 4;
        for (int row = rect.top(); row <= rect.bottom(); ++row)
            std::memcpy(front_.scanLine(row) + rect.left() * 4,
                        backBuffer_.constScanLine(row) + rect.left() * 4, size_t(bytes));
    }
    emit framebufferUpdated(rect);
}

// LibVNCClient 0.9.14 announces ExtendedDesktopSize, but ignores a
// server-initiated ExtendedDesktopSize rectangle: QEMU then sends the new
// size that way and the client drops the connection ("Rect too large") on
// the next update. So after SetFormatAndEncodings() we replace the encoding
// list (a server applies the latest SetEncodings) with one that offers only
// the plain DesktopSize pseudo-encoding, which the client does handle.
static bool sendEncodings(rfbClient* client) {
    const quint32 encodings[] = {
        rfbEncodingZRLE, rfbEncodingHextile,   rfbEncodingZlib,     rfbEncodingCopyRect,
        rfbEncodingRaw,  rfbEncodingNewFBSize, rfbEncodingLastRect, rfbEncodingQemuExtendedKeyEvent,
    };
    QByteArray message;
    message.append(char(rfbSetEncodings));
    message.append(char(0));
    const quint16 count = quint16(std::size(encodings));
    message.append(char(count >> 8));
    message.append(char(count & 0xff));
    for (quint32 encoding : encodings)
        for (int shift = 24; shift >= 0; shift -= 8)
            message.append(char((encoding >> shift) & 0xff));
    return WriteToRFBServer(client, message.constData(), unsigned(message.size()));
}

bool VncConnection::drainInput(rfbClient* client) {
    std::deque<InputEvent> events;
    {
        QMutexLocker lock(&inputMutex_);
        events.swap(inputQueue_);
    }
    for (const InputEvent& ev : events) {
        if (ev.kind == InputEvent::Pointer) {
            if (!SendPointerEvent(client, ev.x, ev.y, ev.buttons))
                return false;
            ++pointerEvents_;
        } else if (ev.scancode != 0 && SupportsClient2Server(client, rfbQemuEvent)) {
            if (!SendExtendedKeyEvent(client, ev.keysym, ev.scancode, ev.down))
                return false;
            ++extendedKeyEvents_;
            ++keyEvents_;
        } else if (ev.keysym != 0) {
            if (!SendKeyEvent(client, ev.keysym, ev.down))
                return false;
            ++keyEvents_;
        }
    }
    return true;
}

void VncConnection::run() {
    if (wakeFd_ < 0) {
        emit disconnected(
            tr("cannot create an eventfd: %1").arg(QString::fromLocal8Bit(strerror(errno))));
        return;
    }
    rfbClient* client = rfbGetClient(8, 3, 4);
    if (!client) {
        emit disconnected(tr("cannot allocate a VNC client"));
        return;
    }
    rfbClientSetClientData(client, &tag_, this);
    client->MallocFrameBuffer = &VncConnection::mallocFrameBuffer;
    client->GotFrameBufferUpdate = &VncConnection::gotFrameBufferUpdate;
    client->FinishedFrameBufferUpdate = &VncConnection::finishedFrameBufferUpdate;
    client->canHandleNewFBSize = TRUE;
    client->sock = socketFd_;
    socketFd_ = -1; // rfbClientCleanup() closes it from now on

    QString reason;
    if (!InitialiseRFBConnection(client)) {
        reason = tr("the display refused the connection");
    } else {
        client->width = client->si.framebufferWidth;
        client->height = client->si.framebufferHeight;
        // What rfbInitClient() does: incremental requests cover the screen.
        client->updateRect.x = client->updateRect.y = 0;
        client->updateRect.w = client->width;
        client->updateRect.h = client->height;
        if (!client->MallocFrameBuffer(client) || !SetFormatAndEncodings(client) ||
            !sendEncodings(client) ||
            !SendFramebufferUpdateRequest(client, 0, 0, client->width, client->height, FALSE))
            reason = tr("the display connection failed during setup");
    }
    if (reason.isEmpty()) {
        emit connected(QSize(client->width, client->height));
        while (!stop_.load()) {
            bool readable = client->buffered > 0;
            if (!readable) {
                pollfd fds[2] = {{client->sock, POLLIN, 0}, {wakeFd_, POLLIN, 0}};
                if (::poll(fds, 2, -1) < 0) {
                    if (errno == EINTR)
                        continue;
                    reason = tr("poll failed: %1").arg(QString::fromLocal8Bit(strerror(errno)));
                    break;
                }
                if (fds[1].revents & POLLIN) {
                    uint64_t count;
                    (void)!::read(wakeFd_, &count, sizeof count);
                }
                readable = fds[0].revents != 0;
            }
            if (stop_.load())
                break;
            if (!drainInput(client)) {
                reason = tr("the display connection was lost while sending input");
                break;
            }
            if (readable && !HandleRFBServerMessage(client)) {
                reason = tr("the display connection was closed");
                break;
            }
        }
    }
    client->frameBuffer = nullptr; // owned by backBuffer_
    rfbClientCleanup(client);
    backBuffer_ = {};
    qCDebug(lcVnc) << "VNC thread ends:" << (reason.isEmpty() ? QStringLiteral("stopped") : reason);
    emit disconnected(reason);
}

} // namespace isr::ui
