#!/usr/bin/env bash
# A real Laravel application (Debian's php-laravel-framework; Packagist is unreachable) with the
# dbbackup provider registered: `php artisan db:backup`, then `db:restore --force` in production,
# must bring its SQLite database back exactly. Also checks the other commands, the exit codes,
# the unknown-backup listing and the events.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pkg="$(cd "$here/../.." && pwd)"
: "${DBBACKUP_FFI_LIB:=$(cd "$pkg/../.." && pwd)/target/debug/libbackup_ffi.so}"
export DBBACKUP_FFI_LIB
app="$(mktemp -d /tmp/dbb-laravel.XXXXXX)"
trap 'rm -rf "$app"' EXIT
fail() { echo "laravel round trip: FAILED: $*" >&2; exit 1; }
# A CI run (CI=true, CI=1, ...) must not skip what needs a service: it fails instead.
under_ci() { case "$(echo "${CI:-}" | tr 'A-Z' 'a-z')" in ''|0|false|no) return 1 ;; *) return 0 ;; esac; }

mkdir -p "$app"/{bootstrap/cache,config,database,storage/app,storage/logs,storage/framework/cache,app/Providers}
cat > "$app/bootstrap/app.php" <<PHP
<?php
require '/usr/share/php/Illuminate/autoload.php';
require '$pkg/tests/bootstrap.php';
require __DIR__ . '/../app/Providers/AppServiceProvider.php';
\$app = new Illuminate\Foundation\Application(dirname(__DIR__));
\$app->singleton(Illuminate\Contracts\Console\Kernel::class, Illuminate\Foundation\Console\Kernel::class);
\$app->singleton(Illuminate\Contracts\Debug\ExceptionHandler::class, Illuminate\Foundation\Exceptions\Handler::class);
// The migration commands need it (a full app gets it from ComposerServiceProvider).
\$app->singleton('composer', fn (\$app) => new Illuminate\Support\Composer(\$app['files'], \$app->basePath()));
return \$app;
PHP
cat > "$app/artisan" <<'PHP'
#!/usr/bin/env php
<?php
$app = require __DIR__ . '/bootstrap/app.php';
$kernel = $app->make(Illuminate\Contracts\Console\Kernel::class);
$status = $kernel->handle($input = new Symfony\Component\Console\Input\ArgvInput(), new Symfony\Component\Console\Output\ConsoleOutput());
$kernel->terminate($input, $status);
exit($status);
PHP
cat > "$app/app/Providers/AppServiceProvider.php" <<'PHP'
<?php
namespace App\Providers;

use Illuminate\Support\Facades\Event;
use Illuminate\Support\ServiceProvider;

// Records dbbackup's events so the test can see they were dispatched.
class AppServiceProvider extends ServiceProvider
{
    public function boot(): void
    {
        foreach (['BackupStarting', 'BackupSucceeded', 'BackupFailed', 'RestoreSucceeded', 'RestoreFailed', 'VerificationSucceeded', 'VerificationFailed',
                  'HealthCheckSucceeded', 'HealthCheckFailed', 'PruneSucceeded', 'GuardStarting', 'GuardSucceeded', 'GuardRolledBack', 'GuardFailed', 'AlertRaised'] as $e) {
            Event::listen('DbBackup\\Laravel\\Events\\' . $e, function ($event) use ($e) {
                file_put_contents(storage_path('events.log'), $e . "\n", FILE_APPEND);
                // What a listener sees (for the tests that no secret reaches an event).
                $seen = ['options' => $event->options ?? null, 'report' => $event->report ?? null, 'alert' => $event->alert ?? null,
                    'error' => isset($event->exception) ? [$event->exception->getMessage(), $event->exception->report, $event->exception->returnedAlerts] : null];
                file_put_contents(storage_path('events-detail.log'), $e . ' ' . json_encode($seen, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE) . "\n", FILE_APPEND);
            });
        }
    }
}
PHP
cat > "$app/config/app.php" <<'PHP'
<?php
return [
    'name' => 'dbb-test', 'env' => env('APP_ENV', 'production'), 'debug' => false, 'url' => 'http://localhost',
    'timezone' => 'UTC', 'locale' => 'en', 'key' => 'base64:' . base64_encode(str_repeat('k', 32)), 'cipher' => 'AES-256-CBC',
    'providers' => [
        Illuminate\Database\DatabaseServiceProvider::class,
        Illuminate\Database\MigrationServiceProvider::class,
        Illuminate\Filesystem\FilesystemServiceProvider::class,
        // What a full app has for notifications (notifications.sh): bus, translation, views, mail.
        Illuminate\Translation\TranslationServiceProvider::class,
        Illuminate\Bus\BusServiceProvider::class,
        Illuminate\View\ViewServiceProvider::class,
        Illuminate\Mail\MailServiceProvider::class,
        Illuminate\Notifications\NotificationServiceProvider::class,
        DbBackup\Laravel\DbBackupServiceProvider::class,
        App\Providers\AppServiceProvider::class,
    ],
    'aliases' => [],
];
PHP
# MariaDB (DBBACKUP_TEST_MYSQL_URL, e.g. mysql://root@127.0.0.1:3306/mysql) as a second connection.
mysql_url="${DBBACKUP_TEST_MYSQL_URL:-}"
if [ -z "$mysql_url" ] && under_ci; then fail "DBBACKUP_TEST_MYSQL_URL not set under CI=${CI}"; fi
mysql_db="dbb_laravel_$$_$RANDOM"
export DBB_MYSQL_URL="$mysql_url" DBB_MYSQL_DB="$mysql_db"
cat > "$app/config/database.php" <<'PHP'
<?php
$m = parse_url((string) getenv('DBB_MYSQL_URL')) ?: [];
$mysql = ['driver' => 'mysql', 'host' => $m['host'] ?? '127.0.0.1', 'port' => $m['port'] ?? 3306,
    'username' => rawurldecode($m['user'] ?? 'root'), 'password' => rawurldecode($m['pass'] ?? ''),
    'charset' => 'utf8mb4', 'collation' => 'utf8mb4_unicode_ci', 'prefix' => ''];
return [
    'default' => env('DB_CONNECTION', 'sqlite'),
    'migrations' => 'migrations',
    'connections' => [
        'sqlite' => ['driver' => 'sqlite', 'database' => database_path('database.sqlite'), 'prefix' => ''],
        'mysql' => $mysql + ['database' => getenv('DBB_MYSQL_DB')],
        // The drill's scratch server: the same server, any database (dbbackup makes a throwaway one).
        'scratch' => $mysql + ['database' => 'mysql'],
        // A second one, for db:backup:verify --scratch= (more.sh).
        'scratch_b' => $mysql + ['database' => 'mysql'],
    ],
];
PHP
# The local disk, plus an S3 disk on the emulator (its own endpoint and keys, never the environment's).
s3_endpoint="${DBBACKUP_TEST_S3_ENDPOINT:-}"
if [ -z "$s3_endpoint" ] && under_ci; then fail "DBBACKUP_TEST_S3_ENDPOINT not set under CI=${CI}"; fi
export DBB_S3_ENDPOINT="$s3_endpoint" DBB_S3_BUCKET="${DBBACKUP_TEST_S3_BUCKET:-}" DBB_S3_ROOT="laravel-$$-$RANDOM"
cat > "$app/config/filesystems.php" <<'PHP'
<?php
return [
    'default' => 'local',
    'disks' => [
        'local' => ['driver' => 'local', 'root' => storage_path('app')],
        's3' => ['driver' => 's3', 'key' => 'laravel-key', 'secret' => 'laravel-secret', 'region' => 'us-east-1',
            'bucket' => getenv('DBB_S3_BUCKET'), 'endpoint' => getenv('DBB_S3_ENDPOINT'), 'use_path_style_endpoint' => true,
            'root' => getenv('DBB_S3_ROOT'), 'dbbackup' => ['DBBACKUP_STORE_MAX_RETRIES' => 2, 'DBBACKUP_STORE_RETRY_TIMEOUT' => 5]],
    ],
];
PHP
cat > "$app/config/view.php" <<'PHP'
<?php
return ['paths' => [resource_path('views')], 'compiled' => storage_path('framework/views')];
PHP
mkdir -p "$app/resources/views" "$app/storage/framework/views"
cat > "$app/config/logging.php" <<'PHP'
<?php
return ['default' => 'stderr', 'channels' => ['stderr' => ['driver' => 'monolog', 'handler' => Monolog\Handler\StreamHandler::class, 'with' => ['stream' => 'php://stderr']]]];
PHP
chmod +x "$app/artisan"
cd "$app"
export APP_ENV=production

php -r '
$db = new PDO("sqlite:database/database.sqlite");
$db->exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, created_at TEXT)");
$st = $db->prepare("INSERT INTO users (name, email, created_at) VALUES (?, ?, ?)");
for ($i = 0; $i < 500; $i++) { $st->execute(["User $i ☃", "u$i@example.test", "2026-11-23 12:00:00"]); }'
snapshot() { php -r '$db = new PDO("sqlite:database/database.sqlite"); echo md5(json_encode($db->query("SELECT * FROM users ORDER BY id")->fetchAll(PDO::FETCH_NUM)));'; }
before="$(snapshot)"

php artisan db:backup --tag=nightly --json > backup.json || fail "db:backup exited $?"
id="$(php -r 'echo json_decode(file_get_contents("backup.json"), true)["id"];')"
[ -n "$id" ] || fail "db:backup printed no id"
[ -f "storage/app/db-backups/$id/manifest.json" ] || fail "no manifest under the local disk"
php artisan db:backups | grep -q "$id" || fail "db:backups does not list $id"
php artisan db:backup:verify || fail "db:backup:verify exited $?"
php artisan db:backup:status || fail "db:backup:status exited $?"
php artisan db:backup:prune --dry-run || fail "db:backup:prune exited $?"

# Damage the live database, then restore it.
php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("DELETE FROM users WHERE id % 3 = 0"); $db->exec("UPDATE users SET name = '"'"'x'"'"'");'
[ "$(snapshot)" != "$before" ] || fail "the test did not change the database"

damaged="$(snapshot)"
files_before="$(cd database && ls -la --time-style=+ . && sha256sum database.sqlite)"
set +e
php artisan db:restore --no-interaction > out.txt 2>&1; code=$?
set -e
[ "$code" = 2 ] || { cat out.txt; fail "production restore without --force: expected exit 2, got $code"; }
# Refused means untouched: the same rows, the same bytes, no file added beside the database.
[ "$(snapshot)" = "$damaged" ] || fail "a refused production restore changed the rows"
[ "$(cd database && ls -la --time-style=+ . && sha256sum database.sqlite)" = "$files_before" ] \
  || fail "a refused production restore changed the database file or its directory"
set +e
php artisan db:restore 20200101T000000Z-dead --force > out.txt 2>&1; code=$?
set -e
[ "$code" = 5 ] || { cat out.txt; fail "unknown backup: expected exit 5, got $code"; }
grep -q "$id" out.txt || { cat out.txt; fail "unknown backup: the available ones are not listed"; }

# The engine switches pass through to the library (which refuses unknown option keys); SQLite
# has no definers or owners, so the result must be the same.
DBBACKUP_NO_DEFINER=true DBBACKUP_KEEP_OWNERS=true php artisan db:restore "$id" --verify --force || fail "db:restore exited $?"
[ "$(snapshot)" = "$before" ] || fail "restored database differs from the backed-up one"

for e in BackupStarting BackupSucceeded VerificationSucceeded HealthCheckSucceeded PruneSucceeded RestoreFailed RestoreSucceeded; do
  grep -qx "$e" storage/events.log || { cat storage/events.log; fail "event $e was not dispatched"; }
done
passed=1

. "$here/more.sh"
. "$here/notifications.sh"
. "$here/encryption.sh"
echo "laravel round trip: $passed passed, 0 failed"
