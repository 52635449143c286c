<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/** `db:backup:status` found a check failing (which check, expected, found), or it still fails (reminder). */
final class UnhealthyNotification extends AlertNotification
{
    protected function title(): string
    {
        return 'Database backups unhealthy';
    }
}
