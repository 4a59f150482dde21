#!/usr/bin/env bash
# Builds the `fuzz` preset (clang, libFuzzer, ASan+UBSan) and runs every fuzz
# target for a bounded time, one after the other, on a scratch copy of its
# checked-in corpus (the checked-in corpus is not modified; see README.md for
# growing it). Prints executions, coverage and crashes per target. Any crash,
# leak, sanitizer report or failed invariant fails the script; the reproducer
# stays in the results directory.
#
#   tests/fuzz/run.sh [seconds-per-target] [target...]
# Environment: ISR_FUZZ_RESULTS (default build/fuzz/results), ISR_FUZZ_JOBS
# (parallel build jobs, default 2), ISR_FUZZ_NICE (default 10),
# ISR_FUZZ_MERGE=1: after a clean run, minimise (-merge=1) the checked-in
# corpus plus what the run found back into tests/fuzz/corpus/<target>
# (seed-* and regress-* files are always kept).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

seconds=${1:-60}
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(manifest account chunk nbd cdc json kioskconfig s3xml)
fi
results=${ISR_FUZZ_RESULTS:-$root/build/fuzz/results}
jobs=${ISR_FUZZ_JOBS:-2}
niceness=${ISR_FUZZ_NICE:-10}

if ! command -v clang++ >/dev/null; then
  echo "run.sh: clang++ not found (packaging/install-deps.sh installs it)" >&2
  exit 1
fi

export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
cmake --preset fuzz >/dev/null
nice -n "$niceness" cmake --build --preset fuzz -j"$jobs"

rm -rf "$results"
mkdir -p "$results"
failed=()
printf '%-12s %6s %10s %8s %8s %8s %7s %s\n' target cpu-s execs exec/s cov ft corpus result
for t in "${targets[@]}"; do
  bin=$root/build/fuzz/tests/fuzz/fuzz_$t
  work=$results/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -r "$root/tests/fuzz/corpus/$t/." "$work/corpus/" 2>/dev/null || true
  # Inputs stay small (fast and reviewable corpora); the chunker needs room
  # for several maximum-size chunks.
  maxlen=4096
  [ "$t" = cdc ] && maxlen=8192
  set +e
  # CPU seconds (user+sys) of the fuzzer: on a shared machine wall time
  # overstates how much fuzzing was done.
  TIMEFORMAT='%U %S'
  # -rss_limit_mb: the parsers must refuse before allocating for claimed
  # sizes; 2 GiB leaves room for ASan's own overhead. -timeout: one input
  # taking 10 s is a hang (reported as a crash).
  { time ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    nice -n "$niceness" "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$maxlen" -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
    >"$work/log" 2>&1; } 2>"$work/cputime"
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$work/log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  cpu=$(awk '{printf "%.0f", $1 + $2}' "$work/cputime")
  crashes=$(find "$work/artifacts" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    result="FAILED (rc $rc; reproducer: $(find "$work/artifacts" -type f | head -1))"
    failed+=("$t")
  else
    result=ok
    if [ "${ISR_FUZZ_MERGE:-0}" = 1 ]; then
      checked_in=$root/tests/fuzz/corpus/$t
      rm -rf "$work/merged" && mkdir -p "$work/merged" "$checked_in"
      nice -n "$niceness" "$bin" -merge=1 -max_len="$maxlen" "$work/merged" "$checked_in" \
        "$work/corpus" >"$work/merge.log" 2>&1
      find "$checked_in" -type f ! -name 'seed-*' ! -name 'regress-*' -delete
      # Merged files are named by the SHA-1 of their content; skip those
      # that duplicate a kept seed or regression input.
      kept=$(find "$checked_in" -type f -exec sha1sum {} + | cut -d' ' -f1)
      for f in "$work/merged"/*; do
        grep -qx "$(basename "$f")" <<<"$kept" || cp "$f" "$checked_in/"
      done
      result="ok (corpus now $(find "$checked_in" -type f | wc -l) files)"
    fi
  fi
  printf '%-12s %6s %10s %8s %8s %8s %7s %s\n' "$t" "$cpu" "${execs:-?}" "${speed:-?}" "${cov:-?}" \
    "${ft:-?}" "${corpus:-?}" "$result"
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "run.sh: fuzz targets failed: ${failed[*]} (logs and reproducers under $results)" >&2
  for t in "${failed[@]}"; do
    echo "---- $t: last lines of $results/$t/log" >&2
    tail -40 "$results/$t/log" >&2
  done
  exit 1
fi
echo "run.sh: all ${#targets[@]} targets ran ${seconds}s each without a crash"
