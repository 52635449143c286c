<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/** Verification, prune, copy or a guard's safety backup started failing, or still fails (reminder). */
final class OperationFailedNotification extends AlertNotification
{
    protected function title(): string
    {
        return 'dbbackup ' . ($this->alert['command'] ?? 'operation') . ' failed';
    }
}
