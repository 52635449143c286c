<?php

declare(strict_types=1);

namespace DbBackup\Tests;

use PHPUnit\Framework\Assert;
use PHPUnit\Framework\TestCase;

/** What a test does when a service it needs (MariaDB, the S3 emulator) is not configured. */
final class Services
{
    /** Whether this is a CI run: CI set to anything but empty, 0, false or no (CI=true, CI=1). */
    public static function underCi(): bool
    {
        $ci = strtolower(trim((string) getenv('CI')));
        return !in_array($ci, ['', '0', 'false', 'no'], true);
    }

    /** Fails under CI (a skipped service test would pass silently there), skips otherwise. */
    public static function missing(string $what): never
    {
        if (self::underCi()) {
            Assert::fail("{$what} under CI=" . getenv('CI') . ': a CI run must not skip the tests that need it');
        }
        TestCase::markTestSkipped($what);
    }
}
