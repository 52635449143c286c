#!/usr/bin/env bash
# Runs every test, Rust and PHP, against real throwaway services. Installs what is missing
# (Debian packages, moto and aiosmtpd from PyPI, azurite from npm), starts PostgreSQL, MariaDB,
# moto (S3), Azurite and an SMTP sink on free loopback ports in temp dirs, and stops them on exit.
# Needs root (or sudo) for apt-get and for running PostgreSQL as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
# Every restore keeps an undo copy under the state directory: the tests' go to a throwaway one.
state_dir="$(mktemp -d /tmp/dbb-state.XXXXXX)"
export DBBACKUP_STATE_DIR="$state_dir"
trap 'stop_services; rm -rf "$state_dir"' EXIT
export CI=${CI:-true}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n\033[1m== %s\033[0m (at %d s)\n' "$*" "$SECONDS"; }

step "install"
apt_install sqlite3 zstd age pigz postgresql postgresql-client mariadb-server mariadb-client mydumper \
  php-cli php-sqlite3 php-mysql phpunit php-laravel-framework composer python3-venv

step "lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "services"
start_services postgres mariadb moto azurite smtp

step "rust tests"
# The same build scripts/test-artifact.sh reads (the PHP tests need the test-panic FFI library).
# --no-fail-fast: one failing test binary must not hide the others' results.
cargo test --workspace --locked --features backup-ffi/test-panic --no-fail-fast -- --test-threads=4

step "fuzz (each target FUZZ_SECONDS, default 45)"
scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-45}"

for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  step "$(basename "$extra")"
  bash "$extra"
done

step "all tests passed"
