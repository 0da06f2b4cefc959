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

/// The servers under test: one or more nodes serving the same documents (a cluster), each a
/// loopback [`Target`] of the same dialect.
#[derive(Debug, Clone)]
pub struct Nodes(Vec<Target>);

impl Nodes {
    /// Parses every URL (see [`Target::parse`]); at least one.
    pub fn parse(urls: &[String], protocol: Protocol, token: &str) -> Result<Nodes> {
        if urls.is_empty() {
            bail!("at least one --url");
        }
        let targets = urls
            .iter()
            .map(|url| Target::parse(url, protocol, token))
            .collect::<Result<Vec<_>>>()?;
        Ok(Nodes(targets))
    }

    /// Number of nodes (at least 1).
    pub fn len(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    /// The first node: the only one of single-node modes.
    pub fn first(&self) -> &Target {
        &self.0[0]
    }

    /// The node of global client `id` when rooms have `per_room` clients.
    pub fn of_client(&self, id: u32, per_room: u32) -> &Target {
        &self.0[node_of_client(id, per_room, self.len()) as usize]
    }
}

/// Index of the node global client `id` talks to: round robin inside its room, so every room
/// with at least as many clients as there are nodes has clients on every node. Each room
/// starts one node further than the previous one, so the client that opens a room (and
/// makes its node load it first) is spread over the nodes too, as is the odd client of a
/// room whose size the node count does not divide.
pub fn node_of_client(id: u32, per_room: u32, nodes: u32) -> u32 {
    let (room, k) = (id / per_room.max(1), id % per_room.max(1));
    (room % nodes.max(1) + k) % nodes.max(1)
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
    fn every_room_has_clients_on_every_node() {
        // 2 nodes, rooms of 2: one client per node in every room.
        for room in 0..10 {
            let a = node_of_client(room * 2, 2, 2);
            let b = node_of_client(room * 2 + 1, 2, 2);
            assert_ne!(a, b, "room {room}");
        }
        // 3 nodes, rooms of 50: 16 or 17 clients on each node of each room.
        for room in 0..3 {
            let mut per_node = [0u32; 3];
            for k in 0..50 {
                per_node[node_of_client(room * 50 + k, 50, 3) as usize] += 1;
            }
            assert!(
                per_node.iter().all(|&n| (16..=17).contains(&n)),
                "{per_node:?}"
            );
        }
        // Rooms of 3 on 2 nodes: the odd client alternates between the nodes.
        let first_of_rooms: Vec<u32> = (0..4).map(|r| node_of_client(r * 3, 3, 2)).collect();
        assert_eq!(first_of_rooms, [0, 1, 0, 1]);
        // One node: everything on it.
        assert!((0..100).all(|id| node_of_client(id, 7, 1) == 0));
    }

    #[test]
    fn several_urls_make_several_nodes() {
        let urls = [
            "ws://127.0.0.1:1/ws".to_owned(),
            "ws://127.0.0.1:2/ws".to_owned(),
        ];
        let nodes = Nodes::parse(&urls, Protocol::YWebsocket, "").expect("ok");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.of_client(0, 2).addr.port(), 1);
        assert_eq!(nodes.of_client(1, 2).addr.port(), 2);
        assert_eq!(nodes.of_client(2, 2).addr.port(), 2);
        assert!(Nodes::parse(&[], Protocol::YWebsocket, "").is_err());
        let bad = [
            "ws://127.0.0.1:1/".to_owned(),
            "ws://10.1.1.1:2/".to_owned(),
        ];
        assert!(Nodes::parse(&bad, Protocol::YWebsocket, "").is_err());
    }

    #[test]
    fn empty_update_is_two_zero_lengths() {
        // No structs, empty delete set.
        assert_eq!(empty_update(), [0, 0]);
    }
}
