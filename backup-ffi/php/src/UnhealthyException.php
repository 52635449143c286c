<?php

declare(strict_types=1);

namespace DbBackup;

/** Health checks failed (status, exit code 4); the report is in $report. */
final class UnhealthyException extends Exception
{
}
