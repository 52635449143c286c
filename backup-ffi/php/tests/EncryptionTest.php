<?php

declare(strict_types=1);

namespace DbBackup\Tests;

use DbBackup\Client;
use DbBackup\Exception;
use DbBackup\UsageException;
use PHPUnit\Framework\TestCase;

/**
 * Client-side encryption through the FFI options (issue 17): `encrypt_to` recipients on create;
 * `identity_file` (a path) and `identity` (the key text, as from the environment) on restore and
 * verify. The repository reveals nothing; a missing or wrong identity fails before the target
 * changes; the identity appears in no error, last error or progress event.
 */
final class EncryptionTest extends TestCase
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = sys_get_temp_dir() . '/dbb-php-enc-' . bin2hex(random_bytes(6));
        mkdir($this->dir);
    }

    protected function tearDown(): void
    {
        exec('rm -rf ' . escapeshellarg($this->dir));
    }

    /** @return array{0: string, 1: string} [identity file path, recipient] from age-keygen */
    private function keygen(string $name): array
    {
        exec('command -v age-keygen', $out, $code);
        if ($code !== 0) {
            Services::missing('age-keygen (Debian package age, installed by scripts/test.sh) is not installed');
        }
        $path = "{$this->dir}/{$name}.txt";
        exec('age-keygen -o ' . escapeshellarg($path) . ' 2>&1', $out, $code);
        $this->assertSame(0, $code, implode("\n", $out));
        $this->assertMatchesRegularExpression('/^# public key: (age1\S+)$/m', (string) file_get_contents($path));
        preg_match('/^# public key: (age1\S+)$/m', (string) file_get_contents($path), $m);
        return [$path, $m[1]];
    }

    private static function secretOf(string $identityFile): string
    {
        preg_match('/^AGE-SECRET-KEY-1\S+$/m', (string) file_get_contents($identityFile), $m);
        return $m[0];
    }

    /** @return array{0: string, 1: string} the file's inode and digest */
    private static function fileState(string $path): array
    {
        clearstatcache();
        return [(string) fileinode($path), (string) md5_file($path)];
    }

    /** @return list<array<string,mixed>> */
    private static function rows(string $path): array
    {
        return (new \PDO('sqlite:' . $path))->query('SELECT * FROM payments ORDER BY id')->fetchAll(\PDO::FETCH_ASSOC);
    }

    public function testEncryptedBackupRevealsNothingAndOpensOnlyWithTheIdentity(): void
    {
        [$keyFile, $recipient] = $this->keygen('key');
        [$otherFile] = $this->keygen('other');
        $secret = self::secretOf($keyFile);
        $wrong = self::secretOf($otherFile);
        $canary = 'canary-card-' . bin2hex(random_bytes(8));
        $src = "{$this->dir}/app.sqlite";
        $db = new \PDO('sqlite:' . $src);
        $db->exec('CREATE TABLE payments (id INTEGER PRIMARY KEY, card_token TEXT NOT NULL, amount INTEGER)');
        $st = $db->prepare('INSERT INTO payments (card_token, amount) VALUES (?, ?)');
        for ($i = 0; $i < 200; $i++) {
            $st->execute([$i === 77 ? $canary : "tok-{$i}", $i * 100]);
        }
        $db = null;
        $repo = "{$this->dir}/repo";
        $client = new Client();

        $created = $client->create(['source' => "sqlite://{$src}", 'repo' => $repo, 'encrypt_to' => [$recipient]]);
        $this->assertSame(200, $created['rows']);
        // Nothing in the repository gives the data away: not the row value, the table or column.
        $files = 0;
        foreach (new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($repo, \FilesystemIterator::SKIP_DOTS)) as $f) {
            $bytes = (string) file_get_contents($f->getPathname());
            foreach ([$canary, 'card_token', 'payments'] as $needle) {
                $this->assertStringNotContainsString($needle, $bytes, "{$needle} readable in {$f->getPathname()}");
            }
            $files++;
        }
        $this->assertGreaterThanOrEqual(3, $files);
        $listed = $client->list(['repo' => $repo])['backups'][0];
        $this->assertTrue($listed['encrypted']);

        // The target exists with other data: a failed restore must leave it exactly as it was.
        $into = "{$this->dir}/live.sqlite";
        (new \PDO('sqlite:' . $into))->exec("CREATE TABLE payments (id INTEGER PRIMARY KEY, card_token TEXT, amount INTEGER); INSERT INTO payments VALUES (1, 'live', 5)");
        $before = self::fileState($into);
        $cases = [
            'missing identity' => [[], "no identity for recipients {$recipient}"],
            'wrong identity' => [['identity' => $wrong], 'wrong key'],
            'wrong identity file' => [['identity_file' => $otherFile], 'wrong key'],
        ];
        foreach ($cases as $what => [$key, $want]) {
            try {
                $client->restore(['repo' => $repo, 'backup' => $created['id'], 'into' => "sqlite://{$into}"] + $key);
                $this->fail("{$what}: the restore succeeded");
            } catch (UsageException $e) {
                $this->assertSame(2, $e->getCode(), $what);
                $this->assertStringContainsString($want, $e->getMessage(), $what);
                $last = json_encode((new \ReflectionMethod($client, 'lastError'))->invoke($client));
                foreach ([$wrong, $secret] as $s) {
                    $this->assertStringNotContainsString($s, $e->getMessage(), "{$what}: a key in the error");
                    $this->assertStringNotContainsString($s, (string) $last, "{$what}: a key in the last error");
                    $this->assertStringNotContainsString($s, json_encode($client->progress()), "{$what}: a key in the progress events");
                }
            }
            $this->assertSame($before, self::fileState($into), "{$what}: the target changed");
            $this->assertSame([['id' => 1, 'card_token' => 'live', 'amount' => 5]], self::rows($into), $what);
            $this->assertSame([], glob("{$this->dir}/live.sqlite?*") ?: [], "{$what}: a temporary file was left");
        }

        // Verification: without the key the stored bytes; with it, decrypted and checked.
        $this->assertTrue($client->verify(['repo' => $repo, 'level' => 'full', 'no_record' => true])['without_key']);
        $v = $client->verify(['repo' => $repo, 'level' => 'full', 'identity_file' => $keyFile, 'no_record' => true]);
        $this->assertTrue($v['ok']);
        $this->assertFalse($v['without_key']);

        // The identity from a file path, then as text (the environment's DBBACKUP_IDENTITY).
        $restored = $client->restore(['repo' => $repo, 'into' => "sqlite://{$into}", 'identity_file' => $keyFile]);
        $this->assertSame(200, $restored['rows']);
        $this->assertSame(self::rows($src), self::rows($into));
        (new \PDO('sqlite:' . $into))->exec('DELETE FROM payments');
        $restored = $client->restore(['repo' => $repo, 'into' => "sqlite://{$into}", 'identity' => (string) file_get_contents($keyFile)]);
        $this->assertSame(self::rows($src), self::rows($into));
        $this->assertStringNotContainsString($secret, json_encode($restored) . json_encode($client->progress()));
    }
}
