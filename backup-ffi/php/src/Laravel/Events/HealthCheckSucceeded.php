<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Events;

/** Dispatched after a successful operation; $report is what `dbbackup --json` prints. */
final class HealthCheckSucceeded
{
    /** @param array<string,mixed> $report */
    public function __construct(public readonly array $report)
    {
    }
}
