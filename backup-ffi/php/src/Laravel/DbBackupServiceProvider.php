<?php

declare(strict_types=1);

namespace DbBackup\Laravel;

use Illuminate\Contracts\Events\Dispatcher;
use Illuminate\Support\ServiceProvider;

/**
 * Registers dbbackup in a Laravel application: the `dbbackup` config (publishable), the
 * {@see Backups} service bound to the app's database connection and disks, and the artisan
 * commands db:backup, db:restore, db:backups, db:backup:verify, db:backup:prune, db:backup:status,
 * db:guard; and the notifications: the library's alerts ({@see Events\AlertRaised}) sent to
 * `dbbackup.notifications.notifiable` through the application's channels.
 */
class DbBackupServiceProvider extends ServiceProvider
{
    public function register(): void
    {
        $this->mergeConfigFrom(dirname(__DIR__, 2) . '/config/dbbackup.php', 'dbbackup');
        $this->app->singleton(Backups::class, function ($app): Backups {
            $config = $app['config'];
            $targets = new Targets(
                (array) $config->get('dbbackup', []),
                (array) $config->get('database', []),
                (array) $config->get('filesystems', []),
                $app->basePath(),
            );
            $notify = $app->make(Notifications\AlertNotifier::class)->wanted();
            return new Backups((array) $config->get('dbbackup', []), $targets, $app->make(Dispatcher::class), $notify);
        });
        $this->app->singleton(Notifications\AlertNotifier::class, fn ($app) => new Notifications\AlertNotifier(
            $app,
            (array) $app['config']->get('dbbackup.notifications', []),
        ));
    }

    public function boot(): void
    {
        // The library's alerts as the application's notifications (dbbackup.notifications).
        $this->app->make(Dispatcher::class)->listen(
            Events\AlertRaised::class,
            fn (Events\AlertRaised $e) => $this->app->make(Notifications\AlertNotifier::class)->handle($e),
        );
        if ($this->app->runningInConsole()) {
            $this->publishes([
                dirname(__DIR__, 2) . '/config/dbbackup.php' => $this->app->configPath('dbbackup.php'),
            ], 'dbbackup-config');
            $this->commands([
                Commands\BackupCommand::class,
                Commands\RestoreCommand::class,
                Commands\ListCommand::class,
                Commands\VerifyCommand::class,
                Commands\PruneCommand::class,
                Commands\StatusCommand::class,
                Commands\GuardCommand::class,
            ]);
        }
    }
}
