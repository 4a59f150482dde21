#include "parcel/lock_lease.h"

#include "util/log.h"

namespace isr::parcel {

LockLease::LockLease(Parcels& parcels, std::string parcel, std::string kiosk)
    : parcels_(parcels), parcel_(std::move(parcel)), kiosk_(std::move(kiosk)) {}

LockLease::~LockLease() {
    heartbeat_.stop();
}

Result<LockAttempt> LockLease::acquire(bool takeOver) {
    {
        std::lock_guard lock(mutex_);
        if (held_)
            return LockAttempt{true, mine_};
    }
    ISR_TRY_ASSIGN(LockAttempt attempt, parcels_.lock(parcel_, kiosk_, takeOver));
    if (attempt.acquired) {
        std::lock_guard lock(mutex_);
        mine_ = attempt.lock;
        held_ = true;
        lost_ = false;
        lostDetail_.clear();
    }
    return attempt;
}

void LockLease::startHeartbeat(std::chrono::milliseconds interval,
                               std::function<void(const std::string&)> onLost) {
    heartbeat_.stop();
    onLost_ = std::move(onLost);
    heartbeat_.start(interval, [this] { return beat(); });
}

Status LockLease::confirm() {
    LockInfo mine;
    {
        std::lock_guard lock(mutex_);
        if (!held_)
            return Error(Errc::Locked, "parcel '" + parcel_ + "' is not locked by this kiosk");
        if (lost_)
            return Error(Errc::Locked, lostDetail_);
        mine = mine_;
    }
    auto st = parcels_.confirmLock(parcel_, mine);
    std::lock_guard lock(mutex_);
    if (st.ok()) {
        mine_ = mine;
        return {};
    }
    if (st.error().code == Errc::Locked) {
        lost_ = true;
        lostDetail_ = st.error().message;
    }
    return st;
}

void LockLease::stopHeartbeat() {
    heartbeat_.stop();
}

bool LockLease::beat() {
    LockInfo mine;
    {
        std::lock_guard lock(mutex_);
        if (!held_)
            return false;
        mine = mine_;
    }
    // Store I/O without the mutex: held()/lost() never wait for the store.
    auto st = parcels_.heartbeat(parcel_, mine);
    std::unique_lock lock(mutex_);
    if (st.ok()) {
        mine_.heartbeat = mine.heartbeat;
        mine_.tag = mine.tag;
        return true;
    }
    if (st.error().code == Errc::Locked) {
        // Another kiosk took the parcel over. What the session does about it
        // (stop the VM, wipe without committing) is its decision: onLost.
        lost_ = true;
        lostDetail_ = st.error().message;
        ISR_LOG_WARN("parcel") << "heartbeat: the lock is lost: " << st.error().describe();
        std::string detail = lostDetail_;
        lock.unlock();
        if (onLost_)
            onLost_(detail);
        return false;
    }
    // The store may be down (the VM runs on cached data): try at the next beat.
    ISR_LOG_WARN("parcel") << "heartbeat: " << st.error().describe();
    return true;
}

Status LockLease::release() {
    heartbeat_.stop();
    LockInfo mine;
    {
        std::lock_guard lock(mutex_);
        if (!held_)
            return {};
        mine = mine_;
    }
    // Parcels::unlock leaves a lock that is no longer ours alone.
    ISR_TRY_STATUS(parcels_.unlock(parcel_, mine));
    std::lock_guard lock(mutex_);
    held_ = false;
    return {};
}

bool LockLease::held() const {
    std::lock_guard lock(mutex_);
    return held_;
}

bool LockLease::lost() const {
    std::lock_guard lock(mutex_);
    return lost_;
}

std::string LockLease::lostDetail() const {
    std::lock_guard lock(mutex_);
    return lostDetail_;
}

LockInfo LockLease::info() const {
    std::lock_guard lock(mutex_);
    return mine_;
}

} // namespace isr::parcel
