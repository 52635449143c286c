<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class VerifyCommand extends Command
{
    protected $signature = 'db:backup:verify {backup? : Backup id, latest or tag:NAME (default: latest)}
        {--level= : quick, full or drill (default: dbbackup.verify_level)} {--json : Print the report as JSON}';
    protected $description = 'Verify a backup (exit code 3 when damaged)';

    public function handle(): int
    {
        $options = array_filter(['backup' => $this->argument('backup'), 'level' => $this->option('level')]);
        return $this->runOperation(
            fn (Backups $b) => $b->verify($options),
            function (array $r): void {
                foreach ($r['findings'] as $f) {
                    $this->error('PROBLEM ' . ($f['object'] ?? $f['table'] ?? 'backup') . ': ' . $f['problem']);
                }
                $this->line(sprintf('%s %s: %s (%d objects, %d ms)', $r['level'], $r['id'], $r['ok'] ? 'ok' : 'DAMAGED', $r['objects'], $r['duration_ms']));
            }
        );
    }
}
