<?php

declare(strict_types=1);

namespace DbBackup\Laravel;

use DbBackup\UsageException;

/**
 * Turns the application's own configuration into dbbackup options: a connection from
 * config/database.php into a database URL (+ password, kept out of the URL), disks from
 * config/filesystems.php into repository URLs, each with its own store settings (credentials,
 * endpoint), passed to the library in the call's options: never through the process environment,
 * never on a command line.
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
                $query += $driver === 'pgsql' ? self::pgsqlTls($c) : self::mysqlTls($c);
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
     * libpq's TLS settings of a pgsql connection, as Laravel's PostgresConnector passes them into
     * the DSN (file paths only).
     *
     * @param array<string,mixed> $c
     * @return array<string,string>
     */
    private static function pgsqlTls(array $c): array
    {
        $out = [];
        foreach (['sslmode', 'sslrootcert', 'sslcert', 'sslkey'] as $k) {
            if (!empty($c[$k])) {
                $out[$k] = (string) $c[$k];
            }
        }
        return $out;
    }

    /**
     * The TLS settings of a mysql/mariadb connection from its PDO `options`
     * (PDO::MYSQL_ATTR_SSL_CA/_CERT/_KEY/_VERIFY_SERVER_CERT) as the MySQL client's ssl-*
     * parameters. As mysqlnd: a CA means the server's certificate and name are checked, unless
     * SSL_VERIFY_SERVER_CERT is false (then encrypted, unchecked); a client certificate alone
     * means encrypted.
     *
     * @param array<string,mixed> $c
     * @return array<string,string>
     */
    private static function mysqlTls(array $c): array
    {
        $o = (array) ($c['options'] ?? []);
        $opt = static function (string $name, int $mysqlnd) use ($o): mixed {
            // The constants exist only with pdo_mysql loaded (so does a config that uses them);
            // the numbers are mysqlnd's, for reading a config without the extension.
            $key = defined("PDO::MYSQL_ATTR_{$name}") ? constant("PDO::MYSQL_ATTR_{$name}") : $mysqlnd;
            return $o[$key] ?? null;
        };
        $ca = (string) ($opt('SSL_CA', 1009) ?? '');
        $cert = (string) ($opt('SSL_CERT', 1008) ?? '');
        $key = (string) ($opt('SSL_KEY', 1007) ?? '');
        $verify = $opt('SSL_VERIFY_SERVER_CERT', 1014);
        $out = [];
        if ($ca !== '' && $verify !== false) {
            $out['ssl-mode'] = 'VERIFY_IDENTITY';
            $out['ssl-ca'] = $ca;
        } elseif ($ca !== '' || $cert !== '' || $key !== '') {
            $out['ssl-mode'] = 'REQUIRED';
        }
        if ($cert !== '') {
            $out['ssl-cert'] = $cert;
        }
        if ($key !== '') {
            $out['ssl-key'] = $key;
        }
        return $out;
    }

    /**
     * The configured disks as repositories: disk name => URL and the store settings that
     * repository is opened with (each disk its own endpoint, keys, bucket; handed to the library
     * in the call's options, never through the process environment).
     *
     * @param list<string>|null $disks default: dbbackup.disks
     * @return array<string, array{url: string, settings: array<string,string>}>
     */
    public function disks(?array $disks = null): array
    {
        $disks ??= $this->diskNames();
        $prefix = trim((string) ($this->config['prefix'] ?? 'db-backups'), '/');
        $out = [];
        foreach ($disks as $diskName) {
            $d = $this->filesystems['disks'][$diskName] ?? null;
            if (!is_array($d)) {
                throw new UsageException('usage', "filesystem disk [{$diskName}] is not configured in config/filesystems.php", 2);
            }
            switch ($d['driver'] ?? '') {
                case 'local':
                    $root = rtrim((string) ($d['root'] ?? ''), '/');
                    $out[$diskName] = ['url' => $prefix === '' ? $root : "{$root}/{$prefix}", 'settings' => []];
                    break;
                case 's3':
                    if (empty($d['bucket'])) {
                        throw new UsageException('usage', "disk [{$diskName}]: no bucket configured", 2);
                    }
                    $root = trim((string) ($d['root'] ?? ''), '/');
                    $path = trim($root . '/' . $prefix, '/');
                    $out[$diskName] = [
                        'url' => 's3://' . $d['bucket'] . ($path === '' ? '' : '/' . $path),
                        'settings' => self::s3Settings($d),
                    ];
                    break;
                default:
                    throw new UsageException('usage', "disk [{$diskName}]: driver " . ($d['driver'] ?? '?') . ' is not supported (local, s3)', 2);
            }
        }
        if ($out === []) {
            throw new UsageException('usage', 'no disks configured for backups (dbbackup.disks)', 2);
        }
        return $out;
    }

    /** @return list<string> the disk names of dbbackup.disks, in order */
    public function diskNames(): array
    {
        return array_values(array_map('strval', (array) ($this->config['disks'] ?? ['local'])));
    }

    /**
     * Repository URLs for the configured disks.
     *
     * @param list<string>|null $disks
     * @return list<string>
     */
    public function repos(?array $disks = null): array
    {
        return array_values(array_map(static fn (array $r) => $r['url'], $this->disks($disks)));
    }

    /**
     * The `repo_settings` option for these disks: URL => settings, only for disks that have any.
     *
     * @param list<string>|null $disks
     * @return array<string, array<string,string>>
     */
    public function repoSettings(?array $disks = null): array
    {
        $settings = [];
        foreach ($this->disks($disks) as $r) {
            if ($r['settings'] !== []) {
                $settings[$r['url']] = $r['settings'];
            }
        }
        return $settings;
    }

    /**
     * An s3 disk's settings under the names the library reads (Laravel's disk keys).
     *
     * @param array<string,mixed> $d
     * @return array<string,string>
     */
    private static function s3Settings(array $d): array
    {
        $settings = array_filter([
            'AWS_ACCESS_KEY_ID' => (string) ($d['key'] ?? ''),
            'AWS_SECRET_ACCESS_KEY' => (string) ($d['secret'] ?? ''),
            'AWS_SESSION_TOKEN' => (string) ($d['token'] ?? ''),
            'AWS_DEFAULT_REGION' => (string) ($d['region'] ?? ''),
            'AWS_ENDPOINT' => (string) ($d['endpoint'] ?? ''),
        ], static fn (string $v) => $v !== '');
        $settings['AWS_USE_PATH_STYLE_ENDPOINT'] = !empty($d['use_path_style_endpoint']) ? 'true' : 'false';
        // dbbackup-specific store settings of this disk (retries, timeouts, conditional put).
        foreach ((array) ($d['dbbackup'] ?? []) as $k => $v) {
            $settings[strtoupper((string) $k)] = is_bool($v) ? ($v ? 'true' : 'false') : (string) $v;
        }
        return $settings;
    }
}
