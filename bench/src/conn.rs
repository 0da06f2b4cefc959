//! Opening a client connection: loopback-only target, TCP without Nagle, WebSocket
//! handshake, the dialect's opening frames, and waiting for sync step 2.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use yrs::{Doc, ReadTxn as _, StateVector, Transact as _};

use crate::wire::{Incoming, Protocol, Wire};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one client may take from TCP connect to sync step 2.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The server under test: always a loopback address.
#[derive(Debug, Clone)]
pub struct Target {
    /// Loopback socket address.
    pub addr: SocketAddr,
    /// `host[:port]` as written in the URL, for the `Host` header.
    pub authority: String,
    /// Path prefix the document name is appended to (no trailing `/`).
    pub base_path: String,
    /// Dialect.
    pub protocol: Protocol,
    /// Hocuspocus token sent in the `Auth` message.
    pub token: String,
}

impl Target {
    /// Parses `ws://HOST[:PORT][/PATH]`; HOST must be `127.0.0.1`, `localhost` or `[::1]`,
    /// so the generator can only ever load a server on this machine.
    pub fn parse(url: &str, protocol: Protocol, token: &str) -> Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .with_context(|| format!("--url must start with ws:// (got {url:?})"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !p.ends_with(']') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("bad port in {url:?}"))?,
            ),
            _ => (authority, 80),
        };
        let ip = match host {
            "127.0.0.1" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "[::1]" => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            other => bail!("refusing to load {other:?}: only 127.0.0.1, localhost or [::1]"),
        };
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            authority: authority.to_owned(),
            base_path: path.trim_end_matches('/').to_owned(),
            protocol,
            token: token.to_owned(),
        })
    }

    pub fn wire(&self, doc: &str) -> Wire {
        Wire::new(self.protocol, doc)
    }

    /// TCP connect (no Nagle: edits are small and latency-sensitive) and WS handshake.
    pub async fn connect(&self, wire: &Wire) -> Result<Ws> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let url = format!("ws://{}{}", self.authority, wire.path(&self.base_path));
        let config = WebSocketConfig::default()
            .max_message_size(Some(512 << 20))
            .max_frame_size(Some(512 << 20));
        let (ws, _resp) = client_async_with_config(url.as_str(), tcp, Some(config))
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
        Ok(ws)
    }
}

/// Sends the opening frames (Hocuspocus `Auth`, then step 1 of an empty document) and
/// reads until the server's sync step 2, answering the server's step 1 as stock clients do.
/// Returns the step-2 update (a zero-copy slice of the received message).
pub async fn open_and_sync(ws: &mut Ws, wire: &Wire, token: &str) -> Result<Bytes> {
    for frame in wire.open(token, &StateVector::default()) {
        ws.send(Message::binary(frame)).await?;
    }
    // Bounded: a server that never sends step 2 is cut off by the caller's timeout, and a
    // server that floods other messages runs into this bound.
    for _ in 0..1_000_000u32 {
        let msg = match ws.next().await {
            Some(msg) => msg.context("reading from server before sync step 2")?,
            None => bail!("server closed the connection before sync step 2"),
        };
        let data = match msg {
            Message::Binary(data) => data,
            Message::Close(frame) => bail!("server closed before sync step 2: {frame:?}"),
            _ => continue,
        };
        let mut step2 = None;
        let mut answer_step1 = false;
        let mut denied = None;
        wire.parse(&data, |m| match m {
            Incoming::SyncStep2(u) => step2 = Some(data.slice_ref(u)),
            Incoming::SyncStep1(_) => answer_step1 = true,
            Incoming::PermissionDenied(reason) => denied = Some(reason.to_owned()),
            Incoming::Update(_) | Incoming::Ignored | Incoming::Authenticated => {}
        })?;
        if let Some(reason) = denied {
            bail!("server denied access: {reason}");
        }
        if answer_step1 {
            // Our document is empty at this point: answer with the empty update.
            ws.send(Message::binary(wire.sync_step2(empty_update())))
                .await?;
        }
        if let Some(u) = step2 {
            return Ok(u);
        }
    }
    bail!("no sync step 2 after a million messages")
}

/// The v1 encoding of an update with no changes (what an empty document's step 2 holds).
pub fn empty_update() -> Vec<u8> {
    static EMPTY: LazyLock<Vec<u8>> = LazyLock::new(|| {
        Doc::new()
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    });
    EMPTY.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        let t = Target::parse("ws://127.0.0.1:8080/ws/", Protocol::YWebsocket, "").expect("ok");
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.base_path, "/ws");
        let t = Target::parse("ws://localhost:1234", Protocol::YWebsocket, "").expect("ok");
        assert_eq!(t.base_path, "");
        let t = Target::parse("ws://[::1]:9", Protocol::YWebsocket, "").expect("ok");
        assert!(t.addr.is_ipv6());
        assert!(Target::parse("ws://10.0.0.1:80/", Protocol::YWebsocket, "").is_err());
        assert!(Target::parse("wss://127.0.0.1/", Protocol::YWebsocket, "").is_err());
    }

    #[test]
    fn empty_update_is_two_zero_lengths() {
        // No structs, empty delete set.
        assert_eq!(empty_update(), [0, 0]);
    }
}
