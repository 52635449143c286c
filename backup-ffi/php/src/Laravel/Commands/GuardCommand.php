<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Exception;
use DbBackup\GuardedCommandException;
use DbBackup\Laravel\Backups;
use Illuminate\Support\Facades\DB;
use Symfony\Component\Console\Input\ArgvInput;

/**
 * `php artisan db:guard -- migrate --force`: a safety backup, then the artisan command in this
 * process; when it fails (non-zero status or an exception) the database is restored from the
 * safety backup with the engine's safe restore (shadow and swap), and the command's status is
 * this command's status.
 */
final class GuardCommand extends Command
{
    protected $signature = 'db:guard {cmd* : The artisan command and its arguments, written after a double dash (e.g. migrate, force)}
        {--max-rto= : Refuse to start unless the last drill of this database recovered within this (e.g. 2m)}
        {--connection= : Database connection the command changes (default: dbbackup.connection, else the default)}
        {--json : Print the guard report as JSON}';
    protected $description = 'Run an artisan command (a migration) with a safety backup, restored if the command fails';

    public function handle(): int
    {
        if (!$this->isolate((string) $this->option('connection'))) {
            return 0;
        }
        $tokens = array_values(array_map('strval', (array) $this->argument('cmd')));
        $app = $this->getApplication();
        if ($app === null || !$app->has($tokens[0])) {
            $this->error("db:guard: no artisan command [{$tokens[0]}]; nothing was done");
            return 2;
        }
        // The guarded command as alerts name it (`php artisan migrate --force`).
        $extra = array_filter(['max_rto' => $this->option('max-rto'), 'command_line' => 'php artisan ' . implode(' ', $tokens)]);
        $connection = $this->option('connection');
        $command = function () use ($app, $tokens): int {
            try {
                $status = $app->find($tokens[0])->run(new ArgvInput(array_merge(['artisan'], $tokens)), $this->output);
            } finally {
                // Idle connections hold no locks, but close them anyway: the rollback swaps the
                // database underneath them.
                foreach (array_keys(DB::getConnections()) as $name) {
                    DB::disconnect($name);
                }
            }
            return $status;
        };
        $backups = $this->laravel->make(Backups::class);
        try {
            $report = $backups->guard($command, $extra, $connection);
        } catch (GuardedCommandException $e) {
            $report = $e->report ?? [];
            $this->error('The command threw ' . get_class($e->previousThrowable) . ': ' . $e->previousThrowable->getMessage());
            $this->render($report);
            return 1;
        } catch (Exception $e) {
            $this->error('db:guard: ' . $e->getMessage());
            return $e->getCode();
        }
        $this->render($report);
        return (int) ($report['command_status'] ?? 1);
    }

    /** @param array<string,mixed> $r */
    private function render(array $r): void
    {
        if ($this->option('json')) {
            $this->line(json_encode($r, JSON_UNESCAPED_SLASHES));
            return;
        }
        if ($r['rolled_back'] ?? false) {
            $this->warn(sprintf('db:guard: the command failed (status %d) after %d ms; the database was restored from the safety backup %s. Recovery time: %d ms',
                $r['command_status'], $r['command_ms'], $r['backup_id'], $r['recovery_ms'] ?? 0));
        } else {
            $this->info(sprintf('db:guard: the command succeeded in %d ms; safety backup %s kept', $r['command_ms'] ?? 0, $r['backup_id'] ?? '?'));
        }
    }
}
