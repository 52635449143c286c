<?php

declare(strict_types=1);

namespace DbBackup;

/** Cancelled or past its timeout_ms (exit code 130). */
final class CancelledException extends Exception
{
}
