<?php

declare(strict_types=1);

// PSR-4 autoloading without composer (Packagist is not reachable in CI): DbBackup\ => src/.
spl_autoload_register(static function (string $class): void {
    $map = ['DbBackup\\Tests\\' => __DIR__ . '/', 'DbBackup\\' => dirname(__DIR__) . '/src/'];
    foreach ($map as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
