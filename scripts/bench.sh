#!/usr/bin/env bash
# Runs every benchmark side by side with the peer tools, on the same data in the same run, and
# prints markdown tables (also saved to target/bench-results.md).
#   scripts/bench.sh [--size-mib N] [sqlite] [codec] [postgres] [mysql]     (default: all, 1024 MiB)
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
[ ${#which[@]} -eq 0 ] && which=(sqlite codec postgres mysql)
apt_install sqlite3 zstd pigz time postgresql postgresql-client mariadb-server mariadb-client mydumper
cargo build --release -p backup-cli -p dbbackup-benches
for w in "${which[@]}"; do
  case "$w" in
    postgres) [ -n "${DBBACKUP_TEST_PG_URL:-}" ] || start_postgres ;;
    mysql) [ -n "${DBBACKUP_TEST_MYSQL_URL:-}" ] || start_mariadb ;;
  esac
done
out=target/bench-results.md
: > "$out"
for w in "${which[@]}"; do
  echo "== $w ($size MiB)" >&2
  target/release/dbbackup-bench "$w" --size-mib "$size" | tee -a "$out"
done
echo "results: $out" >&2
