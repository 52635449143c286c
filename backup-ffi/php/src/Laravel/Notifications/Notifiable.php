<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

/**
 * The default `dbbackup.notifications.notifiable`: routes mail to
 * `dbbackup.notifications.mail.to` and Slack to `dbbackup.notifications.slack.webhook_url`.
 * Replace it with any class using Laravel's `Notifiable` trait (a team model, say).
 */
class Notifiable
{
    use \Illuminate\Notifications\Notifiable;

    /** @return list<string>|string|null */
    public function routeNotificationForMail(): array|string|null
    {
        $to = config('dbbackup.notifications.mail.to');
        if (is_string($to)) {
            $to = explode(',', $to);
        }
        $to = array_values(array_filter(array_map('trim', (array) $to)));
        return $to === [] ? null : $to;
    }

    public function routeNotificationForSlack(): ?string
    {
        $url = config('dbbackup.notifications.slack.webhook_url');
        return is_string($url) && $url !== '' ? $url : null;
    }

    public function getKey(): int
    {
        return 1;
    }
}
