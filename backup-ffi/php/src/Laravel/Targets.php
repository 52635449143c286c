<?php

declare(strict_types=1);

namespace DbBackup\Laravel;

use DbBackup\UsageException;

/**
 * Turns the application's own configuration into dbbackup options: a connection from
 * config/database.php into a database URL (+ password, kept out of the URL), disks from
 * config/filesystems.php into repository URLs (+ store credentials, set in this process's
 * environment where the library reads them; never on a command line).
 */
final class Targets
{
    /** @param array<string,mixed> $config the dbbackup config */
    public function __construct(
        private array $config,
        /** @var array<string,mixed> */ private array $database,
        /** @var array<string,mixed> */ private array $filesystems,
        private string $basePath,
    ) {
    }

    /** @return array{url: string, password: ?string, database: string} */
    public function connection(?string $name = null): array
    {
        $name ??= $this->config['connection'] ?? null;
        $name ??= $this->database['default'] ?? null;
        $c = $this->database['connections'][$name] ?? null;
        if (!is_array($c)) {
            throw new UsageException('usage', "database connection [{$name}] is not configured in config/database.php", 2);
        }
        $driver = (string) ($c['driver'] ?? '');
        switch ($driver) {
            case 'sqlite':
                $path = (string) ($c['database'] ?? '');
                if ($path === '' || $path === ':memory:') {
                    throw new UsageException('usage', "connection [{$name}]: an in-memory SQLite database cannot be backed up", 2);
                }
                if ($path[0] !== '/') {
                    $path = $this->basePath . '/' . $path;
                }
                return ['url' => 'sqlite://' . $path, 'password' => null, 'database' => basename($path)];
            case 'mysql':
            case 'mariadb':
            case 'pgsql':
                $scheme = $driver === 'pgsql' ? 'postgres' : 'mysql';
                $user = rawurlencode((string) ($c['username'] ?? ''));
                $db = (string) ($c['database'] ?? '');
                $query = [];
                if (!empty($c['unix_socket'])) {
                    $query['socket'] = $c['unix_socket'];
                }
                if ($driver === 'pgsql' && !empty($c['sslmode'])) {
                    $query['sslmode'] = $c['sslmode'];
                }
                $host = (string) ($c['host'] ?? '127.0.0.1');
                if (str_contains($host, ':') && $host[0] !== '[') {
                    $host = "[{$host}]";
                }
                $port = (int) ($c['port'] ?? ($driver === 'pgsql' ? 5432 : 3306));
                $url = sprintf('%s://%s@%s:%d/%s', $scheme, $user, $host, $port, rawurlencode($db));
                if ($query !== []) {
                    $url .= '?' . http_build_query($query);
                }
                $password = (string) ($c['password'] ?? '');
                return ['url' => $url, 'password' => $password === '' ? null : $password, 'database' => $db];
            default:
                throw new UsageException('usage', "connection [{$name}]: driver {$driver} is not supported (sqlite, mysql, mariadb, pgsql)", 2);
        }
    }

    /**
     * Repository URLs for the configured disks, setting each s3 disk's credentials in this
     * process's environment (AWS_* names, as the library reads them).
     *
     * @param list<string>|null $disks
     * @return list<string>
     */
    public function repos(?array $disks = null): array
    {
        $disks ??= (array) ($this->config['disks'] ?? ['local']);
        $prefix = trim((string) ($this->config['prefix'] ?? 'db-backups'), '/');
        $repos = [];
        $s3Seen = null;
        foreach ($disks as $diskName) {
            $d = $this->filesystems['disks'][$diskName] ?? null;
            if (!is_array($d)) {
                throw new UsageException('usage', "filesystem disk [{$diskName}] is not configured in config/filesystems.php", 2);
            }
            switch ($d['driver'] ?? '') {
                case 'local':
                    $root = rtrim((string) ($d['root'] ?? ''), '/');
                    $repos[] = $prefix === '' ? $root : "{$root}/{$prefix}";
                    break;
                case 's3':
                    if ($s3Seen !== null && $s3Seen !== $this->s3Identity($d)) {
                        throw new UsageException('usage', "disks [{$diskName}] and another s3 disk use different credentials or endpoints; one process holds one set", 2);
                    }
                    $s3Seen = $this->s3Identity($d);
                    $this->exportS3($d);
                    $root = trim((string) ($d['root'] ?? ''), '/');
                    $path = trim($root . '/' . $prefix, '/');
                    $repos[] = 's3://' . $d['bucket'] . ($path === '' ? '' : '/' . $path);
                    break;
                default:
                    throw new UsageException('usage', "disk [{$diskName}]: driver " . ($d['driver'] ?? '?') . ' is not supported (local, s3)', 2);
            }
        }
        if ($repos === []) {
            throw new UsageException('usage', 'no disks configured for backups (dbbackup.disks)', 2);
        }
        return $repos;
    }

    /** @param array<string,mixed> $d */
    private function s3Identity(array $d): string
    {
        return implode("\0", [$d['key'] ?? '', $d['region'] ?? '', $d['endpoint'] ?? '', (int) !empty($d['use_path_style_endpoint'])]);
    }

    /** @param array<string,mixed> $d */
    private function exportS3(array $d): void
    {
        $vars = [
            'AWS_ACCESS_KEY_ID' => $d['key'] ?? null,
            'AWS_SECRET_ACCESS_KEY' => $d['secret'] ?? null,
            'AWS_DEFAULT_REGION' => $d['region'] ?? null,
            'AWS_ENDPOINT' => $d['endpoint'] ?? null,
            'AWS_USE_PATH_STYLE_ENDPOINT' => !empty($d['use_path_style_endpoint']) ? 'true' : 'false',
        ];
        foreach ($vars as $k => $v) {
            if ($v !== null && $v !== '') {
                putenv("{$k}={$v}");
            }
        }
        if (isset($d['endpoint']) && str_starts_with((string) $d['endpoint'], 'http://')) {
            putenv('AWS_ALLOW_HTTP=true');
        }
    }
}
