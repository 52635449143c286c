<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/** A check that was failing and alerted is healthy again (how long it was failing). */
final class RecoveredNotification extends AlertNotification
{
    protected function title(): string
    {
        return 'Database backups recovered';
    }
}
