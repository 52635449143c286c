<?php

declare(strict_types=1);

namespace DbBackup;

use FFI;
use FFI\CData;

/**
 * In-process dbbackup through PHP's FFI extension and libbackup_ffi.
 *
 * Every method takes an options array whose keys are the CLI's long flag names in snake_case
 * (`['source' => 'sqlite:///app.sqlite', 'repo' => ['/backups']]`; the positional backup argument
 * is `'backup'`) and returns the array `dbbackup <command> --json` prints. Failures throw a
 * {@see Exception} subclass named after the exit-code kind. Passwords go in the `password` key:
 * they stay in this process's memory and never reach a command line.
 *
 * FFI is only enabled in the CLI SAPI by default (`ffi.enable=preload`): artisan, queue workers
 * and the scheduler can use this class; web requests cannot unless the library is preloaded or
 * `ffi.enable=true`.
 */
final class Client
{
    private FFI $ffi;
    private ?CData $handle;
    /** @var callable|null */
    private $progressCallback = null;
    private ?\Closure $progressTrampoline = null;

    /**
     * @param string|null $library path to libbackup_ffi.so; default: env DBBACKUP_FFI_LIB, else
     *                             the library built in this repository (target/release, then target/debug)
     * @param array<string,mixed> $options client options (`worker_threads`)
     */
    public function __construct(?string $library = null, array $options = [])
    {
        if (!extension_loaded('ffi')) {
            throw new FailedException('failed', 'the PHP FFI extension is not loaded', 1);
        }
        $library ??= self::defaultLibrary();
        $header = self::header();
        try {
            $this->ffi = FFI::cdef($header, $library);
        } catch (\FFI\Exception $e) {
            throw new FailedException('failed', "cannot load dbbackup library {$library}: {$e->getMessage()}"
                . ' (FFI is CLI-only by default: ffi.enable=preload)', 1);
        }
        $handle = $this->ffi->dbb_client_new($options === [] ? null : self::encode($options));
        if ($handle === null || FFI::isNull($handle)) {
            throw Exception::fromError($this->lastError() ?? ['kind' => 'failed', 'code' => 1, 'message' => 'dbb_client_new failed']);
        }
        $this->handle = $handle;
    }

    public function __destruct()
    {
        if ($this->handle !== null) {
            $this->ffi->dbb_client_free($this->handle);
            $this->handle = null;
        }
    }

    /** The library's version. */
    public function version(): string
    {
        return (string) $this->ffi->dbb_version();
    }

    /** @param array<string,mixed> $options @return array<string,mixed> */
    public function create(array $options): array
    {
        return $this->call('dbb_create', $options);
    }

    /** @param array<string,mixed> $options @return array<string,mixed> */
    public function list(array $options): array
    {
        return $this->call('dbb_list', $options);
    }

    /** @param array<string,mixed> $options @return array<string,mixed> */
    public function verify(array $options): array
    {
        return $this->call('dbb_verify', $options);
    }

    /** @param array<string,mixed> $options @return array<string,mixed> */
    public function restore(array $options): array
    {
        return $this->call('dbb_restore', $options);
    }

    /** @param array<string,mixed> $options @return array<string,mixed> */
    public function prune(array $options): array
    {
        return $this->call('dbb_prune', $options);
    }

    /** @param array<string,mixed> $options @return array<string,mixed> */
    public function status(array $options): array
    {
        return $this->call('dbb_status', $options);
    }

    /** @param array<string,mixed> $options @return array<string,mixed> */
    public function copy(array $options): array
    {
        return $this->call('dbb_copy', $options);
    }

    /**
     * Guards a change (`dbbackup guard`): a safety backup, then $command() on this thread; when
     * it returns non-zero or throws, the database is restored from the safety backup. Returns
     * the guard report (`command_status`, `rolled_back`, `recovery_ms`, ...); throws when the
     * safety backup or the rollback failed (the command does not run when the backup fails).
     * An exception thrown by $command is rethrown after the rollback.
     *
     * @param array<string,mixed> $options
     * @param callable(): int $command
     * @return array<string,mixed>
     */
    public function guard(array $options, callable $command): array
    {
        $thrown = null;
        // PHP cannot unwind through C: the exception is kept and rethrown after the call.
        $trampoline = function ($userData) use ($command, &$thrown): int {
            try {
                return (int) $command();
            } catch (\Throwable $e) {
                $thrown = $e;
                return 1;
            }
        };
        $out = $this->ffi->new('char*');
        $code = $this->ffi->dbb_guard($this->handle, self::encode($options), $trampoline, null, FFI::addr($out));
        $data = $this->takeJson($out);
        if ($code !== 0) {
            if (is_array($data) && is_array($data['error'] ?? null)) {
                throw Exception::fromError($data['error']);
            }
            throw Exception::fromError($this->lastError() ?? ['kind' => 'failed', 'code' => $code, 'message' => "dbb_guard returned {$code}"]);
        }
        if ($thrown !== null) {
            throw new GuardedCommandException($data ?? [], $thrown);
        }
        return $data ?? [];
    }

    /** Cancels the operations running on this client (from a signal handler, say). */
    public function cancel(): void
    {
        $this->ffi->dbb_cancel($this->handle);
    }

    /**
     * Progress of the most recent operation: operation, running, elapsed_ms, phase, bytes,
     * objects, events.
     *
     * @return array<string,mixed>
     */
    public function progress(): array
    {
        return $this->takeJson($this->ffi->dbb_progress($this->handle)) ?? [];
    }

    /**
     * Calls $callback(array $progress) every $intervalMs while an operation runs, on this thread.
     * The callback must not throw (PHP cannot unwind through C): exceptions are swallowed.
     */
    public function onProgress(?callable $callback, int $intervalMs = 250): void
    {
        $this->progressCallback = $callback;
        if ($callback === null) {
            $this->ffi->dbb_client_set_progress_callback($this->handle, null, null, 0);
            return;
        }
        // One trampoline for the life of the client (each closure-to-pointer conversion costs
        // memory that PHP keeps), kept referenced here so PHP never frees it while registered.
        $this->progressTrampoline ??= function ($json, $userData): void {
            try {
                $cb = $this->progressCallback;
                if ($cb !== null) {
                    $cb(json_decode(is_string($json) ? $json : FFI::string($json), true) ?: []);
                }
            } catch (\Throwable) {
                // Never unwind through the library.
            }
        };
        $this->ffi->dbb_client_set_progress_callback($this->handle, $this->progressTrampoline, null, max(0, $intervalMs));
    }

    /** @return array<string,mixed>|null the calling thread's last error object */
    public function lastError(): ?array
    {
        return $this->takeJson($this->ffi->dbb_last_error());
    }

    /**
     * @param array<string,mixed> $options
     * @return array<string,mixed>
     */
    private function call(string $function, array $options): array
    {
        $out = $this->ffi->new('char*');
        $code = $this->ffi->$function($this->handle, self::encode($options), FFI::addr($out));
        $data = $this->takeJson($out);
        if ($code === 0) {
            return $data ?? [];
        }
        if (is_array($data) && ($data['ok'] ?? null) === false && is_array($data['error'] ?? null)) {
            throw Exception::fromError($data['error']);
        }
        // A report that still means failure (a damaged backup, an unhealthy repository).
        $error = $this->lastError() ?? ['kind' => 'failed', 'code' => $code, 'message' => "{$function} returned {$code}"];
        throw Exception::fromError($error, $data);
    }

    /** Copies and frees a library-owned string, decoding its JSON. */
    private function takeJson(?CData $ptr): ?array
    {
        if ($ptr === null || FFI::isNull($ptr)) {
            return null;
        }
        try {
            $text = FFI::string($ptr);
        } finally {
            $this->ffi->dbb_string_free($ptr);
        }
        $value = json_decode($text, true, 512, JSON_THROW_ON_ERROR);
        return is_array($value) ? $value : null;
    }

    /** @param array<string,mixed> $options */
    private static function encode(array $options): string
    {
        return json_encode($options === [] ? new \stdClass() : $options, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
    }

    /**
     * The library to load when none is given: env DBBACKUP_FFI_LIB, else the first of
     * {@see libraryCandidates()} that exists. Throws naming every place it looked.
     */
    public static function defaultLibrary(): string
    {
        $env = getenv('DBBACKUP_FFI_LIB');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        $candidates = self::libraryCandidates();
        foreach ($candidates as $candidate) {
            if (is_file($candidate)) {
                return $candidate;
            }
        }
        throw new FailedException('failed', 'libbackup_ffi.so not found; looked in: config dbbackup.library (unset), env DBBACKUP_FFI_LIB (unset), '
            . implode(', ', $candidates) . '. Install it in one of those places or set DBBACKUP_FFI_LIB to its path', 1);
    }

    /**
     * Where the library is looked for when neither the config nor DBBACKUP_FFI_LIB names it:
     * the standard library directories, beside this package, then a cargo build of the
     * repository the package sits in.
     *
     * @return list<string>
     */
    public static function libraryCandidates(): array
    {
        $package = dirname(__DIR__);
        $root = dirname(__DIR__, 3);
        return [
            '/usr/lib/libbackup_ffi.so',
            '/usr/local/lib/libbackup_ffi.so',
            '/usr/lib/x86_64-linux-gnu/libbackup_ffi.so',
            "{$package}/lib/libbackup_ffi.so",
            "{$package}/libbackup_ffi.so",
            "{$root}/target/release/libbackup_ffi.so",
            "{$root}/target/debug/libbackup_ffi.so",
        ];
    }

    private static function header(): string
    {
        $env = getenv('DBBACKUP_FFI_HEADER');
        $path = is_string($env) && $env !== '' ? $env : dirname(__DIR__) . '/include/dbbackup.h';
        $text = @file_get_contents($path);
        if ($text === false) {
            throw new FailedException('failed', "cannot read the dbbackup header {$path}", 1);
        }
        return $text;
    }
}
