<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class PruneCommand extends Command
{
    protected $signature = 'db:backup:prune {--dry-run : Show what would be removed} {--disk= : Only this disk (default: every disk)}
        {--json : Print the reports as JSON, one per disk}';
    protected $description = 'Remove backups outside the retention policy (dbbackup.retention) on every disk; the newest is always kept';

    public function handle(): int
    {
        if (!$this->isolate()) {
            return 0;
        }
        return $this->runOperation(
            fn (Backups $b) => $b->prune(['dry_run' => (bool) $this->option('dry-run')], $this->option('disk')),
            function (array $disks): void {
                foreach ($disks['disks'] ?? $disks as $disk => $r) {
                    if (!isset($r['kept'])) {
                        continue; // this disk failed; the error follows
                    }
                    $this->info(sprintf('[%s] %s%d kept, %d removed, %s freed in %s', $disk, $r['dry_run'] ? 'dry run: ' : '',
                        $r['kept'], $r['removed'], self::bytes($r['freed_bytes']), $r['repo']));
                }
            }
        );
    }
}
