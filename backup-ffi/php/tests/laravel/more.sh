# Sourced by roundtrip.sh inside the app directory (helpers: fail, snapshot; $app, $passed):
# every disk (local + S3), db:guard on SQLite and MariaDB, drills from artisan, artisan manners,
# db:restore --undo on SQLite and MariaDB.

# The app's own dbbackup config: a retention the test can tighten, the drill's scratch connection.
cat > config/dbbackup.php <<'PHP'
<?php
return [
    'retention' => ['keep_last' => (int) env('DBB_KEEP_LAST', 3), 'keep_daily' => 7],
    'drill' => ['scratch' => 'scratch'],
];
PHP
mkdir -p storage/framework
count_in() { php -r '$r = json_decode(file_get_contents("php://stdin"), true); echo count($r[$argv[1]]["backups"] ?? []);' "$1"; }
expect_code() { # expected, then the command; its output goes to out.txt
  local want="$1"; shift
  set +e; "$@" > out.txt 2>&1; local got=$?; set -e
  [ "$got" = "$want" ] || { cat out.txt; fail "$*: expected exit $want, got $got"; }
}

# --- Every disk: backups go to both, verify reads both, prune prunes both, restore from S3 when
# the local disk is gone.
if [ -n "$DBB_S3_ENDPOINT" ]; then
  export DBBACKUP_DISKS=local,s3
  for i in 1 2 3; do php artisan db:backup --tag=multi --json > multi.json || fail "db:backup to local+s3 exited $?"; done
  last="$(php -r 'echo json_decode(file_get_contents("multi.json"), true)["id"];')"
  php artisan db:backups --json > lists.json || fail "db:backups exited $?"
  [ "$(count_in s3 < lists.json)" = 3 ] || { cat lists.json; fail "the s3 disk does not list its 3 backups"; }
  [ "$(count_in local < lists.json)" = 4 ] || { cat lists.json; fail "the local disk does not list its 4 backups"; }
  php artisan db:backup:verify > verify.txt || { cat verify.txt; fail "db:backup:verify on both disks exited $?"; }
  grep -q "\[local\] full $last: ok" verify.txt && grep -q "\[s3\] full $last: ok" verify.txt \
    || { cat verify.txt; fail "db:backup:verify did not read both disks"; }
  php artisan db:backup:status --disk=s3 > /dev/null || fail "db:backup:status --disk=s3 exited $?"
  DBB_KEEP_LAST=1 php artisan db:backup:prune > prune.txt || { cat prune.txt; fail "db:backup:prune exited $?"; }
  php artisan db:backups --json > lists.json
  [ "$(count_in s3 < lists.json)" = 1 ] && [ "$(count_in local < lists.json)" = 1 ] \
    || { cat prune.txt lists.json; fail "prune did not remove the old backups from both disks"; }
  # The local disk is lost; the off-site copy restores.
  rm -rf storage/app/db-backups
  php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("DELETE FROM users WHERE id > 10");'
  php artisan db:restore --force > restore.txt 2>&1 || { cat restore.txt; fail "db:restore without the local disk exited $?"; }
  grep -q "from disk \[s3\]" restore.txt || { cat restore.txt; fail "the restore did not come from the s3 disk"; }
  [ "$(snapshot)" = "$before" ] || fail "the database restored from s3 differs"
  expect_code 2 php artisan db:backups --disk=nope
  unset DBBACKUP_DISKS
  passed=$((passed + 1))
fi

# --- Artisan manners: --compress accepted, a progress bar on a terminal (--ansi stands for one),
# a second overlapping run exits cleanly.
php artisan db:backup --compress --compression=gzip:6 --ansi > progress.txt 2>&1 || { cat progress.txt; fail "db:backup --compress exited $?"; }
grep -q "upload" progress.txt && grep -q "100%" progress.txt || { cat progress.txt; fail "no progress bar on a terminal"; }
php artisan db:backup --ansi --json | php -r 'exit(is_array(json_decode(stream_get_contents(STDIN), true)) ? 0 : 1);' \
  || fail "--json output must be the report alone, without a progress bar"
n_before="$(ls storage/app/db-backups | wc -l)"
# The holder says when it has the lock and keeps it until told (held removed; at most 60 s): a
# fixed sleep before the second run, and a lock held for 3 s, raced the start of flock and of PHP.
rm -f lock-held
flock -x storage/framework/dbbackup-db-backup.lock \
  sh -c 'touch lock-held; for _ in $(seq 600); do [ -e lock-held ] || exit 0; sleep 0.1; done' &
holder=$!
for _ in $(seq 600); do [ -e lock-held ] && break; sleep 0.1; done
[ -e lock-held ] || fail "the lock holder did not take the lock within 60 s"
expect_code 0 php artisan db:backup
rm -f lock-held
wait "$holder"
grep -q "Another db:backup is running" out.txt || { cat out.txt; fail "an overlapping db:backup did not say another is running"; }
[ "$(ls storage/app/db-backups | wc -l)" = "$n_before" ] || fail "an overlapping db:backup still backed up"
passed=$((passed + 1))

# --- db:guard on SQLite: a migration failing halfway is rolled back; the database equals its
# state before (schema and rows, no migrations table).
full_snapshot_sqlite() {
  php -r '$db = new PDO("sqlite:database/database.sqlite"); $out = [];
    foreach ($db->query("SELECT type, name, sql FROM sqlite_master ORDER BY name")->fetchAll(PDO::FETCH_NUM) as $r) {
      $out[] = $r; if ($r[0] === "table") { $out[] = $db->query("SELECT * FROM \"{$r[1]}\" ORDER BY rowid")->fetchAll(PDO::FETCH_NUM); } }
    echo md5(json_encode($out));'
}
mkdir -p database/migrations
cat > database/migrations/2026_01_01_000001_create_widgets.php <<'PHP'
<?php
use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;
return new class extends Migration {
    public function up(): void { Schema::create('widgets', function (Blueprint $t) { $t->id(); $t->string('name'); }); }
};
PHP
cat > database/migrations/2026_01_01_000002_break_halfway.php <<'PHP'
<?php
use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;
return new class extends Migration {
    public $withinTransaction = false;
    public function up(): void {
        Schema::create('gadgets', function (Blueprint $t) { $t->id(); });
        DB::table('users')->where('id', '<', 50)->delete();
        throw new RuntimeException('failing halfway');
    }
};
PHP
expect_code 4 php artisan db:guard --max-rto=1h -- migrate --force
grep -qi "drill" out.txt || { cat out.txt; fail "--max-rto without a drill: no explanation"; }
s0="$(full_snapshot_sqlite)"
expect_code 1 php artisan db:guard -- migrate --force
grep -q "failing halfway" out.txt && grep -q "Recovery time" out.txt || { cat out.txt; fail "db:guard did not report the failure and the recovery time"; }
[ "$(full_snapshot_sqlite)" = "$s0" ] || fail "db:guard on SQLite: the database differs from its state before the migration"
grep -qx GuardRolledBack storage/events.log || fail "event GuardRolledBack was not dispatched"
rm database/migrations/2026_01_01_000002_break_halfway.php
expect_code 0 php artisan db:guard -- migrate --force
php -r '$db = new PDO("sqlite:database/database.sqlite"); exit($db->query("SELECT count(*) FROM sqlite_master WHERE name = \"widgets\"")->fetchColumn() == 1 ? 0 : 1);' \
  || fail "a successful guarded migration was not kept"
grep -qx GuardSucceeded storage/events.log || fail "event GuardSucceeded was not dispatched"
passed=$((passed + 1))

# --- A plain dump file (sqlite3 .dump, gzip-compressed) restores through the same shadow and
# swap; --verify reads it whole first: a truncated .gz and a script cut mid-statement fail with an
# integrity error (exit 3) and the database file untouched (same bytes, same inode).
sqlite3 database/database.sqlite .dump > app.sql
gzip -k app.sql
s_dump="$(full_snapshot_sqlite)"
php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("DELETE FROM users WHERE id > 20"); $db->exec("DROP TABLE widgets");'
[ "$(full_snapshot_sqlite)" != "$s_dump" ] || fail "the test did not change the database"
php artisan db:restore app.sql.gz --verify --force > out.txt 2>&1 || { cat out.txt; fail "db:restore app.sql.gz --verify exited $?"; }
grep -q "Restored .*app.sql.gz into" out.txt || { cat out.txt; fail "db:restore of a dump file did not say what it restored"; }
[ "$(full_snapshot_sqlite)" = "$s_dump" ] || fail "the database restored from app.sql.gz differs from the dumped one"
php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("DELETE FROM users WHERE id > 30");'
file_state() { stat -c %i database/database.sqlite; md5sum < database/database.sqlite; }
s_before="$(file_state)"
head -c -30 app.sql.gz > cut.sql.gz
head -c "$(( $(grep -b -m1 'INSERT INTO' app.sql | cut -d: -f1) + 25 ))" app.sql > cut.sql
for cut in cut.sql.gz cut.sql; do
  expect_code 3 php artisan db:restore "$cut" --verify --force
  grep -qi "complete dump script\|valid gzip" out.txt || { cat out.txt; fail "db:restore $cut --verify: no clear error"; }
  [ "$(file_state)" = "$s_before" ] || fail "db:restore $cut --verify touched the database"
done
passed=$((passed + 1))

# --- Undo on SQLite: db:restore over a changed database keeps what it replaced (the report's
# `undo`, listed by db:backup:status); db:restore --undo puts it back exactly (schema and rows).
php artisan db:backup --tag=undo-a > /dev/null || fail "db:backup --tag=undo-a exited $?"
php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("DELETE FROM users WHERE id > 100");
  $db->exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"); $db->exec("INSERT INTO notes (body) VALUES (42)");'
s_b="$(full_snapshot_sqlite)"
php artisan db:restore tag:undo-a --force --json > undo1.json || { cat undo1.json; fail "db:restore tag:undo-a exited $?"; }
[ "$(full_snapshot_sqlite)" != "$s_b" ] || fail "the restore before the undo changed nothing"
php -r 'exit(isset(json_decode(file_get_contents("undo1.json"), true)["undo"]["id"]) ? 0 : 1);' || { cat undo1.json; fail "db:restore kept no undo copy"; }
php artisan db:backup:status --json > st.json || true  # (its health is not the point here; the report is line 1)
php -r '$r = json_decode(strtok(file_get_contents("st.json"), "\n"), true); exit(count($r["undo"] ?? []) === 1 ? 0 : 1);' || { cat st.json; fail "db:backup:status does not list the undo copy"; }
expect_code 0 php artisan db:restore --undo --force
grep -q "Undone" out.txt || { cat out.txt; fail "db:restore --undo did not say what it did"; }
[ "$(full_snapshot_sqlite)" = "$s_b" ] || fail "db:restore --undo on SQLite: the database differs from its state before the restore"
expect_code 2 php artisan db:restore tag:undo-a --undo --force
passed=$((passed + 1))

# --- MariaDB: db:guard with a migration failing halfway (DDL commits by itself), and a drill from
# artisan on the scratch connection, recorded beside the backup.
if [ -n "$DBB_MYSQL_URL" ]; then
  mysql_pdo='$m = parse_url(getenv("DBB_MYSQL_URL")); $pdo = new PDO("mysql:host={$m["host"]};port={$m["port"]}", rawurldecode($m["user"] ?? "root"), rawurldecode($m["pass"] ?? ""), [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]); $db = getenv("DBB_MYSQL_DB");'
  php -r "$mysql_pdo"' $pdo->exec("CREATE DATABASE `$db`"); $pdo->exec("USE `$db`");
    $pdo->exec("CREATE TABLE users (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(64) NOT NULL, KEY (name))");
    for ($i = 0; $i < 200; $i++) { $pdo->exec("INSERT INTO users (name) VALUES (\"user $i\")"); }'
  cleanup_mysql() { php -r "$mysql_pdo"' $pdo->exec("DROP DATABASE IF EXISTS `$db`");' || true; rm -rf "$app"; }
  trap cleanup_mysql EXIT
  full_snapshot_mysql() {
    php -r "$mysql_pdo"' $pdo->exec("USE `$db`"); $out = [];
      foreach ($pdo->query("SHOW FULL TABLES")->fetchAll(PDO::FETCH_NUM) as $t) {
        $out[] = $t; $out[] = $pdo->query("SHOW CREATE TABLE `{$t[0]}`")->fetchAll(PDO::FETCH_NUM);
        $out[] = $pdo->query("SELECT * FROM `{$t[0]}` ORDER BY 1")->fetchAll(PDO::FETCH_NUM); }
      echo md5(json_encode($out));'
  }
  mkdir -p database/mysql_migrations
  cp database/migrations/2026_01_01_000001_create_widgets.php database/mysql_migrations/
  cat > database/mysql_migrations/2026_01_01_000002_break_halfway.php <<'PHP'
<?php
use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;
return new class extends Migration {
    public $withinTransaction = false;
    public function up(): void {
        Schema::table('users', function (Blueprint $t) { $t->string('email')->nullable(); });
        DB::connection('mysql')->table('users')->where('id', '<', 50)->delete();
        throw new RuntimeException('failing halfway on MariaDB');
    }
};
PHP
  s0="$(full_snapshot_mysql)"
  expect_code 1 php artisan db:guard --connection=mysql -- migrate --force --database=mysql --path=database/mysql_migrations
  grep -q "failing halfway on MariaDB" out.txt && grep -q "Recovery time" out.txt || { cat out.txt; fail "db:guard on MariaDB did not roll back"; }
  [ "$(full_snapshot_mysql)" = "$s0" ] || fail "db:guard on MariaDB: the database differs from its state before the migration"

  php artisan db:backup --connection=mysql > /dev/null || fail "db:backup of MariaDB exited $?"
  php artisan db:backup:verify --level=drill > drill.txt 2>&1 || { cat drill.txt; fail "db:backup:verify --level=drill exited $?"; }
  grep -q "\[local\] drill .*recovery time" drill.txt || { cat drill.txt; fail "the drill reported no recovery time"; }
  php artisan db:backups --json | grep -q '"level":"drill"' || fail "the drill was not recorded beside the backup"
  # --scratch= picks the connection from config/database.php (over dbbackup.drill.scratch): an
  # unknown one is refused by name, a configured one is drilled on.
  set +e; php artisan db:backup:verify --level=drill --scratch=no_such_scratch > drill.txt 2>&1; code=$?; set -e
  [ "$code" != 0 ] && grep -q "no_such_scratch" drill.txt || { cat drill.txt; fail "db:backup:verify --scratch=no_such_scratch: exit $code, the connection not named"; }
  php artisan db:backup:verify --level=drill --scratch=scratch_b > drill.txt 2>&1 || { cat drill.txt; fail "db:backup:verify --level=drill --scratch=scratch_b failed"; }
  grep -q "\[local\] drill .*recovery time" drill.txt || { cat drill.txt; fail "the drill on --scratch=scratch_b reported no recovery time"; }
  # With a drill recorded, --max-rto lets the guarded command run.
  rm database/mysql_migrations/2026_01_01_000002_break_halfway.php
  expect_code 0 php artisan db:guard --connection=mysql --max-rto=1h -- migrate --force --database=mysql --path=database/mysql_migrations

  # Undo on MariaDB: restore an older backup over the changed database, then put it back.
  php artisan db:backup --connection=mysql --tag=undo-m > /dev/null || fail "db:backup --tag=undo-m of MariaDB exited $?"
  php -r "$mysql_pdo"' $pdo->exec("USE `$db`"); $pdo->exec("DELETE FROM users WHERE id > 150");
    $pdo->exec("CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)"); $pdo->exec("INSERT INTO notes VALUES (1, 42)");'
  m_b="$(full_snapshot_mysql)"
  expect_code 0 php artisan db:restore tag:undo-m --connection=mysql --force
  [ "$(full_snapshot_mysql)" != "$m_b" ] || fail "the MariaDB restore before the undo changed nothing"
  expect_code 0 php artisan db:restore --undo --connection=mysql --force
  [ "$(full_snapshot_mysql)" = "$m_b" ] || fail "db:restore --undo on MariaDB: the database differs from its state before the restore"
  passed=$((passed + 1))
fi

# --- Alerts from artisan, the same as the CLI's (config dbbackup.alerts, from the environment):
# a failing db:backup sends one FAILING e-mail through the SMTP sink however often it fails, and
# one RECOVERED once it works again.
smtp_url="${DBBACKUP_TEST_SMTP_URL:-}"
if [ -z "$smtp_url" ] && under_ci; then fail "DBBACKUP_TEST_SMTP_URL not set under CI=${CI}"; fi
if [ -n "$smtp_url" ]; then
  rcpt="laravel-$$-$RANDOM@example.test"
  mails() { grep -l "^X-Sink-Rcpt-To: $rcpt" "$DBBACKUP_TEST_SMTP_DIR"/*.eml 2>/dev/null | sort || true; }
  export DBBACKUP_SMTP_URL="$smtp_url" DBBACKUP_SMTP_CA_FILE="$DBBACKUP_TEST_SMTP_CA" DBBACKUP_SMTP_USER=laravel \
    DBBACKUP_SMTP_PASSWORD="pw-$RANDOM-secret" DBBACKUP_MAIL_TO="$rcpt"
  mv database/database.sqlite database/away.sqlite
  expect_code 5 php artisan db:backup
  expect_code 5 php artisan db:backup
  [ "$(mails | wc -l)" = 1 ] || { mails; fail "a backup failing twice must send one e-mail, got $(mails | wc -l)"; }
  m="$(mails | head -1)"
  grep -q "^Subject: \[dbbackup\] create failure" "$m" && grep -q "FAILING: create" "$m" && grep -q "expected:   \`create\` succeeds" "$m" \
    || { cat "$m"; fail "the FAILING e-mail does not say which check, what was expected and found"; }
  grep -q "^X-Sink-TLS: yes" "$m" && grep -q "^X-Sink-Auth-User: laravel" "$m" || { cat "$m"; fail "the e-mail did not go over STARTTLS with the user"; }
  ! grep -q "$DBBACKUP_SMTP_PASSWORD" "$m" || fail "the SMTP password is in the e-mail"
  mv database/away.sqlite database/database.sqlite
  php artisan db:backup > /dev/null || fail "db:backup after the recovery exited $?"
  [ "$(mails | wc -l)" = 2 ] || fail "recovering must send one RECOVERED e-mail, got $(($(mails | wc -l) - 1))"
  grep -q "RECOVERED: create" "$(mails | tail -1)" || { cat "$(mails | tail -1)"; fail "the second e-mail is not RECOVERED"; }
  unset DBBACKUP_SMTP_URL DBBACKUP_SMTP_CA_FILE DBBACKUP_SMTP_USER DBBACKUP_SMTP_PASSWORD DBBACKUP_MAIL_TO
  passed=$((passed + 1))
fi
