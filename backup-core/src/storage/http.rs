//! The HTTP client of the cloud stores, with time limits per attempt that scale with the body.
//!
//! object_store's own request timeout is a total per request, body included: with its 30 s
//! default a 64 MiB part over a link slower than about 2 MiB/s fails on every attempt, and a
//! larger limit leaves a dead connection hanging for as long. Here object_store's total timeout
//! is off and each HTTP attempt (below object_store's retries, so a timed-out attempt is retried
//! like a dropped connection) gets instead:
//!
//! - **sending and waiting for the response**: `timeout + request body / min_throughput`
//!   (`DBBACKUP_STORE_TIMEOUT`, default 30 s, covers connecting and the first byte of the answer;
//!   `DBBACKUP_STORE_MIN_THROUGHPUT`, default 64 KiB/s, is the slowest link treated as working);
//! - **reading the response body**: no gap longer than `timeout` between two pieces of data, and
//!   the whole body within `timeout + content length / min_throughput`.
//!
//! A slow but steady transfer therefore always gets the time its size needs at the floor rate,
//! and a stalled one fails after `timeout` (a response body) or its size's budget (a request
//! body, whose progress object_store does not expose), with an error naming the setting.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody,
    HttpService, ReqwestConnector,
};
use tokio::time::{Instant, Sleep};

/// Default base time limit of one attempt (`DBBACKUP_STORE_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default slowest transfer rate treated as working, bytes per second
/// (`DBBACKUP_STORE_MIN_THROUGHPUT`).
pub const DEFAULT_MIN_THROUGHPUT: u64 = 64 << 10;

/// The longest share of an attempt's limit a body's size can claim (keeps deadlines in range).
const MAX_BODY_TIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Time limits of one HTTP attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    /// Connecting plus the first byte of the answer; also the longest gap in a response body.
    pub timeout: Duration,
    /// The slowest rate (bytes per second) a body may move at; its size's share of the limit.
    pub min_throughput: u64,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        AttemptLimits { timeout: DEFAULT_TIMEOUT, min_throughput: DEFAULT_MIN_THROUGHPUT }
    }
}

impl AttemptLimits {
    /// The limit for moving a body of `bytes` bytes (plus the base).
    pub fn for_body(&self, bytes: u64) -> Duration {
        let rate = self.min_throughput.max(1);
        // A length announced by the server is not trusted to stay in range.
        let body = Duration::try_from_secs_f64(bytes as f64 / rate as f64).unwrap_or(MAX_BODY_TIME);
        self.timeout.saturating_add(body.min(MAX_BODY_TIME))
    }

    fn explain(&self, bytes: u64) -> String {
        if bytes == 0 {
            format!("DBBACKUP_STORE_TIMEOUT {}", humantime::format_duration(self.timeout))
        } else {
            format!(
                "DBBACKUP_STORE_TIMEOUT {} + {bytes} bytes at DBBACKUP_STORE_MIN_THROUGHPUT {} bytes/s",
                humantime::format_duration(self.timeout),
                self.min_throughput
            )
        }
    }
}

/// Builds object_store's reqwest client and wraps it with [`AttemptLimits`].
#[derive(Debug)]
pub(crate) struct TimedConnector {
    limits: AttemptLimits,
}

impl TimedConnector {
    pub(crate) fn new(limits: AttemptLimits) -> Self {
        TimedConnector { limits }
    }
}

impl HttpConnector for TimedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(TimedService { inner, limits: self.limits }))
    }
}

#[derive(Debug)]
struct TimedService {
    inner: HttpClient,
    limits: AttemptLimits,
}

/// A time limit of one attempt ran out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TimedOut(String);

fn timed_out(msg: String) -> HttpError {
    HttpError::new(HttpErrorKind::Timeout, TimedOut(msg))
}

#[async_trait]
impl HttpService for TimedService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let sent = req.body().content_length() as u64;
        let limit = self.limits.for_body(sent);
        let resp = match tokio::time::timeout(limit, self.inner.execute(req)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(timed_out(format!(
                    "no answer from the store within {} ({}); raise them for a slower link",
                    humantime::format_duration(limit),
                    self.limits.explain(sent)
                )));
            }
        };
        let (parts, body) = resp.into_parts();
        let length = parts
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = HttpResponseBody::new(TimedBody::new(body, self.limits, length));
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// A response body that fails when no data comes for `timeout`, or when the whole body takes
/// longer than its size allows at the floor rate.
struct TimedBody {
    inner: HttpResponseBody,
    limits: AttemptLimits,
    length: Option<u64>,
    received: u64,
    /// When the whole body must be in (known length only).
    deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl TimedBody {
    fn new(inner: HttpResponseBody, limits: AttemptLimits, length: Option<u64>) -> Self {
        let now = Instant::now();
        let deadline = length.map(|l| now + limits.for_body(l));
        let first = next_wake(now, limits.timeout, deadline);
        TimedBody {
            inner,
            limits,
            length,
            received: 0,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    fn expired(&self) -> HttpError {
        let now = Instant::now();
        match (self.deadline, self.length) {
            (Some(d), Some(l)) if now >= d => timed_out(format!(
                "the store's answer ({l} bytes) did not arrive within {} ({}): {} bytes came; raise them for a slower link",
                humantime::format_duration(self.limits.for_body(l)),
                self.limits.explain(l),
                self.received
            )),
            _ => timed_out(format!(
                "the store sent nothing for {} (DBBACKUP_STORE_TIMEOUT) after {} bytes of its answer",
                humantime::format_duration(self.limits.timeout),
                self.received
            )),
        }
    }
}

fn next_wake(now: Instant, idle: Duration, deadline: Option<Instant>) -> Instant {
    let idle = now + idle;
    match deadline {
        Some(d) => d.min(idle),
        None => idle,
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let wake = next_wake(Instant::now(), this.limits.timeout, this.deadline);
                    this.timer.as_mut().reset(wake);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(this.expired()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_scale_with_the_body() {
        let l = AttemptLimits { timeout: Duration::from_secs(30), min_throughput: 64 << 10 };
        assert_eq!(l.for_body(0), Duration::from_secs(30));
        // A 64 MiB part: 30 s + 1024 s at 64 KiB/s.
        assert_eq!(l.for_body(64 << 20), Duration::from_secs(30 + 1024));
        assert!(l.explain(10).contains("DBBACKUP_STORE_MIN_THROUGHPUT"));
        assert!(AttemptLimits { min_throughput: 0, ..l }.for_body(1) > Duration::ZERO);
        // A hostile Content-Length cannot overflow a deadline.
        let huge = AttemptLimits { min_throughput: 1, ..l }.for_body(u64::MAX);
        assert_eq!(huge, Duration::from_secs(30) + MAX_BODY_TIME);
        let _ = tokio::time::Instant::now() + huge;
    }
}
