<?php

declare(strict_types=1);

namespace DbBackup\Laravel;

use DbBackup\Client;
use DbBackup\Exception;
use DbBackup\GuardedCommandException;
use DbBackup\NotFoundException;
use DbBackup\UsageException;
use Illuminate\Contracts\Events\Dispatcher;

/**
 * The application's backups: the dbbackup client bound to the app's database connection and
 * disks, dispatching Laravel events for every outcome. Resolve it from the container
 * (`app(Backups::class)`) to back up from a job or a controller run in the CLI.
 *
 * Every disk of `dbbackup.disks` is a repository with its own store settings. A backup goes to
 * all of them at once; list, verify and prune act on each disk (`$disk` picks one); status checks
 * them together; a restore reads from the first disk that holds the requested backup.
 */
class Backups
{
    private ?Client $client = null;

    /**
     * @param array<string,mixed> $config
     * @param bool $returnAlerts ask the library for the alerts it decides to send and dispatch
     *        each as {@see Events\AlertRaised} (the package's notifications are configured)
     */
    public function __construct(private array $config, private Targets $targets, private ?Dispatcher $events = null, private bool $returnAlerts = false)
    {
    }

    public function client(): Client
    {
        return $this->client ??= new Client($this->config['library'] ?? null);
    }

    /** @param array<string,mixed> $extra @return array<string,mixed> */
    public function create(array $extra = [], ?string $connection = null): array
    {
        $c = $this->targets->connection($connection);
        $disks = $this->disks(null);
        $options = array_filter([
            'source' => $c['url'],
            'password' => $c['password'],
            'repo' => $this->targets->repos($disks),
            'repo_settings' => $this->targets->repoSettings($disks),
            'compression' => $this->config['compression'] ?? null,
            'jobs' => $this->config['jobs'] ?? null,
            'tag' => $this->config['tags'] ?? [],
            'timeout_ms' => $this->config['timeout_ms'] ?? null,
            'encrypt_to' => $this->config['encrypt_to'] ?? [],
            'passphrase' => $this->config['passphrase'] ?? null,
        ], static fn ($v) => $v !== null && $v !== [] && $v !== '') + $this->engineSwitches() + $this->alerts();
        $options = array_merge($options, $extra);
        $this->events?->dispatch(new Events\BackupStarting($c['database'], $disks, self::public($options)));
        return $this->run('create', $options, Events\BackupSucceeded::class, Events\BackupFailed::class);
    }

    /**
     * Lists each disk's backups: disk name => the `list` report.
     *
     * @param array<string,mixed> $extra
     * @return array<string, array<string,mixed>>
     */
    public function list(array $extra = [], ?string $disk = null): array
    {
        $out = [];
        foreach ($this->disks($disk) as $name) {
            $out[$name] = $this->client()->list(array_merge($this->repoOptions($name), $extra));
        }
        return $out;
    }

    /**
     * Verifies the backup on each disk: disk name => the `verify` report. Every disk is verified
     * even when one fails; then the first failure is thrown (with the reports of all disks in
     * `Exception::$report['disks']`).
     *
     * @param array<string,mixed> $extra
     * @return array<string, array<string,mixed>>
     */
    public function verify(array $extra = [], ?string $disk = null): array
    {
        $options = ['level' => $this->config['verify_level'] ?? 'full'] + $this->keys() + $this->alerts();
        $scratch = $extra['scratch_connection'] ?? $this->config['drill']['scratch'] ?? null;
        unset($extra['scratch_connection']);
        if (($extra['level'] ?? $options['level']) === 'drill' && $scratch !== null && $scratch !== '') {
            $s = $this->targets->connection((string) $scratch);
            $options['scratch'] = $s['url'];
            if ($s['password'] !== null) {
                $options['password'] = $s['password'];
            }
        }
        return $this->eachDisk($disk, fn (string $name) => $this->run('verify', array_merge($options, $this->repoOptions($name), $extra),
            Events\VerificationSucceeded::class, Events\VerificationFailed::class));
    }

    /**
     * Restores into the connection. Without `$disk`, from the first disk (in `dbbackup.disks`
     * order) that holds the requested backup; a disk that cannot be read is skipped.
     *
     * @param array<string,mixed> $extra
     * @return array<string,mixed>
     */
    public function restore(array $extra = [], ?string $connection = null, ?string $disk = null): array
    {
        $c = $this->targets->connection($connection);
        $undo = (bool) ($extra['undo'] ?? false);
        $wanted = (string) ($extra['backup'] ?? 'latest');
        if ($undo) {
            // The undo copy lives in the local undo area, not on a disk.
            unset($extra['backup']);
            $disk = null;
        } else {
            // A plain dump file (pg_dump, mysqldump, sqlite3 .dump; .sql, .sql.gz, .sql.zst) is
            // read from the local filesystem, not from a disk.
            $file = self::dumpFile($wanted);
            if ($file !== null) {
                $extra['backup'] = $file;
            }
            try {
                $disk ??= $file === null ? $this->diskHolding($wanted) : null;
            } catch (Exception $e) {
                $this->events?->dispatch(new Events\RestoreFailed($e, ['backup' => $wanted, 'into' => $c['url']]));
                throw $e;
            }
        }
        $options = array_filter([
            'into' => $c['url'],
            'password' => $c['password'],
            'timeout_ms' => $this->config['timeout_ms'] ?? null,
        ], static fn ($v) => $v !== null) + ($disk === null ? [] : $this->repoOptions($disk)) + $this->undoOptions()
            + $this->engineSwitches() + $this->keys() + $this->alerts();
        $report = $this->run('restore', array_merge($options, $extra), Events\RestoreSucceeded::class, Events\RestoreFailed::class);
        return $report + ['disk' => $disk ?? ($undo ? 'undo' : 'file')];
    }

    /** The absolute path of `$backup` when it names an existing plain dump file, else null. */
    private static function dumpFile(string $backup): ?string
    {
        $path = str_starts_with($backup, 'file://') ? substr($backup, 7) : $backup;
        if (!preg_match('/\.sql(\.gz|\.zst|\.zstd)?$/i', $path) || !is_file($path)) {
            return null;
        }
        return realpath($path) ?: $path;
    }

    /** @return array<string,mixed> the undo area and how long a restore keeps what it replaces (dbbackup.undo) */
    private function undoOptions(): array
    {
        $u = (array) ($this->config['undo'] ?? []);
        $keep = $u['keep'] ?? null;
        return array_filter([
            'undo_dir' => $u['dir'] ?? null,
            'keep_undo' => is_numeric($keep) ? (int) $keep : $keep,
            'no_undo' => (bool) ($u['disabled'] ?? false),
        ], static fn ($v) => $v !== null && $v !== '' && $v !== false);
    }

    /**
     * Applies the retention policy on each disk: disk name => the `prune` report.
     *
     * @param array<string,mixed> $extra
     * @return array<string, array<string,mixed>>
     */
    public function prune(array $extra = [], ?string $disk = null): array
    {
        $options = array_filter((array) ($this->config['retention'] ?? []), static fn ($v) => $v !== null) + $this->alerts()
            + array_intersect_key($this->undoOptions(), ['undo_dir' => true]);
        return $this->eachDisk($disk, fn (string $name) => $this->run('prune', array_merge($options, $this->repoOptions($name), $extra),
            Events\PruneSucceeded::class, Events\PruneFailed::class));
    }

    /** @param array<string,mixed> $extra @return array<string,mixed> */
    public function status(array $extra = [], ?string $disk = null): array
    {
        $options = array_filter((array) ($this->config['status'] ?? []), static fn ($v) => $v !== null && $v !== '') + $this->alerts();
        $disks = $this->disks($disk);
        $options['repo'] = $this->targets->repos($disks);
        $options['repo_settings'] = $this->targets->repoSettings($disks);
        $options += array_intersect_key($this->undoOptions(), ['undo_dir' => true]);
        if ($options['repo_settings'] === []) {
            unset($options['repo_settings']);
        }
        return $this->run('status', array_merge($options, $extra), Events\HealthCheckSucceeded::class, Events\HealthCheckFailed::class);
    }

    /**
     * Runs $command under a guard: a safety backup to the disks, then $command() (returning its
     * exit status); when it fails (non-zero or an exception) the database is restored from the
     * safety backup (first disk) and the report says `rolled_back` and `recovery_ms`.
     *
     * @param callable(): int $command
     * @param array<string,mixed> $extra
     * @return array<string,mixed>
     */
    public function guard(callable $command, array $extra = [], ?string $connection = null): array
    {
        $c = $this->targets->connection($connection);
        $disks = $this->disks(null);
        $options = array_filter([
            'source' => $c['url'],
            'password' => $c['password'],
            'repo' => $this->targets->repos($disks),
            'repo_settings' => $this->targets->repoSettings($disks),
            'compression' => $this->config['compression'] ?? null,
            'jobs' => $this->config['jobs'] ?? null,
            'operator' => self::operator(),
            'staged_rollback' => ($this->config['guard_staged_rollback'] ?? false) ? true : null,
        ], static fn ($v) => $v !== null && $v !== []) + $this->engineSwitches() + $this->alerts();
        $options = array_merge($options, $extra);
        $this->events?->dispatch(new Events\GuardStarting($c['database'], self::public($options)));
        try {
            $report = $this->client()->guard($options, $command);
        } catch (GuardedCommandException $e) {
            // The command threw; the guard itself did its job.
            $report = $this->raise($e->report ?? []);
            $this->events?->dispatch(($report['rolled_back'] ?? false) ? new Events\GuardRolledBack($report) : new Events\GuardSucceeded($report));
            throw $e;
        } catch (Exception $e) {
            $this->raise([], $e);
            $this->events?->dispatch(new Events\GuardFailed($e, self::public($options)));
            throw $e;
        }
        $report = $this->raise($report);
        $this->events?->dispatch(($report['rolled_back'] ?? false) ? new Events\GuardRolledBack($report) : new Events\GuardSucceeded($report));
        return $report;
    }

    /** The database name a production restore must be confirmed with. */
    public function databaseName(?string $connection = null): string
    {
        return $this->targets->connection($connection)['database'];
    }

    /** @return list<string> the disks to act on: `$disk` alone (checked), else every configured disk */
    public function disks(?string $disk): array
    {
        $all = $this->targets->diskNames();
        if ($disk === null || $disk === '') {
            return $all;
        }
        if (!in_array($disk, $all, true)) {
            throw new UsageException('usage', "disk [{$disk}] is not one of the backup disks (dbbackup.disks: " . implode(', ', $all) . ')', 2);
        }
        return [$disk];
    }

    /** The first disk holding `$wanted` (an id, `latest` or `tag:NAME`). */
    private function diskHolding(string $wanted): string
    {
        $available = [];
        $unreadable = [];
        foreach ($this->disks(null) as $name) {
            try {
                $tag = str_starts_with($wanted, 'tag:') ? substr($wanted, 4) : null;
                $backups = $this->client()->list($this->repoOptions($name) + array_filter(['tag' => $tag]))['backups'];
            } catch (Exception $e) {
                $unreadable[] = "{$name}: {$e->getMessage()}";
                continue;
            }
            $ids = array_column($backups, 'id');
            if (($wanted === 'latest' || $tag !== null) ? $ids !== [] : in_array($wanted, $ids, true)) {
                return $name;
            }
            $available = array_merge($available, $ids);
        }
        $available = array_values(array_unique($available));
        rsort($available);
        throw new NotFoundException('not_found', "backup {$wanted} is on none of the disks " . implode(', ', $this->disks(null))
            . ($unreadable === [] ? '' : ' (unreadable: ' . implode('; ', $unreadable) . ')'), 5, $available);
    }

    /**
     * @param callable(string): array<string,mixed> $op
     * @return array<string, array<string,mixed>>
     */
    private function eachDisk(?string $disk, callable $op): array
    {
        $reports = [];
        $first = null;
        foreach ($this->disks($disk) as $name) {
            try {
                $reports[$name] = $op($name);
            } catch (Exception $e) {
                $reports[$name] = $e->report ?? ['ok' => false, 'error' => ['kind' => $e->kind, 'code' => $e->getCode(), 'message' => $e->getMessage()]];
                $first ??= [$name, $e];
            }
        }
        if ($first !== null) {
            [$name, $e] = $first;
            throw Exception::fromError(['kind' => $e->kind, 'code' => $e->getCode(), 'message' => "disk [{$name}]: {$e->getMessage()}",
                'available' => $e->available], ['disks' => $reports]);
        }
        return $reports;
    }

    /** @return array<string,mixed> `repo` (+ `repo_settings`) for one disk */
    private function repoOptions(string $disk): array
    {
        $r = $this->targets->disks([$disk])[$disk];
        return ['repo' => $r['url']] + ($r['settings'] === [] ? [] : ['repo_settings' => [$r['url'] => $r['settings']]]);
    }

    /** @return array<string,bool> the engine switches that are on (`no_definer`, `keep_owners`) */
    private function engineSwitches(): array
    {
        return array_filter([
            'no_definer' => (bool) ($this->config['no_definer'] ?? false),
            'keep_owners' => (bool) ($this->config['keep_owners'] ?? false),
        ]);
    }

    /**
     * @return array<string,mixed> `alerts` (the library's own alerts, `dbbackup.alerts` without the
     * unset values), or nothing when none is set
     */
    private function alerts(): array
    {
        $returned = $this->returnAlerts ? ['return_alerts' => true] : [];
        $alerts = array_filter((array) ($this->config['alerts'] ?? []), static fn ($v) => $v !== null && $v !== '' && $v !== []);
        if ($alerts === [] && $returned === []) {
            return [];
        }
        return ['alerts' => $alerts + ['host' => gethostname() ?: 'localhost']] + $returned;
    }

    /**
     * Dispatches {@see Events\AlertRaised} for each alert the library returned (in the report, or
     * in the exception of a failed operation), and returns the report without them (so it stays
     * what `dbbackup --json` prints).
     *
     * @param array<string,mixed> $report
     * @return array<string,mixed>
     */
    private function raise(array $report, ?Exception $e = null): array
    {
        $alerts = $e?->returnedAlerts ?? (array) ($report['returned_alerts'] ?? []);
        unset($report['returned_alerts']);
        foreach ($alerts as $alert) {
            if (is_array($alert)) {
                $this->events?->dispatch(new Events\AlertRaised($alert));
            }
        }
        return $report;
    }

    /** @return array<string,string> the key that opens encrypted backups (identity text or file, passphrase) */
    private function keys(): array
    {
        return array_filter([
            'identity' => $this->config['identity'] ?? null,
            'identity_file' => $this->config['identity_file'] ?? null,
            'passphrase' => $this->config['passphrase'] ?? null,
        ], static fn ($v) => $v !== null && $v !== '');
    }

    /** @param array<string,mixed> $options @return array<string,mixed> the options without secrets (for events) */
    private static function public(array $options): array
    {
        // Secrets never reach events (and so never notifications or logs).
        unset($options['password'], $options['identity'], $options['passphrase'], $options['repo_settings'], $options['alerts'], $options['return_alerts']);
        return $options;
    }

    private static function operator(): string
    {
        $user = getenv('USER') ?: (getenv('LOGNAME') ?: 'unknown');
        return $user . '@' . (gethostname() ?: 'localhost') . ' (artisan)';
    }

    /**
     * @param array<string,mixed> $options
     * @return array<string,mixed>
     */
    private function run(string $method, array $options, string $succeeded, string $failed): array
    {
        try {
            $report = $this->raise($this->client()->{$method}($options));
        } catch (Exception $e) {
            $this->raise([], $e);
            $this->events?->dispatch(new $failed($e, self::public($options)));
            throw $e;
        }
        $this->events?->dispatch(new $succeeded($report));
        return $report;
    }
}
