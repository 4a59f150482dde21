#include "sessionhost.h"

#include "util/log.h"

#include <QJsonArray>
#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace isr::ui {

namespace {
constexpr const char* kLog = "vmhost";
}

SessionHost::SessionHost(SessionBackend* backend, Hooks hooks, QObject* parent)
    : QObject(parent), backend_(backend), hooks_(std::move(hooks)) {
    connect(backend_, &SessionBackend::stageChanged, this, [this] { onStage(); });
    for (auto changed : {&SessionBackend::progressChanged, &SessionBackend::errorChanged,
                         &SessionBackend::hoardProblemChanged, &SessionBackend::shuttingDownChanged,
                         &SessionBackend::resumingFromChanged})
        connect(backend_, changed, this, [this] { sendState(); });
    connect(backend_, &SessionBackend::passwordRefused, this, [this] {
        if (shell_)
            shell_->send({{QStringLiteral("t"), QStringLiteral("passwordRefused")}});
    });
    connect(backend_, &SessionBackend::passwordChecked, this,
            [this](bool right, SessionBackend::ErrorKind problem) {
                if (shell_)
                    shell_->send({{QStringLiteral("t"), QStringLiteral("passwordChecked")},
                                  {QStringLiteral("right"), right},
                                  {QStringLiteral("problem"), int(problem)}});
            });
    DisplaySource* display = backend_->display();
    connect(display, &DisplaySource::ready, this, [this, display] {
        if (!displayRequested_ || !shell_)
            return; // an fd offered ahead: sent with Running (onStage)
        displayRequested_ = false;
        UniqueFd fd(display->takeFd());
        shell_->send(
            {{QStringLiteral("t"), QStringLiteral("display")}, {QStringLiteral("ok"), true}},
            fd.get());
    });
    connect(display, &DisplaySource::failed, this, [this](const QString& reason) {
        if (!displayRequested_ || !shell_)
            return;
        displayRequested_ = false;
        shell_->send({{QStringLiteral("t"), QStringLiteral("display")},
                      {QStringLiteral("ok"), false},
                      {QStringLiteral("reason"), reason}});
    });
}

SessionHost::~SessionHost() {
    shell_.reset();
    acceptNotifier_.reset();
    if (listenFd_.valid() && !path_.empty())
        ::unlink(path_.c_str());
}

Status SessionHost::listen(const std::string& path, uid_t shellUid, gid_t shellGid) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return Error(Errc::InvalidArgument, "socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    // A stale socket of an earlier host: replaced. Anything else is refused
    // (a file someone put there is not ours to delete).
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Error(Errc::AlreadyExists, path + " exists and is not a socket");
        if (::unlink(path.c_str()) != 0)
            return errnoError(errno, "remove the old socket " + path);
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
        return errnoError(errno, "socket");
    // Made inaccessible first, opened to the shell's group once it is ours:
    // no moment at which another user could connect before the chown.
    const mode_t old = ::umask(0177);
    const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int bindErr = errno;
    ::umask(old);
    if (bound != 0)
        return errnoError(bindErr, "bind " + path);
    if (::chown(path.c_str(), 0, shellGid) != 0 && ::geteuid() == 0)
        return errnoError(errno, "chown " + path);
    if (::chmod(path.c_str(), 0660) != 0)
        return errnoError(errno, "chmod " + path);
    if (::listen(fd.get(), 4) != 0)
        return errnoError(errno, "listen " + path);
    path_ = path;
    shellUid_ = shellUid;
    listenFd_ = std::move(fd);
    acceptNotifier_ = std::make_unique<QSocketNotifier>(listenFd_.get(), QSocketNotifier::Read);
    connect(acceptNotifier_.get(), &QSocketNotifier::activated, this, [this] { accept(); });
    ISR_LOG_INFO(kLog) << "serving the kiosk shell on " << path << " (uid " << shellUid << ")";
    return {};
}

void SessionHost::accept() {
    UniqueFd fd(::accept4(listenFd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid())
        return; // EAGAIN, or the peer gave up: nothing to do
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 ||
        (peer.uid != shellUid_ && peer.uid != 0)) {
        ++refused_;
        ISR_LOG_WARN(kLog) << "refused a connection from uid " << peer.uid << " (pid " << peer.pid
                           << "): only uid " << shellUid_ << " or root may drive sessions";
        return;
    }
    if (shell_) {
        ISR_LOG_INFO(kLog) << "a new shell (pid " << peer.pid << ") replaces the connected one";
        shell_.reset(); // not inside its signal: the accept notifier's
        shellGone();
    }
    shell_ = std::make_unique<wire::Channel>(std::move(fd));
    connect(shell_.get(), &wire::Channel::received, this,
            [this](const QJsonObject& m, const std::shared_ptr<UniqueFd>&) { onMessage(m); });
    connect(shell_.get(), &wire::Channel::closed, this,
            [this](const QString& why) { onShellLost(why); });
    displayRequested_ = false;
    ISR_LOG_INFO(kLog) << "kiosk shell connected (pid " << peer.pid << ", uid " << peer.uid << ")";
    sendState();
    emit shellConnected();
}

void SessionHost::onShellLost(const QString& why) {
    ISR_LOG_WARN(kLog) << "kiosk shell gone: " << why.toStdString();
    wire::Channel::dropLater(shell_, this); // inside its own signal
    shellGone();
    emit shellLost(why);
}

void SessionHost::shellGone() {
    displayRequested_ = false;
    const bool active = backend_->stage() != SessionBackend::SignedOut;
    if (active && !backend_->shuttingDown()) {
        ISR_LOG_WARN(kLog) << "no shell shows the session ("
                           << SessionBackend::stageName(backend_->stage()).toStdString()
                           << "): saving or ending it as for a kiosk stop";
        if (hooks_.stopping)
            hooks_.stopping(true);
    }
    // Sign-ins were closed for this shell (its own stop, or the save just
    // started): the next shell gets them back once the session is closed,
    // unless the host itself is going away. A shell restarted after its
    // stop (systemctl restart isr-kiosk) must not find the kiosk closed.
    if (active || shellAskedStop_)
        reopenWhenSignedOut_ = true;
    shellAskedStop_ = false;
    reopenIfSignedOut();
}

void SessionHost::reopenIfSignedOut() {
    if (backend_->stage() != SessionBackend::SignedOut || !reopenWhenSignedOut_)
        return;
    reopenWhenSignedOut_ = false;
    if (!hostStopping_ && hooks_.stopping) {
        ISR_LOG_INFO(kLog) << "the gone shell's session is closed: sign-ins open again";
        hooks_.stopping(false);
    }
}

void SessionHost::onStage() {
    // An fd opened ahead of Running goes first: the shell's display has it
    // when the state that says Running arrives.
    DisplaySource* display = backend_->display();
    if (backend_->stage() == SessionBackend::Running && display->hasPendingFd() && shell_) {
        UniqueFd fd(display->takeFd());
        shell_->send({{QStringLiteral("t"), QStringLiteral("displayAhead")}}, fd.get());
    }
    sendState();
    reopenIfSignedOut();
}

void SessionHost::sendState() {
    if (!shell_)
        return;
    const SessionBackend& b = *backend_;
    QJsonObject state{{QStringLiteral("t"), QStringLiteral("state")},
                      {QStringLiteral("stage"), int(b.stage())},
                      {QStringLiteral("user"), b.userName()},
                      {QStringLiteral("done"), double(b.bytesDone())},
                      {QStringLiteral("total"), double(b.bytesTotal())},
                      {QStringLiteral("rate"), b.rate()},
                      {QStringLiteral("hoard"), wire::toJson(b.hoardStatus())},
                      {QStringLiteral("shuttingDown"), b.shuttingDown()}};
    if (b.failure())
        state.insert(QStringLiteral("failure"), wire::toJson(*b.failure()));
    if (b.resumingFromVersion())
        state.insert(QStringLiteral("resumingFrom"), wire::toJson(*b.resumingFromVersion()));
    shell_->send(state);
}

void SessionHost::onMessage(const QJsonObject& m) {
    const QString t = m.value(QLatin1String("t")).toString();
    const QString password = m.value(QLatin1String("password")).toString();
    if (t == QLatin1String("hello")) {
        const QJsonArray screen = m.value(QLatin1String("screen")).toArray();
        if (hooks_.screen && screen.size() == 2)
            hooks_.screen(screen.at(0).toInt(), screen.at(1).toInt());
    } else if (t == QLatin1String("signIn")) {
        backend_->signIn(m.value(QLatin1String("user")).toString(), password);
    } else if (t == QLatin1String("takeOver")) {
        backend_->takeOver(password);
    } else if (t == QLatin1String("retry")) {
        backend_->retry(password);
    } else if (t == QLatin1String("checkPassword")) {
        backend_->checkPassword(password);
    } else if (t == QLatin1String("cancel")) {
        backend_->cancel();
    } else if (t == QLatin1String("suspendAndLeave")) {
        backend_->suspendAndLeave();
    } else if (t == QLatin1String("acknowledge")) {
        backend_->acknowledge();
    } else if (t == QLatin1String("stopping")) {
        shellAskedStop_ = m.value(QLatin1String("on")).toBool();
        if (hooks_.stopping)
            hooks_.stopping(shellAskedStop_);
    } else if (t == QLatin1String("display")) {
        displayRequested_ = true;
        backend_->display()->request();
    } else {
        ISR_LOG_WARN(kLog) << "ignored an unknown message from the shell: " << t.toStdString();
    }
}

} // namespace isr::ui
