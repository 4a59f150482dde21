#!/usr/bin/env bash
# walkup.sh: the walk-up benchmark (issue 9). Resume and Suspend & Leave of
# one 1 GiB parcel under six policies (four whole-memory-image ones, two
# with lazy memory restore), over two shaped links to a radosgw
# in its own network namespace; plus the disk data path table.
#
#   bash tests/bench/walkup.sh [RESULTS_DIR]
#
# Needs root (ip netns, tc, TUN devices), Ceph, QEMU, gnuplot; exits 77 if
# something is missing. Writes RESULTS_DIR/{README.md,results.json,walkup.png,
# disk.txt,log/}. Binaries come from ISR_BENCH_BIN_DIR (default
# build/default/tests/bench). Working set: ISR_BENCH_FILL_MIB (96) of guest
# memory and ISR_BENCH_DISK_MIB (48) of disk, half text, half random.
# Links: ISR_BENCH_LINKS (default "100mbit:20 20mbit:40", rate:RTT in ms).
# Policies: ISR_BENCH_POLICIES (default all six).
# Guest: ISR_BENCH_GUEST=desktop measures the reference desktop (2 GiB, UEFI,
# TPM; its image is built first, cached, in ISR_DESKTOP_DIR or
# ~/.cache/isr/desktop) instead of the demo guest (1 GiB).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
bin=${ISR_BENCH_BIN_DIR:-$src/build/default/tests/bench}
results=${1:-$src/build/default/bench-walkup-results}
links=${ISR_BENCH_LINKS:-"100mbit:20 20mbit:40"}
policies=${ISR_BENCH_POLICIES:-"copy-all whole-image isr-cold isr-warm lazy-cold lazy-warm"}

skip() {
    echo "walkup: skipped: $*" >&2
    exit 77
}
[[ $(id -u) == 0 ]] || skip "needs root (network namespace, tc, TUN devices)"
for p in ip tc gnuplot python3 radosgw ceph-mon qemu-system-x86_64 mke2fs; do
    command -v "$p" >/dev/null 2>&1 || skip "$p not installed"
done
[[ -c /dev/net/tun ]] || skip "no /dev/net/tun"
for b in bench_walkup isr_delayline bench_disk; do
    [[ -x $bin/$b ]] || { echo "walkup: $bin/$b not built" >&2; exit 1; }
done

started=$(date +%s)
mkdir -p "$results/log"
work=$(mktemp -d "${TMPDIR:-/tmp}/isr-walkup-XXXXXX")
# As root QEMU runs as isr-qemu: it must pass through to the sockets inside.
chmod 711 "$work"
ns=isrwalk$$
hdev=iwh$$ # host side
ndev=iwn$$ # namespace side
haddr=10.231.0.1
naddr=10.231.0.2
delay_pid=

log() { echo "walkup [$(($(date +%s) - started))s]: $*" >&2; }

cleanup() {
    set +e
    [[ -n $delay_pid ]] && kill "$delay_pid" 2>/dev/null && wait "$delay_pid" 2>/dev/null
    if [[ -d $work/ceph ]]; then
        ip netns exec "$ns" bash "$src/tests/support/ceph-rgw.sh" stop "$work/ceph" >/dev/null 2>&1
    fi
    ip link del "$hdev" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the link: host -> TUN (tbf) -> delay line -> TUN in the namespace (tbf) ----
ip netns add "$ns"
ip -n "$ns" link set lo up
ip tuntap add dev "$hdev" mode tun
ip -n "$ns" tuntap add dev "$ndev" mode tun
ip addr add "$haddr" peer "$naddr" dev "$hdev"
ip link set "$hdev" up
ip -n "$ns" addr add "$naddr" peer "$haddr" dev "$ndev"
ip -n "$ns" link set "$ndev" up

# The delay line runs for the whole benchmark (restarting it would drop the
# devices' carrier); shape() changes its delay with SIGHUP. It and Ceph (the
# far side of the link, another machine in real life) run at a higher
# priority than the kiosk, so the emulated link and server are not starved
# by a busy host.
echo 0 >"$work/delay"
nice -n -10 "$bin/isr_delayline" "$hdev" "$ns" "$ndev" "$work/delay" 2>>"$results/log/delayline.log" &
delay_pid=$!
sleep 0.5
kill -0 "$delay_pid" || { echo "walkup: delay line failed" >&2; exit 1; }

# shape RATE RTT_MS ("" "" = unshaped)
shape() {
    local rate=$1 rtt=$2
    if [[ -z $rate ]]; then
        tc qdisc del dev "$hdev" root 2>/dev/null || true
        ip netns exec "$ns" tc qdisc del dev "$ndev" root 2>/dev/null || true
        echo 0 >"$work/delay"
    else
        # Burst: well above one timer tick of data at the rate; queue up to 100 ms.
        local burst=64kb
        tc qdisc replace dev "$hdev" root tbf rate "$rate" burst "$burst" latency 100ms
        ip netns exec "$ns" tc qdisc replace dev "$ndev" root tbf rate "$rate" burst "$burst" latency 100ms
        python3 -c "print($rtt / 2)" >"$work/delay"
    fi
    kill -HUP "$delay_pid"
    sleep 0.2
}

shape "" ""
log "starting Ceph + radosgw in namespace $ns on $naddr"
ISR_CEPH_RGW_ADDR=$naddr ISR_CEPH_MEMSTORE_BYTES=$((6 << 30)) \
    nice -n -5 ip netns exec "$ns" bash "$src/tests/support/ceph-rgw.sh" start "$work/ceph" >"$results/log/ceph.out" 2>&1 ||
    { cat "$results/log/ceph.out" >&2; exit 1; }
eval "$(bash "$src/tests/support/ceph-rgw.sh" env "$work/ceph")"
curl -s -o /dev/null --max-time 5 "$ISR_TEST_S3_ENDPOINT/" || { echo "walkup: radosgw unreachable over the link" >&2; exit 1; }

# The guest's serial shell and the save file need no special care; keep the
# guest build in the shared test cache.
export ISR_TEST_STORE_BACKEND=s3
# The bench account signs in with libsodium's minimal Argon2id limits (the
# default limits are timed on their own: `bench_walkup kdf`); the core
# refuses those limits unless told it runs a test (ctest sets this too).
export ISR_INSECURE_TEST_KDF=1
wb=$work/bench

if [[ ${ISR_BENCH_GUEST:-} == desktop ]]; then
    log "the reference desktop's image (built once, cached)"
    sh "$src/resources/guest-desktop/build-desktop.sh" "${ISR_DESKTOP_DIR:-$HOME/.cache/isr/desktop}" \
        >"$results/log/desktop-image.log" 2>&1 || { cat "$results/log/desktop-image.log" >&2; exit 1; }
fi

# ---- one prepared state, unshaped (preparation is not what is measured) ----
log "preparing the parcel (boot, fill, suspend; change a tenth, suspend)"
"$bin/bench_walkup" setup "$wb" 2>&1 | tee "$results/log/setup.log" >&2
"$bin/bench_walkup" round "$wb" 1 >"$results/log/round1.log" 2>&1 || { cat "$results/log/round1.log" >&2; exit 1; }
"$bin/bench_walkup" round "$wb" 2 >"$results/log/round2.log" 2>&1 || { cat "$results/log/round2.log" >&2; exit 1; }
"$bin/bench_walkup" warm "$wb" >"$wb-state.out" 2>"$results/log/warm.log" || { cat "$results/log/warm.log" >&2; exit 1; }
cp "$wb/state.json" "$results/state.json"
log "prepared: $(cat "$wb/state.json")"
# The same parcel once more, made by a kiosk with lazy memory on (issue #17):
# its versions hold a RAM chunk table and the device state.
if [[ $policies == *lazy-* ]]; then
    log "preparing the lazy-memory parcel"
    for k in 1 2; do
        "$bin/bench_walkup" round "$wb" $k lazy >"$results/log/round$k-lazy.log" 2>&1 ||
            { cat "$results/log/round$k-lazy.log" >&2; exit 1; }
    done
    "$bin/bench_walkup" warm "$wb" lazy >"$wb-state-lazy.out" 2>"$results/log/warm-lazy.log" ||
        { cat "$results/log/warm-lazy.log" >&2; exit 1; }
    cp "$wb/state-lazy.json" "$results/state-lazy.json"
    log "prepared: $(cat "$wb/state-lazy.json")"
fi
# Sign-in's Argon2id at the default limits (the runs sign in with minimal ones).
"$bin/bench_walkup" kdf "$wb" >"$results/log/kdf.log" 2>&1 || { cat "$results/log/kdf.log" >&2; exit 1; }

# One resume before the measured ones, unshaped and not reported: the first
# VM a libvirt root starts pays for probing QEMU's capabilities (cached in the
# root after that; 2.3 s of "QEMU started" here, 2026-12-05), which a kiosk in
# service paid once, at its first VM. It fell on whichever policy ran first.
first_policy=${policies%% *}
log "warm-up resume ($first_policy, not measured)"
"$bin/bench_walkup" run "$wb" "$first_policy" warmup >"$results/log/warmup.log" 2>&1 ||
    { tail -n 40 "$results/log/warmup.log" >&2; exit 1; }

for l in $links; do
    rate=${l%%:*}
    rtt=${l##*:}
    name="${rate}-${rtt}ms"
    shape "$rate" "$rtt"
    # The link as the client sees it.
    # The link as a client sees it: TCP connect time is one round trip.
    ping_rtt=$(curl -s -o /dev/null -w '%{time_connect}' "$ISR_TEST_S3_ENDPOINT/" |
        python3 -c "import sys; print(round(float(sys.stdin.read()) * 1000, 1))" || true)
    log "link $name (TCP connect ${ping_rtt:-?} ms)"
    echo "{\"link\":\"$name\",\"rate\":\"$rate\",\"rtt_ms\":$rtt,\"ping_ms\":\"${ping_rtt:-}\"}" >"$wb/link-$name.json"
    for p in $policies; do
        log "  $name $p"
        # The previous run's writes (a warm policy copies a 0.6 GB cache into
        # its kiosk, and every run deletes the last one's) reach the disk
        # before the clock starts, not during the next resume.
        sync
        "$bin/bench_walkup" run "$wb" "$p" "$name" >"$results/log/run-$name-$p.log" 2>&1 ||
            { tail -n 40 "$results/log/run-$name-$p.log" >&2; exit 1; }
        grep -h "first frame" "$results/log/run-$name-$p.log" >&2 || true
    done
done
shape "" ""

log "disk data path (bench_disk)"
"$bin/bench_disk" >"$results/disk.txt" 2>"$results/log/bench_disk.log" ||
    { cat "$results/log/bench_disk.log" >&2; exit 1; }

duration=$(($(date +%s) - started))
python3 "$here/walkup_report.py" "$wb" "$results" "$duration"
log "done in ${duration}s: $results/README.md, $results/walkup.png"
