<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Events;

/** Dispatched when a backup starts (before anything is read). */
final class BackupStarting
{
    /**
     * @param list<string> $disks the disks it goes to
     * @param array<string,mixed> $options the options used (password and store settings removed)
     */
    public function __construct(public readonly string $database, public readonly array $disks, public readonly array $options = [])
    {
    }
}
