<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class BackupCommand extends Command
{
    protected $signature = 'db:backup {--connection= : Database connection (default: dbbackup.connection, else the default)}
        {--tag=* : Tag to record (repeatable)}
        {--compress : Compress the backup (the default already does: dbbackup.compression, zstd:3)}
        {--compression= : Codec: zstd[:LEVEL], gzip[:LEVEL] or none (default: dbbackup.compression)}
        {--json : Print the report as JSON}';
    protected $description = 'Back up the database to every configured disk';

    public function handle(): int
    {
        if (!$this->isolate((string) $this->option('connection'))) {
            return 0;
        }
        $compression = $this->option('compression');
        if ($this->option('compress') && ($compression === 'none' || ($compression === null && ($this->laravel['config']['dbbackup.compression'] ?? null) === 'none'))) {
            $compression = 'zstd:3';
        }
        $extra = array_filter(['tag' => $this->option('tag') ?: null, 'compression' => $compression]);
        return $this->runOperation(
            fn (Backups $b) => $b->create($extra, $this->option('connection')),
            function (array $r): void {
                $this->info(sprintf('Backed up %s %s (%d tables, %d rows): %s -> %s in %d ms', $r['engine'], $r['database'],
                    $r['tables'], $r['rows'], self::bytes($r['raw_bytes']), self::bytes($r['stored_bytes']), $r['duration_ms']));
                foreach ($r['failed_repos'] ?? [] as $f) {
                    $this->warn("not stored in {$f['repo']}: {$f['error']}");
                }
                $this->line($r['id']);
            }
        );
    }
}
