<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class PruneCommand extends Command
{
    protected $signature = 'db:backup:prune {--dry-run : Show what would be removed} {--json : Print the report as JSON}';
    protected $description = 'Remove backups outside the retention policy (dbbackup.retention); the newest is always kept';

    public function handle(): int
    {
        return $this->runOperation(
            fn (Backups $b) => $b->prune(['dry_run' => (bool) $this->option('dry-run')]),
            fn (array $r) => $this->info(sprintf('%s%d kept, %d removed, %s freed in %s', $r['dry_run'] ? 'dry run: ' : '',
                $r['kept'], $r['removed'], self::bytes($r['freed_bytes']), $r['repo']))
        );
    }
}
