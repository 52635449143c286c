<?php

declare(strict_types=1);

namespace DbBackup\Tests;

use DbBackup\Client;
use DbBackup\Exception;
use DbBackup\Laravel\Backups;
use DbBackup\Laravel\Targets;
use PHPUnit\Framework\TestCase;

/**
 * Two s3 disks with different credentials in one PHP process, against the moto instance that
 * checks signatures and IAM policies (scripts/services.sh start_moto_iam): user A's key may only
 * touch bucket A, user B's key only bucket B. The package's Backups (as the Laravel commands use
 * it) backs up to both disks in one call, then lists, verifies and restores each: that works only
 * if every repository is opened with its own disk's key. Key A on bucket B is refused, so the
 * emulator really tells the keys apart.
 */
final class RepoCredentialsTest extends TestCase
{
    private string $dir;

    /** @var array{endpoint: string, a: array{bucket: string, key: string, secret: string}, b: array{bucket: string, key: string, secret: string}} */
    private array $iam;

    protected function setUp(): void
    {
        $env = static fn (string $name): string => (string) getenv("DBBACKUP_TEST_S3_IAM_{$name}");
        if ($env('ENDPOINT') === '' || $env('KEY_A') === '' || $env('KEY_B') === '') {
            Services::missing('DBBACKUP_TEST_S3_IAM_* are not set (no S3 emulator checking credentials; scripts/services.sh start_moto)');
        }
        $this->iam = ['endpoint' => $env('ENDPOINT')];
        foreach (['a' => 'A', 'b' => 'B'] as $k => $n) {
            $this->iam[$k] = ['bucket' => $env("BUCKET_{$n}"), 'key' => $env("KEY_{$n}"), 'secret' => $env("SECRET_{$n}")];
        }
        $this->dir = sys_get_temp_dir() . '/dbb-php-creds-' . bin2hex(random_bytes(6));
        mkdir($this->dir);
        $db = new \PDO("sqlite:{$this->dir}/app.sqlite");
        $db->exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
        $db->exec("INSERT INTO t (v) VALUES ('a'), ('b'), ('c')");
    }

    protected function tearDown(): void
    {
        if (isset($this->dir)) {
            exec('rm -rf ' . escapeshellarg($this->dir));
        }
    }

    /** An s3 disk on the checking emulator: `$bucket` of user `$bucketOf`, opened with user `$keyOf`'s key. */
    private function disk(string $bucketOf, string $keyOf): array
    {
        return ['driver' => 's3', 'key' => $this->iam[$keyOf]['key'], 'secret' => $this->iam[$keyOf]['secret'],
            'region' => 'us-east-1', 'bucket' => $this->iam[$bucketOf]['bucket'], 'endpoint' => $this->iam['endpoint'],
            'use_path_style_endpoint' => true,
            // A refusal is not retried anyway; this keeps a mistake in the test from waiting on retries.
            'dbbackup' => ['DBBACKUP_STORE_MAX_RETRIES' => 0]];
    }

    /** @param array<string, array<string,mixed>> $disks */
    private function backups(array $disks, string $prefix): Backups
    {
        $config = ['disks' => array_keys($disks), 'prefix' => $prefix, 'verify_level' => 'full'];
        $targets = new Targets($config, ['default' => 'sqlite', 'connections' => [
            'sqlite' => ['driver' => 'sqlite', 'database' => "{$this->dir}/app.sqlite"],
            'copy' => ['driver' => 'sqlite', 'database' => "{$this->dir}/copy.sqlite"],
        ]], ['disks' => $disks], $this->dir);
        return new Backups($config, $targets);
    }

    public function testTwoS3DisksWithDifferentKeysInOneProcess(): void
    {
        $prefix = 'php-creds-' . bin2hex(random_bytes(4));
        $this->assertFalse(getenv('AWS_ACCESS_KEY_ID'), 'the keys must come from the disks, not the environment');
        $backups = $this->backups(['a' => $this->disk('a', 'a'), 'b' => $this->disk('b', 'b')], $prefix);

        // One call writes both repositories, each with its own key.
        $created = $backups->create();
        $this->assertSame([], $created['failed_repos'] ?? [], json_encode($created));
        $this->assertSame(["s3://{$this->iam['a']['bucket']}/{$prefix}", "s3://{$this->iam['b']['bucket']}/{$prefix}"], $created['repos']);

        // Read back from each disk, alternating, in the same process and client.
        $listed = $backups->list();
        foreach (['a', 'b'] as $disk) {
            $this->assertSame([$created['id']], array_column($listed[$disk]['backups'], 'id'), "disk {$disk}");
        }
        $verified = $backups->verify(['backup' => $created['id']]);
        foreach (['a', 'b'] as $disk) {
            $this->assertTrue($verified[$disk]['ok'] ?? false, "disk {$disk}: " . json_encode($verified[$disk]));
        }
        $restored = $backups->restore(['backup' => $created['id']], 'copy', 'b');
        $this->assertSame(3, $restored['rows']);
        $this->assertSame('b', $restored['disk']);
        $copy = new \PDO("sqlite:{$this->dir}/copy.sqlite");
        $this->assertSame(['a', 'b', 'c'], $copy->query('SELECT v FROM t ORDER BY id')->fetchAll(\PDO::FETCH_COLUMN));

        // The emulator tells the keys apart: each key is refused on the other user's bucket, for
        // reading (list) and for writing (create), through the same client.
        $crossed = $this->backups(['a_with_key_b' => $this->disk('a', 'b'), 'b_with_key_a' => $this->disk('b', 'a')], $prefix);
        foreach (['a_with_key_b', 'b_with_key_a'] as $disk) {
            try {
                $crossed->list([], $disk);
                $this->fail("disk {$disk}: listing with the other user's key must be refused");
            } catch (Exception $e) {
                $this->assertStringContainsString('access denied', $e->getMessage(), $disk);
                $this->assertStringContainsString("s3://{$this->iam[$disk[0]]['bucket']}/{$prefix}", $e->getMessage());
            }
        }
        try {
            $crossed->create();
            $this->fail("a backup with each disk holding the other user's key must be refused");
        } catch (Exception $e) {
            $this->assertStringContainsString('every repository failed', $e->getMessage());
            $this->assertStringContainsString('access denied', $e->getMessage());
        }
        // ... and the right keys still work afterwards (nothing process-wide was changed).
        $this->assertSame([$created['id']], array_column($backups->list([], 'a')['a']['backups'], 'id'));
    }

    /** The same through the Client alone: `repo_settings` keyed by repository URL, one call, two keys. */
    public function testClientOpensEachRepositoryWithItsOwnSettings(): void
    {
        $prefix = 'php-creds-client-' . bin2hex(random_bytes(4));
        $repo = fn (string $u) => "s3://{$this->iam[$u]['bucket']}/{$prefix}";
        $settings = fn (string $u) => ['AWS_ACCESS_KEY_ID' => $this->iam[$u]['key'], 'AWS_SECRET_ACCESS_KEY' => $this->iam[$u]['secret'],
            'AWS_DEFAULT_REGION' => 'us-east-1', 'AWS_ENDPOINT' => $this->iam['endpoint'],
            'DBBACKUP_STORE_MAX_RETRIES' => '0'];
        $client = new Client();
        $all = [$repo('a') => $settings('a'), $repo('b') => $settings('b')];
        $created = $client->create(['source' => "sqlite://{$this->dir}/app.sqlite", 'repo' => [$repo('a'), $repo('b')], 'repo_settings' => $all]);
        $this->assertSame([], $created['failed_repos'] ?? [], json_encode($created));
        foreach (['a', 'b'] as $u) {
            $this->assertSame([$created['id']], array_column($client->list(['repo' => $repo($u), 'repo_settings' => $all])['backups'], 'id'));
        }
        try {
            $client->list(['repo' => $repo('b'), 'repo_settings' => [$repo('b') => $settings('a')]]);
            $this->fail("key A on bucket B must be refused");
        } catch (Exception $e) {
            $this->assertStringContainsString('access denied', $e->getMessage());
        }
    }
}
