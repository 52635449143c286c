<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class BackupCommand extends Command
{
    protected $signature = 'db:backup {--connection= : Database connection (default: dbbackup.connection, else the default)}
        {--tag=* : Tag to record (repeatable)} {--json : Print the report as JSON}';
    protected $description = 'Back up the database to the configured disks';

    public function handle(): int
    {
        return $this->runOperation(
            fn (Backups $b) => $b->create(array_filter(['tag' => $this->option('tag') ?: null]), $this->option('connection')),
            function (array $r): void {
                $this->info(sprintf('Backed up %s %s (%d tables, %d rows): %s -> %s in %d ms', $r['engine'], $r['database'],
                    $r['tables'], $r['rows'], self::bytes($r['raw_bytes']), self::bytes($r['stored_bytes']), $r['duration_ms']));
                $this->line($r['id']);
            }
        );
    }
}
