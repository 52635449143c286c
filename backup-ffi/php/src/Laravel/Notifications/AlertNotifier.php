<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

use DbBackup\Laravel\Events\AlertRaised;
use Illuminate\Contracts\Container\Container;
use Psr\Log\LoggerInterface;

/**
 * Sends each {@see AlertRaised} as the package's notification to the configured notifiable
 * (`dbbackup.notifications`), like spatie/laravel-backup's notifications: a notifiable class
 * routing mail to the configured addresses and Slack to a webhook, the notification classes
 * mapped to their channels. A notification that cannot be sent is logged as a warning; it never
 * changes the outcome of the backup, restore or check that raised it.
 */
final class AlertNotifier
{
    /** @param array<string,mixed> $config `dbbackup.notifications` */
    public function __construct(private Container $app, private array $config)
    {
    }

    /**
     * Whether notifications go anywhere: a notifiable class, a notification with channels, and
     * the notifiable routing mail or Slack somewhere (or a channel other than those two).
     */
    public function wanted(): bool
    {
        $channels = array_unique(array_merge(...array_values(array_map(static fn ($c) => (array) $c, (array) ($this->config['notifications'] ?? [])))));
        if ($channels === [] || empty($this->config['notifiable'])) {
            return false;
        }
        $notifiable = $this->notifiable();
        foreach ($channels as $channel) {
            if (!in_array($channel, ['mail', 'slack'], true) || !empty($notifiable->routeNotificationFor($channel))) {
                return true;
            }
        }
        return false;
    }

    public function handle(AlertRaised $event): void
    {
        $notification = AlertNotification::forAlert($event->alert);
        try {
            $this->notifiable()->notify($notification);
        } catch (\Throwable $e) {
            $log = $this->app->bound(LoggerInterface::class) ? $this->app->make(LoggerInterface::class) : null;
            $log?->warning('dbbackup: the ' . class_basename($notification) . " notification could not be sent: {$e->getMessage()}");
        }
    }

    private function notifiable(): object
    {
        return $this->app->make((string) $this->config['notifiable']);
    }
}
