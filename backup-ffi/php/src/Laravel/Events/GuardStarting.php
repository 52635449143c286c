<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Events;

/** Dispatched when `db:guard` starts, before its safety backup. */
final class GuardStarting
{
    /** @param array<string,mixed> $options the options used (password and store settings removed) */
    public function __construct(public readonly string $database, public readonly array $options = [])
    {
    }
}
