#!/usr/bin/env bash
# For interactive development: starts the named services (default: all) and prints `export`
# lines for their variables, then waits until Ctrl-C and stops them.
#   scripts/dev-services.sh postgres mariadb > /tmp/svc.env &   then   . /tmp/svc.env
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/services.sh"
trap stop_services EXIT
trap 'exit 0' INT TERM
[ $# -eq 0 ] && set -- postgres mariadb moto azurite smtp
start_services "$@" >&2
env | grep '^DBBACKUP_TEST_' | sed 's/^/export /'
echo "export PATH=\"$PATH\""
echo "# services ready" >&2
while true; do sleep 3600; done
