<?php

declare(strict_types=1);

namespace DbBackup;

/**
 * A failed dbbackup operation. The subclass names the exit-code kind; getCode() is the CLI's exit
 * code (1 failed, 2 usage, 3 integrity, 4 unhealthy, 5 not found, 130 cancelled), or a status only
 * the library has (6 a NULL argument, 70 a panic caught inside the library: FailedException).
 */
class Exception extends \RuntimeException
{
    /** @var string error kind: failed, usage, integrity, unhealthy, not_found, cancelled */
    public readonly string $kind;
    /** @var list<string> backups that do exist (for a backup that was not found) */
    public readonly array $available;
    /** @var array<string,mixed>|null the operation's report when it produced one (verify, status) */
    public readonly ?array $report;
    /** @var list<array<string,mixed>> the alerts the library decided to send (option `return_alerts`) */
    public readonly array $returnedAlerts;

    /**
     * @param list<string> $available
     * @param list<array<string,mixed>> $returnedAlerts
     */
    public function __construct(string $kind, string $message, int $code, array $available = [], ?array $report = null, array $returnedAlerts = [])
    {
        parent::__construct($message, $code);
        $this->kind = $kind;
        $this->available = $available;
        $this->report = $report;
        $this->returnedAlerts = $returnedAlerts;
    }

    /**
     * Builds the exception subclass for an error object `{kind, code, message, available}`.
     *
     * @param array<string,mixed> $error
     */
    public static function fromError(array $error, ?array $report = null): self
    {
        $kind = (string) ($error['kind'] ?? 'failed');
        $code = (int) ($error['code'] ?? 1);
        $message = (string) ($error['message'] ?? 'dbbackup operation failed');
        $available = array_values(array_map('strval', (array) ($error['available'] ?? [])));
        $class = match ($kind) {
            'integrity' => IntegrityException::class,
            'not_found' => NotFoundException::class,
            'usage' => UsageException::class,
            'unhealthy' => UnhealthyException::class,
            'cancelled' => CancelledException::class,
            'null_argument' => UsageException::class,
            default => FailedException::class,
        };
        $alerts = array_values(array_filter((array) ($error['returned_alerts'] ?? $report['returned_alerts'] ?? []), 'is_array'));
        return new $class($kind, $message, $code, $available, $report, $alerts);
    }
}
