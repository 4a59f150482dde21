#pragma once
// The hoard's part of `isrctl session status`: what `session resume` writes
// into <kiosk dir>/status.json and how `session status` prints it. Header
// only, so tests/app/test_isrctl_status.cpp checks the same two functions
// the command uses.
//
// status.json's "hoard" object:
//   chunks_done, chunks_total, bytes_done, bytes_total   numbers
//   problem          while the hoard is held back: session::errorKindName
//                    of HoardStatus::problem ("no space", "store unreachable")
//   problem_message  HoardStatus::problemMessage (the core's detail, for logs)
// The two problem keys are absent while the hoard runs normally.

#include "failuretext.h"
#include "session/session.h"
#include "util/json.h"

#include <cstdio>
#include <string>

namespace isr::cli {

inline json::Object hoardStatusJson(const session::HoardStatus& h) {
    json::Object o{{"chunks_done", h.chunksDone},
                   {"chunks_total", h.chunksTotal},
                   {"bytes_done", h.bytesDone},
                   {"bytes_total", h.bytesTotal}};
    if (h.problem != session::ErrorKind::None) {
        o["problem"] = session::errorKindName(h.problem);
        o["problem_message"] = h.problemMessage;
    }
    return o;
}

// One sentence for a person at a terminal: what is wrong and that the
// computer keeps running (the hoard is optional work, never a failure). The
// kiosk's renderer words it (ui/text/failuretext.h), so isrctl and the
// running page say the same thing; `kindName` is session::errorKindName.
inline std::string hoardProblemSentence(const std::string& kindName) {
    session::HoardStatus h;
    for (auto kind : {session::ErrorKind::NoSpace, session::ErrorKind::StoreUnreachable,
                      session::ErrorKind::Corrupt, session::ErrorKind::Internal})
        if (kindName == session::errorKindName(kind))
            h.problem = kind;
    if (h.problem == session::ErrorKind::None)
        h.problem = session::ErrorKind::Internal; // a kind this isrctl does not know
    return ui::text::hoardProblem(h).toStdString();
}

// The lines `session status` prints for status.json's "hoard" object:
//   hoard: 12 / 640 chunks
//   hoard held back: the kiosk's disk is nearly full; the computer keeps running
//     (hoard paused, the kiosk's disk is (nearly) full: ...)
inline std::string formatHoardStatus(const json::Value& hoard) {
    char line[96];
    std::snprintf(line, sizeof line, "hoard: %lld / %lld chunks\n",
                  (long long)hoard.getInt("chunks_done").valueOr(0),
                  (long long)hoard.getInt("chunks_total").valueOr(0));
    std::string out = line;
    auto problem = hoard.getString("problem");
    if (!problem.ok())
        return out;
    out += "hoard held back: " + hoardProblemSentence(*problem) + "\n";
    if (auto detail = hoard.getString("problem_message"); detail.ok() && !detail->empty())
        out += "  (" + *detail + ")\n";
    return out;
}

} // namespace isr::cli
