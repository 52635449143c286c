<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/** An operation succeeded (only when `alerts.notify_on` includes success). */
final class SucceededNotification extends AlertNotification
{
    protected function title(): string
    {
        return 'dbbackup ' . ($this->alert['command'] ?? 'operation') . ' succeeded';
    }
}
