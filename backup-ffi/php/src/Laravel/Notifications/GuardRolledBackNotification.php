<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/** A guarded command (`db:guard -- migrate`) failed and the database was rolled back; critical when the rollback itself failed. Details: command, exit status, backup id, recovery time, rollback succeeded. */
final class GuardRolledBackNotification extends AlertNotification
{
    protected function title(): string
    {
        return ($this->alert['details']['rollback_succeeded'] ?? false) ? 'Guarded command failed: database rolled back' : 'ROLLBACK FAILED: restore the database by hand';
    }
}
