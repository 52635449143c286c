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

    public function testDisksBecomeRepositories(): void
    {
        $t = $this->targets([
            'local' => ['driver' => 'local', 'root' => '/srv/app/storage/app'],
            'b2' => ['driver' => 's3', 'key' => 'K', 'secret' => 'S', 'region' => 'us-west-004', 'bucket' => 'bk',
                'endpoint' => 'https://s3.us-west-004.backblazeb2.com', 'use_path_style_endpoint' => true, 'root' => 'apps/x'],
        ], ['sqlite' => ['driver' => 'sqlite', 'database' => '/d.sqlite']]);
        $this->assertSame(['/srv/app/storage/app/db-backups', 's3://bk/apps/x/db-backups'], $t->repos());
        $this->assertSame('K', getenv('AWS_ACCESS_KEY_ID'));
        $this->assertSame('https://s3.us-west-004.backblazeb2.com', getenv('AWS_ENDPOINT'));
        $this->assertSame('true', getenv('AWS_USE_PATH_STYLE_ENDPOINT'));
        $this->expectException(UsageException::class);
        $t->repos(['nope']);
    }

    public function testS3DiskRoundTripAgainstMoto(): void
    {
        $endpoint = getenv('DBBACKUP_TEST_S3_ENDPOINT');
        $bucket = getenv('DBBACKUP_TEST_S3_BUCKET');
        if (!is_string($endpoint) || $endpoint === '' || !is_string($bucket) || $bucket === '') {
            if (getenv('CI') === 'true') {
                $this->fail('DBBACKUP_TEST_S3_ENDPOINT/BUCKET not set under CI=true');
            }
            $this->markTestSkipped('no S3 emulator');
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
        $client = new Client();
        $created = $client->create(['source' => $t->connection()['url'], 'repo' => $repos]);
        $this->assertSame(3, $created['rows']);
        $this->assertSame([$created['id']], array_column($client->list(['repo' => $repos[0]])['backups'], 'id'));
        $restored = $client->restore(['repo' => $repos[0], 'into' => "sqlite://{$dir}/copy.sqlite"]);
        $this->assertSame(3, $restored['rows']);
        $copy = new \PDO("sqlite:{$dir}/copy.sqlite");
        $this->assertSame(['a', 'b', 'c'], $copy->query('SELECT v FROM t ORDER BY id')->fetchAll(\PDO::FETCH_COLUMN));
        exec('rm -rf ' . escapeshellarg($dir));
    }
}
