//! Yjs-compatible collaborative rooms, independent of any transport.
//!
//! # Layout
//! - [`protocol`]: the y-sync wire format, sans-IO (bytes in, typed messages out).
//! - [`limits`]: bounds on untrusted update bytes (nesting depth, counts), checked without
//!   recursion before yrs decodes anything.
//! - [`Rooms`] (`rooms.rs`): the registry that loads a room on first join and unloads it
//!   after its last client has gone and a grace period passed.
//! - `room.rs`: one actor task per document owning its `yrs::Doc` and awareness; the only
//!   place a document is mutated.
//! - `reserved.rs`: client ids the server writes under (an AI job's), which the room
//!   refuses in client updates while reserved ([`Rooms::reserve_client`]).
//! - [`outbox`]: the per-socket queue rooms write into without ever waiting on a client.
//! - [`store`]: the `Store` seam (snapshot + update log with who wrote what, and kept
//!   versions) and an in-memory implementation.
//! - [`history`]: restoring a kept version as a new update.
//! - [`fanout`]: the `Fanout` seam between server nodes and an in-process implementation.
//! - [`metrics`]: Prometheus metrics for rooms.
//! - [`TokenBucket`] (`rate.rs`): per-client rate limits (awareness, socket frames).
//!
//! The server crate owns sockets, HTTP and configuration parsing; this crate never sees them.

pub mod fanout;
pub mod history;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod protocol;
mod rate;
mod reserved;
mod room;
mod rooms;
pub mod store;
mod type_depth;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use fanout::{Fanout, LocalFanout, NodeId};
pub use limits::{LimitError, UpdateLimits, UpdateSummary, check_update_v1};
pub use metrics::CollabMetrics;
pub use outbox::{Outbox, OutboxReceiver, Route, outbox};
pub use protocol::{ClientMessage, ProtocolError};
pub use rate::TokenBucket;
pub use reserved::ClientReservation;
pub use rooms::{JoinError, Membership, RoomError, Rooms};
pub use store::{Edit, MemoryStore, NewVersion, SERVER_AUTHOR, Store, StoreError, VersionReason};
pub use type_depth::DEFAULT_MAX_TYPE_DEPTH;

/// The name of a shared document, as it appears in URLs and in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(Arc<str>);

/// The longest document name accepted, in bytes.
pub const MAX_DOC_ID_LEN: usize = 256;

/// Why a string is not a valid document name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocIdError {
    /// Empty names are not allowed.
    #[error("document id is empty")]
    Empty,
    /// Longer than [`MAX_DOC_ID_LEN`].
    #[error("document id is longer than {MAX_DOC_ID_LEN} bytes")]
    TooLong,
    /// Control characters would corrupt logs and keys.
    #[error("document id contains a control character")]
    ControlCharacter,
}

impl DocId {
    /// Validates a document name.
    pub fn new(name: &str) -> Result<Self, DocIdError> {
        if name.is_empty() {
            return Err(DocIdError::Empty);
        }
        if name.len() > MAX_DOC_ID_LEN {
            return Err(DocIdError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(DocIdError::ControlCharacter);
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a member may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive the document and awareness, send awareness; document updates are refused.
    Read,
    /// Read and edit.
    Write,
}

/// Who joins a room: the user behind the connection and what they may do. Permission
/// changes address users, not connections, because one user may have several tabs open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// A stable id of the user (account id, or a token's subject).
    pub user: Arc<str>,
    /// The login session the connection authenticated in, if it can be revoked: signing out
    /// closes the connections of that session only, not the user's other devices.
    pub session: Option<Arc<str>>,
    /// What the user may do on joining.
    pub access: Access,
}

impl Guest {
    /// A guest with `access`.
    pub fn new(user: &str, access: Access) -> Self {
        Self {
            user: user.into(),
            session: None,
            access,
        }
    }
}

/// A change to one user's presence in a room, decided by the server (a session was locked,
/// a student removed from the class, a token expired...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    /// From now on the user's connections may do this.
    Set(Access),
    /// Close the user's connections to this room.
    Close(CloseReason),
}

/// Why a room closed a client's connection to it. The server maps each to a WebSocket close
/// code (see `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent bytes that are not valid y-sync or not a valid update.
    InvalidMessage,
    /// Applying the client's update would exceed the maximum document size.
    DocumentTooLarge,
    /// The client did not read its frames fast enough; reconnecting resyncs it.
    Lagging,
    /// The store failed; the room was unloaded so no unsaved state is served. Reconnect.
    StorageUnavailable,
    /// The server is shutting down (draining this node). Retryable: the client should
    /// reconnect at once; behind a load balancer it lands on another node, which loads the
    /// document from the shared store.
    ShuttingDown,
    /// The client's credentials expired or were revoked; reconnect with a fresh token.
    Unauthenticated,
    /// The client may no longer open this document (for example removed from the class).
    Forbidden,
    /// The live session this document belongs to has ended; it stays readable for review.
    SessionEnded,
    /// Too many of the client's updates wait for changes the server never received; they
    /// were dropped. Reconnecting resyncs.
    TooManyPending,
    /// The client sent awareness states over the size limit, or for more client ids than a
    /// connection may own.
    AwarenessLimit,
    /// The stored document is damaged (fails the update limits or does not decode) and
    /// cannot be opened; other documents are unaffected.
    DocumentUnreadable,
    /// The room failed unexpectedly (a bug, caught); reconnecting loads the document
    /// afresh from the store.
    RoomFailed,
    /// The client's update carries structs of a client id the server is writing under (a
    /// running AI job's, see [`Rooms::reserve_client`]); it was not applied.
    ReservedClientId,
}

/// Why an update sent over REST ([`Rooms::apply_rest_update`]) was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefused {
    /// Not a valid Yjs update (v1), or over the update limits (nesting, counts).
    #[error("not a valid Yjs update (v1), or over the update limits")]
    Invalid,
    /// It writes under a client id the server reserves (a running AI job's).
    #[error("the update uses a client id reserved by the server")]
    ReservedClientId,
    /// Applying it would take the document over its size limit.
    #[error("the document would exceed its size limit")]
    DocumentTooLarge,
    /// It builds on changes the document does not have; what could be applied was.
    #[error("the update depends on changes the document does not have")]
    MissingDependencies,
}

impl UpdateRefused {
    /// What a refusal that closes a socket means for a REST caller.
    pub(crate) fn from_close(reason: CloseReason) -> Self {
        match reason {
            CloseReason::ReservedClientId => Self::ReservedClientId,
            CloseReason::DocumentTooLarge => Self::DocumentTooLarge,
            CloseReason::TooManyPending => Self::MissingDependencies,
            _ => Self::Invalid,
        }
    }
}

impl CloseReason {
    /// A short human-readable explanation, sent as the close reason.
    pub fn description(self) -> &'static str {
        match self {
            Self::InvalidMessage => "invalid y-sync message",
            Self::DocumentTooLarge => "document size limit exceeded",
            Self::Lagging => "client too slow to keep up; reconnect to resync",
            Self::StorageUnavailable => "storage unavailable; reconnect later",
            Self::ShuttingDown => "server shutting down; reconnect now",
            Self::Unauthenticated => "credentials expired or revoked; reconnect with a new token",
            Self::Forbidden => "access to this document was withdrawn",
            Self::SessionEnded => "the session has ended; the document is now read-only",
            Self::TooManyPending => {
                "too many updates with missing dependencies; reconnect to resync"
            }
            Self::AwarenessLimit => "awareness limits exceeded",
            Self::DocumentUnreadable => "the stored document is damaged and cannot be opened",
            Self::RoomFailed => "the document failed on the server; reconnect to resync",
            Self::ReservedClientId => "update uses a client id reserved by the server",
        }
    }
}

/// Tunables for rooms. The server fills this from its configuration.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// How long a room with no clients stays loaded before it is flushed and unloaded.
    pub unload_grace: Duration,
    /// The largest a document may grow (encoded bytes, approximated by the sum of applied
    /// updates since the last snapshot plus the snapshot).
    pub max_document_bytes: usize,
    /// Compact the update log into a snapshot after this many appended updates...
    pub compact_after_updates: usize,
    /// ...or after this many appended bytes, whichever comes first.
    pub compact_after_bytes: usize,
    /// Bounds on every update before it is decoded (nesting depth, structs and values).
    pub update_limits: UpdateLimits,
    /// The deepest a Yjs type may nest in a document (a type in a root has depth 1). An
    /// update creating a deeper one closes its sender (`InvalidMessage`); a stored document
    /// holding one does not open.
    pub max_type_depth: u32,
    /// Updates whose dependencies are missing are held in memory until those arrive; at most
    /// this many (counted since the room last had nothing pending)...
    pub max_pending_updates: usize,
    /// ...and at most this many of their encoded bytes. The member whose update crosses
    /// either is closed (`TooManyPending`) and what was pending is dropped.
    pub max_pending_bytes: usize,
    /// Awareness client ids one connection may own.
    pub max_awareness_clients: usize,
    /// The largest awareness state (JSON bytes) one client id may have.
    pub max_awareness_state_bytes: usize,
    /// Awareness updates per second a connection may send (a token bucket)...
    pub awareness_rate: u32,
    /// ...with this burst. Updates over the rate are dropped, not relayed.
    pub awareness_burst: u32,
    /// How often a room shared with other nodes states its state vector to them, so a lost
    /// message is repaired even when no later one reveals the gap. None: never (one node,
    /// or a transport that loses nothing).
    pub cluster_sync_interval: Option<Duration>,
    /// While a document is edited, a version of it is kept at most this often (and when
    /// editing stops, the room unloading). None: no activity versions.
    pub version_interval: Option<Duration>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            unload_grace: Duration::from_secs(30),
            max_document_bytes: 64 * 1024 * 1024,
            compact_after_updates: 1000,
            compact_after_bytes: 4 * 1024 * 1024,
            update_limits: UpdateLimits::default(),
            max_type_depth: DEFAULT_MAX_TYPE_DEPTH,
            max_pending_updates: 512,
            max_pending_bytes: 1024 * 1024,
            max_awareness_clients: 4,
            max_awareness_state_bytes: 16 * 1024,
            awareness_rate: 30,
            awareness_burst: 60,
            cluster_sync_interval: None,
            version_interval: Some(Duration::from_secs(10 * 60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_are_validated() {
        assert!(DocId::new("class-1/notes").is_ok());
        assert_eq!(DocId::new(""), Err(DocIdError::Empty));
        assert_eq!(DocId::new("a\nb"), Err(DocIdError::ControlCharacter));
        assert_eq!(
            DocId::new(&"x".repeat(MAX_DOC_ID_LEN + 1)),
            Err(DocIdError::TooLong)
        );
    }
}
