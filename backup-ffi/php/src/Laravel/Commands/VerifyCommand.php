<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class VerifyCommand extends Command
{
    protected $signature = 'db:backup:verify {backup? : Backup id, latest or tag:NAME (default: latest)}
        {--level= : quick, full or drill (default: dbbackup.verify_level)}
        {--scratch= : For a drill of a MySQL/PostgreSQL backup: the connection (config/database.php) of the server to restore a throwaway copy on (default: dbbackup.drill.scratch)}
        {--disk= : Only this disk (default: every disk)}
        {--json : Print the reports as JSON, one per disk}';
    protected $description = 'Verify a backup on every disk (exit code 3 when damaged); --level=drill restores it into a throwaway database and records the recovery time';

    public function handle(): int
    {
        if (!$this->isolate()) {
            return 0;
        }
        $options = array_filter(['backup' => $this->argument('backup'), 'level' => $this->option('level'),
            'scratch_connection' => $this->option('scratch')]);
        return $this->runOperation(
            fn (Backups $b) => $b->verify($options, $this->option('disk')),
            function (array $disks): void {
                foreach ($disks['disks'] ?? $disks as $disk => $r) {
                    if (!isset($r['findings'])) {
                        continue; // this disk failed before checking; the error follows
                    }
                    foreach ($r['findings'] as $f) {
                        $this->error("[{$disk}] PROBLEM " . ($f['object'] ?? $f['table'] ?? 'backup') . ': ' . $f['problem']);
                    }
                    $this->line(sprintf('[%s] %s %s: %s (%d objects, %d ms%s)', $disk, $r['level'], $r['id'], $r['ok'] ? 'ok' : 'DAMAGED',
                        $r['objects'], $r['duration_ms'], isset($r['recovery_ms']) ? ", recovery time {$r['recovery_ms']} ms" : ''));
                }
            }
        );
    }
}
