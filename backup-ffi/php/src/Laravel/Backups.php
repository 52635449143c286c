<?php

declare(strict_types=1);

namespace DbBackup\Laravel;

use DbBackup\Client;
use DbBackup\Exception;
use Illuminate\Contracts\Events\Dispatcher;

/**
 * The application's backups: the dbbackup client bound to the app's database connection and
 * disks, dispatching Laravel events for every outcome. Resolve it from the container
 * (`app(Backups::class)`) to back up from a job or a controller run in the CLI.
 */
class Backups
{
    private ?Client $client = null;

    /** @param array<string,mixed> $config */
    public function __construct(private array $config, private Targets $targets, private ?Dispatcher $events = null)
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
        $options = array_filter([
            'source' => $c['url'],
            'password' => $c['password'],
            'repo' => $this->targets->repos(),
            'compression' => $this->config['compression'] ?? null,
            'jobs' => $this->config['jobs'] ?? null,
            'tag' => $this->config['tags'] ?? [],
            'timeout_ms' => $this->config['timeout_ms'] ?? null,
            'encrypt_to' => $this->config['encrypt_to'] ?? [],
            'passphrase' => $this->config['passphrase'] ?? null,
        ], static fn ($v) => $v !== null && $v !== [] && $v !== '') + $this->engineSwitches();
        return $this->run('create', array_merge($options, $extra), Events\BackupSucceeded::class, Events\BackupFailed::class);
    }

    /** @param array<string,mixed> $extra @return array<string,mixed> */
    public function list(array $extra = []): array
    {
        return $this->client()->list(array_merge(['repo' => $this->primaryRepo()], $extra));
    }

    /** @param array<string,mixed> $extra @return array<string,mixed> */
    public function verify(array $extra = []): array
    {
        $options = ['repo' => $this->primaryRepo(), 'level' => $this->config['verify_level'] ?? 'full'] + $this->keys();
        return $this->run('verify', array_merge($options, $extra), Events\VerificationSucceeded::class, Events\VerificationFailed::class);
    }

    /** @param array<string,mixed> $extra @return array<string,mixed> */
    public function restore(array $extra = [], ?string $connection = null): array
    {
        $c = $this->targets->connection($connection);
        $options = array_filter([
            'repo' => $this->primaryRepo(),
            'into' => $c['url'],
            'password' => $c['password'],
            'timeout_ms' => $this->config['timeout_ms'] ?? null,
        ], static fn ($v) => $v !== null) + $this->engineSwitches() + $this->keys();
        return $this->run('restore', array_merge($options, $extra), Events\RestoreSucceeded::class, Events\RestoreFailed::class);
    }

    /** @param array<string,mixed> $extra @return array<string,mixed> */
    public function prune(array $extra = []): array
    {
        $options = array_filter((array) ($this->config['retention'] ?? []), static fn ($v) => $v !== null);
        $options['repo'] = $this->primaryRepo();
        return $this->run('prune', array_merge($options, $extra), Events\PruneSucceeded::class, Events\PruneFailed::class);
    }

    /** @param array<string,mixed> $extra @return array<string,mixed> */
    public function status(array $extra = []): array
    {
        $options = array_filter((array) ($this->config['status'] ?? []), static fn ($v) => $v !== null && $v !== '');
        $options['repo'] = $this->targets->repos();
        return $this->run('status', array_merge($options, $extra), Events\HealthCheckSucceeded::class, Events\HealthCheckFailed::class);
    }

    /** The database name a production restore must be confirmed with. */
    public function databaseName(?string $connection = null): string
    {
        return $this->targets->connection($connection)['database'];
    }

    /** @return array<string,bool> the engine switches that are on (`no_definer`, `keep_owners`) */
    private function engineSwitches(): array
    {
        return array_filter([
            'no_definer' => (bool) ($this->config['no_definer'] ?? false),
            'keep_owners' => (bool) ($this->config['keep_owners'] ?? false),
        ]);
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

    private function primaryRepo(): string
    {
        return $this->targets->repos()[0];
    }

    /**
     * @param array<string,mixed> $options
     * @return array<string,mixed>
     */
    private function run(string $method, array $options, string $succeeded, string $failed): array
    {
        try {
            $report = $this->client()->{$method}($options);
        } catch (Exception $e) {
            // Secrets never reach events (and so never notifications or logs).
            unset($options['password'], $options['identity'], $options['passphrase']);
            $this->events?->dispatch(new $failed($e, $options));
            throw $e;
        }
        $this->events?->dispatch(new $succeeded($report));
        return $report;
    }
}
