# Sourced by roundtrip.sh inside the app directory (helpers: fail, under_ci, expect_code from
# more.sh; $app, $passed): the package's Notification classes through the application's own
# channels. The library decides (state kept beside the backups: failing twice notifies once) and
# writes the text; the app's mailer sends the mail over SMTP to the sink, the package's Slack
# channel posts to a local HTTP receiver. Every notification is read back and checked.
smtp_url="${DBBACKUP_TEST_SMTP_URL:-}"
if [ -z "$smtp_url" ] && under_ci; then fail "DBBACKUP_TEST_SMTP_URL not set under CI=${CI}"; fi
if [ -n "$smtp_url" ]; then
  # The Slack receiver: PHP's built-in server, one file per POST.
  mkdir -p slack
  cat > slack-receiver.php <<'PHP'
<?php
file_put_contents(__DIR__ . '/slack/' . hrtime(true) . '.json', file_get_contents('php://input'));
echo 'ok';
PHP
  # 300 tries (30 s and more) for the receiver (a loaded machine boots PHP slowly); a receiver that never came
  # up is this test's failure, not a missing notification later. The port is picked by binding port 0 and
  # closing it: another program can take it before php -S binds it. php -S then exits ("Failed to listen"),
  # and whatever took the port may answer the check below: the receiver is up only once php -S is still
  # running and has logged that it started; if it exited, another port is picked (up to 5).
  slack_up=
  for _ in 1 2 3 4 5; do
    slack_port="$(php -r '$s = stream_socket_server("tcp://127.0.0.1:0"); echo explode(":", stream_socket_get_name($s, false))[1];')"
    php -S "127.0.0.1:$slack_port" slack-receiver.php > slack-server.log 2>&1 &
    slack_pid=$!
    for _ in $(seq 300); do
      kill -0 "$slack_pid" 2>/dev/null || break
      if grep -q "(http://127.0.0.1:$slack_port) started" slack-server.log \
        && php -r 'exit(@fsockopen("127.0.0.1", (int) $argv[1]) ? 0 : 1);' "$slack_port" \
        && kill -0 "$slack_pid" 2>/dev/null; then slack_up=1; break; fi
      sleep 0.1
    done
    [ -n "$slack_up" ] && break
    kill "$slack_pid" 2>/dev/null || true
    wait "$slack_pid" 2>/dev/null || true
  done
  trap "kill $slack_pid 2>/dev/null || true; $(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT\$/\1/")" EXIT
  [ -n "$slack_up" ] || fail "the Slack receiver (php -S on 127.0.0.1:$slack_port) did not come up: $(cat slack-server.log)"
  hook_secret="T0/B0/hook-secret-$RANDOM$RANDOM"
  rcpt="notify-$$-$RANDOM@example.test"
  hostport="${smtp_url#smtp://}"
  export DBB_SMTP_HOST="${hostport%:*}" DBB_SMTP_PORT="${hostport##*:}"
  export DBBACKUP_NOTIFICATION_MAIL_TO="$rcpt" DBBACKUP_NOTIFICATION_SLACK_WEBHOOK="http://127.0.0.1:$slack_port/services/$hook_secret"
  # The application's mailer: SMTP to the sink (plain; the sink offers STARTTLS, unused here).
  cat > config/mail.php <<'PHP'
<?php
return [
    'default' => 'smtp',
    'mailers' => ['smtp' => ['transport' => 'smtp', 'host' => getenv('DBB_SMTP_HOST'), 'port' => (int) getenv('DBB_SMTP_PORT'),
        'encryption' => null, 'username' => null, 'password' => null, 'timeout' => 10]],
    'from' => ['address' => 'app@example.test', 'name' => 'dbb-test'],
    'markdown' => ['theme' => 'default', 'paths' => []],
];
PHP
  # One mail as "Subject<TAB>text part" (quoted-printable decoded).
  mail_text() { python3 -c '
import email, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
text = next((p.get_payload(decode=True).decode() for p in m.walk() if p.get_content_type() == "text/plain"), "")
print(m["Subject"]); print(text)' "$1"; }
  mails() { grep -l "^X-Sink-Rcpt-To: $rcpt" "$DBBACKUP_TEST_SMTP_DIR"/*.eml 2>/dev/null | sort || true; }
  posts() { ls slack/*.json 2>/dev/null | sort || true; }
  # Expects exactly one new mail and one new Slack post since the last call; leaves them in
  # last_mail.txt / last_slack.json.
  seen_mails=0; seen_posts=0
  expect_one() {
    local what="$1" m p
    m="$(mails | wc -l)"; p="$(posts | wc -l)"
    [ "$m" = $((seen_mails + 1)) ] || { cat out.txt; fail "$what: expected one notification mail, got $((m - seen_mails))"; }
    [ "$p" = $((seen_posts + 1)) ] || { cat out.txt; fail "$what: expected one Slack notification, got $((p - seen_posts))"; }
    seen_mails=$m; seen_posts=$p
    mail_text "$(mails | tail -1)" > last_mail.txt
    cp "$(posts | tail -1)" last_slack.json
    ! grep -q "hook-secret" last_mail.txt last_slack.json "$(mails | tail -1)" || fail "$what: the Slack webhook URL (a secret) is in a notification"
  }
  expect_none() {
    [ "$(mails | wc -l)" = "$seen_mails" ] && [ "$(posts | wc -l)" = "$seen_posts" ] || fail "$1: expected no notification"
  }
  slack_text() { php -r 'echo json_decode(file_get_contents("last_slack.json"), true)["text"];'; }

  # A failing backup: one mail and one Slack message saying which check, expected and found;
  # failing again: nothing more (the state is the library's, shared with the CLI).
  mv database/database.sqlite database/away.sqlite
  expect_code 5 php artisan db:backup
  expect_one "a failing db:backup"
  head -1 last_mail.txt | grep -q "^\[dbbackup\] create failure" || { cat last_mail.txt; fail "the mail's subject is not the library's"; }
  grep -q "FAILING: create" last_mail.txt && grep -q "expected:   \`create\` succeeds" last_mail.txt && grep -q "found: .*does not exist" last_mail.txt \
    || { cat last_mail.txt; fail "the BackupFailed mail does not say which check, expected and found"; }
  grep -q "Database backup failed" last_mail.txt || { cat last_mail.txt; fail "not the BackupFailedNotification"; }
  slack_text | grep -q "dbbackup create failure.*FAILING: create" || { cat last_slack.json; fail "the Slack message is not the library's"; }
  grep -q '"expected `create` succeeds, found' last_slack.json || { cat last_slack.json; fail "the Slack message lacks expected/found"; }
  expect_code 5 php artisan db:backup
  expect_none "a db:backup failing a second time"
  mv database/away.sqlite database/database.sqlite
  php artisan db:backup > /dev/null || fail "db:backup after the recovery exited $?"
  expect_one "a recovered db:backup"
  grep -q "RECOVERED: create" last_mail.txt && grep -q "Database backups recovered" last_mail.txt || { cat last_mail.txt; fail "no RECOVERED mail"; }

  # A failed restore (the library's: an unknown backup on the disk) notifies every time.
  expect_code 5 php artisan db:restore 20200101T000000Z-dead --disk=local --force
  expect_one "a failed db:restore"
  grep -q "Database restore failed" last_mail.txt && grep -q "FAILED: restore" last_mail.txt || { cat last_mail.txt; fail "no RestoreFailed mail"; }

  # An unhealthy status (the total above max_size): which check, expected, found; then recovered.
  DBBACKUP_MAX_SIZE=1 expect_code 4 php artisan db:backup:status
  expect_one "an unhealthy db:backup:status"
  grep -q "Database backups unhealthy" last_mail.txt && grep -q "FAILING: " last_mail.txt && grep -q "expected: " last_mail.txt \
    || { cat last_mail.txt; fail "no Unhealthy mail with the check"; }
  DBBACKUP_MAX_SIZE=1 expect_code 4 php artisan db:backup:status
  expect_none "a db:backup:status unhealthy a second time"
  DBBACKUP_MAX_SIZE=1GiB expect_code 0 php artisan db:backup:status
  expect_one "a healthy db:backup:status again"
  grep -q "RECOVERED: " last_mail.txt || { cat last_mail.txt; fail "no RECOVERED mail for the status"; }

  # A guarded migration that fails: rolled back, with the command, exit status, recovery time and
  # whether the rollback succeeded.
  mkdir -p database/notify_migrations
  cat > database/notify_migrations/2026_01_01_000009_fails.php <<'PHP'
<?php
use Illuminate\Database\Migrations\Migration;
use Illuminate\Support\Facades\DB;
return new class extends Migration {
    public $withinTransaction = false;
    public function up(): void { DB::table('users')->where('id', '<', 5)->delete(); throw new RuntimeException('notify: failing'); }
};
PHP
  expect_code 1 php artisan db:guard -- migrate --force --path=database/notify_migrations
  expect_one "a rolled-back db:guard"
  grep -q "Guarded command failed: database rolled back" last_mail.txt && grep -q "ROLLED BACK: guarded command \`php artisan migrate --force --path=database/notify_migrations\`" last_mail.txt \
    && grep -q "recovery time" last_mail.txt && grep -q "rollback_succeeded: true" last_mail.txt \
    || { cat last_mail.txt; fail "the GuardRolledBack mail lacks the command, recovery time or rollback result"; }
  grep -q '"title":"rollback succeeded","value":"yes"' last_slack.json || { cat last_slack.json; fail "the Slack rollback message lacks whether the rollback succeeded"; }

  kill "$slack_pid" 2>/dev/null || true
  unset DBBACKUP_NOTIFICATION_MAIL_TO DBBACKUP_NOTIFICATION_SLACK_WEBHOOK
  passed=$((passed + 1))
fi
