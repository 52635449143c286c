<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Laravel\Backups;

final class RestoreCommand extends Command
{
    protected $signature = 'db:restore {backup? : Backup id, latest, tag:NAME, or a plain dump file (.sql, .sql.gz, .sql.zst) (default: latest)}
        {--connection= : Database connection to restore into}
        {--verify : Check every object (or the whole dump file: compression and statements to the end) before loading anything}
        {--disk= : Restore from this disk (default: the first disk of dbbackup.disks holding the backup)}
        {--force : Do not ask for confirmation in production}
        {--undo : Put back what the last restore replaced (its undo copy), through the same shadow and swap}
        {--keep-undo= : Keep what this restore replaces for this long (default dbbackup.undo.keep, 24h)}
        {--no-undo : Keep no undo copy (the restore cannot be undone)}
        {--json : Print the report as JSON}';
    protected $description = 'Restore a backup into the database (through a shadow, swapped in only when complete and checked)';

    public function handle(): int
    {
        if (!$this->isolate((string) $this->option('connection'))) {
            return 0;
        }
        $backups = $this->laravel->make(Backups::class);
        $production = $this->laravel->environment('production');
        $force = (bool) $this->option('force');
        if ($production && !$force) {
            $name = $backups->databaseName($this->option('connection'));
            if (!$this->input->isInteractive()) {
                $this->error("Restoring over the production database {$name} needs confirmation; pass --force in automation.");
                return 2;
            }
            $typed = $this->ask("This overwrites the PRODUCTION database {$name}. Type its name to continue");
            if ($typed !== $name) {
                $this->error('Not confirmed; nothing was changed.');
                return 2;
            }
            $force = true;
        }
        $undo = (bool) $this->option('undo');
        if ($undo && ($this->argument('backup') !== null || $this->option('disk') !== null)) {
            $this->error('--undo puts back the undo copy of the connection: no backup argument, no --disk.');
            return 2;
        }
        $options = array_filter([
            'backup' => $this->argument('backup') ?? 'latest',
            'verify_first' => (bool) $this->option('verify'),
            'production' => $production,
            'force' => $force,
            'undo' => $undo,
            'keep_undo' => $this->option('keep-undo'),
            'no_undo' => (bool) $this->option('no-undo'),
        ], static fn ($v) => $v !== null && $v !== false) + ['force' => $force, 'production' => $production];
        return $this->runOperation(
            fn (Backups $b) => $b->restore($options, $this->option('connection'), $this->option('disk')),
            function (array $r) use ($undo): void {
                foreach ($r['notes'] ?? [] as $n) {
                    $this->line("note: {$n}");
                }
                $this->info($undo
                    ? sprintf('Undone: put back %s into %s: %d tables, %d rows in %d ms', $r['id'], $r['into'], $r['tables'], $r['rows'], $r['duration_ms'])
                    : sprintf('Restored %s%s into %s: %d tables, %d rows in %d ms',
                        $r['id'], ($r['disk'] ?? 'file') === 'file' ? '' : " from disk [{$r['disk']}]", $r['into'], $r['tables'], $r['rows'], $r['duration_ms']));
                if (($r['undo'] ?? null) !== null) {
                    $this->line(sprintf('Undo: the replaced database is kept until %s (php artisan db:restore --undo)', $r['undo']['expires_at']));
                }
            }
        );
    }
}
