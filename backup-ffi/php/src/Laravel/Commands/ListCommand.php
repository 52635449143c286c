<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class ListCommand extends Command
{
    protected $signature = 'db:backups {--tag= : Only backups with this tag} {--disk= : Only this disk (default: every disk of dbbackup.disks)}
        {--json : Print the reports as JSON, one per disk}';
    protected $description = 'List the complete backups on every disk, newest first';

    public function handle(): int
    {
        return $this->runOperation(
            fn (Backups $b) => $b->list(array_filter(['tag' => $this->option('tag')]), $this->option('disk')),
            function (array $disks): void {
                foreach ($disks as $disk => $r) {
                    if ($r['backups'] === []) {
                        $this->line("[{$disk}] no backups in {$r['repo']}");
                        continue;
                    }
                    $this->line("[{$disk}] {$r['repo']}");
                    $rows = array_map(fn (array $b) => [
                        $b['id'], $b['created_at'], $b['engine'], $b['database'], self::bytes($b['stored_bytes']),
                        implode(',', $b['tags']),
                        isset($b['last_verification']) ? $b['last_verification']['level'] . ' ' . ($b['last_verification']['ok'] ? 'ok' : 'FAILED') : 'never',
                    ], $r['backups']);
                    $this->table(['ID', 'Created', 'Engine', 'Database', 'Size', 'Tags', 'Verified'], $rows);
                }
            }
        );
    }
}
