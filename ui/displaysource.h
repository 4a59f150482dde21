#pragma once
// DisplaySource: where the VM's screen comes from, as the display item sees
// it. Owned by a SessionBackend and exposed to QML as `backend.display`; QML
// only binds it to a VncDisplay (`source: backend.display`). File
// descriptors never leave C++.
//
// - `available` is true while the session is Running: a display can be
//   opened. The backend flips it with the stage.
// - The backend may offer() a connected RFB socket before it announces
//   Running (SessionController opens it first, so the screen is there the
//   moment the page shows); it waits in the source until a display takes it.
// - request() asks the backend for a fresh connection (after a drop); later,
//   on the GUI thread, either ready() (an fd waits: takeFd()) or failed(why).
// - Leaving Running closes an fd nobody took.
//
// GUI thread only. Backends serve request() through the opener they install
// (SessionController: a job on its worker thread, posted back to the GUI).

#include "util/posix.h"

#include <QObject>
#include <QString>
#include <QtQml/qqmlregistration.h>
#include <functional>

namespace isr::ui {

class DisplaySource : public QObject {
    Q_OBJECT
    QML_ELEMENT
    QML_UNCREATABLE("a SessionBackend owns its display source")
    Q_PROPERTY(bool available READ isAvailable NOTIFY availableChanged)

public:
    explicit DisplaySource(QObject* parent = nullptr);
    ~DisplaySource() override;

    bool isAvailable() const { return available_; }
    bool hasPendingFd() const { return pending_.valid(); }
    // The waiting connection, -1 if none; ownership passes to the caller.
    int takeFd() { return pending_.release(); }
    // Ask for a fresh connection: ready() or failed() follows, or nothing if
    // the source stops being available first.
    void request();
    int requests() const { return requests_; }

    // For backends.
    using Opener = std::function<void()>;
    void setOpener(Opener opener) { opener_ = std::move(opener); }
    void setAvailable(bool available);
    // The answer to request(): a connected RFB socket (dropped unless
    // available), or why there is none.
    void offer(UniqueFd fd);
    void refuse(const QString& reason);
    // A connection opened before the backend announces Running: kept until
    // a display takes it (or the source stops being available).
    void offerAhead(UniqueFd fd);

signals:
    void availableChanged();
    void ready();
    void failed(const QString& reason);

private:
    Opener opener_;
    UniqueFd pending_;
    bool available_ = false;
    int requests_ = 0;
};

} // namespace isr::ui
