//! The accept loop: HTTP/1 connections (with WebSocket upgrades) served by hyper, with the
//! limits a public server needs against slow and numerous clients.
//!
//! `axum::serve` sets none of them, so one laptop could hold every file descriptor with idle
//! or trickling connections (slowloris) and the server stopped answering even `/healthz`.
//! Here:
//! - a request head must arrive within `--http-header-timeout-secs` of the connection
//!   opening or of the previous response (hyper's header-read timeout, which therefore is
//!   also the keep-alive idle timeout);
//! - a request body must keep arriving ([`TimedBody`]): no gap longer than
//!   `--http-body-timeout-secs`, and at least `--http-body-min-bytes-per-sec` on average
//!   over the time the server spent waiting for it; bodies still stream (uploads are never
//!   buffered here);
//! - at most `--max-connections` TCP connections are held (a slot lives as long as the
//!   socket, WebSockets included); one more gets a fixed `503` with `Retry-After` and is
//!   closed without its request being read;
//! - the WebSocket handshake timeout lives in `ws.rs`, where the upgrade completes.
//!
//! Every accepted socket gets TCP_NODELAY, and handlers see the peer address as the request
//! extension `ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::AppState;
use crate::config::Config;
use crate::metrics::TransportMetrics;

/// File descriptors kept out of the automatic connection limit, at least: the database
/// pool, SQLite's files, uploads in flight, model files and the pipes of extraction
/// children.
const RESERVED_FDS: u64 = 256;

/// What a connection over the limit is told, written without reading its request.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 5\r\n\
Connection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 38\r\n\
\r\n\
server at its connection limit; retry\n";

/// Refused connections lingering at once so their client can read the 503 (beyond this,
/// they are dropped at once); each lingers at most [`REFUSAL_LINGER`].
const MAX_LINGERING_REFUSALS: usize = 64;
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// How long the accept loop pauses when accepting fails (out of file descriptors): the
/// error repeats at once otherwise, spinning a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The open-files limit after [`raise_open_files_limit`]: soft and hard (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// The limit in effect.
    pub soft: Option<u64>,
    /// The most it may be raised to.
    pub hard: Option<u64>,
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit (every socket is a
/// file descriptor; distributions default the soft limit to 1024) and returns the limit in
/// effect afterwards. Failing to raise it is logged, never fatal.
pub fn raise_open_files_limit() -> OpenFilesLimit {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    // An unlimited hard limit cannot be set as the soft one on Linux (it is capped by
    // fs.nr_open); the kernel's default nr_open is 2^20.
    let target = before.maximum.unwrap_or(1 << 20);
    if before.current.is_some_and(|soft| soft < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum: before.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, soft = ?before.current, "cannot raise the open-files limit");
        }
    }
    let after = getrlimit(Resource::Nofile);
    OpenFilesLimit {
        soft: after.current,
        hard: after.maximum,
    }
}

/// The connection limit in effect: `--max-connections`, or the open-files limit less
/// headroom (a tenth of it, at least [`RESERVED_FDS`]).
pub fn connection_limit(config: &Config) -> usize {
    if let Some(configured) = config.max_connections {
        return configured.max(1);
    }
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    let headroom = RESERVED_FDS.max(soft / 10);
    usize::try_from(soft.saturating_sub(headroom))
        .unwrap_or(usize::MAX)
        .max(16)
}

/// Per-request body limits (see [`TimedBody`]).
#[derive(Debug, Clone)]
struct BodyLimits {
    idle: Duration,
    min_bytes_per_sec: u64,
    timeouts: Counter,
}

/// Accepts connections on `listener` and serves `router` on them until `shutdown`
/// resolves; then stops accepting, lets in-flight requests finish (bounded by the shutdown
/// timeout) and returns. WebSockets are closed by the caller through the state.
pub(crate) async fn accept_loop(
    state: &AppState,
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let config = state.config();
    let metrics = state.metrics().transport.clone();
    let slots = Arc::new(Semaphore::new(connection_limit(config)));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    let header_timeout = Duration::from_secs(config.http_header_timeout_secs.max(1));
    let body_limits = BodyLimits {
        idle: Duration::from_secs(config.http_body_timeout_secs.max(1)),
        min_bytes_per_sec: config.http_body_min_bytes_per_sec,
        timeouts: metrics.body_timeouts.clone(),
    };
    let stop = state.shutdown_token();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE/ENFILE: the connection stays in the backlog; pause instead of
                    // spinning on the same error.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            tracing::debug!(%peer, "connection refused: at the connection limit");
            refuse(tcp, &lingering);
            continue;
        };
        // Nagle's algorithm would hold small frames (a keystroke's update) until the peer's
        // delayed ACK, ~40 ms on Linux: fatal to fan-out latency.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        let stream = CountedStream::new(tcp, permit, &metrics);
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            header_timeout,
            body_limits.clone(),
            metrics.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    let timeout = Duration::from_millis(config.shutdown_timeout_ms);
    if tokio::time::timeout(timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish in time");
    }
}

/// Serves one connection until it closes, its client is too slow, or shutdown (then the
/// request in flight, if any, finishes first).
async fn serve_connection(
    stream: CountedStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    body_limits: BodyLimits,
    metrics: TransportMetrics,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        let body_limits = body_limits.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = Body::new(TimedBody::new(body, body_limits));
            router
                .oneshot(axum::extract::Request::from_parts(parts, body))
                .await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        if error.is_timeout() {
            metrics.header_timeouts.inc();
            tracing::debug!(%peer, "connection closed: request head not received in time");
        } else {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// Tells a connection over the limit to come back later, without reading its request (that
/// is what would cost), then closes it. The client gets a moment to read the answer: closing
/// a socket with unread input resets it, and the reset can overtake the 503.
fn refuse(mut tcp: TcpStream, lingering: &Arc<Semaphore>) {
    // A fresh socket's send buffer is empty: this either writes it all or the peer is gone.
    let _ = tcp.try_write(REFUSAL);
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return; // many refusals at once: just close
    };
    tokio::spawn(async move {
        let _permit = permit;
        let linger = async {
            let _ = tcp.shutdown().await;
            let mut sink = [0u8; 1024];
            while matches!(tcp.read(&mut sink).await, Ok(read) if read > 0) {}
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, linger).await;
    });
}

/// A TCP stream holding one connection slot; the slot is freed when the socket is dropped,
/// however long it lives (an upgraded WebSocket keeps it).
struct CountedStream {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl CountedStream {
    fn new(tcp: TcpStream, slot: OwnedSemaphorePermit, metrics: &TransportMetrics) -> Self {
        metrics.tcp_connections.inc();
        Self {
            tcp,
            _slot: slot,
            gauge: metrics.tcp_connections.clone(),
        }
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Why a request body failed here.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("request body stalled: nothing received for {0:?}")]
    Stalled(Duration),
    #[error("request body too slow: {received} bytes in {waited:?} (minimum {minimum} bytes/s)")]
    TooSlow {
        received: u64,
        waited: Duration,
        minimum: u64,
    },
}

/// A request body that fails when its client stalls or trickles.
///
/// Only time the server spends *waiting for the client* counts: while a handler is busy
/// elsewhere (an upload waiting for the object store) the clock is stopped, so back-pressure
/// from the server never fails a client.
struct TimedBody {
    inner: Incoming,
    limits: BodyLimits,
    /// Armed when a poll finds no data, cleared when data arrives.
    stall: Option<Pin<Box<Sleep>>>,
    /// When the current wait for the client began.
    waiting_since: Option<Instant>,
    /// Time spent waiting for the client so far.
    waited: Duration,
    /// Data bytes received so far.
    received: u64,
}

impl TimedBody {
    fn new(inner: Incoming, limits: BodyLimits) -> Self {
        Self {
            inner,
            limits,
            stall: None,
            waiting_since: None,
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// Whether the client's average rate over the time waited is below the minimum, once
    /// the server has waited a whole idle timeout in all (short bodies never trip it).
    fn too_slow(&self) -> bool {
        let minimum = self.limits.min_bytes_per_sec;
        minimum > 0
            && self.waited >= self.limits.idle
            && (self.received as f64) < minimum as f64 * self.waited.as_secs_f64()
    }

    fn fail(&self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.limits.timeouts.inc();
        tracing::debug!(%error, "request body failed");
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                this.stall = None;
                let Some(Ok(frame)) = frame else {
                    return Poll::Ready(frame.map(|result| result.map_err(BodyError::from)));
                };
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.too_slow() {
                        return this.fail(BodyError::TooSlow {
                            received: this.received,
                            waited: this.waited,
                            minimum: this.limits.min_bytes_per_sec,
                        });
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let idle = this.limits.idle;
                let stall = this.stall.get_or_insert_with(|| {
                    this.waiting_since = Some(Instant::now());
                    Box::pin(tokio::time::sleep(idle))
                });
                if stall.as_mut().poll(cx).is_ready() {
                    return this.fail(BodyError::Stalled(idle));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
