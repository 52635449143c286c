<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/** A restore failed (sent every time; the target is unchanged or exactly the backup). */
final class RestoreFailedNotification extends AlertNotification
{
    protected function title(): string
    {
        return 'Database restore failed';
    }
}
