<?php

declare(strict_types=1);

namespace DbBackup;

/** Bad options or configuration, or a production restore without force (exit code 2). */
final class UsageException extends Exception
{
}
