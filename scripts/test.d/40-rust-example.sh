#!/usr/bin/env bash
# The Rust example of docs/rust.md (backup-core/examples/backup_verify_restore.rs) run on SQLite:
# back up, verify, restore into a new file, and the restored content must equal the source's.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
sqlite3 "$dir/app.sqlite" "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, avatar BLOB);
  WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000)
  INSERT INTO users (name, avatar) SELECT 'user ' || x || ' ☃', randomblob(x % 300) FROM n;"
example="$(scripts/test-artifact.sh example backup_verify_restore)"
"$example" "sqlite://$dir/app.sqlite" "$dir/repo" "sqlite://$dir/copy.sqlite"
q="SELECT count(*), sum(length(avatar)), group_concat(hex(avatar), '') FROM (SELECT * FROM users ORDER BY id)"
[ "$(sqlite3 "$dir/app.sqlite" "$q" | sha256sum)" = "$(sqlite3 "$dir/copy.sqlite" "$q" | sha256sum)" ] \
  || { echo "rust example: restored content differs" >&2; exit 1; }
echo "rust example: 1 passed, 0 failed"
