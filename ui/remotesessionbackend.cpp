#include "remotesessionbackend.h"

#include "util/log.h"

#include <QJsonArray>

namespace isr::ui {

namespace {
constexpr const char* kLog = "shell";
}

RemoteSessionBackend::RemoteSessionBackend(QString socketPath, QSize screen, QObject* parent)
    : SessionBackend(parent), path_(std::move(socketPath)), screen_(screen) {
    reconnect_.setInterval(500);
    connect(&reconnect_, &QTimer::timeout, this, [this] { tryConnect(); });
    tryConnect();
}

RemoteSessionBackend::~RemoteSessionBackend() = default;

void RemoteSessionBackend::tryConnect() {
    auto fd = wire::connectTo(path_.toStdString());
    if (!fd.ok()) {
        if (!loggedWaiting_) {
            ISR_LOG_WARN(kLog) << "waiting for the kiosk's VM host: " << fd.error().message;
        }
        loggedWaiting_ = true;
        reconnect_.start();
        return;
    }
    reconnect_.stop();
    loggedWaiting_ = false;
    channel_ = std::make_unique<wire::Channel>(std::move(*fd));
    connect(channel_.get(), &wire::Channel::received, this,
            [this](const QJsonObject& m, const std::shared_ptr<UniqueFd>& f) { onMessage(m, f); });
    connect(channel_.get(), &wire::Channel::closed, this,
            [this](const QString& why) { onLost(why); });
    QJsonObject hello{{QStringLiteral("t"), QStringLiteral("hello")}};
    if (!screen_.isEmpty())
        hello.insert(QStringLiteral("screen"), QJsonArray{screen_.width(), screen_.height()});
    channel_->send(hello);
    ISR_LOG_INFO(kLog) << "connected to the kiosk's VM host at " << path_.toStdString();
    emit connectedChanged();
}

void RemoteSessionBackend::onLost(const QString& why) {
    ISR_LOG_WARN(kLog) << "lost the kiosk's VM host: " << why.toStdString();
    wire::Channel::dropLater(channel_, this); // inside its own signal
    if (displayPending_) {
        displayPending_ = false;
        display()->refuse(tr("the kiosk's VM host is not running"));
    }
    if (stage() != SignedOut && stage() != Failed)
        failLocally(stage(), userName());
    reconnect_.start();
    emit connectedChanged();
}

void RemoteSessionBackend::failLocally(Stage stage, const QString& user) {
    session::Failure f;
    f.stage = toCore(stage == SignedOut ? Authenticating : stage);
    f.kind = session::ErrorKind::Internal;
    f.detail = "This kiosk cannot start sessions: its VM host (isr-vmhost) is not running";
    setUserName(user);
    if (this->stage() == SignedOut)
        setStage(Authenticating);
    setFailure(f);
    setStage(Failed);
}

bool RemoteSessionBackend::send(const QJsonObject& m) {
    return channel_ && channel_->send(m);
}

void RemoteSessionBackend::signIn(const QString& user, const QString& password) {
    if (!send({{QStringLiteral("t"), QStringLiteral("signIn")},
               {QStringLiteral("user"), user},
               {QStringLiteral("password"), password}}))
        failLocally(SignedOut, user);
}

void RemoteSessionBackend::takeOver(const QString& password) {
    if (!send({{QStringLiteral("t"), QStringLiteral("takeOver")},
               {QStringLiteral("password"), password}}))
        failLocally(Failed, userName());
}

void RemoteSessionBackend::retry(const QString& password) {
    if (!send({{QStringLiteral("t"), QStringLiteral("retry")},
               {QStringLiteral("password"), password}}))
        failLocally(Failed, userName());
}

void RemoteSessionBackend::checkPassword(const QString& password) {
    if (!send({{QStringLiteral("t"), QStringLiteral("checkPassword")},
               {QStringLiteral("password"), password}}))
        emit passwordChecked(false, Internal);
}

void RemoteSessionBackend::cancel() {
    if (!send({{QStringLiteral("t"), QStringLiteral("cancel")}})) {
        clearError();
        setStage(SignedOut);
    }
}

void RemoteSessionBackend::suspendAndLeave() {
    send({{QStringLiteral("t"), QStringLiteral("suspendAndLeave")}});
}

void RemoteSessionBackend::acknowledge() {
    if (!send({{QStringLiteral("t"), QStringLiteral("acknowledge")}})) {
        // The failure was ours (no host): back to the sign-in page.
        clearError();
        setStage(SignedOut);
    }
}

void RemoteSessionBackend::kioskStopping(bool stopping) {
    if (send({{QStringLiteral("t"), QStringLiteral("stopping")}, {QStringLiteral("on"), stopping}}))
        return;
    // No host: nothing this shell can save; let KioskShutdown quit.
    setShuttingDown(stopping);
    if (stopping) {
        clearError();
        setStage(SignedOut);
    }
}

void RemoteSessionBackend::openDisplay() {
    if (!send({{QStringLiteral("t"), QStringLiteral("display")}})) {
        display()->refuse(tr("the kiosk's VM host is not running"));
        return;
    }
    displayPending_ = true;
}

void RemoteSessionBackend::onMessage(const QJsonObject& m, const std::shared_ptr<UniqueFd>& fd) {
    const QString t = m.value(QLatin1String("t")).toString();
    if (t == QLatin1String("state")) {
        applyState(m);
    } else if (t == QLatin1String("displayAhead")) {
        if (fd->valid())
            display()->offerAhead(std::move(*fd));
    } else if (t == QLatin1String("display")) {
        if (!displayPending_)
            return;
        displayPending_ = false;
        if (m.value(QLatin1String("ok")).toBool() && fd->valid())
            display()->offer(std::move(*fd));
        else
            display()->refuse(m.value(QLatin1String("reason")).toString());
    } else if (t == QLatin1String("passwordRefused")) {
        emit passwordRefused();
    } else if (t == QLatin1String("passwordChecked")) {
        emit passwordChecked(m.value(QLatin1String("right")).toBool(),
                             ErrorKind(m.value(QLatin1String("problem")).toInt()));
    }
}

void RemoteSessionBackend::applyState(const QJsonObject& m) {
    // Facts first, the stage last (QML reads the error when the stage
    // says Failed); the version after the stage, whose change to
    // Authenticating clears it.
    const int stageValue = m.value(QLatin1String("stage")).toInt();
    if (stageValue < SignedOut || stageValue > Failed) {
        ISR_LOG_WARN(kLog) << "ignored a state with an unknown stage " << stageValue;
        return;
    }
    setUserName(m.value(QLatin1String("user")).toString());
    if (m.contains(QLatin1String("failure"))) {
        const session::Failure f =
            wire::failureFromJson(m.value(QLatin1String("failure")).toObject());
        if (!failure() || wire::toJson(*failure()) != wire::toJson(f))
            setFailure(f);
    } else {
        clearError();
    }
    setProgress(qint64(m.value(QLatin1String("done")).toDouble()),
                qint64(m.value(QLatin1String("total")).toDouble()),
                m.value(QLatin1String("rate")).toDouble());
    setHoard(wire::hoardFromJson(m.value(QLatin1String("hoard")).toObject()));
    setShuttingDown(m.value(QLatin1String("shuttingDown")).toBool());
    setStage(Stage(stageValue));
    if (m.contains(QLatin1String("resumingFrom"))) {
        const session::SavedVersion v =
            wire::savedFromJson(m.value(QLatin1String("resumingFrom")).toObject());
        const auto& have = resumingFromVersion();
        if (!have || have->version != v.version || have->created != v.created ||
            have->kiosk != v.kiosk)
            setResumingFrom(v);
    }
}

} // namespace isr::ui
