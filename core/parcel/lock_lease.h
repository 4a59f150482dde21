#pragma once
// LockLease: this kiosk's hold on one parcel's lock, for as long as a session
// has the parcel checked out. It owns the lock it took (LockInfo, with its
// random session id), the heartbeat thread that keeps it fresh, and the one
// fact the heartbeat can learn: that another kiosk took the parcel over
// (lost()).
//
//   LockLease lease(parcels, "desk", "gate-23");
//   auto attempt = lease.acquire(takeOver);   // held, or attempt->lock is the holder
//   lease.startHeartbeat(60s);
//   ...
//   if (lease.lost()) ...                      // noticed by a heartbeat
//   lease.release();                           // unlock if still ours
//
// Every write of the lock is conditional (Parcels::lock: put-if-absent or
// put-if-match on the tag last seen), so two kiosks never both hold it. A
// lost lease is recorded, logged and reported once to the onLost callback
// (the session stops its VM and wipes without committing); confirm() lets a
// commit check that the lease still holds just before it writes.
//
// Threads: acquire(), startHeartbeat(), stopHeartbeat() and release() from
// one owning thread. held(), lost(), lostDetail() and info() are safe from any
// thread (the heartbeat thread updates the lock's heartbeat time under the
// lease's mutex). The Parcels passed in must outlive the lease.

#include "parcel/parcel.h"
#include "util/periodic.h"

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace isr::parcel {

class LockLease {
public:
    LockLease(Parcels& parcels, std::string parcel, std::string kiosk);
    // Stops the heartbeat. It does not release the lock (no store I/O in a
    // destructor): call release(). A lock left behind goes stale (no
    // heartbeat) and the next kiosk may take it over.
    ~LockLease();
    LockLease(const LockLease&) = delete;
    LockLease& operator=(const LockLease&) = delete;

    // Takes the lock: put-if-absent, or with takeOver an overwrite of the
    // holder's. acquired: held() is true and lock is ours; otherwise lock is
    // the current holder's. While held, returns ours again without asking the
    // store (locking again would find our own lock and call it another
    // kiosk's). Clears lost().
    Result<LockAttempt> acquire(bool takeOver);

    // Refreshes the lock every `interval` on a thread of its own until
    // stopHeartbeat() or release(), or until a heartbeat finds the parcel
    // taken over (then lost() is true and the thread ends: there is nothing
    // left to refresh). A store that does not answer is only logged: the VM
    // runs on cached data and the next beat tries again.
    // onLost, if set, is called once on the heartbeat thread when a beat
    // finds the lock taken over (after lost() became true); it must not call
    // back into the lease's stopHeartbeat()/release() (they join that thread).
    void startHeartbeat(std::chrono::milliseconds interval,
                        std::function<void(const std::string& detail)> onLost = {});
    void stopHeartbeat(); // joins; idempotent

    // Stops the heartbeat and deletes the lock if it is still ours (a lock
    // another kiosk took over is left alone). On success held() is false; on
    // a store error it stays true so a later release() tries again.
    Status release();

    // Checks, with a conditional write of our lock (a heartbeat), that we
    // still hold it: Locked (and lost() true) if another kiosk took it over.
    // From the owning thread, with the heartbeat stopped.
    Status confirm();

    bool held() const;
    // True once a heartbeat found the lock held by another kiosk (or gone).
    bool lost() const;
    // The heartbeat's words for the loss ("parcel 'desk' was taken over by
    // gate-7"); "" if not lost.
    std::string lostDetail() const;
    // Our lock while held (its heartbeat time as last written).
    LockInfo info() const;
    const std::string& parcel() const { return parcel_; }

private:
    bool beat(); // the heartbeat task: false ends the thread

    Parcels& parcels_;
    const std::string parcel_;
    const std::string kiosk_;

    mutable std::mutex mutex_; // guards mine_, held_, lost_, lostDetail_
    LockInfo mine_;
    bool held_ = false;
    bool lost_ = false;
    std::string lostDetail_;

    std::function<void(const std::string&)> onLost_; // set before the thread starts
    PeriodicThread heartbeat_;
};

} // namespace isr::parcel
