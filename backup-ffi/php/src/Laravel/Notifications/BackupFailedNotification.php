<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/** A backup (`db:backup`, create) started failing, or still fails (reminder). */
final class BackupFailedNotification extends AlertNotification
{
    protected function title(): string
    {
        return 'Database backup failed';
    }
}
