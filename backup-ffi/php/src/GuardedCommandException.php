<?php

declare(strict_types=1);

namespace DbBackup;

/**
 * The guarded command threw; the guard then rolled the database back (see `report`:
 * `rolled_back`, `recovery_ms`). The command's exception is the previous one.
 */
class GuardedCommandException extends Exception
{
    /** @param array<string,mixed> $report */
    public function __construct(array $report, \Throwable $previous)
    {
        parent::__construct('failed', 'the guarded command threw ' . get_class($previous) . ': ' . $previous->getMessage()
            . (($report['rolled_back'] ?? false) ? '; the database was restored from the safety backup ' . ($report['backup_id'] ?? '') : ''), 1, [], $report);
        $this->previousThrowable = $previous;
    }

    public \Throwable $previousThrowable;
}
