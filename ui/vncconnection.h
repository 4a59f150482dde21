#pragma once
// VncConnection: one thread that owns one rfbClient (LibVNCClient 0.9.14).
//
// Threading contract — where the GUI and the VNC thread meet:
// - Only run() (the VNC thread) touches the rfbClient and the back buffer the
//   client decodes into (allocated by our MallocFrameBuffer callback as a
//   QImage that owns it).
// - After each complete framebuffer update the thread copies the dirty
//   rectangles into the front image under frontMutex_ and emits
//   framebufferUpdated(rect) (queued to the GUI). Anyone reading the front
//   image must hold frontMutex_: use withFramebuffer().
// - Input from the GUI goes into inputQueue_ under inputMutex_ and the
//   thread is woken through an eventfd; it waits in poll() on the socket and
//   that eventfd instead of WaitForMessage(), so input never waits for a
//   timeout and nothing polls. No BlockingQueuedConnection anywhere.
//
// Pre-opened socket (0.9.14): rfbInitClient() calls ConnectToRFBServer()
// unless listenSpecified is set, and listenSpecified belongs to the reverse
// "-listen" mode. We therefore do not call rfbInitClient(): we set
// client->sock to the given fd and run the same public steps it runs after
// connecting — InitialiseRFBConnection(), MallocFrameBuffer,
// SetFormatAndEncodings(), SendFramebufferUpdateRequest(). The fd belongs to
// the client from then on; rfbClientCleanup() closes it.

#include <QImage>
#include <QMutex>
#include <QRect>
#include <QThread>
#include <atomic>
#include <deque>
#include <functional>

struct _rfbClient;

namespace isr::ui {

class VncConnection : public QThread {
    Q_OBJECT
public:
    // Takes ownership of `socketFd` (a connected stream socket speaking RFB).
    explicit VncConnection(int socketFd, QObject* parent = nullptr);
    ~VncConnection() override; // stops and joins the thread

    // Any thread. Queue input for the server and wake the VNC thread.
    // `xtScancode` 0 means "no scancode": a plain keysym event is sent.
    void sendKey(quint32 keysym, quint32 xtScancode, bool down);
    void sendPointer(int x, int y, int buttonMask);
    void requestStop();

    // Any thread. Calls `fn` with the front image while holding the lock.
    void withFramebuffer(const std::function<void(const QImage&)>& fn) const;
    QSize framebufferSize() const;

    // Counters for tests and diagnostics (events written to the socket).
    int keyEventsSent() const { return keyEvents_.load(); }
    int extendedKeyEventsSent() const { return extendedKeyEvents_.load(); }
    int pointerEventsSent() const { return pointerEvents_.load(); }
    bool serverHasExtendedKeys() const { return extendedKeys_.load(); }

signals:
    void connected(QSize size);
    void framebufferResized(QSize size);
    void framebufferUpdated(QRect rect);
    void disconnected(QString reason);

protected:
    void run() override;

private:
    struct InputEvent {
        enum Kind { Key, Pointer } kind;
        quint32 keysym = 0;
        quint32 scancode = 0;
        bool down = false;
        int x = 0, y = 0, buttons = 0;
    };
    static char tag_; // rfbClientSetClientData key

    static VncConnection* self(_rfbClient* client);
    static signed char mallocFrameBuffer(_rfbClient* client);
    static void gotFrameBufferUpdate(_rfbClient* client, int x, int y, int w, int h);
    static void finishedFrameBufferUpdate(_rfbClient* client);

    void wake();
    bool drainInput(_rfbClient* client);
    void publishDirty();

    int socketFd_;
    int wakeFd_ = -1;
    std::atomic<bool> stop_{false};

    QMutex inputMutex_;
    std::deque<InputEvent> inputQueue_;

    // VNC thread only.
    QImage backBuffer_;
    QRect dirty_;

    mutable QMutex frontMutex_;
    QImage front_; // guarded by frontMutex_

    std::atomic<int> keyEvents_{0};
    std::atomic<int> extendedKeyEvents_{0};
    std::atomic<int> pointerEvents_{0};
    std::atomic<bool> extendedKeys_{false};
};

} // namespace isr::ui
