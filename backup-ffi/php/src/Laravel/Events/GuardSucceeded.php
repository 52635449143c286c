<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Events;

/** Dispatched when the guarded command succeeded; $report is what `dbbackup guard --json` prints (the safety backup is kept). */
final class GuardSucceeded
{
    /** @param array<string,mixed> $report */
    public function __construct(public readonly array $report)
    {
    }
}
