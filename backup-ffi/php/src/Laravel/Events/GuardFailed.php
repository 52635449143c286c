<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Events;

use DbBackup\Exception;

/**
 * Dispatched when the guard itself failed (the safety backup, or the ROLLBACK: then the database may be in the command's state); $exception->kind / getCode() say why, and
 * $exception->report holds the report of a failed check (verify, status) when there is one.
 */
final class GuardFailed
{
    /** @param array<string,mixed> $options the options used (password removed) */
    public function __construct(public readonly Exception $exception, public readonly array $options = [])
    {
    }
}
