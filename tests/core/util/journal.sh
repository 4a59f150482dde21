#!/usr/bin/env bash
# The kiosk's log under journald (issue #18): every line arrives with its
# PRIORITY and category, and the session's events (resumed, suspended,
# failed, each stage) with their fields: ISR_EVENT, ISR_STAGE, durations,
# bytes, error kind, and the user and parcel only as tags. A real
# systemd-journald runs in a private mount namespace (tmpfs over
# /run/systemd, /run/log and /var/log/journal), so the host's journal, if
# any, is neither read nor written. The control: the same program with its
# stderr not the journal prints plain lines, fields appended.
# Usage: journal.sh LOG_EMIT
set -euo pipefail
emit=$1
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (a private mount namespace for a journald of its own)"
journald=/lib/systemd/systemd-journald
[ -x "$journald" ] || skip "systemd-journald not installed (package systemd)"
command -v journalctl >/dev/null || skip "journalctl not installed (package systemd)"
command -v unshare >/dev/null || skip "unshare not installed (package util-linux)"
command -v python3 >/dev/null || skip "python3 not installed"

work=$(mktemp -d "${TMPDIR:-/tmp}/isr-journal.XXXXXX")
trap 'rm -rf "$work"' EXIT

unshare -m --propagation private bash -s "$emit" "$work" "$journald" <<'INNER'
set -euo pipefail
emit=$1 work=$2 journald=$3
for d in /run/systemd /run/log /var/log/journal; do
  if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
done
"$journald" 2>"$work/journald.err" &
jd=$!
trap 'kill $jd 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
[ -S /run/systemd/journal/socket ] || { cat "$work/journald.err"; echo "journald did not start"; exit 1; }
: >"$work/stderr"
# What systemd does for a unit: stderr is the journal's stream, named by
# JOURNAL_STREAM (here a file stands in for the stream: isr must send its
# lines to the socket, not to this file).
JOURNAL_STREAM=$(stat -c %d:%i "$work/stderr") "$emit" 2>>"$work/stderr"
ISR_LOG=warn "$emit" 2>"$work/plain"
for _ in $(seq 100); do
  journalctl -o json --no-pager SYSLOG_IDENTIFIER=log_emit >"$work/journal.json" 2>/dev/null || true
  grep -q 'bad field dropped' "$work/journal.json" && break
  sleep 0.1
done
INNER

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
entries = [json.loads(l) for l in open(f"{work}/journal.json") if l.strip()]
def fail(why):
    print("FAIL:", why)
    for e in entries:
        print({k: v for k, v in e.items() if not k.startswith("_")})
    sys.exit(1)
def one(**want):
    hits = [e for e in entries if all(e.get(k) == v for k, v in want.items())]
    if len(hits) != 1:
        fail(f"{len(hits)} entries with {want}")
    return hits[0]
user, parcel = "u-0123456789abcdef", "p-fedcba9876543210"
r = one(ISR_EVENT="resumed")
if not (r["PRIORITY"] == "6" and r["ISR_CATEGORY"] == "session" and r["ISR_USER"] == user
        and r["ISR_PARCEL"] == parcel and r["ISR_BYTES_DOWN"] == "3000"
        and float(r["ISR_DURATION_S"]) >= 0 and r["MESSAGE"].startswith("resumed in ")):
    fail(f"resumed: {r}")
s = one(ISR_EVENT="suspended")
if not (s["ISR_BYTES_UP"] == "700" and s["ISR_USER"] == user):
    fail(f"suspended: {s}")
f = one(ISR_EVENT="failed")
if not (f["PRIORITY"] == "4" and f["ISR_STAGE"] == "authenticating"
        and f["ISR_ERROR_KIND"] == "store_unreachable" and f["ISR_CAUSE"] == "store_unreachable"
        and "ISR_USER" not in f):
    fail(f"failed (no user before the password is checked): {f}")
stages = [e["ISR_STAGE"] for e in entries if e.get("ISR_EVENT") == "stage"]
if stages[:8] != ["authenticating", "checking_out", "fetching", "restoring", "running",
                  "suspending", "wiping", "signed_out"]:
    fail(f"stages {stages}")
m = one(ISR_CATEGORY="store")
if m["MESSAGE"] != "first line\nsecond line" or m["PRIORITY"] != "4":
    fail(f"multi-line warning: {m!r}")
b = one(MESSAGE="bad field dropped")
if b.get("ISR_KEPT") != "yes" or any(" " in k for k in b):
    fail(f"bad field: {b}")
if open(f"{work}/stderr").read():
    fail("lines went to stderr although it was the journal: " + open(f"{work}/stderr").read())
plain = open(f"{work}/plain").read()
if "isr.session: warning: authenticating failed (store-unreachable)" not in plain \
        or "ISR_EVENT=failed" not in plain or "ISR_EVENT=resumed" in plain:
    fail("plain stderr (warnings only, fields appended):\n" + plain)
print(f"ok: {len(entries)} journal entries with their fields; plain stderr without the journal")
PY
