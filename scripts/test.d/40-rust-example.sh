#!/usr/bin/env bash
# The Rust example of docs/rust.md (backup-core/examples/backup_verify_restore.rs) run on SQLite:
# back up, verify, restore into a new file, and the restored database must equal the source in
# full: the schema (tables, index, view, trigger) and every row of every table, all columns.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
sqlite3 "$dir/app.sqlite" "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, avatar BLOB);
  CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), title TEXT NOT NULL, score REAL);
  CREATE INDEX posts_user ON posts(user_id);
  CREATE VIEW top_posts AS SELECT * FROM posts WHERE score > 0.5;
  CREATE TABLE audit (post_id INTEGER, at TEXT);
  CREATE TRIGGER posts_audit AFTER INSERT ON posts BEGIN INSERT INTO audit VALUES (NEW.id, 'x'); END;
  WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000)
  INSERT INTO users (name, avatar) SELECT 'user ' || x || ' ☃', randomblob(x % 300) FROM n;
  WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000)
  INSERT INTO posts (user_id, title, score) SELECT 1 + x % 2000, 'post ' || x, (x % 97) / 97.0 FROM n;"
example="$(scripts/test-artifact.sh example backup_verify_restore)"
"$example" "sqlite://$dir/app.sqlite" "$dir/repo" "sqlite://$dir/copy.sqlite"
# `.dump` is the whole database as SQL: every object's definition and every row of every table.
sqlite3 "$dir/app.sqlite" .dump > "$dir/app.sql"
sqlite3 "$dir/copy.sqlite" .dump > "$dir/copy.sql"
for object in "TABLE users" "TABLE posts" "TABLE audit" "INDEX posts_user" "VIEW top_posts" "TRIGGER posts_audit"; do
  grep -q "^CREATE $object" "$dir/app.sql" || { echo "rust example: the source lacks $object" >&2; exit 1; }
done
[ "$(grep -c '^INSERT INTO' "$dir/app.sql")" = 8000 ] || { echo "rust example: unexpected source rows" >&2; exit 1; }
cmp -s "$dir/app.sql" "$dir/copy.sql" \
  || { diff "$dir/app.sql" "$dir/copy.sql" | head -20 >&2; echo "rust example: restored content differs" >&2; exit 1; }
echo "rust example: 1 passed, 0 failed"
