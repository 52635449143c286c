<?php

// dbbackup for Laravel. Publish with:
//   php artisan vendor:publish --provider="DbBackup\Laravel\DbBackupServiceProvider" --tag=dbbackup-config
//
// The database and the storage are NOT repeated here: they are read at run time from the
// application's config/database.php connections and config/filesystems.php disks, so credentials
// stay where they already are and are handed to the library in memory, never on a command line.

return [
    // The database connection to back up (a name from config/database.php; null = the default).
    'connection' => env('DBBACKUP_CONNECTION'),

    // Where backups go: disk names from config/filesystems.php (local -> its root path, s3 -> an
    // s3:// repository with its own key/secret/region/endpoint/use_path_style_endpoint, passed
    // with that repository only; also Backblaze B2, MinIO and R2). Several disks = the same bytes
    // to each (3-2-1); list/verify/prune act on each, a restore reads the first holding the backup.
    'disks' => array_values(array_filter(explode(',', (string) env('DBBACKUP_DISKS', 'local')))),

    // Folder inside each disk.
    'prefix' => env('DBBACKUP_PREFIX', 'db-backups'),

    // Path to libbackup_ffi.so (null: env DBBACKUP_FFI_LIB, else /usr/lib, /usr/local/lib,
    // /usr/lib/x86_64-linux-gnu, beside the package, a cargo build of its repository).
    'library' => env('DBBACKUP_FFI_LIB'),

    // create options.
    'compression' => env('DBBACKUP_COMPRESSION', 'zstd:3'),
    'jobs' => env('DBBACKUP_JOBS') !== null ? (int) env('DBBACKUP_JOBS') : null,
    'tags' => [],

    // Engine switches, for backups and restores alike. MySQL on a managed server (RDS, Cloud SQL):
    // drop DEFINER clauses the restoring user may not set. PostgreSQL: keep object owners (the
    // roles must exist on the target; the default gives restored objects to the connecting role).
    'no_definer' => (bool) env('DBBACKUP_NO_DEFINER', false),
    'keep_owners' => (bool) env('DBBACKUP_KEEP_OWNERS', false),

    // db:guard: where the engine has no cheap server-side copy (MySQL/MariaDB; PostgreSQL with a
    // session connected), restore the safety backup into a verified shadow before the command, so
    // that a rollback is the swap alone (about a second); the command starts later by the
    // restore's time and the database's size is held again on the server while it runs.
    'guard_staged_rollback' => (bool) env('DBBACKUP_STAGED_ROLLBACK', false),

    // Client-side encryption (docs/encryption.md). Backups are encrypted to these age recipients
    // (public keys, comma-separated in DBBACKUP_RECIPIENTS); restores and verifications open them
    // with the identity (private key) from a file path or the environment, never from this file.
    'encrypt_to' => array_values(array_filter(array_map('trim', explode(',', (string) env('DBBACKUP_RECIPIENTS', ''))))),
    'identity_file' => env('DBBACKUP_IDENTITY_FILE'),
    'identity' => env('DBBACKUP_IDENTITY'),
    'passphrase' => env('DBBACKUP_PASSPHRASE'),

    // verify level used by db:backup:verify and `db:restore --verify`: quick, full or drill.
    'verify_level' => env('DBBACKUP_VERIFY_LEVEL', 'full'),

    // db:backup:verify --level=drill: the connection (config/database.php) of the server a drill
    // restores its throwaway copy on (MySQL/PostgreSQL; SQLite needs none). --scratch= overrides.
    'drill' => [
        'scratch' => env('DBBACKUP_DRILL_SCRATCH'),
    ],

    // Undo (db:restore --undo): every restore first keeps what it replaces (a safety backup of the
    // database, unencrypted, in this local directory, mode 0700) for `keep` (e.g. 24h; 0 or
    // DBBACKUP_NO_UNDO=true: no copy, the restore cannot be undone); the last copy per database.
    // db:backup:prune removes expired copies, db:backup:status lists them.
    'undo' => [
        'dir' => env('DBBACKUP_UNDO_DIR', function_exists('storage_path') ? storage_path('dbbackup/undo') : null),
        'keep' => env('DBBACKUP_KEEP_UNDO', '24h'),
        'disabled' => (bool) env('DBBACKUP_NO_UNDO', false),
    ],

    // db:backup:prune policy (grandfather-father-son; the newest backup is always kept).
    'retention' => [
        'keep_last' => 3,
        'keep_daily' => 7,
        'keep_weekly' => 4,
        'keep_monthly' => 6,
    ],

    // db:backup:status thresholds.
    'status' => [
        'max_age' => env('DBBACKUP_MAX_AGE', '26h'),
        'max_size' => env('DBBACKUP_MAX_SIZE'),
    ],

    // Alerts sent by the library itself, the same as the dbbackup CLI's (docs/storage.md#alerts):
    // one alert when a check starts failing (a failed backup, verification, prune, an unhealthy
    // status), a reminder every notify_repeat while it stays failing, one when it recovers; a
    // guard that rolled back and a failed restore every time. The state is kept beside the
    // backups (first disk). Secrets (webhook URLs, the SMTP password) stay in the environment.
    'alerts' => [
        'slack_webhook' => env('DBBACKUP_SLACK_WEBHOOK'),
        'webhook_url' => env('DBBACKUP_WEBHOOK_URL'),
        'heartbeat_url' => env('DBBACKUP_HEARTBEAT_URL'),
        // E-mail over SMTP: smtp://[user@]host[:port] (STARTTLS, port 587) or smtps:// (TLS, 465).
        'smtp_url' => env('DBBACKUP_SMTP_URL'),
        'smtp_tls' => env('DBBACKUP_SMTP_TLS'),
        'smtp_user' => env('DBBACKUP_SMTP_USER'),
        'smtp_password' => env('DBBACKUP_SMTP_PASSWORD'),
        'smtp_ca_file' => env('DBBACKUP_SMTP_CA_FILE'),
        'mail_from' => env('DBBACKUP_MAIL_FROM'),
        'mail_to' => env('DBBACKUP_MAIL_TO'),
        'notify_on' => env('DBBACKUP_NOTIFY_ON'),
        'notify_repeat' => env('DBBACKUP_NOTIFY_REPEAT'),
        'state_dir' => env('DBBACKUP_STATE_DIR'),
    ],

    // The same alerts as Laravel notifications, through the application's own channels (like
    // spatie/laravel-backup): the library decides when (one when a check starts failing, a
    // reminder every alerts.notify_repeat while it stays failing, one when it recovers; a guard
    // rollback and a failed restore every time) and what they say (which check, expected/found,
    // since when; a guard's command, exit status, backup, recovery time, whether the rollback
    // succeeded); the app's mailer sends the mail, the package's channel posts to Slack. They are
    // sent when the notifiable routes somewhere (mail.to or slack.webhook_url set). Use them
    // instead of, or beside, the library's own channels above.
    'notifications' => [
        'notifications' => [
            \DbBackup\Laravel\Notifications\BackupFailedNotification::class => ['mail', 'slack'],
            \DbBackup\Laravel\Notifications\RestoreFailedNotification::class => ['mail', 'slack'],
            \DbBackup\Laravel\Notifications\GuardRolledBackNotification::class => ['mail', 'slack'],
            \DbBackup\Laravel\Notifications\UnhealthyNotification::class => ['mail', 'slack'],
            \DbBackup\Laravel\Notifications\RecoveredNotification::class => ['mail', 'slack'],
            \DbBackup\Laravel\Notifications\OperationFailedNotification::class => ['mail', 'slack'],
            \DbBackup\Laravel\Notifications\SucceededNotification::class => [],
        ],

        // Receives the notifications: mail to mail.to, Slack to slack.webhook_url. Any class using
        // Laravel's Notifiable trait (routeNotificationForMail / routeNotificationForSlack).
        'notifiable' => \DbBackup\Laravel\Notifications\Notifiable::class,

        'mail' => [
            'to' => array_values(array_filter(array_map('trim', explode(',', (string) env('DBBACKUP_NOTIFICATION_MAIL_TO', ''))))),
            // null: the application's mail.from.
            'from' => [
                'address' => env('DBBACKUP_NOTIFICATION_MAIL_FROM'),
                'name' => env('DBBACKUP_NOTIFICATION_MAIL_FROM_NAME', 'dbbackup'),
            ],
        ],

        'slack' => [
            // An incoming-webhook URL (a secret: keep it in .env).
            'webhook_url' => env('DBBACKUP_NOTIFICATION_SLACK_WEBHOOK'),
            // Override the webhook's channel, user name and icon (null: the webhook's own).
            'channel' => null,
            'username' => null,
            'icon' => null,
        ],
    ],

    // Cancel any operation that runs longer than this (milliseconds; null = no limit).
    'timeout_ms' => null,
];
