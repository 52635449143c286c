#!/usr/bin/env bash
# Runs every benchmark side by side with the peer tools, on the same data in the same run, and
# prints markdown tables (also saved to target/bench-results.md).
#   scripts/bench.sh [--size-mib N] [sqlite] [codec] [postgres] [mysql] [guard]   (default: all, 1024 MiB)
# Every comparison runs DBBACKUP_BENCH_ROUNDS times (default 2), alternating the order of the
# tools, best time kept. The run ends with one summary table: each ratio against its peer, its
# goal, and for restores the server's own ingest ceiling (the same data loaded server-side from
# files, no client) with dbbackup's restore as a fraction of it; then guard's recovery times.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
trap stop_services EXIT
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
cargo build --release -p backup-cli -p dbbackup-benches
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
out=target/bench-results.md
export DBBACKUP_BENCH_SUMMARY=$PWD/target/bench-summary.md
: > "$out"
: > "$DBBACKUP_BENCH_SUMMARY"
for w in "${which[@]}"; do
  s=$size
  # guard's small-database goal is about a 25 MB Laravel database; the 1 GiB recovery times come
  # from the engine benchmarks.
  [ "$w" = guard ] && s=${GUARD_SIZE_MIB:-25}
  echo "== $w ($s MiB)" >&2
  target/release/dbbackup-bench "$w" --size-mib "$s" | tee -a "$out"
done
{
  printf '\n### Summary (%s, %s rounds, best kept)\n\n' "$(git rev-parse --short HEAD)" "${DBBACKUP_BENCH_ROUNDS:-2}"
  echo '| benchmark | dbbackup | peer | peer | ratio (peer time / ours) | goal | server ingest ceiling | dbbackup peak RSS |'
  echo '|---|---:|---|---:|---:|---|---|---:|'
  cat "$DBBACKUP_BENCH_SUMMARY"
} | tee -a "$out"
echo "results: $out" >&2
