<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Commands;

use DbBackup\Exception;
use DbBackup\Laravel\Backups;

/** Shared rendering: `--json` prints the report as `dbbackup --json` does; errors exit with the CLI's codes. */
abstract class Command extends \Illuminate\Console\Command
{
    /** @param callable(Backups): array<string,mixed> $op @param callable(array<string,mixed>): void $human */
    protected function runOperation(callable $op, callable $human): int
    {
        try {
            $report = $op($this->laravel->make(Backups::class));
        } catch (Exception $e) {
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
        }
        if ($this->option('json')) {
            $this->line(json_encode($report, JSON_UNESCAPED_SLASHES));
        } else {
            $human($report);
        }
        return 0;
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
