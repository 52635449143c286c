//! The store conformance suite against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use backup_core::Target;
use dbbackup_tests::store_suite;

store_suite!(memory, async {
    Some(Target::open(&format!("memory://{}", dbbackup_tests::unique("mem"))).unwrap())
});
store_suite!(local_dir, async {
    let dir = tempfile::Builder::new().prefix("dbbackup-store-suite-").tempdir().unwrap();
    Some((Target::open(dir.path().to_str().unwrap()).unwrap(), dir))
});
store_suite!(s3_moto, async {
    let endpoint = dbbackup_tests::service_env("DBBACKUP_TEST_S3_ENDPOINT")?;
    let bucket = dbbackup_tests::service_env("DBBACKUP_TEST_S3_BUCKET")?;
    let cfg = dbbackup_tests::s3_config(&endpoint);
    Some(Target::open_with(&format!("s3://{bucket}/{}", dbbackup_tests::unique("s3")), &cfg).unwrap())
});
store_suite!(azure_azurite, async {
    let url = dbbackup_tests::service_env("DBBACKUP_TEST_AZURITE_URL")?;
    let container = dbbackup_tests::service_env("DBBACKUP_TEST_AZ_CONTAINER")?;
    let cfg = dbbackup_tests::azurite_config(&url);
    Some(Target::open_with(&format!("az://{container}/{}", dbbackup_tests::unique("az")), &cfg).unwrap())
});

/// Per-attempt time limits of the cloud stores (`DBBACKUP_STORE_TIMEOUT`,
/// `DBBACKUP_STORE_MIN_THROUGHPUT`) through a slow or dead link: a TCP proxy in front of moto
/// (fault injection on the network; the S3 client and server are the real ones).
mod slow_link {
    use std::time::{Duration, Instant};

    use backup_core::Target;
    use bytes::Bytes;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    /// How the proxy behaves.
    #[derive(Clone, Copy)]
    struct Link {
        /// Bytes per second each way, steady (no bursts); `None`: as fast as it goes.
        rate: Option<u64>,
        /// Accept, read everything, answer nothing.
        dead: bool,
        /// On the first connection only, stop forwarding the answer after this many bytes
        /// (the connection stays open).
        stall_first_answer_after: Option<u64>,
    }

    async fn proxy(upstream: &str, link: Link) -> String {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((client, _)) = l.accept().await {
                let upstream = upstream.clone();
                let stall = if first { link.stall_first_answer_after } else { None };
                first = false;
                tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    if link.dead {
                        let mut cr = cr;
                        let mut buf = vec![0u8; 64 << 10];
                        while matches!(cr.read(&mut buf).await, Ok(n) if n > 0) {}
                        drop(cw);
                        return;
                    }
                    let (sr, sw) = TcpStream::connect(&upstream).await.unwrap().into_split();
                    tokio::join!(pump(cr, sw, link.rate, None), pump(sr, cw, link.rate, stall));
                });
            }
        });
        format!("http://{addr}")
    }

    async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, rate: Option<u64>, stall: Option<u64>) {
        let mut buf = vec![0u8; 16 << 10];
        let mut moved = 0u64;
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = match stall {
                Some(s) if moved + n as u64 >= s => (s - moved) as usize,
                _ => n,
            };
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
            moved += n as u64;
            if stall.is_some_and(|s| moved >= s) {
                // Hold the connection to the client open and silent (the server may close its
                // side once it has sent everything) until long after the client gave up.
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            if let Some(r) = rate {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / r as f64)).await;
            }
        }
        let _ = to.shutdown().await;
    }

    /// A repository on moto seen through `link`, with test-sized limits: 1 s per attempt plus the
    /// body at 256 KiB/s, one retry.
    async fn through(link: Link, min_throughput: &str) -> Option<(Target, Target)> {
        let endpoint = dbbackup_tests::service_env("DBBACKUP_TEST_S3_ENDPOINT")?;
        let bucket = dbbackup_tests::service_env("DBBACKUP_TEST_S3_BUCKET")?;
        let url = format!("s3://{bucket}/{}", dbbackup_tests::unique("slow"));
        let direct = Target::open_with(&url, &dbbackup_tests::s3_config(&endpoint)).unwrap();
        let cfg = dbbackup_tests::s3_config(&proxy(&endpoint, link).await)
            .set("DBBACKUP_STORE_TIMEOUT", "1")
            .set("DBBACKUP_STORE_MIN_THROUGHPUT", min_throughput)
            .set("DBBACKUP_STORE_MAX_RETRIES", "1")
            .set("DBBACKUP_STORE_RETRY_TIMEOUT", "3");
        Some((direct, Target::open_with(&url, &cfg).unwrap()))
    }

    async fn read_all(t: &Target, key: &str) -> Result<Vec<u8>, backup_core::Error> {
        let mut s = t.get_stream(key);
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]).collect()
    }

    /// 2 MiB each way at 1 MiB/s: about 2 s per transfer, twice the 1 s a total per-request
    /// timeout allowed; within 1 s + 2 MiB at 256 KiB/s = 9 s per attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_steady_link_gets_the_time_its_size_needs() {
        let link = Link { rate: Some(1 << 20), dead: false, stall_first_answer_after: None };
        let Some((_, t)) = through(link, "256KiB").await else { return };
        let body = data(2 << 20);
        let started = Instant::now();
        t.put_bytes("obj", Bytes::from(body.clone())).await.unwrap();
        let up = started.elapsed();
        assert!(up > Duration::from_millis(1500), "the link was not slow: {up:?}");
        let started = Instant::now();
        assert!(read_all(&t, "obj").await.unwrap() == body, "content differs");
        let down = started.elapsed();
        assert!(down > Duration::from_millis(1500), "the link was not slow: {down:?}");
    }

    /// Nothing ever comes back: the request fails after its limit (two attempts of 1 s here),
    /// with an error naming the setting to raise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_link_fails_quickly_naming_the_timeout() {
        let link = Link { rate: None, dead: true, stall_first_answer_after: None };
        let Some((_, t)) = through(link, "256KiB").await else { return };
        let started = Instant::now();
        let e = t.put_bytes("obj", Bytes::from_static(b"payload")).await.unwrap_err();
        let took = started.elapsed();
        let msg = backup_core::chain_text(&e);
        assert!(msg.contains("DBBACKUP_STORE_TIMEOUT"), "{msg}");
        assert!(took < Duration::from_secs(8), "took {took:?}: {msg}");
        let started = Instant::now();
        let e = t.get_bytes("obj", 100).await.unwrap_err();
        let msg = backup_core::chain_text(&e);
        assert!(
            msg.contains("DBBACKUP_STORE_TIMEOUT") && started.elapsed() < Duration::from_secs(8),
            "{msg}"
        );
    }

    /// An answer that stops midway is cut after 1 s without data, although its size would allow
    /// half an hour at the floor rate (1 KiB/s), and the download resumes where it stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_that_stops_midway_is_cut_after_the_timeout_and_resumed() {
        let link = Link { rate: None, dead: false, stall_first_answer_after: Some(256 << 10) };
        let Some((direct, t)) = through(link, "1KiB").await else { return };
        let body = data(2 << 20);
        direct.put_bytes("obj", Bytes::from(body.clone())).await.unwrap();
        let started = Instant::now();
        assert!(read_all(&t, "obj").await.unwrap() == body, "content differs");
        let took = started.elapsed();
        assert!(took > Duration::from_millis(900) && took < Duration::from_secs(6), "took {took:?}");
    }
}
