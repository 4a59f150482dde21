#include "failuretext.h"

#include <QCoreApplication>

namespace isr::ui::text {

namespace {

using session::ErrorKind;
using session::FailureCause;
using session::Stage;

// The translation context "FailureText": lupdate finds FailureText::tr().
struct FailureText {
    Q_DECLARE_TR_FUNCTIONS(FailureText)
};

QString fromUtf8(const std::string& s) {
    return QString::fromStdString(s);
}

// What a failure of `kind` at `stage` means when the core named no cause.
QString byKindAndStage(ErrorKind kind, Stage stage) {
    switch (kind) {
    case ErrorKind::WrongCredentials:
        return FailureText::tr("The user name or password is not right. Check them and try again.");
    case ErrorKind::StoreUnreachable:
        return FailureText::tr("The kiosk cannot reach the place where your computer is stored. "
                               "Check that the kiosk is online and try again in a moment.");
    case ErrorKind::LockedElsewhere:
        return FailureText::tr(
            "Your computer is open at another kiosk. Take it over here, or leave it there.");
    case ErrorKind::Corrupt:
        return FailureText::tr("Part of your stored computer could not be read back intact. "
                               "Nothing was changed; please ask the kiosk's administrator for "
                               "help.");
    case ErrorKind::NoSpace:
        return FailureText::tr("This kiosk has run out of space. Try again, or use another kiosk.");
    case ErrorKind::VmFailed:
        if (stage == Stage::Running)
            return FailureText::tr("Your computer stopped while you were using it. Changes since "
                                   "your last save are lost.");
        if (stage == Stage::Suspending)
            return FailureText::tr("Your computer stopped before it could be saved.");
        return FailureText::tr("Your computer could not be started on this kiosk. Try again; if "
                               "it keeps happening, use another kiosk.");
    case ErrorKind::Internal:
        if (stage == Stage::Authenticating)
            return FailureText::tr("This kiosk cannot start sessions right now. Tell staff; your "
                                   "saved work is safe.");
        return FailureText::tr(
            "Something went wrong inside the kiosk. Try again; your saved work is safe.");
    case ErrorKind::None:
        break;
    }
    return FailureText::tr("Something went wrong. Try again, or go back to sign-in.");
}

QString byCause(const session::Failure& f, const QLocale& locale, const QDateTime& now) {
    switch (f.cause) {
    case FailureCause::Generic:
        return byKindAndStage(f.kind, f.stage);
    case FailureCause::StoreUnreachable:
        return byKindAndStage(ErrorKind::StoreUnreachable, f.stage);
    case FailureCause::WrongCredentials:
        return byKindAndStage(ErrorKind::WrongCredentials, f.stage);
    case FailureCause::NoParcel:
        return FailureText::tr("There is no computer for you in this kiosk's store. Ask an "
                               "administrator to set one up.");
    case FailureCause::SeveralParcels:
        return FailureText::tr("You have several computers and none is called \"default\", so "
                               "the kiosk does not know which one to open. Ask an administrator "
                               "which one this kiosk should open.");
    case FailureCause::ParcelNotFound:
        return FailureText::tr("The saved versions of your computer cannot be found in the "
                               "store. Ask an administrator for help.");
    case FailureCause::LockedElsewhere:
        if (!f.holder)
            return byKindAndStage(ErrorKind::LockedElsewhere, f.stage);
        return FailureText::tr("Your computer is open at %1 since %2. Take it over here, or "
                               "leave it there.")
            .arg(fromUtf8(f.holder->holderLabel()), localTime(f.holder->since, locale, now));
    case FailureCause::DamagedVersion:
        return FailureText::tr("The newest saved version of your computer did not pass its "
                               "integrity check, so this kiosk did not open it. Nothing was "
                               "changed; ask an administrator for help (they can go back to an "
                               "earlier version).");
    case FailureCause::BootProfileUnavailable:
        if (!f.missingPackage.empty())
            return FailureText::tr(
                       "Your computer starts in a way this kiosk cannot offer (\"%1\"): "
                       "the kiosk lacks the package %2. Use another kiosk, or ask an "
                       "administrator to install it.")
                .arg(fromUtf8(f.bootProfile), fromUtf8(f.missingPackage));
        if (f.bootProfile.empty())
            return FailureText::tr("Your computer starts in a way this kiosk cannot offer. Use "
                                   "another kiosk, or ask an administrator.");
        return FailureText::tr("Your computer starts in a way this kiosk cannot offer (\"%1\"). "
                               "Use another kiosk, or ask an administrator.")
            .arg(fromUtf8(f.bootProfile));
    case FailureCause::NoBootLoader:
        return FailureText::tr("Your computer's disk has nothing this kiosk can start: it has no "
                               "boot loader. Nothing was changed; ask an administrator to check "
                               "the computer's disk image.");
    case FailureCause::OsDidNotStart:
        return FailureText::tr("Your computer did not start: its operating system did not come "
                               "up, and the kiosk stopped it. Nothing was changed. Try again; if "
                               "it happens again, ask an administrator to check the computer's "
                               "disk image.");
    case FailureCause::KioskStorage: {
        QString text = FailureText::tr("This kiosk has run out of space for your session.");
        if (f.freeBytes && !f.where.empty())
            text = FailureText::tr("This kiosk has run out of space for your session (%1 free in "
                                   "%2).")
                       .arg(locale.formattedDataSize(qint64(*f.freeBytes), 1), fromUtf8(f.where));
        else if (!f.where.empty())
            text = FailureText::tr("This kiosk has run out of space for your session (in %1).")
                       .arg(fromUtf8(f.where));
        return text + ' ' + FailureText::tr("Tell staff, and try again or use another kiosk.");
    }
    case FailureCause::MemoryImageFetch:
        return FailureText::tr("The saved memory of your computer could not be fetched from "
                               "the store. Try again in a moment.");
    case FailureCause::VmStart:
        return FailureText::tr("Your computer could not be started on this kiosk. Try again; if "
                               "it keeps happening, use another kiosk.");
    case FailureCause::VmRestore:
        return FailureText::tr("Your computer could not be resumed on this kiosk. Try again; if "
                               "it keeps happening, use another kiosk.");
    case FailureCause::VmStopped:
        return FailureText::tr("Your computer stopped unexpectedly while you were using it. "
                               "Changes since your last save are lost.");
    case FailureCause::GuestPoweredOff:
        return FailureText::tr("Your computer shut itself down. This kiosk keeps a computer only "
                               "as a suspended machine, so changes since your last save are not "
                               "kept.");
    case FailureCause::VmGoneAtSave:
        return FailureText::tr("Your computer had already stopped, so there was nothing to "
                               "save.");
    case FailureCause::SaveFailed:
        return FailureText::tr("Your computer could not be saved. It is still on this kiosk: "
                               "try again.");
    case FailureCause::MemoryUpload:
        return FailureText::tr("The memory of your computer could not be sent to the store. "
                               "It is still on this kiosk: try again when the store can be "
                               "reached.");
    case FailureCause::DiskUpload:
        return FailureText::tr("The changes to your computer's disk could not be sent to the "
                               "store. They are still on this kiosk: try again when the store "
                               "can be reached.");
    case FailureCause::CommitConflict:
        return FailureText::tr("Another kiosk saved your computer after this one opened it, so "
                               "this session cannot be saved over it. What was saved there is "
                               "kept.");
    case FailureCause::Commit:
        return FailureText::tr("The new version of your computer could not be created in the "
                               "store. Your computer is still on this kiosk: try again.");
    case FailureCause::UnsafeKiosk:
        // For staff as much as for the user: what to fix is in the log
        // (f.detail) and in kiosk.conf's allow_unencrypted_swap.
        if (f.where.empty())
            return FailureText::tr("This kiosk is not safe to use: its swap space is not "
                                   "encrypted, so your computer's memory could be left on its "
                                   "disk. Please tell staff and use another kiosk.");
        return FailureText::tr("This kiosk is not safe to use: its swap space (%1) is not "
                               "encrypted, so your computer's memory could be left on its "
                               "disk. Please tell staff and use another kiosk.")
            .arg(fromUtf8(f.where));
    case FailureCause::LockTakenOver:
        if (!f.holder)
            return FailureText::tr("Your computer was opened at another kiosk, so this kiosk "
                                   "stopped it without saving. Your work continues there.");
        return FailureText::tr("Your computer was opened at %1 (%2), so this kiosk stopped it "
                               "without saving. Your work continues there.")
            .arg(fromUtf8(f.holder->holderLabel()), localTime(f.holder->since, locale, now));
    case FailureCause::StoreRolledBack:
        if (!f.served || !f.seen)
            return FailureText::tr("The store offered an older copy of your computer than this "
                                   "kiosk has already seen, so this kiosk did not open it. "
                                   "Nothing was lost or overwritten. Please tell staff: the "
                                   "store may have been tampered with or restored from a "
                                   "backup.");
        return FailureText::tr("The store offered an older copy of your computer (%1) than "
                               "this kiosk has already seen (%2), so this kiosk did not open "
                               "it. Nothing was lost or overwritten. Please tell staff: the "
                               "store may have been tampered with or restored from a backup.")
            .arg(savedVersion(*f.served, locale, now), savedVersion(*f.seen, locale, now));
    case FailureCause::StoreForked:
        if (!f.served)
            return FailureText::tr("The store offered a copy of your computer that is not the "
                                   "one this kiosk saw before, so this kiosk did not open it. "
                                   "Nothing was changed. Please tell staff: the store may have "
                                   "been tampered with.");
        return FailureText::tr("The store offered a copy of your computer (%1) that is not the "
                               "one this kiosk saw before, so this kiosk did not open it. "
                               "Nothing was changed. Please tell staff: the store may have "
                               "been tampered with.")
            .arg(savedVersion(*f.served, locale, now));
    }
    return byKindAndStage(f.kind, f.stage);
}

} // namespace

QString localTime(std::int64_t unixSeconds, const QLocale& locale, const QDateTime& now) {
    const QDateTime when = QDateTime::fromSecsSinceEpoch(unixSeconds).toLocalTime();
    const qint64 days = when.date().daysTo(now.toLocalTime().date());
    if (days == 0)
        return FailureText::tr("today %1")
            .arg(locale.toString(when.time(), QStringLiteral("HH:mm")));
    if (days > 0 && days < 7)
        return locale.toString(when, QStringLiteral("dddd HH:mm"));
    return locale.toString(when, QStringLiteral("d MMMM yyyy HH:mm"));
}

QString savedVersion(const session::SavedVersion& saved, const QLocale& locale,
                     const QDateTime& now) {
    const QString version = QString::number(saved.version);
    if (saved.created == 0)
        return FailureText::tr("version %1").arg(version);
    if (saved.kiosk.empty())
        return FailureText::tr("version %1, saved %2")
            .arg(version, localTime(saved.created, locale, now));
    return FailureText::tr("version %1, saved %2 at %3")
        .arg(version, localTime(saved.created, locale, now), fromUtf8(saved.kiosk));
}

QString resumingFrom(const session::SavedVersion& saved, const QLocale& locale,
                     const QDateTime& now) {
    if (saved.created == 0)
        return {};
    if (saved.kiosk.empty())
        return FailureText::tr("Saved %1").arg(localTime(saved.created, locale, now));
    return FailureText::tr("Saved %1 at kiosk %2")
        .arg(localTime(saved.created, locale, now), fromUtf8(saved.kiosk));
}

QString failure(const session::Failure& f, const QLocale& locale, const QDateTime& now) {
    QString text = byCause(f, locale, now);
    if (f.lastSave && f.lastSave->version > 0)
        text += ' ' + FailureText::tr("Your last saved version (%1) is safe.")
                          .arg(savedVersion(*f.lastSave, locale, now));
    return text;
}

QString hoardProblem(const session::HoardStatus& hoard) {
    switch (hoard.problem) {
    case ErrorKind::None:
        return {};
    case ErrorKind::NoSpace:
        return FailureText::tr("The kiosk's disk is nearly full; your computer keeps running.");
    case ErrorKind::StoreUnreachable:
        // Lazy memory with RAM still in the store: a vCPU that touches it
        // waits for the store (core/disk README, "Guest RAM over FUSE").
        if (hoard.memoryChunksDone < hoard.memoryChunksTotal)
            return FailureText::tr("The store cannot be reached right now. Part of your "
                                   "computer's memory is still there, so it may stop responding "
                                   "until the connection is back; nothing is lost.");
        return FailureText::tr("The store cannot be reached right now; your computer keeps "
                               "running on what is already here.");
    default:
        return FailureText::tr("The rest of your computer is not being fetched right now; your "
                               "computer keeps running.");
    }
}

} // namespace isr::ui::text
