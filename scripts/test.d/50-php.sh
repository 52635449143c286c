#!/usr/bin/env bash
# PHP: takes libbackup_ffi from the test build (with the test-panic feature, which the panic-safety test needs), runs
# PHPUnit against it, then the Laravel round trip (a real app on Debian's php-laravel-framework).
# Run by scripts/test.sh after the Rust tests, with the services' variables exported.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v phpunit >/dev/null || ! php -m | grep -qi '^ffi$' || [ ! -f /usr/share/php/Illuminate/autoload.php ]; then
  apt-get install -y -qq php-cli php-sqlite3 php-mysql phpunit php-laravel-framework >/dev/null
fi
DBBACKUP_FFI_LIB="$(scripts/test-artifact.sh cdylib backup_ffi)"
export DBBACKUP_FFI_LIB
export RUST_BACKTRACE=0
echo "-- phpunit (backup-ffi/php)"
(cd backup-ffi/php && phpunit)
echo "-- laravel round trip"
bash backup-ffi/php/tests/laravel/roundtrip.sh
