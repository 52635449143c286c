<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Events;

/** Dispatched when the guarded command failed and the database was restored from the safety backup; $report has `command_status`, `recovery_ms` and the restore report. */
final class GuardRolledBack
{
    /** @param array<string,mixed> $report */
    public function __construct(public readonly array $report)
    {
    }
}
