<?php

declare(strict_types=1);

namespace DbBackup\Tests;

use DbBackup\Client;
use DbBackup\Exception;
use DbBackup\FailedException;
use DbBackup\IntegrityException;
use DbBackup\NotFoundException;
use DbBackup\UsageException;
use PHPUnit\Framework\TestCase;

/** The PHP client against the real built library (DBBACKUP_FFI_LIB or target/debug). */
final class ClientTest extends TestCase
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = sys_get_temp_dir() . '/dbb-php-' . bin2hex(random_bytes(6));
        mkdir($this->dir);
    }

    protected function tearDown(): void
    {
        exec('rm -rf ' . escapeshellarg($this->dir));
    }

    private function makeSqlite(string $path, int $rows = 300): void
    {
        $db = new \PDO('sqlite:' . $path);
        $db->exec('CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT, score REAL)');
        $db->exec('CREATE INDEX posts_title ON posts(title)');
        $db->beginTransaction();
        $st = $db->prepare('INSERT INTO posts (title, body, score) VALUES (?, ?, ?)');
        for ($i = 0; $i < $rows; $i++) {
            $st->execute(["post {$i} ✓", str_repeat("line {$i}\n", $i % 7), $i / 3]);
        }
        $db->commit();
    }

    /** @return list<array<string,mixed>> */
    private function rows(string $path): array
    {
        $db = new \PDO('sqlite:' . $path);
        return $db->query('SELECT id, title, body, score FROM posts ORDER BY id')->fetchAll(\PDO::FETCH_ASSOC);
    }

    /** @return list<array<string,mixed>> */
    private function schema(string $path): array
    {
        $db = new \PDO('sqlite:' . $path);
        return $db->query("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            ->fetchAll(\PDO::FETCH_ASSOC);
    }

    public function testSqliteBackupListVerifyRestore(): void
    {
        $src = "{$this->dir}/app.sqlite";
        $this->makeSqlite($src);
        $repo = "{$this->dir}/repo";
        $client = new Client();

        $created = $client->create(['source' => "sqlite://{$src}", 'repo' => [$repo], 'tag' => ['nightly'], 'jobs' => 2]);
        $this->assertSame('sqlite', $created['engine']);
        $this->assertSame(1, $created['tables']);
        $this->assertSame(300, $created['rows']);
        $this->assertGreaterThan(0, $created['stored_bytes']);

        $listed = $client->list(['repo' => $repo]);
        $this->assertSame([$created['id']], array_column($listed['backups'], 'id'));
        $this->assertSame(['nightly'], $listed['backups'][0]['tags']);

        $verified = $client->verify(['repo' => $repo, 'backup' => $created['id'], 'level' => 'full']);
        $this->assertTrue($verified['ok']);
        $this->assertSame([], $verified['findings']);

        $into = "{$this->dir}/restored.sqlite";
        $restored = $client->restore(['repo' => $repo, 'backup' => 'latest', 'into' => "sqlite://{$into}"]);
        $this->assertSame($created['id'], $restored['id']);
        $this->assertSame(300, $restored['rows']);
        // All of it: every row and column, and the schema (the table and its index).
        $this->assertSame($this->rows($src), $this->rows($into));
        $this->assertSame($this->schema($src), $this->schema($into));
        $this->assertCount(2, $this->schema($src));

        $progress = $client->progress();
        $this->assertSame('restore', $progress['operation']);
        $this->assertFalse($progress['running']);
    }

    public function testMariadbBackupListVerifyRestore(): void
    {
        $url = getenv('DBBACKUP_TEST_MYSQL_URL');
        if (!is_string($url) || $url === '') {
            Services::missing('DBBACKUP_TEST_MYSQL_URL is not set');
        }
        $parts = parse_url($url);
        $server = sprintf('mysql:host=%s;port=%d', $parts['host'] ?? '127.0.0.1', $parts['port'] ?? 3306);
        $user = urldecode($parts['user'] ?? 'root');
        $password = urldecode($parts['pass'] ?? '');
        $pdo = new \PDO($server, $user, $password, [\PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION]);
        $suffix = bin2hex(random_bytes(4));
        $srcDb = "dbb_php_src_{$suffix}";
        $dstDb = "dbb_php_dst_{$suffix}";
        $definer = "dbb_def_{$suffix}";
        $pdo->exec("CREATE DATABASE `{$srcDb}`");
        try {
            $pdo->exec("CREATE TABLE `{$srcDb}`.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer VARCHAR(64) NOT NULL, total DECIMAL(10,2), note TEXT, KEY (customer))");
            $st = $pdo->prepare("INSERT INTO `{$srcDb}`.orders (customer, total, note) VALUES (?, ?, ?)");
            for ($i = 0; $i < 250; $i++) {
                $st->execute(["customer {$i} ü", $i * 1.25, $i % 5 === 0 ? null : "tab\there \"q\" {$i}"]);
            }
            // A view with another definer (on a managed target it would not exist): `no_definer`
            // gives the restored view the restoring user instead.
            $pdo->exec("CREATE USER `{$definer}`@`%`");
            $pdo->exec("GRANT SELECT ON `{$srcDb}`.* TO `{$definer}`@`%`");
            $pdo->exec("CREATE DEFINER=`{$definer}`@`%` VIEW `{$srcDb}`.big_orders AS SELECT id, total FROM `{$srcDb}`.orders WHERE total > 100");
            $base = sprintf('mysql://%s@%s:%d', rawurlencode($user), $parts['host'] ?? '127.0.0.1', $parts['port'] ?? 3306);
            $repo = "{$this->dir}/repo";
            $client = new Client();
            $created = $client->create(['source' => "{$base}/{$srcDb}", 'password' => $password, 'repo' => $repo]);
            $this->assertSame(250, $created['rows']);
            $this->assertSame($created['id'], $client->list(['repo' => $repo])['backups'][0]['id']);
            $this->assertTrue($client->verify(['repo' => $repo])['ok']);
            $restored = $client->restore(['repo' => $repo, 'into' => "{$base}/{$dstDb}", 'password' => $password, 'no_definer' => true]);
            $this->assertSame(250, $restored['rows']);
            $definers = $pdo->query("SELECT TABLE_SCHEMA, DEFINER FROM information_schema.VIEWS WHERE TABLE_NAME = 'big_orders' AND TABLE_SCHEMA IN ('{$srcDb}', '{$dstDb}')")->fetchAll(\PDO::FETCH_KEY_PAIR);
            $this->assertSame("{$definer}@%", $definers[$srcDb]);
            $this->assertArrayHasKey($dstDb, $definers);
            $this->assertNotSame("{$definer}@%", $definers[$dstDb], 'no_definer reaches the engine');
            $this->assertSame(
                $pdo->query("SELECT id, total FROM `{$srcDb}`.orders WHERE total > 100 ORDER BY id")->fetchAll(\PDO::FETCH_ASSOC),
                $pdo->query("SELECT id, total FROM `{$dstDb}`.big_orders ORDER BY id")->fetchAll(\PDO::FETCH_ASSOC)
            );
            $q = 'SELECT id, customer, total, note FROM `%s`.orders ORDER BY id';
            $this->assertSame(
                $pdo->query(sprintf($q, $srcDb))->fetchAll(\PDO::FETCH_ASSOC),
                $pdo->query(sprintf($q, $dstDb))->fetchAll(\PDO::FETCH_ASSOC)
            );
        } finally {
            $pdo->exec("DROP DATABASE IF EXISTS `{$srcDb}`");
            $pdo->exec("DROP DATABASE IF EXISTS `{$dstDb}`");
            $pdo->exec("DROP USER IF EXISTS `{$definer}`@`%`");
        }
    }

    public function testErrorsMapToExceptionClasses(): void
    {
        $src = "{$this->dir}/app.sqlite";
        $this->makeSqlite($src, 10);
        $repo = "{$this->dir}/repo";
        $client = new Client();
        $id = $client->create(['source' => "sqlite://{$src}", 'repo' => $repo])['id'];

        try {
            $client->restore(['repo' => $repo, 'backup' => '20200101T000000Z-dead', 'into' => "sqlite://{$this->dir}/x.sqlite"]);
            $this->fail('expected NotFoundException');
        } catch (NotFoundException $e) {
            $this->assertSame(5, $e->getCode());
            $this->assertSame('not_found', $e->kind);
            $this->assertSame([$id], $e->available);
        }

        try {
            $client->list(['repo' => $repo, 'levle' => 'x']);
            $this->fail('expected UsageException');
        } catch (UsageException $e) {
            $this->assertSame(2, $e->getCode());
            $this->assertStringContainsString('levle', $e->getMessage());
        }

        // A production restore without force is refused and the live database (other rows than
        // the backup's) is byte for byte what it was, with nothing written beside it.
        $live = "{$this->dir}/live";
        mkdir($live);
        $this->makeSqlite("{$live}/x.sqlite", 3);
        $before = [sha1_file("{$live}/x.sqlite"), scandir($live)];
        try {
            $client->restore(['repo' => $repo, 'into' => "sqlite://{$live}/x.sqlite", 'production' => true]);
            $this->fail('expected UsageException for a production restore without force');
        } catch (UsageException $e) {
            $this->assertStringContainsString('production', $e->getMessage());
        }
        $this->assertSame($before, [sha1_file("{$live}/x.sqlite"), scandir($live)]);

        // Damage one stored data object: verify reports it as IntegrityException with the report.
        $objects = [];
        foreach (new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($repo, \FilesystemIterator::SKIP_DOTS)) as $f) {
            if (str_contains($f->getPathname(), '/data/')) {
                $objects[$f->getPathname()] = $f->getSize();
            }
        }
        arsort($objects);
        $victim = array_key_first($objects);
        $bytes = file_get_contents($victim);
        $mid = intdiv(strlen($bytes), 2);
        $bytes[$mid] = chr(ord($bytes[$mid]) ^ 0x55);
        file_put_contents($victim, $bytes);
        try {
            $client->verify(['repo' => $repo, 'level' => 'full']);
            $this->fail('expected IntegrityException');
        } catch (IntegrityException $e) {
            $this->assertSame(3, $e->getCode());
            $this->assertFalse($e->report['ok']);
            $this->assertNotEmpty($e->report['findings']);
        }
        $this->assertInstanceOf(Exception::class, new NotFoundException('not_found', 'x', 5));
    }

    public function testPanicBecomesFailedExceptionAndTheProcessLives(): void
    {
        $client = new Client();
        $repo = "{$this->dir}/repo";
        try {
            $client->list(['repo' => $repo, 'debug_panic' => true]);
            $this->fail('expected FailedException');
        } catch (FailedException $e) {
            // Its own status (70), not an ordinary failure (1).
            $this->assertSame(70, $e->getCode());
            $this->assertSame('panic', $e->kind);
            $this->assertStringContainsString('panic', $e->getMessage());
        }
        // Still alive and usable.
        $this->assertSame([], $client->list(['repo' => $repo])['backups']);
    }

    public function testProgressCallbackRunsDuringAnOperation(): void
    {
        $src = "{$this->dir}/app.sqlite";
        $this->makeSqlite($src, 2000);
        $client = new Client();
        // Big enough (~15 MiB of text at zstd -9), several times what the pipeline reads ahead of
        // the compressor, for callbacks while the byte count moves.
        $db = new \PDO('sqlite:' . $src);
        $db->beginTransaction();
        $st = $db->prepare('INSERT INTO posts (title, body, score) VALUES (?, ?, ?)');
        for ($i = 0; $i < 250; $i++) {
            $st->execute(["blob {$i}", bin2hex(random_bytes(30000)), 0]);
        }
        $db->commit();
        $seen = [];
        $client->onProgress(function (array $p) use (&$seen): void {
            $seen[] = $p;
        }, 1);
        $client->create(['source' => "sqlite://{$src}", 'repo' => "{$this->dir}/repo", 'compression' => 'zstd:9', 'jobs' => 1]);
        // Called while the backup ran, not only once at the end: some snapshot shows the upload
        // under way, with some bytes done and not all.
        $midway = array_filter($seen, fn (array $p): bool => $p['running'] && $p['phase'] === 'upload'
            && $p['phase_total_bytes'] !== null && $p['phase_bytes'] > 0 && $p['phase_bytes'] < $p['phase_total_bytes']);
        $this->assertNotEmpty($midway, 'no progress snapshot while the upload ran: ' . json_encode($seen));
        $last = end($seen);
        $this->assertSame('create', $last['operation']);
        $this->assertFalse($last['running']);
        $client->onProgress(null);
    }

    /**
     * Issue 15 item 6: with DBBACKUP_FFI_LIB unset and no library in any of the places looked
     * in, the error names every one of them (and how to point at the library). Run in a child
     * process on a copy of the package, so that this checkout's own target/ build is not found.
     */
    public function testLibraryLookupErrorNamesEveryPlaceItLooked(): void
    {
        $pkg = "{$this->dir}/vendor/dbbackup/php";
        mkdir("{$pkg}/src", 0777, true);
        foreach (glob(dirname(__DIR__) . '/src/*.php') as $f) {
            copy($f, "{$pkg}/src/" . basename($f));
        }
        $script = <<<'PHP'
            spl_autoload_register(function ($c) { $f = getenv('PKG') . '/src/' . substr($c, strlen('DbBackup\\')) . '.php'; if (is_file($f)) { require $f; } });
            $r = ['candidates' => DbBackup\Client::libraryCandidates()];
            try { DbBackup\Client::defaultLibrary(); } catch (DbBackup\FailedException $e) { $r['lookup'] = $e->getMessage(); }
            try { new DbBackup\Client(); } catch (DbBackup\FailedException $e) { $r['client'] = $e->getMessage(); }
            echo json_encode($r);
            PHP;
        exec('env -u DBBACKUP_FFI_LIB PKG=' . escapeshellarg($pkg) . ' php -r ' . escapeshellarg($script) . ' 2>&1', $out, $code);
        $this->assertSame(0, $code, implode("\n", $out));
        $r = json_decode(implode("\n", $out), true);
        $this->assertIsArray($r, implode("\n", $out));
        $this->assertCount(7, $r['candidates']);
        $installed = array_filter($r['candidates'], 'is_file');
        if ($installed !== []) {
            $this->markTestSkipped('a library is installed at ' . implode(', ', $installed));
        }
        $this->assertArrayHasKey('lookup', $r, 'defaultLibrary() found a library that is not there');
        foreach ($r['candidates'] as $candidate) {
            $this->assertStringContainsString($candidate, $r['lookup']);
        }
        $this->assertStringContainsString("{$pkg}/lib/libbackup_ffi.so", $r['lookup']);
        $this->assertStringContainsString('/usr/local/lib/libbackup_ffi.so', $r['lookup']);
        foreach (['dbbackup.library', 'DBBACKUP_FFI_LIB'] as $setting) {
            $this->assertStringContainsString($setting, $r['lookup']);
        }
        $this->assertSame($r['lookup'], $r['client'] ?? null, 'new Client() must fail with the same message');
    }

    public function testNoLeaksAcross1000Calls(): void
    {
        $src = "{$this->dir}/app.sqlite";
        $this->makeSqlite($src, 10);
        $repo = "{$this->dir}/repo";
        $client = new Client();
        $client->create(['source' => "sqlite://{$src}", 'repo' => $repo]);
        $round = function () use ($client, $repo): void {
            $this->assertCount(1, $client->list(['repo' => $repo])['backups']);
            try {
                $client->verify(['repo' => $repo, 'backup' => 'nope', 'level' => 'quick']);
            } catch (NotFoundException) {
            }
        };
        for ($i = 0; $i < 100; $i++) {
            $round();
        }
        gc_collect_cycles();
        $php0 = memory_get_usage();
        $rss0 = self::rssKib();
        for ($i = 0; $i < 1000; $i++) {
            $round();
        }
        gc_collect_cycles();
        $phpGrowth = memory_get_usage() - $php0;
        $rssGrowth = self::rssKib() - $rss0;
        $this->assertLessThan(64 * 1024, $phpGrowth, "PHP memory grew by {$phpGrowth} bytes over 1000 rounds");
        // 2000 calls, each returning a report of ~1 KiB: a leak of the strings alone would be ~2 MiB.
        $this->assertLessThan(1536, $rssGrowth, "RSS grew by {$rssGrowth} KiB over 1000 rounds");
    }

    private static function rssKib(): int
    {
        $status = (string) file_get_contents('/proc/self/status');
        return preg_match('/^VmRSS:\s+(\d+)/m', $status, $m) ? (int) $m[1] : 0;
    }
}
