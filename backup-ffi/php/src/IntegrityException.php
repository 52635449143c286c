<?php

declare(strict_types=1);

namespace DbBackup;

/** A backup is corrupt, incomplete or unreadable (exit code 3). */
final class IntegrityException extends Exception
{
}
