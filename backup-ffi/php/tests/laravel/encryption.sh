# Sourced by roundtrip.sh inside the app directory (helpers: fail, under_ci, expect_code,
# full_snapshot_sqlite, file_state; $passed): encryption through the Laravel config. Recipients
# from DBBACKUP_RECIPIENTS (dbbackup.encrypt_to); the identity from DBBACKUP_IDENTITY_FILE (a path)
# and from DBBACKUP_IDENTITY (the key text). The disk holds nothing readable; a missing and a
# wrong identity fail before the database changes; no key in any output, log or event.
if ! command -v age-keygen > /dev/null; then
  if under_ci; then fail "age-keygen (package age) missing under CI=${CI}"; fi
  echo "laravel round trip: encryption skipped (no age-keygen)"
else
  age-keygen -o key.txt 2> /dev/null && age-keygen -o other.txt 2> /dev/null
  recipient="$(sed -n 's/^# public key: //p' key.txt)"
  secret="$(grep '^AGE-SECRET-KEY-' key.txt)"
  wrong="$(grep '^AGE-SECRET-KEY-' other.txt)"
  canary="canary-$$-$RANDOM$RANDOM"
  php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("CREATE TABLE card_vault (id INTEGER PRIMARY KEY, card_token TEXT)");
    $db->exec("INSERT INTO card_vault (card_token) VALUES (\"" . $argv[1] . "\")");' "$canary"
  s_backed="$(full_snapshot_sqlite)"
  DBBACKUP_RECIPIENTS="$recipient" php artisan db:backup --json > enc.json || fail "encrypted db:backup exited $?"
  enc_id="$(php -r '$r = json_decode(file_get_contents("enc.json"), true); echo $r["id"];')"
  php artisan db:backups --json | grep -q "\"id\":\"$enc_id\"[^}]*\"encrypted\":true" || fail "db:backups does not show $enc_id as encrypted"
  # Nothing on the disk gives the data away: not the row value, not the table or column.
  ! grep -rqa -e "$canary" -e card_vault -e card_token storage/app/db-backups || fail "the encrypted backup is readable on the disk: $(grep -rla -e "$canary" -e card_vault storage/app/db-backups)"

  php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("DELETE FROM card_vault"); $db->exec("DELETE FROM users WHERE id > 40");'
  s_changed="$(full_snapshot_sqlite)"; f_changed="$(file_state)"
  : > storage/events-detail.log
  expect_code 2 php artisan db:restore "$enc_id" --force
  grep -q "no identity for recipients $recipient" out.txt || { cat out.txt; fail "a restore without the identity: no clear error"; }
  [ "$(file_state)" = "$f_changed" ] && [ "$(full_snapshot_sqlite)" = "$s_changed" ] || fail "a restore without the identity changed the database"
  cp out.txt out-missing.txt
  DBBACKUP_IDENTITY="$wrong" expect_code 2 php artisan db:restore "$enc_id" --force
  grep -q "wrong key" out.txt || { cat out.txt; fail "a restore with the wrong identity: no clear error"; }
  [ "$(file_state)" = "$f_changed" ] && [ "$(full_snapshot_sqlite)" = "$s_changed" ] || fail "a restore with the wrong identity changed the database"
  grep -q RestoreFailed storage/events-detail.log || fail "no RestoreFailed event recorded"
  DBBACKUP_IDENTITY="$wrong" php artisan db:restore "$enc_id" --force --json > out-json.txt 2>&1 || true
  for s in "$wrong" "$secret"; do
    ! grep -qF -e "$s" out.txt out-missing.txt out-json.txt storage/events-detail.log || fail "an identity is in the output or an event"
  done

  # The identity from a file path, then from the environment: the backup comes back exactly.
  DBBACKUP_IDENTITY_FILE="$PWD/key.txt" php artisan db:backup:verify > verify.txt 2>&1 || { cat verify.txt; fail "db:backup:verify with the identity file failed"; }
  DBBACKUP_IDENTITY_FILE="$PWD/key.txt" php artisan db:restore "$enc_id" --force > out.txt 2>&1 || { cat out.txt; fail "restore with DBBACKUP_IDENTITY_FILE failed"; }
  [ "$(full_snapshot_sqlite)" = "$s_backed" ] || fail "the database restored with the identity file differs from the backed-up one"
  php -r '$db = new PDO("sqlite:database/database.sqlite"); $db->exec("DELETE FROM card_vault");'
  DBBACKUP_IDENTITY="$(cat key.txt)" php artisan db:restore "$enc_id" --verify --force > out2.txt 2>&1 || { cat out2.txt; fail "restore with DBBACKUP_IDENTITY failed"; }
  [ "$(full_snapshot_sqlite)" = "$s_backed" ] || fail "the database restored with DBBACKUP_IDENTITY differs from the backed-up one"
  ! grep -qF -e "$secret" out.txt out2.txt verify.txt storage/events-detail.log || fail "the identity is in the output or an event"
  passed=$((passed + 1))
fi
