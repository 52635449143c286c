#!/usr/bin/env bash
# The main job on the embedded default, no server needed: makes a realistic Laravel-style SQLite
# database, backs it up into a local directory repository, verifies every byte, restores it into a
# new file, proves the restore with a drill, and shows the result side by side.
#   scripts/demo.sh [WORK_DIR]      (default: a new temp dir; kept so you can look around)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/dbbackup-demo.XXXXXX)}
mkdir -p "$work"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

cargo build --quiet -p backup-cli -p dbbackup-benches
bin=target/debug
export PATH="$PWD/$bin:$PATH"

say "dbbackup-bench sample-sqlite $work/app.sqlite --size-mib 50"
dbbackup-bench sample-sqlite "$work/app.sqlite" --size-mib 50

say "dbbackup create --source sqlite://$work/app.sqlite --repo $work/backups --tag demo"
id=$(dbbackup create --source "sqlite://$work/app.sqlite" --repo "$work/backups" --tag demo)

say "dbbackup list --repo $work/backups"
dbbackup list --repo "$work/backups"

say "dbbackup verify --repo $work/backups $id"
dbbackup verify --repo "$work/backups" "$id"

say "dbbackup restore --repo $work/backups $id --into sqlite://$work/restored.sqlite"
dbbackup restore --repo "$work/backups" "$id" --into "sqlite://$work/restored.sqlite"

say "dbbackup verify --level drill --repo $work/backups $id"
dbbackup verify --level drill --repo "$work/backups" "$id"

say "row counts: original vs restored"
dbbackup-bench describe "$work/app.sqlite" "$work/restored.sqlite"

say "dbbackup list --repo $work/backups   (now shows the drill)"
dbbackup list --repo "$work/backups"
echo
echo "Everything is in $work (backups/ holds the repository; see docs/FORMAT.md)."
