<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

use Illuminate\Bus\Queueable;
use Illuminate\Notifications\Messages\MailMessage;
use Illuminate\Notifications\Notification;

/**
 * A dbbackup alert as a Laravel notification, sent through the application's own channels
 * (`mail` = the app's mailer, `slack` = the notifiable's Slack webhook, anything else = that
 * channel with {@see toArray()}). The text is the library's own, the same the CLI's e-mail and
 * Slack alerts carry: which check, what was expected and found, since when; a guard's command,
 * exit status, backup, recovery time and whether the rollback succeeded. Never a secret: the
 * library redacts URLs and keys before an alert exists.
 *
 * Which subclass an alert becomes: {@see forAlert()}. Channels per subclass:
 * `dbbackup.notifications.notifications`.
 */
abstract class AlertNotification extends Notification
{
    use Queueable;

    /** @param array<string,mixed> $alert the {@see \DbBackup\Laravel\Events\AlertRaised} alert */
    final public function __construct(public readonly array $alert)
    {
    }

    /** The notification class for an alert. @param array<string,mixed> $alert */
    public static function forAlert(array $alert): self
    {
        $command = (string) ($alert['command'] ?? '');
        $class = match (true) {
            ($alert['outcome'] ?? '') === 'recovered' => RecoveredNotification::class,
            ($alert['outcome'] ?? '') === 'success' => SucceededNotification::class,
            $command === 'guard' && array_key_exists('rollback_succeeded', (array) ($alert['details'] ?? [])) => GuardRolledBackNotification::class,
            $command === 'status' => UnhealthyNotification::class,
            $command === 'create' => BackupFailedNotification::class,
            $command === 'restore' => RestoreFailedNotification::class,
            default => OperationFailedNotification::class,
        };
        return new $class($alert);
    }

    /** @return list<string> the channels configured for this class, `slack` as the package's webhook channel */
    public function via(mixed $notifiable): array
    {
        $channels = (array) (config('dbbackup.notifications.notifications')[static::class] ?? []);
        return array_values(array_map(static fn ($c) => $c === 'slack' ? SlackWebhookChannel::class : $c, $channels));
    }

    public function toMail(mixed $notifiable): MailMessage
    {
        $mail = (new MailMessage())->subject((string) $this->alert['subject']);
        $from = (array) config('dbbackup.notifications.mail.from', []);
        if (($from['address'] ?? null) !== null && $from['address'] !== '') {
            $mail->from($from['address'], $from['name'] ?? null);
        }
        if ($this->isBad()) {
            $mail->error();
        }
        $mail->greeting($this->title());
        foreach (explode("\n", (string) $this->alert['body']) as $line) {
            if (trim($line) !== '') {
                $mail->line($line);
            }
        }
        return $mail;
    }

    /** @return array<string,mixed> Slack's incoming-webhook JSON: the library's Slack line, the details as fields */
    public function toSlackPayload(mixed $notifiable): array
    {
        $fields = [];
        foreach ((array) ($this->alert['alerts'] ?? []) as $a) {
            $value = ($a['transition'] ?? '') === 'recovered'
                ? 'healthy again after ' . self::duration((int) ($a['failing_secs'] ?? 0))
                : 'expected ' . ($a['expected'] ?? '-') . ', found ' . ($a['found'] ?? '-');
            $fields[] = ['title' => strtoupper(str_replace('_', ' ', (string) ($a['transition'] ?? ''))) . ': ' . ($a['check'] ?? ''), 'value' => $value, 'short' => false];
        }
        foreach ((array) ($this->alert['details'] ?? []) as $k => $v) {
            $fields[] = ['title' => str_replace('_', ' ', (string) $k), 'value' => is_bool($v) ? ($v ? 'yes' : 'no') : (string) (is_scalar($v) ? $v : json_encode($v)), 'short' => true];
        }
        $attachment = array_filter([
            'color' => $this->isBad() ? 'danger' : 'good',
            'fields' => $fields,
            'footer' => trim('dbbackup ' . ($this->alert['host'] ?? '')),
        ]);
        $slack = (array) config('dbbackup.notifications.slack', []);
        return array_filter([
            'text' => (string) $this->alert['slack_text'],
            'attachments' => [$attachment],
            'channel' => $slack['channel'] ?? null,
            'username' => $slack['username'] ?? null,
            'icon_emoji' => $slack['icon'] ?? null,
        ], static fn ($v) => $v !== null && $v !== '');
    }

    /** @return array<string,mixed> the alert (for the database channel and custom ones) */
    public function toArray(mixed $notifiable): array
    {
        return $this->alert;
    }

    /** The mail's heading. */
    abstract protected function title(): string;

    private function isBad(): bool
    {
        return !in_array($this->alert['outcome'] ?? '', ['success', 'recovered'], true);
    }

    private static function duration(int $secs): string
    {
        return match (true) {
            $secs < 120 => "{$secs}s",
            $secs < 7200 => intdiv($secs, 60) . 'm',
            $secs < 172800 => sprintf('%.1fh', $secs / 3600),
            default => sprintf('%.1fd', $secs / 86400),
        };
    }
}
