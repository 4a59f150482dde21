#include "sessionwire.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace isr::ui::wire {

namespace {

// 64-bit figures travel as JSON numbers (doubles): exact below 2^53, which
// versions, times and byte counts of a kiosk stay under.
qint64 i64(const QJsonObject& o, const char* key) {
    return qint64(o.value(QLatin1String(key)).toDouble());
}
std::string str(const QJsonObject& o, const char* key) {
    return o.value(QLatin1String(key)).toString().toStdString();
}
QString qs(const std::string& s) {
    return QString::fromStdString(s);
}

} // namespace

QJsonObject toJson(const session::SavedVersion& v) {
    return {{QStringLiteral("version"), double(v.version)},
            {QStringLiteral("created"), double(v.created)},
            {QStringLiteral("kiosk"), qs(v.kiosk)}};
}

session::SavedVersion savedFromJson(const QJsonObject& o) {
    session::SavedVersion v;
    v.version = std::uint64_t(i64(o, "version"));
    v.created = i64(o, "created");
    v.kiosk = str(o, "kiosk");
    return v;
}

QJsonObject toJson(const session::Failure& f) {
    QJsonObject o{{QStringLiteral("stage"), int(f.stage)},
                  {QStringLiteral("kind"), int(f.kind)},
                  {QStringLiteral("cause"), int(f.cause)},
                  {QStringLiteral("where"), qs(f.where)},
                  {QStringLiteral("bootProfile"), qs(f.bootProfile)},
                  {QStringLiteral("missingPackage"), qs(f.missingPackage)},
                  {QStringLiteral("detail"), qs(f.detail)}};
    if (f.holder) // the store's tag and the holder's session token stay in the host
        o.insert(QStringLiteral("holder"),
                 QJsonObject{{QStringLiteral("kiosk"), qs(f.holder->kiosk)},
                             {QStringLiteral("since"), double(f.holder->since)},
                             {QStringLiteral("heartbeat"), double(f.holder->heartbeat)}});
    if (f.lastSave)
        o.insert(QStringLiteral("lastSave"), toJson(*f.lastSave));
    if (f.freeBytes)
        o.insert(QStringLiteral("freeBytes"), double(*f.freeBytes));
    if (f.served)
        o.insert(QStringLiteral("served"), toJson(*f.served));
    if (f.seen)
        o.insert(QStringLiteral("seen"), toJson(*f.seen));
    return o;
}

session::Failure failureFromJson(const QJsonObject& o) {
    session::Failure f;
    f.stage = session::Stage(o.value(QLatin1String("stage")).toInt());
    f.kind = session::ErrorKind(o.value(QLatin1String("kind")).toInt());
    f.cause = session::FailureCause(o.value(QLatin1String("cause")).toInt());
    f.where = str(o, "where");
    f.bootProfile = str(o, "bootProfile");
    f.missingPackage = str(o, "missingPackage");
    f.detail = str(o, "detail");
    if (o.contains(QLatin1String("holder"))) {
        const QJsonObject h = o.value(QLatin1String("holder")).toObject();
        parcel::LockInfo lock;
        lock.kiosk = str(h, "kiosk");
        lock.since = i64(h, "since");
        lock.heartbeat = i64(h, "heartbeat");
        f.holder = lock;
    }
    if (o.contains(QLatin1String("lastSave")))
        f.lastSave = savedFromJson(o.value(QLatin1String("lastSave")).toObject());
    if (o.contains(QLatin1String("freeBytes")))
        f.freeBytes = std::uint64_t(i64(o, "freeBytes"));
    if (o.contains(QLatin1String("served")))
        f.served = savedFromJson(o.value(QLatin1String("served")).toObject());
    if (o.contains(QLatin1String("seen")))
        f.seen = savedFromJson(o.value(QLatin1String("seen")).toObject());
    return f;
}

QJsonObject toJson(const session::HoardStatus& h) {
    return {{QStringLiteral("chunksDone"), double(h.chunksDone)},
            {QStringLiteral("chunksTotal"), double(h.chunksTotal)},
            {QStringLiteral("bytesDone"), double(h.bytesDone)},
            {QStringLiteral("bytesTotal"), double(h.bytesTotal)},
            {QStringLiteral("problem"), int(h.problem)},
            {QStringLiteral("problemMessage"), qs(h.problemMessage)},
            {QStringLiteral("memoryChunksDone"), double(h.memoryChunksDone)},
            {QStringLiteral("memoryChunksTotal"), double(h.memoryChunksTotal)}};
}

session::HoardStatus hoardFromJson(const QJsonObject& o) {
    session::HoardStatus h;
    h.chunksDone = std::uint64_t(i64(o, "chunksDone"));
    h.chunksTotal = std::uint64_t(i64(o, "chunksTotal"));
    h.bytesDone = std::uint64_t(i64(o, "bytesDone"));
    h.bytesTotal = std::uint64_t(i64(o, "bytesTotal"));
    h.problem = session::ErrorKind(o.value(QLatin1String("problem")).toInt());
    h.problemMessage = str(o, "problemMessage");
    h.memoryChunksDone = std::uint64_t(i64(o, "memoryChunksDone"));
    h.memoryChunksTotal = std::uint64_t(i64(o, "memoryChunksTotal"));
    return h;
}

Channel::Channel(UniqueFd fd, QObject* parent) : QObject(parent), fd_(std::move(fd)) {
    notifier_ = std::make_unique<QSocketNotifier>(fd_.get(), QSocketNotifier::Read);
    connect(notifier_.get(), &QSocketNotifier::activated, this, [this] { readReady(); });
}

Channel::~Channel() {
    close();
}

void Channel::close() {
    notifier_.reset();
    fd_.reset();
}

void Channel::dropLater(std::unique_ptr<Channel>& channel, QObject* owner) {
    Channel* gone = channel.release();
    gone->setParent(owner);
    gone->deleteLater();
}

void Channel::fail(const QString& why) {
    if (!fd_.valid())
        return;
    close();
    emit closed(why);
}

bool Channel::send(const QJsonObject& message, int fd) {
    if (!fd_.valid())
        return false;
    const QByteArray bytes = QJsonDocument(message).toJson(QJsonDocument::Compact);
    if (bytes.size() > kMaxMessage) { // a bug of ours, never the peer's doing
        qWarning("session wire: a %lld-byte message is over the limit", qlonglong(bytes.size()));
        return false;
    }
    iovec iov{const_cast<char*>(bytes.constData()), std::size_t(bytes.size())};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        // MSG_NOSIGNAL: a gone peer is an error here, not SIGPIPE.
        if (::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL) == bytes.size())
            return true;
        if (errno == EINTR)
            continue;
        const int err = errno;
        // Deferred: a send from inside a received() handler must not
        // destroy the notifier that is delivering it.
        QMetaObject::invokeMethod(
            this, [this, err] { fail(QString::fromLocal8Bit(std::strerror(err))); },
            Qt::QueuedConnection);
        return false;
    }
}

void Channel::readReady() {
    // One packet per activation; the notifier fires again while more wait.
    std::vector<char> buffer(kMaxMessage + 1);
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do
        n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    // Every descriptor that came is owned now, whatever happens next.
    std::vector<std::shared_ptr<UniqueFd>> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds.push_back(std::make_shared<UniqueFd>(fd));
        }
    }
    if (n < 0)
        return fail(QString::fromLocal8Bit(std::strerror(errno)));
    if (n == 0)
        return fail(QStringLiteral("the other side closed the connection"));
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n > kMaxMessage || fds.size() > 1)
        return fail(QStringLiteral("a message over the limit"));
    QJsonParseError error{};
    const QJsonDocument doc = QJsonDocument::fromJson(QByteArray(buffer.data(), int(n)), &error);
    if (error.error != QJsonParseError::NoError || !doc.isObject())
        return fail(QStringLiteral("a message that is not a JSON object"));
    emit received(doc.object(), fds.empty() ? std::make_shared<UniqueFd>() : fds.front());
}

Result<UniqueFd> connectTo(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return Error(Errc::InvalidArgument, "socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return errnoError(errno, "socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        return errnoError(errno, "connect " + path);
    return fd;
}

} // namespace isr::ui::wire
