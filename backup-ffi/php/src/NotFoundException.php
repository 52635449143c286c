<?php

declare(strict_types=1);

namespace DbBackup;

/** A backup, repository or database does not exist (exit code 5); see $available. */
final class NotFoundException extends Exception
{
}
