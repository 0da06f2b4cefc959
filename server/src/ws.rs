//! WebSocket endpoints: the y-websocket one (`/ws/{doc}`, one document per socket) and the
//! multiplexed one (`/ws`, many documents per socket, see `docs/protocol.md`).
//!
//! The upgrade is done here with `tokio-tungstenite` rather than axum's wrapper because the
//! writer needs raw frames: large payloads (a multi-megabyte initial sync shared by a whole
//! class) go out as 64 KiB fragments sliced from one shared buffer, so a join storm costs
//! one copy of the document, not one per joiner.
//!
//! Each socket has two halves. The reader decodes frames and hands messages to rooms (it
//! waits when a room is busy: back-pressure). The writer drains the socket's outbox, which
//! rooms fill without ever waiting, and writes everything queued before one flush.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

use lectern_collab::outbox::{Outbox, OutboxReceiver, Route};
use lectern_collab::protocol::decode_shared_frame;
use lectern_collab::{CloseReason, DocId, Membership, TokenBucket};

use lectern_db::Accounts;

use crate::AppState;
use crate::auth::AuthError;
use crate::config::AnonymousAccess;
use crate::credentials::{self, Credentials};
use crate::metrics::SocketMetrics;

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Payloads larger than this go out as continuation frames sliced from one shared buffer.
const FRAGMENT_BYTES: usize = 64 * 1024;

/// Most frames written before one flush; bounds how long a busy socket goes unflushed.
const MAX_FRAMES_PER_FLUSH: usize = 512;

/// How long a closing socket waits for the client's close reply before dropping it.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-socket read buffer: small, because a classroom server holds thousands of mostly idle
/// sockets and a keystroke's update is tens of bytes; tungstenite grows it for large
/// messages.
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Multiplexed socket, client to server: stop receiving this document.
pub const MSG_LEAVE_DOC: u8 = 100;
/// Multiplexed socket, server to client: this document was closed (close code + reason).
pub const MSG_DOC_CLOSED: u8 = 101;

/// Close codes, documented in `docs/protocol.md`.
pub mod close_code {
    /// Text frames are not part of the protocol.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The frame was not valid y-sync (or not a valid update).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A limit of the multiplexed socket was exceeded (too many documents).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message or the document grew past its configured limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Storage failed; reconnect later.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The client read too slowly and was dropped; reconnect to resync.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// No valid token (missing, malformed, expired or revoked); reconnect with a new one.
    pub const UNAUTHENTICATED: u16 = 4401;
    /// The token is valid but does not allow this document (or no longer does).
    pub const FORBIDDEN: u16 = 4403;
    /// The live session ended; reopen the document to review it read-only.
    pub const SESSION_ENDED: u16 = 4410;
    /// Too many of the client's updates wait for changes the server never received; they
    /// were dropped. Reconnect to resync.
    pub const TOO_MANY_PENDING: u16 = 4429;
    /// This node is shutting down (draining): reconnect at once, without backoff; behind a
    /// load balancer the next connection lands on another node. 45xx codes are retryable
    /// (stock y-websocket 3 reconnects on them; it gives up on 44xx).
    pub const DRAINING: u16 = 4503;
}

/// What a socket serves.
#[derive(Debug, Clone)]
pub enum Target {
    /// One document, stock y-websocket framing.
    Document(DocId),
    /// Many documents, each frame prefixed with its document id.
    Multiplexed,
}

/// A close the server sends: code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Close {
    code: u16,
    reason: &'static str,
}

impl Close {
    fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    fn from_room(reason: CloseReason) -> Self {
        let code = match reason {
            CloseReason::InvalidMessage => close_code::INVALID_PAYLOAD,
            CloseReason::DocumentTooLarge => close_code::MESSAGE_TOO_BIG,
            CloseReason::Lagging => close_code::TRY_AGAIN_LATER,
            CloseReason::StorageUnavailable => close_code::INTERNAL_ERROR,
            CloseReason::ShuttingDown => close_code::DRAINING,
            CloseReason::Unauthenticated => close_code::UNAUTHENTICATED,
            CloseReason::Forbidden => close_code::FORBIDDEN,
            CloseReason::SessionEnded => close_code::SESSION_ENDED,
            CloseReason::TooManyPending => close_code::TOO_MANY_PENDING,
            CloseReason::AwarenessLimit => close_code::POLICY_VIOLATION,
            CloseReason::DocumentUnreadable => close_code::INTERNAL_ERROR,
            CloseReason::RoomFailed => close_code::INTERNAL_ERROR,
            CloseReason::ReservedClientId => close_code::POLICY_VIOLATION,
        };
        Self::new(code, reason.description())
    }

    fn frame(&self) -> Message {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(self.code),
            reason: Utf8Bytes::from_static(self.reason),
        }))
    }
}

/// Answers a WebSocket upgrade request and serves the socket in a new task.
pub fn upgrade(mut request: Request, state: AppState, target: Target) -> Response {
    let key = match validate_upgrade(request.headers()) {
        Ok(key) => key,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let credentials =
        Credentials::from_request(state.authenticator(), request.uri(), request.headers());
    let select_subprotocol = credentials::offers_subprotocol(request.headers());
    let on_upgrade = hyper::upgrade::on(&mut request);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(state.config().max_message_bytes))
        .max_frame_size(Some(frame_limit(state.config().max_message_bytes)));
    let tracker = state.connections().clone();
    let handshake_timeout = Duration::from_secs(state.config().ws_handshake_timeout_secs.max(1));
    tracker.spawn(async move {
        // The 101 is written and the connection handed over here; a client that does not
        // take it (or a stuck write) must not hold the connection and its task forever.
        let Ok(upgraded) = tokio::time::timeout(handshake_timeout, on_upgrade).await else {
            state.metrics().transport.handshake_timeouts.inc();
            tracing::debug!("websocket handshake timed out");
            return;
        };
        match upgraded {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve_socket(socket, state, target, credentials).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if select_subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(credentials::SUBPROTOCOL),
        );
    }
    response
}

/// The largest single WebSocket frame read before giving up on a socket.
///
/// Larger than the message limit on purpose: a frame up to this size is read whole, so the
/// message-size check fails with the stream still in step and the client cleanly gets 1009.
/// A frame beyond it is refused from its header alone; its unread payload then makes the
/// kernel reset the connection, and the client may see 1006 instead of 1009.
fn frame_limit(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_mul(2)
        .max(max_message_bytes.saturating_add(1024 * 1024))
}

fn validate_upgrade(headers: &HeaderMap) -> Result<String, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err("expected a WebSocket upgrade request");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != "13")
    {
        return Err("unsupported WebSocket version (expected 13)");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|key| key.to_str().ok())
        .map(str::to_owned)
        .ok_or("missing Sec-WebSocket-Key")
}

/// Decrements the open-connections gauge however the socket ends.
struct ConnectionGuard(SocketMetrics);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

async fn serve_socket(
    socket: Socket,
    state: AppState,
    target: Target,
    credentials: Result<Credentials, AuthError>,
) {
    let metrics = state.metrics().sockets.clone();
    metrics.connections.inc();
    let _guard = ConnectionGuard(metrics.clone());

    let (sink, stream) = socket.split();
    let (outbox, outbox_receiver) = lectern_collab::outbox(state.config().max_queued_bytes);
    let routes = Routes::new(metrics.routes.clone());
    let (fatal_sender, fatal_receiver) = oneshot::channel();
    let (closed_routes_sender, closed_routes) = mpsc::unbounded_channel();
    let writer_done = CancellationToken::new();
    let reader_done = CancellationToken::new();

    let writer = Writer {
        sink,
        outbox: outbox_receiver,
        routes: routes.clone(),
        multiplexed: matches!(target, Target::Multiplexed),
        metrics: metrics.clone(),
        closed_routes: closed_routes_sender,
    };
    let writer_task = tokio::spawn(writer.run(
        fatal_receiver,
        state.shutdown_token(),
        reader_done.clone(),
        writer_done.clone(),
    ));

    let mut reader = Reader {
        state: state.clone(),
        outbox,
        routes,
        memberships: HashMap::new(),
        routes_by_doc: HashMap::new(),
        next_route: 0,
        refused_opens: 0,
        frames: TokenBucket::full(state.config().max_frames_burst),
        metrics,
        fatal: Some(fatal_sender),
        credentials,
    };
    reader
        .run(stream, target, closed_routes, writer_done.clone())
        .await;
    reader.leave_all().await;
    reader_done.cancel();
    drop(reader);
    if let Err(error) = writer_task.await {
        tracing::error!(%error, "socket writer task failed");
    }
}

/// Route → the document-id prefix frames of that route carry (multiplexed sockets only).
///
/// Shared by the reader (adds a route when a document opens, removes it when the client
/// leaves) and the writer (reads prefixes, removes a route when the server closes its
/// document). An entry lives exactly as long as its document is open on the socket, which
/// the `lectern_socket_routes` gauge shows.
#[derive(Debug, Clone)]
struct Routes(Arc<RouteMap>);

#[derive(Debug)]
struct RouteMap {
    map: Mutex<HashMap<Route, Bytes>>,
    gauge: Gauge,
}

impl Drop for RouteMap {
    fn drop(&mut self) {
        let left = self.map.get_mut().map_or(0, |map| map.len());
        self.gauge.dec_by(i64::try_from(left).unwrap_or(i64::MAX));
    }
}

impl Routes {
    fn new(gauge: Gauge) -> Self {
        Self(Arc::new(RouteMap {
            map: Mutex::new(HashMap::new()),
            gauge,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Route, Bytes>> {
        // Held for single map operations only; a poisoned map is still consistent.
        self.0
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn prefix(&self, route: Route) -> Option<Bytes> {
        self.lock().get(&route).cloned()
    }

    fn insert(&self, route: Route, prefix: Bytes) {
        if self.lock().insert(route, prefix).is_none() {
            self.0.gauge.inc();
        }
    }

    fn remove(&self, route: Route) -> Option<Bytes> {
        let removed = self.lock().remove(&route);
        if removed.is_some() {
            self.0.gauge.dec();
        }
        removed
    }
}

fn doc_prefix(doc: &DocId) -> Bytes {
    let mut buffer = Vec::with_capacity(doc.as_str().len() + 2);
    buffer.write_string(doc.as_str());
    Bytes::from(buffer)
}

struct Reader {
    /// What the socket authenticated as; `Err` when its token did not verify.
    credentials: Result<Credentials, AuthError>,
    state: AppState,
    outbox: Outbox,
    routes: Routes,
    memberships: HashMap<Route, Membership>,
    routes_by_doc: HashMap<DocId, Route>,
    next_route: Route,
    /// Documents this socket asked for and was refused; past
    /// `--max-refused-opens-per-socket` the socket is closed, so a client cannot make the
    /// server decide access in a loop.
    refused_opens: usize,
    /// Frames this socket may still send (`--max-frames-per-sec`, `--max-frames-burst`):
    /// every frame costs the rooms it reaches some work, so a client that floods them is
    /// closed rather than allowed to take a room's whole time from its classmates.
    frames: TokenBucket,
    metrics: SocketMetrics,
    fatal: Option<oneshot::Sender<Close>>,
}

impl Reader {
    async fn run(
        &mut self,
        mut stream: SplitStream<Socket>,
        target: Target,
        mut closed_routes: mpsc::UnboundedReceiver<Route>,
        writer_done: CancellationToken,
    ) {
        let expires_at = match &self.credentials {
            Ok(credentials) => credentials.expires_at(),
            Err(error) => {
                tracing::info!(%error, "closing socket: token refused");
                self.close_socket(Close::new(
                    close_code::UNAUTHENTICATED,
                    "invalid or expired token",
                ));
                return self.drain_until_closed(&mut stream, &writer_done).await;
            }
        };
        if matches!(self.credentials, Ok(Credentials::Anonymous))
            && self.state.config().anonymous_access == AnonymousAccess::None
        {
            tracing::debug!("closing socket: no token");
            self.close_socket(Close::new(close_code::UNAUTHENTICATED, "missing token"));
            return self.drain_until_closed(&mut stream, &writer_done).await;
        }
        if let Err(close) = self.check_session().await {
            self.close_socket(close);
            return self.drain_until_closed(&mut stream, &writer_done).await;
        }
        if let Target::Document(doc) = &target
            && self.join(doc.clone(), 0).await.is_err()
        {
            return self.drain_until_closed(&mut stream, &writer_done).await;
        }
        let expiry = until_unix_time(expires_at);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                biased;
                () = writer_done.cancelled() => break,
                () = &mut expiry => {
                    tracing::info!("closing socket: token expired");
                    self.close_socket(Close::new(close_code::UNAUTHENTICATED, "token expired"));
                    return self.drain_until_closed(&mut stream, &writer_done).await;
                }
                Some(route) = closed_routes.recv() => self.forget_route(route),
                message = stream.next() => {
                    let config = self.state.config();
                    let flooding = matches!(message, Some(Ok(ref frame)) if !matches!(frame, Message::Close(_)))
                        && !self.frames.take(config.max_frames_per_sec, config.max_frames_burst);
                    let outcome = match message {
                        _ if flooding => Err(Close::new(
                            close_code::POLICY_VIOLATION,
                            "too many messages; slow down",
                        )),
                        None | Some(Ok(Message::Close(_))) => return,
                        Some(Ok(Message::Binary(frame))) => {
                            self.metrics.messages_in.inc();
                            self.metrics.bytes_in.inc_by(frame.len() as u64);
                            match &target {
                                Target::Document(_) => self.handle_document_frame(&frame).await,
                                Target::Multiplexed => self.handle_multiplexed_frame(&frame).await,
                            }
                        }
                        Some(Ok(Message::Text(_))) => Err(Close::new(
                            close_code::UNSUPPORTED_DATA,
                            "text frames are not supported; send binary y-sync messages",
                        )),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                            tracing::info!(size, max_size, "closing socket: message too big");
                            Err(Close::new(close_code::MESSAGE_TOO_BIG, "message exceeds the size limit"))
                        }
                        Some(Err(error)) => {
                            tracing::debug!(%error, "socket read failed");
                            return;
                        }
                    };
                    if let Err(close) = outcome {
                        self.metrics.protocol_errors.inc();
                        tracing::info!(code = close.code, reason = close.reason, "closing socket");
                        self.close_socket(close);
                        return self.drain_until_closed(&mut stream, &writer_done).await;
                    }
                }
            }
        }
        self.drain_until_closed(&mut stream, &writer_done).await;
    }

    /// After a close was decided, reads (and ignores) until the client's close reply, the
    /// end of the stream, or a timeout, so the close handshake can complete.
    async fn drain_until_closed(
        &mut self,
        stream: &mut SplitStream<Socket>,
        writer_done: &CancellationToken,
    ) {
        // Only wait for the reply once the writer has actually sent our close frame.
        let drain = async {
            writer_done.cancelled().await;
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, drain).await;
    }

    /// Refuses tokens of a login session that was signed out (or whose refresh token was
    /// reused): their signature stays valid until they expire, the session does not.
    async fn check_session(&self) -> Result<(), Close> {
        let Some(session) = self
            .credentials
            .as_ref()
            .ok()
            .and_then(Credentials::session)
        else {
            return Ok(());
        };
        match Accounts::new(self.state.database().clone())
            .family_revoked(session)
            .await
        {
            Ok(false) => Ok(()),
            Ok(true) => Err(Close::new(close_code::UNAUTHENTICATED, "signed out")),
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "session lookup failed"
                );
                Err(Close::from_room(CloseReason::StorageUnavailable))
            }
        }
    }

    /// Asks the writer to close the whole socket with `close`.
    fn close_socket(&mut self, close: Close) {
        if let Some(fatal) = self.fatal.take() {
            let _ = fatal.send(close);
        }
    }

    async fn join(&mut self, doc: DocId, route: Route) -> Result<(), ()> {
        // Only called once the credentials verified (see `run`).
        let Ok(credentials) = &self.credentials else {
            return Err(());
        };
        let Some(access) = credentials.access(&self.state, &doc).await else {
            let reason = match credentials {
                Credentials::Anonymous => CloseReason::Unauthenticated,
                Credentials::User(_) | Credentials::Document(_) => CloseReason::Forbidden,
            };
            // Per request and attacker-driven: never at INFO (one socket produced 164k lines in
            // 20 s). A socket that keeps asking is closed instead (`handle_multiplexed_frame`).
            tracing::debug!(%doc, ?reason, "document refused");
            self.refused_opens += 1;
            self.outbox.close(route, reason);
            return Err(());
        };
        let guest = credentials.guest(access);
        match self
            .state
            .rooms()
            .join(doc.clone(), guest, self.outbox.clone(), route)
            .await
        {
            Ok(membership) => {
                self.memberships.insert(route, membership);
                self.routes_by_doc.insert(doc, route);
                Ok(())
            }
            Err(error) => {
                let reason = match &error {
                    lectern_collab::JoinError::ShuttingDown => CloseReason::ShuttingDown,
                    lectern_collab::JoinError::Unavailable => CloseReason::StorageUnavailable,
                    lectern_collab::JoinError::Unreadable => {
                        // The room already logged the damage when it failed to load; asking
                        // again is attacker-driven (each ask reloads the document), so it
                        // counts against the socket's refusals like a forbidden document.
                        self.refused_opens += 1;
                        CloseReason::DocumentUnreadable
                    }
                };
                if reason != CloseReason::DocumentUnreadable {
                    tracing::warn!(%doc, error = &error as &dyn std::error::Error, "join failed");
                }
                self.outbox.close(route, reason);
                Err(())
            }
        }
    }

    async fn handle_document_frame(&mut self, frame: &Bytes) -> Result<(), Close> {
        if crate::ai::control::is_request(frame) {
            return self.handle_ai_request(0, frame);
        }
        // Update payloads stay encoded (shared, not copied) until the room has checked the
        // sender's access and the update limits.
        let messages = decode_shared_frame(frame).map_err(|error| {
            tracing::info!(%error, "invalid frame");
            Close::new(close_code::INVALID_PAYLOAD, "invalid y-sync message")
        })?;
        let Some(membership) = self.memberships.get(&0) else {
            return Ok(()); // closed by the room; the writer is closing the socket
        };
        for message in messages {
            if membership.send(message).await.is_err() {
                break; // the room is gone and has asked the writer to close
            }
        }
        Ok(())
    }

    async fn handle_multiplexed_frame(&mut self, frame: &Bytes) -> Result<(), Close> {
        let invalid = || Close::new(close_code::INVALID_PAYLOAD, "invalid multiplexed frame");
        let mut cursor = Cursor::new(frame);
        let name = cursor.read_string().map_err(|_| invalid())?;
        let doc = DocId::new(name).map_err(|_| invalid())?;
        let body = &frame[cursor.next..];
        if body.first() == Some(&MSG_LEAVE_DOC) {
            if let Some(route) = self.routes_by_doc.get(&doc).copied()
                && let Some(membership) = self.memberships.remove(&route)
            {
                self.forget_route(route);
                membership.leave().await;
            }
            return Ok(());
        }
        if crate::ai::control::is_request(body) {
            // Answered on the document's route, so the document must be open here.
            return match self.routes_by_doc.get(&doc).copied() {
                Some(route) => self.handle_ai_request(route, body),
                None => {
                    tracing::debug!(%doc, "AI request for a document not open on this socket");
                    Ok(())
                }
            };
        }
        let messages = decode_shared_frame(&frame.slice(cursor.next..)).map_err(|error| {
            tracing::info!(%error, %doc, "invalid frame");
            invalid()
        })?;
        let route = match self.routes_by_doc.get(&doc) {
            Some(route) => *route,
            None => {
                if self.routes_by_doc.len() >= self.state.config().max_docs_per_socket {
                    return Err(Close::new(
                        close_code::POLICY_VIOLATION,
                        "too many documents open on one socket",
                    ));
                }
                let route = self.next_route;
                self.next_route += 1;
                self.routes.insert(route, doc_prefix(&doc));
                if self.join(doc, route).await.is_err() {
                    if self.refused_opens > self.state.config().max_refused_opens_per_socket {
                        return Err(Close::new(
                            close_code::POLICY_VIOLATION,
                            "too many refused documents on one socket",
                        ));
                    }
                    return Ok(()); // the writer reports the per-document close
                }
                route
            }
        };
        if let Some(membership) = self.memberships.get(&route) {
            for message in messages {
                if membership.send(message).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// An AI control message (see `ai::control`): answered by a task of the AI service, so
    /// a request waiting for the model never holds up this socket's document traffic.
    fn handle_ai_request(&mut self, route: Route, message: &[u8]) -> Result<(), Close> {
        let request = crate::ai::control::decode_request(message).map_err(|error| {
            tracing::info!(%error, "invalid AI control message");
            Close::new(close_code::INVALID_PAYLOAD, "invalid AI control message")
        })?;
        let requester = match &self.credentials {
            Ok(Credentials::User(principal)) if principal.origin == crate::auth::Origin::Local => {
                Some(crate::ai::Requester {
                    user_id: principal.subject.clone(),
                    role: principal.role,
                })
            }
            _ => None,
        };
        let ai = self.state.ai().clone();
        let outbox = self.outbox.clone();
        let rate_limits_key = requester.as_ref().map(|r| format!("user:{}", r.user_id));
        let state = self.state.clone();
        let span = tracing::info_span!("ai_control");
        let shutdown = ai.shutdown_token();
        let task = async move {
            // Checked in the task: in a cluster the bucket is in Redis, and this socket's
            // reader does not wait for it.
            let rate_limited = match rate_limits_key {
                Some(key) => state.rate_limits().api.check(&key).await.err(),
                None => None,
            };
            let reply = tokio::select! {
                () = shutdown.cancelled() => return,
                reply = crate::ai::control::answer(&ai, requester, rate_limited, request) => reply,
            };
            // The socket may be gone by now; then nobody is waiting for the answer.
            let _ = outbox.send(route, Bytes::from(reply));
        };
        self.state
            .ai()
            .spawn_owned(tracing::Instrument::instrument(task, span));
        Ok(())
    }

    /// Forgets a document of this socket: the client left it, or the server closed it.
    /// The prefix goes too (frames still queued for the route are then dropped by the
    /// writer); route numbers are never reused, so nothing can be misrouted.
    fn forget_route(&mut self, route: Route) {
        self.memberships.remove(&route);
        self.routes_by_doc.retain(|_, known| *known != route);
        self.routes.remove(route);
    }

    async fn leave_all(&mut self) {
        for (_, membership) in self.memberships.drain() {
            membership.leave().await;
        }
    }
}

struct Writer {
    sink: SplitSink<Socket, Message>,
    outbox: OutboxReceiver,
    routes: Routes,
    multiplexed: bool,
    metrics: SocketMetrics,
    closed_routes: mpsc::UnboundedSender<Route>,
}

impl Writer {
    async fn run(
        mut self,
        mut fatal: oneshot::Receiver<Close>,
        shutdown: CancellationToken,
        reader_done: CancellationToken,
        writer_done: CancellationToken,
    ) {
        let close = self
            .write_until_close(&mut fatal, &shutdown, &reader_done)
            .await;
        if let Some(close) = close {
            let _ = self.sink.send(close.frame()).await;
        }
        writer_done.cancel();
        // Give the close handshake time to finish, then drop the socket.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, reader_done.cancelled()).await;
        let _ = self.sink.close().await;
    }

    /// Writes frames until something decides the socket closes; returns the close to send
    /// (`None` when the client is already gone).
    async fn write_until_close(
        &mut self,
        fatal: &mut oneshot::Receiver<Close>,
        shutdown: &CancellationToken,
        reader_done: &CancellationToken,
    ) -> Option<Close> {
        let close_requests = self.outbox.close_requests();
        loop {
            tokio::select! {
                biased;
                close = &mut *fatal => return close.ok(),
                () = shutdown.cancelled() => {
                    return Some(Close::from_room(CloseReason::ShuttingDown));
                }
                () = close_requests.requested() => {
                    for request in close_requests.take() {
                        if !self.multiplexed {
                            return Some(Close::from_room(request.reason));
                        }
                        if self.close_route(request.route, request.reason).await.is_err() {
                            return None;
                        }
                    }
                }
                item = self.outbox.recv() => {
                    let item = item?;
                    if self.write_batch(item.route, item.payload).await.is_err() {
                        return None;
                    }
                }
                () = reader_done.cancelled() => return None,
            }
        }
    }

    /// Writes one frame and whatever else is already queued, then flushes once.
    async fn write_batch(&mut self, route: Route, payload: Bytes) -> Result<(), WsError> {
        self.write(route, payload).await?;
        for _ in 1..MAX_FRAMES_PER_FLUSH {
            let Some(item) = self.outbox.try_recv() else {
                break;
            };
            self.write(item.route, item.payload).await?;
        }
        self.sink.flush().await
    }

    async fn write(&mut self, route: Route, payload: Bytes) -> Result<(), WsError> {
        let prefix = if self.multiplexed {
            match self.routes.prefix(route) {
                Some(prefix) => prefix,
                None => return Ok(()), // that document was closed on this socket
            }
        } else {
            Bytes::new()
        };
        self.metrics.messages_out.inc();
        self.metrics
            .bytes_out
            .inc_by((prefix.len() + payload.len()) as u64);
        if prefix.len() + payload.len() <= FRAGMENT_BYTES {
            let message = if prefix.is_empty() {
                payload
            } else {
                concat(&prefix, &payload)
            };
            return self.sink.feed(Message::Binary(message)).await;
        }
        // Fragment: the first frame carries the prefix, the rest are zero-copy slices.
        let head_len = FRAGMENT_BYTES
            .saturating_sub(prefix.len())
            .min(payload.len());
        let head = concat(&prefix, &payload[..head_len]);
        self.sink
            .feed(Message::Frame(Frame::message(
                head,
                OpCode::Data(Data::Binary),
                false,
            )))
            .await?;
        let mut offset = head_len;
        while offset < payload.len() {
            let end = (offset + FRAGMENT_BYTES).min(payload.len());
            let is_final = end == payload.len();
            let fragment = payload.slice(offset..end);
            self.sink
                .feed(Message::Frame(Frame::message(
                    fragment,
                    OpCode::Data(Data::Continue),
                    is_final,
                )))
                .await?;
            offset = end;
        }
        Ok(())
    }

    /// Multiplexed sockets: tells the client one document was closed, and stops routing it.
    async fn close_route(&mut self, route: Route, reason: CloseReason) -> Result<(), WsError> {
        let Some(prefix) = self.routes.remove(route) else {
            return Ok(());
        };
        let close = Close::from_room(reason);
        let mut body = Vec::with_capacity(prefix.len() + close.reason.len() + 8);
        body.extend_from_slice(&prefix);
        body.write_u8(MSG_DOC_CLOSED);
        body.write_var(close.code);
        body.write_string(close.reason);
        let _ = self.closed_routes.send(route);
        self.sink.send(Message::Binary(Bytes::from(body))).await
    }
}

/// Resolves at `unix_secs` (never, for `None`).
async fn until_unix_time(unix_secs: Option<u64>) {
    match unix_secs {
        Some(at) => {
            let remaining = at.saturating_sub(crate::auth::now_secs());
            tokio::time::sleep(Duration::from_secs(remaining)).await;
        }
        None => std::future::pending().await,
    }
}

fn concat(prefix: &[u8], payload: &[u8]) -> Bytes {
    let mut buffer = BytesMut::with_capacity(prefix.len() + payload.len());
    buffer.extend_from_slice(prefix);
    buffer.extend_from_slice(payload);
    buffer.freeze()
}
