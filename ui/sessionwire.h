#pragma once
// The wire between the kiosk's shell and its VM host (issue #16, items 3 and
// 4): the shell (isr-kiosk --vm-host, unprivileged, QML and cage) and the
// host (isr-vmhost, root: store, keys, cache, libvirt, QEMU as isr-qemu) are
// two processes joined by one UNIX socket. The host serves a SessionBackend
// (SessionHost); the shell shows it (RemoteSessionBackend). README.md in this
// directory, "The VM host", says who can do what over it.
//
// Transport: SOCK_SEQPACKET, one JSON object per packet (message boundaries
// kept by the kernel, no framing of our own), at most kMaxMessage bytes. A
// packet may carry one file descriptor (SCM_RIGHTS): the VM's display, a
// connected RFB socket. Field "t" names the message:
//   shell -> host   hello {screen: [w, h]}   signIn {user, password}
//                   takeOver {password}  retry {password}  checkPassword {password}
//                   cancel  suspendAndLeave  acknowledge  stopping {on}  display
//   host -> shell   state {...the backend's whole state, see stateToJson}
//                   displayAhead +fd   display {ok, reason} (+fd when ok)
//                   passwordRefused   passwordChecked {right, problem}
// Every state change sends the whole state (a few hundred bytes): a shell
// that connects late, or again, needs nothing else.
//
// Passwords cross the socket in clear: it is a local socket whose peer the
// host checks (SO_PEERCRED), and the shell had the password in its fields
// anyway.

#include "session/session.h"
#include "util/posix.h"

#include <QJsonObject>
#include <QObject>
#include <QSocketNotifier>
#include <memory>

namespace isr::ui::wire {

inline constexpr int kMaxMessage = 64 * 1024;

QJsonObject toJson(const session::SavedVersion& v);
session::SavedVersion savedFromJson(const QJsonObject& o);
QJsonObject toJson(const session::Failure& f);
session::Failure failureFromJson(const QJsonObject& o);
QJsonObject toJson(const session::HoardStatus& h);
session::HoardStatus hoardFromJson(const QJsonObject& o);

// One connected SOCK_SEQPACKET socket, driven by the event loop of the
// thread that owns it. received() for each packet; closed() once when the
// peer goes away, a packet is malformed or too large, or a send fails
// (the channel is dead after that: no more signals, send() returns false).
class Channel : public QObject {
    Q_OBJECT

public:
    explicit Channel(UniqueFd fd, QObject* parent = nullptr);
    ~Channel() override;

    bool isOpen() const { return fd_.valid(); }
    // One message, with `fd` attached (not consumed) when >= 0. False when
    // the channel is closed or the peer is gone.
    bool send(const QJsonObject& message, int fd = -1);
    // Closes without emitting closed().
    void close();
    // Ends `channel`'s ownership from inside its own closed() signal: the
    // object is deleted later, and parented to `owner` so it goes with the
    // owner if the event loop never gets to the deferred delete.
    static void dropLater(std::unique_ptr<Channel>& channel, QObject* owner);

signals:
    // `fd` is valid when the packet carried one (ownership passes on).
    void received(const QJsonObject& message, std::shared_ptr<UniqueFd> fd);
    void closed(const QString& why);

private:
    void readReady();
    void fail(const QString& why);

    UniqueFd fd_;
    std::unique_ptr<QSocketNotifier> notifier_;
};

// socket(AF_UNIX, SOCK_SEQPACKET) connected to `path`, or the errno error.
Result<UniqueFd> connectTo(const std::string& path);

} // namespace isr::ui::wire
