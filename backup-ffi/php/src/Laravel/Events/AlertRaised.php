<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Events;

/**
 * An alert the library decided to send, handed back to the application (the `return_alerts`
 * option) when `dbbackup.notifications` routes somewhere: the same alert, at the same moment,
 * as the CLI's Slack, webhook or e-mail alert (one when a check starts failing, a reminder while
 * it stays failing, one when it recovers; a guard rollback and a failed restore every time).
 * The package's notifier turns it into a Laravel notification; listen to it to do more.
 */
final class AlertRaised
{
    /**
     * @param array<string,mixed> $alert the webhook's JSON (`command`, `outcome`, `message`,
     *        `alerts` with each check's `expected`/`found`/`failing_since`, `details` of a guard
     *        rollback, `repos`, `database`, `host`, `at`) plus `subject`, `body` (the e-mail's)
     *        and `slack_text`; never a secret
     */
    public function __construct(public readonly array $alert)
    {
    }
}
