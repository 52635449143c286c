<?php

declare(strict_types=1);

namespace DbBackup\Laravel\Notifications;

use Illuminate\Notifications\Notification;

/**
 * The `slack` channel of the package's notifications: a POST of the message to the notifiable's
 * Slack incoming webhook (`routeNotificationForSlack`), with PHP's own HTTP stream, so it works
 * without laravel/slack-notification-channel or Guzzle. A failure throws (Laravel reports it as
 * NotificationFailed); the webhook URL, a secret, is never in the message.
 */
class SlackWebhookChannel
{
    public function send(mixed $notifiable, Notification $notification): void
    {
        $url = $notifiable->routeNotificationFor('slack', $notification);
        if (!is_string($url) || $url === '' || !method_exists($notification, 'toSlackPayload')) {
            return;
        }
        $body = json_encode($notification->toSlackPayload($notifiable), JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        $context = stream_context_create(['http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/json\r\n",
            'content' => $body,
            'timeout' => 10,
            'ignore_errors' => true,
        ]]);
        $response = @file_get_contents($url, false, $context);
        $status = 0;
        foreach ($http_response_header ?? [] as $h) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $h, $m)) {
                $status = (int) $m[1];
            }
        }
        if ($response === false || $status < 200 || $status >= 300) {
            $host = parse_url($url, PHP_URL_HOST) ?: '?';
            throw new \RuntimeException("Slack webhook on {$host}: " . ($status === 0 ? 'no response' : "HTTP {$status}"));
        }
    }
}
