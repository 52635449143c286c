<?php

declare(strict_types=1);

namespace DbBackup\Tests;

use DbBackup\Client;
use DbBackup\Laravel\Targets;
use DbBackup\UsageException;
use PHPUnit\Framework\TestCase;

/** Laravel's database/filesystems config -> dbbackup URLs, and an s3 disk against moto. */
final class TargetsTest extends TestCase
{
    private function targets(array $disks, array $connections, array $config = []): Targets
    {
        return new Targets(
            $config + ['disks' => array_keys($disks), 'prefix' => 'db-backups'],
            ['default' => array_key_first($connections), 'connections' => $connections],
            ['disks' => $disks],
            '/srv/app'
        );
    }

    public function testConnectionsBecomeUrlsWithThePasswordKeptApart(): void
    {
        $t = $this->targets(['local' => ['driver' => 'local', 'root' => '/srv/app/storage/app']], [
            'sqlite' => ['driver' => 'sqlite', 'database' => 'database/app.sqlite'],
            'mysql' => ['driver' => 'mysql', 'host' => 'db.internal', 'port' => '3307', 'database' => 'shop', 'username' => 'app@x', 'password' => 's3cr:t'],
            'pgsql' => ['driver' => 'pgsql', 'host' => '10.0.0.5', 'database' => 'crm', 'username' => 'u', 'password' => '', 'sslmode' => 'require'],
            'mem' => ['driver' => 'sqlite', 'database' => ':memory:'],
        ]);
        $this->assertSame(['url' => 'sqlite:///srv/app/database/app.sqlite', 'password' => null, 'database' => 'app.sqlite'], $t->connection());
        $m = $t->connection('mysql');
        $this->assertSame('mysql://app%40x@db.internal:3307/shop', $m['url']);
        $this->assertSame('s3cr:t', $m['password']);
        $this->assertStringNotContainsString('s3cr', $m['url']);
        $this->assertSame('postgres://u@10.0.0.5:5432/crm?sslmode=require', $t->connection('pgsql')['url']);
        $this->expectException(UsageException::class);
        $t->connection('mem');
    }

    public function testTlsSettingsOfDatabasePhpBecomeUrlParameters(): void
    {
        $ca = defined('PDO::MYSQL_ATTR_SSL_CA') ? \PDO::MYSQL_ATTR_SSL_CA : 1009;
        $cert = defined('PDO::MYSQL_ATTR_SSL_CERT') ? \PDO::MYSQL_ATTR_SSL_CERT : 1008;
        $key = defined('PDO::MYSQL_ATTR_SSL_KEY') ? \PDO::MYSQL_ATTR_SSL_KEY : 1007;
        $verify = defined('PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT') ? \PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT : 1014;
        $my = ['driver' => 'mysql', 'host' => 'db', 'database' => 'shop', 'username' => 'u'];
        $t = $this->targets(['local' => ['driver' => 'local', 'root' => '/srv']], [
            'ca' => $my + ['options' => [$ca => '/etc/ssl/ca.pem']],
            'x509' => $my + ['options' => [$ca => '/etc/ssl/ca.pem', $cert => '/etc/ssl/c.pem', $key => '/etc/ssl/c.key']],
            'unchecked' => $my + ['options' => [$ca => '/etc/ssl/ca.pem', $verify => false]],
            'plain' => $my + ['options' => []],
            'pgsql' => ['driver' => 'pgsql', 'host' => 'pg', 'database' => 'crm', 'username' => 'u', 'sslmode' => 'verify-full',
                'sslrootcert' => '/etc/ssl/ca.pem', 'sslcert' => '/etc/ssl/c.pem', 'sslkey' => '/etc/ssl/c.key'],
        ]);
        $this->assertSame('mysql://u@db:3306/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca=%2Fetc%2Fssl%2Fca.pem', $t->connection('ca')['url']);
        $this->assertSame(
            'mysql://u@db:3306/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca=%2Fetc%2Fssl%2Fca.pem&ssl-cert=%2Fetc%2Fssl%2Fc.pem&ssl-key=%2Fetc%2Fssl%2Fc.key',
            $t->connection('x509')['url']
        );
        $this->assertSame('mysql://u@db:3306/shop?ssl-mode=REQUIRED', $t->connection('unchecked')['url']);
        $this->assertSame('mysql://u@db:3306/shop', $t->connection('plain')['url']);
        $this->assertSame(
            'postgres://u@pg:5432/crm?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fca.pem&sslcert=%2Fetc%2Fssl%2Fc.pem&sslkey=%2Fetc%2Fssl%2Fc.key',
            $t->connection('pgsql')['url']
        );
    }

    public function testDisksBecomeRepositories(): void
    {
        $t = $this->targets([
            'local' => ['driver' => 'local', 'root' => '/srv/app/storage/app'],
            'b2' => ['driver' => 's3', 'key' => 'K', 'secret' => 'S', 'region' => 'us-west-004', 'bucket' => 'bk',
                'endpoint' => 'https://s3.us-west-004.backblazeb2.com', 'use_path_style_endpoint' => true, 'root' => 'apps/x'],
        ], ['sqlite' => ['driver' => 'sqlite', 'database' => '/d.sqlite']]);
        $this->assertSame(['/srv/app/storage/app/db-backups', 's3://bk/apps/x/db-backups'], $t->repos());
        // The disk's settings travel with its repository, not through the environment.
        $this->assertSame(['s3://bk/apps/x/db-backups' => [
            'AWS_ACCESS_KEY_ID' => 'K', 'AWS_SECRET_ACCESS_KEY' => 'S', 'AWS_DEFAULT_REGION' => 'us-west-004',
            'AWS_ENDPOINT' => 'https://s3.us-west-004.backblazeb2.com', 'AWS_USE_PATH_STYLE_ENDPOINT' => 'true',
        ]], $t->repoSettings());
        $this->assertFalse(getenv('AWS_ACCESS_KEY_ID'));
        $this->assertFalse(getenv('AWS_ENDPOINT'));
        $this->expectException(UsageException::class);
        $t->repos(['nope']);
    }

    public function testS3DiskRoundTripAgainstMoto(): void
    {
        $endpoint = getenv('DBBACKUP_TEST_S3_ENDPOINT');
        $bucket = getenv('DBBACKUP_TEST_S3_BUCKET');
        if (!is_string($endpoint) || $endpoint === '' || !is_string($bucket) || $bucket === '') {
            Services::missing('DBBACKUP_TEST_S3_ENDPOINT/BUCKET are not set (no S3 emulator)');
        }
        $dir = sys_get_temp_dir() . '/dbb-php-s3-' . bin2hex(random_bytes(4));
        mkdir($dir);
        $db = new \PDO("sqlite:{$dir}/app.sqlite");
        $db->exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
        $db->exec("INSERT INTO t (v) VALUES ('a'), ('b'), ('c')");
        $t = $this->targets(
            ['s3' => ['driver' => 's3', 'key' => 'test', 'secret' => 'test', 'region' => 'us-east-1', 'bucket' => $bucket,
                'endpoint' => $endpoint, 'use_path_style_endpoint' => true]],
            ['sqlite' => ['driver' => 'sqlite', 'database' => "{$dir}/app.sqlite"]],
            ['prefix' => 'php-' . bin2hex(random_bytes(4))]
        );
        $repos = $t->repos();
        $settings = $t->repoSettings();
        $client = new Client();
        $created = $client->create(['source' => $t->connection()['url'], 'repo' => $repos, 'repo_settings' => $settings]);
        $this->assertSame(3, $created['rows']);
        $this->assertSame([$created['id']], array_column($client->list(['repo' => $repos[0], 'repo_settings' => $settings])['backups'], 'id'));
        $restored = $client->restore(['repo' => $repos[0], 'into' => "sqlite://{$dir}/copy.sqlite", 'repo_settings' => $settings]);
        $this->assertSame(3, $restored['rows']);
        $copy = new \PDO("sqlite:{$dir}/copy.sqlite");
        $this->assertSame(['a', 'b', 'c'], $copy->query('SELECT v FROM t ORDER BY id')->fetchAll(\PDO::FETCH_COLUMN));
        exec('rm -rf ' . escapeshellarg($dir));
    }

    /**
     * Two s3 disks with different keys, buckets/prefixes and endpoints in one process: each
     * repository is opened with its own disk's settings. moto accepts any key, so one disk points
     * at an endpoint where nothing listens: it must fail while the other, in the same call and
     * afterwards, works. (Before per-repository settings the package refused two s3 disks with
     * different credentials, and the environment held one set for the whole process.)
     */
    public function testTwoS3DisksWithTheirOwnSettingsInOneProcess(): void
    {
        $endpoint = getenv('DBBACKUP_TEST_S3_ENDPOINT');
        $bucket = getenv('DBBACKUP_TEST_S3_BUCKET');
        if (!is_string($endpoint) || $endpoint === '' || !is_string($bucket) || $bucket === '') {
            Services::missing('DBBACKUP_TEST_S3_ENDPOINT/BUCKET are not set (no S3 emulator)');
        }
        $dir = sys_get_temp_dir() . '/dbb-php-s3two-' . bin2hex(random_bytes(4));
        mkdir($dir);
        $db = new \PDO("sqlite:{$dir}/app.sqlite");
        $db->exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
        $db->exec("INSERT INTO t (v) VALUES ('x')");
        $prefix = 'php2-' . bin2hex(random_bytes(4));
        $t = $this->targets(
            [
                'offsite' => ['driver' => 's3', 'key' => 'key-one', 'secret' => 'secret-one', 'region' => 'us-east-1', 'bucket' => $bucket,
                    'endpoint' => $endpoint, 'use_path_style_endpoint' => true, 'root' => 'one'],
                'broken' => ['driver' => 's3', 'key' => 'key-two', 'secret' => 'secret-two', 'region' => 'eu-west-1', 'bucket' => 'other-bucket',
                    'endpoint' => 'http://127.0.0.1:9', 'use_path_style_endpoint' => true, 'root' => 'two',
                    'dbbackup' => ['DBBACKUP_STORE_MAX_RETRIES' => 0, 'DBBACKUP_STORE_RETRY_TIMEOUT' => 1]],
            ],
            ['sqlite' => ['driver' => 'sqlite', 'database' => "{$dir}/app.sqlite"]],
            ['prefix' => $prefix]
        );
        [$good, $bad] = $t->repos();
        $settings = $t->repoSettings();
        $this->assertSame('key-two', $settings[$bad]['AWS_ACCESS_KEY_ID']);
        $client = new Client();
        $created = $client->create(['source' => $t->connection()['url'], 'repo' => [$good, $bad], 'repo_settings' => $settings]);
        $failed = array_column($created['failed_repos'] ?? [], 'repo');
        $this->assertCount(1, $failed, json_encode($created));
        $this->assertStringContainsString('other-bucket', $failed[0]);
        $this->assertSame([$created['id']], array_column($client->list(['repo' => $good, 'repo_settings' => $settings])['backups'], 'id'));
        try {
            $client->list(['repo' => $bad, 'repo_settings' => $settings]);
            $this->fail('the disk with the wrong endpoint must fail');
        } catch (\DbBackup\Exception $e) {
            $this->assertNotSame(0, $e->getCode());
        }
        exec('rm -rf ' . escapeshellarg($dir));
    }
}
