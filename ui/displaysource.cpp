#include "displaysource.h"

namespace isr::ui {

DisplaySource::DisplaySource(QObject* parent) : QObject(parent) {}

DisplaySource::~DisplaySource() = default;

void DisplaySource::request() {
    ++requests_;
    if (!available_) {
        emit failed(tr("your computer is not running"));
        return;
    }
    if (pending_.valid()) { // one is already waiting
        emit ready();
        return;
    }
    if (!opener_) {
        emit failed(tr("this kiosk has no display to show"));
        return;
    }
    opener_();
}

void DisplaySource::setAvailable(bool available) {
    if (available == available_)
        return;
    available_ = available;
    if (!available_)
        pending_.reset(); // a connection to a VM that is gone, or going
    emit availableChanged();
}

void DisplaySource::offer(UniqueFd fd) {
    // An answer that arrives after the session left Running is dropped (and
    // closed): it belongs to a VM that is gone or going.
    if (!fd.valid() || !available_)
        return;
    pending_ = std::move(fd);
    emit ready();
}

void DisplaySource::offerAhead(UniqueFd fd) {
    if (!fd.valid())
        return;
    pending_ = std::move(fd);
    if (available_)
        emit ready();
}

void DisplaySource::refuse(const QString& reason) {
    if (available_)
        emit failed(reason);
}

} // namespace isr::ui
