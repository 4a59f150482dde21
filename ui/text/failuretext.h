#pragma once
// FailureText: turns the facts the core reports (session::Failure,
// session::HoardStatus) into what a person reads: what happened, what they
// can do, and which saved version is safe. The one renderer for the kiosk
// (through SessionBackend::errorMessage / hoardProblem) and isrctl (English).
//
// Every sentence goes through QCoreApplication::translate("FailureText", ...),
// so an installed QTranslator applies; without one (isrctl) the text is the
// English source. Times are shown as local time ("Tuesday 14:02"), never as
// Unix seconds. The rendered text is computed when asked for: a translator
// installed later applies to the next failure, not to one already shown.
//
// Free functions, no state: safe from any thread (QLocale and translate()
// are reentrant; installing a translator while rendering is not).

#include "session/session.h"

#include <QDateTime>
#include <QLocale>
#include <QString>
#include <cstdint>

namespace isr::ui::text {

// Unix seconds as local time for a sentence: "Tuesday 14:02" within the last
// six days, else "5 January 2026 09:30". `now` is for tests.
QString localTime(std::int64_t unixSeconds, const QLocale& locale = QLocale(),
                  const QDateTime& now = QDateTime::currentDateTime());

// "version 3, saved Tuesday 14:02 at gate-23" (the kiosk part only if known).
QString savedVersion(const session::SavedVersion& saved, const QLocale& locale = QLocale(),
                     const QDateTime& now = QDateTime::currentDateTime());

// What a resume opens, for the person who knows when and where they last
// saved: "Saved Tuesday 14:02 at kiosk gate-23" (local time). Empty for a
// version with no time (never saved by a session).
QString resumingFrom(const session::SavedVersion& saved, const QLocale& locale = QLocale(),
                     const QDateTime& now = QDateTime::currentDateTime());

// What happened and what the person can do. Rendered from f.cause and its
// facts; when the cause is Generic, from f.kind and f.stage. Never empty, never
// f.detail (that is for the log).
QString failure(const session::Failure& f, const QLocale& locale = QLocale(),
                const QDateTime& now = QDateTime::currentDateTime());

// The background hoard's problem as one quiet line for the running page
// ("The kiosk's disk is nearly full; your computer keeps running."), or an
// empty string when there is none.
QString hoardProblem(const session::HoardStatus& hoard);

} // namespace isr::ui::text
