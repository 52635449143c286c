#!/usr/bin/env bash
# Runs every benchmark side by side with the peer tools, on the same data in the same run, and
# prints markdown tables (also saved to target/bench-results.md).
#   scripts/bench.sh [--size-mib N] [sqlite] [codec] [postgres] [mysql] [guard]   (default: all, 1024 MiB)
# Binaries and results go to $CARGO_TARGET_DIR (default target/). A benchmark that fails does not
# stop the others: its rows are missing from the summary, which names it, and the exit status is 1.
# Every comparison runs DBBACKUP_BENCH_ROUNDS times (default 2), alternating the order of the
# tools, best time kept. The run ends with one summary table: each ratio against its peer, its
# goal, and for restores the server's own ingest ceiling (the same data loaded server-side from
# files, no client) with dbbackup's restore as a fraction of it; then guard's recovery times.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
# The runs' undo copies go to a throwaway state directory, so that what earlier runs or tests left
# in this user's (a restore sweeps the undo area's expired copies first) does not count.
state_dir="$(mktemp -d /tmp/dbb-bench-state.XXXXXX)"
export DBBACKUP_STATE_DIR="$state_dir"
trap 'stop_services; rm -rf "$state_dir"' EXIT
size=1024
which=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size=$2; shift 2 ;;
    *) which+=("$1"); shift ;;
  esac
done
[ ${#which[@]} -eq 0 ] && which=(sqlite codec postgres mysql guard)
apt_install sqlite3 zstd pigz time postgresql postgresql-client mariadb-server mariadb-client mydumper
cargo build --release --locked -p backup-cli -p dbbackup-benches
tgt=${CARGO_TARGET_DIR:-target}
started=$(date +%s)
load_start=$(uptime | sed 's/.*load average: //')
for w in "${which[@]}"; do
  case "$w" in
    postgres) [ -n "${DBBACKUP_TEST_PG_URL:-}" ] || start_postgres ;;
    mysql) [ -n "${DBBACKUP_TEST_MYSQL_URL:-}" ] || start_mariadb ;;
    guard)
      [ -n "${DBBACKUP_TEST_PG_URL:-}" ] || start_postgres
      [ -n "${DBBACKUP_TEST_MYSQL_URL:-}" ] || start_mariadb
      ;;
  esac
done
out=$tgt/bench-results.md
export DBBACKUP_BENCH_SUMMARY=$(realpath "$tgt")/bench-summary.md
: > "$out"
: > "$DBBACKUP_BENCH_SUMMARY"
failed=()
for w in "${which[@]}"; do
  s=$size
  # guard's small-database goal is about a 25 MB Laravel database; the 1 GiB recovery times come
  # from the engine benchmarks.
  [ "$w" = guard ] && s=${GUARD_SIZE_MIB:-25}
  echo "== $w ($s MiB), $(date +%T)" >&2
  "$tgt/release/dbbackup-bench" "$w" --size-mib "$s" | tee -a "$out" || failed+=("$w")
done
secs=$(( $(date +%s) - started ))
{
  printf '\n### Summary (%s, %s MiB, %s rounds, best kept)\n\n' "$(git rev-parse --short HEAD)" "$size" "${DBBACKUP_BENCH_ROUNDS:-2}"
  echo '| benchmark | dbbackup | peer | peer | ratio (peer time / ours) | goal | server ingest ceiling | dbbackup peak RSS | peer peak RSS | CPU s, client + server = total (/2 cores): dbbackup / peer / ceiling |'
  echo '|---|---:|---|---:|---:|---|---|---:|---:|---|'
  cat "$DBBACKUP_BENCH_SUMMARY"
  printf '\nWhole run %d min %02d s; load average at the start %s, at the end %s.\n' \
    $((secs / 60)) $((secs % 60)) "$load_start" "$(uptime | sed 's/.*load average: //')"
  [ ${#failed[@]} -eq 0 ] || printf '\n**FAILED** (rows missing above): %s\n' "${failed[*]}"
} | tee -a "$out"
echo "results: $out" >&2
[ ${#failed[@]} -eq 0 ]
