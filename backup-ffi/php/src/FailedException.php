<?php

declare(strict_types=1);

namespace DbBackup;

/** The operation failed: database, store, I/O or internal error (exit code 1). */
final class FailedException extends Exception
{
}
