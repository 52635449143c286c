<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Exception;
use DbBackup\Laravel\Backups;
use Symfony\Component\Console\Helper\ProgressBar;

/**
 * Shared manners of the db:* commands: `--json` prints the report as `dbbackup --json` does;
 * errors exit with the CLI's codes; a progress bar on a terminal (the library's progress
 * callback); and isolation: a second overlapping run of the same command (two scheduler runs,
 * say) exits cleanly saying another is running.
 */
abstract class Command extends \Illuminate\Console\Command
{
    /** @var resource|null the isolation lock held while the command runs */
    private $lock = null;

    /**
     * Takes the command's isolation lock (a flock on a file in storage/framework, released when
     * the process ends however it ends). Returns false when another run holds it.
     */
    protected function isolate(string $key = ''): bool
    {
        $dir = $this->laravel->storagePath() . '/framework';
        if (!is_dir($dir)) {
            @mkdir($dir, 0775, true);
        }
        $name = preg_replace('/[^A-Za-z0-9_.-]+/', '-', $this->getName() . ($key === '' ? '' : "-{$key}"));
        $path = "{$dir}/dbbackup-{$name}.lock";
        $lock = @fopen($path, 'c');
        if ($lock === false) {
            return true; // no place for a lock file: run unisolated rather than not at all
        }
        if (!flock($lock, LOCK_EX | LOCK_NB)) {
            fclose($lock);
            $this->warn("Another {$this->getName()} is running (lock {$path}); not starting a second one.");
            return false;
        }
        $this->lock = $lock;
        return true;
    }

    /** @param callable(Backups): array<string,mixed> $op @param callable(array<string,mixed>): void $human */
    protected function runOperation(callable $op, callable $human): int
    {
        $backups = $this->laravel->make(Backups::class);
        $bar = $this->progressBar($backups);
        try {
            $report = $op($backups);
        } catch (Exception $e) {
            $bar?->clear();
            if ($this->option('json')) {
                $this->line(json_encode($e->report ?? ['ok' => false, 'error' => [
                    'kind' => $e->kind, 'code' => $e->getCode(), 'message' => $e->getMessage(), 'available' => $e->available,
                ]], JSON_UNESCAPED_SLASHES));
            } elseif ($e->report !== null) {
                $human($e->report);
            }
            $this->error($e->getMessage());
            if ($e->available !== []) {
                $this->line('Available backups: ' . implode(', ', $e->available));
            }
            return $e->getCode();
        } finally {
            if ($bar !== null) {
                $backups->client()->onProgress(null);
            }
        }
        if ($bar !== null) {
            $bar->finish();
            $this->newLine();
        }
        if ($this->option('json')) {
            $this->line(json_encode($report, JSON_UNESCAPED_SLASHES));
        } else {
            $human($report);
        }
        return 0;
    }

    /** A progress bar fed by the library's progress callback, on a terminal only (not with --json). */
    private function progressBar(Backups $backups): ?ProgressBar
    {
        if ($this->option('json') || !$this->output->isDecorated() || $this->output->isQuiet()) {
            return null;
        }
        $bar = $this->output->createProgressBar();
        $bar->setFormat(' %message% [%bar%] %percent:3s%% %elapsed:6s%');
        $bar->setMessage('starting');
        $backups->client()->onProgress(static function (array $p) use ($bar): void {
            $total = (int) ($p['phase_total_bytes'] ?? 0);
            $done = (int) ($p['phase_bytes'] ?? 0);
            $bar->setMessage(sprintf('%-8s %s', (string) ($p['phase'] ?? ''), self::bytes((int) ($p['bytes'] ?? 0))));
            if ($total > 0) {
                $bar->setMaxSteps($total);
                $bar->setProgress(min($done, $total));
            } else {
                $bar->display();
            }
        }, 200);
        return $bar;
    }

    protected static function bytes(int $n): string
    {
        $units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
        $v = (float) $n;
        $u = 0;
        while ($v >= 1024 && $u < count($units) - 1) {
            $v /= 1024;
            $u++;
        }
        return $u === 0 ? "{$n} B" : sprintf('%.1f %s', $v, $units[$u]);
    }
}
