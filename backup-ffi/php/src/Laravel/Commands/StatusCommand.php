<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class StatusCommand extends Command
{
    protected $signature = 'db:backup:status {--max-age= : e.g. 26h} {--disk= : Only this disk (default: every disk)} {--json : Print the report as JSON}';
    protected $description = 'Check backup health on every disk: newest age, size, last verification, copies (exit code 4 when unhealthy)';

    public function handle(): int
    {
        return $this->runOperation(
            fn (Backups $b) => $b->status(array_filter(['max_age' => $this->option('max-age')]), $this->option('disk')),
            function (array $r): void {
                foreach ($r['checks'] as $c) {
                    $this->line(($c['ok'] ? 'ok     ' : 'FAILED ') . $c['message']);
                }
                foreach ($r['undo'] ?? [] as $u) {
                    $this->line(sprintf('undo   copy %s of %s, %s until %s', $u['id'], $u['target'], $u['expired'] ? 'expired' : 'kept', $u['expires_at']));
                }
                $r['healthy'] ? $this->info('healthy') : $this->error('UNHEALTHY');
            }
        );
    }
}
