<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class ListCommand extends Command
{
    protected $signature = 'db:backups {--tag= : Only backups with this tag} {--json : Print the report as JSON}';
    protected $description = 'List the complete backups, newest first';

    public function handle(): int
    {
        return $this->runOperation(
            fn (Backups $b) => $b->list(array_filter(['tag' => $this->option('tag')])),
            function (array $r): void {
                if ($r['backups'] === []) {
                    $this->line("No backups in {$r['repo']}");
                    return;
                }
                $rows = array_map(fn (array $b) => [
                    $b['id'], $b['created_at'], $b['engine'], $b['database'], self::bytes($b['stored_bytes']),
                    implode(',', $b['tags']),
                    isset($b['last_verification']) ? $b['last_verification']['level'] . ' ' . ($b['last_verification']['ok'] ? 'ok' : 'FAILED') : 'never',
                ], $r['backups']);
                $this->table(['ID', 'Created', 'Engine', 'Database', 'Size', 'Tags', 'Verified'], $rows);
            }
        );
    }
}
